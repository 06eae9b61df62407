//! A cell's swept parameters, typed: the keep_alive (a value a client sends, or the
//! name of a predicted policy that is no one value), the rate, the quantization and the
//! model, plus labels that are not swept axes (a proxy log's `source`). On disk they
//! stay what they always were, one JSON object of written strings
//! (`{"keep_alive": "5m", "rate": "0.5/s"}`), so every run folder reads as before.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::SweepAxis;
use crate::units::{KeepAlive, Rate};

/// The key of a repeated cell's repetition number in `params`.
pub const REPETITION: &str = "repetition";

/// A cell's `keep_alive` parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum SweptKeepAlive {
    /// A value a client can send.
    Value(KeepAlive),
    /// A predicted policy that is no one value (`offline-optimum`, `adaptive`,
    /// `as-sent`): its name.
    Policy(String),
}

impl SweptKeepAlive {
    /// Reads a written value: a keep_alive when it parses, a policy's name otherwise.
    pub fn parse(text: &str) -> SweptKeepAlive {
        match KeepAlive::parse(text) {
            Ok(k) => SweptKeepAlive::Value(k),
            Err(_) => SweptKeepAlive::Policy(text.to_string()),
        }
    }

    /// As written.
    pub fn written(&self) -> &str {
        match self {
            SweptKeepAlive::Value(k) => k.written(),
            SweptKeepAlive::Policy(name) => name,
        }
    }

    /// The value a client can set, if it is one.
    pub fn value(&self) -> Option<&KeepAlive> {
        match self {
            SweptKeepAlive::Value(k) => Some(k),
            SweptKeepAlive::Policy(_) => None,
        }
    }
}

/// One cell's swept parameters (`run.json` and `summary.json` `cells[].params`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "BTreeMap<String, String>", from = "BTreeMap<String, String>")]
pub struct CellParams {
    /// `keep_alive`, when swept (or a predicted policy).
    pub keep_alive: Option<SweptKeepAlive>,
    /// `rate`, when swept.
    pub rate: Option<Rate>,
    /// `quant`, when swept.
    pub quant: Option<String>,
    /// `model`, when swept.
    pub model: Option<String>,
    /// `repetition` (1, 2, …), when `[run] repeat` ran the cell more than once.
    pub repetition: Option<u32>,
    /// Other labels as written: not swept axes (a proxy log's `source`), or an axis
    /// value an older kabench wrote that no longer parses.
    pub labels: BTreeMap<String, String>,
}

impl CellParams {
    /// Sets `key` from its written value: a swept axis is parsed, anything else (or a
    /// value that does not parse) is kept as a label.
    pub fn insert(&mut self, key: &str, written: &str) {
        if key == REPETITION
            && let Ok(k) = written.parse::<u32>()
            && k.to_string() == written
        {
            self.repetition = Some(k);
            return;
        }
        match SweepAxis::parse(key) {
            Some(SweepAxis::KeepAlive) => {
                self.keep_alive = Some(SweptKeepAlive::parse(written));
            }
            Some(SweepAxis::Rate) => match Rate::parse(written) {
                Ok(r) if r.written() == written => self.rate = Some(r),
                _ => {
                    self.labels.insert(key.into(), written.into());
                }
            },
            Some(SweepAxis::Quant) => self.quant = Some(written.into()),
            Some(SweepAxis::Model) => self.model = Some(written.into()),
            None => {
                self.labels.insert(key.into(), written.into());
            }
        }
    }

    /// With `key` set (builder form of [`Self::insert`]).
    pub fn with(mut self, key: &str, written: &str) -> CellParams {
        self.insert(key, written);
        self
    }

    /// The written value of `key`, if set (`repetition` is read from its typed field,
    /// not here).
    pub fn get(&self, key: &str) -> Option<&str> {
        match SweepAxis::parse(key) {
            Some(SweepAxis::KeepAlive) => self.keep_alive.as_ref().map(SweptKeepAlive::written),
            Some(SweepAxis::Rate) => self.rate.as_ref().map(Rate::written),
            Some(SweepAxis::Quant) => self.quant.as_deref(),
            Some(SweepAxis::Model) => self.model.as_deref(),
            None => None,
        }
        .or_else(|| self.labels.get(key).map(String::as_str))
    }

    /// True when `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Every parameter as written, by key (the order of `run.json`).
    pub fn written(&self) -> BTreeMap<String, String> {
        let mut out = self.labels.clone();
        let typed = [
            (
                SweepAxis::KeepAlive,
                self.keep_alive.as_ref().map(|k| k.written()),
            ),
            (SweepAxis::Rate, self.rate.as_ref().map(Rate::written)),
            (SweepAxis::Quant, self.quant.as_deref()),
            (SweepAxis::Model, self.model.as_deref()),
        ];
        for (axis, value) in typed {
            if let Some(v) = value {
                out.insert(axis.as_str().to_string(), v.to_string());
            }
        }
        if let Some(k) = self.repetition {
            out.insert(REPETITION.to_string(), k.to_string());
        }
        out
    }

    /// The same parameters without the repetition: what every repetition of one
    /// cell shares, and what its pooled figures are labelled with.
    pub fn pooled(&self) -> CellParams {
        CellParams {
            repetition: None,
            ..self.clone()
        }
    }

    /// Every parameter but keep_alive, as written: what a group of cells that differ
    /// only in keep_alive shares.
    pub fn fixed(&self) -> BTreeMap<String, String> {
        let mut out = self.written();
        out.remove(SweepAxis::KeepAlive.as_str());
        out
    }

    /// True when nothing was swept or labelled.
    pub fn is_empty(&self) -> bool {
        self.keep_alive.is_none()
            && self.rate.is_none()
            && self.quant.is_none()
            && self.model.is_none()
            && self.repetition.is_none()
            && self.labels.is_empty()
    }

    /// How many parameters are set.
    pub fn len(&self) -> usize {
        self.written().len()
    }

    /// True when the cell's keep_alive is a value a client can send, or was not swept:
    /// a predicted policy that is no one value (the offline optimum) is not.
    pub fn is_settable(&self) -> bool {
        !matches!(self.keep_alive, Some(SweptKeepAlive::Policy(_)))
    }
}

impl std::ops::Index<&str> for CellParams {
    type Output = str;

    fn index(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("no parameter {key:?} in {:?}", self.written()))
    }
}

impl From<CellParams> for BTreeMap<String, String> {
    fn from(p: CellParams) -> Self {
        p.written()
    }
}

impl From<BTreeMap<String, String>> for CellParams {
    fn from(map: BTreeMap<String, String>) -> Self {
        let mut out = CellParams::default();
        for (k, v) in &map {
            out.insert(k, v);
        }
        out
    }
}

impl JsonSchema for CellParams {
    fn schema_name() -> Cow<'static, str> {
        "CellParams".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = <BTreeMap<String, String>>::json_schema(generator);
        schema.insert(
            "description".into(),
            "Swept axes (keep_alive, rate, quant, model), the repetition (1, 2, …) of a repeated cell, and labels, each value as written.".into(),
        );
        schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_typed_and_written_back_as_they_were() {
        let json = serde_json::json!({
            "keep_alive": "5m", "rate": "0.5/s", "quant": "q8_0", "source": "kabench proxy"
        });
        let p: CellParams = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(
            p.keep_alive.as_ref().and_then(SweptKeepAlive::value),
            Some(&KeepAlive::parse("5m").unwrap())
        );
        assert_eq!(p.rate.as_ref().map(Rate::value), Some(0.5));
        assert_eq!(p.quant.as_deref(), Some("q8_0"));
        assert_eq!(p["source"], *"kabench proxy");
        assert_eq!(serde_json::to_value(&p).unwrap(), json);
        assert!(p.is_settable());
        assert!(!p.fixed().contains_key("keep_alive"));

        let rep: CellParams =
            serde_json::from_value(serde_json::json!({"keep_alive": "5m", "repetition": "3"}))
                .unwrap();
        assert_eq!(rep.repetition, Some(3));
        assert!(rep.labels.is_empty());
        assert_eq!(rep.written()["repetition"], "3");
        assert_eq!(rep.pooled().written().len(), 1);
        assert!(!rep.fixed().contains_key("keep_alive"));

        let policy: CellParams =
            serde_json::from_value(serde_json::json!({"keep_alive": "offline-optimum"})).unwrap();
        assert_eq!(
            policy.keep_alive,
            Some(SweptKeepAlive::Policy("offline-optimum".into()))
        );
        assert!(!policy.is_settable());
        assert_eq!(policy["keep_alive"], *"offline-optimum");
    }
}
