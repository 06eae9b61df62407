//! What the doctor sends and how it reads the answer: the keep_alive forms (KA1–KA5),
//! the request bodies of each endpoint, and the verdict of an observed expiry.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::http::Req;

/// How far an observed keep-alive may be from the one expected (request and read-back
/// timing on a busy host).
pub const TOLERANCE_S: f64 = 1.5;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The server did what the request asked.
    #[serde(rename = "honoured")]
    Honoured,
    /// The server answered but did not apply it.
    #[serde(rename = "ignored")]
    Ignored,
    /// The server refused the request (400).
    #[serde(rename = "rejected")]
    Rejected,
    /// Not applicable or not measurable here: a measurement row, or a probe that could
    /// not run.
    #[serde(rename = "n/a")]
    NotApplicable,
    /// A yes-or-no fact measured on the server: yes (llama-server checks).
    #[serde(rename = "yes")]
    Yes,
    /// A yes-or-no fact measured on the server: no (llama-server checks).
    #[serde(rename = "no")]
    No,
    /// The endpoint probed is switched off on the server (llama-server `/metrics`
    /// without `--metrics`).
    #[serde(rename = "disabled")]
    Disabled,
}

impl Verdict {
    /// The word in the table.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Honoured => "honoured",
            Verdict::Ignored => "ignored",
            Verdict::Rejected => "rejected",
            Verdict::NotApplicable => "n/a",
            Verdict::Yes => "yes",
            Verdict::No => "no",
            Verdict::Disabled => "disabled",
        }
    }
}

/// A native endpoint taking `keep_alive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Native {
    /// `/api/generate`.
    Generate,
    /// `/api/chat`.
    Chat,
    /// `/api/embed`.
    Embed,
}

impl Native {
    /// The path.
    pub fn path(self) -> &'static str {
        match self {
            Native::Generate => "/api/generate",
            Native::Chat => "/api/chat",
            Native::Embed => "/api/embed",
        }
    }

    /// The id prefix (`generate`).
    pub fn key(self) -> &'static str {
        match self {
            Native::Generate => "generate",
            Native::Chat => "chat",
            Native::Embed => "embed",
        }
    }

    /// A smallest request for `model`: one token, not streamed; `options` merged in.
    pub fn body(self, model: &str, options: Value) -> Value {
        let mut o = match self {
            Native::Embed => json!({}),
            _ => json!({"num_predict": 1}),
        };
        if let (Some(o), Some(extra)) = (o.as_object_mut(), options.as_object()) {
            for (k, v) in extra {
                o.insert(k.clone(), v.clone());
            }
        }
        let mut body = match self {
            Native::Generate => json!({"model": model, "prompt": "hi", "stream": false}),
            Native::Chat => json!({"model": model, "stream": false,
                "messages": [{"role": "user", "content": "hi"}]}),
            Native::Embed => json!({"model": model, "input": "hi"}),
        };
        if o.as_object().is_some_and(|m| !m.is_empty()) {
            body["options"] = o;
        }
        body
    }
}

/// What a keep-alive does to the model, as observed or as asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// Expires this many seconds after the reply.
    Seconds(f64),
    /// Never expires.
    Forever,
    /// Unloaded at once.
    Unload,
}

impl Effect {
    /// Close enough to be the same (within [`TOLERANCE_S`]).
    pub fn matches(self, other: Effect) -> bool {
        match (self, other) {
            (Effect::Seconds(a), Effect::Seconds(b)) => (a - b).abs() <= TOLERANCE_S,
            (a, b) => a == b,
        }
    }

    /// `7.0 s`, `forever`, `unloaded at once`.
    pub fn describe(self) -> String {
        match self {
            Effect::Seconds(s) => format!("{s:.1} s"),
            Effect::Forever => "forever".into(),
            Effect::Unload => "unloaded at once".into(),
        }
    }

    /// What `/api/ps` showed, as a sentence part.
    pub fn after_reply(self) -> String {
        match self {
            Effect::Seconds(s) => format!("expires {s:.1} s after the reply"),
            Effect::Forever => "never expires (expires_at ≈292 years ahead)".into(),
            Effect::Unload => "unloaded at once after the reply".into(),
        }
    }

    /// As a keep_alive a request can send to get it back: seconds, `-1` or `0`.
    pub fn to_json(self) -> Value {
        match self {
            Effect::Seconds(s) => json!(s.round().max(1.0)),
            Effect::Forever => json!(-1),
            Effect::Unload => json!(0),
        }
    }
}

/// One keep_alive form of KA1–KA5, in the order the doctor sends them to an endpoint
/// (the rejected one first, before any load; `"0"` last, it unloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The string `"-1"` (KA4: 400).
    StringMinusOne,
    /// A JSON number, seconds (KA2).
    Number,
    /// A negative number (KA2: forever).
    Negative,
    /// A Go duration string (KA3).
    Duration,
    /// Inside `options` (KA1: ignored).
    InOptions,
    /// No keep_alive on a resident model (KA5: it keeps its own).
    Absent,
    /// The string `"0"` (KA3, T3: unload once idle).
    Zero,
}

/// Every form, in sending order.
pub const FORMS: [Form; 7] = [
    Form::StringMinusOne,
    Form::Number,
    Form::Negative,
    Form::Duration,
    Form::InOptions,
    Form::Absent,
    Form::Zero,
];

/// The keep_alive of [`Form::Number`], seconds.
pub const NUMBER_S: f64 = 7.0;
/// The keep_alive of [`Form::Duration`].
pub const DURATION: &str = "11s";
/// [`DURATION`] in seconds.
pub const DURATION_S: f64 = 11.0;
/// The keep_alive put inside `options` for [`Form::InOptions`]: shorter than the
/// [`DURATION`] the model has by then, so an expiry the server sets late (later only,
/// never earlier) cannot pass for it.
pub const IN_OPTIONS: &str = "5s";
/// [`IN_OPTIONS`] in seconds.
pub const IN_OPTIONS_S: f64 = 5.0;

impl Form {
    /// The id suffix.
    pub fn key(self) -> &'static str {
        match self {
            Form::StringMinusOne => "string_minus_one",
            Form::Number => "number",
            Form::Negative => "negative",
            Form::Duration => "duration",
            Form::InOptions => "in_options",
            Form::Absent => "absent",
            Form::Zero => "zero",
        }
    }

    /// What the table calls it.
    pub fn label(self) -> String {
        match self {
            Form::StringMinusOne => "keep_alive \"-1\" (string)".into(),
            Form::Number => format!("keep_alive {NUMBER_S} (number)"),
            Form::Negative => "keep_alive -1 (negative number)".into(),
            Form::Duration => format!("keep_alive \"{DURATION}\" (duration)"),
            Form::InOptions => format!("options.keep_alive \"{IN_OPTIONS}\""),
            Form::Absent => "keep_alive absent (resident model)".into(),
            Form::Zero => "keep_alive \"0\"".into(),
        }
    }

    /// The rule it checks.
    pub fn rule(self) -> &'static str {
        match self {
            Form::StringMinusOne => "KA4",
            Form::Number | Form::Negative => "KA2",
            Form::Duration => "KA3",
            Form::InOptions => "KA1",
            Form::Absent => "KA5",
            Form::Zero => "KA3, T3",
        }
    }

    /// What Ollama v0.32.15 does with it.
    pub fn expected(self) -> Verdict {
        match self {
            Form::StringMinusOne => Verdict::Rejected,
            Form::InOptions => Verdict::Ignored,
            _ => Verdict::Honoured,
        }
    }

    /// What to do about it in an app.
    pub fn fix(self) -> &'static str {
        match self {
            Form::StringMinusOne => {
                "send forever as the number -1, never the string \"-1\" (KA7): the string is a 400 and the request never runs"
            }
            Form::Number | Form::Duration => "",
            Form::Negative => {
                "forever is the number -1; it never pins a model against eviction (E3)"
            }
            Form::InOptions => {
                "move keep_alive to the top level of the body: inside options the server ignores it"
            }
            Form::Absent => {
                "a request without keep_alive keeps the resident value, but a cold load gets OLLAMA_KEEP_ALIVE: send it on every request the app relies on"
            }
            Form::Zero => "",
        }
    }

    /// The request for `model` on `endpoint`.
    pub fn request(self, endpoint: Native, model: &str) -> Req {
        let mut options = json!({});
        let mut keep_alive = None;
        match self {
            Form::StringMinusOne => keep_alive = Some(json!("-1")),
            Form::Number => keep_alive = Some(json!(NUMBER_S as i64)),
            Form::Negative => keep_alive = Some(json!(-1)),
            Form::Duration => keep_alive = Some(json!(DURATION)),
            Form::InOptions => options = json!({"keep_alive": IN_OPTIONS}),
            Form::Absent => {}
            Form::Zero => keep_alive = Some(json!("0")),
        }
        let mut body = endpoint.body(model, options);
        if let Some(k) = keep_alive {
            body["keep_alive"] = k;
        }
        Req::post(endpoint.path(), body)
    }

    /// The effect if the server honours the form; `prior` is the model's keep-alive
    /// before the request (what an ignored form leaves).
    pub fn honoured_effect(self, prior: Option<Effect>) -> Option<Effect> {
        match self {
            Form::StringMinusOne | Form::Negative => Some(Effect::Forever),
            Form::Number => Some(Effect::Seconds(NUMBER_S)),
            Form::Duration => Some(Effect::Seconds(DURATION_S)),
            Form::InOptions => Some(Effect::Seconds(IN_OPTIONS_S)),
            Form::Absent => prior,
            Form::Zero => Some(Effect::Unload),
        }
    }
}

/// The verdict of a request that was answered 200 and whose effect was `observed`:
/// honoured when it is what the request asked for, ignored otherwise; n/a when what
/// it asked for and what ignoring it leaves look the same.
pub fn judge(asked: Effect, observed: Effect, if_ignored: Option<Effect>) -> Verdict {
    if if_ignored.is_some_and(|i| i.matches(asked)) {
        return Verdict::NotApplicable;
    }
    if observed.matches(asked) {
        Verdict::Honoured
    } else {
        Verdict::Ignored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ka1_ka4_bodies_put_keep_alive_where_each_form_says() {
        let r = Form::InOptions.request(Native::Generate, "m");
        let b = r.body.unwrap();
        assert!(b.get("keep_alive").is_none());
        assert_eq!(b["options"]["keep_alive"], "5s");
        assert_eq!(format!("{IN_OPTIONS_S}s"), IN_OPTIONS);
        assert_eq!(format!("{DURATION_S}s"), DURATION);
        assert_eq!(b["options"]["num_predict"], 1);
        let b = Form::StringMinusOne
            .request(Native::Chat, "m")
            .body
            .unwrap();
        assert_eq!(b["keep_alive"], "-1");
        assert_eq!(b["messages"][0]["content"], "hi");
        let b = Form::Negative.request(Native::Embed, "e").body.unwrap();
        assert_eq!(b["keep_alive"], -1);
        assert!(b.get("options").is_none(), "{b}");
        assert!(
            Form::Absent
                .request(Native::Embed, "e")
                .body
                .unwrap()
                .get("keep_alive")
                .is_none()
        );
    }

    #[test]
    fn an_expiry_within_the_tolerance_is_honoured_and_a_lookalike_is_na() {
        let asked = Effect::Seconds(7.0);
        assert_eq!(
            judge(asked, Effect::Seconds(7.9), Some(Effect::Seconds(300.0))),
            Verdict::Honoured
        );
        assert_eq!(
            judge(asked, Effect::Seconds(300.0), Some(Effect::Seconds(300.0))),
            Verdict::Ignored
        );
        assert_eq!(
            judge(asked, Effect::Seconds(7.0), Some(Effect::Seconds(6.5))),
            Verdict::NotApplicable
        );
        assert_eq!(
            judge(Effect::Unload, Effect::Unload, Some(Effect::Forever)),
            Verdict::Honoured
        );
        assert_eq!(Effect::Seconds(290.4).to_json(), json!(290.0));
    }

    #[test]
    fn an_ignored_options_keep_alive_read_back_late_is_still_ignored() {
        // The model has DURATION_S; the server sets the new expiry up to seconds after
        // its reply on a busy host, so the read-back is that much longer, never shorter.
        let prior = Effect::Seconds(DURATION_S);
        let asked = Form::InOptions.honoured_effect(Some(prior)).unwrap();
        for late in [0.0, 0.5, 1.0, 2.0, 3.0] {
            assert_eq!(
                judge(asked, Effect::Seconds(DURATION_S + late), Some(prior)),
                Verdict::Ignored,
                "read back {late} s late"
            );
        }
    }
}
