//! One test per `OLLAMA.md` rule the scheduler implements, named after the rule, on
//! millisecond-scale settings; each drives the machine by hand on virtual time.

use std::time::Duration;

use super::*;
use crate::catalogue::Catalogue;

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
        let t = self.now + ms(1000);
        self.at(t);
        assert!(self.dispatched(id).is_some(), "{model} did not load");
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
