//! The public traces of `../shared/traces` as inputs: ServeGen's per-client windows
//! (`client_id,window_start_s,rate_rps,iat_cv,iat_dist,dist_shape,dist_scale`: one
//! client's rate over 600 s and the Gamma or Weibull its gaps follow; the requests are
//! regenerated per window as ServeGen's loader does, `rate × 600` gaps drawn and
//! rescaled to fill the window, seeded per client and window so every pass draws the
//! same ones), and Mooncake's JSON Lines (`timestamp` ms in about 3-s buckets,
//! `input_length`, `output_length`; the requests of one bucket are spread evenly up to
//! the next bucket). Per-request CSVs (the Azure traces) are read by `request_log`.
//! [`Filtered`] cuts any input to `--slice` and `--client`. Memory stays flat: ServeGen
//! clients stream from their own part of the file and are merged in time order.
//!
//! One file per reader: `servegen`, `mooncake`, `filter` (the `--slice`/`--client` cut).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::TrafficError;

/// ServeGen's window, seconds.
pub const WINDOW_S: f64 = 600.0;

/// The columns a ServeGen windows file starts with.
const SERVEGEN_HEADER: &str = "client_id,window_start_s,rate_rps";

/// How to read a trace.
#[derive(Debug, Clone, Default)]
pub struct TraceOptions {
    /// The model of every request, or one per selected client (in `clients` order).
    pub models: Vec<String>,
    /// Clients to replay (ServeGen); empty: refused with the list of clients.
    pub clients: Vec<String>,
    /// Multiplies every gap.
    pub time_scale: f64,
    /// Seed of the regenerated gaps.
    pub seed: u64,
}

/// What kind of file `path` is: `"servegen"`, `"mooncake"` or `"csv"` (a per-request CSV).
pub fn detect(path: &Path) -> Result<&'static str, TrafficError> {
    let file = File::open(path).map_err(|e| read_error(path, e))?;
    let mut first = String::new();
    BufReader::new(file)
        .take(64 * 1024)
        .read_line(&mut first)
        .map_err(|e| read_error(path, e))?;
    let first = first.trim_start_matches('\u{feff}').trim();
    Ok(if first.starts_with('{') {
        "mooncake"
    } else if first.starts_with(SERVEGEN_HEADER) {
        "servegen"
    } else {
        "csv"
    })
}

pub(super) fn read_error(path: &Path, e: impl std::fmt::Display) -> TrafficError {
    TrafficError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

pub(super) fn sha256_of(path: &Path) -> Result<String, TrafficError> {
    let mut file = BufReader::new(File::open(path).map_err(|e| read_error(path, e))?);
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).map_err(|e| read_error(path, e))?;
    Ok(format!("{:x}", h.finalize()))
}

mod filter;
mod mooncake;
mod servegen;

pub use filter::{Filtered, parse_slice};
pub use mooncake::Mooncake;
pub use servegen::ServeGen;

/// One model per client, or one for all.
pub(super) fn models_for(
    path: &Path,
    models: &[String],
    clients: &[String],
) -> Result<Vec<String>, TrafficError> {
    match models.len() {
        0 => Err(TrafficError::Choose {
            path: path.to_path_buf(),
            what: "a trace names no model: give --model NAME (the model that serves these requests), or one per client, comma-separated".into(),
        }),
        1 => Ok(vec![models[0].clone(); clients.len().max(1)]),
        n if n == clients.len() => Ok(models.to_vec()),
        n => Err(TrafficError::Choose {
            path: path.to_path_buf(),
            what: format!(
                "--model names {n} models for {} client(s): give one for all, or one per client",
                clients.len()
            ),
        }),
    }
}

#[cfg(test)]
mod tests;
