//! The `idle_unload` axis on each server's own knob. A swept value is a duration, or
//! off (never unload). llama.cpp's `sleep-idle-seconds` and llama-swap's `ttl` both
//! take whole seconds: llama.cpp refuses 0 and reads -1 as off; llama-swap reads 0 as
//! never. So neither can unload at once, and a fraction of a second is refused rather
//! than rounded.

use std::time::Duration;

use crate::units::KeepAlive;

/// The longest idle time either knob is given (llama.cpp reads it as a C `int`).
pub const MAX_IDLE_SECS: u64 = i32::MAX as u64;

/// Whole seconds of at least 1 from `idle`, or an error naming the knob.
fn whole_seconds(idle: Duration, knob: &str) -> Result<u64, String> {
    let secs = idle.as_secs();
    if idle.subsec_nanos() != 0 || secs == 0 {
        return Err(format!(
            "idle_unload {idle:?} cannot be {knob}: it takes whole seconds of at least 1 \
             (use e.g. 1s, 5s, or off)"
        ));
    }
    if secs > MAX_IDLE_SECS {
        return Err(format!(
            "idle_unload {secs}s is over {knob}'s limit of {MAX_IDLE_SECS} s"
        ));
    }
    Ok(secs)
}

/// An `idle_unload` value as the scenario holds it (a keep_alive form, `"off"` read as
/// forever) as the idle time the knobs below take (`None` = off).
pub fn idle_of(value: &KeepAlive) -> Option<Duration> {
    value.duration()
}

/// The router preset's `sleep-idle-seconds` for an `idle_unload` value.
pub fn router_sleep(value: &KeepAlive) -> Result<i64, String> {
    sleep_idle_seconds(idle_of(value))
}

/// llama-swap's `ttl` for an `idle_unload` value.
pub fn swap_ttl_of(value: &KeepAlive) -> Result<u64, String> {
    swap_ttl(idle_of(value))
}

/// llama.cpp's `sleep-idle-seconds` for `idle` (`None` = off, written as -1).
pub fn sleep_idle_seconds(idle: Option<Duration>) -> Result<i64, String> {
    match idle {
        None => Ok(-1),
        Some(d) => whole_seconds(d, "llama.cpp's sleep-idle-seconds").map(|s| s as i64),
    }
}

/// llama-swap's `ttl` for `idle` (`None` = off, written as 0: never unload).
pub fn swap_ttl(idle: Option<Duration>) -> Result<u64, String> {
    match idle {
        None => Ok(0),
        Some(d) => whole_seconds(d, "llama-swap's ttl"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_values_map_onto_each_knob() {
        let ka = |t: &str| KeepAlive::parse(t).unwrap();
        assert_eq!(router_sleep(&KeepAlive::forever()), Ok(-1));
        assert_eq!(swap_ttl_of(&KeepAlive::forever()), Ok(0));
        assert_eq!(router_sleep(&ka("5s")), Ok(5));
        assert_eq!(swap_ttl_of(&ka("3")), Ok(3));
        assert!(router_sleep(&ka("0")).unwrap_err().contains("at least 1"));
        assert!(
            swap_ttl_of(&ka("1.5s"))
                .unwrap_err()
                .contains("whole seconds")
        );
    }

    #[test]
    fn off_is_each_servers_own_never() {
        assert_eq!(sleep_idle_seconds(None), Ok(-1));
        assert_eq!(swap_ttl(None), Ok(0));
    }

    #[test]
    fn whole_seconds_pass_through() {
        assert_eq!(sleep_idle_seconds(Some(Duration::from_secs(3))), Ok(3));
        assert_eq!(swap_ttl(Some(Duration::from_secs(1))), Ok(1));
        let max = Some(Duration::from_secs(MAX_IDLE_SECS));
        assert_eq!(swap_ttl(max), Ok(MAX_IDLE_SECS));
    }

    #[test]
    fn zero_fractions_and_huge_values_are_refused_by_name() {
        for d in [
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_millis(300),
        ] {
            let e = sleep_idle_seconds(Some(d)).unwrap_err();
            assert!(
                e.contains("sleep-idle-seconds") && e.contains("whole seconds"),
                "{e}"
            );
            let e = swap_ttl(Some(d)).unwrap_err();
            assert!(e.contains("llama-swap's ttl"), "{e}");
        }
        let e = swap_ttl(Some(Duration::from_secs(MAX_IDLE_SECS + 1))).unwrap_err();
        assert!(e.contains("limit"), "{e}");
    }
}
