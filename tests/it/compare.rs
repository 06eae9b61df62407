//! `kabench compare` through the real binary on copies of the hand-built run folder
//! (tests/fixtures/run-small): failed requests, incomplete runs, runs of different
//! scenarios and folders that are not runs never read as "no regressions".

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use kabench::folder::{self, CsvAppender, RequestRecord};
use kabench::report::compare::{CompareThresholds, compare};
use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/run-small");

fn copy_fixture(tmp: &Path, name: &str) -> PathBuf {
    let dir = tmp.join(name);
    common::copy_run(Path::new(FIXTURE), &dir);
    dir
}

fn rewrite_requests(dir: &Path, f: impl Fn(&mut RequestRecord)) {
    let mut rows = folder::read_requests(dir).unwrap();
    rows.iter_mut().for_each(f);
    let mut w = CsvAppender::<RequestRecord>::create(&dir.join("requests.csv")).unwrap();
    for r in &rows {
        w.append(r).unwrap();
    }
}

fn edit_meta(dir: &Path, f: impl Fn(&mut Value)) {
    let path = dir.join("run.json");
    let mut v: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut v);
    fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn fail(r: &mut RequestRecord, kind: &str, status: Option<u16>) {
    r.error = kind.into();
    r.status = status;
    r.cold = false;
    r.ttft_ms = None;
    r.e2e_ms = None;
    r.first_token_ms = None;
    r.first_answer_ms = None;
    r.itl_ms = None;
}

#[test]
fn compare_an_all_http_500_run_is_a_regression() {
    let tmp = tempfile::tempdir().unwrap();
    let base = copy_fixture(tmp.path(), "base");
    let new = copy_fixture(tmp.path(), "new");
    rewrite_requests(&new, |r| fail(r, "http", Some(500)));
    let (code, stdout, stderr) = common::compare(&base, &new, &[]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("errors %"), "{stdout}");
    assert!(stdout.contains("0.0 → 100.0"), "{stdout}");
    assert!(stdout.contains("no answers: stream chat"), "{stdout}");
    assert!(!stdout.contains("no regressions"), "{stdout}");
}

#[test]
fn compare_a_small_error_rise_passes_only_under_a_looser_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let base = copy_fixture(tmp.path(), "base");
    let new = copy_fixture(tmp.path(), "new");
    // One failure in c0 (1 of 4 = 25%).
    rewrite_requests(&new, |r| {
        if r.cell == "c0" && r.request == 3 {
            fail(r, "http", Some(500));
        }
    });
    let (code, stdout, _) = common::compare(&base, &new, &[]);
    assert_eq!(code, 1, "{stdout}");
    let (code, stdout, _) = common::compare(&base, &new, &["--max-error-rate-increase", "0.3"]);
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn compare_all_cancelled_is_not_an_improvement() {
    let tmp = tempfile::tempdir().unwrap();
    let base = copy_fixture(tmp.path(), "base");
    let new = copy_fixture(tmp.path(), "new");
    rewrite_requests(&new, |r| fail(r, "cancelled", None));
    let c = compare(&base, &new, &CompareThresholds::default()).unwrap();
    for ch in &c.changes {
        assert_eq!(ch.cold_ratio.new, None, "{}", c.to_text());
        assert!(ch.no_answers && ch.regressed(), "{}", c.to_text());
    }
    let (code, stdout, _) = common::compare(&base, &new, &[]);
    assert_eq!(code, 1, "{stdout}");
}

#[test]
fn compare_refuses_an_interrupted_run_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let base = copy_fixture(tmp.path(), "base");
    let new = copy_fixture(tmp.path(), "new");
    edit_meta(&new, |m| m["status"] = "interrupted".into());
    // Interrupted before the first row: the header alone.
    let header = fs::read_to_string(new.join("requests.csv")).unwrap();
    let header = header.lines().next().unwrap().to_string() + "\n";
    fs::write(new.join("requests.csv"), header).unwrap();
    let (code, stdout, stderr) = common::compare(&base, &new, &[]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("did not complete") && stderr.contains("interrupted"),
        "{stderr}"
    );
    assert!(stderr.contains("--force"), "{stderr}");
    // Forced, a run with no rows still fails: no stream has an answer.
    let (code, stdout, stderr) = common::compare(&base, &new, &["--force"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("forced: the new run"), "{stdout}");
    assert!(stdout.contains("no answers: stream chat"), "{stdout}");
}

#[test]
fn compare_refuses_runs_of_different_scenarios_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let base = copy_fixture(tmp.path(), "base");
    let new = copy_fixture(tmp.path(), "new");
    edit_meta(&new, |m| m["scenario_sha256"] = "ab".repeat(32).into());
    let (code, _, stderr) = common::compare(&base, &new, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("different scenarios") && stderr.contains("--force"),
        "{stderr}"
    );
    let (code, stdout, stderr) = common::compare(&base, &new, &["--force"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("forced: the runs are of different scenarios"));
}

#[test]
fn compare_on_a_folder_that_is_not_a_run_is_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let base = copy_fixture(tmp.path(), "base");
    let empty = tmp.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let (code, _, stderr) = common::compare(&base, &empty, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not a kabench run"), "{stderr}");
    let (code, _, stderr) = common::compare(&tmp.path().join("missing"), &base, &[]);
    assert_eq!(code, 2, "{stderr}");
    // Identical runs still pass.
    let (code, stdout, _) = common::compare(&base, &base, &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("no regressions"), "{stdout}");
}

#[test]
fn two_predictions_compare_through_the_one_reader_like_two_runs() {
    // A prediction has no request rows: compare reads its policy table as written,
    // cell by cell, as it reads a run's rows. A smaller GPU evicts and costs colds.
    let tmp = tempfile::tempdir().unwrap();
    let input = common::root().join("tests/fixtures/predict/pressure.csv");
    let predict = |name: &str, vram: &str| {
        let dir = tmp.path().join(name);
        common::run_ok(&[
            "predict",
            "--requests",
            input.to_str().unwrap(),
            "--keep-alive",
            "-1",
            "--no-grid",
            "--vram",
            vram,
            "--out",
            dir.to_str().unwrap(),
            "--quiet",
        ]);
        common::assert_valid_folder(&dir);
        dir
    };
    let roomy = predict("roomy", "24GiB");
    let tight = predict("tight", "8GiB");
    let c = compare(&roomy, &tight, &CompareThresholds::default()).unwrap();
    let forever = c
        .changes
        .iter()
        .find(|s| s.params == "keep_alive=-1" && s.stream.starts_with("qwen"))
        .unwrap_or_else(|| panic!("no keep_alive=-1 cell in {c:?}"));
    assert_eq!(forever.cold_ratio.base, Some(0.5), "{forever:?}");
    assert_eq!(forever.cold_ratio.new, Some(1.0), "{forever:?}");
    assert!(forever.regressed());
    assert!(c.unmatched.is_empty(), "{:?}", c.unmatched);
}
