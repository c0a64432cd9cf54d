//! Network isolation for one run: a network namespace per node, each joined by a veth pair to a
//! bridge that lives in a hub namespace of its own, plus one veth from the root namespace (where
//! the chaos process and its clients run) to the same bridge. Every name starts with the run's
//! prefix `nxc<pid>-`; addresses are a private `10.x.y.0/24` picked per run.
//!
//! The bridge is not in the root namespace on purpose: Docker sets the root namespace's
//! iptables `FORWARD` policy to drop and `bridge-nf-call-iptables` makes bridged frames go through
//! it, so a bridge there would silently drop the nodes' traffic to each other.
//!
//! Partitions are nftables rules inside a node's namespace dropping traffic to and from the
//! addresses of the peers it must not reach; the chaos process's address is never dropped, so a
//! client on a cut-off node keeps talking to it. Healing deletes the rules.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use natrix_chaos::topology::CutPair;

/// The nftables table a partition installs in a node's namespace.
const TABLE: &str = "natrix_chaos";
/// Namespaces and links of every run start with this, followed by the run's pid and `-`.
const PREFIX: &str = "nxc";

/// Why namespaces cannot be used here, if they cannot.
pub fn unavailable_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".to_owned());
    }
    for (tool, arg) in [("ip", "-V"), ("nft", "--version")] {
        let found = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("`{tool}` is not available"));
        }
    }
    None
}

/// The namespaces, veths and bridge of one run; destroyed on drop.
pub struct Netns {
    prefix: String,
    subnet: [u8; 3],
    nodes: usize,
    destroyed: bool,
}

impl Netns {
    /// Creates a namespace per node, the hub with its bridge, and the root namespace's link.
    pub fn create(nodes: usize) -> anyhow::Result<Netns> {
        let pid = std::process::id();
        let mut netns = Netns {
            prefix: format!("{PREFIX}{pid}"),
            subnet: pick_subnet(pid)?,
            nodes,
            destroyed: false,
        };
        // On failure the half-built set is removed by the drop.
        netns.build()?;
        Ok(netns)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let hub = self.hub();
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..self.nodes {
            let ns = self.namespace(i);
            let (inner, outer) = (ns.clone(), format!("{ns}b"));
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &outer, "netns", &hub])?;
            ip(&["-n", &hub, "link", "set", &outer, "master", "br0", "up"])?;
            ip(&["-n", &ns, "link", "set", &inner, "name", "eth0"])?;
            let addr = format!("{}/24", self.node_addr(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        let (host, host_peer) = (format!("{}-h", self.prefix), format!("{}-hb", self.prefix));
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", &host_peer,
        ])?;
        ip(&["link", "set", &host_peer, "netns", &hub])?;
        ip(&["-n", &hub, "link", "set", &host_peer, "master", "br0", "up"])?;
        let addr = format!("{}/24", self.host_addr());
        ip(&["addr", "add", &addr, "dev", &host])?;
        ip(&["link", "set", &host, "up"])?;
        Ok(())
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// The namespace node `i` runs in (`nxc<pid>-n<i+1>`).
    pub fn namespace(&self, i: usize) -> String {
        format!("{}-n{}", self.prefix, i + 1)
    }

    pub fn node_addr(&self, i: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, u8::try_from(i + 1).unwrap_or(250))
    }

    /// The chaos process's own address on the bridge.
    pub fn host_addr(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 254)
    }

    pub fn describe(&self) -> String {
        let [a, b, c] = self.subnet;
        format!(
            "network namespaces {}-n1..n{} on {a}.{b}.{c}.0/24 (bridge in {})",
            self.prefix,
            self.nodes,
            self.hub()
        )
    }

    /// Installs `cut`: in each node's namespace, traffic to and from the peers it is cut from is
    /// dropped. Nodes without cut peers get no rules; rules of an earlier cut are replaced.
    pub fn cut(&self, cut: &[CutPair]) -> anyhow::Result<()> {
        for i in 0..self.nodes {
            let peers: BTreeSet<usize> = cut
                .iter()
                .filter_map(|&(a, b)| match (a == i, b == i) {
                    (true, _) => Some(b),
                    (_, true) => Some(a),
                    _ => None,
                })
                .collect();
            let script = if peers.is_empty() {
                heal_script()
            } else {
                let set = peers
                    .iter()
                    .map(|p| self.node_addr(*p).to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "{}table inet {TABLE} {{\n\
                     \x20 chain input {{ type filter hook input priority 0; policy accept; \
                     ip saddr {{ {set} }} drop; }}\n\
                     \x20 chain output {{ type filter hook output priority 0; policy accept; \
                     ip daddr {{ {set} }} drop; }}\n}}\n",
                    heal_script()
                )
            };
            nft(&self.namespace(i), &script)?;
        }
        Ok(())
    }

    /// Removes every partition rule.
    pub fn heal(&self) -> anyhow::Result<()> {
        let mut first_error = None;
        for i in 0..self.nodes {
            if let Err(err) = nft(&self.namespace(i), &heal_script()) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Kills whatever still runs in the namespaces and deletes them (the veths go with them).
    pub fn destroy(&mut self) {
        if self.destroyed {
            return;
        }
        self.destroyed = true;
        for i in 0..self.nodes {
            remove_namespace(&self.namespace(i));
        }
        remove_namespace(&self.hub());
        let _ = ip_quiet(&["link", "del", &format!("{}-h", self.prefix)]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// Deletes the table if present (declaring it first makes the delete valid either way).
fn heal_script() -> String {
    format!("table inet {TABLE}\ndelete table inet {TABLE}\n")
}

fn nft(namespace: &str, script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .context("writing the nft script")?;
    }
    let out = child.wait_with_output().context("waiting for nft")?;
    if !out.status.success() {
        bail!(
            "nft in {namespace}: {}: {}\nscript:\n{script}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip_quiet(args: &[&str]) -> Option<String> {
    ip(args).ok()
}

/// SIGKILLs every process in `namespace` and deletes it.
fn remove_namespace(namespace: &str) {
    if let Some(pids) = ip_quiet(&["netns", "pids", namespace]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill(2) with a pid read from the kernel and a valid signal number.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    // A namespace whose last process is still exiting is deleted once it is gone; retry briefly.
    for _ in 0..20 {
        if ip_quiet(&["netns", "del", namespace]).is_some() || !namespace_exists(namespace) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn namespace_exists(namespace: &str) -> bool {
    ip_quiet(&["netns", "list"]).is_some_and(|list| {
        list.lines()
            .any(|l| l.split_whitespace().next() == Some(namespace))
    })
}

/// `pid` of a name `nxc<pid>-...`.
fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// Whether process `pid` exists.
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Removes namespaces and links left by earlier runs whose process is gone (a run killed with
/// SIGKILL cannot clean up); returns what was removed.
pub fn remove_stale() -> Vec<String> {
    let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let stale = |name: &str| owner_pid(name).is_some_and(|pid| pid != me && !alive(pid));
    let mut removed = Vec::new();
    if let Some(list) = ip_quiet(&["netns", "list"]) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if stale(ns) {
                remove_namespace(ns);
                removed.push(ns.to_owned());
            }
        }
    }
    if let Some(links) = ip_quiet(&["-o", "link", "show"]) {
        for line in links.lines() {
            // "12: nxc123-h@if11: <...>"
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if stale(name) && ip_quiet(&["link", "del", name]).is_some() {
                removed.push(name.to_owned());
            }
        }
    }
    removed
}

/// A `10.x.y.0/24` derived from the pid that no address or route of the root namespace uses.
fn pick_subnet(pid: u32) -> anyhow::Result<[u8; 3]> {
    let used = format!(
        "{}\n{}",
        ip(&["-4", "-o", "addr", "show"]).unwrap_or_default(),
        ip(&["-4", "route", "show", "table", "all"]).unwrap_or_default()
    );
    let a = 100 + u8::try_from((pid / 256) % 100).unwrap_or(0);
    let start = pid % 256;
    for k in 0..256 {
        let b = u8::try_from((start + k) % 256).unwrap_or(0);
        if !used.contains(&format!("10.{a}.{b}.")) {
            return Ok([10, a, b]);
        }
    }
    bail!("no free 10.{a}.*.0/24 subnet for the run's namespaces")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_owning_pid() {
        assert_eq!(owner_pid("nxc1234-n2"), Some(1234));
        assert_eq!(owner_pid("nxc1234-hub"), Some(1234));
        assert_eq!(owner_pid("nxcx-n1"), None);
        assert_eq!(owner_pid("docker0"), None);
    }
}
