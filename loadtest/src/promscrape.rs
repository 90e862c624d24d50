//! Reads a node's Prometheus `/metrics` and sums samples by metric name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// A metrics endpoint: the node's address, `Host` header and path.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub authority: String,
    pub path: String,
}

impl Endpoint {
    pub fn parse(url: &str, allow_remote: bool) -> Result<Endpoint> {
        let rest = url.strip_prefix("http://").with_context(|| format!("{url}: expected http://host:port/metrics"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/metrics"),
        };
        let target = crate::urls::Target::parse(&format!("ws://{authority}/"), allow_remote)?;
        Ok(Endpoint { addr: target.addr, authority: target.authority, path: path.to_string() })
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }
}

/// Fetches and parses one endpoint.
pub async fn scrape(endpoint: &Endpoint) -> Result<BTreeMap<String, f64>> {
    let fetch = async {
        let stream = tokio::net::TcpStream::connect(endpoint.addr).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let request = hyper::Request::get(endpoint.path.as_str())
            .header(hyper::header::HOST, endpoint.authority.as_str())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("{} answered {status}", endpoint.url());
        }
        Ok::<_, anyhow::Error>(String::from_utf8_lossy(&body).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .with_context(|| format!("{}: timed out", endpoint.url()))??;
    Ok(parse(&text))
}

/// Sums every sample by metric name (labels dropped).
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(|c: char| c == '{' || c.is_whitespace()).unwrap_or(line.len());
        let name = &line[..name_end];
        let after_labels = match line[name_end..].starts_with('{') {
            true => match line[name_end..].rfind('}') {
                Some(close) => &line[name_end + close + 1..],
                None => continue,
            },
            false => &line[name_end..],
        };
        let Some(value) = after_labels.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        if value.is_finite() {
            *out.entry(name.to_string()).or_insert(0.0) += value;
        }
    }
    out
}

/// `after − before` for every `ringcast_*` series present after.
pub fn deltas(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter(|(name, _)| name.starts_with("ringcast_") || name.starts_with("process_"))
        .map(|(name, value)| (name.clone(), value - before.get(name).copied().unwrap_or(0.0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_prometheus_text() {
        let text = "# HELP ringcast_deliveries_total x\n# TYPE ringcast_deliveries_total counter\n\
                    ringcast_deliveries_total 100\n\
                    ringcast_errors_total{code=\"forbidden\"} 2\n\
                    ringcast_errors_total{code=\"rate_limited\",x=\"a}b\"} 3\n\
                    ringcast_connections 5 1700000000\n\
                    bogus_line\n";
        let m = parse(text);
        assert_eq!(m["ringcast_deliveries_total"], 100.0);
        assert_eq!(m["ringcast_errors_total"], 5.0);
        assert_eq!(m["ringcast_connections"], 5.0);
        assert!(!m.contains_key("bogus_line"));
        let before: BTreeMap<_, _> = [("ringcast_deliveries_total".to_string(), 40.0)].into_iter().collect();
        let d = deltas(&before, &m);
        assert_eq!(d["ringcast_deliveries_total"], 60.0);
        assert_eq!(d["ringcast_errors_total"], 5.0);
    }

    #[test]
    fn test_endpoint_parse() {
        let e = Endpoint::parse("http://127.0.0.1:9090/metrics", false).unwrap();
        assert_eq!(e.path, "/metrics");
        assert!(Endpoint::parse("http://8.8.8.8:80/metrics", false).is_err());
    }
}
