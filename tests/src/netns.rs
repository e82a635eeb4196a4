//! Network namespaces: test "hosts" whose link a test can cut and heal.

use std::process::Command;

use crate::*;

/// A network namespace joined to the host by a veth pair: a test "host" with an
/// address of its own, whose link the test can cut and heal. Removed on drop.
pub struct NetNs {
    /// The namespace's name (for `ip netns exec`).
    pub name: String,
    host_if: String,
    /// The host end's address (listen here for the namespace to reach you).
    pub host_addr: String,
    /// The namespace end's address (a process inside listens here for the host
    /// to reach it while the link is up).
    pub ns_addr: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `ip` ({e}): install iproute2; network namespaces need root")
    });
    assert!(
        out.status.success(),
        "ip {args:?} failed: {} (network namespaces need root and iproute2)",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    /// Makes a namespace and a veth pair on a /30 of its own.
    pub fn new() -> Self {
        let n = (std::process::id() as u16 ^ free_port()) % 250 + 1;
        let tag = format!("{:x}", ulid::Ulid::new().random() as u32);
        let name = format!("aq{tag}");
        let host_if = format!("aqh{tag}");
        let ns_if = format!("aqn{tag}");
        let host_addr = format!("10.213.{n}.1");
        let ns_addr = format!("10.213.{n}.2");
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{ns_addr}/30"),
            "dev",
            &ns_if,
        ]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        Self {
            name,
            host_if,
            host_addr,
            ns_addr,
        }
    }

    /// Cuts the namespace off (its link goes down).
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }

    /// Heals the link.
    pub fn heal(&self) {
        ip(&["link", "set", &self.host_if, "up"]);
    }
}

impl Default for NetNs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
