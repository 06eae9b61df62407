//! Distinct hosts on one machine: a network namespace per server, joined to this one
//! by a veth pair, each end with an address of the benchmarking range 198.18.0.0/15
//! (RFC 2544) that exists only on those two interfaces: the server listens on its
//! namespace's address, kabench reaches it over the pair, and no other host's address
//! is ever used. Made with `ip netns` and `ip link` (root), removed on drop; where the
//! machine does not allow it, [`Netns::create`] says why and the tests fall back to
//! loopback ports.

use std::process::{Command, Stdio};

/// One namespace and its veth pair.
pub struct Netns {
    /// The namespace's name (`ip netns exec NAME …`).
    pub name: String,
    /// The address inside it, where a server listens.
    pub addr: String,
    host_end: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Namespace `i` (0..64) of this test process: `kb<pid>-<i>`, the pair
    /// `kb<pid>h<i>`/`kb<pid>n<i>`, addresses 198.(18|19).X.(4i+1) outside and
    /// .(4i+2) inside, X from the process id (so concurrent test processes differ).
    pub fn create(i: u32) -> Result<Netns, String> {
        let pid = std::process::id();
        let tag = pid % 100_000;
        let name = format!("kb{tag}-{i}");
        let host_end = format!("kb{tag}h{i}");
        let ns_end = format!("kb{tag}n{i}");
        let (second, third) = (18 + (pid >> 8) % 2, pid % 256);
        let outside = format!("198.{second}.{third}.{}", 4 * i + 1);
        let inside = format!("198.{second}.{third}.{}", 4 * i + 2);
        // Leftovers of a crashed earlier run with this process id.
        let _ = ip(&["netns", "del", &name]);
        let _ = ip(&["link", "del", &host_end]);
        ip(&["netns", "add", &name])?;
        let made = Netns {
            name: name.clone(),
            addr: inside.clone(),
            host_end: host_end.clone(),
        };
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end,
        ])?;
        ip(&["link", "set", &ns_end, "netns", &name])?;
        ip(&["addr", "add", &format!("{outside}/30"), "dev", &host_end])?;
        ip(&["link", "set", &host_end, "up"])?;
        let inns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", name.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inns(&["addr", "add", &format!("{inside}/30"), "dev", &ns_end])?;
        inns(&["link", "set", &ns_end, "up"])?;
        inns(&["link", "set", "lo", "up"])?;
        Ok(made)
    }

    /// `n` namespaces, or why they cannot be had here (not root, no `ip`, no
    /// permission to make namespaces).
    pub fn create_many(n: u32) -> Result<Vec<Netns>, String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("not root".into());
        }
        (0..n).map(Netns::create).collect()
    }

    /// `program` to run inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its end of the pair, and with it this one.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_end]);
    }
}
