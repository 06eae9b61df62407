//! Sharding one run over several processes or machines: which shard this process is
//! (`--shard i/N`, or `--shard auto` from a Kubernetes Indexed Job's or a Slurm job
//! array's environment), which requests of the one global schedule it sends, and the
//! fixed timeline (a common start barrier, every cell at a fixed offset from it) that
//! keeps shards in step without their talking to each other. Knows nothing of HTTP,
//! files or how a cell is run.

use std::time::{Duration, SystemTime};

use crate::scenario::ShardBy;

/// The environment variable a Kubernetes Indexed Job sets to the pod's index.
pub const K8S_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The environment variable that gives the shard count where the engine does not
/// (a Kubernetes Indexed Job; `kabench fleet k8s` sets it).
pub const SHARDS_ENV: &str = "KABENCH_SHARDS";
/// Slurm's array task id.
pub const SLURM_ID_ENV: &str = "SLURM_ARRAY_TASK_ID";
/// Slurm's array task count.
pub const SLURM_COUNT_ENV: &str = "SLURM_ARRAY_TASK_COUNT";
/// Slurm's lowest array task id (an array `--array=1-4` starts at 1).
pub const SLURM_MIN_ENV: &str = "SLURM_ARRAY_TASK_MIN";

/// After its fixed start, how long a cell leaves every shard to unload the target
/// before the first send.
pub const UNLOAD_ALLOWANCE: Duration = Duration::from_secs(2);
/// Past a cell's last global send and release tail, how long is left for requests
/// still in flight before the next cell's fixed start.
pub const CELL_SLACK: Duration = Duration::from_secs(3);

/// The most shards one run may have: pods of an Indexed Job, tasks of a Slurm array,
/// or the count of `--shard i/N`. Checked before anything is allocated per shard.
pub const MAX_SHARDS: u32 = 1024;

/// The most shard processes `kabench run --shards N` starts on this machine: four per
/// CPU, at least 64, at most [`MAX_SHARDS`]. Each shard is a whole process with its own
/// runtime and telemetry; more than that only measures the machine's scheduler.
pub fn max_local_shards() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(cpus.saturating_mul(4))
        .unwrap_or(MAX_SHARDS)
        .clamp(64, MAX_SHARDS)
}

/// How far ahead a start barrier may be (24 h): a barrier further out is a mistake
/// (a wrong date or time zone), not a plan to wait.
pub const MAX_BARRIER_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// How far behind a start barrier may be when a shard starts: the first cell's unload
/// allowance, so no intended send time of the shard precedes its start (a send
/// "intended" before the process existed would count the wait as latency).
pub const MAX_BARRIER_BEHIND: Duration = UNLOAD_ALLOWANCE;

/// How late after the start barrier a shard may wake and still send, by default
/// (`--late-tolerance`): past it the shard sends nothing, its folder is marked `late`
/// and `merge` counts it missing. The same tolerance marks a cell started late.
pub const LATE_TOLERANCE: Duration = Duration::from_secs(2);

/// The least `--late-tolerance` may be (100 ms: a process wakes that late at a
/// barrier by itself).
pub const MIN_LATE_TOLERANCE: Duration = Duration::from_millis(100);
/// The most `--late-tolerance` may be (1 h).
pub const MAX_LATE_TOLERANCE: Duration = Duration::from_secs(3600);

/// One shard of a run: `index` in `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index.
    pub index: u32,
    /// Shards in the run.
    pub count: u32,
}

/// A shard that cannot be determined (bad input, exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShardError(pub String);

impl Shard {
    /// `i/N` (0-based `i` below `N`), or `auto`: `JOB_COMPLETION_INDEX` with the count
    /// from `shards` (`--shards`) or `KABENCH_SHARDS`, else `SLURM_ARRAY_TASK_ID` with
    /// `SLURM_ARRAY_TASK_COUNT` (less `SLURM_ARRAY_TASK_MIN`). `env` reads a variable.
    pub fn parse(
        text: &str,
        shards: Option<u32>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Shard, ShardError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("auto") {
            return Self::from_env(shards, env);
        }
        let bad = || {
            ShardError(format!(
                "--shard {text:?}: write i/N with 0 <= i < N (e.g. 0/4), or auto (from {K8S_INDEX_ENV} or {SLURM_ID_ENV})"
            ))
        };
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        check_count(count, &format!("--shard {text}"))?;
        if let Some(s) = shards
            && s != count
        {
            return Err(ShardError(format!(
                "--shard {text} says {count} shards but --shards says {s}: give one count"
            )));
        }
        Ok(Shard { index, count })
    }

    fn from_env(
        shards: Option<u32>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Shard, ShardError> {
        let number = |name: &str| -> Result<Option<u32>, ShardError> {
            match env(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| ShardError(format!("{name}={v:?} is not a whole number"))),
            }
        };
        let (index, count) = if let Some(index) = number(K8S_INDEX_ENV)? {
            let count = match shards {
                Some(n) => n,
                None => number(SHARDS_ENV)?.ok_or_else(|| {
                    ShardError(format!(
                        "--shard auto: {K8S_INDEX_ENV} is set but not the shard count; pass --shards N or set {SHARDS_ENV}"
                    ))
                })?,
            };
            (index, count)
        } else if let Some(id) = number(SLURM_ID_ENV)? {
            let min = number(SLURM_MIN_ENV)?.unwrap_or(0);
            let count = match (shards, number(SLURM_COUNT_ENV)?) {
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => {
                    return Err(ShardError(format!(
                        "--shard auto: {SLURM_ID_ENV} is set but not {SLURM_COUNT_ENV}; pass --shards N"
                    )));
                }
            };
            (
                id.checked_sub(min).ok_or_else(|| {
                    ShardError(format!(
                        "{SLURM_ID_ENV}={id} is below {SLURM_MIN_ENV}={min}"
                    ))
                })?,
                count,
            )
        } else {
            return Err(ShardError(format!(
                "--shard auto: neither {K8S_INDEX_ENV} (Kubernetes Indexed Job) nor {SLURM_ID_ENV} (Slurm array) is set; pass --shard i/N"
            )));
        };
        if count == 0 || index >= count {
            return Err(ShardError(format!(
                "--shard auto: index {index} is not below the shard count {count}"
            )));
        }
        check_count(count, "--shard auto: the shard count")?;
        Ok(Shard { index, count })
    }

    /// The shard's run folder inside the run's folder: `shard-<i>-of-<N>`.
    pub fn dir_name(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }

    /// Whether this shard sends the request at position `global` of its cell's global
    /// schedule (intended-time order), of stream `stream`, bound for target `target`.
    pub fn sends(&self, by: ShardBy, global: usize, stream: usize, target: usize) -> bool {
        let n = self.count as usize;
        let key = match by {
            ShardBy::Request => global,
            ShardBy::Stream => stream,
            ShardBy::Target => target,
        };
        key % n == self.index as usize
    }
}

/// Refuses a shard count over [`MAX_SHARDS`], naming where it came from.
pub fn check_count(count: u32, what: &str) -> Result<u32, ShardError> {
    crate::units::limits::check_count(u64::from(count), u64::from(MAX_SHARDS), what)
        .map(|_| count)
        .map_err(|e| ShardError(format!("{}: give at most {MAX_SHARDS} shards", e.message)))
}

/// Checks a start barrier (`what`: the flag that gave it) against `now`: at most
/// [`MAX_BARRIER_AHEAD`] ahead and at most [`MAX_BARRIER_BEHIND`] behind.
pub fn check_barrier(start_at: SystemTime, now: SystemTime, what: &str) -> Result<(), ShardError> {
    let shown = format_time(start_at);
    match start_at.duration_since(now) {
        Ok(ahead) if ahead > MAX_BARRIER_AHEAD => Err(ShardError(format!(
            "{what} {shown} is {} ahead, over the limit of {} ahead: give a barrier within the next {} (is the date or the time zone wrong?)",
            whole_secs(ahead),
            whole_secs(MAX_BARRIER_AHEAD),
            whole_secs(MAX_BARRIER_AHEAD),
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.duration() > MAX_BARRIER_BEHIND => Err(ShardError(format!(
            "{what} {shown} is {} in the past, over the limit of {} behind: every shard must start before the barrier (its requests would be late from the start and their latencies meaningless); give a barrier in the future",
            whole_secs(e.duration()),
            whole_secs(MAX_BARRIER_BEHIND),
        ))),
        Err(_) => Ok(()),
    }
}

/// Checks a shard's start barrier: at most [`MAX_BARRIER_AHEAD`] ahead or behind. A
/// shard that starts after its barrier is not refused but ends `late` (it sends
/// nothing past its tolerance); one a day or more behind is a mistake (a wrong date or
/// time zone).
pub fn check_shard_barrier(
    start_at: SystemTime,
    now: SystemTime,
    what: &str,
) -> Result<(), ShardError> {
    match start_at.duration_since(now) {
        Ok(_) => check_barrier(start_at, now, what),
        Err(e) if e.duration() > MAX_BARRIER_AHEAD => Err(ShardError(format!(
            "{what} {} is {} in the past, over the limit of {} behind for a shard (a shard that starts after its barrier sends nothing and is merged as missing; one this far behind is a wrong date or time zone): give the barrier the other shards have",
            format_time(start_at),
            whole_secs(e.duration()),
            whole_secs(MAX_BARRIER_AHEAD),
        ))),
        Err(_) => Ok(()),
    }
}

/// How a shard that woke `late` after its barrier is described (`late`: over the
/// `tolerance`).
pub fn late_note(late: Duration, tolerance: Duration) -> String {
    format!(
        "it woke {:.1} s after its start barrier, over the tolerance of {} (--late-tolerance)",
        late.as_secs_f64(),
        humantime::format_duration(tolerance)
    )
}

fn whole_secs(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Parses a folder name `shard-<i>-of-<N>` back.
pub fn parse_dir_name(name: &str) -> Option<Shard> {
    let rest = name.strip_prefix("shard-")?;
    let (i, n) = rest.split_once("-of-")?;
    let (index, count) = (i.parse().ok()?, n.parse().ok()?);
    (index < count).then_some(Shard { index, count })
}

/// The target of the request at position `global` of a cell's global schedule: the
/// hosts of a fleet take the requests round-robin.
pub fn target_of(global: usize, targets: usize) -> usize {
    global % targets.max(1)
}

/// Where each cell starts, from the start barrier: cell `k + 1` starts when cell `k`'s
/// unload allowance, its last global send (`last_sends[k]`), its release `tail`, the
/// slack for requests in flight and the scenario's `pause` are over. Every shard
/// computes the same offsets from the same plan.
pub fn cell_offsets(last_sends: &[Duration], tail: Duration, pause: Duration) -> Vec<Duration> {
    let mut at = Duration::ZERO;
    last_sends
        .iter()
        .map(|last| {
            let start = at;
            at += UNLOAD_ALLOWANCE + *last + tail + CELL_SLACK + pause;
            start
        })
        .collect()
}

/// Parses an RFC 3339 time (`2026-12-01T18:30:00Z`) for `--start-at`.
pub fn parse_start_at(text: &str) -> Result<SystemTime, ShardError> {
    let t =
        time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                ShardError(format!(
                    "--start-at {text:?}: {e}; write an RFC 3339 time such as 2026-12-01T18:30:00Z"
                ))
            })?;
    Ok(SystemTime::from(t))
}

/// Formats a time as RFC 3339 (UTC, with fractional seconds when it has them).
pub fn format_time(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Signed milliseconds from `b` to `a` (`a - b`).
pub fn ms_between(a: SystemTime, b: SystemTime) -> f64 {
    match a.duration_since(b) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn explicit_and_auto_shards() {
        let none = env(&[]);
        assert_eq!(
            Shard::parse("1/4", None, &none).unwrap(),
            Shard { index: 1, count: 4 }
        );
        assert!(Shard::parse("4/4", None, &none).is_err());
        assert!(Shard::parse("x", None, &none).is_err());
        assert!(Shard::parse("1/4", Some(3), &none).is_err());
        assert!(Shard::parse("auto", None, &none).is_err());
        let k8s = env(&[(K8S_INDEX_ENV, "2")]);
        assert_eq!(
            Shard::parse("auto", Some(3), &k8s).unwrap(),
            Shard { index: 2, count: 3 }
        );
        assert!(
            Shard::parse("auto", None, &k8s)
                .unwrap_err()
                .0
                .contains(SHARDS_ENV)
        );
        let k8s_env = env(&[(K8S_INDEX_ENV, "0"), (SHARDS_ENV, "5")]);
        assert_eq!(Shard::parse("auto", None, &k8s_env).unwrap().count, 5);
        let slurm = env(&[
            (SLURM_ID_ENV, "4"),
            (SLURM_COUNT_ENV, "4"),
            (SLURM_MIN_ENV, "1"),
        ]);
        assert_eq!(
            Shard::parse("auto", None, &slurm).unwrap(),
            Shard { index: 3, count: 4 }
        );
    }

    #[test]
    fn dir_names_round_trip_and_offsets_accumulate() {
        let s = Shard { index: 2, count: 7 };
        assert_eq!(parse_dir_name(&s.dir_name()), Some(s));
        assert_eq!(parse_dir_name("shard-7-of-7"), None);
        let offs = cell_offsets(
            &[Duration::from_secs(10), Duration::from_secs(4)],
            Duration::from_secs(1),
            Duration::ZERO,
        );
        assert_eq!(
            offs,
            vec![
                Duration::ZERO,
                UNLOAD_ALLOWANCE + Duration::from_secs(11) + CELL_SLACK
            ]
        );
    }

    #[test]
    fn shard_counts_and_barriers_have_limits() {
        let none = env(&[]);
        let err = Shard::parse("0/4294967295", None, &none).unwrap_err().0;
        assert!(err.contains("limit of 1024"), "{err}");
        let k8s = env(&[(K8S_INDEX_ENV, "0"), (SHARDS_ENV, "5000")]);
        assert!(
            Shard::parse("auto", None, &k8s)
                .unwrap_err()
                .0
                .contains("1024")
        );
        assert!((64..=MAX_SHARDS).contains(&max_local_shards()));
        let now = SystemTime::now();
        assert!(check_barrier(now + Duration::from_secs(3600), now, "--start-at").is_ok());
        assert!(check_barrier(now - Duration::from_secs(1), now, "--start-at").is_ok());
        let far = check_barrier(now + Duration::from_secs(25 * 3600), now, "--start-at")
            .unwrap_err()
            .0;
        assert!(
            far.starts_with("--start-at ") && far.contains("limit of 1day"),
            "{far}"
        );
        let past = check_barrier(now - Duration::from_secs(60), now, "--start-at")
            .unwrap_err()
            .0;
        assert!(
            past.contains("in the past") && past.contains("limit of 2s"),
            "{past}"
        );
    }

    #[test]
    fn start_at_parses_rfc3339() {
        let t = parse_start_at("2026-12-01T18:30:00Z").unwrap();
        assert_eq!(format_time(t), "2026-12-01T18:30:00Z");
        assert!(parse_start_at("tomorrow").is_err());
    }
}
