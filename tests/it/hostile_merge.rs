//! `kabench merge` against crafted shard folders, written by each test in a temporary
//! folder from the committed `run-small` run: names that would be paths outside the
//! merged folder, histogram files and `run.json` counts that claim absurd sizes, a FIFO
//! where `requests.csv` should be, lines without end, an `--out` that holds a user's
//! files, and a sharded run whose sampling shard died. Each refusal exits 2 naming the
//! file, the field and the limit, and nothing outside the output folder changes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::common::{self, kabench, read_json};

/// The committed run every crafted shard starts from (3 cells of 4 requests, 10 s apart).
const FIXTURE: &str = "run-small";

/// What a crafted shard differs in from the fixture.
struct Craft {
    index: u32,
    count: u32,
    /// Keeps a request row (by its 0-based row number).
    keep_row: Box<dyn Fn(usize) -> bool>,
    /// Keeps a `vram.csv` sample (by its `t_ms`).
    keep_sample: Box<dyn Fn(f64) -> bool>,
    /// Edits `run.json` last.
    edit: Box<dyn Fn(&mut Value)>,
}

impl Craft {
    fn new(index: u32, count: u32) -> Craft {
        Craft {
            index,
            count,
            keep_row: Box::new(move |i| i % count as usize == index as usize),
            keep_sample: Box::new(|_| true),
            edit: Box::new(|_| {}),
        }
    }
}

/// Writes `parent/shard-<i>-of-<N>` as a shard folder of `FIXTURE`.
fn shard(parent: &Path, c: Craft) -> PathBuf {
    let from = common::fixture_dir(FIXTURE);
    let dir = parent.join(format!("shard-{}-of-{}", c.index, c.count));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(from.join("scenario.toml"), dir.join("scenario.toml")).unwrap();
    let mut meta = read_json(&from.join("run.json"));
    let starts: Vec<f64> = meta["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["started_ms"].as_f64().unwrap())
        .collect();
    meta["shard"] = json!({
        "index": c.index,
        "count": c.count,
        "by": "request",
        "start_at": "2026-01-01T00:00:00Z",
        "clock_offset_ms": 0.0,
        "cell_starts_ms": starts,
    });
    (c.edit)(&mut meta);
    std::fs::write(dir.join("run.json"), meta.to_string()).unwrap();
    let rows = std::fs::read_to_string(from.join("requests.csv")).unwrap();
    let mut lines = rows.lines();
    let mut out = format!("{}\n", lines.next().unwrap());
    for (i, line) in lines.enumerate() {
        if (c.keep_row)(i) {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(dir.join("requests.csv"), out).unwrap();
    let samples = std::fs::read_to_string(from.join("vram.csv")).unwrap();
    let mut lines = samples.lines();
    let mut out = format!("{}\n", lines.next().unwrap());
    for line in lines {
        let t: f64 = line.split(',').next().unwrap().parse().unwrap();
        if (c.keep_sample)(t) {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(dir.join("vram.csv"), out).unwrap();
    dir
}

/// Every file and folder under `root` but `except`, with its size and time: what a
/// test compares to show nothing outside the output folder changed.
fn snapshot(root: &Path, except: &Path) -> BTreeMap<PathBuf, (u64, Option<SystemTime>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.starts_with(except) {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            out.insert(p.clone(), (m.len(), m.modified().ok()));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// `kabench merge OUT SHARDS...`, killed after 20 s (a merge that blocks fails the
/// test instead of hanging it).
fn merge(out: &Path, shards: &[&Path]) -> Output {
    merge_with(kabench(), out, shards)
}

fn merge_with(mut cmd: Command, out: &Path, shards: &[&Path]) -> Output {
    let mut child = cmd
        .arg("merge")
        .arg(out)
        .args(shards)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "merge still running after 20 s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Asserts exit 2 with every piece in stderr, a short message, and `before` unchanged;
/// returns stderr.
fn refused(o: &Output, pieces: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    for p in pieces {
        assert!(stderr.contains(p), "{p:?} not in: {stderr}");
    }
    assert!(stderr.len() < 4000, "{} bytes of stderr", stderr.len());
    stderr
}

#[test]
fn names_that_are_paths_never_leave_the_merged_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    let out = tmp.path().join("deep/er/out");
    let abs = tmp.path().join("abs");
    let unsafe_name = "cannot be a file name";
    let unknown = "is no cell and stream of its run.json";
    for (field, value, says) in [
        ("cell", "../../../escaped".to_string(), unsafe_name),
        ("stream", abs.display().to_string(), unsafe_name),
        ("cell", "c0\u{1b}[2J".to_string(), unsafe_name),
        // Safe as a name, but no cell of the run: each would add histograms to hold.
        ("cell", "c9".to_string(), unknown),
        ("stream", "other".to_string(), unknown),
    ] {
        let _ = std::fs::remove_dir_all(&shards);
        let s0 = shard(&shards, Craft::new(0, 2));
        let s1 = shard(&shards, Craft::new(1, 2));
        // The first row of shard 1 names the path in `field`.
        let text = std::fs::read_to_string(s1.join("requests.csv")).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let mut cols: Vec<String> = lines[1].split(',').map(String::from).collect();
        cols[if field == "cell" { 0 } else { 2 }] = value.clone();
        lines[1] = cols.join(",");
        std::fs::write(s1.join("requests.csv"), lines.join("\n") + "\n").unwrap();

        let before = snapshot(tmp.path(), &out);
        let o = merge(&out, &[&s0, &s1]);
        let stderr = refused(
            &o,
            &[
                &format!("shard-1-of-2/requests.csv row 1, field `{field}`"),
                says,
            ],
        );
        assert!(!stderr.contains('\u{1b}'), "{stderr}");
        assert_eq!(before, snapshot(tmp.path(), &out), "{value}");
        assert!(!tmp.path().join("escaped").exists() && !abs.exists());
        // Refused before the merged folder was claimed: no half-written run.
        assert!(!out.join("run.json").exists());
    }
}

/// A V2 histogram header (40 bytes) claiming `payload` bytes of counts.
fn v2_header(payload: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(0x1c84_9313u32.to_be_bytes());
    h.extend(payload.to_be_bytes());
    h.extend(0u32.to_be_bytes());
    h.extend(3u32.to_be_bytes());
    h.extend(1u64.to_be_bytes());
    h.extend(3_600_000_000u64.to_be_bytes());
    h.extend(1.0f64.to_be_bytes());
    h
}

#[test]
fn histogram_files_claiming_gigabytes_are_refused_before_anything_is_allocated() {
    let tmp = tempfile::tempdir().unwrap();
    // Inner claim: a 4 GiB payload in a few deflated bytes; outer claim: 4 GiB of
    // compressed bytes in a 12-byte file.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&v2_header(u32::MAX)).unwrap();
    let packed = z.finish().unwrap();
    let mut inner_claim = 0x1c84_9314u32.to_be_bytes().to_vec();
    inner_claim.extend((packed.len() as u32).to_be_bytes());
    inner_claim.extend(&packed);
    let mut outer_claim = 0x1c84_9314u32.to_be_bytes().to_vec();
    outer_claim.extend(u32::MAX.to_be_bytes());
    outer_claim.extend([0x78, 0x9c, 0, 0]);
    for (bytes, says) in [
        (inner_claim, "claims 4294967295 bytes of counts but holds 0"),
        (
            outer_claim,
            "claims a compressed payload of 4294967295 bytes but holds 4",
        ),
    ] {
        let shards = tmp.path().join("shards");
        let _ = std::fs::remove_dir_all(&shards);
        let s0 = shard(&shards, Craft::new(0, 1));
        let dir = s0.join("histograms/c0/chat");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ttft_ms.hdr"), &bytes).unwrap();
        let out = tmp.path().join("out");
        let before = snapshot(tmp.path(), &out);
        // Under a 3 GB address-space limit: zero-filling the claimed 4 GiB cannot fit.
        let mut cmd = Command::new("bash");
        cmd.args([
            "-c",
            "ulimit -v 3000000 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_kabench"),
        ]);
        let o = merge_with(cmd, &out, &[&s0]);
        refused(
            &o,
            &[
                "histograms/c0/chat/ttft_ms.hdr",
                says,
                "at most 1048576 bytes",
            ],
        );
        assert_eq!(before, snapshot(tmp.path(), &out));
    }
}

#[test]
fn histogram_files_of_no_cell_of_the_run_are_refused_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let s0 = shard(tmp.path(), Craft::new(0, 1));
    let dir = s0.join("histograms/c9/chat");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ttft_ms.hdr"), b"not read").unwrap();
    let out = tmp.path().join("out");
    let before = snapshot(tmp.path(), &out);
    let o = merge(&out, &[&s0]);
    refused(
        &o,
        &[
            "histograms/c9/chat/ttft_ms.hdr: no histogram kabench writes",
            "none of the folder's run.json",
        ],
    );
    assert_eq!(before, snapshot(tmp.path(), &out));
}

#[test]
fn a_shard_count_of_four_billion_is_refused_at_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Craft::new(0, 2);
    c.edit = Box::new(|m| m["shard"]["count"] = json!(u32::MAX));
    let s0 = shard(tmp.path(), c);
    let out = tmp.path().join("out");
    let before = snapshot(tmp.path(), &out);
    let started = Instant::now();
    let o = merge(&out, &[&s0]);
    refused(
        &o,
        &[
            "shard-0-of-2/run.json",
            "shard.count: 4294967295 is over the limit of 1024",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(before, snapshot(tmp.path(), &out));
}

#[test]
fn a_fifo_where_requests_csv_should_be_is_refused_not_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let s0 = shard(tmp.path(), Craft::new(0, 1));
    std::fs::remove_file(s0.join("requests.csv")).unwrap();
    let made = Command::new("mkfifo")
        .arg(s0.join("requests.csv"))
        .status()
        .unwrap();
    assert!(made.success());
    let out = tmp.path().join("out");
    let before = snapshot(tmp.path(), &out);
    let o = merge(&out, &[&s0]);
    refused(&o, &["shard-0-of-1/requests.csv is not a regular file"]);
    assert_eq!(before, snapshot(tmp.path(), &out));
}

#[test]
fn a_line_without_end_and_a_huge_field_are_refused_with_a_short_message() {
    let tmp = tempfile::tempdir().unwrap();
    // 2 MB without a newline in requests.csv: over the 1 MiB line limit.
    let s0 = shard(&tmp.path().join("a"), Craft::new(0, 1));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(s0.join("requests.csv"))
        .unwrap();
    f.write_all(&vec![b'x'; 2_000_000]).unwrap();
    drop(f);
    let out = tmp.path().join("out");
    let before = snapshot(tmp.path(), &out);
    let o = merge(&out, &[&s0]);
    refused(
        &o,
        &["shard-0-of-1/requests.csv", "longer than 1048576 bytes"],
    );
    assert_eq!(before, snapshot(tmp.path(), &out));

    // A 300 kB `shard.by` in one shard: the refusal echoes 80 characters of it.
    let b = tmp.path().join("b");
    let s0 = shard(&b, Craft::new(0, 2));
    let mut c = Craft::new(1, 2);
    c.edit = Box::new(|m| m["shard"]["by"] = json!("y".repeat(300_000)));
    let s1 = shard(&b, c);
    let before = snapshot(tmp.path(), &out);
    let o = merge(&out, &[&s0, &s1]);
    refused(
        &o,
        &[
            "are not shards of one run: shard_by differs",
            "…(300000 bytes)",
        ],
    );
    assert_eq!(before, snapshot(tmp.path(), &out));

    // A 300 kB string where run.json has a number: the parser's message is cut too.
    let c = tmp.path().join("c");
    let mut craft = Craft::new(0, 1);
    craft.edit = Box::new(|m| m["seed"] = json!("z".repeat(300_000)));
    let s0 = shard(&c, craft);
    let before = snapshot(tmp.path(), &out);
    let o = merge(&out, &[&s0]);
    refused(
        &o,
        &[
            "none of the 1 folder(s) given is a readable shard folder",
            "shard-0-of-1/run.json",
        ],
    );
    assert_eq!(before, snapshot(tmp.path(), &out));
}

#[test]
fn an_out_folder_holding_other_files_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    let s0 = shard(&shards, Craft::new(0, 1));
    let out = tmp.path().join("mine");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("requests.csv"), "my own data\n").unwrap();
    std::fs::write(out.join("notes.txt"), "keep me\n").unwrap();
    let before = snapshot(tmp.path(), Path::new("/nonexistent"));
    let o = merge(&out, &[&s0]);
    refused(
        &o,
        &[
            "is not empty and not a kabench run folder",
            "choose a new or empty --out",
        ],
    );
    assert_eq!(before, snapshot(tmp.path(), Path::new("/nonexistent")));
    assert_eq!(
        std::fs::read_to_string(out.join("requests.csv")).unwrap(),
        "my own data\n"
    );

    // The folder holding the shard folders (and their logs), as a sharded run leaves
    // it, is merged into.
    std::fs::write(shards.join("shard-0-of-1.log"), "log\n").unwrap();
    let o = merge(&shards, &[&s0]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_json(&shards.join("run.json"))["status"], "complete");
    // A second merge into it finds a run there and refuses.
    let o = merge(&shards, &[&s0]);
    refused(&o, &["already holds a run"]);
}

/// The crafted shard `index` of `count` killed at `died_ms`: `run.json` still
/// `running`, its samples up to then, no cell started after it.
fn killed(parent: &Path, index: u32, count: u32, died_ms: f64) -> PathBuf {
    let mut c = Craft::new(index, count);
    c.keep_sample = Box::new(move |t| t < died_ms);
    c.edit = Box::new(move |m| {
        m["status"] = json!("running");
        m["ended_at"] = Value::Null;
        for cell in m["cells"].as_array_mut().unwrap() {
            if cell["started_ms"].as_f64().unwrap() > died_ms {
                cell["started_ms"] = Value::Null;
                cell["ended_ms"] = Value::Null;
            } else if cell["ended_ms"].as_f64().unwrap() > died_ms {
                cell["ended_ms"] = Value::Null;
            }
        }
    });
    // The fixture's rows 0 to 5 are sent before 12 s.
    c.keep_row = Box::new(move |i| i % count as usize == index as usize && i < 6);
    shard(parent, c)
}

#[test]
fn a_dead_shard_leaves_memory_to_the_survivors_or_missing_never_zero() {
    let tmp = tempfile::tempdir().unwrap();
    // One process's run of the rows the three shards below sent (shard 0 did not send
    // rows 6 and 9): the memory figures a merge must match.
    let whole = tmp.path().join("whole");
    common::copy_run(&common::fixture_dir(FIXTURE), &whole);
    let rows = std::fs::read_to_string(whole.join("requests.csv")).unwrap();
    let kept: Vec<&str> = rows
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 7 && *i != 10)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(whole.join("requests.csv"), kept.join("\n") + "\n").unwrap();
    common::run_ok(&["report", whole.to_str().unwrap()]);
    let whole_summary = read_json(&whole.join("summary.json"));

    // Three shards, shard 0 killed 12 s in (inside the second cell): the memory of
    // every cell comes from the shards that lived, as one process measured it.
    let run = tmp.path().join("three");
    let s0 = killed(&run, 0, 3, 12_000.0);
    let s1 = shard(&run, Craft::new(1, 3));
    let s2 = shard(&run, Craft::new(2, 3));
    let o = merge(&run, &[&s0, &s1, &s2]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("shard-0-of-3: running"), "{stderr}");
    assert!(!stderr.contains("memory not measured"), "{stderr}");
    let merged = std::fs::read_to_string(run.join("vram.csv")).unwrap();
    let fixture = std::fs::read_to_string(common::fixture_dir(FIXTURE).join("vram.csv")).unwrap();
    assert_eq!(merged.lines().count(), fixture.lines().count());
    let summary = read_json(&run.join("summary.json"));
    for (cell, one) in summary["cells"]
        .as_array()
        .unwrap()
        .iter()
        .zip(whole_summary["cells"].as_array().unwrap())
    {
        assert_eq!(
            cell["vram"]["idle_gb_seconds"], one["vram"]["idle_gb_seconds"],
            "{}",
            cell["id"]
        );
        assert!(cell.get("memory_missing").is_none());
    }
    let recs = read_json(&run.join("recommendation.json"));
    assert_eq!(recs[0]["form"], "cost", "{recs}");

    // Two shards, shard 1 missing and shard 0 killed in the second cell: nothing
    // measured the rest of the run. Those cells' memory is missing (null, never 0) and
    // no keep_alive is recommended over them.
    let run = tmp.path().join("two");
    let s0 = killed(&run, 0, 2, 12_000.0);
    let o = merge(&run, &[&s0]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("shard 1 of 2 is missing"), "{stderr}");
    assert!(
        stderr.contains(
            "cell c1: memory not measured: the memory samples of the target end at 11.5 s, before the cell ended"
        ),
        "{stderr}"
    );
    let m = read_json(&run.join("run.json"));
    assert!(m["merged"]["memory_not_measured"]["c1"].is_string(), "{m}");
    let summary = read_json(&run.join("summary.json"));
    let cells = summary["cells"].as_array().unwrap();
    assert!(cells[0]["vram"]["idle_gb_seconds"].is_number());
    assert!(cells[1]["vram"].is_null(), "{}", cells[1]);
    assert!(
        cells[1]["memory_missing"]
            .as_str()
            .unwrap()
            .contains("did not complete"),
        "{}",
        cells[1]
    );
    let recs = read_json(&run.join("recommendation.json"));
    assert_eq!(recs[0]["form"], "no_candidate", "{recs}");
    let reason = recs[0]["reason"].as_str().unwrap();
    assert!(reason.contains("was not measured"), "{reason}");
    assert!(
        !std::fs::read_to_string(run.join("summary.md"))
            .unwrap()
            .contains("set keep_alive"),
    );
}

/// Issue 24 item 10: past the rows merge holds to sort (lowered through its hidden
/// knob) the shards' rows are merged one by one as they are read, never all held: the
/// merged `requests.csv`, histograms and figures are those of the sorted merge, and a
/// shard whose rows are out of intended-time order is named.
#[test]
fn rows_past_the_sorted_bound_are_merged_row_by_row_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    let a = shard(&shards, Craft::new(0, 2));
    let b = shard(&shards, Craft::new(1, 2));
    let sorted = tmp.path().join("sorted");
    let o = merge(&sorted, &[&a, &b]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let streamed = tmp.path().join("streamed");
    let mut cmd = kabench();
    cmd.env("KABENCH_MAX_MERGE_SORTED_ROWS", "2");
    let o = merge_with(cmd, &streamed, &[&a, &b]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(!stderr.contains("not in intended-time order"), "{stderr}");
    let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    assert_eq!(
        read(&sorted, "requests.csv"),
        read(&streamed, "requests.csv")
    );
    assert!(
        std::str::from_utf8(&read(&sorted, "requests.csv"))
            .unwrap()
            .lines()
            .count()
            > 3
    );
    let figures = |d: &Path| {
        let mut s = read_json(&d.join("summary.json"));
        s.as_object_mut().unwrap().remove("target");
        s["cells"].clone()
    };
    assert_eq!(figures(&sorted), figures(&streamed));
    fn tree(d: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>, root: &Path) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                tree(&p, out, root);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
        out.sort();
    }
    let hists = |d: &Path| {
        let mut v = Vec::new();
        tree(&d.join("histograms"), &mut v, d);
        v
    };
    assert!(!hists(&sorted).is_empty());
    assert_eq!(hists(&sorted), hists(&streamed));
    // A shard written out of order is merged as written, and named.
    let rows = std::fs::read_to_string(b.join("requests.csv")).unwrap();
    let mut lines: Vec<&str> = rows.lines().collect();
    lines[1..].reverse();
    std::fs::write(b.join("requests.csv"), lines.join("\n") + "\n").unwrap();
    let mut cmd = kabench();
    cmd.env("KABENCH_MAX_MERGE_SORTED_ROWS", "2");
    let o = merge_with(cmd, &tmp.path().join("unordered"), &[&a, &b]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("shard-1-of-2: rows not in intended-time order; with more than 2 rows"),
        "{stderr}"
    );
}
