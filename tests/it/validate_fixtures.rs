//! The shipped scenarios load and plan as their comments say, and every bad fixture in
//! `tests/fixtures/scenarios/` fails with the line and key of its one fault.

use std::path::{Path, PathBuf};

use kabench::engine::sched::predicted_size;
use kabench::scenario::{self, Api, Arrival, TargetSpec};
use kabench::workload::{self, Limit};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn every_shipped_scenario_loads_and_starts_with_a_comment() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                s.source.starts_with("# "),
                "{} opens with what it shows",
                path.display()
            );
            // A scenario of real servers (llama-server beside Ollama) runs against
            // them, not the simulator, and names the model they share.
            let real_servers = !s.servers.is_empty();
            if !real_servers {
                assert_eq!(s.target, Some(TargetSpec::Sim), "{}", path.display());
            }
            let plan = scenario::plan(&s);
            assert!(!plan.cells.is_empty());
            for cell in &plan.cells {
                assert!(
                    cell.params.contains_key("keep_alive"),
                    "{} sweeps keep_alive",
                    path.display()
                );
                let catalogue = s.sim.catalogue();
                for st in &cell.streams {
                    assert!(
                        real_servers || catalogue.resolve(&st.model).is_some(),
                        "{} is in the catalogue",
                        st.model
                    );
                    let limit = Limit::of(st.requests, st.duration).unwrap();
                    let offsets = workload::send_offsets(&st.arrival, limit, st.seed).unwrap();
                    assert!(!offsets.is_empty());
                }
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 7);
}

#[test]
fn quickstart_sends_for_well_under_two_minutes_and_its_gaps_separate_the_cells() {
    let s = scenario::load(&repo("scenarios/quickstart.toml")).unwrap();
    let plan = scenario::plan(&s);
    let keep: Vec<&str> = plan.cells.iter().map(|c| &c.params["keep_alive"]).collect();
    assert_eq!(keep, ["0", "1s", "4s", "-1"]);
    let mut total = std::time::Duration::ZERO;
    let mut arrivals = Vec::new();
    for cell in &plan.cells {
        let st = &cell.streams[0];
        let offsets =
            workload::send_offsets(&st.arrival, Limit::Requests(st.requests.unwrap()), st.seed)
                .unwrap();
        total += *offsets.last().unwrap();
        arrivals.push(offsets);
    }
    assert!(
        arrivals.windows(2).all(|w| w[0] == w[1]),
        "every keep_alive faces the same arrivals"
    );
    // A warm request takes about 0.3 s on the simulator (100 prompt tokens at ~950/s,
    // 16 output tokens at ~76/s); a gap is cold when the idle time after it exceeds
    // keep_alive. Count with a 0.6 s margin (service and slack) so that no count hinges
    // on the exact service time.
    let gaps: Vec<f64> = arrivals[0]
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let colder_than = |ka: f64| gaps.iter().filter(|&&g| g > ka + 0.6).count();
    let near = |ka: f64| gaps.iter().any(|&g| g > ka && g <= ka + 0.6);
    assert!(!near(1.0) && !near(4.0), "no gap is borderline: {gaps:.2?}");
    let (at_1s, at_4s) = (colder_than(1.0), colder_than(4.0));
    // The counts the scenario's comment promises (plus the first request, always cold).
    assert_eq!((at_1s, at_4s), (5, 2), "{gaps:.2?}");
    // Leaves about a minute for loads, the last responses and unloads between cells.
    assert!(total.as_secs_f64() < 85.0, "sending alone takes {total:?}");
}

#[test]
fn multi_model_fits_two_of_three_models() {
    let s = scenario::load(&repo("scenarios/multi-model-24gb.toml")).unwrap();
    let config = s.sim.sched_config(s.seed).unwrap();
    let catalogue = s.sim.catalogue();
    let sizes: Vec<u64> = s
        .streams
        .iter()
        .map(|st| predicted_size(catalogue.resolve(&st.model).unwrap(), st.num_ctx, 1))
        .collect();
    let usable = config.usable_vram() as f64;
    // E1: a model loads beside others only within fit_headroom of the free VRAM.
    for a in 0..3 {
        for b in 0..3 {
            if a == b {
                continue;
            }
            let free = usable - sizes[a] as f64;
            assert!(
                sizes[b] as f64 <= config.fit_headroom * free,
                "{b} fits beside {a}: {sizes:?}"
            );
            let c = 3 - a - b;
            let free = usable - (sizes[a] + sizes[b]) as f64;
            assert!(
                sizes[c] as f64 > config.fit_headroom * free,
                "{c} does not fit: {sizes:?}"
            );
        }
    }
}

#[test]
fn bookmark_tagging_pairs_text_with_vision_in_bursts() {
    let s = scenario::load(&repo("scenarios/bookmark-tagging.toml")).unwrap();
    assert_eq!(s.streams.len(), 2);
    assert_eq!(s.streams[1].images, 1);
    assert_eq!(s.streams[0].api, Api::Generate);
    assert!(
        s.streams
            .iter()
            .all(|st| matches!(st.arrival, Arrival::OnOff { .. }))
    );
}

#[test]
fn trace_replay_reads_the_copied_slice() {
    let s = scenario::load(&repo("scenarios/trace-replay.toml")).unwrap();
    let st = &scenario::plan(&s).cells[0].streams[0];
    let offsets = workload::send_offsets(&st.arrival, Limit::Requests(1000), st.seed).unwrap();
    assert_eq!(offsets.len(), 200);
    // 521.39 s of trace at time_scale 0.5.
    let end = offsets.last().unwrap().as_secs_f64();
    assert!((end - 260.69).abs() < 0.01, "{end}");
}

/// Each bad fixture: its file, the line and key of its fault, and a word of the message.
const BAD: &[(&str, usize, &str, &str)] = &[
    (
        "bad-unknown-key.toml",
        14,
        "stream[0].max_token",
        "unknown field `max_token`",
    ),
    (
        "bad-duration.toml",
        15,
        "run.timeout",
        "bad duration \"2 minuets\"",
    ),
    (
        "bad-rate.toml",
        11,
        "stream[0].arrival.rate",
        "bad rate \"fast\"",
    ),
    (
        "bad-missing-model.toml",
        7,
        "stream[0].model",
        "missing key `model`",
    ),
    (
        "bad-keep-alive.toml",
        13,
        "sweep.keep_alive[2]",
        "bad keep_alive \"1 day\"",
    ),
    (
        "bad-quant-placeholder.toml",
        8,
        "stream[0].model",
        "no quant axis",
    ),
    ("bad-gamma-cv.toml", 9, "stream[0].arrival.cv", "bad cv 0"),
    (
        "bad-arrival-kind.toml",
        9,
        "stream[0].arrival.kind",
        "unknown arrival kind \"bursty\"",
    ),
    (
        "bad-requests-and-duration.toml",
        13,
        "run.duration",
        "both `requests` and `duration`",
    ),
    ("bad-zero-requests.toml", 12, "run.requests", "at least 1"),
    ("bad-no-streams.toml", 1, "stream", "no streams"),
    (
        "bad-trace-missing.toml",
        9,
        "stream[0].arrival.file",
        "cannot read trace",
    ),
    (
        "bad-api.toml",
        8,
        "stream[0].api",
        "unknown api \"completion\"",
    ),
    ("bad-sim-size.toml", 6, "sim.vram", "bad size"),
    (
        "bad-syntax.toml",
        8,
        "stream[0].model",
        "invalid basic string",
    ),
];

#[test]
fn every_bad_fixture_names_its_line_and_key() {
    let dir = repo("tests/fixtures/scenarios");
    let mut listed: Vec<&str> = BAD.iter().map(|b| b.0).collect();
    listed.sort_unstable();
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    present.sort_unstable();
    assert_eq!(present, listed, "every fixture is checked");
    for &(file, line, key, says) in BAD {
        let path = dir.join(file);
        let e = scenario::load(&path).expect_err(file);
        assert_eq!(e.path, path);
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(line), Some(key)),
            "{file}: {e}"
        );
        assert!(e.message.contains(says), "{file}: {e}");
        let shown = e.to_string();
        assert!(shown.contains(&format!("{file}:{line}:")), "{shown}");
        assert!(shown.contains(&format!("key `{key}`")), "{shown}");
    }
}
