//! `[sim]` settings into the scheduler's configuration, the catalogue and faults.

use super::*;

#[test]
fn defaults_are_ollamas() {
    let c = SimSettings::default().sched_config(7).unwrap();
    assert_eq!(
        c,
        SchedConfig {
            seed: 7,
            ..SchedConfig::default()
        }
    );
    assert_eq!(
        c.default_keep_alive.duration(),
        Some(Duration::from_secs(300))
    );
    assert_eq!(c.max_queue, 512);
}

#[test]
fn strings_parse_with_units() {
    let s = SimSettings {
        vram: Some("16GiB".into()),
        keep_alive: Some("-1".into()),
        cached_bandwidth: Some("5GB".into()),
        page_cache_warm: Some(true),
        vram_release_delay: Some("500ms".into()),
        seed: Some(3),
        ..SimSettings::default()
    };
    let c = s.sched_config(9).unwrap();
    assert_eq!(c.vram_bytes, 16 << 30);
    assert!(c.default_keep_alive.is_forever());
    assert_eq!(c.cached_bandwidth, 5e9);
    assert_eq!(c.cold_bandwidth, 5e9);
    assert_eq!(c.vram_release_delay, Duration::from_millis(500));
    assert_eq!(c.seed, 3);
}

#[test]
fn warm_overhead_is_a_range() {
    let with = |v: &[&str]| SimSettings {
        warm_overhead: Some(v.iter().map(|s| s.to_string()).collect()),
        ..SimSettings::default()
    };
    let c = with(&["1ms", "2ms"]).sched_config(0).unwrap();
    assert_eq!(
        c.warm_overhead,
        (Duration::from_millis(1), Duration::from_millis(2))
    );
    for bad in [&["1ms"][..], &["2ms", "1ms"], &["0", "0"], &["x", "1ms"]] {
        let e = with(bad).sched_config(0).unwrap_err();
        assert!(e.message.starts_with("sim.warm_overhead:"), "{}", e.message);
    }
}

#[test]
fn zero_gpus_is_a_cpu_only_host() {
    let s = SimSettings {
        gpus: Some(0),
        vram: Some("80GiB".into()),
        ..SimSettings::default()
    };
    let c = s.sched_config(1).unwrap();
    assert!(c.cpu_only());
    assert_eq!(c.usable_vram(), 0);
    assert_eq!(c.max_models(), 3);
    assert_eq!(c.default_context(), 4096, "vram is ignored without a GPU");
    assert_eq!(c.release_delay(), Duration::ZERO);
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (
            SimSettings {
                vram: Some("lots".into()),
                ..Default::default()
            },
            "sim.vram: bad size",
        ),
        (
            SimSettings {
                keep_alive: Some("1d".into()),
                ..Default::default()
            },
            "sim.keep_alive:",
        ),
        (
            SimSettings {
                vram_release_delay: Some("6s".into()),
                ..Default::default()
            },
            "sim.vram_release_delay:",
        ),
        (
            SimSettings {
                fit_headroom: Some(1.5),
                ..Default::default()
            },
            "sim.fit_headroom:",
        ),
        (
            SimSettings {
                cold_bandwidth: Some("0".into()),
                ..Default::default()
            },
            "sim.cold_bandwidth:",
        ),
        (
            SimSettings {
                faults: FaultSettings {
                    failed_load: Some(2.0),
                    ..Default::default()
                },
                ..Default::default()
            },
            "sim.faults.failed_load:",
        ),
    ];
    for (s, prefix) in cases {
        let e = s.sched_config(0).unwrap_err();
        assert!(e.message.starts_with(prefix), "{} vs {prefix}", e.message);
    }
    let s = SimSettings {
        faults: FaultSettings {
            error_500: Some(-0.1),
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(
        s.faults()
            .unwrap_err()
            .message
            .starts_with("sim.faults.error_500:")
    );
}

#[test]
fn for_tests_loads_fast() {
    let c = SimSettings::for_tests().sched_config(1).unwrap();
    let cat = SimSettings::for_tests().catalogue();
    let m = cat.resolve("qwen2.5:7b").unwrap();
    let cold = c.runtime_start.as_secs_f64() + m.file_bytes as f64 / c.cold_bandwidth;
    assert!((0.05..0.2).contains(&cold), "{cold}");
    assert_eq!(c.vram_release_delay, Duration::from_millis(20));
    assert!(!SimSettings::for_tests().faults().unwrap().any());
}

#[test]
fn the_answer_delay_and_finish_lag_faults_read_and_are_bounded() {
    type Set = fn(&mut FaultSettings, String);
    type Get = fn(&Faults) -> Duration;
    let cases: [(&str, Set, Get, &str, &str); 2] = [
        ("delay", |f, d| f.delay = Some(d), |f| f.delay, "2m", "60s"),
        (
            "finish_lag",
            |f, d| f.finish_lag = Some(d),
            |f| f.finish_lag,
            "11s",
            "10s",
        ),
    ];
    for (key, set, get, over, limit) in cases {
        let with = |d: &str| {
            let mut s = SimSettings::default();
            set(&mut s.faults, d.into());
            s
        };
        let f = with("300ms").faults().unwrap();
        assert_eq!(get(&f), Duration::from_millis(300), "{key}");
        assert!(f.any(), "{key}");
        let e = with(over).faults().unwrap_err();
        assert!(
            e.message.starts_with(&format!("sim.faults.{key}")) && e.message.contains(limit),
            "{}",
            e.message
        );
    }
}
