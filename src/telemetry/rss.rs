//! The process-memory source: resident set size of the Ollama processes (matched by
//! name), summed per configured name, for hosts without a GPU or without NVML. The full
//! process table is rescanned about once a second; between scans only the matched pids
//! are read, which keeps a 10 ms interval cheap. Knows nothing of Ollama's API.

use std::time::Duration;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::{BlockingSampler, Reading, SourceError, process_name_matches};

/// How often the whole process table is rescanned for new matching processes.
pub const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// Reads RSS of named processes; lives on one blocking thread.
pub struct RssSampler {
    system: System,
    process_names: Vec<String>,
    pids: Vec<Pid>,
    since_scan: u32,
    scan_every: u32,
}

impl RssSampler {
    /// A sampler for `process_names`, sampled every `interval`.
    pub fn new(process_names: Vec<String>, interval: Duration) -> Result<Self, SourceError> {
        if process_names.is_empty() {
            return Err(SourceError::Unavailable(
                "no process names configured".into(),
            ));
        }
        let system =
            System::new().map_err(|e| SourceError::Unavailable(format!("process table: {e}")))?;
        let ratio = RESCAN_EVERY.as_secs_f64() / interval.as_secs_f64().max(1e-6);
        Ok(RssSampler {
            system,
            process_names,
            pids: Vec::new(),
            since_scan: u32::MAX,
            scan_every: ratio.clamp(1.0, 10_000.0) as u32,
        })
    }

    fn rescan(&mut self) {
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing().with_memory(),
        );
        self.pids = self
            .system
            .processes()
            .iter()
            .filter(|(_, p)| {
                let name = p.name().to_string_lossy();
                self.process_names
                    .iter()
                    .any(|pat| process_name_matches(&name, pat))
            })
            .map(|(pid, _)| *pid)
            .collect();
        self.pids.sort();
    }
}

impl BlockingSampler for RssSampler {
    fn name(&self) -> &str {
        "rss"
    }

    fn sample(&mut self) -> Result<Vec<Reading>, SourceError> {
        if self.since_scan >= self.scan_every {
            self.rescan();
            self.since_scan = 0;
        } else if !self.pids.is_empty() {
            self.system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&self.pids),
                true,
                ProcessRefreshKind::nothing().with_memory(),
            );
        }
        self.since_scan = self.since_scan.saturating_add(1);
        let mut out = Vec::with_capacity(self.process_names.len());
        for pattern in &self.process_names {
            let mut total = 0u64;
            let mut count = 0usize;
            for pid in &self.pids {
                if let Some(p) = self.system.process(*pid)
                    && process_name_matches(&p.name().to_string_lossy(), pattern)
                {
                    total += p.memory();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_this_test_process_by_name() {
        let me = std::env::current_exe().unwrap();
        let name: String = me
            .file_name()
            .unwrap()
            .to_string_lossy()
            .chars()
            .take(15)
            .collect();
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
        }
    }

    #[test]
    fn no_names_is_unavailable() {
        assert!(matches!(
            RssSampler::new(vec![], Duration::from_millis(100)),
            Err(SourceError::Unavailable(_))
        ));
    }
}
