//! The whole deterministic pipeline, snapshotted: a fixed run folder
//! (`tests/fixtures/run-small`) → `summary.json`, `summary.md` and the recommendation.
//! A refactor that changes a figure, a word or an order shows here (`cargo insta
//! review`, or `INSTA_UPDATE=always` to accept).

use crate::common;

use kabench::report::{RenderOptions, render};

#[test]
fn a_fixed_run_folder_renders_the_same_summary_and_recommendation() {
    let (_tmp, dir) = common::fixture_run("run-small");
    let rendered = render(&dir, &RenderOptions::default()).unwrap();
    insta::assert_json_snapshot!("summary.json", common::read_json(&dir.join("summary.json")));
    insta::assert_json_snapshot!(
        "recommendation.json",
        common::read_json(&dir.join("recommendation.json"))
    );
    insta::assert_snapshot!(
        "summary.md",
        std::fs::read_to_string(&rendered.summary_md).unwrap()
    );
    insta::assert_snapshot!("headline", rendered.headline);
}
