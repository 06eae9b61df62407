//! llama-swap's log (its stdout with `logToStdout: proxy`), read into the events
//! kabench checks its counts against. With `logTimeFormat: stampmilli` each line
//! starts `Dec  6 17:13:44.399 [INFO] `; model lines then name the model as `<id>`.
//! At `logLevel: debug` swaps and process starts and exits are logged too. The words
//! matched are v235's; lines this reader does not know are skipped.

use std::collections::BTreeMap;
use std::time::Duration;

/// One event llama-swap logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapEvent {
    /// `<M> Executing start command: ...` (debug): an upstream is started.
    Start {
        /// The model.
        model: String,
    },
    /// `<M> Health check passed on URL`: the upstream is ready (a cold load finished).
    Ready {
        /// The model.
        model: String,
    },
    /// `group: starting swap for model M, evicting [A B]` (debug).
    Swap {
        /// The model requested.
        model: String,
        /// The running models stopped to make room.
        evicting: Vec<String>,
    },
    /// `<M> Unloading model, TTL of Ns reached`.
    TtlUnload {
        /// The model.
        model: String,
        /// The ttl it reached, in seconds.
        ttl_secs: u64,
    },
    /// `<M> process exited cleanly` (debug).
    Exited {
        /// The model.
        model: String,
    },
    /// `Request IP "METHOD PATH HTTP/x" STATUS ...`: a request answered (logged at its end).
    Request {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// The HTTP status.
        status: u16,
    },
    /// `received signal ..., shutting down`.
    Shutdown,
}

/// An event and, with `stampmilli`, the time of day it was logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapLine {
    /// Time since local midnight (`HH:MM:SS.mmm`), when the line carries it.
    pub at: Option<Duration>,
    /// What happened.
    pub event: SwapEvent,
}

const LEVELS: [&str; 4] = ["[DEBUG] ", "[INFO] ", "[WARN] ", "[ERROR] "];

/// `HH:MM:SS.mmm` as time since midnight.
fn time_of_day(token: &str) -> Option<Duration> {
    let (hms, ms) = token.split_once('.')?;
    let mut parts = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() || h > 23 || m > 59 || s > 60 || ms.len() != 3 {
        return None;
    }
    let ms: u64 = ms.parse().ok()?;
    Some(Duration::from_millis(((h * 60 + m) * 60 + s) * 1000 + ms))
}

/// Splits `<model> rest`.
fn model_prefix(msg: &str) -> Option<(&str, &str)> {
    let (model, rest) = msg.strip_prefix('<')?.split_once("> ")?;
    (!model.is_empty()).then_some((model, rest))
}

/// The event in one message (the text after the level tag).
fn event(msg: &str) -> Option<SwapEvent> {
    if let Some((model, rest)) = model_prefix(msg) {
        let model = model.to_string();
        if rest.starts_with("Executing start command: ") {
            return Some(SwapEvent::Start { model });
        }
        if rest.starts_with("Health check passed on ") {
            return Some(SwapEvent::Ready { model });
        }
        if rest == "process exited cleanly" {
            return Some(SwapEvent::Exited { model });
        }
        let secs = rest
            .strip_prefix("Unloading model, TTL of ")?
            .strip_suffix("s reached")?;
        return Some(SwapEvent::TtlUnload {
            model,
            ttl_secs: secs.parse().ok()?,
        });
    }
    if let Some(rest) = msg.strip_prefix("group: starting swap for model ") {
        let (model, evicting) = rest.split_once(", evicting [")?;
        let evicting = evicting.strip_suffix(']')?;
        return Some(SwapEvent::Swap {
            model: model.to_string(),
            evicting: evicting.split_whitespace().map(str::to_string).collect(),
        });
    }
    if let Some(rest) = msg.strip_prefix("Request ") {
        let (_, rest) = rest.split_once(" \"")?;
        let (line, rest) = rest.split_once("\" ")?;
        let mut words = line.split(' ');
        let (method, path) = (words.next()?, words.next()?);
        let status = rest.split(' ').next()?.parse().ok()?;
        return Some(SwapEvent::Request {
            method: method.to_string(),
            path: path.to_string(),
            status,
        });
    }
    if msg.starts_with("received signal ") && msg.ends_with(", shutting down") {
        return Some(SwapEvent::Shutdown);
    }
    None
}

/// Reads a llama-swap log into its events, in order.
pub fn parse(text: &str) -> Vec<SwapLine> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((at_level, level)) = LEVELS.iter().find_map(|l| line.find(l).map(|i| (i, l)))
        else {
            continue;
        };
        let msg = &line[at_level + level.len()..];
        if let Some(event) = event(msg) {
            let stamp = line[..at_level]
                .split_whitespace()
                .last()
                .and_then(time_of_day);
            out.push(SwapLine { at: stamp, event });
        }
    }
    out
}

/// What one model went through, counted from the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelTally {
    /// Upstreams that passed their health check (each a cold load).
    pub loads: u64,
    /// Unloads for idleness (`TTL of Ns reached`).
    pub ttl_unloads: u64,
    /// Times it was stopped to make room for another model (debug level).
    pub swapped_out: u64,
}

/// Per-model counts of `lines`.
pub fn tally(lines: &[SwapLine]) -> BTreeMap<String, ModelTally> {
    let mut out: BTreeMap<String, ModelTally> = BTreeMap::new();
    for line in lines {
        match &line.event {
            SwapEvent::Ready { model } => out.entry(model.clone()).or_default().loads += 1,
            SwapEvent::TtlUnload { model, .. } => {
                out.entry(model.clone()).or_default().ttl_unloads += 1
            }
            SwapEvent::Swap { evicting, .. } => {
                for m in evicting {
                    out.entry(m.clone()).or_default().swapped_out += 1;
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as v235 wrote them (`logLevel: debug`, `logTimeFormat: stampmilli`).
    const LOG: &str = "\
Dec  6 17:13:54.039 [DEBUG] PID: 8081
Dec  6 17:13:54.040 [INFO] llama-swap listening on http://127.0.0.1:18382
Dec  6 17:13:54.546 [DEBUG] group: starting swap for model tiny-50m, evicting []
Dec  6 17:13:54.547 [DEBUG] <tiny-50m> Executing start command: /x/llama-server --port 18491 -m /m/tiny-50m.gguf, env: 
Dec  6 17:13:54.800 [INFO] <tiny-50m> Health check passed on http://localhost:18491/health
Dec  6 17:13:54.849 [INFO] Request 127.0.0.1 \"POST /v1/chat/completions HTTP/1.1\" 200 629 \"curl/7.88.1\" 302.914267ms
Dec  6 17:13:54.863 [DEBUG] group: starting swap for model tiny-150m, evicting [tiny-50m]
Dec  6 17:13:54.871 [DEBUG] <tiny-50m> process exited cleanly
Dec  6 17:13:55.127 [INFO] <tiny-150m> Health check passed on http://localhost:18490/health
Dec  6 17:13:58.128 [INFO] <tiny-150m> Unloading model, TTL of 2s reached
Dec  6 17:13:58.256 [INFO] Request 127.0.0.1 \"POST /v1/chat/completions HTTP/1.1\" 404 60 \"curl/7.88.1\" 1.102521ms
Dec  6 17:13:58.268 [INFO] received signal terminated, shutting down
";

    #[test]
    fn reads_the_events_with_their_times() {
        let lines = parse(LOG);
        let events: Vec<&SwapEvent> = lines.iter().map(|l| &l.event).collect();
        let m = |s: &str| s.to_string();
        assert_eq!(
            events,
            vec![
                &SwapEvent::Swap {
                    model: m("tiny-50m"),
                    evicting: vec![]
                },
                &SwapEvent::Start {
                    model: m("tiny-50m")
                },
                &SwapEvent::Ready {
                    model: m("tiny-50m")
                },
                &SwapEvent::Request {
                    method: m("POST"),
                    path: m("/v1/chat/completions"),
                    status: 200
                },
                &SwapEvent::Swap {
                    model: m("tiny-150m"),
                    evicting: vec![m("tiny-50m")]
                },
                &SwapEvent::Exited {
                    model: m("tiny-50m")
                },
                &SwapEvent::Ready {
                    model: m("tiny-150m")
                },
                &SwapEvent::TtlUnload {
                    model: m("tiny-150m"),
                    ttl_secs: 2
                },
                &SwapEvent::Request {
                    method: m("POST"),
                    path: m("/v1/chat/completions"),
                    status: 404
                },
                &SwapEvent::Shutdown,
            ]
        );
        let ms = |h: u64, mi: u64, s: u64, ms: u64| {
            Some(Duration::from_millis(((h * 60 + mi) * 60 + s) * 1000 + ms))
        };
        assert_eq!(lines[0].at, ms(17, 13, 54, 546));
        assert_eq!(lines[7].at, ms(17, 13, 58, 128));
    }

    #[test]
    fn tallies_loads_ttl_unloads_and_swaps() {
        let t = tally(&parse(LOG));
        assert_eq!(
            t["tiny-50m"],
            ModelTally {
                loads: 1,
                ttl_unloads: 0,
                swapped_out: 1
            }
        );
        assert_eq!(
            t["tiny-150m"],
            ModelTally {
                loads: 1,
                ttl_unloads: 1,
                swapped_out: 0
            }
        );
    }

    #[test]
    fn lines_without_a_stamp_still_count() {
        let lines = parse("[INFO] <m> Unloading model, TTL of 30s reached\n");
        assert_eq!(lines[0].at, None);
        assert_eq!(
            lines[0].event,
            SwapEvent::TtlUnload {
                model: "m".into(),
                ttl_secs: 30
            }
        );
    }

    #[test]
    fn garbled_lines_are_skipped() {
        let log = "\
Dec  6 17:13:58.128 [INFO] <m> Unloading model, TTL of xs reached
Dec  6 17:13:58.128 [INFO] <> Health check passed on x
Dec  6 17:13:58.128 [INFO] <m Health check passed on x
Dec  6 17:13:58.128 [INFO] Request 127.0.0.1 \"POST\" 200
Dec  6 17:13:58.128 [INFO] group: starting swap for model m, evicting [a
[TRACE] <m> Health check passed on x
\u{1b}[2J \u{0}
";
        assert_eq!(parse(log), vec![]);
        assert_eq!(time_of_day("25:00:00.000"), None);
        assert_eq!(time_of_day("10:00:00.5"), None);
    }
}
