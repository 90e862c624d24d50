//! Target URLs: `ws://host:port/path` or `wss://…`, resolved once, loopback-only unless allowed.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context, Result};

/// One server endpoint the harness talks to.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    /// `host:port` as written (for the `Host` header).
    pub authority: String,
    pub addr: SocketAddr,
    /// Path with any query of the URL, e.g. `/v1/ws` or `/?x=1`.
    pub path: String,
    /// `wss://`: TLS over the TCP connection.
    pub tls: bool,
}

impl Target {
    pub fn parse(url: &str, allow_remote: bool) -> Result<Target> {
        let (rest, tls) = if let Some(rest) = url.strip_prefix("ws://") {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("wss://") {
            (rest, true)
        } else {
            bail!("{url}: expected a ws://host:port/path or wss://host:port/path URL");
        };
        let (authority, path) = match rest.find('/') {
            Some(index) => (&rest[..index], &rest[index..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            bail!("{url}: no host");
        }
        let has_port = if authority.starts_with('[') { authority.contains("]:") } else { authority.contains(':') };
        let default_port = if tls { 443 } else { 80 };
        let with_port = if has_port { authority.to_string() } else { format!("{authority}:{default_port}") };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("{url}: cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{url}: {authority} resolves to nothing"))?;
        if !allow_remote && !addr.ip().is_loopback() {
            bail!(
                "{url}: {} is not a loopback address; the harness only targets this machine unless --allow-remote is given",
                addr.ip()
            );
        }
        Ok(Target { url: url.to_string(), authority: authority.to_string(), addr, path: path.to_string(), tls })
    }

    /// The request path with extra query parameters appended.
    pub fn path_with(&self, query: &str) -> String {
        if query.is_empty() {
            self.path.clone()
        } else if self.path.contains('?') {
            format!("{}&{query}", self.path)
        } else {
            format!("{}?{query}", self.path)
        }
    }

    /// The host of the URL (a name or an IP address), for the TLS server name.
    pub fn host(&self) -> &str {
        match self.authority.rfind(':') {
            Some(index) if !self.authority.ends_with(']') => &self.authority[..index],
            _ => &self.authority,
        }
    }

    /// `http://host:port/metrics` of the same node.
    pub fn metrics_addr(&self) -> (SocketAddr, String) {
        (self.addr, self.authority.clone())
    }
}

/// Parses `127.0.0.1-127.0.0.8` or `127.0.0.2,127.0.0.3` into a list of addresses.
pub fn parse_ip_list(text: &str) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((lo, hi)) = part.split_once('-') {
            let lo: std::net::Ipv4Addr = lo.trim().parse().with_context(|| format!("bad address {lo}"))?;
            let hi: std::net::Ipv4Addr = hi.trim().parse().with_context(|| format!("bad address {hi}"))?;
            let (lo, hi) = (u32::from(lo), u32::from(hi));
            if hi < lo || hi - lo > 1024 {
                bail!("bad address range {part}");
            }
            out.extend((lo..=hi).map(|ip| IpAddr::V4(ip.into())));
        } else {
            out.push(part.parse().with_context(|| format!("bad address {part}"))?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_urls() {
        let t = Target::parse("ws://127.0.0.1:8080/v1/ws", false).unwrap();
        assert_eq!(t.addr.port(), 8080);
        assert_eq!(t.path, "/v1/ws");
        assert_eq!(t.path_with("token=x"), "/v1/ws?token=x");
        let t = Target::parse("ws://127.0.0.1:9001", false).unwrap();
        assert_eq!(t.path_with("room=r1"), "/?room=r1");
        let t = Target::parse("ws://[::1]:9001/x?a=1", false).unwrap();
        assert!(t.addr.ip().is_loopback());
        assert_eq!(t.path_with("b=2"), "/x?a=1&b=2");
        assert!(Target::parse("ws://10.1.2.3:80/", false).is_err());
        let t = Target::parse("wss://127.0.0.1/v1/ws", false).unwrap();
        assert!(t.tls);
        assert_eq!((t.addr.port(), t.host()), (443, "127.0.0.1"));
        assert_eq!(Target::parse("wss://[::1]:8443/", false).unwrap().host(), "[::1]");
        assert!(Target::parse("http://127.0.0.1:80/", false).is_err());
    }

    #[test]
    fn test_ip_ranges() {
        let ips = parse_ip_list("127.0.0.1-127.0.0.3").unwrap();
        assert_eq!(ips.len(), 3);
        assert_eq!(ips[2].to_string(), "127.0.0.3");
        assert_eq!(parse_ip_list("127.0.0.2, 127.0.0.9").unwrap().len(), 2);
        assert!(parse_ip_list("127.0.0.9-127.0.0.1").is_err());
    }
}
