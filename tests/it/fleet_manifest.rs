//! `kabench fleet`: the Kubernetes manifest parses back as typed objects (a ConfigMap
//! holding the scenario byte for byte, a batch/v1 Indexed Job of N shards on a shared
//! claim, and the merge Job), and the Slurm script passes `bash -n` with the array and
//! the afterok merge. Bad input exits 2.

use crate::common::{kabench, run_ok};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use serde::Deserialize;

const SCENARIO: &str = "tests/fixtures/fleet/two-models.toml";

#[test]
fn the_k8s_manifest_parses_back_as_an_indexed_job_and_its_merge() {
    let out = run_ok(&[
        "fleet",
        "k8s",
        SCENARIO,
        "--shards",
        "4",
        "--image",
        "registry.example/kabench:0.1.0",
        "--target",
        "http://ollama-0.ollama:11434",
        "--target",
        "http://ollama-1.ollama:11434",
        "--claim",
        "runs",
        "--name",
        "bench1",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_yaml_ng::Value::deserialize(d).expect("valid YAML"))
        .collect();
    assert_eq!(docs.len(), 3, "{text}");

    let cm: ConfigMap = serde_yaml_ng::from_value(docs[0].clone()).expect("a typed ConfigMap");
    assert_eq!(cm.metadata.name.as_deref(), Some("bench1-scenario"));
    let carried = &cm.binary_data.unwrap()["scenario.toml"];
    assert_eq!(carried.0, std::fs::read(SCENARIO).unwrap());

    let shards: Job = serde_yaml_ng::from_value(docs[1].clone()).expect("a typed batch/v1 Job");
    assert_eq!(shards.metadata.name.as_deref(), Some("bench1-shards"));
    let spec = shards.spec.unwrap();
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!(spec.completions, Some(4));
    assert_eq!(spec.parallelism, Some(4));
    assert_eq!(spec.backoff_limit, Some(0));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("registry.example/kabench:0.1.0"));
    let args = c.args.clone().unwrap();
    let after = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
    assert_eq!(args[0], "run");
    assert_eq!(after("--shard"), "auto");
    assert_eq!(after("--shards"), "4");
    assert_eq!(after("--out"), "/runs/bench1");
    assert_eq!(args.iter().filter(|a| *a == "--target").count(), 2);
    assert!(kabench::shard::parse_start_at(&after("--start-at")).is_ok());
    let env = c.env.clone().unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "KABENCH_SHARDS" && e.value.as_deref() == Some("4"))
    );
    let claims: Vec<String> = pod
        .volumes
        .unwrap()
        .iter()
        .filter_map(|v| {
            v.persistent_volume_claim
                .as_ref()
                .map(|p| p.claim_name.clone())
        })
        .collect();
    assert_eq!(claims, ["runs"]);

    let merge: Job = serde_yaml_ng::from_value(docs[2].clone()).expect("a typed merge Job");
    assert_eq!(merge.metadata.name.as_deref(), Some("bench1-merge"));
    let mc = &merge.spec.unwrap().template.spec.unwrap().containers[0];
    let script = mc.args.clone().unwrap().join(" ");
    assert!(
        script.contains("kabench merge /runs/bench1 /runs/bench1/shard-0-of-4"),
        "{script}"
    );
    assert!(script.contains("/runs/bench1/shard-3-of-4"), "{script}");
    // The merge script is shell the image's /bin/sh reads.
    let ok = std::process::Command::new("sh")
        .args(["-n", "-c", &script])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn the_slurm_script_passes_bash_n_with_the_array_and_an_afterok_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_ok(&[
        "fleet",
        "slurm",
        SCENARIO,
        "--shards",
        "3",
        "--target",
        "gpu-node-1:11434",
        "--out",
        tmp.path().join("run's folder").to_str().unwrap(),
        "--partition",
        "gpu",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let script = tmp.path().join("submit.sh");
    std::fs::write(&script, &text).unwrap();
    let status = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(status.success(), "bash -n failed on:\n{text}");
    assert!(text.contains("#SBATCH --array=0-2"), "{text}");
    assert!(
        text.contains("--dependency=afterok:\"${shards}\""),
        "{text}"
    );
    assert!(text.contains("'--shard' 'auto' '--shards' '3'"), "{text}");
    assert!(text.contains("merge '"), "{text}");
}

#[test]
fn a_fleet_of_the_simulator_or_no_shards_is_refused() {
    let sim = kabench()
        .args(["fleet", "k8s", SCENARIO, "--shards", "2", "--image", "x"])
        .output()
        .unwrap();
    assert_eq!(sim.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&sim.stderr).contains("the target is the simulator"));
    let zero = kabench()
        .args([
            "fleet", "slurm", SCENARIO, "--shards", "0", "--target", "h:1",
        ])
        .output()
        .unwrap();
    assert_eq!(zero.status.code(), Some(2));
}

#[test]
fn a_bad_shard_is_bad_input_before_anything_is_sent() {
    for args in [
        vec!["--shard", "4/4"],
        vec!["--shard", "x"],
        vec!["--shard", "auto"],
        vec!["--shard", "1/4", "--shards", "3"],
        vec!["--shard", "0/2", "--start-at", "tomorrow"],
        vec!["--shards", "0"],
    ] {
        let out = kabench()
            .args(["run", SCENARIO, "--target", "127.0.0.1:9"])
            .args(&args)
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("SLURM_ARRAY_TASK_ID")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
