//! One test per `OLLAMA.md` rule the scheduler implements, named after the rule, on
//! millisecond-scale settings; each drives the machine by hand on virtual time.
//! Over 500 lines: one test per scheduler rule of OLLAMA.md.

use std::time::Duration;

use super::*;
use crate::engine::catalogue::Catalogue;

const Q7: &str = "qwen2.5:7b-instruct-q4_K_M";
const L8: &str = "llama3.1:8b-instruct-q4_K_M";
const M7: &str = "mistral:7b-instruct-q4_K_M";
const GIB: u64 = 1 << 30;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ka(text: &str) -> Option<KeepAlive> {
    Some(KeepAlive::parse(text).unwrap())
}

/// Settings whose load times are easy to predict: 100 ms runtime start, instant reads
/// on an infinitely fast disk, E8 50 ms, warm overhead 1–2 ms, 4096 context.
fn config() -> SchedConfig {
    SchedConfig {
        runtime_start: ms(100),
        cached_bandwidth: f64::INFINITY,
        cold_bandwidth: f64::INFINITY,
        vram_release_delay: ms(50),
        warm_overhead: (ms(1), ms(2)),
        load_jitter: 0.0,
        context_length: 4096,
        ..SchedConfig::default()
    }
}

struct Harness {
    s: Scheduler,
    now: Duration,
    events: Vec<SchedEvent>,
    next_id: u64,
}

impl Harness {
    fn new(config: SchedConfig) -> Self {
        Harness {
            s: Scheduler::new(config, Catalogue::builtin()),
            now: Duration::ZERO,
            events: Vec::new(),
            next_id: 1,
        }
    }

    fn collect(&mut self) {
        self.events.extend(self.s.drain_events());
    }

    /// Moves time to `t`, firing every timer on the way.
    fn at(&mut self, t: Duration) {
        while let Some(w) = self.s.next_wakeup() {
            if w > t {
                break;
            }
            self.s.advance(w);
        }
        self.now = t;
        self.s.advance(t);
        self.collect();
    }

    fn req(
        &mut self,
        model: &str,
        num_ctx: Option<u32>,
        keep_alive: Option<KeepAlive>,
        kind: RequestKind,
    ) -> Result<u64, SubmitError> {
        let id = self.next_id;
        self.next_id += 1;
        let r = self.s.submit(
            self.now,
            SchedRequest {
                id,
                model: model.into(),
                num_ctx,
                keep_alive,
                kind,
            },
        );
        self.collect();
        r.map(|_| id)
    }

    fn send(&mut self, model: &str, keep_alive: Option<KeepAlive>) -> u64 {
        self.req(model, None, keep_alive, RequestKind::Serve)
            .unwrap()
    }

    fn finish(&mut self, id: u64) {
        self.s.finish(self.now, id);
        self.collect();
    }

    fn cancel(&mut self, id: u64) {
        self.s.cancel(self.now, id);
        self.collect();
    }

    fn dispatched(&self, id: u64) -> Option<(Duration, bool)> {
        self.events.iter().find_map(|e| match e {
            SchedEvent::Dispatched {
                id: i,
                load_duration,
                loaded,
            } if *i == id => Some((*load_duration, *loaded)),
            _ => None,
        })
    }

    fn failed(&self, id: u64) -> Option<String> {
        self.events.iter().find_map(|e| match e {
            SchedEvent::Failed { id: i, error } if *i == id => Some(error.clone()),
            _ => None,
        })
    }

    fn unloads(&self) -> Vec<(String, &'static str)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SchedEvent::Unloaded { model, reason } => Some((model.clone(), *reason)),
                _ => None,
            })
            .collect()
    }

    fn loads_started(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SchedEvent::LoadStarted { model, .. } => Some(model.clone()),
                _ => None,
            })
            .collect()
    }

    fn resident(&self) -> Vec<String> {
        let mut names: Vec<String> = self.s.ps(self.now).into_iter().map(|m| m.name).collect();
        names.sort();
        names
    }

    fn expires(&self, model: &str) -> Option<Duration> {
        self.s
            .ps(self.now)
            .into_iter()
            .find(|m| m.name == model)
            .and_then(|m| m.expires_at)
    }

    /// Loads `model` with `keep_alive` and lets the request end at once.
    fn warm_up(&mut self, model: &str, keep_alive: Option<KeepAlive>) {
        let id = self.send(model, keep_alive);
        let limit = self.now + Duration::from_secs(120);
        while self.dispatched(id).is_none() {
            match self.s.next_wakeup() {
                Some(t) if t <= limit => self.at(t.max(self.now)),
                _ => panic!("{model} did not load"),
            }
        }
        self.finish(id);
    }
}

#[test]
fn basic_load_serve_expire() {
    let mut h = Harness::new(config());
    let id = h.send(Q7, None);
    assert!(h.dispatched(id).is_none());
    assert_eq!(h.s.next_wakeup(), Some(ms(100)));
    h.at(ms(100));
    let (ld, loaded) = h.dispatched(id).unwrap();
    assert!(loaded);
    assert!(ld > ms(100) && ld <= ms(102), "{ld:?}");
    h.at(ms(300));
    h.finish(id);
    assert_eq!(h.expires(Q7), Some(ms(300) + Duration::from_secs(300)));
    h.at(ms(300) + Duration::from_secs(300));
    assert!(h.resident().is_empty());
    assert_eq!(h.s.stats().loads, 1);
    assert_eq!(h.s.stats().expirations, 1);
}

#[test]
fn h3_unknown_model_is_not_found() {
    let mut h = Harness::new(config());
    assert_eq!(
        h.req("llama2", None, None, RequestKind::Serve),
        Err(SubmitError::NotFound("llama2".into()))
    );
    assert!(h.req("qwen2.5", None, None, RequestKind::Serve).is_ok());
}

fn with<F: FnOnce(&mut SchedConfig)>(f: F) -> SchedConfig {
    let mut c = config();
    f(&mut c);
    c
}

#[test]
fn ka5_absent_keep_alive_keeps_resident_value() {
    let mut h = Harness::new(config());
    h.warm_up(Q7, None);
    // A load without keep_alive gets OLLAMA_KEEP_ALIVE.
    assert_eq!(h.expires(Q7), Some(h.now + Duration::from_secs(300)));
    let id = h.send(Q7, ka("1h"));
    h.finish(id);
    assert_eq!(h.expires(Q7), Some(h.now + Duration::from_secs(3600)));
    h.at(h.now + ms(10));
    let id = h.send(Q7, None);
    h.finish(id);
    assert_eq!(h.expires(Q7), Some(h.now + Duration::from_secs(3600)));
}

#[test]
fn ka6_last_dispatched_keep_alive_wins() {
    let mut h = Harness::new(with(|c| c.num_parallel = 2));
    h.warm_up(Q7, None);
    let a = h.send(Q7, ka("1h"));
    let b = h.send(Q7, ka("10s"));
    h.at(h.now + ms(100));
    h.finish(b);
    h.at(h.now + ms(100));
    h.finish(a);
    assert_eq!(h.expires(Q7), Some(h.now + Duration::from_secs(10)));
}

#[test]
fn t1_countdown_starts_at_last_request_end() {
    let mut h = Harness::new(with(|c| c.num_parallel = 2));
    h.warm_up(Q7, ka("10s"));
    let a = h.send(Q7, None);
    let b = h.send(Q7, None);
    h.at(h.now + ms(500));
    h.finish(a);
    h.at(h.now + Duration::from_secs(20));
    assert_eq!(h.resident(), vec![Q7.to_string()], "expired while busy");
    h.finish(b);
    let end = h.now;
    h.at(end + Duration::from_secs(10) - ms(1));
    assert_eq!(h.resident().len(), 1);
    h.at(end + Duration::from_secs(10));
    assert!(h.resident().is_empty());
}

#[test]
fn t2_request_stops_countdown_which_restarts_when_idle() {
    let mut h = Harness::new(config());
    h.warm_up(Q7, ka("10s"));
    let idle = h.now;
    h.at(idle + Duration::from_secs(5));
    let id = h.send(Q7, None);
    h.at(idle + Duration::from_secs(20));
    assert_eq!(h.resident().len(), 1);
    h.finish(id);
    h.at(idle + Duration::from_secs(29));
    assert_eq!(h.resident().len(), 1);
    h.at(idle + Duration::from_secs(30));
    assert!(h.resident().is_empty());
}

#[test]
fn t3_keep_alive_zero_unloads_once_idle_unless_later_nonzero() {
    let mut h = Harness::new(with(|c| c.num_parallel = 2));
    h.warm_up(Q7, ka("0"));
    assert!(h.resident().is_empty());
    assert_eq!(h.unloads(), vec![(Q7.to_string(), "expired")]);
    h.warm_up(Q7, None);
    let a = h.send(Q7, ka("0"));
    let b = h.send(Q7, ka("5m"));
    h.finish(a);
    h.finish(b);
    assert_eq!(h.resident().len(), 1);
}

#[test]
fn t4_expired_model_leaves_at_once_unless_request_slips_in() {
    let mut h = Harness::new(config());
    h.warm_up(Q7, ka("10s"));
    let deadline = h.now + Duration::from_secs(10);
    assert_eq!(h.s.next_wakeup(), Some(deadline));
    h.at(deadline);
    assert!(h.resident().is_empty());

    let mut h = Harness::new(config());
    h.warm_up(Q7, ka("10s"));
    let deadline = h.now + Duration::from_secs(10);
    h.now = deadline;
    let id = h.send(Q7, None);
    assert!(h.dispatched(id).is_some());
    h.at(deadline + Duration::from_secs(60));
    assert_eq!(h.resident().len(), 1);
    h.finish(id);
    h.at(h.now + Duration::from_secs(10));
    assert!(h.resident().is_empty());
}

#[test]
fn t5_forever_never_expires_but_is_evictable() {
    let mut h = Harness::new(with(|c| c.max_loaded_models = 1));
    h.warm_up(Q7, ka("-1"));
    assert_eq!(h.expires(Q7), None);
    h.at(h.now + Duration::from_secs(365 * 86400));
    assert_eq!(h.resident(), vec![Q7.to_string()]);
    h.warm_up(L8, None);
    assert_eq!(h.resident(), vec![L8.to_string()]);
    assert_eq!(h.unloads(), vec![(Q7.to_string(), "evicted")]);
}

const Q14_Q8: &str = "qwen2.5:14b-instruct-q8_0";
const Q14_F16: &str = "qwen2.5:14b-instruct-fp16";

#[test]
fn e1_fits_beside_only_within_headroom_of_free_vram() {
    let cat = Catalogue::builtin();
    let big = predicted_size(cat.resolve(Q14_Q8).unwrap(), 4096, 1);
    let small = predicted_size(cat.resolve(L8).unwrap(), 4096, 1);
    let free = 23 * GIB - small;
    // The test only means something if the big model fits raw but not in 80%.
    assert!(big < free && big as f64 > 0.8 * free as f64);
    let mut h = Harness::new(config());
    h.warm_up(L8, None);
    h.warm_up(Q7, None);
    assert_eq!(h.resident().len(), 2, "a small model loads beside");
    assert!(h.unloads().is_empty());
    let mut h = Harness::new(config());
    h.warm_up(L8, None);
    h.warm_up(Q14_Q8, None);
    assert_eq!(h.resident(), vec![Q14_Q8.to_string()]);
    assert_eq!(h.unloads(), vec![(L8.to_string(), "evicted")]);
}

#[test]
fn e1_predicted_size_counts_file_kv_and_batch() {
    let cat = Catalogue::builtin();
    let m = cat.resolve(L8).unwrap();
    let base = m.file_bytes + 300 * 1024 * 1024;
    assert_eq!(predicted_size(m, 4096, 1), base + GIB / 2);
    assert_eq!(predicted_size(m, 8192, 1), base + GIB + 768 * 1024 * 1024);
    assert_eq!(predicted_size(m, 32768, 2), base + 8 * GIB + 2 * GIB);
}

#[test]
fn e2_lone_model_loads_spilling_to_cpu() {
    let mut h = Harness::new(config());
    h.warm_up(Q7, None);
    h.warm_up(Q14_F16, None);
    let ps = h.s.ps(h.now);
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].name, Q14_F16);
    assert!(ps[0].size_vram < ps[0].size);
    assert_eq!(ps[0].size_vram, 23 * GIB);
    assert_eq!(h.unloads(), vec![(Q7.to_string(), "evicted")]);
}

#[test]
fn e3_victim_is_idle_shortest_keep_alive() {
    let mut h = Harness::new(with(|c| c.max_loaded_models = 3));
    h.warm_up(Q7, ka("-1"));
    h.warm_up(L8, ka("1m"));
    h.warm_up(M7, ka("10m"));
    let busy = h.send(L8, None);
    h.warm_up("llama3.2:3b", None);
    // L8 is shortest but busy; the forever model goes last.
    assert_eq!(h.unloads(), vec![(M7.to_string(), "evicted")]);
    h.finish(busy);
    h.warm_up("qwen2.5:3b", None);
    assert_eq!(h.unloads()[1], (L8.to_string(), "evicted"));
}

#[test]
fn e3_busy_victim_is_marked_and_forever_never_pins() {
    let mut h = Harness::new(with(|c| c.max_loaded_models = 1));
    h.warm_up(Q7, ka("-1"));
    let busy = h.send(Q7, None);
    let waiting = h.send(L8, None);
    h.at(h.now + Duration::from_secs(5));
    assert!(h.dispatched(waiting).is_none());
    assert_eq!(h.resident(), vec![Q7.to_string()]);
    // Marked: a new request for it no longer attaches.
    let late = h.send(Q7, None);
    assert!(h.dispatched(late).is_none());
    h.finish(busy);
    assert_eq!(h.unloads(), vec![(Q7.to_string(), "evicted")]);
    h.at(h.now + ms(200));
    assert!(h.dispatched(waiting).is_some());
}

#[test]
fn e4_one_victim_at_a_time_then_alone() {
    let mut h = Harness::new(config());
    h.warm_up(L8, None);
    h.warm_up(M7, None);
    let t0 = h.now;
    let id = h.send(Q14_F16, None);
    assert_eq!(h.unloads().len(), 1, "first victim only");
    h.at(t0 + ms(49));
    assert_eq!(h.unloads().len(), 1);
    h.at(t0 + ms(50));
    assert_eq!(h.unloads().len(), 2, "second victim after the E8 wait");
    assert!(h.loads_started().len() == 2);
    h.at(t0 + ms(100));
    assert_eq!(h.loads_started().len(), 3);
    h.at(t0 + ms(200));
    assert_eq!(h.dispatched(id).map(|d| d.1), Some(true));
    assert_eq!(h.resident(), vec![Q14_F16.to_string()]);
}

#[test]
fn e5_max_loaded_models_evicts() {
    let mut h = Harness::new(config());
    for m in [Q7, L8, "llama3.2:3b"] {
        h.warm_up(m, None);
    }
    assert_eq!(h.resident().len(), 3, "0 means 3 per GPU");
    h.warm_up("qwen2.5:3b", None);
    assert_eq!(h.resident().len(), 3);
    assert_eq!(h.s.stats().evictions, 1);

    let mut h = Harness::new(with(|c| c.max_loaded_models = 1));
    h.warm_up("qwen2.5:3b", None);
    h.warm_up("nomic-embed-text", None);
    // `/api/ps` names it by its tag, as Ollama does (P1).
    assert_eq!(h.resident(), vec!["nomic-embed-text:latest".to_string()]);
}

#[test]
fn e6_unload_request_answers_at_once_and_unloads_when_idle() {
    let mut h = Harness::new(config());
    let id = h.req(Q7, None, ka("0"), RequestKind::Unload).unwrap();
    assert!(
        h.dispatched(id).is_some(),
        "answered for a model not loaded"
    );
    h.finish(id);
    h.warm_up(Q7, ka("-1"));
    let busy = h.send(Q7, None);
    let un = h.req(Q7, None, ka("0"), RequestKind::Unload).unwrap();
    let (ld, loaded) = h.dispatched(un).unwrap();
    assert!(!loaded && ld < ms(10));
    h.finish(un);
    assert_eq!(h.resident().len(), 1, "busy: waits for its requests");
    h.finish(busy);
    assert!(h.resident().is_empty());
    assert_eq!(h.unloads(), vec![(Q7.to_string(), "unload")]);
    assert_eq!(h.s.stats().expirations, 0);
    // During a load: the model leaves once its loader's request ends.
    let loader = h.send(Q7, None);
    let un = h.req(Q7, None, ka("0"), RequestKind::Unload).unwrap();
    assert!(h.dispatched(un).is_some());
    h.at(h.now + ms(200));
    assert!(h.dispatched(loader).is_some());
    assert_eq!(h.resident().len(), 1);
    h.finish(loader);
    assert!(h.resident().is_empty());
}

#[test]
fn e7_revive_bug_hangs_the_waiting_load() {
    for bug in [false, true] {
        let mut h = Harness::new(with(|c| {
            c.max_loaded_models = 1;
            c.num_parallel = 2;
            c.e7_revive_bug = bug;
        }));
        h.warm_up(Q7, None);
        let busy = h.send(Q7, None);
        let cold = h.send(L8, None);
        let revive = h.send(Q7, ka("5m"));
        assert_eq!(h.dispatched(revive).is_some(), bug);
        h.finish(busy);
        h.at(h.now + ms(500));
        if bug {
            h.finish(revive);
            h.at(h.now + Duration::from_secs(60));
            assert!(h.dispatched(cold).is_none(), "the cold load hangs");
            assert_eq!(h.resident(), vec![Q7.to_string()]);
        } else {
            assert!(h.dispatched(cold).is_some());
        }
    }
}

#[test]
fn e8_load_waits_for_release_delay_after_unload() {
    let mut h = Harness::new(with(|c| c.max_loaded_models = 1));
    h.warm_up(Q7, None);
    let t0 = h.now;
    h.send(L8, None);
    let until = h.events.iter().rev().find_map(|e| match e {
        SchedEvent::LoadStarted { until, .. } => Some(*until),
        _ => None,
    });
    assert_eq!(until, Some(ms(100)), "no new load yet");
    h.at(t0 + ms(50));
    let until = h.events.iter().rev().find_map(|e| match e {
        SchedEvent::LoadStarted { until, .. } => Some(*until),
        _ => None,
    });
    assert_eq!(until, Some(t0 + ms(50) + ms(100)));
}

#[test]
fn l1_one_load_at_a_time() {
    let mut h = Harness::new(config());
    let a = h.send(Q7, None);
    let b = h.send("qwen2.5:3b", None);
    assert_eq!(h.loads_started(), vec![Q7.to_string()]);
    h.at(ms(99));
    assert_eq!(h.loads_started().len(), 1);
    h.at(ms(100));
    assert!(h.dispatched(a).is_some());
    assert_eq!(h.loads_started().len(), 2);
    assert!(h.dispatched(b).is_none());
    h.at(ms(200));
    assert!(h.dispatched(b).is_some());
}

#[test]
fn l2_concurrent_first_requests_share_one_load() {
    let mut h = Harness::new(with(|c| c.num_parallel = 4));
    let ids: Vec<u64> = (0..3).map(|_| h.send(Q7, None)).collect();
    h.at(ms(100));
    assert_eq!(h.loads_started().len(), 1);
    for id in ids {
        assert_eq!(h.dispatched(id).map(|d| d.1), Some(true));
    }
    assert_eq!(h.s.stats().loads, 1);
}

#[test]
fn l3_loading_model_is_absent_from_ps() {
    let mut h = Harness::new(config());
    h.send(Q7, None);
    h.at(ms(50));
    assert!(h.s.ps(h.now).is_empty());
    h.at(ms(100));
    assert_eq!(h.resident(), vec![Q7.to_string()]);
}

#[test]
fn l4_cancelled_loader_abandons_load() {
    let mut h = Harness::new(config());
    let a = h.send(Q7, None);
    let b = h.send(L8, None);
    let c = h.send("qwen2.5:3b", None);
    h.at(ms(50));
    h.cancel(b);
    h.cancel(a);
    h.at(ms(1000));
    assert!(h.dispatched(a).is_none() && h.dispatched(b).is_none());
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, SchedEvent::Loaded { model, .. } if model == Q7))
    );
    assert_eq!(h.resident(), vec!["qwen2.5:3b".to_string()]);
    assert_eq!(
        h.loads_started(),
        vec![Q7.to_string(), "qwen2.5:3b".to_string()]
    );
    assert!(h.dispatched(c).is_some());
    // The abandoned load never reached the page cache: the next one is cold again.
    assert_eq!(h.s.stats().loads, 1);
}

#[test]
fn l5_other_num_ctx_waits_then_reloads() {
    let mut h = Harness::new(config());
    let first = h.req(Q7, Some(4096), None, RequestKind::Serve).unwrap();
    h.at(ms(100));
    let t = h.now;
    let other = h.req(Q7, Some(8192), None, RequestKind::Serve).unwrap();
    h.at(t + ms(500));
    assert!(
        h.dispatched(other).is_none(),
        "waits for the running request"
    );
    assert!(h.unloads().is_empty());
    h.finish(first);
    assert_eq!(h.unloads(), vec![(Q7.to_string(), "reload")]);
    h.at(t + ms(500) + ms(150));
    let (ld, loaded) = h.dispatched(other).unwrap();
    assert!(loaded && ld >= ms(650), "{ld:?}");
    assert_eq!(h.s.ps(h.now)[0].context_length, 8192);
    // Clamped to the training context: 32768 for qwen2.5, so 40000 == 32768.
    h.finish(other);
    let a = h.req(Q7, Some(40_000), None, RequestKind::Serve).unwrap();
    h.at(h.now + ms(1000));
    h.finish(a);
    let b = h.req(Q7, Some(32_768), None, RequestKind::Serve).unwrap();
    assert!(h.dispatched(b).is_some());
}

#[test]
fn l6_absent_num_ctx_reloads_explicit_one() {
    let mut h = Harness::new(config());
    let a = h.req(Q7, Some(8192), None, RequestKind::Serve).unwrap();
    h.at(ms(100));
    h.finish(a);
    let b = h.send(Q7, None);
    assert!(h.dispatched(b).is_none());
    assert_eq!(h.unloads(), vec![(Q7.to_string(), "reload")]);
    h.at(h.now + ms(200));
    assert_eq!(h.s.ps(h.now)[0].context_length, 4096);
    assert_eq!(h.s.stats().loads, 2);
}

#[test]
fn l7_default_context_by_vram_clamped_to_training() {
    let ctx = |vram_gib: u64, setting: u32, model: &str| {
        let mut h = Harness::new(with(|c| {
            c.vram_bytes = vram_gib * GIB;
            c.context_length = setting;
        }));
        h.warm_up(model, None);
        h.s.ps(h.now)[0].context_length
    };
    assert_eq!(ctx(16, 0, L8), 4096);
    assert_eq!(ctx(24, 0, L8), 32768);
    assert_eq!(ctx(80, 0, L8), 131072, "262144 clamped to llama3.1's 128k");
    assert_eq!(ctx(80, 0, Q7), 32768);
    assert_eq!(ctx(24, 8192, L8), 8192);
}

#[test]
fn l8_parallel_slots_and_kv_for_all_slots() {
    let cat = Catalogue::builtin();
    let kv = cat.resolve(Q7).unwrap().kv_bytes_per_token() * 4096;
    let size = |parallel: u32, model: &str| {
        let mut h = Harness::new(with(|c| c.num_parallel = parallel));
        h.warm_up(model, None);
        h.s.ps(h.now)[0].size
    };
    // 2 × 4096 crosses E1's 4096 batch threshold (+768 MiB).
    assert_eq!(size(2, Q7) - size(1, Q7), kv + 768 * 1024 * 1024);
    assert_eq!(size(0, Q7), size(1, Q7), "0 counts as 1");
    assert_eq!(size(4, "nomic-embed-text"), size(1, "nomic-embed-text"));
    let mut h = Harness::new(with(|c| c.num_parallel = 4));
    h.warm_up("nomic-embed-text", None);
    let a = h.send("nomic-embed-text", None);
    let b = h.send("nomic-embed-text", None);
    assert!(
        h.dispatched(a).is_some() && h.dispatched(b).is_none(),
        "one slot"
    );
    h.warm_up(Q7, None);
    let ids: Vec<u64> = (0..5).map(|_| h.send(Q7, None)).collect();
    let running = ids.iter().filter(|&&i| h.dispatched(i).is_some()).count();
    assert_eq!(running, 4);
}

#[test]
fn l9_failed_load_fails_only_its_request_and_leaves_nothing() {
    let mut h = Harness::new(with(|c| c.load_failure_share = 1.0));
    let a = h.send(Q7, None);
    let b = h.send(Q7, None);
    h.at(ms(100));
    assert!(h.failed(a).is_some());
    assert!(h.failed(b).is_none(), "the next request retries the load");
    assert!(h.resident().is_empty());
    assert_eq!(h.loads_started().len(), 2);
    h.at(ms(200));
    assert!(h.failed(b).is_some());
    assert_eq!(h.s.stats().loads, 0);
}

#[test]
fn l9_stalled_load_fails_at_load_timeout() {
    let mut h = Harness::new(with(|c| {
        c.load_stall_share = 1.0;
        c.load_stall = Duration::from_secs(60);
        c.load_timeout = Duration::from_secs(5);
    }));
    let a = h.send(Q7, None);
    h.at(Duration::from_secs(5) - ms(1));
    assert!(h.failed(a).is_none());
    h.at(Duration::from_secs(5));
    assert!(h.failed(a).unwrap().contains("timed out"));
    assert!(h.resident().is_empty());

    let mut h = Harness::new(with(|c| {
        c.load_stall_share = 1.0;
        c.load_stall = Duration::from_secs(2);
        c.load_timeout = Duration::from_secs(5);
    }));
    let a = h.send(Q7, None);
    h.at(Duration::from_secs(2) + ms(100));
    assert_eq!(
        h.dispatched(a).map(|d| d.1),
        Some(true),
        "a stall shorter than the timeout completes"
    );
}

#[test]
fn q1_resident_model_attaches_at_once_never_503() {
    let mut h = Harness::new(with(|c| {
        c.max_queue = 1;
        c.runtime_start = Duration::from_secs(10);
    }));
    h.warm_up("qwen2.5:3b", None);
    let t = h.now + Duration::from_secs(10);
    h.at(t);
    h.send(L8, None);
    h.send(M7, None);
    assert_eq!(h.s.queued(), 1, "queue full");
    let warm = h.send("qwen2.5:3b", None);
    let (ld, loaded) = h.dispatched(warm).unwrap();
    assert!(!loaded && ld < ms(10));
}

#[test]
fn q2_queue_full_is_503() {
    let mut h = Harness::new(with(|c| c.max_queue = 2));
    h.send(Q7, None);
    h.send(L8, None);
    h.send(M7, None);
    assert_eq!(
        h.req("qwen2.5:3b", None, None, RequestKind::Serve),
        Err(SubmitError::QueueFull)
    );
    assert_eq!(h.s.stats().rejected, 1);
    assert_eq!(
        SubmitError::QueueFull.to_string(),
        "server busy, please try again.  maximum pending requests exceeded"
    );
    // FIFO: L8 loads before M7.
    h.at(ms(1000));
    assert_eq!(
        h.loads_started(),
        vec![Q7.to_string(), L8.to_string(), M7.to_string()]
    );
}

#[test]
fn q3_slot_wait_holds_model_and_is_not_load_duration() {
    let mut h = Harness::new(config());
    h.warm_up(Q7, ka("1s"));
    let a = h.send(Q7, None);
    let b = h.send(Q7, None);
    assert!(h.dispatched(b).is_none());
    h.at(h.now + Duration::from_secs(30));
    assert_eq!(h.resident().len(), 1, "held against unload");
    h.finish(a);
    let (ld, loaded) = h.dispatched(b).unwrap();
    assert!(!loaded && ld <= ms(2), "{ld:?}");
}

#[test]
fn m4_load_duration_warm_is_jittered_ms_never_zero() {
    let mut h = Harness::new(with(|c| c.warm_overhead = (ms(1), ms(10))));
    h.warm_up(Q7, None);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let id = h.send(Q7, None);
        let (ld, loaded) = h.dispatched(id).unwrap();
        assert!(!loaded && ld >= ms(1) && ld <= ms(10));
        seen.insert(ld);
        h.finish(id);
    }
    assert!(seen.len() > 10, "jittered");
    let mut h = Harness::new(with(|c| c.warm_overhead = (Duration::ZERO, Duration::ZERO)));
    h.warm_up(Q7, None);
    let id = h.send(Q7, None);
    assert!(h.dispatched(id).unwrap().0 > Duration::ZERO);
    // Waiting for a load counts from receipt.
    let mut h = Harness::new(config());
    h.at(ms(7));
    let id = h.send(Q7, None);
    h.at(ms(300));
    let (ld, _) = h.dispatched(id).unwrap();
    assert!(ld >= ms(100) && ld <= ms(102));
}

#[test]
fn m7_load_only_loads_then_counts_down() {
    let mut h = Harness::new(config());
    let id = h.req(Q7, None, ka("10s"), RequestKind::LoadOnly).unwrap();
    h.at(ms(100));
    assert_eq!(h.dispatched(id).map(|d| d.1), Some(true));
    h.finish(id);
    assert_eq!(h.expires(Q7), Some(ms(100) + Duration::from_secs(10)));
    // It takes no slot: it answers even while the only slot is busy.
    let busy = h.send(Q7, None);
    let load = h.req(Q7, None, None, RequestKind::LoadOnly).unwrap();
    assert!(h.dispatched(busy).is_some() && h.dispatched(load).is_some());
}

#[test]
fn p4_expires_at_by_state_and_ps_order() {
    let mut h = Harness::new(with(|c| c.max_loaded_models = 5));
    let id = h.send(Q7, ka("10s"));
    h.at(ms(100));
    assert_eq!(h.expires(Q7), Some(ms(100) + Duration::from_secs(10)));
    h.at(ms(400));
    assert_eq!(
        h.expires(Q7),
        Some(ms(400) + Duration::from_secs(10)),
        "now + keep_alive during the first request"
    );
    h.finish(id);
    let deadline = ms(400) + Duration::from_secs(10);
    h.at(ms(900));
    assert_eq!(h.expires(Q7), Some(deadline));
    let id = h.send(Q7, None);
    h.at(Duration::from_secs(20));
    assert_eq!(h.expires(Q7), Some(deadline), "stale deadline, maybe past");
    h.finish(id);
    h.warm_up("qwen2.5:3b", ka("-1"));
    h.warm_up(L8, ka("1h"));
    let names: Vec<String> = h.s.ps(h.now).into_iter().map(|m| m.name).collect();
    assert_eq!(
        names,
        vec!["qwen2.5:3b".to_string(), L8.to_string(), Q7.to_string()]
    );
    assert_eq!(h.expires("qwen2.5:3b"), None);
}

#[test]
fn p4_busy_after_idling_shows_the_expiry_set_at_idle_forever_included() {
    // As the real v0.32.15 shows: a request on a model idle forever lists it forever,
    // at the instant set when it went idle, until the request ends, whatever keep_alive
    // it asks; one asking forever on a model idle with a deadline lists that deadline.
    let mut h = Harness::new(config());
    let forever_from = |h: &Harness| {
        let ps = h.s.ps(h.now);
        ps.iter().find(|m| m.name == Q7).unwrap().forever_from
    };
    let id = h.send(Q7, ka("-1"));
    h.at(ms(100));
    assert_eq!(
        forever_from(&h),
        ms(100),
        "recomputed during the first request"
    );
    h.finish(id);
    assert_eq!(h.expires(Q7), None);
    h.at(ms(300));
    assert_eq!(forever_from(&h), ms(100), "fixed while idle");
    let id = h.send(Q7, ka("10s"));
    h.at(ms(500));
    assert_eq!(h.expires(Q7), None, "busy after idling forever");
    assert_eq!(forever_from(&h), ms(100));
    h.finish(id);
    let deadline = ms(500) + Duration::from_secs(10);
    assert_eq!(h.expires(Q7), Some(deadline));
    let id = h.send(Q7, ka("-1"));
    h.at(ms(900));
    assert_eq!(
        h.expires(Q7),
        Some(deadline),
        "busy after idling with a deadline"
    );
    h.finish(id);
    assert_eq!(h.expires(Q7), None);
    assert_eq!(forever_from(&h), ms(900));
}

#[test]
fn ps_names_model_as_first_requested() {
    let mut h = Harness::new(config());
    h.warm_up("qwen2.5:latest", None);
    h.warm_up(Q7, None);
    assert_eq!(h.resident(), vec!["qwen2.5:latest".to_string()]);
    assert_eq!(h.s.stats().loads, 1);
}

#[test]
fn cold_first_load_then_page_cache() {
    let c = with(|c| {
        c.cold_bandwidth = 1e9;
        c.cached_bandwidth = 10e9;
    });
    let file = Catalogue::builtin().resolve(Q7).unwrap().file_bytes as f64;
    let mut h = Harness::new(c);
    h.warm_up(Q7, ka("0"));
    let d1 = h.dispatched(1).unwrap().0;
    h.warm_up(Q7, ka("0"));
    let d2 = h.dispatched(2).unwrap().0;
    let expect = |bw: f64| ms(100) + Duration::from_secs_f64(file / bw);
    assert!(d1 >= expect(1e9) && d1 <= expect(1e9) + ms(2));
    assert!(d2 >= expect(10e9) && d2 <= expect(10e9) + ms(2));
}

fn trace(seed: u64) -> Vec<SchedEvent> {
    let mut h = Harness::new(with(|c| {
        c.seed = seed;
        c.load_jitter = 0.1;
        c.max_loaded_models = 2;
        c.warm_overhead = (ms(1), ms(10));
    }));
    let models = [Q7, L8, M7, "qwen2.5:3b"];
    let mut open = Vec::new();
    for i in 0..200u64 {
        h.at(ms(i * 37));
        let id = h.send(
            models[(i * 7 % 4) as usize],
            if i % 3 == 0 { ka("1s") } else { None },
        );
        open.push(id);
        if open.len() > 3 {
            let done = open.remove(0);
            h.finish(done);
        }
    }
    h.at(Duration::from_secs(3600));
    h.events
}

#[test]
fn determinism_same_seed_same_trace() {
    let a = trace(42);
    assert_eq!(a, trace(42));
    assert_ne!(a, trace(43));
    assert!(a.len() > 200);
}

/// Random traffic with cancels and mixed contexts: memory and the model cap hold at
/// every step, each request is dispatched at most once, and every request that stays
/// is eventually dispatched or failed.
#[test]
fn invariants_hold_under_random_traffic() {
    let mut h = Harness::new(with(|c| {
        c.num_parallel = 2;
        c.load_jitter = 0.2;
        c.load_failure_share = 0.05;
        c.vram_bytes = 16 * GIB;
    }));
    let models = [Q7, L8, M7, "qwen2.5:3b", Q14_Q8, "nomic-embed-text"];
    let mut x: u64 = 12345;
    let mut rand = move |n: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % n
    };
    let mut open: Vec<u64> = Vec::new();
    let mut cancelled = std::collections::HashSet::new();
    let mut accepted = Vec::new();
    let cap = h.s.config().max_models();
    let usable = h.s.config().usable_vram();
    for step in 0..2000u64 {
        let t = h.now + ms(rand(400));
        h.at(t);
        match rand(10) {
            0..=4 => {
                let ctx = [None, Some(2048), Some(4096)][rand(3) as usize];
                let keep = [None, ka("0"), ka("2s"), ka("-1")][rand(4) as usize].clone();
                let kind = if rand(20) == 0 {
                    RequestKind::LoadOnly
                } else {
                    RequestKind::Serve
                };
                if let Ok(id) = h.req(models[rand(6) as usize], ctx, keep, kind) {
                    open.push(id);
                    accepted.push(id);
                }
            }
            5..=8 if !open.is_empty() => {
                let id = open.swap_remove(rand(open.len() as u64) as usize);
                if h.dispatched(id).is_some() || h.failed(id).is_some() {
                    h.finish(id);
                } else if step % 2 == 0 {
                    h.cancel(id);
                    cancelled.insert(id);
                } else {
                    open.push(id);
                }
            }
            _ => {}
        }
        let ps = h.s.ps(h.now);
        assert!(ps.len() <= cap);
        let vram: u64 = ps.iter().map(|m| m.size_vram).sum();
        assert!(vram <= usable, "step {step}: {vram} > {usable}");
    }
    // Drain: end whatever runs until everything left has run.
    for _ in 0..10_000 {
        let (done, waiting): (Vec<u64>, Vec<u64>) = open
            .iter()
            .partition(|&&id| h.dispatched(id).is_some() || h.failed(id).is_some());
        if done.is_empty() && waiting.is_empty() {
            break;
        }
        for id in done {
            h.finish(id);
        }
        open = waiting;
        let t = h.now + Duration::from_secs(60);
        h.at(t);
    }
    let mut seen = std::collections::HashSet::new();
    for e in &h.events {
        if let SchedEvent::Dispatched { id, .. } | SchedEvent::Failed { id, .. } = e {
            assert!(seen.insert(*id), "request {id} ended twice");
            assert!(
                !cancelled.contains(id),
                "request {id} ran after its client left"
            );
        }
    }
    for id in accepted {
        if !cancelled.contains(&id) && !seen.contains(&id) {
            let ps = h.s.ps(h.now);
            panic!(
                "request {id} never dispatched; ps {ps:?}; queued {}; phase {}",
                h.s.queued(),
                h.s.debug_phase()
            );
        }
    }
}

/// A CPU-only host (`gpus` 0) with the test timings.
fn cpu() -> SchedConfig {
    with(|c| c.gpus = 0)
}

#[test]
fn e2_cpu_host_holds_everything_in_system_memory() {
    let cat = Catalogue::builtin();
    let mut h = Harness::new(cpu());
    // Together far beyond 24 GiB: without a GPU no VRAM test evicts them.
    for m in [Q14_F16, Q14_Q8, L8] {
        h.warm_up(m, None);
    }
    assert!(h.unloads().is_empty(), "{:?}", h.unloads());
    let ps = h.s.ps(h.now);
    assert_eq!(ps.len(), 3);
    for r in &ps {
        assert_eq!(r.size_vram, 0, "{}", r.name);
        let spec = cat.resolve(&r.name).unwrap();
        assert_eq!(r.size, predicted_size(spec, 4096, 1), "{}", r.name);
    }
    assert!(h.s.config().cpu_only());
    assert_eq!(h.s.config().usable_vram(), 0);
}

#[test]
fn e5_cpu_host_caps_at_three_models() {
    let mut h = Harness::new(cpu());
    assert_eq!(h.s.config().max_models(), 3, "0 means 3 with no GPU");
    for m in [Q7, L8, M7] {
        h.warm_up(m, ka("1m"));
    }
    h.warm_up(Q14_F16, None);
    assert_eq!(h.resident().len(), 3);
    assert_eq!(h.s.stats().evictions, 1);
    let mut h = Harness::new(with(|c| {
        c.gpus = 0;
        c.max_loaded_models = 1;
    }));
    h.warm_up(Q7, None);
    h.warm_up(L8, None);
    assert_eq!(h.resident(), vec![L8.to_string()]);
    assert_eq!(h.unloads(), vec![(Q7.to_string(), "evicted")]);
}

#[test]
fn e8_cpu_host_skips_the_freed_vram_wait() {
    let last_until = |h: &Harness| {
        h.events.iter().rev().find_map(|e| match e {
            SchedEvent::LoadStarted { until, .. } => Some(*until),
            _ => None,
        })
    };
    let mut h = Harness::new(with(|c| {
        c.gpus = 0;
        c.max_loaded_models = 1;
    }));
    assert_eq!(h.s.config().release_delay(), Duration::ZERO);
    h.warm_up(Q7, None);
    let t0 = h.now;
    let busy = h.send(L8, None);
    assert_eq!(h.unloads(), vec![(Q7.to_string(), "evicted")]);
    assert_eq!(last_until(&h), Some(t0 + ms(100)), "loads at once");
    // A busy victim: the load starts the moment its last request ends.
    h.at(t0 + ms(100));
    let waiting = h.send(Q7, None);
    h.at(t0 + ms(300));
    assert_eq!(h.loads_started().len(), 2, "waits for the busy victim");
    h.finish(busy);
    assert_eq!(last_until(&h), Some(t0 + ms(400)));
    h.at(t0 + ms(400));
    assert!(h.dispatched(waiting).is_some());
    h.finish(waiting);
    // L5 on a CPU host: a reload starts at once too.
    let t1 = h.now;
    let id = h.req(Q7, Some(2048), None, RequestKind::Serve).unwrap();
    assert_eq!(last_until(&h), Some(t1 + ms(100)));
    h.at(t1 + ms(100));
    assert!(h.dispatched(id).is_some());
}

#[test]
fn l7_cpu_host_default_context_is_4096() {
    let mut h = Harness::new(with(|c| {
        c.gpus = 0;
        c.context_length = 0;
    }));
    assert_eq!(h.s.config().default_context(), 4096);
    h.warm_up(L8, None);
    assert_eq!(h.s.ps(h.now)[0].context_length, 4096);
    let mut h = Harness::new(with(|c| {
        c.gpus = 0;
        c.context_length = 8192;
    }));
    h.warm_up(L8, None);
    assert_eq!(h.s.ps(h.now)[0].context_length, 8192);
}
