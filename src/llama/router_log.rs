//! The llama.cpp router's log (its stdout and stderr, child lines copied in with a
//! `[port]` prefix), read into the events kabench checks its own counts against:
//! spawns (each a cold load), LRU evictions, instance exits, and each child's entering
//! and leaving the sleeping state, put on its model by the port the spawn line named.
//! Lines this reader does not know are skipped; the words matched are b10488's
//! (`tools/server/server-models.cpp`, `server-queue.cpp`, `server.cpp`).

use std::collections::{BTreeMap, HashMap};

/// One event the router or a child logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterEvent {
    /// `load: spawning server instance with name=M on port P`: a child starts (cold).
    Spawn {
        /// The model.
        model: String,
        /// The child's port.
        port: u16,
    },
    /// `join: models_max reached, request for name=M queued`: a request waits for a slot.
    Queued {
        /// The model requested.
        model: String,
    },
    /// `evicting idle LRU name=V to make room for name=M` (a request) or
    /// `unload_lru: ... removing LRU name=V` (`POST /models/load`; `for_model` is `None`).
    Evict {
        /// The model evicted.
        victim: String,
        /// The model it made room for, when logged.
        for_model: Option<String>,
    },
    /// `instance name=M exited with status N`.
    Exited {
        /// The model.
        model: String,
        /// Its exit status.
        status: i64,
    },
    /// A child's `server is entering sleeping state`.
    Sleep {
        /// The child's port.
        port: u16,
        /// Its model, from the last spawn on that port (`None` if no spawn was seen).
        model: Option<String>,
    },
    /// A child's `server is exiting sleeping state`: a request woke it.
    Wake {
        /// The child's port.
        port: u16,
        /// Its model, as for [`RouterEvent::Sleep`].
        model: Option<String>,
    },
}

/// The word after `key` (`name=`) up to the next space, if present.
fn word_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    let rest = &text[at..];
    let word = rest.split(char::is_whitespace).next().unwrap_or("");
    (!word.is_empty()).then_some(word)
}

/// Splits a child's `[port] ` prefix off a line.
fn child_prefix(line: &str) -> Option<(u16, &str)> {
    let rest = line.strip_prefix('[')?;
    let (port, rest) = rest.split_once("] ")?;
    Some((port.parse().ok()?, rest))
}

/// Reads a router log into its events, in order.
pub fn parse(text: &str) -> Vec<RouterEvent> {
    let mut ports: HashMap<u16, String> = HashMap::new();
    let mut events = Vec::new();
    for line in text.lines() {
        if let Some((port, rest)) = child_prefix(line) {
            let model = || ports.get(&port).cloned();
            if rest.contains("handle_sleep: server is entering sleeping state") {
                events.push(RouterEvent::Sleep {
                    port,
                    model: model(),
                });
            } else if rest.contains("handle_sleep: server is exiting sleeping state") {
                events.push(RouterEvent::Wake {
                    port,
                    model: model(),
                });
            }
            continue;
        }
        if line.contains("load: spawning server instance with name=") {
            let model = word_after(line, "name=");
            let port = word_after(line, " on port ").and_then(|p| p.parse().ok());
            if let (Some(model), Some(port)) = (model, port) {
                ports.insert(port, model.to_string());
                events.push(RouterEvent::Spawn {
                    model: model.to_string(),
                    port,
                });
            }
        } else if line.contains("join: models_max reached, request for name=") {
            if let Some(model) = word_after(line, "name=") {
                events.push(RouterEvent::Queued {
                    model: model.to_string(),
                });
            }
        } else if line.contains("ensure_model: evicting idle LRU name=") {
            let victim = word_after(line, "LRU name=");
            let for_model = word_after(line, "to make room for name=");
            if let Some(victim) = victim {
                events.push(RouterEvent::Evict {
                    victim: victim.to_string(),
                    for_model: for_model.map(str::to_string),
                });
            }
        } else if line.contains("unload_lru: models_max limit reached, removing LRU name=") {
            if let Some(victim) = word_after(line, "LRU name=") {
                events.push(RouterEvent::Evict {
                    victim: victim.to_string(),
                    for_model: None,
                });
            }
        } else if line.contains(" instance name=") && line.contains(" exited with status ") {
            let model = word_after(line, "instance name=");
            let status = word_after(line, "exited with status ").and_then(|s| s.parse().ok());
            if let (Some(model), Some(status)) = (model, status) {
                events.push(RouterEvent::Exited {
                    model: model.to_string(),
                    status,
                });
            }
        }
    }
    events
}

/// What one model went through, counted from the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelTally {
    /// Child processes started (each a cold load).
    pub spawns: u64,
    /// Times it was evicted to make room.
    pub evicted: u64,
    /// Times its child went to sleep.
    pub sleeps: u64,
    /// Times a request woke its child (a load in the same process).
    pub wakes: u64,
    /// Child exits with a non-zero status.
    pub failed_exits: u64,
}

impl ModelTally {
    /// Requests that found the model without its weights: a spawn or a wake.
    pub fn colds(&self) -> u64 {
        self.spawns + self.wakes
    }
}

/// Per-model counts of `events` (a sleep or wake on an unknown port is counted under
/// the empty name).
pub fn tally(events: &[RouterEvent]) -> BTreeMap<String, ModelTally> {
    let mut out: BTreeMap<String, ModelTally> = BTreeMap::new();
    let name = |m: &Option<String>| m.clone().unwrap_or_default();
    for e in events {
        match e {
            RouterEvent::Spawn { model, .. } => out.entry(model.clone()).or_default().spawns += 1,
            RouterEvent::Evict { victim, .. } => {
                out.entry(victim.clone()).or_default().evicted += 1
            }
            RouterEvent::Exited { model, status } if *status != 0 => {
                out.entry(model.clone()).or_default().failed_exits += 1
            }
            RouterEvent::Sleep { model, .. } => out.entry(name(model)).or_default().sleeps += 1,
            RouterEvent::Wake { model, .. } => out.entry(name(model)).or_default().wakes += 1,
            RouterEvent::Exited { .. } | RouterEvent::Queued { .. } => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as the b10488 router wrote them with `--models-max 1` and a preset
    /// `sleep-idle-seconds = 1` for tiny-50m (some lines left out).
    const LOG: &str = "\
0.00.120.518 I srv  llama_server: listening on http://127.0.0.1:18381
0.06.446.573 I srv  ensure_model: model name=tiny-50m is not loaded, loading...
0.06.446.632 I srv          load: spawning server instance with name=tiny-50m on port 38541
0.06.446.662 I srv          load: spawning server instance with args:
[38541] cmd_child_to_router:state:{\"state\":\"loading\",\"payload\":{\"value\":0.0}}
[38541] 0.01.328.963 I que    start_loop: entering sleeping state
[38541] cmd_child_to_router:state:{\"state\":\"sleeping\",\"payload\":null}
[38541] 0.01.329.361 I srv  handle_sleep: server is entering sleeping state
[38541] 0.03.083.478 I que    start_loop: exiting sleeping state
[38541] 0.03.083.492 I srv  handle_sleep: server is exiting sleeping state
0.09.730.241 I srv          join: models_max reached, request for name=tiny-150m queued at position 1
0.09.730.286 I srv  ensure_model: evicting idle LRU name=tiny-50m to make room for name=tiny-150m
0.09.730.303 I srv        unload: stopping model instance name=tiny-50m
0.09.736.295 I srv    operator(): instance name=tiny-50m exited with status 0
0.09.736.336 I srv  ensure_model: slot available, loading queued model name=tiny-150m
0.09.736.381 I srv          load: spawning server instance with name=tiny-150m on port 57643
0.10.076.655 I srv          join: models_max reached, request for name=tiny-50m queued at position 1
0.10.076.663 I srv  ensure_model: evicting idle LRU name=tiny-150m to make room for name=tiny-50m
0.10.085.838 I srv    operator(): instance name=tiny-150m exited with status 0
0.10.085.944 I srv          load: spawning server instance with name=tiny-50m on port 38541
[38541] 0.01.095.096 I srv  handle_sleep: server is entering sleeping state
0.11.000.000 I srv    unload_lru: models_max limit reached, removing LRU name=tiny-50m
0.11.100.000 I srv    operator(): instance name=tiny-50m exited with status 1
";

    #[test]
    fn reads_spawns_evictions_exits_and_sleep() {
        let events = parse(LOG);
        let s = |m: &str| Some(m.to_string());
        assert_eq!(
            events,
            vec![
                RouterEvent::Spawn {
                    model: "tiny-50m".into(),
                    port: 38541
                },
                RouterEvent::Sleep {
                    port: 38541,
                    model: s("tiny-50m")
                },
                RouterEvent::Wake {
                    port: 38541,
                    model: s("tiny-50m")
                },
                RouterEvent::Queued {
                    model: "tiny-150m".into()
                },
                RouterEvent::Evict {
                    victim: "tiny-50m".into(),
                    for_model: s("tiny-150m")
                },
                RouterEvent::Exited {
                    model: "tiny-50m".into(),
                    status: 0
                },
                RouterEvent::Spawn {
                    model: "tiny-150m".into(),
                    port: 57643
                },
                RouterEvent::Queued {
                    model: "tiny-50m".into()
                },
                RouterEvent::Evict {
                    victim: "tiny-150m".into(),
                    for_model: s("tiny-50m")
                },
                RouterEvent::Exited {
                    model: "tiny-150m".into(),
                    status: 0
                },
                RouterEvent::Spawn {
                    model: "tiny-50m".into(),
                    port: 38541
                },
                RouterEvent::Sleep {
                    port: 38541,
                    model: s("tiny-50m")
                },
                RouterEvent::Evict {
                    victim: "tiny-50m".into(),
                    for_model: None
                },
                RouterEvent::Exited {
                    model: "tiny-50m".into(),
                    status: 1
                },
            ]
        );
    }

    #[test]
    fn tallies_per_model() {
        let t = tally(&parse(LOG));
        let small = &t["tiny-50m"];
        assert_eq!(
            (small.spawns, small.evicted, small.sleeps, small.wakes),
            (2, 2, 2, 1)
        );
        assert_eq!((small.failed_exits, small.colds()), (1, 3));
        let big = &t["tiny-150m"];
        assert_eq!(
            (big.spawns, big.evicted, big.sleeps, big.colds()),
            (1, 1, 0, 1)
        );
    }

    #[test]
    fn a_port_reused_by_another_model_is_put_on_the_new_one() {
        let log = "\
x load: spawning server instance with name=a on port 5000
x load: spawning server instance with name=b on port 5000
[5000] y handle_sleep: server is entering sleeping state
[6000] y handle_sleep: server is exiting sleeping state
";
        let events = parse(log);
        assert_eq!(
            events[2],
            RouterEvent::Sleep {
                port: 5000,
                model: Some("b".into())
            }
        );
        assert_eq!(
            events[3],
            RouterEvent::Wake {
                port: 6000,
                model: None
            }
        );
        assert_eq!(tally(&events)[""].wakes, 1);
    }

    #[test]
    fn garbled_and_partial_lines_are_skipped() {
        let log = "\
load: spawning server instance with name= on port 1
load: spawning server instance with name=a on port notaport
[99999] handle_sleep: server is entering sleeping state
[12 handle_sleep: server is entering sleeping state
instance name=a exited with status x
ensure_model: evicting idle LRU name=
\u{1b}[2J binary \u{0} junk
";
        assert_eq!(parse(log), vec![]);
    }
}
