//! The published JSON Schemas of a run folder's JSON files, generated from the types
//! that write and read them: `run.json` (`folder::RunMeta`) and `summary.json`
//! (`Summary`). The committed copies under `schema/` are checked against these by the
//! tests (`KABENCH_BLESS=1` rewrites them), and every run folder a test writes is
//! validated against the committed copies.

use serde_json::Value;

use super::Summary;
use crate::folder::RunMeta;

/// Where the committed schemas live, relative to the repository root.
pub const SCHEMA_DIR: &str = "schema";

/// The schema of `run.json`.
pub fn run_json() -> Value {
    schemars::schema_for!(RunMeta).to_value()
}

/// The schema of `summary.json`.
pub fn summary_json() -> Value {
    schemars::schema_for!(Summary).to_value()
}

/// Every published schema: (file name under [`SCHEMA_DIR`], the schema).
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("run.schema.json", run_json()),
        ("summary.schema.json", summary_json()),
    ]
}

/// A schema as committed: pretty JSON with a final newline.
pub fn to_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}
