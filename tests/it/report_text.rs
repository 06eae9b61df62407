//! Report text that must stay valid whatever the names hold: charts are well-formed
//! XML even with control characters in a stream name.

use crate::common;

use std::fs;
use std::path::Path;

use kabench::report::{RenderOptions, render};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/run-small");

#[test]
fn a_nul_in_a_stream_name_leaves_every_svg_valid_xml() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    fs::create_dir_all(&dir).unwrap();
    let hostile = "ch\u{0}a\u{1b}t\u{b}";
    for name in common::RUN_FILES {
        let text = fs::read_to_string(Path::new(FIXTURE).join(name)).unwrap();
        let text = match name {
            // JSON needs the escaped form; CSV and TOML take it as is (TOML escaped).
            "run.json" => text.replace("\"chat\"", "\"ch\\u0000a\\u001bt\\u000b\""),
            "scenario.toml" => text.replace("\"chat\"", "\"ch\\u0000a\\u001bt\\u000b\""),
            _ => text.replace(",chat,", &format!(",{hostile},")),
        };
        fs::write(dir.join(name), text).unwrap();
    }
    render(&dir, &RenderOptions::default()).unwrap();
    let mut charts = 0;
    for entry in fs::read_dir(dir.join("charts")).unwrap() {
        let svg = fs::read_to_string(entry.unwrap().path()).unwrap();
        charts += 1;
        let bad: Vec<char> = svg
            .chars()
            .filter(|c| matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}'))
            .collect();
        assert!(bad.is_empty(), "XML-invalid characters {bad:?} in a chart");
    }
    assert!(charts >= 4, "{charts} charts");
    let page = fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(
        page.contains("ch\u{fffd}a\u{fffd}t"),
        "the name shows, marked"
    );
}
