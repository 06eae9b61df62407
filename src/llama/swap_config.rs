//! llama-swap's YAML config for one swept value: one model entry per model, each
//! with its `cmd` (the llama-server command, with llama-swap's `${PORT}` and
//! `${MODEL_ID}` macros where kabench puts them) and its `ttl`.
//!
//! llama-swap substitutes `${env.NAME}` anywhere in the file before parsing it, then
//! its macros in `cmd`, refuses any `${...}` left over, drops `cmd` lines starting
//! with `#`, and splits `cmd` like a POSIX shell. So every string is written as a YAML
//! double-quoted scalar with everything but printable ASCII escaped; every literal
//! argument is single-quoted for the shell split; a literal containing `${`, a line
//! break or a control character is refused; model ids pass [`check_model_id`].

use std::fmt::Write as _;

use super::id::check_model_id;
use crate::units::limits::excerpt;

/// One word of a model's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdArg {
    /// Passed as written (a path, a flag, a number).
    Literal(String),
    /// llama-swap's `${PORT}`: the port it assigns the model.
    Port,
    /// llama-swap's `${MODEL_ID}`: the model's id.
    ModelId,
}

/// One model of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapModel {
    /// The id requests name.
    pub id: String,
    /// The command that serves it (the program first).
    pub cmd: Vec<CmdArg>,
    /// Seconds idle before it is unloaded (0 = never).
    pub ttl: u64,
}

/// A whole config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapConfig {
    /// Seconds to wait for an upstream's health check (llama-swap raises it to 15).
    pub health_check_timeout: u32,
    /// The first port handed out as `${PORT}`.
    pub start_port: u16,
    /// The models, in this order.
    pub models: Vec<SwapModel>,
}

/// `text` as a YAML double-quoted scalar that is pure printable ASCII.
fn yaml_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xFF => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// `arg` single-quoted for a POSIX shell split (`'` written as `'\''`).
fn shell_quoted(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', "'\\''"))
}

/// A literal argument llama-swap would pass on unchanged, or why not.
fn check_literal<'a>(arg: &'a str, model: &str) -> Result<&'a str, String> {
    let why = if arg.contains("${") {
        Some("contains `${`, which llama-swap reads as a macro")
    } else if arg.chars().any(char::is_control) {
        Some("contains a line break or control character")
    } else {
        None
    };
    match why {
        Some(why) => Err(format!(
            "argument '{}' of model '{model}' {why}; rename the path or drop the argument",
            excerpt(arg)
        )),
        None => Ok(arg),
    }
}

impl SwapModel {
    /// The `cmd` string before YAML quoting.
    fn cmd_line(&self) -> Result<String, String> {
        if !matches!(self.cmd.first(), Some(CmdArg::Literal(p)) if !p.is_empty()) {
            return Err(format!(
                "model '{}': the command must start with a program",
                self.id
            ));
        }
        let words: Result<Vec<String>, String> = self
            .cmd
            .iter()
            .map(|a| match a {
                CmdArg::Literal(s) => check_literal(s, &self.id).map(shell_quoted),
                CmdArg::Port => Ok("${PORT}".to_string()),
                CmdArg::ModelId => Ok("${MODEL_ID}".to_string()),
            })
            .collect();
        Ok(words?.join(" "))
    }
}

impl SwapConfig {
    /// The YAML text, or an error naming the model or argument llama-swap would misread.
    pub fn to_yaml(&self) -> Result<String, String> {
        let mut out = String::from("# written by kabench for one swept value\n");
        let _ = write!(
            out,
            "healthCheckTimeout: {}\nlogLevel: debug\nlogTimeFormat: stampmilli\n\
             logToStdout: proxy\nstartPort: {}\nglobalTTL: 0\nperformance:\n  disabled: true\n\
             models:\n",
            self.health_check_timeout, self.start_port
        );
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.models {
            let id = check_model_id(&m.id)?;
            if !seen.insert(id) {
                return Err(format!(
                    "model '{id}' is listed twice in the llama-swap config"
                ));
            }
            let _ = write!(
                out,
                "  {}:\n    cmd: {}\n    ttl: {}\n",
                yaml_quoted(id),
                yaml_quoted(&m.cmd_line()?),
                m.ttl
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> CmdArg {
        CmdArg::Literal(s.to_string())
    }

    fn config(cmd: Vec<CmdArg>) -> SwapConfig {
        SwapConfig {
            health_check_timeout: 60,
            start_port: 18090,
            models: vec![SwapModel {
                id: "tiny-50m".into(),
                cmd,
                ttl: 3,
            }],
        }
    }

    #[test]
    fn writes_each_model_with_its_ttl_and_macros() {
        let yaml = config(vec![
            lit("/bin/llama-server"),
            lit("--port"),
            CmdArg::Port,
            lit("--alias"),
            CmdArg::ModelId,
            lit("-t"),
            lit("1"),
        ])
        .to_yaml()
        .unwrap();
        assert!(yaml.contains("startPort: 18090\nglobalTTL: 0\n"), "{yaml}");
        assert!(
            yaml.ends_with(
                "models:\n  \"tiny-50m\":\n    cmd: \"'/bin/llama-server' '--port' ${PORT} \
                 '--alias' ${MODEL_ID} '-t' '1'\"\n    ttl: 3\n"
            ),
            "{yaml}"
        );
    }

    #[test]
    fn odd_paths_stay_one_quoted_word() {
        let yaml = config(vec![lit("/a b/it's \"x\" #1 \\ $HOME é\u{2028}")])
            .to_yaml()
            .unwrap();
        assert!(
            yaml.contains(r#"cmd: "'/a b/it'\\''s \"x\" #1 \\ $HOME \xE9\u2028'""#),
            "{yaml}"
        );
        assert!(yaml.is_ascii());
    }

    #[test]
    fn macros_line_breaks_and_bad_ids_are_refused() {
        for (arg, what) in [
            ("${env.HOME}", "macro"),
            ("/m/${PORT}", "macro"),
            ("a\nb", "line break"),
            ("a\rb", "line break"),
            ("a\u{0}b", "control"),
        ] {
            let e = config(vec![lit("/bin/x"), lit(arg)]).to_yaml().unwrap_err();
            assert!(e.contains(what) && e.contains("'tiny-50m'"), "{arg:?}: {e}");
        }
        let e = config(vec![CmdArg::Port]).to_yaml().unwrap_err();
        assert!(e.contains("start with a program"), "{e}");
        let mut c = config(vec![lit("/bin/x")]);
        c.models[0].id = "a: b\n".into();
        assert!(c.to_yaml().unwrap_err().contains("model id"));
        c.models[0].id = "m".into();
        c.models.push(c.models[0].clone());
        assert!(c.to_yaml().unwrap_err().contains("listed twice"));
    }

    #[test]
    fn quoting_escapes_every_non_ascii_character() {
        assert_eq!(
            yaml_quoted("a\tb\u{85}\u{FEFF}😀"),
            "\"a\\x09b\\x85\\uFEFF\\U0001F600\""
        );
    }
}
