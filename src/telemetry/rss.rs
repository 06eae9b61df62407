//! The process-memory source: resident set size of the Ollama processes (matched by
//! name), summed per configured name, for hosts without a GPU or without NVML. The
//! process table is rescanned about once a second to find the processes: on Linux by
//! reading each `/proc/<pid>/comm` (one small read per process; `/proc`'s top level
//! lists processes, not threads), elsewhere with `sysinfo` (threads left out). Between
//! scans, on Linux, each sample is one `pread` of every matched pid's `/proc/<pid>/statm`
//! kept open, so a 10 ms interval stays cheap. Elsewhere `sysinfo` refreshes the matched
//! pids. Knows nothing of Ollama's API.

use std::time::{Duration, Instant};

#[cfg(not(target_os = "linux"))]
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

use super::{BlockingSampler, Reading, SourceError, process_name_matches};

/// How often the whole process table is rescanned for new matching processes.
pub const RESCAN_EVERY: Duration = Duration::from_secs(1);
/// How often every process's name is read again at a rescan (between, only new pids'
/// names are read: a rescan is then one listing of `/proc`).
pub const NAMES_CHECKED_EVERY: Duration = Duration::from_secs(10);

/// One matched process.
struct Tracked {
    pid: u32,
    /// Indexes into the configured names that this process matches.
    patterns: Vec<usize>,
    /// `/proc/<pid>/statm`, opened once at discovery (Linux).
    #[cfg(target_os = "linux")]
    statm: Option<std::fs::File>,
    /// Resident bytes at the last sample; `None` once the process is gone.
    rss: Option<u64>,
}

/// Reads RSS of named processes; lives on one blocking thread.
pub struct RssSampler {
    #[cfg(not(target_os = "linux"))]
    system: System,
    process_names: Vec<String>,
    tracked: Vec<Tracked>,
    last_scan: Option<Instant>,
    #[cfg(target_os = "linux")]
    names: linux::ProcNames,
    #[cfg(target_os = "linux")]
    page_size: u64,
    #[cfg(target_os = "linux")]
    buf: [u8; 128],
}

impl RssSampler {
    /// A sampler for `process_names`. The interval is the caller's to keep; the process
    /// table is rescanned every [`RESCAN_EVERY`] whatever it is.
    pub fn new(process_names: Vec<String>, _interval: Duration) -> Result<Self, SourceError> {
        if process_names.is_empty() {
            return Err(SourceError::Unavailable(
                "no process names configured".into(),
            ));
        }
        #[cfg(target_os = "linux")]
        std::fs::read_dir("/proc")
            .map_err(|e| SourceError::Unavailable(format!("process table /proc: {e}")))?;
        Ok(RssSampler {
            #[cfg(not(target_os = "linux"))]
            system: System::new()
                .map_err(|e| SourceError::Unavailable(format!("process table: {e}")))?,
            process_names,
            tracked: Vec::new(),
            last_scan: None,
            #[cfg(target_os = "linux")]
            names: linux::ProcNames::default(),
            #[cfg(target_os = "linux")]
            page_size: linux::page_size(),
            #[cfg(target_os = "linux")]
            buf: [0; 128],
        })
    }

    /// Finds the processes whose names match.
    fn rescan(&mut self) {
        let mut tracked: Vec<Tracked> = Vec::new();
        for (pid, name) in self.processes() {
            let patterns: Vec<usize> = self
                .process_names
                .iter()
                .enumerate()
                .filter(|(_, pat)| process_name_matches(&name, pat))
                .map(|(i, _)| i)
                .collect();
            if patterns.is_empty() {
                continue;
            }
            // Keep the open file of a process already tracked.
            let kept = self
                .tracked
                .iter()
                .position(|t| t.pid == pid)
                .map(|i| self.tracked.swap_remove(i));
            #[cfg(target_os = "linux")]
            let statm = match kept {
                Some(Tracked {
                    statm: Some(f),
                    rss: Some(_),
                    ..
                }) => Some(f),
                _ => std::fs::File::open(format!("/proc/{pid}/statm")).ok(),
            };
            #[cfg(not(target_os = "linux"))]
            drop(kept);
            tracked.push(Tracked {
                pid,
                patterns,
                #[cfg(target_os = "linux")]
                statm,
                rss: Some(0),
            });
        }
        tracked.sort_by_key(|t| t.pid);
        self.tracked = tracked;
    }

    /// Every process (pid, name): `/proc/<pid>/comm` of each numeric entry of `/proc`,
    /// read for new pids and, every [`NAMES_CHECKED_EVERY`], for all (a process can
    /// `exec` into another name).
    #[cfg(target_os = "linux")]
    fn processes(&mut self) -> Vec<(u32, String)> {
        self.names.scan(NAMES_CHECKED_EVERY)
    }

    /// Every process (pid, name), threads left out, from `sysinfo`.
    #[cfg(not(target_os = "linux"))]
    fn processes(&mut self) -> Vec<(u32, String)> {
        let kind = ProcessRefreshKind::nothing().without_tasks().with_memory();
        self.system
            .refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
        self.system
            .processes()
            .iter()
            .filter(|(_, p)| p.thread_kind().is_none())
            .map(|(pid, p)| (pid.as_u32(), p.name().to_string_lossy().into_owned()))
            .collect()
    }

    /// Reads the resident bytes of every tracked process.
    #[cfg(target_os = "linux")]
    fn read_tracked(&mut self) {
        for t in &mut self.tracked {
            t.rss = match &t.statm {
                Some(f) if t.rss.is_some() => {
                    linux::resident_bytes(f, &mut self.buf).map(|pages| pages * self.page_size)
                }
                _ => None,
            };
        }
    }

    /// Reads the resident bytes of every tracked process.
    #[cfg(not(target_os = "linux"))]
    fn read_tracked(&mut self, just_scanned: bool) {
        if !just_scanned {
            let pids: Vec<sysinfo::Pid> = self
                .tracked
                .iter()
                .map(|t| sysinfo::Pid::from_u32(t.pid))
                .collect();
            self.system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&pids),
                true,
                ProcessRefreshKind::nothing().without_tasks().with_memory(),
            );
        }
        for t in &mut self.tracked {
            t.rss = self
                .system
                .process(sysinfo::Pid::from_u32(t.pid))
                .map(|p| p.memory());
        }
    }
}

impl BlockingSampler for RssSampler {
    fn name(&self) -> &str {
        "rss"
    }

    fn sample(&mut self) -> Result<Vec<Reading>, SourceError> {
        let due = self.last_scan.is_none_or(|t| t.elapsed() >= RESCAN_EVERY);
        if due {
            self.rescan();
            self.last_scan = Some(Instant::now());
        }
        #[cfg(target_os = "linux")]
        self.read_tracked();
        #[cfg(not(target_os = "linux"))]
        self.read_tracked(due);
        let mut out = Vec::with_capacity(self.process_names.len());
        for (i, pattern) in self.process_names.iter().enumerate() {
            let mut total = 0u64;
            let mut count = 0usize;
            for t in &self.tracked {
                if let Some(rss) = t.rss
                    && t.patterns.contains(&i)
                {
                    total += rss;
                    count += 1;
                }
            }
            out.push(Reading {
                device: "host".into(),
                model: pattern.clone(),
                used_bytes: total,
                total_bytes: None,
                extra: format!("processes={count}"),
            });
        }
        Ok(out)
    }
}

/// `/proc` reading without a libc binding.
#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::fs::File;
    use std::os::unix::fs::FileExt;
    use std::time::{Duration, Instant};

    /// `AT_PAGESZ` in the ELF auxiliary vector.
    const AT_PAGESZ: usize = 6;

    /// The names of the processes in `/proc` (its top level lists processes, not
    /// threads), kept between scans.
    #[derive(Debug, Default)]
    pub struct ProcNames {
        names: HashMap<u32, String>,
        all_read: Option<Instant>,
    }

    impl ProcNames {
        /// Every process with its name (`comm`, at most 15 bytes); a process that ended
        /// mid-scan is left out. Reads the name of each pid not seen at the last scan,
        /// and of every pid when the last such full read is `every` old.
        pub fn scan(&mut self, every: Duration) -> Vec<(u32, String)> {
            let Ok(dir) = std::fs::read_dir("/proc") else {
                return Vec::new();
            };
            let all = self.all_read.is_none_or(|t| t.elapsed() >= every);
            if all {
                self.all_read = Some(Instant::now());
            }
            let mut buf = [0u8; 64];
            let mut names = HashMap::with_capacity(self.names.len());
            for entry in dir.flatten() {
                let file_name = entry.file_name();
                let Some(pid) = file_name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                let known = if all { None } else { self.names.remove(&pid) };
                let name = match known {
                    Some(name) => name,
                    None => match read_comm(pid, &mut buf) {
                        Some(name) => name,
                        None => continue,
                    },
                };
                names.insert(pid, name);
            }
            self.names = names;
            self.names.iter().map(|(p, n)| (*p, n.clone())).collect()
        }
    }

    /// `/proc/<pid>/comm` without its newline; `None` once the process is gone.
    fn read_comm(pid: u32, buf: &mut [u8]) -> Option<String> {
        let comm = File::open(format!("/proc/{pid}/comm")).ok()?;
        let n = comm.read_at(buf, 0).ok()?;
        let name = buf[..n].strip_suffix(b"\n").unwrap_or(&buf[..n]);
        Some(String::from_utf8_lossy(name).into_owned())
    }

    /// The page size `statm` counts in: `AT_PAGESZ` from `/proc/self/auxv`, else 4096.
    pub fn page_size() -> u64 {
        const WORD: usize = std::mem::size_of::<usize>();
        let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
            return 4096;
        };
        let word = |b: &[u8]| b.try_into().ok().map(usize::from_ne_bytes);
        for pair in auxv.chunks_exact(2 * WORD) {
            if let (Some(key), Some(value)) = (word(&pair[..WORD]), word(&pair[WORD..])) {
                if key == AT_PAGESZ && value.is_power_of_two() {
                    return value as u64;
                }
                if key == 0 {
                    break;
                }
            }
        }
        4096
    }

    /// Resident pages from an open `/proc/<pid>/statm` (its second field), read again
    /// from offset 0; `None` once the process is gone.
    pub fn resident_bytes(statm: &File, buf: &mut [u8]) -> Option<u64> {
        let n = statm.read_at(buf, 0).ok()?;
        parse_statm_resident(buf.get(..n)?)
    }

    /// The second field of a `statm` line (`size resident shared text lib data dt`).
    pub fn parse_statm_resident(line: &[u8]) -> Option<u64> {
        let field = line.split(|b| *b == b' ').nth(1)?;
        let field = field.strip_suffix(b"\n").unwrap_or(field);
        if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
            return None;
        }
        field.iter().try_fold(0u64, |acc, d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    }
}

/// Resident bytes of the process `root` and all its descendants (a server kabench
/// started and whatever it runs), from `/proc/<pid>/statm` and the parent pids in
/// `/proc/<pid>/stat`; `None` once `root` is gone, or off Linux.
pub fn tree_rss(root: u32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let page = linux::page_size();
        let read_rss = |pid: u32| -> Option<u64> {
            let text = std::fs::read(format!("/proc/{pid}/statm")).ok()?;
            linux::parse_statm_resident(&text).map(|p| p * page)
        };
        let mut total = read_rss(root)?;
        // Parent of every process, for the descendants.
        let mut parents: Vec<(u32, u32)> = Vec::new();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // `pid (comm) state ppid …`: the comm may hold spaces, so read after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
        let mut tree = vec![root];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            for &(pid, ppid) in &parents {
                if ppid == parent && !tree.contains(&pid) {
                    tree.push(pid);
                    total += read_rss(pid).unwrap_or(0);
                }
            }
            i += 1;
        }
        Some(total)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = root;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_name() -> String {
        std::env::current_exe()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .chars()
            .take(15)
            .collect()
    }

    #[test]
    fn measures_this_test_process_by_name() {
        let name = own_name();
        let mut s = RssSampler::new(
            vec![name.clone(), "no-such-proc".into()],
            Duration::from_millis(10),
        )
        .unwrap();
        for _ in 0..3 {
            let rows = s.sample().unwrap();
            assert_eq!(rows.len(), 2);
            assert_eq!(rows[0].model, name);
            assert!(rows[0].used_bytes > 1 << 20, "{rows:?}");
            assert_eq!(rows[1].used_bytes, 0);
            assert_eq!(rows[1].extra, "processes=0");
        }
    }

    #[test]
    fn threads_are_not_counted_as_processes() {
        // Threads named like their process (as Ollama's are) must not count again.
        let name = own_name();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let stop = stop.clone();
                std::thread::Builder::new().name(own_name()).spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let mut s = RssSampler::new(vec![name], Duration::from_millis(10)).unwrap();
        let rows = s.sample().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(rows[0].extra, "processes=1", "{rows:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn statm_reread_follows_memory_growth_and_matches_status() {
        let name = own_name();
        let mut s = RssSampler::new(vec![name], Duration::from_millis(10)).unwrap();
        let before = s.sample().unwrap()[0].used_bytes;
        // Touch 64 MiB so the resident set grows; the kept-open statm must see it.
        let block = vec![1u8; 64 << 20];
        let after = s.sample().unwrap()[0].used_bytes;
        assert!(
            std::hint::black_box(&block)
                .iter()
                .step_by(4096)
                .all(|b| *b == 1)
        );
        assert!(after >= before + (48 << 20), "{before} -> {after}");
        // The page size is right: statm × page size agrees with VmRSS (kB) of status.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let vm_rss_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        let diff = (vm_rss_kb * 1024).abs_diff(after);
        assert!(diff < 16 << 20, "statm {after} B, VmRSS {vm_rss_kb} kB");
        drop(block);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn statm_lines_parse_and_page_size_is_a_power_of_two() {
        assert_eq!(
            linux::parse_statm_resident(b"1163 301 250 6 0 109 0\n"),
            Some(301)
        );
        assert_eq!(linux::parse_statm_resident(b"0 0 0 0 0 0 0"), Some(0));
        assert_eq!(linux::parse_statm_resident(b""), None);
        assert_eq!(linux::parse_statm_resident(b"12 x3 0"), None);
        let page = linux::page_size();
        assert!(page.is_power_of_two() && page >= 4096, "{page}");
    }

    #[test]
    fn no_names_is_unavailable() {
        assert!(matches!(
            RssSampler::new(vec![], Duration::from_millis(100)),
            Err(SourceError::Unavailable(_))
        ));
    }
}
