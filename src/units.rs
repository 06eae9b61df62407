//! Ollama's value forms, parsed once and printed back as written: `keep_alive`
//! (Go durations, seconds, negative = forever), byte sizes (`"24GiB"`) and request
//! rates (`"0.5/s"`). Knows nothing of scenarios, HTTP or the scheduler.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// A value that could not be parsed; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// Human-readable reason, phrased the way Ollama or the scenario docs phrase it.
    pub message: String,
}

impl ParseError {
    fn new(message: impl Into<String>) -> Self {
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

/// The longest Go `time.Duration`, in nanoseconds (`i64::MAX`, about 292 years).
const MAX_GO_DURATION_NANOS: f64 = i64::MAX as f64;

/// The most seconds a numeric keep_alive can hold once Ollama turns it into a Go
/// duration (int64 nanoseconds, about 292 years).
pub const MAX_KEEP_ALIVE_SECONDS: f64 = MAX_GO_DURATION_NANOS / 1e9;

/// How a `keep_alive` value goes on the wire: Ollama accepts a JSON number of seconds
/// or a Go duration string, never a numeric string (KA4, KA7).
#[derive(Debug, Clone, PartialEq)]
pub enum WireKeepAlive {
    /// A JSON number of seconds; negative means forever.
    Seconds(f64),
    /// A Go duration string such as `"5m"` or `"0"`.
    Duration(String),
}

/// A parsed `keep_alive`: what it means, how it is sent, and how it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct KeepAlive {
    written: String,
    wire: WireKeepAlive,
    duration: Option<Duration>,
}

impl KeepAlive {
    /// Parses a value as a user writes it in a scenario or on the command line:
    /// a Go duration (`"30s"`, `"1h30m"`, `"0"`), a plain number of seconds (`"300"`,
    /// `"0.5"`), or a negative number / negative duration for forever (`"-1"`).
    /// Plain numbers travel as JSON numbers, durations as strings.
    pub fn parse(text: &str) -> Result<KeepAlive, ParseError> {
        let trimmed = text.trim();
        if let Ok(seconds) = trimmed.parse::<f64>()
            && seconds.is_finite()
            && !trimmed.contains(['e', 'E', 'i', 'n', 'N'])
        {
            let mut ka = KeepAlive::try_from_seconds(seconds)
                .map_err(|e| ParseError::new(format!("bad keep_alive {trimmed:?}: {e}")))?;
            ka.written = trimmed.to_string();
            if trimmed == "0" {
                ka.wire = WireKeepAlive::Duration("0".into());
            }
            return Ok(ka);
        }
        let nanos = parse_go_duration(trimmed).map_err(|e| {
            ParseError::new(format!(
                "bad keep_alive {trimmed:?}: {e}; write a duration such as \"30s\", \"5m\", \"1h30m\", \"0\", a number of seconds, or -1 for forever"
            ))
        })?;
        Ok(KeepAlive {
            written: trimmed.to_string(),
            wire: WireKeepAlive::Duration(trimmed.to_string()),
            duration: nanos_to_duration(nanos),
        })
    }

    /// A keep_alive of `seconds` (negative = forever), sent as a JSON number; a value
    /// past what a Go duration holds is held as the longest one (see
    /// [`KeepAlive::try_from_seconds`] to refuse it instead).
    pub fn from_seconds(seconds: f64) -> KeepAlive {
        KeepAlive::try_from_seconds(seconds).unwrap_or_else(|_| KeepAlive {
            written: format_seconds(seconds),
            wire: WireKeepAlive::Seconds(seconds),
            duration: Some(Duration::from_nanos(i64::MAX as u64)),
        })
    }

    /// A keep_alive of `seconds` (negative = forever), sent as a JSON number; an error
    /// when it is not a number or does not fit a Go duration (int64 nanoseconds, about
    /// 292 years), as Ollama cannot hold it.
    pub fn try_from_seconds(seconds: f64) -> Result<KeepAlive, ParseError> {
        let duration = if seconds.is_nan() {
            return Err(ParseError::new("keep_alive is not a number"));
        } else if seconds < 0.0 {
            None
        } else if seconds > MAX_KEEP_ALIVE_SECONDS {
            return Err(ParseError::new(format!(
                "keep_alive {} seconds is out of range: a duration holds at most {} seconds (about 292 years); use -1 for forever",
                format_seconds(seconds),
                MAX_KEEP_ALIVE_SECONDS.floor()
            )));
        } else {
            Some(
                Duration::try_from_secs_f64(seconds)
                    .map_err(|e| ParseError::new(format!("keep_alive {seconds} seconds: {e}")))?,
            )
        };
        Ok(KeepAlive {
            written: format_seconds(seconds),
            wire: WireKeepAlive::Seconds(seconds),
            duration,
        })
    }

    /// Forever, written and sent as the JSON number `-1` (KA7).
    pub fn forever() -> KeepAlive {
        KeepAlive::from_seconds(-1.0)
    }

    /// A finite keep_alive, sent as a Go duration string.
    pub fn from_duration(d: Duration) -> KeepAlive {
        let text = format_go_duration(d);
        KeepAlive {
            written: text.clone(),
            wire: WireKeepAlive::Duration(text),
            duration: Some(d),
        }
    }

    /// Reads `keep_alive` from a request body exactly as Ollama does (KA2–KA5):
    /// `null`/absent → `Ok(None)`; numbers are seconds; strings are Go durations;
    /// numeric strings, empty strings and other JSON types are errors with Ollama's text.
    pub fn from_json(value: &Value) -> Result<Option<KeepAlive>, ParseError> {
        match value {
            Value::Null => Ok(None),
            Value::Number(n) => {
                let seconds = n.as_f64().unwrap_or(0.0);
                KeepAlive::try_from_seconds(seconds).map(Some)
            }
            Value::String(s) => {
                let nanos = parse_go_duration(s)?;
                Ok(Some(KeepAlive {
                    written: s.clone(),
                    wire: WireKeepAlive::Duration(s.clone()),
                    duration: nanos_to_duration(nanos),
                }))
            }
            Value::Bool(_) => Err(ParseError::new("Unsupported type: 'bool'")),
            Value::Array(_) => Err(ParseError::new("Unsupported type: '[]interface {}'")),
            Value::Object(_) => Err(ParseError::new(
                "Unsupported type: 'map[string]interface {}'",
            )),
        }
    }

    /// The JSON value to send: a number or a duration string, never a numeric string.
    pub fn to_json(&self) -> Value {
        match &self.wire {
            WireKeepAlive::Seconds(s) => {
                if s.fract() == 0.0 && s.abs() < 9.0e15 {
                    Value::from(*s as i64)
                } else {
                    serde_json::Number::from_f64(*s)
                        .map(Value::Number)
                        .unwrap_or(Value::from(-1))
                }
            }
            WireKeepAlive::Duration(d) => Value::String(d.clone()),
        }
    }

    /// How the value goes on the wire.
    pub fn wire(&self) -> &WireKeepAlive {
        &self.wire
    }

    /// The value exactly as the user wrote it (kept in `params` and CSV rows).
    pub fn written(&self) -> &str {
        &self.written
    }

    /// The duration, or `None` for forever.
    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }

    /// True when the model stays until evicted.
    pub fn is_forever(&self) -> bool {
        self.duration.is_none()
    }

    /// True for a zero keep_alive: unload as soon as idle.
    pub fn is_zero(&self) -> bool {
        self.duration == Some(Duration::ZERO)
    }

    /// Seconds as a float, with forever as `f64::INFINITY` (for sorting and charts).
    pub fn seconds_or_infinity(&self) -> f64 {
        self.duration.map_or(f64::INFINITY, |d| d.as_secs_f64())
    }
}

impl fmt::Display for KeepAlive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl std::str::FromStr for KeepAlive {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeepAlive::parse(s)
    }
}

fn nanos_to_duration(nanos: i128) -> Option<Duration> {
    if nanos < 0 {
        None
    } else {
        Some(Duration::from_nanos(nanos.min(u64::MAX as i128) as u64))
    }
}

fn format_seconds(seconds: f64) -> String {
    if seconds.fract() == 0.0 && seconds.abs() < 9.0e15 {
        format!("{}", seconds as i64)
    } else {
        format!("{seconds}")
    }
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
        // Numbers of seconds past 292 years: an error, not a panic.
        let e = KeepAlive::from_json(&json!(1e20)).unwrap_err();
        assert!(e.message.contains("out of range"), "{e}");
        assert!(KeepAlive::from_json(&json!(f64::MAX)).is_err());
        assert!(KeepAlive::parse("100000000000000000000").is_err());
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
