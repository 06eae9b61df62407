//! llama.cpp's router mode and llama-swap, the real binaries in `../shared/`, driven
//! through kabench's readers (`llama::router`, `llama::swap`), log parsers
//! (`llama::router_log`, `llama::swap_log`) and config writers (`llama::preset`,
//! `llama::swap_config`): what kabench counts from the status endpoints (a request
//! that found its model not loaded is cold) must equal what the server's own log
//! says (spawns, LRU evictions, wakes from sleep, TTL unloads). Each test skips with
//! one line where `../shared` lacks the binary, Python cannot write the tiny models,
//! or `KABENCH_SKIP_REAL_LLAMA=1`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kabench::llama::cell::{router_check, swap_check};
use kabench::llama::fetch::StatusClient;
use kabench::llama::preset::Preset;
use kabench::llama::router::{ModelState, state_of};
use kabench::llama::router_log::{self, RouterEvent};
use kabench::llama::swap::{self, SwapState};
use kabench::llama::swap_log::{self, SwapEvent};

use crate::common::llama::{
    BIG, SMALL, router_state, router_with_big_running, start_router, start_swap, swap_state,
    wait_router,
};
use crate::common::timing_turn;

#[test]
fn router_models_max_1_evicts_the_lru_at_every_switch() {
    let _turn = timing_turn();
    let run = tempfile::tempdir().unwrap();
    let preset = Preset {
        models: vec![],
        ..Preset::default()
    };
    let Some(server) = start_router(run.path(), 1, &preset) else {
        return;
    };
    assert_eq!(router_state(&server, SMALL), ModelState::Unloaded);
    assert_eq!(router_state(&server, BIG), ModelState::Unloaded);
    let order = [SMALL, BIG, SMALL, BIG, BIG];
    let (mut colds, mut evictions) = (0u64, 0u64);
    let mut per_model: BTreeMap<String, u64> = BTreeMap::new();
    for (i, model) in order.iter().enumerate() {
        let other = if *model == SMALL { BIG } else { SMALL };
        let before = router_state(&server, model);
        let other_before = router_state(&server, other);
        colds += u64::from(!before.is_warm());
        *per_model.entry(model.to_string()).or_default() += u64::from(!before.is_warm());
        evictions += u64::from(!before.is_warm() && other_before.has_process());
        assert_eq!(server.chat(model), 200, "request {i} for {model}");
        assert_eq!(router_state(&server, model), ModelState::Loaded);
        assert_eq!(
            router_state(&server, other),
            ModelState::Unloaded,
            "after request {i}"
        );
    }
    // Also through the async client, as a run would read it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = StatusClient::new(&format!("http://{}", server.host)).unwrap();
    let models = rt.block_on(client.router_models()).unwrap();
    assert_eq!(state_of(&models, BIG), Some(ModelState::Loaded));
    let log = server.stop();
    let check = router_check(&per_model, &log);
    assert!(
        check.len() == 2 && check.iter().all(|c| c.agrees()),
        "{check:?}"
    );
    let events = router_log::parse(&log);
    let tally = router_log::tally(&events);
    let evicts: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, RouterEvent::Evict { .. }))
        .collect();
    assert_eq!((colds, evictions), (4, 3), "switches seen in /models");
    assert_eq!(
        evicts.len() as u64,
        evictions,
        "evictions in the log: {log}"
    );
    assert_eq!(
        evicts[0],
        &RouterEvent::Evict {
            victim: SMALL.into(),
            for_model: Some(BIG.into())
        }
    );
    let spawns: u64 = tally.values().map(|t| t.spawns).sum();
    assert_eq!(spawns, colds, "each cold request is one spawn in the log");
    assert_eq!((tally[SMALL].spawns, tally[BIG].spawns), (2, 2));
    assert_eq!(
        tally
            .values()
            .map(|t| t.wakes + t.failed_exits)
            .sum::<u64>(),
        0
    );
    let exits = events
        .iter()
        .filter(|e| matches!(e, RouterEvent::Exited { .. }))
        .count();
    assert_eq!(
        exits, 4,
        "three evictions and the SIGTERM each end a child: {log}"
    );
}

#[test]
fn router_preset_sleep_wakes_match_the_log() {
    let _turn = timing_turn();
    let run = tempfile::tempdir().unwrap();
    let Some(server) = router_with_big_running(run.path(), 1) else {
        return;
    };
    let (mut spawns, mut wakes) = (0u64, 0u64);
    for round in 0..3 {
        let before = router_state(&server, SMALL);
        spawns += u64::from(before == ModelState::Unloaded);
        wakes += u64::from(before == ModelState::Sleeping);
        assert_eq!(server.chat(SMALL), 200, "round {round}");
        assert_eq!(router_state(&server, SMALL), ModelState::Loaded);
        let awake = server.rss();
        // sleep-idle-seconds = 1: asleep between 1 and 2 s after the answer.
        let took = wait_router(&server, SMALL, ModelState::Sleeping, Duration::from_secs(4));
        assert!(took < Duration::from_millis(2600), "asleep after {took:?}");
        // Sleep frees the weights (55 MB of F16 for tiny-50m) while the process stays.
        let asleep = server.rss();
        eprintln!(
            "router tree RSS: {} MB awake, {} MB asleep",
            awake >> 20,
            asleep >> 20
        );
        assert!(
            asleep + (30 << 20) < awake,
            "round {round}: {awake} B awake, {asleep} B asleep"
        );
    }
    assert_eq!((spawns, wakes), (1, 2));
    // tiny-150m has no sleep setting: still loaded seconds later.
    assert_eq!(router_state(&server, BIG), ModelState::Loaded);
    let log = server.stop();
    let kabench = BTreeMap::from([(SMALL.to_string(), spawns + wakes), (BIG.to_string(), 1)]);
    let check = router_check(&kabench, &log);
    assert!(check.iter().all(|c| c.agrees()), "{check:?}");
    let tally = router_log::tally(&router_log::parse(&log));
    let small = &tally[SMALL];
    assert_eq!(small.wakes, wakes, "wakes in the log: {log}");
    assert_eq!(small.sleeps, 3, "each round ended asleep");
    assert_eq!(small.spawns, spawns);
    assert_eq!(small.colds(), spawns + wakes);
    assert_eq!(
        (tally[BIG].sleeps, tally[BIG].wakes, tally[BIG].spawns),
        (0, 0, 1)
    );
}

#[test]
fn llama_swap_ttl_unloads_match_the_log() {
    let _turn = timing_turn();
    let run = tempfile::tempdir().unwrap();
    let Some(server) = start_swap(run.path(), 1) else {
        return;
    };
    let listed = swap::parse_model_list(server.get("/v1/models").as_bytes()).unwrap();
    assert_eq!(listed, [BIG, SMALL]);
    let (mut colds, mut unloads_seen) = (0u64, 0u64);
    for round in 0..3 {
        colds += u64::from(swap_state(&server, SMALL).is_none());
        assert_eq!(
            server.chat(SMALL),
            200,
            "round {round}: {}",
            server.log_text()
        );
        assert_eq!(swap_state(&server, SMALL), Some(SwapState::Ready));
        let ready = server.rss();
        let start = Instant::now();
        while swap_state(&server, SMALL).is_some() {
            assert!(
                start.elapsed() < Duration::from_secs(4),
                "ttl 1 never unloaded"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        unloads_seen += 1;
        // The upstream process is gone: llama-swap alone stays.
        let unloaded = server.rss();
        eprintln!(
            "llama-swap tree RSS: {} MB ready, {} MB after the TTL",
            ready >> 20,
            unloaded >> 20
        );
        assert!(
            unloaded + (30 << 20) < ready,
            "round {round}: {ready} B, then {unloaded} B"
        );
    }
    // A swap: tiny-150m stops tiny-50m (no groups: one model at a time).
    assert_eq!(server.chat(SMALL), 200);
    assert_eq!(server.chat(BIG), 200);
    assert_eq!(swap_state(&server, SMALL), None);
    assert_eq!(swap_state(&server, BIG), Some(SwapState::Ready));
    colds += 2;
    let log = server.stop();
    let kabench = BTreeMap::from([(SMALL.to_string(), colds - 1), (BIG.to_string(), 1)]);
    let check = swap_check(&kabench, &log);
    assert!(
        check.len() == 2 && check.iter().all(|c| c.agrees()),
        "{check:?}"
    );
    let lines = swap_log::parse(&log);
    let tally = swap_log::tally(&lines);
    assert_eq!(
        tally[SMALL].ttl_unloads, unloads_seen,
        "TTL lines in the log: {log}"
    );
    assert_eq!(tally[SMALL].swapped_out, 1);
    assert_eq!(
        tally[SMALL].loads + tally[BIG].loads,
        colds,
        "each cold is a health check"
    );
    assert_eq!(tally[BIG].loads, 1);
    // Each TTL unload comes 1 to 2 s (ttl, checked once a second; 1.9 s here) after the answer
    // before it, by the log's own clock.
    let mut last_answer = None;
    let mut gaps = Vec::new();
    for line in &lines {
        match &line.event {
            SwapEvent::Request {
                path, status: 200, ..
            } if path == "/v1/chat/completions" => last_answer = line.at,
            SwapEvent::TtlUnload { model, ttl_secs } if model == SMALL => {
                assert_eq!(*ttl_secs, 1);
                gaps.push(line.at.unwrap() - last_answer.unwrap());
            }
            _ => {}
        }
    }
    assert_eq!(gaps.len(), 3);
    eprintln!("llama-swap TTL 1 s unloads after the answer: {gaps:?}");
    for gap in gaps {
        assert!(
            gap >= Duration::from_millis(950) && gap <= Duration::from_millis(2800),
            "{gap:?}"
        );
    }
    assert!(
        lines.iter().any(|l| l.event == SwapEvent::Shutdown),
        "stopped by SIGTERM"
    );
}
