//! The llama-server process on this machine: its pid found from the socket it listens
//! on (the listening entry of `/proc/net/tcp` or `/proc/net/tcp6` with the target's
//! port gives the socket's inode; the process with a `/proc/<pid>/fd` link to
//! `socket:[inode]` owns it), and its resident memory (`VmRSS` of
//! `/proc/<pid>/status`). Linux only; elsewhere, or for a process of another user,
//! the answer says why it could not be read.

use std::path::Path;

/// The state of a listening TCP socket in `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// The inodes of the sockets listening on `port` in one `/proc/net/tcp`-style table.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?;
            let (_, hex_port) = local.rsplit_once(':')?;
            let p = u16::from_str_radix(hex_port, 16).ok()?;
            (p == port && *f.get(3)? == LISTEN)
                .then(|| f.get(9)?.parse::<u64>().ok())
                .flatten()
        })
        .filter(|&inode| inode != 0)
        .collect()
}

/// The pid of the process listening on TCP `port` here, or why it was not found.
pub fn pid_listening_on(port: u16) -> Result<u32, String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return Err(format!(
            "no socket listens on port {port} in /proc/net/tcp{{,6}} (not Linux, or the server is in another network namespace): give --pid"
        ));
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let procs = std::fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))?;
    let mut unreadable = 0usize;
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            unreadable += 1;
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && wanted.iter().any(|w| Path::new(w) == target)
            {
                return Ok(pid);
            }
        }
    }
    Err(format!(
        "the socket listening on port {port} belongs to no process whose /proc/<pid>/fd this user can read ({unreadable} processes unreadable): run as the server's user, or give --pid"
    ))
}

/// `VmRSS` of `/proc/<pid>/status`, bytes.
pub fn rss_bytes(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_vm_rss(&text).ok_or_else(|| format!("{path} has no VmRSS line"))
}

/// The `VmRSS:   1234 kB` line of a status file, bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The process's name (`/proc/<pid>/comm`), or `?`.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_socket_of_a_port_is_found_and_others_are_not() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:49F3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:49F3 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1\n\
   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 0x49F3), vec![123456]);
        assert_eq!(listening_inodes(table, 8080), vec![999]);
        assert!(listening_inodes(table, 1).is_empty());
        assert!(listening_inodes("garbage\nmore garbage", 80).is_empty());
    }

    #[test]
    fn vm_rss_is_read_in_bytes() {
        assert_eq!(
            parse_vm_rss("Name:\tllama-server\nVmRSS:\t   85120 kB\n"),
            Some(85120 * 1024)
        );
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn this_process_is_found_from_its_listening_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if !Path::new("/proc/net/tcp").exists() {
            return;
        }
        assert_eq!(pid_listening_on(port), Ok(std::process::id()));
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }
}
