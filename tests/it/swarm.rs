//! `kabench swarm` against the in-process simulator: two keep_alive cells (0 and -1)
//! of a few seconds with two closed-loop users each. Goose's reports land in the run
//! folder, every request has its row, and the cold requests account for exactly the
//! loads the simulator counted in each cell.

use std::path::Path;
use std::time::Duration;

use kabench::folder;
use kabench::run::closed_loop::{self as swarm, SwarmOptions};
use kabench::run::{RunOutcome, Target};
use kabench::scenario;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SCENARIO: &str = r#"
name = "swarm-test"
seed = 3

[sim]
runtime_start = "150ms"
cached_bandwidth = "100GB"
cold_bandwidth = "50GB"
vram_release_delay = "20ms"
load_jitter = 0.0

[[stream]]
name = "chat"
model = "qwen2.5:3b-instruct-q4_K_M"
api = "generate"
num_ctx = 2048
prompt_tokens = 20
max_tokens = 2
arrival = { kind = "constant", rate = "1/s" }

[run]
requests = 1
timeout = "10s"

[sweep]
keep_alive = ["0", -1]

[swarm]
users = 2
hatch_rate = 10.0
think_time = { min = "50ms", max = "250ms" }
run_time = "2s"
"#;

async fn run(dir: &Path) -> RunOutcome {
    let path = dir.join("swarm-test.toml");
    std::fs::write(&path, SCENARIO).unwrap();
    let scenario = scenario::load(&path).unwrap();
    let plan = scenario::plan(&scenario);
    let options = SwarmOptions {
        target: Target::Sim,
        out: Some(dir.join("run")),
        users: None,
        run_time: None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let outcome = swarm::run(&scenario, &plan, &options, tx, CancellationToken::new())
        .await
        .unwrap();
    drain.await.unwrap();
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_records_every_request_and_its_cold_starts_match_the_simulators_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let outcome = run(tmp.path()).await;
    let dir = &outcome.dir;
    assert_eq!(outcome.status, folder::RunStatus::Complete);

    let meta = folder::read_meta(dir).unwrap();
    let rows = folder::read_requests(dir).unwrap();
    assert_eq!(rows.len() as u64, outcome.requests);
    assert_eq!(outcome.errors, 0, "{rows:#?}");
    let loads = meta.sim_loads_per_cell();
    assert_eq!(loads.len(), 2, "{:?}", meta.sim);
    let threshold = Duration::from_secs_f64(meta.cold_threshold_ms / 1000.0);
    for cell in &meta.cells {
        let cell_rows: Vec<_> = rows.iter().filter(|r| r.cell == cell.id).collect();
        assert!(
            cell_rows.len() >= 4,
            "cell {}: {} rows",
            cell.id,
            cell_rows.len()
        );
        for r in &cell_rows {
            assert!(r.ttft_ms.unwrap() > 0.0 && r.e2e_ms.unwrap() >= r.ttft_ms.unwrap());
            assert!(r.first_byte_ms.is_some() && r.load_duration_ms.is_some());
        }
        let owned: Vec<_> = cell_rows.iter().map(|r| (*r).clone()).collect();
        let witnessed = kabench::analysis::loads_witnessed(&owned, threshold);
        let cold = cell_rows.iter().filter(|r| r.cold).count() as u64;
        let sim_loads = loads[&cell.id];
        eprintln!(
            "cell {}: {} rows, {cold} cold, {witnessed} loads witnessed, {sim_loads} simulator loads",
            cell.id,
            cell_rows.len()
        );
        assert_eq!(
            witnessed, sim_loads,
            "cell {}: {cold} cold rows witnessed {witnessed} loads, the simulator counted {sim_loads}",
            cell.id
        );
        if &cell.params["keep_alive"] == "-1" {
            assert_eq!(sim_loads, 1, "forever: one load per cell");
        } else {
            assert!(sim_loads >= 2, "keep_alive 0 reloads: {sim_loads}");
            assert!(cold >= sim_loads);
        }
        let goose = dir.join(swarm::GOOSE_DIR).join(&cell.id);
        let html = std::fs::read_to_string(goose.join("report.html")).unwrap();
        assert!(html.contains("<html"), "goose's report.html");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(goose.join("report.json")).unwrap())
                .unwrap();
        assert!(json.is_object());
    }
    // The rest of the pipeline reads the folder unchanged.
    let rendered =
        kabench::report::render(dir, &kabench::report::RenderOptions::default()).unwrap();
    assert!(rendered.index_html.exists());
    let index = std::fs::read_to_string(&rendered.index_html).unwrap();
    for cell in &meta.cells {
        // The template escapes `/` as `&#x2f;` inside attributes and text; browsers decode it.
        let link = format!("goose/{}/report.html", cell.id);
        assert!(
            index.contains(&link) || index.contains(&link.replace('/', "&#x2f;")),
            "index.html links goose's report of {}",
            cell.id
        );
    }
}
