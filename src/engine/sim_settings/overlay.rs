//! `kabench sim`'s flags laid over a scenario's `[sim]`: every flag that was given
//! wins, every one that was not leaves the setting as it was.

use crate::engine::sim_settings::{FaultSettings, SimSettings};

impl SimSettings {
    /// Takes every field that `flags` sets (the flags of `kabench sim`, written into a
    /// `SimSettings`), faults included; the rest stays.
    pub fn overlay(&mut self, flags: SimSettings) {
        macro_rules! take {
            ($($field:ident),*) => { $( if flags.$field.is_some() { self.$field = flags.$field; } )* };
        }
        take!(
            vram,
            gpus,
            max_loaded_models,
            num_parallel,
            max_queue,
            keep_alive,
            context_length,
            load_timeout,
            reserve,
            fit_headroom,
            runtime_start,
            cached_bandwidth,
            cold_bandwidth,
            page_cache_warm,
            vram_release_delay,
            load_jitter,
            seed,
            e7_revive_bug,
            warm_overhead,
            calibrate
        );
        if !flags.models.is_empty() {
            self.models = flags.models;
        }
        self.faults.overlay(flags.faults);
    }
}

impl FaultSettings {
    /// Takes every fault that `flags` sets; the rest stays.
    pub fn overlay(&mut self, flags: FaultSettings) {
        macro_rules! take {
            ($($field:ident),*) => { $( if flags.$field.is_some() { self.$field = flags.$field; } )* };
        }
        take!(
            error_500,
            midstream_error,
            drop_connection,
            slow_stream,
            stalled_load,
            stall,
            failed_load,
            slow_factor,
            delay,
            finish_lag
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_where_given_and_leave_the_rest() {
        let mut settings = SimSettings {
            vram: Some("24GiB".into()),
            gpus: Some(2),
            faults: FaultSettings {
                error_500: Some(0.1),
                stall: Some("30s".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        settings.overlay(SimSettings {
            gpus: Some(0),
            page_cache_warm: Some(true),
            faults: FaultSettings {
                error_500: Some(0.5),
                ..Default::default()
            },
            ..Default::default()
        });
        assert_eq!(settings.vram.as_deref(), Some("24GiB"));
        assert_eq!(settings.gpus, Some(0));
        assert_eq!(settings.page_cache_warm, Some(true));
        assert_eq!(settings.faults.error_500, Some(0.5));
        assert_eq!(settings.faults.stall.as_deref(), Some("30s"));
    }
}
