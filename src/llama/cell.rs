//! One cell of a router or llama-swap sweep: its config file written into the run
//! folder under the cell's own name, and kabench's cold counts set against the ones
//! the server's own log gives (the server runs for one cell, so its whole log is the
//! cell's). A router cold is a spawn or a wake; a llama-swap cold is a load (a health
//! check passed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::preset::Preset;
use super::swap_config::SwapConfig;
use super::write::write_new_in;
use super::{router_log, swap_log};

/// Writes cell `cell`'s router preset as `cell-<cell>-router-preset.ini` in `run`.
pub fn write_router_preset(run: &Path, cell: usize, preset: &Preset) -> Result<PathBuf, String> {
    write_new_in(
        run,
        &format!("cell-{cell}-router-preset.ini"),
        &preset.to_ini()?,
    )
}

/// Writes cell `cell`'s llama-swap config as `cell-<cell>-llama-swap.yaml` in `run`.
pub fn write_swap_config(run: &Path, cell: usize, config: &SwapConfig) -> Result<PathBuf, String> {
    write_new_in(
        run,
        &format!("cell-{cell}-llama-swap.yaml"),
        &config.to_yaml()?,
    )
}

/// One model's cold count by kabench (from the status endpoint before each request)
/// and by the server's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdCheck {
    /// The model.
    pub model: String,
    /// Requests kabench counted cold.
    pub kabench: u64,
    /// Loads the log shows (router: spawns + wakes; llama-swap: health checks passed).
    pub log: u64,
}

impl ColdCheck {
    /// Whether the two counts agree.
    pub fn agrees(&self) -> bool {
        self.kabench == self.log
    }
}

/// One check per model named by either side, in name order.
fn checks(kabench: &BTreeMap<String, u64>, log: &BTreeMap<String, u64>) -> Vec<ColdCheck> {
    let names: BTreeSet<&String> = kabench.keys().chain(log.keys()).collect();
    names
        .into_iter()
        .map(|m| ColdCheck {
            model: m.clone(),
            kabench: kabench.get(m).copied().unwrap_or(0),
            log: log.get(m).copied().unwrap_or(0),
        })
        .collect()
}

/// kabench's per-model colds against the router log `text`.
pub fn router_check(kabench: &BTreeMap<String, u64>, text: &str) -> Vec<ColdCheck> {
    let log = router_log::tally(&router_log::parse(text))
        .into_iter()
        .map(|(m, t)| (m, t.colds()))
        .collect();
    checks(kabench, &log)
}

/// kabench's per-model colds against the llama-swap log `text`.
pub fn swap_check(kabench: &BTreeMap<String, u64>, text: &str) -> Vec<ColdCheck> {
    let log = swap_log::tally(&swap_log::parse(text))
        .into_iter()
        .map(|(m, t)| (m, t.loads))
        .collect();
    checks(kabench, &log)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(m, n)| (m.to_string(), *n)).collect()
    }

    #[test]
    fn router_colds_are_spawns_and_wakes() {
        let log = "\
x load: spawning server instance with name=a on port 5000
[5000] y handle_sleep: server is entering sleeping state
[5000] y handle_sleep: server is exiting sleeping state
x load: spawning server instance with name=b on port 5001
";
        let c = router_check(&counts(&[("a", 2), ("b", 0)]), log);
        assert_eq!(c.len(), 2);
        assert!(c[0].agrees(), "{c:?}");
        assert_eq!((c[1].kabench, c[1].log, c[1].agrees()), (0, 1, false));
    }

    #[test]
    fn swap_colds_are_health_checks_and_a_model_only_in_the_log_shows() {
        let log = "\
Dec  6 17:13:54.800 [INFO] <a> Health check passed on http://localhost:1/health
Dec  6 17:13:58.128 [INFO] <a> Unloading model, TTL of 2s reached
Dec  6 17:13:59.800 [INFO] <a> Health check passed on http://localhost:1/health
Dec  6 17:14:00.800 [INFO] <z> Health check passed on http://localhost:2/health
";
        let c = swap_check(&counts(&[("a", 2)]), log);
        assert_eq!(
            c,
            vec![
                ColdCheck {
                    model: "a".into(),
                    kabench: 2,
                    log: 2
                },
                ColdCheck {
                    model: "z".into(),
                    kabench: 0,
                    log: 1
                },
            ]
        );
    }

    #[test]
    fn each_cell_gets_its_own_file() {
        let run = tempfile::tempdir().unwrap();
        let p = write_router_preset(run.path(), 3, &Preset::default()).unwrap();
        assert_eq!(p, run.path().join("cell-3-router-preset.ini"));
        assert!(write_router_preset(run.path(), 3, &Preset::default()).is_err());
        let cfg = SwapConfig {
            health_check_timeout: 15,
            start_port: 5800,
            models: vec![],
        };
        let p = write_swap_config(run.path(), 3, &cfg).unwrap();
        assert!(std::fs::read_to_string(p).unwrap().contains("models:\n"));
    }
}
