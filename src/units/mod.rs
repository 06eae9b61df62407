//! Ollama's value forms, parsed once and printed back as written: `keep_alive`
//! (Go durations, seconds, negative = forever), byte sizes (`"24GiB"`) and request
//! rates (`"0.5/s"`). Knows nothing of scenarios, HTTP or the scheduler.

use std::fmt;
use std::time::Duration;

mod keep_alive;
pub mod limits;

use keep_alive::MAX_GO_DURATION_NANOS;

pub use keep_alive::{
    KeepAlive, KeepAliveKeys, MAX_KEEP_ALIVE_SECONDS, WireKeepAlive, as_written, cmp_keep_alive,
    display_keep_alive, go_duration_nanos, go_int64, keep_alive_keys, optional_written_or_empty,
    written_or_empty,
};

/// A value that could not be parsed; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// Human-readable reason, phrased the way Ollama or the scenario docs phrase it.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ParseError {
            message: message.into(),
        }
    }
}

/// Parses a Go `time.ParseDuration` string into signed nanoseconds.
///
/// Accepts an optional sign and one or more `<decimal><unit>` pairs with units
/// `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`; the bare `"0"` is zero. Errors use
/// Go's wording (`time: missing unit in duration "-1"`), as Ollama returns them.
pub fn parse_go_duration(text: &str) -> Result<i128, ParseError> {
    let quoted = format!("{text:?}");
    let invalid = || ParseError::new(format!("time: invalid duration {quoted}"));
    let mut rest = text;
    let mut negative = false;
    if let Some(r) = rest.strip_prefix('-') {
        negative = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(ParseError::new(format!(
                "time: missing unit in duration {quoted}"
            )));
        }
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                return Err(ParseError::new(format!(
                    "time: unknown unit {:?} in duration {quoted}",
                    unit
                )));
            }
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    // Go's time.Duration is an int64 of nanoseconds: ParseDuration rejects anything
    // beyond it (about 2562047h), and Ollama answers such a keep_alive with 400.
    if !total.is_finite() || total > MAX_GO_DURATION_NANOS {
        return Err(invalid());
    }
    let nanos = total.round() as i128;
    Ok(if negative { -nanos } else { nanos })
}

/// Formats a duration the way Go prints one (`"1h30m0s"` style is avoided: we print
/// the shortest exact form, e.g. `"90s"`, `"1.5s"`, `"250ms"`, `"0"`).
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0".into();
    }
    if nanos.is_multiple_of(3_600_000_000_000) {
        return format!("{}h", nanos / 3_600_000_000_000);
    }
    if nanos.is_multiple_of(60_000_000_000) {
        return format!("{}m", nanos / 60_000_000_000);
    }
    if nanos.is_multiple_of(1_000_000_000) {
        return format!("{}s", nanos / 1_000_000_000);
    }
    if nanos.is_multiple_of(1_000_000) {
        return format!("{}ms", nanos / 1_000_000);
    }
    if nanos.is_multiple_of(1_000) {
        return format!("{}us", nanos / 1_000);
    }
    format!("{nanos}ns")
}

/// Parses a byte size: `"24GiB"`, `"512MiB"`, `"8GB"`, `"1.5 GiB"` or a plain number of bytes.
pub fn parse_bytes(text: &str) -> Result<u64, ParseError> {
    let t = text.trim();
    let split = t
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map(|(i, _)| i)
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        ParseError::new(format!(
            "bad size {t:?}: write a number with a unit such as \"24GiB\", \"512MiB\" or \"8GB\""
        ))
    })?;
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0_f64.powi(4),
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        other => {
            return Err(ParseError::new(format!(
                "bad size {t:?}: unknown unit {other:?}; use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"
            )));
        }
    };
    Ok((value * scale).round() as u64)
}

/// Formats bytes with a binary unit for people (`"4.58 GiB"`).
pub fn format_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    const MIB: f64 = 1024.0 * 1024.0;
    if b >= GIB {
        format!("{:.2} GiB", b / GIB)
    } else if b >= MIB {
        format!("{:.1} MiB", b / MIB)
    } else {
        format!("{bytes} B")
    }
}

/// Formats a memory size as people write a GPU's: whole units without decimals
/// (`"24 GiB"`, `"512 MiB"`), in the largest binary unit that keeps it at least 1
/// (`"1.5 GiB"`, `"1 MiB"`), never rounding a small size to `"0 GiB"`.
pub fn format_size_short(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, size) in UNITS {
        if bytes >= size {
            let v = bytes as f64 / size as f64;
            return if bytes.is_multiple_of(size) {
                format!("{} {name}", bytes / size)
            } else {
                let text = format!("{v:.2}");
                format!(
                    "{} {name}",
                    text.trim_end_matches('0').trim_end_matches('.')
                )
            };
        }
    }
    format!("{bytes} B")
}

/// A request rate, kept as written (`"0.5/s"`) with its value in requests per second.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    written: String,
    per_second: f64,
}

impl Rate {
    /// Parses `"0.5/s"`, `"30/m"`, `"100/h"` or a plain number of requests per second.
    pub fn parse(text: &str) -> Result<Rate, ParseError> {
        let t = text.trim();
        let bad = || {
            ParseError::new(format!(
                "bad rate {t:?}: write requests per unit of time such as \"0.5/s\", \"30/m\" or \"100/h\" (a positive number)"
            ))
        };
        let (num, per) = match t.split_once('/') {
            Some((n, u)) => {
                let per = match u.trim() {
                    "s" | "sec" => 1.0,
                    "m" | "min" => 60.0,
                    "h" | "hour" => 3600.0,
                    _ => return Err(bad()),
                };
                (n.trim(), per)
            }
            None => (t, 1.0),
        };
        let value: f64 = num.parse().map_err(|_| bad())?;
        if !(value.is_finite() && value > 0.0) {
            return Err(bad());
        }
        Ok(Rate {
            written: t.to_string(),
            per_second: value / per,
        })
    }

    /// A rate of `per_second` requests per second, written as `"<n>/s"`.
    pub fn per_second(per_second: f64) -> Rate {
        Rate {
            written: format!("{per_second}/s"),
            per_second,
        }
    }

    /// Requests per second.
    pub fn value(&self) -> f64 {
        self.per_second
    }

    /// The rate as written.
    pub fn written(&self) -> &str {
        &self.written
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// Parses one of our own option durations (`"100ms"`, `"30s"`, `"5m"`) with humantime.
pub fn parse_option_duration(text: &str) -> Result<Duration, ParseError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        ParseError::new(format!(
            "bad duration {text:?}: {e}; write e.g. \"100ms\", \"30s\", \"5m\""
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ka3_go_durations() {
        assert_eq!(parse_go_duration("5m").unwrap(), 300_000_000_000);
        assert_eq!(parse_go_duration("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_go_duration("300ms").unwrap(), 300_000_000);
        assert_eq!(parse_go_duration("1.5s").unwrap(), 1_500_000_000);
        assert_eq!(parse_go_duration("0").unwrap(), 0);
        assert_eq!(parse_go_duration("-1m").unwrap(), -60_000_000_000);
        assert_eq!(parse_go_duration("2µs").unwrap(), 2_000);
    }

    #[test]
    fn gpu_sizes_use_a_unit_that_fits() {
        assert_eq!(format_size_short(24 << 30), "24 GiB");
        assert_eq!(format_size_short(1 << 20), "1 MiB");
        assert_eq!(format_size_short(512 << 20), "512 MiB");
        assert_eq!(format_size_short(3 << 29), "1.5 GiB");
        assert_eq!(format_size_short(1000), "1000 B");
    }

    #[test]
    fn ka4_durations_past_go_int64_are_rejected_never_wrapped() {
        let e = parse_go_duration("9999999999999999h").unwrap_err();
        assert_eq!(e.message, "time: invalid duration \"9999999999999999h\"");
        assert!(parse_go_duration("2562047h").is_ok());
        assert!(parse_go_duration("2562048h").is_err());
        assert!(KeepAlive::from_json(&json!("9999999999999999h")).is_err());
        let e = KeepAlive::parse("9999999999999999h").unwrap_err();
        assert!(e.message.contains("bad keep_alive"), "{e}");
        // A scenario's number of seconds past 292 years: refused, saying what Ollama
        // would do with it (not a panic, not a silent wrap).
        let e = KeepAlive::parse("100000000000000000000").unwrap_err();
        assert!(e.message.contains("1e20 seconds"), "{e}");
        assert!(e.message.contains("Ollama accepts it (HTTP 200)"), "{e}");
        assert!(e.message.contains("unloaded as soon as it is idle"), "{e}");
        let long = format!("1{}", "0".repeat(300));
        let e = KeepAlive::parse(&long).unwrap_err();
        assert!(e.message.len() < 700, "{e}");
        assert!(e.message.contains("1e300 seconds"), "{e}");
        assert!(KeepAlive::parse("9223372037").is_err());
        assert!(KeepAlive::parse("9223372036").is_ok());
        assert!(
            KeepAlive::from_json(&json!(-1e300))
                .unwrap()
                .unwrap()
                .is_forever()
        );
    }

    #[test]
    fn ka2_numbers_past_a_go_duration_overflow_into_unload_when_idle() {
        // As Ollama v0.32.15 reads them (seen on the real server: 200, and the model
        // leaves /api/ps as soon as the request ends).
        for n in [
            json!(1e20),
            json!(9.3e9),
            json!(1e300),
            json!(9223372037u64),
            json!(f64::MAX),
        ] {
            let ka = KeepAlive::from_json(&n).unwrap().unwrap();
            assert!(ka.overflowed(), "{n}");
            assert!(ka.is_zero(), "{n}: unloads when idle");
            assert!(
                !ka.is_exact_zero(),
                "{n}: an empty prompt loads, not unloads"
            );
            assert!(!ka.is_forever(), "{n}");
            assert!(ka.written().len() < 30, "written short: {}", ka.written());
        }
        assert_eq!(
            KeepAlive::from_json(&json!(1e20))
                .unwrap()
                .unwrap()
                .written(),
            "1e20"
        );
        let ka = KeepAlive::from_json(&json!(9223372036u64))
            .unwrap()
            .unwrap();
        assert!(!ka.overflowed());
        assert_eq!(ka.duration(), Some(Duration::from_secs(9_223_372_036)));
        // Below a nanosecond Go's duration is exactly 0 (an empty prompt unloads); one
        // nanosecond is not.
        let ka = KeepAlive::from_json(&json!(1e-10)).unwrap().unwrap();
        assert!(ka.is_exact_zero());
        let ka = KeepAlive::from_json(&json!(1e-9)).unwrap().unwrap();
        assert_eq!(ka.duration(), Some(Duration::from_nanos(1)));
        assert_eq!(go_duration_nanos(0.5), 500_000_000);
        assert_eq!(go_duration_nanos(9.3e9), i64::MIN);
        assert_eq!(
            go_duration_nanos(9_223_372_036.0),
            9_223_372_036_000_000_000
        );
    }

    #[test]
    fn ka4_numeric_strings_are_rejected_with_go_text() {
        let e = KeepAlive::from_json(&json!("-1")).unwrap_err();
        assert_eq!(e.message, "time: missing unit in duration \"-1\"");
        assert!(KeepAlive::from_json(&json!("300")).is_err());
        assert!(KeepAlive::from_json(&json!("")).is_err());
        assert!(KeepAlive::from_json(&json!("1d")).is_err());
        assert!(KeepAlive::from_json(&json!("abc")).is_err());
        assert_eq!(
            KeepAlive::from_json(&json!(true)).unwrap_err().message,
            "Unsupported type: 'bool'"
        );
        assert!(KeepAlive::from_json(&json!([1])).is_err());
        assert!(KeepAlive::from_json(&json!({"a": 1})).is_err());
    }

    #[test]
    fn ka2_numbers_are_seconds_negative_forever() {
        let ka = KeepAlive::from_json(&json!(300)).unwrap().unwrap();
        assert_eq!(ka.duration(), Some(Duration::from_secs(300)));
        let ka = KeepAlive::from_json(&json!(0.5)).unwrap().unwrap();
        assert_eq!(ka.duration(), Some(Duration::from_millis(500)));
        assert!(
            KeepAlive::from_json(&json!(-1))
                .unwrap()
                .unwrap()
                .is_forever()
        );
        assert!(
            KeepAlive::from_json(&json!(-0.5))
                .unwrap()
                .unwrap()
                .is_forever()
        );
        assert!(
            KeepAlive::from_json(&json!("-1m"))
                .unwrap()
                .unwrap()
                .is_forever()
        );
        assert!(KeepAlive::from_json(&json!(null)).unwrap().is_none());
    }

    #[test]
    fn ka7_scenario_forms_go_on_the_wire_as_ollama_accepts() {
        assert_eq!(KeepAlive::parse("-1").unwrap().to_json(), json!(-1));
        assert_eq!(KeepAlive::parse("300").unwrap().to_json(), json!(300));
        assert_eq!(KeepAlive::parse("0.5").unwrap().to_json(), json!(0.5));
        assert_eq!(KeepAlive::parse("0").unwrap().to_json(), json!("0"));
        assert_eq!(KeepAlive::parse("30s").unwrap().to_json(), json!("30s"));
        assert_eq!(KeepAlive::parse("-1").unwrap().written(), "-1");
        assert_eq!(KeepAlive::parse("2s").unwrap().written(), "2s");
        assert!(KeepAlive::parse("0").unwrap().is_zero());
        assert!(KeepAlive::parse("5 minutes").is_err());
        assert!(KeepAlive::parse("nan").is_err());
    }

    #[test]
    fn sizes_and_rates() {
        assert_eq!(parse_bytes("24GiB").unwrap(), 24 * 1024 * 1024 * 1024);
        assert_eq!(parse_bytes("8GB").unwrap(), 8_000_000_000);
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert!(parse_bytes("12 parsecs").is_err());
        assert_eq!(Rate::parse("0.5/s").unwrap().value(), 0.5);
        assert_eq!(Rate::parse("30/m").unwrap().value(), 0.5);
        assert_eq!(Rate::parse("2").unwrap().value(), 2.0);
        assert!(Rate::parse("0/s").is_err());
        assert!(Rate::parse("fast").is_err());
        assert_eq!(Rate::parse("0.2/s").unwrap().written(), "0.2/s");
    }

    #[test]
    fn go_duration_formatting_round_trips() {
        for text in ["0", "2s", "5m", "1h", "250ms", "1500ms"] {
            let d = Duration::from_nanos(parse_go_duration(text).unwrap() as u64);
            assert_eq!(
                parse_go_duration(&format_go_duration(d)).unwrap() as u128,
                d.as_nanos()
            );
        }
    }
}
