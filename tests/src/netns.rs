//! The pod network of a stand-in node ([`crate::node`]): a Linux bridge
//! with the node's address (`10.X.0.1/16`) and, for each pod, a network
//! namespace joined to the bridge by a veth pair, with an address of its
//! own (`10.X.A.B/16`). The pods' namespaces have no default route and
//! nothing forwards off the machine: a pod reaches the node's address (where
//! the tests' servers listen) and other pods, nothing else. The API server
//! (on loopback) reaches the pods through the bridge, as its pod proxy and
//! the EndpointSlices need real pod IPs (they refuse loopback).
//!
//! Names carry the test process's pid (`fhb<pid>n<k>` bridges, `fhp<pid>n<k>x<j>`
//! namespaces; veth ends go with their namespace): whatever a killed test process
//! left is removed by the next one, and dropping a [`Network`] removes its
//! own. Needs root (CAP_NET_ADMIN) and iproute2.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

/// One node's network: its bridge and the pods' namespaces.
pub struct Network {
    bridge: String,
    /// The `X` of `10.X.0.0/16`.
    subnet: u8,
    next: AtomicU32,
}

/// A pod's network namespace; removed (with its veth pair) on drop.
pub struct PodNetwork {
    /// `ip netns exec <name>` runs a command in it.
    pub name: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Runs `ip args…`; its stdout.
fn ip(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !output.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The pid in a name of ours (`fhb1234n0` → 1234).
fn owner(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.split('n').next()?.parse().ok()
}

fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(n % 36, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            return digits.iter().rev().collect();
        }
    }
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the bridges and namespaces of test processes that are gone.
fn remove_stale() {
    for line in ip(&["netns", "list"]).unwrap_or_default().lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if owner(name, "fhp").is_some_and(gone) {
            let _ = ip(&["netns", "del", name]);
        }
    }
    for line in ip(&["-o", "link", "show", "type", "bridge"]).unwrap_or_default().lines() {
        let name = line.split(':').nth(1).unwrap_or_default().trim();
        if owner(name, "fhb").is_some_and(gone) {
            let _ = ip(&["link", "del", name]);
        }
    }
}

impl Network {
    /// A new bridge on a `10.X.0.0/16` no other interface uses.
    pub fn create() -> anyhow::Result<Self> {
        static CREATED: AtomicU32 = AtomicU32::new(0);
        // One test process at a time picks a subnet (a fixed path: runs
        // with different TMPDIRs share the machine's interfaces).
        let lock = Path::new("/run/fusionhook-netns.lock");
        let file = std::fs::File::create(lock)?;
        file.lock()?;
        remove_stale();
        let used = ip(&["-o", "-4", "addr", "show"])?;
        let subnet =
            (100..=250u8).find(|x| !used.contains(&format!(" 10.{x}."))).context("no free 10.X.0.0/16 for the stand-in node's pods")?;
        let bridge = format!("fhb{}n{}", std::process::id(), CREATED.fetch_add(1, Ordering::SeqCst));
        ip(&["link", "add", "name", &bridge, "type", "bridge"])?;
        let network = Self { bridge, subnet, next: AtomicU32::new(0) };
        ip(&["addr", "add", &format!("10.{subnet}.0.1/16"), "dev", &network.bridge])?;
        ip(&["link", "set", &network.bridge, "up"])?;
        Ok(network)
    }

    /// The node's address on the bridge: where the pods reach the tests' servers.
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, 1)
    }

    /// The next pod address (no namespace: for a pod that only looks as if it runs).
    pub fn address(&self) -> anyhow::Result<Ipv4Addr> {
        self.nth(self.next.fetch_add(1, Ordering::SeqCst))
    }

    /// Address `k` of the /16 (10.X.1.2 on): 63,750 of them.
    fn nth(&self, k: u32) -> anyhow::Result<Ipv4Addr> {
        let third = u8::try_from(1 + k / 250).ok().filter(|t| *t < 255).context("the stand-in node's /16 has no address left")?;
        Ok(Ipv4Addr::new(10, self.subnet, third, u8::try_from(2 + k % 250)?))
    }

    /// A namespace for one pod, on the bridge, with an address of its own.
    pub fn pod(&self) -> anyhow::Result<PodNetwork> {
        let k = self.next.fetch_add(1, Ordering::SeqCst);
        let (pid, bridge) = (std::process::id(), self.bridge.trim_start_matches("fhb"));
        let seq = bridge.split('n').nth(1).unwrap_or("0");
        let name = format!("fhp{pid}n{seq}x{k}");
        // Interface names have 15 bytes: the pid and a process-wide count in
        // base 36 (5 and at most 6 characters).
        static VETHS: AtomicU32 = AtomicU32::new(0);
        let veth = format!("fhv{}x{}", base36(pid), base36(VETHS.fetch_add(1, Ordering::SeqCst)));
        anyhow::ensure!(veth.len() <= 15, "interface name {veth} is over 15 bytes");
        let veth = veth.as_str();
        let address = self.nth(k)?;
        ip(&["netns", "add", &name])?;
        let pod = PodNetwork { name, ip: address };
        ip(&["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", &pod.name])?;
        ip(&["link", "set", veth, "master", &self.bridge, "up"])?;
        ip(&["-n", &pod.name, "addr", "add", &format!("{address}/16"), "dev", "eth0"])?;
        ip(&["-n", &pod.name, "link", "set", "eth0", "up"])?;
        ip(&["-n", &pod.name, "link", "set", "lo", "up"])?;
        Ok(pod)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
