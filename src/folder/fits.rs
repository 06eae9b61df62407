//! `run.json` `fits`: the "fits together?" verdict on each set of several models a run
//! ran together, recorded by the path that wrote the folder (it knows the scheduler's
//! rules), so the report shows it from the folder alone.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One model of the set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FitModel {
    /// Model.
    pub model: String,
    /// Its num_ctx, if recorded.
    pub num_ctx: Option<u32>,
    /// Resident size, for people.
    pub size: String,
    /// Where it comes from.
    pub source: String,
}

/// One set of models run together (in one or more cells).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FitSection {
    /// The cells that ran this set.
    pub cells: String,
    /// The host the test is for.
    pub host: String,
    /// The models.
    pub models: Vec<FitModel>,
    /// The verdict in one line.
    pub verdict: String,
    /// Each admission test.
    pub steps: Vec<String>,
    /// What would have fit, when the set does not.
    pub would_fit: Vec<String>,
    /// What the run saw: the most of the set `/api/ps` listed at once.
    pub observed: Option<String>,
}
