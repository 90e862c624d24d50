//! `GET /v1/cluster`: the members as this node sees them.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::node::Node;
use crate::respond::{json, Body};

#[derive(Serialize)]
struct ClusterMemberView<'a> {
    node_id: &'a str,
    generation: u64,
    state: &'static str,
    peer_addr: Option<String>,
    /// Share of the hash ring (0–1).
    share: f64,
    /// `self`, `up` or `down`: this node's link to the member.
    link: &'static str,
}

#[derive(Serialize)]
struct ClusterResponse<'a> {
    node_id: &'a str,
    clustered: bool,
    version: u64,
    ring: Vec<&'a str>,
    members: Vec<ClusterMemberView<'a>>,
}

/// `GET /v1/cluster`: members with state, link and ring share, as this node sees them.
pub fn cluster(node: &Node) -> Response<Body> {
    let body = match node.router.cluster() {
        None => serde_json::to_string(&ClusterResponse {
            node_id: node.id.as_str(),
            clustered: false,
            version: 0,
            ring: vec![node.id.as_str()],
            members: vec![ClusterMemberView {
                node_id: node.id.as_str(),
                generation: node.generation,
                state: if node.is_ready() { "ready" } else { "draining" },
                peer_addr: None,
                share: 1.0,
                link: "self",
            }],
        }),
        Some(cluster) => {
            let view = cluster.view();
            let shares = view.ring.shares();
            let members = view
                .members
                .values()
                .map(|member| ClusterMemberView {
                    node_id: member.node_id.as_str(),
                    generation: member.generation,
                    state: member.state.as_str(),
                    peer_addr: Some(member.peer_addr.to_string()),
                    share: shares.get(&member.node_id).copied().unwrap_or(0.0),
                    link: if member.node_id == node.id {
                        "self"
                    } else if cluster.is_connected(&member.node_id) {
                        "up"
                    } else {
                        "down"
                    },
                })
                .collect();
            serde_json::to_string(&ClusterResponse {
                node_id: node.id.as_str(),
                clustered: true,
                version: view.version,
                ring: view.ring.members().iter().map(|id| id.as_str()).collect(),
                members,
            })
        }
    };
    match body {
        Ok(body) => json(StatusCode::OK, body),
        Err(_) => Response::new(Full::new(Bytes::from_static(b"{}"))),
    }
}
