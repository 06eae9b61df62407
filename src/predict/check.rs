//! The predicted unloads checked against the unloads a server logged (an Ollama log
//! with `OLLAMA_DEBUG=1`): the "as sent" replay (the server's own keep_alive on
//! requests that sent none) is matched one to one, per model and kind (expired or
//! evicted), each predicted unload to the nearest logged one within a tolerance.

use serde::Serialize;

use super::replay::UnloadEvent;
use crate::traffic::LoggedUnload;

/// How far apart in time a predicted and a logged unload may be and still match:
/// access lines give request ends in whole seconds, and the host model's load and
/// service times differ from the server's by a fraction of a second.
pub const TOLERANCE_S: f64 = 2.0;

/// The outcome of the check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnloadCheck {
    /// The policy checked (its cell name).
    pub policy: String,
    /// Unloads the replay made (expired + evicted).
    pub predicted: usize,
    /// Of them, evictions.
    pub predicted_evicted: usize,
    /// Unloads in the log.
    pub logged: usize,
    /// Of them, evictions (`found an idle runner to unload`).
    pub logged_evicted: usize,
    /// Pairs matched (same model, same kind, within the tolerance).
    pub matched: usize,
    /// The tolerance, seconds.
    pub tolerance_s: f64,
    /// The unloads left unmatched, for people (at most [`MAX_LISTED`] of each side):
    /// `logged expiry of M at 12.3 s`, `predicted eviction of M at 40.1 s`.
    #[serde(skip)]
    pub unmatched: Vec<String>,
    /// Why the replay may differ from the log, when known (no per-request keep_alive).
    #[serde(skip)]
    pub hint: Option<String>,
}

/// Unmatched unloads listed per side.
pub const MAX_LISTED: usize = 5;

impl UnloadCheck {
    /// One line for the table's verdict.
    pub fn line(&self) -> String {
        format!(
            "server log check ({}): predicted {} unloads ({} evicted), the log shows {} ({} evicted), matched {} within ±{:.0} s{}",
            self.policy,
            self.predicted,
            self.predicted_evicted,
            self.logged,
            self.logged_evicted,
            self.matched,
            self.tolerance_s,
            if self.agrees() {
                ": every unload agrees".to_string()
            } else {
                let mut why = String::new();
                if !self.unmatched.is_empty() {
                    why = format!("; unmatched: {}", self.unmatched.join(", "));
                }
                if let Some(h) = &self.hint {
                    why = format!("{why}; {h}");
                }
                why
            }
        )
    }

    /// Whether every unload on both sides matched.
    pub fn agrees(&self) -> bool {
        self.matched == self.predicted && self.matched == self.logged
    }
}

/// Matches `predicted` (model indices of the replay) against `logged` (model indices
/// mapped through `unit_of` to the replay's), greedily in time order; `names` are the
/// replay's models, for the unmatched list.
pub fn check(
    policy: &str,
    predicted: &[UnloadEvent],
    logged: &[LoggedUnload],
    unit_of: &[u32],
    names: &[String],
    tolerance_s: f64,
) -> UnloadCheck {
    let mut used = vec![false; logged.len()];
    let mut matched = 0;
    let mut unmatched = Vec::new();
    let name = |m: usize| names.get(m).map_or("?", String::as_str);
    let kind = |evicted: bool| if evicted { "eviction" } else { "expiry" };
    for p in predicted {
        let best = logged
            .iter()
            .enumerate()
            .filter(|(i, l)| {
                !used[*i]
                    && unit_of.get(l.model as usize).copied() == Some(p.model as u32)
                    && l.evicted == p.evicted
                    && (l.t - p.t).abs() <= tolerance_s
            })
            .min_by(|a, b| (a.1.t - p.t).abs().total_cmp(&(b.1.t - p.t).abs()))
            .map(|(i, _)| i);
        if let Some(i) = best {
            used[i] = true;
            matched += 1;
        } else if unmatched.len() < MAX_LISTED {
            unmatched.push(format!(
                "predicted {} of {} at {:.1} s",
                kind(p.evicted),
                name(p.model),
                p.t
            ));
        }
    }
    let listed = unmatched.len();
    for (l, _) in logged.iter().zip(&used).filter(|(_, u)| !**u) {
        if unmatched.len() >= listed + MAX_LISTED {
            break;
        }
        let m = unit_of
            .get(l.model as usize)
            .map_or(usize::MAX, |&u| u as usize);
        unmatched.push(format!(
            "logged {} of {} at {:.1} s",
            kind(l.evicted),
            name(m),
            l.t
        ));
    }
    UnloadCheck {
        policy: policy.to_string(),
        predicted: predicted.len(),
        predicted_evicted: predicted.iter().filter(|p| p.evicted).count(),
        logged: logged.len(),
        logged_evicted: logged.iter().filter(|l| l.evicted).count(),
        matched,
        tolerance_s,
        unmatched,
        hint: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_per_model_kind_and_time() {
        let p = |t, model, evicted| UnloadEvent { t, model, evicted };
        let l = |t, model, evicted| LoggedUnload { t, model, evicted };
        let predicted = [
            p(4.0, 0, false),
            p(10.0, 0, true),
            p(20.0, 1, false),
            p(50.0, 0, false),
        ];
        let logged = [
            l(4.9, 0, false),
            l(10.2, 0, true),
            l(21.0, 0, false),
            l(30.0, 0, false),
        ];
        let names = vec!["a".to_string(), "b".to_string()];
        let c = check("as-sent", &predicted, &logged, &[0, 1], &names, TOLERANCE_S);
        assert_eq!((c.predicted, c.logged, c.matched), (4, 4, 2));
        assert_eq!((c.predicted_evicted, c.logged_evicted), (1, 1));
        assert!(c.line().contains("predicted 4 unloads"), "{}", c.line());
        assert!(!c.line().contains("every unload agrees"));
        // The unmatched ones are named, both sides.
        assert!(
            c.line().contains("predicted expiry of b at 20.0 s"),
            "{}",
            c.line()
        );
        assert!(
            c.line().contains("logged expiry of a at 21.0 s"),
            "{}",
            c.line()
        );
        assert!(
            c.line().contains("logged expiry of a at 30.0 s"),
            "{}",
            c.line()
        );
        // Two names of one model match as that model.
        let c = check(
            "as-sent",
            &predicted[2..3],
            &[l(20.5, 1, false)],
            &[0, 1],
            &names,
            2.0,
        );
        assert_eq!(c.matched, 1);
        assert!(c.line().contains("every unload agrees"));
    }
}
