//! `run.json`'s record of the host during one cell (`cells[].host`): load average,
//! where the CPU time went and what the hypervisor stole, so that a reader can tell a
//! slow cell from a busy machine. Written by `telemetry::host_load`; read by the
//! report's warnings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The host's state during a cell, as kabench could see it (Linux only). Shares are of
/// all CPU time of all CPUs during the cell (0–1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostLoad {
    /// CPUs online.
    pub cpus: u32,
    /// Seconds between the two looks (the cell's start and end).
    pub seconds: f64,
    /// 1-minute load average at the cell's start.
    pub load1_start: f64,
    /// 1-minute load average at the cell's end.
    pub load1_end: f64,
    /// Share of CPU time not idle (every process).
    pub busy: f64,
    /// Share used by kabench itself (the embedded simulator included).
    pub kabench: f64,
    /// Share used by the Ollama processes (server and runners, by process name).
    pub ollama: f64,
    /// Share used by everything else: interference.
    pub other: f64,
    /// Share stolen by the hypervisor (CPU steal).
    pub steal: f64,
    /// Share spent waiting on I/O.
    pub iowait: f64,
}

/// Other processes using at least this share of all CPU time make a cell "busy".
pub const BUSY_OTHER_SHARE: f64 = 0.25;
/// Steal of at least this share makes a cell "busy".
pub const BUSY_STEAL_SHARE: f64 = 0.05;

impl HostLoad {
    /// Why the host was busy during the cell, in words; `None` when it was quiet.
    pub fn busy_reason(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.other >= BUSY_OTHER_SHARE {
            why.push(format!(
                "other processes used {:.0}% of the CPU time of {} CPU(s) (load average {:.1} → {:.1})",
                self.other * 100.0,
                self.cpus,
                self.load1_start,
                self.load1_end
            ));
        }
        if self.steal >= BUSY_STEAL_SHARE {
            why.push(format!(
                "the hypervisor stole {:.0}% of the CPU time",
                self.steal * 100.0
            ));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}
