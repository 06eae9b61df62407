//! `kabench sim`: the simulator served until Ctrl-C, on the scenario's `[sim]` with the
//! flags (and Ollama's environment variables) laid over it.

use anyhow::Result;

use super::{BadInput, host_settings};
use crate::cli::SimArgs;
use crate::engine::sim;
use crate::engine::sim_settings::{FaultSettings, SimSettings};
use crate::scenario;
use crate::units::format_go_duration;

pub(super) async fn sim(args: SimArgs) -> Result<()> {
    let mut settings = match &args.scenario {
        Some(path) => scenario::load(path)?.sim,
        None => SimSettings::default(),
    };
    settings.overlay(flag_settings(&args));
    if let Some(dir) = &settings.calibrate {
        let calibration = crate::engine::calibrate::calibrate(std::path::Path::new(dir))
            .map_err(|e| BadInput(format!("--calibrate: {e:#}")))?;
        for line in calibration.describe() {
            eprintln!("{line}");
        }
    }
    settings
        .sched_config(args.seed)
        .map_err(|e| BadInput(format!("simulator settings: {e}")))?;
    let handle = sim::spawn(&settings, args.seed, args.listen).await?;
    eprintln!(
        "kabench sim: an Ollama-compatible model of Ollama's scheduler (rules of Ollama 0.32.15), listening on http://{}",
        handle.addr
    );
    eprintln!(
        "point any Ollama client at it: OLLAMA_HOST=http://{} ; Ctrl-C stops it",
        handle.addr
    );
    let _ = tokio::signal::ctrl_c().await;
    handle.shutdown().await;
    Ok(())
}

/// The flags as settings: what was given overrides the scenario's `[sim]`.
fn flag_settings(args: &SimArgs) -> SimSettings {
    SimSettings {
        max_queue: args.max_queue,
        context_length: args.context_length,
        load_timeout: args.load_timeout.map(format_go_duration),
        page_cache_warm: args.page_cache_warm.then_some(true),
        calibrate: args.calibrate.as_ref().map(|dir| dir.display().to_string()),
        faults: FaultSettings {
            error_500: args.fault_500,
            midstream_error: args.fault_midstream_error,
            drop_connection: args.fault_drop_connection,
            slow_stream: args.fault_slow_stream,
            stalled_load: args.fault_stalled_load,
            stall: args.fault_stall.map(format_go_duration),
            failed_load: args.fault_failed_load,
            slow_factor: None,
            delay: args.fault_delay.map(format_go_duration),
            finish_lag: args.fault_finish_lag.map(format_go_duration),
        },
        ..host_settings(&args.host, &args.server)
    }
}
