//! Who may open a connection: the client's IP address (from `X-Forwarded-For` only when the
//! peer is one of `--trusted-proxies`) and its rate of new connections
//! (`--connect-rate-per-ip`, a token bucket per address).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use parking_lot::Mutex;

/// One trusted network: an address and its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn parse(text: &str) -> Option<Network> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr.parse::<IpAddr>().ok()?, Some(prefix.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        (prefix <= bits).then_some(Network { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), 32, self.prefix) == masked(u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(net.into(), 128, self.prefix) == masked(ip.into(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn masked(bits: u128, width: u32, prefix: u8) -> u128 {
    let keep = u32::from(prefix);
    if keep == 0 {
        0
    } else {
        bits >> (width - keep)
    }
}

/// An IPv4-mapped IPv6 address is its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        ip => ip,
    }
}

/// `--trusted-proxies`: the peers whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

impl TrustedProxies {
    /// A comma-separated list of addresses and CIDR networks (`10.0.0.0/8, ::1`).
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let mut networks = Vec::new();
        for item in list.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            networks.push(Network::parse(item).ok_or_else(|| format!("{item:?} is not an address or a cidr network"))?);
        }
        if networks.is_empty() {
            return Err("lists no address".into());
        }
        Ok(TrustedProxies(networks))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(ip))
    }

    /// The client's address: `peer`, or, when `peer` is trusted, the last address of
    /// `forwarded_for` (the `X-Forwarded-For` values, in order) that is not a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let hops = forwarded_for.iter().flat_map(|value| value.split(',')).map(str::trim).rev();
        let mut client = peer;
        for hop in hops {
            let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
                // Garbage in the chain: trust nothing before it.
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// `--connect-rate-per-ip`: new connections per second per client address, with a burst of
/// one second's worth (at least one).
pub struct ConnectLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

/// The addresses seen, each with its tokens and when they were counted.
struct Buckets {
    by_ip: HashMap<IpAddr, (f64, Instant)>,
    pruned_at: Instant,
}

/// Addresses kept before the buckets that are full again are dropped (at most once a second).
const PRUNE_AT: usize = 10_000;

impl ConnectLimiter {
    pub fn new(rate: f64) -> ConnectLimiter {
        let buckets = Buckets { by_ip: HashMap::new(), pruned_at: Instant::now() };
        ConnectLimiter { rate, burst: rate.ceil().max(1.0), buckets: Mutex::new(buckets) }
    }

    /// Takes a token of `ip`'s bucket: false when it has none (the upgrade is refused, 429).
    pub fn admit(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.by_ip.len() >= PRUNE_AT && now.duration_since(buckets.pruned_at).as_secs() >= 1 {
            let (rate, burst) = (self.rate, self.burst);
            buckets.by_ip.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
            buckets.pruned_at = now;
        }
        let (tokens, at) = buckets.by_ip.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn test_client_ip_behind_trusted_proxies() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1, fd00::/8").unwrap();
        // An untrusted peer's header is ignored.
        assert_eq!(proxies.client_ip(ip("203.0.113.9"), &["1.2.3.4"]), ip("203.0.113.9"));
        // The last untrusted hop, however many proxies.
        assert_eq!(proxies.client_ip(ip("10.1.2.3"), &["1.2.3.4, 10.9.9.9"]), ip("1.2.3.4"));
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), &["6.6.6.6, 1.2.3.4", "10.0.0.7"]), ip("1.2.3.4"));
        assert_eq!(proxies.client_ip(ip("::ffff:127.0.0.1"), &["1.2.3.4"]), ip("1.2.3.4"));
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), &[]), ip("127.0.0.1"));
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), &["junk, 1.2.3.4"]), ip("1.2.3.4"));
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), &["1.2.3.4, junk"]), ip("127.0.0.1"));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("nope").is_err());
        assert!(TrustedProxies::parse(" , ").is_err());
    }

    #[test]
    fn test_connect_rate() {
        let limiter = ConnectLimiter::new(2.0);
        assert!(limiter.admit(ip("1.1.1.1")));
        assert!(limiter.admit(ip("1.1.1.1")));
        assert!(!limiter.admit(ip("1.1.1.1")));
        assert!(limiter.admit(ip("2.2.2.2")), "each address has its own bucket");
    }
}
