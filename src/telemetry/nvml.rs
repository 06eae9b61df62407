//! The NVML source: per GPU, framebuffer used and total; per Ollama process (matched by
//! name), the GPU memory it holds. `Nvml::init` loads the driver's library at run time,
//! so a host without a driver gets "unavailable", never a panic or a build failure.
//! Knows nothing of Ollama's API or of the run folder.

use std::collections::BTreeMap;
use std::time::Instant;

use nvml_wrapper::Nvml;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::{BlockingSampler, Reading, SourceError, process_name_matches};

/// Reads GPU memory through NVML; lives on one blocking thread.
pub struct NvmlSampler {
    nvml: Nvml,
    devices: u32,
    process_names: Vec<String>,
    system: Option<System>,
    /// Names of the pids seen on the GPUs, kept for [`super::rss::RESCAN_EVERY`] so a
    /// 10 ms loop does not read `/proc` for every pid on every sample.
    names: BTreeMap<u32, String>,
    names_since: Instant,
    description: String,
}

fn failed(what: &str, e: NvmlError) -> SourceError {
    match e {
        // The GPU is gone or the library lacks the call: retrying will not help.
        NvmlError::GpuLost | NvmlError::FailedToLoadSymbol(_) | NvmlError::Uninitialized => {
            SourceError::Unavailable(format!("NVML {what}: {e}"))
        }
        other => SourceError::Failed(format!("NVML {what}: {other}")),
    }
}

impl NvmlSampler {
    /// Loads NVML and counts GPUs; `Unavailable` without a driver or a GPU.
    pub fn new(process_names: Vec<String>) -> Result<Self, SourceError> {
        let nvml = Nvml::init()
            .map_err(|e| SourceError::Unavailable(format!("NVML could not be loaded: {e}")))?;
        let devices = nvml
            .device_count()
            .map_err(|e| SourceError::Unavailable(format!("NVML device count: {e}")))?;
        if devices == 0 {
            return Err(SourceError::Unavailable("NVML found no NVIDIA GPU".into()));
        }
        let mut parts = Vec::new();
        for i in 0..devices {
            let dev = nvml.device_by_index(i).map_err(|e| failed("device", e))?;
            let name = dev.name().unwrap_or_else(|_| format!("GPU {i}"));
            match dev.memory_info() {
                Ok(m) => parts.push(format!(
                    "{name} ({:.1} GiB)",
                    m.total as f64 / (1u64 << 30) as f64
                )),
                Err(_) => parts.push(name),
            }
        }
        // Process names are looked up only when some are configured.
        let system = if process_names.is_empty() {
            None
        } else {
            System::new().ok()
        };
        Ok(NvmlSampler {
            nvml,
            devices,
            process_names,
            system,
            names: BTreeMap::new(),
            names_since: Instant::now(),
            description: parts.join(", "),
        })
    }

    /// GPU memory per configured process name on one device, summed over processes.
    fn per_process(&mut self, index: u32) -> Result<Vec<Reading>, SourceError> {
        let dev = self
            .nvml
            .device_by_index(index)
            .map_err(|e| failed("device", e))?;
        let mut used: BTreeMap<u32, u64> = BTreeMap::new();
        // Compute (CUDA) and graphics lists may overlap; a call the GPU lacks is skipped.
        for list in [
            dev.running_compute_processes(),
            dev.running_graphics_processes(),
        ] {
            match list {
                Ok(procs) => {
                    for p in procs {
                        let bytes = match p.used_gpu_memory {
                            UsedGpuMemory::Used(b) => b,
                            UsedGpuMemory::Unavailable => 0,
                        };
                        let e = used.entry(p.pid).or_default();
                        *e = (*e).max(bytes);
                    }
                }
                Err(NvmlError::NotSupported) => {}
                Err(e) => return Err(failed("process list", e)),
            }
        }
        let device = format!("gpu{index}");
        self.learn_names(used.keys().copied());
        let names = &self.names;
        Ok(self
            .process_names
            .iter()
            .map(|pattern| {
                let mut total = 0u64;
                let mut pids = Vec::new();
                for (pid, bytes) in &used {
                    if names
                        .get(pid)
                        .is_some_and(|n| process_name_matches(n, pattern))
                    {
                        total += bytes;
                        pids.push(pid.to_string());
                    }
                }
                Reading {
                    device: device.clone(),
                    model: pattern.clone(),
                    used_bytes: total,
                    total_bytes: None,
                    extra: if pids.is_empty() {
                        String::new()
                    } else {
                        format!("pids={}", pids.join(" "))
                    },
                }
            })
            .collect())
    }

    /// Puts the names of `pids` not seen lately into `self.names`, from the process table
    /// (threads left out). A pid whose name cannot be read stays out of the map.
    fn learn_names(&mut self, pids: impl Iterator<Item = u32>) {
        if self.names_since.elapsed() >= super::rss::RESCAN_EVERY {
            // Pids are reused: forget old names now and then.
            self.names.clear();
            self.names_since = Instant::now();
        }
        let unknown: Vec<Pid> = pids
            .filter(|pid| !self.names.contains_key(pid))
            .map(Pid::from_u32)
            .collect();
        if let Some(system) = self.system.as_mut()
            && !unknown.is_empty()
        {
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&unknown),
                true,
                ProcessRefreshKind::nothing().without_tasks(),
            );
            for pid in unknown {
                if let Some(p) = system.process(pid) {
                    self.names
                        .insert(pid.as_u32(), p.name().to_string_lossy().into_owned());
                }
            }
        }
    }
}

impl BlockingSampler for NvmlSampler {
    fn name(&self) -> &str {
        "nvml"
    }

    fn sample(&mut self) -> Result<Vec<Reading>, SourceError> {
        let mut out = Vec::new();
        for i in 0..self.devices {
            let dev = self
                .nvml
                .device_by_index(i)
                .map_err(|e| failed("device", e))?;
            let mem = dev.memory_info().map_err(|e| failed("memory info", e))?;
            out.push(Reading {
                device: format!("gpu{i}"),
                model: String::new(),
                used_bytes: mem.used,
                total_bytes: Some(mem.total),
                extra: String::new(),
            });
            if !self.process_names.is_empty() {
                out.extend(self.per_process(i)?);
            }
        }
        Ok(out)
    }

    fn describe(&self) -> Option<String> {
        Some(self.description.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_driver_is_unavailable_not_a_panic() {
        // On a host with a driver and a GPU this builds a sampler; both outcomes are fine,
        // but an error must be the permanent kind, with a reason.
        match NvmlSampler::new(vec!["ollama".into()]) {
            Ok(mut s) => {
                let rows = s.sample().expect("a sample from a working GPU");
                assert!(
                    rows.iter()
                        .any(|r| r.model.is_empty() && r.total_bytes.is_some())
                );
            }
            Err(SourceError::Unavailable(reason)) => assert!(!reason.is_empty()),
            Err(other) => panic!("expected Unavailable, got {other:?}"),
        }
    }
}
