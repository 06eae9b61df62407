//! `keep_alive` parsed once into `KeepAlive` and carried typed everywhere: on the wire
//! as Ollama reads it, in kabench's files as written (`serde`: the written form out,
//! parsed back in; `""` is "not sent"), and in one ordering shared by the table, the
//! headline, the recommendation and every chart: by how long the model is held, `0`
//! first, forever after every duration, and "not sent" (the server's default, unknown
//! to the report) last.
//! Over 500 lines: about a fifth of it is the round-trip and ordering tests beside the rules they check.

use std::cmp::Ordering;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::{ParseError, format_go_duration, parse_go_duration};

/// The longest Go `time.Duration`, in nanoseconds (`i64::MAX`, about 292 years).
pub(super) const MAX_GO_DURATION_NANOS: f64 = i64::MAX as f64;

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
    /// A number of seconds past what a Go duration holds, read off the wire: Ollama's
    /// conversion overflows into a negative duration, so the model unloads as soon as
    /// it is idle (the duration is held as zero), yet it is not the exact zero that
    /// makes an empty prompt an unload request (E6).
    overflowed: bool,
}

/// Ollama's `time.Duration(seconds * float64(time.Second))` for a JSON number of
/// seconds that is not negative, as its amd64 build computes it: the product truncated
/// toward zero to int64 nanoseconds, and a product past `i64::MAX` (from about
/// 9223372036.854775808 seconds, 292 years, up) converted to `i64::MIN` (the
/// processor's answer to an out-of-range conversion), a negative duration.
pub fn go_duration_nanos(seconds: f64) -> i64 {
    go_int64(seconds * 1e9)
}

/// Go's `int64(f)` as its amd64 build computes it: truncation toward zero, and
/// `i64::MIN` for NaN or anything outside int64 (from 2^63 up, below -2^63).
pub fn go_int64(f: f64) -> i64 {
    // `i64::MAX as f64` is 2^63 exactly, the first value that does not fit.
    const LIMIT: f64 = i64::MAX as f64;
    if (-LIMIT..LIMIT).contains(&f) {
        f as i64
    } else {
        i64::MIN
    }
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
            let mut ka = KeepAlive::try_from_seconds(seconds).map_err(|e| {
                ParseError::new(format!(
                    "bad keep_alive {:?}: {e}",
                    crate::units::limits::excerpt(trimmed)
                ))
            })?;
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
            overflowed: false,
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
            overflowed: false,
        })
    }

    /// A keep_alive of `seconds` (negative = forever), sent as a JSON number; an error
    /// when it is not a number or does not fit a Go duration (int64 nanoseconds, about
    /// 292 years): Ollama takes such a number (HTTP 200) but it overflows into "unload
    /// as soon as idle" ([`go_duration_nanos`]), which a scenario never means, so
    /// kabench refuses to send it and says so.
    pub fn try_from_seconds(seconds: f64) -> Result<KeepAlive, ParseError> {
        let duration = if seconds.is_nan() {
            return Err(ParseError::new("keep_alive is not a number"));
        } else if seconds < 0.0 {
            None
        } else if go_duration_nanos(seconds) < 0 {
            return Err(ParseError::new(overflow_message(seconds)));
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
            overflowed: false,
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
            overflowed: false,
        }
    }

    /// Reads `keep_alive` from a request body exactly as Ollama does (KA2–KA5):
    /// `null`/absent → `Ok(None)`; numbers are seconds, negative ones forever, converted
    /// to whole nanoseconds as Go converts them ([`go_duration_nanos`]: below a
    /// nanosecond is exactly zero, past 292 years overflows into "unload as soon as
    /// idle", both answered 200 by Ollama); strings are Go durations; numeric strings,
    /// empty strings and other JSON types are errors with Ollama's text.
    pub fn from_json(value: &Value) -> Result<Option<KeepAlive>, ParseError> {
        match value {
            Value::Null => Ok(None),
            Value::Number(n) => {
                let seconds = n.as_f64().unwrap_or(0.0);
                if seconds < 0.0 {
                    return KeepAlive::try_from_seconds(seconds).map(Some);
                }
                let nanos = go_duration_nanos(seconds);
                Ok(Some(KeepAlive {
                    written: format_seconds(seconds),
                    wire: WireKeepAlive::Seconds(seconds),
                    duration: Some(Duration::from_nanos(nanos.max(0) as u64)),
                    overflowed: nanos < 0,
                }))
            }
            Value::String(s) => {
                let nanos = parse_go_duration(s)?;
                Ok(Some(KeepAlive {
                    written: s.clone(),
                    wire: WireKeepAlive::Duration(s.clone()),
                    duration: nanos_to_duration(nanos),
                    overflowed: false,
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

    /// True for a zero keep_alive: unload as soon as idle (a number that overflowed
    /// Ollama's duration included).
    pub fn is_zero(&self) -> bool {
        self.duration == Some(Duration::ZERO)
    }

    /// True when Ollama's duration is exactly zero, which makes a request with an empty
    /// prompt an unload request (E6); false for a number that overflowed
    /// ([`KeepAlive::overflowed`]): that one loads the model, then unloads it when idle.
    pub fn is_exact_zero(&self) -> bool {
        self.is_zero() && !self.overflowed
    }

    /// True for a number of seconds read off the wire that is past what a Go duration
    /// holds: Ollama answers 200 and unloads the model as soon as it is idle.
    pub fn overflowed(&self) -> bool {
        self.overflowed
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

/// What kabench says when it refuses a number of seconds past a Go duration, saying
/// what Ollama would do with it.
fn overflow_message(seconds: f64) -> String {
    format!(
        "keep_alive {} seconds is longer than a Go duration holds ({} seconds, about 292 years): Ollama accepts it (HTTP 200) but its conversion to nanoseconds overflows into a negative duration, so the model is unloaded as soon as it is idle, as with 0; write -1 (or any negative number) to keep the model loaded forever, or 0 to unload it at once",
        format_seconds(seconds),
        MAX_KEEP_ALIVE_SECONDS.floor()
    )
}

fn nanos_to_duration(nanos: i128) -> Option<Duration> {
    if nanos < 0 {
        None
    } else {
        Some(Duration::from_nanos(nanos.min(u64::MAX as i128) as u64))
    }
}

/// A number of seconds as written: whole numbers in full up to 16 digits, larger ones
/// in their shortest form (`1e20`, not 21 digits; `1e300`, not 301), fractions as they
/// are.
fn format_seconds(seconds: f64) -> String {
    if seconds.fract() == 0.0 && seconds.abs() < 9.0e15 {
        format!("{}", seconds as i64)
    } else if seconds.abs() >= 1e16 {
        format!("{seconds:e}")
    } else {
        format!("{seconds}")
    }
}

impl Serialize for KeepAlive {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.written)
    }
}

impl<'de> Deserialize<'de> for KeepAlive {
    /// The written form, parsed as a scenario value; a JSON number is seconds.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => KeepAlive::parse(&s).map_err(serde::de::Error::custom),
            // A number is its text, parsed like any written value (a CSV reader hands
            // `0` and `300` over as numbers).
            Value::Number(n) => KeepAlive::parse(&n.to_string()).map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "keep_alive {other}: write a duration or a number of seconds"
            ))),
        }
    }
}

impl KeepAlive {
    /// A keep_alive as kabench's files write it: `""` is not sent, anything else is
    /// parsed (and `None` if it does not parse).
    pub fn from_written(text: &str) -> Option<KeepAlive> {
        (!text.is_empty())
            .then(|| KeepAlive::parse(text).ok())
            .flatten()
    }

    /// The sort key of the one ordering: (rank, seconds), rank 0 for a duration, 1 for
    /// forever, 2 for not sent.
    fn order_key(ka: Option<&KeepAlive>) -> (u8, f64) {
        match ka {
            Some(k) => match k.duration {
                Some(d) => (0, d.as_secs_f64()),
                None => (1, 0.0),
            },
            None => (2, 0.0),
        }
    }
}

/// The one ordering of keep_alive values (a value, or not sent): shorter holds first,
/// forever after every duration, not sent last; equal durations written differently
/// (`"5m"`, `300`) are equal here.
pub fn cmp_keep_alive(a: Option<&KeepAlive>, b: Option<&KeepAlive>) -> Ordering {
    let (ra, sa) = KeepAlive::order_key(a);
    let (rb, sb) = KeepAlive::order_key(b);
    ra.cmp(&rb).then(sa.total_cmp(&sb))
}

/// The written form, `""` for not sent (the form of `requests.csv` and the table).
pub fn as_written(ka: Option<&KeepAlive>) -> &str {
    ka.map_or("", |k| k.written())
}

/// keep_alive as a reader sees it: as written, or `not sent (server default)`.
pub fn display_keep_alive(ka: Option<&KeepAlive>) -> String {
    match ka {
        Some(k) => k.written.clone(),
        None => "not sent (server default)".into(),
    }
}

/// `Option<KeepAlive>` as one text field: the written form, `""` for not sent (the
/// `keep_alive` column of `requests.csv`, the picks of `recommendation.json`).
pub mod written_or_empty {
    use super::*;

    /// Writes the written form, or `""`.
    pub fn serialize<S: Serializer>(ka: &Option<KeepAlive>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(ka.as_ref().map_or("", |k| k.written()))
    }

    /// Reads `""` (or null) as not sent, anything else as a keep_alive.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<KeepAlive>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(v) => KeepAlive::deserialize(v)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A pick that may be absent (`null`), and when present a keep_alive or not sent
/// (`""`): `Option<Option<KeepAlive>>` as `recommendation.json`'s `cost_choice`.
pub mod optional_written_or_empty {
    use super::*;

    /// `null`, or the written form (`""` for not sent).
    pub fn serialize<S: Serializer>(
        ka: &Option<Option<KeepAlive>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match ka {
            None => s.serialize_none(),
            Some(k) => written_or_empty::serialize(k, s),
        }
    }

    /// Reads it back.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<KeepAlive>>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => written_or_empty::deserialize(v)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl schemars::JsonSchema for KeepAlive {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "KeepAlive".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "keep_alive as written: a Go duration (\"5m\", \"0\"), a number of seconds, or a negative value for forever",
            "type": ["string", "number"]
        })
    }
}

/// The keys [`keep_alive_keys`] writes into the enclosing object, described for the
/// published JSON Schema (never built: the fields are read through `Option<KeepAlive>`).
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct KeepAliveKeys {
    /// keep_alive as written; `""` when none was sent; a predicted policy's name
    /// (`offline-optimum`) where the cell is no one value.
    pub keep_alive: String,
    /// The same in seconds; `null` for forever, none sent, or a policy.
    pub keep_alive_s: Option<f64>,
    /// True for forever (a stream's keys only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive_forever: Option<bool>,
}

/// `Option<KeepAlive>` as the JSON files carry it beside its meaning, flattened into
/// the enclosing object: `keep_alive` (written, `""` not sent), `keep_alive_s` (`null`:
/// forever or not sent) and, with `FOREVER`, `keep_alive_forever`. Only `keep_alive` is
/// read back: the rest follows from it.
pub mod keep_alive_keys {
    use super::*;
    use serde::ser::SerializeMap;

    /// The keys of a stream (`keep_alive`, `keep_alive_s`, `keep_alive_forever`).
    pub fn serialize<S: Serializer>(ka: &Option<KeepAlive>, s: S) -> Result<S::Ok, S::Error> {
        write(ka, s, true)
    }

    /// Reads them back.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<KeepAlive>, D::Error> {
        read(d)
    }

    /// The keys without `keep_alive_forever` (a release delay's).
    pub mod seconds_only {
        use super::*;

        /// `keep_alive` and `keep_alive_s`.
        pub fn serialize<S: Serializer>(ka: &Option<KeepAlive>, s: S) -> Result<S::Ok, S::Error> {
            write(ka, s, false)
        }

        /// Reads them back.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<KeepAlive>, D::Error> {
            read(d)
        }
    }

    fn write<S: Serializer>(
        ka: &Option<KeepAlive>,
        s: S,
        forever: bool,
    ) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(if forever { 3 } else { 2 }))?;
        m.serialize_entry("keep_alive", ka.as_ref().map_or("", |k| k.written()))?;
        m.serialize_entry(
            "keep_alive_s",
            &ka.as_ref()
                .and_then(|k| k.duration())
                .map(|d| d.as_secs_f64()),
        )?;
        if forever {
            m.serialize_entry(
                "keep_alive_forever",
                &ka.as_ref().is_some_and(|k| k.is_forever()),
            )?;
        }
        m.end()
    }

    #[derive(Deserialize)]
    struct Keys {
        #[serde(default)]
        keep_alive: Option<Value>,
    }

    /// A value that is not a keep_alive (a predicted policy's name such as
    /// `keep-alive-optimum`, which no request sends) reads as none.
    fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Option<KeepAlive>, D::Error> {
        let keys = Keys::deserialize(d)?;
        Ok(keys
            .keep_alive
            .and_then(|v| written_or_empty::deserialize(v).ok())
            .flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Row {
        #[serde(with = "written_or_empty")]
        keep_alive: Option<KeepAlive>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Keys {
        name: String,
        #[serde(flatten, with = "keep_alive_keys")]
        keep_alive: Option<KeepAlive>,
        after: u32,
    }

    fn same(a: &Option<KeepAlive>, b: &Option<KeepAlive>) {
        assert_eq!(a, b);
        if let (Some(a), Some(b)) = (a, b) {
            assert_eq!(
                (a.written(), a.duration(), a.wire()),
                (b.written(), b.duration(), b.wire())
            );
        }
    }

    #[test]
    fn keep_alive_round_trips_through_json_and_csv() {
        let values = [
            Some(KeepAlive::parse("0").unwrap()),
            Some(
                KeepAlive::from_json(&serde_json::json!(-1))
                    .unwrap()
                    .unwrap(),
            ),
            Some(KeepAlive::parse("5m").unwrap()),
            Some(
                KeepAlive::from_json(&serde_json::json!(300))
                    .unwrap()
                    .unwrap(),
            ),
            None,
        ];
        let written = ["0", "-1", "5m", "300", ""];
        for (ka, text) in values.iter().zip(written) {
            // JSON, as a field of its own.
            let json = serde_json::to_string(&Row {
                keep_alive: ka.clone(),
            })
            .unwrap();
            assert_eq!(json, format!("{{\"keep_alive\":\"{text}\"}}"));
            let back: Row = serde_json::from_str(&json).unwrap();
            same(&back.keep_alive, ka);
            // JSON, flattened with its meaning beside it.
            let keys = Keys {
                name: "s".into(),
                keep_alive: ka.clone(),
                after: 1,
            };
            let v = serde_json::to_value(&keys).unwrap();
            assert_eq!(v["keep_alive"], text);
            assert_eq!(
                v["keep_alive_s"].as_f64(),
                ka.as_ref()
                    .and_then(|k| k.duration())
                    .map(|d| d.as_secs_f64())
            );
            assert_eq!(v["keep_alive_forever"], text == "-1");
            let back: Keys = serde_json::from_value(v).unwrap();
            same(&back.keep_alive, ka);
            assert_eq!(back.after, 1);
            // CSV, one column.
            let mut w = csv::Writer::from_writer(Vec::new());
            w.serialize(Row {
                keep_alive: ka.clone(),
            })
            .unwrap();
            let bytes = w.into_inner().unwrap();
            let mut r = csv::Reader::from_reader(bytes.as_slice());
            let back: Row = r.deserialize().next().unwrap().unwrap();
            same(&back.keep_alive, ka);
        }
        // A JSON number reads as seconds; a forever keeps its wire form.
        let n: KeepAlive = serde_json::from_str("-1").unwrap();
        assert!(n.is_forever());
        assert_eq!(n.to_json(), serde_json::json!(-1));
        let n: KeepAlive = serde_json::from_str("300").unwrap();
        assert_eq!(n.duration(), Some(Duration::from_secs(300)));
    }

    #[test]
    fn one_ordering_durations_then_forever_then_not_sent() {
        let ka = |t: &str| KeepAlive::from_written(t);
        let mut values = [
            ka(""),
            ka("-1"),
            ka("5m"),
            ka("0"),
            ka("30"),
            ka("1h"),
            ka("10s"),
        ];
        values.sort_by(|a, b| cmp_keep_alive(a.as_ref(), b.as_ref()));
        let order: Vec<&str> = values.iter().map(|k| as_written(k.as_ref())).collect();
        assert_eq!(order, ["0", "10s", "30", "5m", "1h", "-1", ""]);
        assert_eq!(
            cmp_keep_alive(ka("300").as_ref(), ka("5m").as_ref()),
            Ordering::Equal
        );
    }
}
