//! The host's state during a cell, as kabench can see it (Linux `/proc`): the 1-minute
//! load average, the CPU time every process used (`/proc/stat`), the share the
//! hypervisor stole and the share spent waiting on I/O, and how much of the busy time
//! was kabench itself and the Ollama processes (matched by name, their reaped runners
//! included). What is left is interference: other programs competing for the CPUs the
//! benchmark runs on. Read twice per cell (at its start and end), never per request:
//! one read of `/proc/loadavg`, `/proc/stat`, `/proc/self/stat` and each process's
//! `comm`, a few milliseconds. Elsewhere than Linux there is nothing to read.

use std::time::Instant;

use crate::folder::HostLoad;

use super::{DEFAULT_PROCESS_NAMES, process_name_matches};

/// One look at the host.
#[derive(Debug, Clone)]
pub struct HostSnapshot {
    at: Instant,
    load1: f64,
    cpus: u32,
    /// Jiffies from `/proc/stat`'s `cpu` line: (all, idle + iowait, iowait, steal).
    all: u64,
    idle: u64,
    iowait: u64,
    steal: u64,
    /// Jiffies of kabench itself (user + system).
    own: u64,
    /// Jiffies of the Ollama processes by pid (with their reaped children).
    ollama: Vec<(u32, u64)>,
}

/// Reads the host now; `None` where `/proc` is not there (not Linux, or hidden).
pub fn snapshot() -> Option<HostSnapshot> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    let load1 = loadavg.split_whitespace().next()?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let (all, idle, iowait, steal) = parse_cpu_line(stat.lines().next()?)?;
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count()
        .max(1) as u32;
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_pid_stat(&s))
        .map_or(0, |(u, s, _, _)| u + s);
    Some(HostSnapshot {
        at: Instant::now(),
        load1,
        cpus,
        all,
        idle,
        iowait,
        steal,
        own,
        ollama: ollama_jiffies(),
    })
}

/// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`: (all jiffies
/// but guest time, which `user` already holds; idle + iowait; iowait; steal).
pub fn parse_cpu_line(line: &str) -> Option<(u64, u64, u64, u64)> {
    let mut it = line.split_whitespace();
    if it.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = it.take(8).map(|x| x.parse().ok()).collect::<Option<_>>()?;
    if v.len() < 5 {
        return None;
    }
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let all = v.iter().sum();
    Some((all, get(3) + get(4), get(4), get(7)))
}

/// `/proc/<pid>/stat`: (utime, stime, cutime, cstime) in jiffies. The command name in
/// parentheses may hold spaces and parentheses: fields are counted after the last `)`.
pub fn parse_pid_stat(text: &str) -> Option<(u64, u64, u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    let n = |i: usize| {
        f.get(i)
            .and_then(|x| x.parse::<i64>().ok())
            .map(|x| x.max(0) as u64)
    };
    Some((n(11)?, n(12)?, n(13)?, n(14)?))
}

/// CPU jiffies of every process named like Ollama's (server and runners), children it
/// has reaped included (a runner unloaded under keep_alive 0 leaves its time there).
fn ollama_jiffies() -> Vec<(u32, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        let comm = comm.trim_end();
        if !DEFAULT_PROCESS_NAMES
            .iter()
            .any(|p| process_name_matches(comm, p))
        {
            continue;
        }
        if let Some((u, s, cu, cs)) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|t| parse_pid_stat(&t))
        {
            out.push((pid, u + s + cu + cs));
        }
    }
    out
}

/// What the host did between two snapshots (a cell's start and end).
pub fn between(start: &HostSnapshot, end: &HostSnapshot) -> HostLoad {
    let all = end.all.saturating_sub(start.all).max(1) as f64;
    let idle = end.idle.saturating_sub(start.idle) as f64;
    let share = |x: u64| (x as f64 / all).clamp(0.0, 1.0);
    // A process that started within the cell used all its time within it.
    let ollama: u64 = end
        .ollama
        .iter()
        .map(|(pid, j)| {
            let before = start
                .ollama
                .iter()
                .find(|(p, _)| p == pid)
                .map_or(0, |(_, b)| *b);
            j.saturating_sub(before)
        })
        .sum();
    let busy = ((all - idle) / all).clamp(0.0, 1.0);
    let kabench = share(end.own.saturating_sub(start.own));
    let ollama = share(ollama);
    HostLoad {
        cpus: end.cpus,
        seconds: end.at.saturating_duration_since(start.at).as_secs_f64(),
        load1_start: start.load1,
        load1_end: end.load1,
        busy,
        kabench,
        ollama,
        other: (busy - kabench - ollama).max(0.0),
        steal: share(end.steal.saturating_sub(start.steal)),
        iowait: share(end.iowait.saturating_sub(start.iowait)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_lines_parse() {
        let (all, idle, iowait, steal) = parse_cpu_line("cpu  100 0 50 800 20 0 5 25 0 0").unwrap();
        assert_eq!((all, idle, iowait, steal), (1000, 820, 20, 25));
        assert_eq!(parse_cpu_line("intr 1 2 3"), None);
        let stat = "42 (ollama (x) y) S 1 42 42 0 -1 4194560 1 0 0 0 7 3 11 13 20 0 1 0";
        assert_eq!(parse_pid_stat(stat), Some((7, 3, 11, 13)));
    }

    #[test]
    fn shares_add_up_and_others_are_what_is_left() {
        let snap = |all, idle, own, ollama: Vec<(u32, u64)>| HostSnapshot {
            at: Instant::now(),
            load1: 1.0,
            cpus: 2,
            all,
            idle,
            iowait: 0,
            steal: 0,
            own,
            ollama,
        };
        let a = snap(1000, 800, 10, vec![(1, 100)]);
        // 1000 jiffies later: 400 idle, kabench 100, ollama 200 (pid 1) + 100 (new pid 2).
        let b = snap(2000, 1200, 110, vec![(1, 300), (2, 100)]);
        let h = between(&a, &b);
        assert!((h.busy - 0.6).abs() < 1e-9, "{h:?}");
        assert!((h.kabench - 0.1).abs() < 1e-9);
        assert!((h.ollama - 0.3).abs() < 1e-9);
        assert!((h.other - 0.2).abs() < 1e-9);
    }

    #[test]
    fn this_host_reads_on_linux() {
        if cfg!(target_os = "linux") {
            let a = snapshot().expect("/proc is readable");
            let b = snapshot().unwrap();
            let h = between(&a, &b);
            assert!(h.cpus >= 1 && (0.0..=1.0).contains(&h.busy), "{h:?}");
        }
    }
}
