//! One signed POST to a receiver, over hyper-util's pooling client (plain http, keep-alive):
//! what webhooks and the authorization hooks share.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::sign;
use crate::time;

/// The HTTP client of a node's webhooks and hooks.
pub type Client = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// Answers larger than this are not read (a hook's answer is a small JSON object).
const ANSWER_LIMIT: usize = 64 * 1024;

pub fn client() -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Why an attempt got no answer.
#[derive(Debug)]
pub enum PostError {
    Timeout,
    /// Refused, reset, or not HTTP.
    Failed(String),
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Timeout => f.write_str("timed out"),
            PostError::Failed(err) => f.write_str(err),
        }
    }
}

/// POSTs `body` (JSON) to `uri` as message `id`, signed with `key` if any, within `timeout`;
/// the answer's status and body.
pub async fn post(
    client: &Client,
    uri: &Uri,
    key: Option<&[u8]>,
    id: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), PostError> {
    let timestamp = time::now_millis() / 1000;
    let mut request = Request::post(uri.clone())
        .header("content-type", "application/json")
        .header("user-agent", concat!("ringcast/", env!("CARGO_PKG_VERSION")))
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(key) = key {
        request = request.header("webhook-signature", sign::signature(key, id, timestamp, &body));
    }
    let request = request.body(Full::new(body)).map_err(|err| PostError::Failed(err.to_string()))?;
    let exchange = async {
        let response = client.request(request).await.map_err(|err| PostError::Failed(error_chain(&err)))?;
        let status = response.status();
        let answer = Limited::new(response.into_body(), ANSWER_LIMIT)
            .collect()
            .await
            .map_err(|err| PostError::Failed(format!("reading the answer: {err}")))?
            .to_bytes();
        Ok((status, answer))
    };
    tokio::time::timeout(timeout, exchange).await.unwrap_or(Err(PostError::Timeout))
}

/// An error and its sources on one line (hyper-util's own says only "client error").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
