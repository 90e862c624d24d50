//! The network for partitions: one network namespace per node, joined by a bridge, so that
//! one node's links to the others can be cut with an nftables drop rule inside its
//! namespace while its clients stay connected. Addresses are in 198.18.0.0/15 (set aside for
//! network tests) and exist only on the bridge and inside the namespaces made here; names
//! carry this process's id, so a concurrent run (or tests/partition.rs) is not touched.
//! Everything is removed on drop.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

pub struct NetLab {
    tag: String,
    subnet: u32,
    nodes: usize,
}

fn sh(script: &str) -> Result<()> {
    let out = Command::new("bash").arg("-c").arg(script).stdin(Stdio::null()).output().context("cannot run bash")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{}", err.lines().next().unwrap_or("command failed").trim().to_lowercase());
    }
    Ok(())
}

impl NetLab {
    /// Builds the namespaces and the bridge; an error says why partitions are not possible.
    pub fn build(nodes: usize) -> Result<NetLab> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("needs root (network namespaces and nftables)");
        }
        sh("command -v ip >/dev/null").context("iproute2 (ip) is not installed")?;
        sh("command -v nft >/dev/null").context("nft (nftables) is not installed")?;
        let pid = std::process::id();
        let lab = NetLab { tag: format!("rcx{}", pid % 100_000), subnet: 100 + pid % 100, nodes };
        lab.cleanup();
        sh(&format!("ip netns add {0}probe && ip netns del {0}probe", lab.tag))
            .context("cannot create network namespaces here")?;
        let br = lab.bridge();
        let mut script = format!(
            "set -e; ip link add {br} type bridge; ip addr add {hub}/24 dev {br}; ip link set {br} up;",
            hub = lab.hub_ip()
        );
        for i in 0..nodes {
            script.push_str(&format!(
                "ip netns add {ns}; ip link add {tag}v{i} type veth peer name {tag}p{i}; \
                 ip link set {tag}p{i} netns {ns}; ip link set {tag}v{i} master {br} up; \
                 ip netns exec {ns} ip addr add {ip}/24 dev {tag}p{i}; ip netns exec {ns} ip link set {tag}p{i} up; \
                 ip netns exec {ns} ip link set lo up;",
                ns = lab.ns(i),
                tag = lab.tag,
                ip = lab.node_ip(i)
            ));
        }
        if let Err(err) = sh(&script) {
            lab.cleanup();
            return Err(err.context("building the namespaces failed"));
        }
        Ok(lab)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    pub fn ns(&self, i: usize) -> String {
        format!("{}n{}", self.tag, i)
    }

    pub fn node_ip(&self, i: usize) -> String {
        format!("198.18.{}.{}", self.subnet, i + 1)
    }

    /// The harness's (and a spawned Redis's) address on the bridge.
    pub fn hub_ip(&self) -> String {
        format!("198.18.{}.254", self.subnet)
    }

    /// Drops everything between node `i` and the other nodes (its clients, on the bridge
    /// address, are not cut).
    pub fn cut(&self, i: usize) -> Result<()> {
        let others: Vec<String> = (0..self.nodes).filter(|&j| j != i).map(|j| self.node_ip(j)).collect();
        let set = others.join(", ");
        sh(&format!(
            "ip netns exec {ns} nft -f - <<'EOF'\n\
             table inet rcxpart {{\n\
               chain input {{ type filter hook input priority 0; ip saddr {{ {set} }} drop; }}\n\
               chain output {{ type filter hook output priority 0; ip daddr {{ {set} }} drop; }}\n\
             }}\nEOF",
            ns = self.ns(i)
        ))
        .context("installing the drop rule failed")
    }

    pub fn heal(&self, i: usize) -> Result<()> {
        sh(&format!("ip netns exec {} nft delete table inet rcxpart", self.ns(i)))
            .context("removing the drop rule failed")
    }

    fn cleanup(&self) {
        for i in 0..self.nodes {
            let _ =
                sh(&format!("ip netns del {} 2>/dev/null; ip link del {}v{i} 2>/dev/null; true", self.ns(i), self.tag));
        }
        let _ = sh(&format!("ip link del {} 2>/dev/null; true", self.bridge()));
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        self.cleanup();
    }
}
