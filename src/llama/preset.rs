//! The router's `--models-preset` INI for one swept value: a `[*]` section for every
//! model and a section per model with its own `sleep-idle-seconds`. llama.cpp's INI
//! has no quoting (a value runs to a `;`, `#` or the end of the line; a section name
//! to the first `]`), so nothing from the scenario is written as text: model ids pass
//! [`check_model_id`], keys are kabench's own, and every value is a number.

use std::fmt::Write as _;

use super::id::check_model_id;

/// One model's section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPreset {
    /// The model id (its GGUF file name without `.gguf`).
    pub id: String,
    /// Its `sleep-idle-seconds` (`None`: not set, the router's default or `[*]`'s;
    /// -1 = off, else at least 1).
    pub sleep_idle_seconds: Option<i64>,
}

/// A whole preset file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preset {
    /// `[*]`'s `ctx-size`.
    pub ctx_size: Option<u32>,
    /// `[*]`'s `parallel`.
    pub parallel: Option<u32>,
    /// `[*]`'s `threads` (`-t`; use 1 on a busy 2-core machine).
    pub threads: Option<u32>,
    /// `[*]`'s `sleep-idle-seconds`, for every model without its own.
    pub sleep_idle_seconds: Option<i64>,
    /// One section per model, in this order.
    pub models: Vec<ModelPreset>,
}

/// A `sleep-idle-seconds` llama.cpp accepts: -1 (off) or at least 1.
fn check_sleep(value: i64, whose: &str) -> Result<i64, String> {
    if value == -1 || (1..=i64::from(i32::MAX)).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "sleep-idle-seconds {value} for {whose}: llama.cpp takes -1 (off) or 1 to {}",
            i32::MAX
        ))
    }
}

impl Preset {
    /// The INI text, or an error naming the id or value llama.cpp would misread.
    pub fn to_ini(&self) -> Result<String, String> {
        let mut out =
            String::from("; written by kabench for one swept value\nversion = 1\n\n[*]\n");
        let mut line = |key: &str, value: String| {
            let _ = writeln!(out, "{key} = {value}");
        };
        if let Some(v) = self.ctx_size {
            line("ctx-size", v.to_string());
        }
        if let Some(v) = self.parallel {
            line("parallel", v.to_string());
        }
        if let Some(v) = self.threads {
            line("threads", v.to_string());
        }
        if let Some(v) = self.sleep_idle_seconds {
            line("sleep-idle-seconds", check_sleep(v, "[*]")?.to_string());
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.models {
            let id = check_model_id(&m.id)?;
            if !seen.insert(id) {
                return Err(format!("model '{id}' is listed twice in the router preset"));
            }
            let _ = write!(out, "\n[{id}]\n");
            if let Some(v) = m.sleep_idle_seconds {
                let _ = writeln!(out, "sleep-idle-seconds = {}", check_sleep(v, id)?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: &str, sleep: Option<i64>) -> ModelPreset {
        ModelPreset {
            id: id.to_string(),
            sleep_idle_seconds: sleep,
        }
    }

    #[test]
    fn writes_the_global_and_per_model_sections() {
        let p = Preset {
            ctx_size: Some(2048),
            parallel: Some(1),
            threads: Some(1),
            sleep_idle_seconds: None,
            models: vec![model("tiny-50m", Some(3)), model("tiny-150m", None)],
        };
        assert_eq!(
            p.to_ini().unwrap(),
            "; written by kabench for one swept value\nversion = 1\n\n[*]\nctx-size = 2048\n\
             parallel = 1\nthreads = 1\n\n[tiny-50m]\nsleep-idle-seconds = 3\n\n[tiny-150m]\n"
        );
    }

    #[test]
    fn off_is_minus_one_and_zero_is_refused() {
        let p = Preset {
            sleep_idle_seconds: Some(-1),
            ..Preset::default()
        };
        assert!(
            p.to_ini()
                .unwrap()
                .contains("[*]\nsleep-idle-seconds = -1\n")
        );
        for bad in [0, -2, i64::from(i32::MAX) + 1] {
            let p = Preset {
                models: vec![model("m", Some(bad))],
                ..Preset::default()
            };
            let e = p.to_ini().unwrap_err();
            assert!(
                e.contains(&format!("sleep-idle-seconds {bad} for m")),
                "{e}"
            );
        }
    }

    #[test]
    fn an_id_that_would_change_the_file_is_refused() {
        for id in ["a]\nthreads = 64\n[b", "x ; y", "m#1", "", "[*]", "*"] {
            let p = Preset {
                models: vec![model(id, Some(1))],
                ..Preset::default()
            };
            let e = p.to_ini().unwrap_err();
            assert!(e.contains("model id"), "{id:?}: {e}");
        }
    }

    #[test]
    fn a_duplicate_model_is_refused() {
        let p = Preset {
            models: vec![model("m", None), model("m", Some(2))],
            ..Preset::default()
        };
        assert!(p.to_ini().unwrap_err().contains("listed twice"));
    }
}
