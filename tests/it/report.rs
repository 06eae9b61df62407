//! `report::render` and `report::compare` on a hand-built run folder with known numbers
//! (tests/fixtures/run-small): summary figures, the cost-form and SLO-form picks,
//! escaping of hostile names, reproducible re-rendering, chart axis labels as text.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use kabench::folder::{self, CsvAppender, RequestRecord};
use kabench::report::compare::{CompareThresholds, compare};
use kabench::report::{RenderOptions, render};
use serde_json::Value;

/// A fresh temporary copy of the fixture (the fixture itself is never written).
fn copy_fixture() -> (tempfile::TempDir, PathBuf) {
    common::fixture_run("run-small")
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

fn close(v: &Value, want: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"));
    assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
}

/// True when the SVG (or page) has `label` as the whole content of a `<text>` element.
fn has_text(svg: &str, label: &str) -> bool {
    svg.contains(&format!(">\n{label}\n</text>")) || svg.contains(&format!(">{label}</text>"))
}

/// Sets the `[slo]` the run recorded (`run.json` `slo`): the report reads it from there.
fn set_slo(dir: &Path, ttft_p99: &str) {
    let ms = kabench::units::parse_option_duration(ttft_p99)
        .unwrap()
        .as_secs_f64()
        * 1000.0;
    let mut meta = json(&dir.join("run.json"));
    meta["slo"] = serde_json::json!({ "ttft_p99_ms": ms });
    fs::write(
        dir.join("run.json"),
        serde_json::to_string_pretty(&meta).unwrap(),
    )
    .unwrap();
}

#[test]
fn summary_numbers_and_the_cost_form_pick_are_the_hand_computed_ones() {
    let (_tmp, dir) = copy_fixture();
    let out = render(&dir, &RenderOptions::default()).unwrap();
    let summary = json(&dir.join("summary.json"));
    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3);
    for (cell, (requests, cold, idle, held)) in
        cells
            .iter()
            .zip([(4, 4, 0.0, 8.0), (4, 2, 6.0, 12.0), (3, 0, 28.0, 33.0)])
    {
        let s = &cell["streams"][0];
        assert_eq!(s["requests"], requests, "{}", cell["id"]);
        assert_eq!(s["cold"], cold, "{}", cell["id"]);
        close(&cell["vram"]["idle_gb_seconds"], idle);
        close(&cell["vram"]["gb_seconds_held"], held);
        assert_eq!(cell["vram"]["peak_bytes"], 2_000_000_000u64);
    }
    // Each cell over its idle horizon: first send to last send + 15 s (10 s + 5 s).
    // c2's samples end at 29.5 s with the model held; it is counted on until its 10 s
    // keep_alive runs out (26.5 s + 10 s), 16.5 s held less 2.5 s busy: 28 GB·s idle.
    // Cost = cold × 2 s × 1 + idle / 3600 × 2160: 8.0, 7.6, 16.8 → "1s".
    // 8.0 against 7.6 is within the noise of 4 and 2 cold starts in 4 requests: the
    // cheaper 1s cannot be told from 0, so 0, which holds less memory, is chosen.
    let recs = json(&dir.join("recommendation.json"));
    let r = &recs[0];
    assert_eq!(r["form"], "cost");
    assert_eq!(r["chosen"], "0");
    assert_eq!(r["cost_choice"], "1s");
    assert_eq!(r["noise"]["best"], "1s");
    for (c, want) in r["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .zip([8.0, 7.6, 16.8])
    {
        close(&c["cost"]["total"], want);
    }
    // Break-even: 2 s × 1 / (2 GB × 2160 / 3600) = 2 / 1.2 s.
    close(&r["break_even_s"], 2.0 / 1.2);
    assert_eq!(
        kabench::units::as_written(out.recommendations[0].chosen.as_ref()),
        "0"
    );
    assert!(
        out.headline.contains("OLLAMA_KEEP_ALIVE=0"),
        "{}",
        out.headline
    );
    let md = fs::read_to_string(&out.summary_md).unwrap();
    assert!(md.contains("OLLAMA_KEEP_ALIVE=0"));
    assert!(md.contains("cannot be told from it"), "{md}");
    assert!(
        md.contains("| c1 | chat | tiny:1b | 1s | 4 | 0 | 50.0 |"),
        "{md}"
    );
}

#[test]
fn the_slo_form_picks_the_least_memory_meeting_the_slo() {
    // Only c2 (no cold start counted, p99 50 ms) meets 100 ms.
    let (_tmp, dir) = copy_fixture();
    set_slo(&dir, "100ms");
    let out = render(&dir, &RenderOptions::default()).unwrap();
    let r = &out.recommendations[0];
    assert_eq!(
        r.slo_choice
            .as_ref()
            .map(|k| kabench::units::as_written(k.as_ref())),
        Some("10s")
    );
    assert_eq!(kabench::units::as_written(r.chosen.as_ref()), "10s");
    assert_eq!(
        r.cost_choice
            .as_ref()
            .map(|k| kabench::units::as_written(k.as_ref())),
        Some("1s")
    );
    // Every cell meets 1 s: the least idle VRAM (c0, 0 GB·s) wins.
    let (_tmp2, dir2) = copy_fixture();
    set_slo(&dir2, "1s");
    let out = render(&dir2, &RenderOptions::default()).unwrap();
    assert_eq!(
        kabench::units::as_written(out.recommendations[0].chosen.as_ref()),
        "0"
    );
    assert_eq!(
        out.recommendations[0].snippets.keep_alive_field,
        "\"keep_alive\": \"0\""
    );
}

#[test]
fn a_script_model_name_is_escaped_everywhere_and_the_page_has_no_script() {
    let (_tmp, dir) = copy_fixture();
    let hostile = "<script>alert(1)</script>";
    for name in ["run.json", "requests.csv", "vram.csv", "scenario.toml"] {
        let text = fs::read_to_string(dir.join(name)).unwrap();
        fs::write(dir.join(name), text.replace("tiny:1b", hostile)).unwrap();
    }
    let out = render(&dir, &RenderOptions::default()).unwrap();
    let html = fs::read_to_string(&out.index_html).unwrap();
    assert!(
        !html.to_lowercase().contains("<script"),
        "raw script in index.html"
    );
    assert!(
        html.contains("&lt;script&gt;"),
        "the name is shown, escaped"
    );
    let md = fs::read_to_string(&out.summary_md).unwrap();
    assert!(!md.contains("<script"));
    for entry in fs::read_dir(dir.join("charts")).unwrap() {
        let svg = fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!svg.contains("<script"));
    }
    assert!(html.contains("<svg"), "charts are inline");
    assert!(
        !html.contains("http://") || !html.contains("<link"),
        "no external resources"
    );
}

#[test]
fn rendering_a_copied_folder_twice_reproduces_summary_json() {
    let (_tmp, dir) = copy_fixture();
    render(&dir, &RenderOptions::default()).unwrap();
    let first = fs::read_to_string(dir.join("summary.json")).unwrap();
    let (_tmp2, copy) = copy_fixture();
    render(&copy, &RenderOptions::default()).unwrap();
    render(&copy, &RenderOptions::default()).unwrap();
    assert_eq!(
        first,
        fs::read_to_string(copy.join("summary.json")).unwrap()
    );
    assert_eq!(
        fs::read_to_string(dir.join("recommendation.json")).unwrap(),
        fs::read_to_string(copy.join("recommendation.json")).unwrap()
    );
}

#[test]
fn charts_carry_their_axis_labels_as_text() {
    let (_tmp, dir) = copy_fixture();
    render(&dir, &RenderOptions::default()).unwrap();
    let charts = dir.join("charts");
    let read = |name: &str| fs::read_to_string(charts.join(name)).unwrap();
    let tradeoff = read("tradeoff-0-chat.svg");
    for label in [
        "idle memory held (GB·s)",
        "cold-start ratio (%)",
        "recommended",
        "1s",
    ] {
        assert!(has_text(&tradeoff, label), "tradeoff lacks {label}");
    }
    let p99 = read("p99-ttft-by-keep-alive.svg");
    assert!(has_text(&p99, "p99 TTFT (ms)") && has_text(&p99, "keep_alive (shortest first)"));
    assert!(has_text(
        &read("cold-ratio-by-keep-alive.svg"),
        "cold-start ratio (%)"
    ));
    let cdf = read("ttft-cdf.svg");
    assert!(
        has_text(&cdf, "time to first token (ms, log scale)") && has_text(&cdf, "cold (n = 6)")
    );
    let vram = read("vram-c1.svg");
    assert!(has_text(&vram, "memory held (GB)") && has_text(&vram, "time since cell start (s)"));
    assert!(has_text(&vram, "cold start"));
    let html = fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(has_text(&html, "idle memory held (GB·s)"));
}

#[test]
fn a_simulated_run_says_so_and_names_the_gpu() {
    let (_tmp, dir) = copy_fixture();
    let out = render(&dir, &RenderOptions::default()).unwrap();
    assert!(
        out.headline.contains("a model of Ollama"),
        "{}",
        out.headline
    );
    assert!(out.headline.contains("simulated 1 × 24GiB GPU"));
    let html = fs::read_to_string(&out.index_html).unwrap();
    assert!(html.contains("not a measurement of this hardware"));
    // The simulated models are a table, figures formatted, the source linked.
    assert!(html.contains("<td>tiny:1b</td><td>Q4_K_M</td>"), "{html}");
    assert!(html.contains("<td>1.40 s</td><td>0.68 s</td><td>120.0</td>"));
    assert!(html.contains("<a href=\"https:&#x2f;&#x2f;ollama.com&#x2f;library&#x2f;tiny\">"));
    assert!(html.contains("telemetry nvml unavailable"));
}

#[test]
fn an_interrupted_run_renders_what_ran() {
    let (_tmp, dir) = copy_fixture();
    let mut meta = folder::read_meta(&dir).unwrap();
    meta.status = folder::RunStatus::Interrupted;
    meta.cells[2].started_ms = None;
    folder::write_json_atomic(&dir.join("run.json"), &meta).unwrap();
    let rows: Vec<RequestRecord> = folder::read_requests(&dir)
        .unwrap()
        .into_iter()
        .filter(|r| r.cell != "c2")
        .collect();
    rewrite_requests(&dir, &rows);
    let out = render(&dir, &RenderOptions::default()).unwrap();
    assert_eq!(
        json(&dir.join("summary.json"))["cells"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let html = fs::read_to_string(&out.index_html).unwrap();
    assert!(html.contains("interrupted"));
    assert!(out.headline.contains("Partial run"));
}

fn rewrite_requests(dir: &Path, rows: &[RequestRecord]) {
    let mut w = CsvAppender::<RequestRecord>::create(&dir.join("requests.csv")).unwrap();
    for r in rows {
        w.append(r).unwrap();
    }
}

#[test]
fn compare_flags_a_worse_run_and_passes_an_identical_one() {
    let (_tmp, base) = copy_fixture();
    let (_tmp2, new) = copy_fixture();
    let t = CompareThresholds::default();
    let same = compare(&base, &new, &t).unwrap();
    assert_eq!(same.changes.len(), 3);
    assert!(same.regressions().is_empty(), "{}", same.to_text());
    // Every c1 request cold: cold ratio 0.5 → 1.0, p99 unchanged (900 ms).
    let rows: Vec<RequestRecord> = folder::read_requests(&new)
        .unwrap()
        .into_iter()
        .map(|mut r| {
            if r.cell == "c1" {
                r.cold = true;
                r.ttft_ms = Some(900.0);
            }
            r
        })
        .collect();
    rewrite_requests(&new, &rows);
    let worse = compare(&base, &new, &t).unwrap();
    // Four requests a cell cannot tell 2 colds of 4 from 4 of 4: the change is shown
    // with its interval (which holds zero), and it is no regression.
    assert!(worse.regressions().is_empty(), "{}", worse.to_text());
    let c1 = worse.changes.iter().find(|c| c.cell == "c1").unwrap();
    assert_eq!(c1.cold_ratio.base, Some(0.5));
    assert_eq!(c1.cold_ratio.new, Some(1.0));
    assert!(c1.cold_ratio.interval.unwrap().contains(0.0), "{c1:?}");
    let text = worse.to_text();
    assert!(text.contains("50.0 → 100.0 ([+0.0, +100.0])"), "{text}");
    assert!(worse.to_markdown().contains("| c1 |"));
}

#[test]
fn headless_chromium_shows_the_page_when_installed() {
    let Some(browser) = ["chromium", "chromium-browser"].into_iter().find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("skipped: no chromium on this machine");
        return;
    };
    let (_tmp, dir) = copy_fixture();
    let out = render(&dir, &RenderOptions::default()).unwrap();
    let profile = dir.join("chromium-profile");
    let chromium = |extra: &[String]| {
        std::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1100,2400",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(format!("file://{}", out.index_html.display()))
            .output()
            .unwrap()
    };
    // The DOM as the browser built it: the recommendation and every chart are there.
    let dom = chromium(&["--dump-dom".to_string()]);
    assert!(dom.status.success());
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("Recommendation"),
        "no recommendation in the page"
    );
    let charts = fs::read_dir(dir.join("charts")).unwrap().count();
    assert!(charts >= 4, "{charts} charts");
    assert!(
        dom.matches("<svg").count() >= charts,
        "every chart is inline in the page"
    );
    // Wide tables stay inside the page (they scroll on their own): at a narrow window
    // nothing widens the document past it. A copy of the page reports its widths.
    let probe = dir.join("probe.html");
    let page = fs::read_to_string(&out.index_html).unwrap().replace(
        "</body>",
        "<script>document.body.setAttribute('data-spill', String(document.documentElement.scrollWidth - document.documentElement.clientWidth));</script></body>",
    );
    fs::write(&probe, page).unwrap();
    let narrow = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=480,1200",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", probe.display()))
        .output()
        .unwrap();
    let narrow = String::from_utf8_lossy(&narrow.stdout);
    assert!(
        narrow.contains("data-spill=\"0\""),
        "a table spills out of a 480 px page: {}",
        narrow
            .split("data-spill=")
            .nth(1)
            .map_or("no measure", |s| &s[..s.len().min(12)])
    );
    // And it paints: a blank page's screenshot is tiny.
    let shot = dir.join("shot.png");
    let status = chromium(&[format!("--screenshot={}", shot.display())]);
    assert!(status.status.success());
    assert!(
        fs::metadata(&shot).unwrap().len() > 10_000,
        "a blank page is tiny"
    );
}

#[test]
fn a_trace_replay_folder_renders_without_its_trace_and_keeps_its_slo() {
    // Everything the report needs is in run.json: with the trace file gone (it is never
    // copied into the run folder), re-rendering keeps the [cost] and the SLO form.
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace.csv");
    fs::write(&trace, "t\n0\n0.2\n0.4\n1.6\n1.8\n").unwrap();
    let scenario = tmp.path().join("trace.toml");
    fs::write(
        &scenario,
        r#"name = "trace-slo"
seed = 5

[[stream]]
name = "code"
model = "qwen2.5:3b"
prompt_tokens = 20
max_tokens = 4
arrival = { kind = "trace", file = "trace.csv", column = "t" }

[run]
requests = 5

[sweep]
keep_alive = ["0", "5s"]

[cost]
vram_gb_hour = 3600

[slo]
ttft_p99 = "60s"
"#,
    )
    .unwrap();
    let out = tmp.path().join("run");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_kabench"))
        .args(["run", "--quiet", "--target", "sim", "--no-prewarm", "--out"])
        .arg(&out)
        .arg(&scenario)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let first = json(&out.join("recommendation.json"));
    assert_eq!(first[0]["form"], "slo", "{first}");
    let meta = json(&out.join("run.json"));
    assert_eq!(meta["slo"]["ttft_p99_ms"], 60000.0);
    assert_eq!(meta["cost"]["vram_gb_hour"], 3600.0);

    fs::remove_file(&trace).unwrap();
    let again = render(&out, &RenderOptions::default()).unwrap();
    let r = &again.recommendations[0];
    assert_eq!(r.form, kabench::recommend::Form::Slo);
    assert_eq!(
        kabench::units::as_written(r.chosen.as_ref()),
        first[0]["chosen"].as_str().unwrap()
    );
    assert_eq!(json(&out.join("recommendation.json")), first);
    let md = fs::read_to_string(&again.summary_md).unwrap();
    assert!(!md.contains("default [cost]"), "{md}");
}

/// Turns every request of the cells in `cells` into a connect error (no status, no timings).
fn fail_cells(dir: &Path, cells: &[&str]) {
    let rows: Vec<RequestRecord> = folder::read_requests(dir)
        .unwrap()
        .into_iter()
        .map(|mut r| {
            if cells.contains(&r.cell.as_str()) {
                r = RequestRecord {
                    cell: r.cell,
                    request: r.request,
                    stream: r.stream,
                    model: r.model,
                    keep_alive: r.keep_alive,
                    intended_ms: r.intended_ms,
                    end_ms: r.intended_ms + 1.0,
                    error: "connect".into(),
                    error_detail: "connection refused".into(),
                    ..Default::default()
                };
            }
            r
        })
        .collect();
    rewrite_requests(dir, &rows);
}

#[test]
fn a_cell_whose_requests_failed_is_never_recommended() {
    // c1 ("1s") is the cost pick; with its 4 requests all connect errors it is no
    // candidate (it would look warm and free), and the next cheapest wins.
    let (_tmp, dir) = copy_fixture();
    fail_cells(&dir, &["c1"]);
    let out = render(&dir, &RenderOptions::default()).unwrap();
    let r = &out.recommendations[0];
    assert_ne!(
        kabench::units::as_written(r.chosen.as_ref()),
        "1s",
        "{}",
        r.reason
    );
    assert!(
        r.reason.contains("1s: all 4 requests failed"),
        "{}",
        r.reason
    );
    let failed = r
        .candidates
        .iter()
        .find(|c| kabench::units::as_written(c.keep_alive.as_ref()) == "1s")
        .unwrap();
    assert!(!failed.on_frontier);
}

#[test]
fn with_every_request_failed_there_is_no_recommendation_and_the_headline_says_why() {
    let (_tmp, dir) = copy_fixture();
    fail_cells(&dir, &["c0", "c1", "c2"]);
    let out = render(&dir, &RenderOptions::default()).unwrap();
    let r = &out.recommendations[0];
    assert_eq!(r.form, kabench::recommend::Form::NoCandidate);
    assert!(r.chosen_candidate().is_none());
    assert!(
        out.headline.contains("no recommendation"),
        "{}",
        out.headline
    );
    assert!(
        out.headline.contains("0: all 4 requests failed"),
        "{}",
        out.headline
    );
    assert!(
        !out.headline.contains("OLLAMA_KEEP_ALIVE"),
        "{}",
        out.headline
    );
    let recs = json(&dir.join("recommendation.json"));
    assert_eq!(recs[0]["form"], "no_candidate");
    let md = fs::read_to_string(&out.summary_md).unwrap();
    assert!(!md.contains("OLLAMA_KEEP_ALIVE"), "{md}");
    let html = fs::read_to_string(&out.index_html).unwrap();
    assert!(html.contains("No recommendation"));
}

#[test]
fn cold_ratios_in_summary_and_table_are_over_requests_answered() {
    // c0 ("0"): 4 requests, all cold. With the last two saturated (never sent), the two
    // answered are still all cold: 100%, not 50%; the saturated are counted beside.
    let (_tmp, dir) = copy_fixture();
    let rows: Vec<RequestRecord> = folder::read_requests(&dir)
        .unwrap()
        .into_iter()
        .map(|r| {
            if r.cell == "c0" && r.request >= 2 {
                RequestRecord {
                    cell: r.cell,
                    request: r.request,
                    stream: r.stream,
                    model: r.model,
                    keep_alive: r.keep_alive,
                    intended_ms: r.intended_ms,
                    end_ms: r.intended_ms,
                    error: "saturated".into(),
                    ..Default::default()
                }
            } else {
                r
            }
        })
        .collect();
    rewrite_requests(&dir, &rows);
    let out = render(&dir, &RenderOptions::default()).unwrap();
    let s = &json(&dir.join("summary.json"))["cells"][0]["streams"][0];
    assert_eq!(s["requests"], 4);
    assert_eq!(s["answered"], 2);
    assert_eq!(s["errors_by_kind"]["saturated"], 2);
    close(&s["cold_ratio"], 1.0);
    let md = fs::read_to_string(&out.summary_md).unwrap();
    assert!(
        md.contains("| c0 | chat | tiny:1b | 0 | 4 | 2 | 100.0 |"),
        "{md}"
    );
}

#[test]
fn report_warns_about_garbage_rows_with_their_line_numbers() {
    let (_tmp, dir) = copy_fixture();
    let text = fs::read_to_string(dir.join("requests.csv")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(3, "this is not a row");
    lines.insert(
        6,
        "c1,x,chat,tiny:1b,1s,false,oops,,,,,1,,,,,,false,,,,,,,,,",
    );
    fs::write(dir.join("requests.csv"), lines.join("\n") + "\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kabench"))
        .arg("report")
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("requests.csv line 4: a row that does not parse"),
        "{stderr}"
    );
    assert!(
        stderr.contains("requests.csv line 7: a row that does not parse"),
        "{stderr}"
    );
    let md = fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("requests.csv line 4"), "{md}");
    // The good rows are all there.
    let summary = json(&dir.join("summary.json"));
    assert_eq!(summary["cells"][0]["streams"][0]["requests"], 4);
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_while_rendering_leaves_the_previous_page_whole() {
    let (_tmp, dir) = copy_fixture();
    let folder = dir.to_str().unwrap();
    common::run_ok(&["report", folder]);
    let before = fs::read(dir.join("index.html")).unwrap();
    assert!(before.ends_with(b"</html>\n") || before.ends_with(b"</html>"));
    // index.html is written through index.html.tmp: make that /dev/full, where every
    // write fails with ENOSPC as on a full disk.
    let tmp = dir.join("index.html.tmp");
    std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
    let out = common::kabench().args(["report", folder]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("index.html.tmp"), "{stderr}");
    assert_eq!(
        fs::read(dir.join("index.html")).unwrap(),
        before,
        "the page is the previous one, whole"
    );
    assert!(
        fs::symlink_metadata(&tmp).is_err(),
        "the temporary file is removed"
    );
}
