//! The catalogue as the simulator sees it (`kabench models`): each model's file and
//! resident size, KV cache per token, load times from a warm and a cold page cache, and
//! decode speed, with where each figure comes from.

use std::fmt::Write;

use crate::engine::sim_settings::SimSettings;
use crate::units;

/// The listing of the default simulated host's catalogue, resident sizes at `num_ctx`;
/// `sources` adds each model's aliases and source line.
pub fn catalogue_listing(num_ctx: u32, sources: bool) -> anyhow::Result<String> {
    let settings = SimSettings::default();
    let config = settings.sched_config(0)?;
    let catalogue = settings.catalogue();
    let mut out = String::new();
    writeln!(
        out,
        "{:<30} {:<7} {:>10} {:>18} {:>11} {:>9} {:>8} {:>8}",
        "model",
        "quant",
        "file",
        format!("resident@{num_ctx}"),
        "KV/token",
        "load warm",
        "load cold",
        "decode"
    )?;
    for m in &catalogue.models {
        let size = crate::engine::sched::predicted_size(m, num_ctx, config.slots());
        writeln!(
            out,
            "{:<30} {:<7} {:>10} {:>18} {:>8} KiB {:>8.2}s {:>8.2}s {:>5.0} t/s",
            m.name,
            m.quantization,
            units::format_bytes(m.file_bytes),
            units::format_bytes(size),
            m.kv_bytes_per_token() / 1024,
            config.load_secs(m, true),
            config.load_secs(m, false),
            m.decode_tps
        )?;
        if sources {
            writeln!(
                out,
                "    aliases: {}; source: {}",
                m.aliases.join(", "),
                m.source
            )?;
        }
    }
    writeln!(
        out,
        "load = runtime start {:?} + file / bandwidth (page cache {:.0} GB/s; first load from a cold disk {:.0} GB/s), or a measured load time plus the slower first read, ±{:.0}% seeded jitter",
        config.runtime_start,
        config.cached_bandwidth / 1e9,
        config.cold_bandwidth / 1e9,
        config.load_jitter * 100.0
    )?;
    Ok(out)
}
