//! `kabench fleet`: the Kubernetes manifest parses back as typed objects (a ConfigMap
//! holding the scenario byte for byte, a batch/v1 Indexed Job of N shards on a shared
//! claim with resources, a non-root security context and one try per index, the merge
//! Job, and the claim with --new-claim), a loopback target is refused for it, and the
//! Slurm script passes `bash -n` with the array and the afterany merge. Bad input exits
//! 2. Where `kubernetes-validate` is installed, the manifest passes it in strict mode
//! for the oldest and newest Kubernetes versions it knows.

use crate::common::{kabench, run_ok};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim};
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
    kubernetes_validate(&text);

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
    // One failed shard neither retries past the barrier nor fails the others.
    assert_eq!(spec.backoff_limit_per_index, Some(0));
    assert_eq!(spec.max_failed_indexes, Some(4));
    assert_eq!(spec.ttl_seconds_after_finished, Some(86400));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let sc = pod.security_context.clone().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!((sc.run_as_user, sc.fs_group), (Some(10001), Some(10001)));
    let c = &pod.containers[0];
    let res = c.resources.clone().unwrap();
    let (req, lim) = (res.requests.unwrap(), res.limits.unwrap());
    assert_eq!(
        (req["cpu"].0.as_str(), req["memory"].0.as_str()),
        ("500m", "256Mi")
    );
    assert_eq!(
        (lim["cpu"].0.as_str(), lim["memory"].0.as_str()),
        ("1", "1Gi")
    );
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
    let merge_spec = merge.spec.unwrap();
    assert!(merge_spec.ttl_seconds_after_finished.is_some());
    let mc = &merge_spec.template.spec.unwrap().containers[0];
    let script = mc.args.clone().unwrap().join(" ");
    // Its wait ends at an absolute time: the barrier, the run's span and ten minutes.
    let barrier = kabench::shard::parse_start_at(&after("--start-at"))
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let deadline: u64 = script
        .strip_prefix("deadline=")
        .and_then(|s| s.split(';').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        deadline >= barrier + 600 && deadline < barrier + 3600,
        "{script}"
    );
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
fn the_slurm_script_passes_bash_n_with_the_array_and_an_afterany_merge() {
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
        "--account",
        "team-a",
        "--time",
        "1:00:00",
        "--cpus-per-task",
        "2",
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
        text.contains("--dependency=afterany:\"${shards}\""),
        "{text}"
    );
    assert!(text.contains("'--shard' 'auto' '--shards' '3'"), "{text}");
    assert!(text.contains("#SBATCH --cpus-per-task=2\n"), "{text}");
    // The account for both jobs, the time limit for the shards only.
    assert!(
        text.contains(
            "sbatch --parsable --partition='gpu' --account='team-a' --time='1:00:00' --output="
        ),
        "{text}"
    );
    assert_eq!(text.matches("--time='1:00:00'").count(), 1, "{text}");
    assert!(text.contains("'--late-tolerance' '2s'"), "{text}");
    assert!(
        text.contains("# Shared file systems: the run folder"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "base64 -d > '{}/fleet-scenario.toml' <<'KABENCH_SCENARIO_END'",
            tmp.path().join("run'\\''s folder").display()
        )),
        "{text}"
    );
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

#[test]
fn the_k8s_manifest_prints_the_claim_and_refuses_a_loopback_target() {
    let out = run_ok(&[
        "fleet",
        "k8s",
        SCENARIO,
        "--shards",
        "2",
        "--image",
        "i:1",
        "--target",
        "http://ollama:11434",
        "--new-claim",
        "5Gi",
        "--storage-class",
        "nfs",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_yaml_ng::Value::deserialize(d).expect("valid YAML"))
        .collect();
    assert_eq!(docs.len(), 4, "{text}");
    let claim: PersistentVolumeClaim =
        serde_yaml_ng::from_value(docs[0].clone()).expect("a typed claim");
    let spec = claim.spec.unwrap();
    assert_eq!(spec.access_modes.unwrap(), ["ReadWriteMany"]);
    assert_eq!(spec.storage_class_name.as_deref(), Some("nfs"));
    assert_eq!(
        spec.resources.unwrap().requests.unwrap()["storage"].0,
        "5Gi"
    );
    kubernetes_validate(&text);

    for (target, scenario_target) in [(Some("127.0.0.1:11434"), false), (None, true)] {
        let tmp = tempfile::tempdir().unwrap();
        let scenario = tmp.path().join("s.toml");
        let mut text = std::fs::read_to_string(SCENARIO).unwrap();
        if scenario_target {
            text = format!("{text}\n[target]\nkind = \"ollama\"\nurl = \"localhost:11434\"\n");
        }
        std::fs::write(&scenario, text).unwrap();
        let mut cmd = kabench();
        cmd.args(["fleet", "k8s"]).arg(&scenario);
        cmd.args(["--shards", "2", "--image", "i:1"]);
        if let Some(t) = target {
            cmd.args(["--target", t]);
        }
        let o = cmd.output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{e}");
        assert!(
            e.contains("loopback") && e.contains("every pod would load-test itself"),
            "{e}"
        );
        assert!(o.stdout.is_empty());
    }
}

/// `kubernetes-validate --strict` over the manifest for the oldest Kubernetes version
/// it knows that has `backoffLimitPerIndex` (1.29: older ones would fail every shard
/// with the first) and the newest; one line and nothing else where it is not installed.
fn kubernetes_validate(manifest: &str) {
    let listed = std::process::Command::new("python3")
        .args([
            "-c",
            "import kubernetes_validate.utils as u; print(' '.join(u.all_versions()))",
        ])
        .output();
    let Some(listed) = listed.ok().filter(|o| o.status.success()) else {
        eprintln!("skipping kubernetes-validate: not installed (pip install kubernetes-validate)");
        return;
    };
    let key = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    let versions: Vec<&str> = text
        .split_whitespace()
        .filter(|v| key(v) >= vec![1, 29])
        .collect();
    let (Some(oldest), Some(newest)) = (
        versions.iter().min_by_key(|v| key(v)),
        versions.iter().max_by_key(|v| key(v)),
    ) else {
        eprintln!("skipping kubernetes-validate: it knows no Kubernetes 1.29 or newer");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("manifest.yaml");
    std::fs::write(&file, manifest).unwrap();
    for version in [oldest, newest] {
        let o = std::process::Command::new("kubernetes-validate")
            .args(["--strict", "--kubernetes-version", version])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "kubernetes-validate --strict {version}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
