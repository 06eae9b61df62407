//! Arrival processes as deterministic, seeded sequences of intended send offsets
//! (time from the start of a cell): constant, Poisson, gamma, on/off bursts and trace
//! replay. The same arrival, limit and seed always give the same offsets. Knows
//! nothing of HTTP or clocks: the runner turns offsets into instants.
//!
//! Past 500 lines only with its tests, which sit at the bottom (the code is about
//! 250 lines).

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp, Gamma};

use crate::scenario::Arrival;
use crate::scenario::trace::{self, TraceError};

/// When a stream stops sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// After this many sends.
    Requests(u32),
    /// At this offset: only sends strictly before it.
    Duration(Duration),
}

impl Limit {
    /// The limit of a stream from `[run]`: `requests` wins when both are set (the
    /// scenario forbids that); `None` when neither is.
    pub fn of(requests: Option<u32>, duration: Option<Duration>) -> Option<Limit> {
        match (requests, duration) {
            (Some(n), _) => Some(Limit::Requests(n)),
            (None, Some(d)) => Some(Limit::Duration(d)),
            (None, None) => None,
        }
    }
}

/// An arrival that cannot produce offsets.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The trace file could not be replayed.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// A parameter out of range (the scenario's validation normally prevents it).
    #[error("bad {kind} arrival: {message}")]
    Parameter {
        /// The arrival kind.
        kind: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// All send offsets of one stream, in order.
///
/// Constant sends at `k / rate`. Poisson, gamma and on/off send their first request
/// at offset 0 (so the first request of every cell meets the model state the runner
/// prepared, deterministically) and then wait random gaps: exponential of mean
/// `1/rate`; gamma of shape `1/cv²` and scale `cv²/rate` (mean `1/rate`, coefficient
/// of variation `cv`); on/off is Poisson at `rate` during each `on` window and silent
/// for `off` after it. A trace replays its times from the first kept row, multiplied
/// by `time_scale`, and may end before the limit.
pub fn send_offsets(
    arrival: &Arrival,
    limit: Limit,
    seed: u64,
) -> Result<Vec<Duration>, WorkloadError> {
    Ok(offsets(arrival, limit, seed)?.collect())
}

/// The same offsets as `send_offsets`, produced lazily (for long runs, e.g. 10⁵
/// sends, without holding them all).
pub fn offsets(arrival: &Arrival, limit: Limit, seed: u64) -> Result<SendOffsets, WorkloadError> {
    let kind = arrival.kind();
    let bad = |message: String| WorkloadError::Parameter { kind, message };
    let rng = StdRng::seed_from_u64(seed);
    let exp = |rate: f64| Exp::new(rate).map_err(|e| bad(format!("rate {rate}/s: {e}")));
    let source = match arrival {
        Arrival::Constant { rate } => {
            let r = rate.value();
            if !(r.is_finite() && r > 0.0) {
                return Err(bad(format!("rate {r}/s must be positive")));
            }
            Source::Constant { rate: r, k: 0 }
        }
        Arrival::Poisson { rate } => Source::Gaps {
            rng,
            gaps: Gaps::Exp(exp(rate.value())?),
            t: 0.0,
            started: false,
        },
        Arrival::Gamma { rate, cv } => {
            let r = rate.value();
            if !(r.is_finite() && r > 0.0) {
                return Err(bad(format!("rate {r}/s must be positive")));
            }
            let shape = 1.0 / (cv * cv);
            let scale = cv * cv / r;
            let gamma = Gamma::new(shape, scale).map_err(|e| bad(format!("cv {cv}: {e}")))?;
            Source::Gaps {
                rng,
                gaps: Gaps::Gamma(gamma),
                t: 0.0,
                started: false,
            }
        }
        Arrival::OnOff { rate, on, off } => {
            if on.is_zero() {
                return Err(bad("`on` must be longer than 0".into()));
            }
            Source::OnOff {
                rng,
                exp: exp(rate.value())?,
                active: 0.0,
                started: false,
                on: on.as_secs_f64(),
                off: off.as_secs_f64(),
            }
        }
        Arrival::Trace {
            file,
            column,
            time_scale,
            skip,
            epoch,
        } => {
            if !(time_scale.is_finite() && *time_scale > 0.0) {
                return Err(bad(format!("time_scale {time_scale} must be positive")));
            }
            let mut times = trace::read_times(file, column.as_deref(), *skip)?;
            // Offsets from the scenario's shared epoch (or this trace's first row).
            let zero = epoch.unwrap_or(times[0]);
            for t in &mut times {
                *t = (*t - zero).max(0.0);
            }
            Source::Trace {
                times: times.into_iter(),
                scale: *time_scale,
            }
        }
    };
    Ok(SendOffsets {
        source,
        limit,
        sent: 0,
    })
}

/// Iterator over the send offsets of one stream (see `send_offsets`).
pub struct SendOffsets {
    source: Source,
    limit: Limit,
    sent: u32,
}

enum Gaps {
    Exp(Exp<f64>),
    Gamma(Gamma<f64>),
}

enum Source {
    Constant {
        rate: f64,
        k: u64,
    },
    Gaps {
        rng: StdRng,
        gaps: Gaps,
        t: f64,
        started: bool,
    },
    /// Poisson in "active time" (time spent in `on` windows), mapped to wall time by
    /// adding one `off` per completed window: exact, since exponential gaps are
    /// memoryless across the silences.
    OnOff {
        rng: StdRng,
        exp: Exp<f64>,
        active: f64,
        started: bool,
        on: f64,
        off: f64,
    },
    Trace {
        times: std::vec::IntoIter<f64>,
        scale: f64,
    },
}

impl Source {
    /// The next offset in seconds, `None` when a trace is exhausted.
    fn next_seconds(&mut self) -> Option<f64> {
        match self {
            Source::Constant { rate, k } => {
                let t = *k as f64 / *rate;
                *k += 1;
                Some(t)
            }
            Source::Gaps {
                rng,
                gaps,
                t,
                started,
            } => {
                if *started {
                    *t += match gaps {
                        Gaps::Exp(d) => d.sample(rng),
                        Gaps::Gamma(d) => d.sample(rng),
                    };
                }
                *started = true;
                Some(*t)
            }
            Source::OnOff {
                rng,
                exp,
                active,
                started,
                on,
                off,
            } => {
                if *started {
                    *active += exp.sample(rng);
                }
                *started = true;
                let windows = (*active / *on).floor();
                Some(*active + windows * *off)
            }
            Source::Trace { times, scale } => times.next().map(|t| t * *scale),
        }
    }
}

impl Iterator for SendOffsets {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if let Limit::Requests(n) = self.limit
            && self.sent >= n
        {
            return None;
        }
        let seconds = self.source.next_seconds()?;
        if !seconds.is_finite() || seconds > Duration::MAX.as_secs_f64() {
            return None;
        }
        let offset = Duration::from_secs_f64(seconds.max(0.0));
        if let Limit::Duration(d) = self.limit
            && offset >= d
        {
            return None;
        }
        self.sent += 1;
        Some(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Rate;

    fn rate(r: f64) -> Rate {
        Rate::per_second(r)
    }

    fn gaps(offsets: &[Duration]) -> Vec<f64> {
        offsets
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect()
    }

    fn mean_cv(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn constant_is_evenly_spaced_from_zero() {
        let a = Arrival::Constant { rate: rate(4.0) };
        let o = send_offsets(&a, Limit::Requests(5), 1).unwrap();
        let ms: Vec<u128> = o.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [0, 250, 500, 750, 1000]);
        let o = send_offsets(&a, Limit::Duration(Duration::from_secs(10)), 1).unwrap();
        assert_eq!(o.len(), 40, "sends strictly before the end");
        assert_eq!(*o.last().unwrap(), Duration::from_millis(9750));
    }

    #[test]
    fn random_kinds_are_deterministic_per_seed() {
        let kinds = [
            Arrival::Poisson { rate: rate(1.0) },
            Arrival::Gamma {
                rate: rate(1.0),
                cv: 3.0,
            },
            Arrival::OnOff {
                rate: rate(1.0),
                on: Duration::from_secs(5),
                off: Duration::from_secs(20),
            },
        ];
        for a in &kinds {
            let x = send_offsets(a, Limit::Requests(100), 42).unwrap();
            assert_eq!(x, send_offsets(a, Limit::Requests(100), 42).unwrap());
            assert_ne!(x, send_offsets(a, Limit::Requests(100), 43).unwrap());
            assert_eq!(x.len(), 100);
            assert_eq!(x[0], Duration::ZERO, "{} starts at 0", a.kind());
            assert!(
                x.windows(2).all(|w| w[0] <= w[1]),
                "{} is ordered",
                a.kind()
            );
            let lazy: Vec<Duration> = offsets(a, Limit::Requests(100), 42).unwrap().collect();
            assert_eq!(lazy, x);
        }
    }

    #[test]
    fn poisson_has_the_mean_rate_and_unit_cv() {
        let a = Arrival::Poisson { rate: rate(2.0) };
        let o = send_offsets(&a, Limit::Requests(50_001), 7).unwrap();
        let (mean, cv) = mean_cv(&gaps(&o));
        assert!((mean - 0.5).abs() < 0.5 * 0.02, "mean gap {mean}");
        assert!((cv - 1.0).abs() < 0.03, "cv {cv}");
        let o = send_offsets(&a, Limit::Duration(Duration::from_secs(10_000)), 7).unwrap();
        assert!(
            (o.len() as f64 - 20_000.0).abs() < 20_000.0 * 0.03,
            "{}",
            o.len()
        );
        assert!(o.iter().all(|d| *d < Duration::from_secs(10_000)));
    }

    #[test]
    fn gamma_gaps_have_the_mean_and_cv_asked_for() {
        for cv_asked in [0.5, 2.0] {
            let a = Arrival::Gamma {
                rate: rate(0.5),
                cv: cv_asked,
            };
            let o = send_offsets(&a, Limit::Requests(100_001), 11).unwrap();
            let (mean, cv) = mean_cv(&gaps(&o));
            assert!(
                (mean - 2.0).abs() < 2.0 * 0.03,
                "cv {cv_asked}: mean gap {mean}"
            );
            assert!(
                (cv - cv_asked).abs() < cv_asked * 0.05,
                "cv {cv_asked}: measured {cv}"
            );
        }
    }

    #[test]
    fn onoff_is_silent_between_bursts_and_at_rate_inside() {
        let (on, off) = (Duration::from_secs(10), Duration::from_secs(50));
        let a = Arrival::OnOff {
            rate: rate(3.0),
            on,
            off,
        };
        let limit = Limit::Duration(Duration::from_secs(60 * 200));
        let o = send_offsets(&a, limit, 5).unwrap();
        for t in &o {
            let phase = t.as_secs_f64() % 60.0;
            assert!(phase < 10.0, "a send at {t:?} falls in the silence");
        }
        // 200 windows × 10 s × 3/s.
        let expected = 6000.0;
        assert!(
            (o.len() as f64 - expected).abs() < expected * 0.04,
            "{}",
            o.len()
        );
        let windows: std::collections::HashSet<u64> = o.iter().map(|t| t.as_secs() / 60).collect();
        assert_eq!(windows.len(), 200, "every burst sends");
    }

    #[test]
    fn trace_replays_scaled_and_limited() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.csv");
        std::fs::write(&file, "time,tokens\n100,1\n100.5,2\n102,3\n110,4\n").unwrap();
        let a = Arrival::Trace {
            file: file.clone(),
            column: None,
            time_scale: 2.0,
            skip: 0,
            epoch: None,
        };
        let secs = |o: Vec<Duration>| o.iter().map(|d| d.as_secs_f64()).collect::<Vec<_>>();
        assert_eq!(
            secs(send_offsets(&a, Limit::Requests(100), 0).unwrap()),
            [0.0, 1.0, 4.0, 20.0],
            "a short trace ends early"
        );
        assert_eq!(
            secs(send_offsets(&a, Limit::Requests(2), 0).unwrap()),
            [0.0, 1.0]
        );
        assert_eq!(
            secs(send_offsets(&a, Limit::Duration(Duration::from_secs(4)), 0).unwrap()),
            [0.0, 1.0]
        );
        let skipped = Arrival::Trace {
            file,
            column: Some("time".into()),
            time_scale: 0.5,
            skip: 1,
            epoch: None,
        };
        assert_eq!(
            secs(send_offsets(&skipped, Limit::Requests(10), 0).unwrap()),
            [0.0, 0.75, 4.75]
        );
        let missing = Arrival::Trace {
            file: dir.path().join("none.csv"),
            column: None,
            time_scale: 1.0,
            skip: 0,
            epoch: None,
        };
        assert!(matches!(
            send_offsets(&missing, Limit::Requests(1), 0),
            Err(WorkloadError::Trace(_))
        ));
    }

    #[test]
    fn bad_parameters_are_errors_not_panics() {
        let a = Arrival::Gamma {
            rate: rate(1.0),
            cv: 0.0,
        };
        assert!(matches!(
            send_offsets(&a, Limit::Requests(3), 0),
            Err(WorkloadError::Parameter { kind: "gamma", .. })
        ));
        let a = Arrival::OnOff {
            rate: rate(1.0),
            on: Duration::ZERO,
            off: Duration::from_secs(1),
        };
        assert!(send_offsets(&a, Limit::Requests(3), 0).is_err());
        assert_eq!(Limit::of(Some(3), None), Some(Limit::Requests(3)));
        assert_eq!(
            Limit::of(None, Some(Duration::from_secs(1))),
            Some(Limit::Duration(Duration::from_secs(1)))
        );
        assert_eq!(Limit::of(None, None), None);
    }

    #[test]
    fn trace_streams_share_one_epoch_so_interleaved_traces_keep_their_phase() {
        use crate::scenario::{Scenario, load};
        let dir = tempfile::tempdir().unwrap();
        // Two logs of one minute: a sends at 100, 102, 104 s; b at 101, 103, 105 s.
        std::fs::write(dir.path().join("a.csv"), "time_s\n100\n102\n104\n").unwrap();
        std::fs::write(dir.path().join("b.csv"), "time_s\n105\n101\n103\n").unwrap();
        let path = dir.path().join("s.toml");
        let text = "[[stream]]\nname = \"a\"\nmodel = \"m1\"\narrival = { kind = \"trace\", file = \"a.csv\" }\n\
                    [[stream]]\nname = \"b\"\nmodel = \"m2\"\narrival = { kind = \"trace\", file = \"b.csv\" }\n\
                    [run]\nrequests = 3\n";
        std::fs::write(&path, text).unwrap();
        let offsets = |s: &Scenario, i: usize| -> Vec<f64> {
            send_offsets(&s.streams[i].arrival, Limit::Requests(10), 0)
                .unwrap()
                .iter()
                .map(|d| d.as_secs_f64())
                .collect()
        };
        let s = load(&path).unwrap();
        assert_eq!(offsets(&s, 0), [0.0, 2.0, 4.0]);
        assert_eq!(offsets(&s, 1), [1.0, 3.0, 5.0], "b keeps its phase after a");
        // An explicit epoch wins; one after a stream's first row is refused.
        std::fs::write(
            &path,
            text.replace("file = \"a.csv\"", "file = \"a.csv\", epoch = 99"),
        )
        .unwrap();
        let s = load(&path).unwrap();
        assert_eq!(offsets(&s, 0), [1.0, 3.0, 5.0]);
        assert_eq!(
            offsets(&s, 1),
            [0.0, 2.0, 4.0],
            "b alone sets the shared epoch"
        );
        std::fs::write(
            &path,
            text.replace("file = \"b.csv\"", "file = \"b.csv\", epoch = 102"),
        )
        .unwrap();
        let e = load(&path).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("stream[1].arrival.epoch"), "{e}");
        assert!(e.message.contains("after the first send time"), "{e}");
        std::fs::write(
            &path,
            text.replace("file = \"b.csv\"", "file = \"b.csv\", epoch = \"soon\""),
        )
        .unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.message.contains("bad epoch \"soon\""), "{e}");
    }
}
