//! A stream's `num_ctx` and `max_tokens`: whole numbers of tokens, sent as the integer
//! options `num_ctx` and `num_predict`. Ollama v0.32.15 takes any JSON number for
//! them (`1.5` is cut to 1, a number past int64 turns negative), raises a `num_ctx`
//! under 4 to 4 and reads a `num_predict` of 0 or less as no limit; kabench refuses
//! what a scenario cannot mean, and each message says what the real server would do
//! with the value.

use super::ScenarioError;
use super::raw::Scalar;
use super::spans::Locator;

type Result<T> = std::result::Result<T, ScenarioError>;

/// The smallest context Ollama gives a model (a smaller `num_ctx`, 0 and negative
/// numbers included, is raised to it).
pub(super) const MIN_NUM_CTX: u32 = 4;

/// A value written for `name`, sent as the integer option `option`, as a whole number;
/// `negative` says what Ollama makes of a negative value.
fn whole(
    v: &Scalar,
    name: &str,
    option: &str,
    negative: &str,
    key: &str,
    loc: &Locator<'_>,
) -> Result<i64> {
    match v {
        Scalar::Int(n) => Ok(*n),
        Scalar::Str(s) => Err(loc.error_at(
            key,
            format!(
                "{name} {:?} is text: write a whole number without quotes, e.g. {}; Ollama answers a string option with HTTP 500 `option \"{option}\" must be of type integer`",
                crate::units::limits::excerpt(s),
                if option == "num_ctx" { 4096 } else { 32 }
            ),
        )),
        Scalar::Float(f) if !f.is_finite() || crate::units::go_int64(*f) == i64::MIN => Err(loc.error_at(
            key,
            format!(
                "{name} {f:e} is past what an integer option holds: Ollama would take it (HTTP 200) and turn it into a negative number, which it reads as {negative}; write a whole number of tokens"
            ),
        )),
        Scalar::Float(f) if f.fract() != 0.0 => Err(loc.error_at(
            key,
            format!(
                "{name} {f} is not a whole number of tokens: Ollama would take it (HTTP 200) and cut it to {} (options.{option} is an integer); write a whole number",
                f.trunc() as i64
            ),
        )),
        Scalar::Float(f) => Ok(*f as i64),
    }
}

/// `num_ctx`: at least [`MIN_NUM_CTX`], at most `u32::MAX` (the training context caps
/// it further on the server).
pub(super) fn num_ctx(v: Option<&Scalar>, key: &str, loc: &Locator<'_>) -> Result<u32> {
    let Some(v) = v else {
        return Ok(4096);
    };
    let n = whole(v, "num_ctx", "num_ctx", "a context of 4 tokens", key, loc)?;
    if n < i64::from(MIN_NUM_CTX) {
        return Err(loc.error_at(
            key,
            format!(
                "num_ctx {n} is under {MIN_NUM_CTX}: Ollama would raise it to a context of {MIN_NUM_CTX} tokens (0 and negative numbers too); write the context length in tokens, e.g. 4096"
            ),
        ));
    }
    u32::try_from(n).map_err(|_| {
        loc.error_at(
            key,
            format!(
                "num_ctx {n} is past the largest kabench sends ({}): Ollama would cut it to the model's training context; write the context length in tokens, e.g. 4096",
                u32::MAX
            ),
        )
    })
}

/// `max_tokens` (sent as `num_predict`): at least 1 (0 allowed where nothing is
/// generated, `embed`), at most `u32::MAX`.
pub(super) fn max_tokens(
    v: Option<&Scalar>,
    embed: bool,
    key: &str,
    loc: &Locator<'_>,
) -> Result<u32> {
    let Some(v) = v else {
        return Ok(32);
    };
    let no_limit = "no limit, generating until the model stops or its context is full";
    let n = whole(v, "max_tokens", "num_predict", no_limit, key, loc)?;
    if n < 0 || (n == 0 && !embed) {
        return Err(loc.error_at(
            key,
            format!(
                "max_tokens must be at least 1 (it is sent as options.num_predict, and Ollama reads {n} as {no_limit}); write the most tokens a reply may have, e.g. 32"
            ),
        ));
    }
    u32::try_from(n).map_err(|_| {
        loc.error_at(
            key,
            format!(
                "max_tokens {n} is past the largest kabench sends ({}); write the most tokens a reply may have, e.g. 32",
                u32::MAX
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::parse;

    /// The error of a one-stream scenario with `line` in its stream: key and message.
    fn error(line: &str) -> (Option<String>, String) {
        let text = format!(
            "[[stream]]\nmodel = \"m\"\n{line}\narrival = {{ kind = \"poisson\", rate = \"1/s\" }}\n[run]\nrequests = 3\n"
        );
        let e = parse(&text, Path::new("x.toml")).expect_err(line);
        assert_eq!(e.line, Some(3), "{e}");
        (e.key, e.message)
    }

    #[track_caller]
    fn says(line: &str, key: &str, parts: &[&str]) {
        let (k, message) = error(line);
        assert_eq!(k.as_deref(), Some(key), "{message}");
        for part in parts {
            assert!(message.contains(part), "{line}: {message}");
        }
    }

    fn accepts(line: &str) -> super::super::StreamSpec {
        let text = format!(
            "[[stream]]\nmodel = \"m\"\n{line}\narrival = {{ kind = \"poisson\", rate = \"1/s\" }}\n[run]\nrequests = 3\n"
        );
        let s = parse(&text, Path::new("x.toml")).unwrap_or_else(|e| panic!("{line}: {e}"));
        s.streams.into_iter().next().unwrap()
    }

    #[test]
    fn values_the_real_server_takes_but_a_scenario_cannot_mean_say_what_it_would_do() {
        // Ollama v0.32.15 answered each of these 200 (seen on the real server).
        says(
            "num_ctx = 1.5",
            "stream[0].num_ctx",
            &[
                "not a whole number",
                "Ollama would take it (HTTP 200)",
                "cut it to 1",
            ],
        );
        says(
            "max_tokens = 1.7",
            "stream[0].max_tokens",
            &["not a whole number", "cut it to 1", "num_predict"],
        );
        says(
            "num_ctx = 1e30",
            "stream[0].num_ctx",
            &["1e30", "negative number", "context of 4 tokens"],
        );
        says(
            "num_ctx = -5",
            "stream[0].num_ctx",
            &["raise it to a context of 4"],
        );
        says("num_ctx = 3", "stream[0].num_ctx", &["under 4"]);
        says("max_tokens = 0", "stream[0].max_tokens", &["no limit"]);
        says("max_tokens = -1", "stream[0].max_tokens", &["no limit"]);
        says(
            "num_ctx = 4294967296",
            "stream[0].num_ctx",
            &["training context"],
        );
        says(
            "num_ctx = \"4096\"",
            "stream[0].num_ctx",
            &["without quotes", "HTTP 500", "must be of type integer"],
        );
        for (value, shown) in [
            ("1e20", "1e20"),
            ("9.3e9", "9300000000"),
            ("1e300", "1e300"),
        ] {
            let (k, message) = error(&format!("keep_alive = {value}"));
            assert_eq!(k.as_deref(), Some("stream[0].keep_alive"));
            assert!(message.contains(&format!("{shown} seconds")), "{message}");
            assert!(
                message.contains("Ollama accepts it (HTTP 200)"),
                "{message}"
            );
            assert!(
                message.contains("unloaded as soon as it is idle"),
                "{message}"
            );
            assert!(message.len() < 600, "{message}");
        }
    }

    #[test]
    fn whole_numbers_in_range_are_taken_as_the_real_server_takes_them() {
        let s = accepts("num_ctx = 4096.0\nmax_tokens = 8.0");
        assert_eq!((s.num_ctx, s.max_tokens), (4096, 8));
        let s = accepts("num_ctx = 4");
        assert_eq!(s.num_ctx, 4);
        let s = accepts("api = \"embed\"\nmax_tokens = 0");
        assert_eq!(s.max_tokens, 0);
        let s = accepts("keep_alive = 9223372036");
        assert!(s.keep_alive.unwrap().duration().is_some());
    }
}
