//! Hostile input to the fleet surfaces and a run's start: the Slurm script quotes
//! every value it embeds (and running it, with `sbatch` and `kabench` replaced by
//! recorders, runs nothing a value holds), control characters are refused naming the
//! flag, the Kubernetes manifest carries the scenario base64 whatever its comments
//! hold, shard counts and start barriers have limits checked before anything is
//! made, a shard says it is waiting for its barrier, and a run that cannot start on a
//! nearly full disk never leaves its folder "running".

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use serde::Deserialize;

use crate::common::{kabench, read_json, request_rows};

const SCENARIO: &str = "tests/fixtures/fleet/two-models.toml";

/// One stream, one request, keep_alive 0: the shortest run there is.
const TINY: &str = r#"name = "hostile-fleet"
seed = 1

[sim]
gpus = 0

[[stream]]
name = "a"
model = "tiny-50m:latest"
max_tokens = 2
prompt_tokens = 8
keep_alive = "0"
arrival = { kind = "constant", rate = "1/s" }

[run]
requests = 1

[telemetry]
interval = "100ms"
"#;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write_exe(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The NUL-separated words a recorder wrote.
fn words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .split('\0')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Files in `dir` whose name starts with `prefix`, sorted.
fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_slurm_script_quotes_every_value_and_running_it_runs_none_of_them() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().to_str().unwrap().to_string();
    // Each value would create its marker if any part of it ran as shell. Relative:
    // every command below runs in `t`, and a marker can be part of a file name.
    let marker = |n: u32| format!("pwned-{n}");
    let run = |n: u32| format!("$(touch${{IFS}}{})", marker(n));
    let out = format!(
        "{t}/run{}`touch${{IFS}}{}`;touch${{IFS}}{}'q\"q %j&|<x>",
        run(1),
        marker(2),
        marker(3)
    );
    let partition = format!("gpu{};x", run(4));
    let bin = tmp.path().join(format!("bin dir{}", run(5)));
    std::fs::create_dir(&bin).unwrap();
    let kabench_shim = bin.join("kabench");
    let scenario = tmp.path().join(format!("scenario {}'.toml", run(6)));
    std::fs::copy(SCENARIO, &scenario).unwrap();
    let stubs = tmp.path().join("stubs");
    std::fs::create_dir(&stubs).unwrap();
    let shims = tmp.path().join("shims");
    std::fs::create_dir(&shims).unwrap();
    // sbatch: records its words and the job script, answers a job id.
    write_exe(
        &shims.join("sbatch"),
        "#!/bin/bash\nn=$(ls \"$STUBS\" | grep -c '^sbatch-.*\\.args$' || true)\nn=$((n+1))\nprintf '%s\\0' \"$@\" > \"$STUBS/sbatch-$n.args\"\ncat > \"$STUBS/sbatch-$n.sh\"\necho \"100$n\"\n",
    );
    // kabench on the nodes: records its words.
    write_exe(
        &kabench_shim,
        "#!/bin/bash\nprintf '%s\\0' \"$@\" > \"$STUBS/kabench-$$.args\"\n",
    );

    let generated = kabench()
        .args(["fleet", "slurm"])
        .arg(&scenario)
        .args([
            "--shards",
            "2",
            "--target",
            "gpu-node-1:11434",
            "--out",
            &out,
        ])
        .args(["--partition", &partition, "--kabench"])
        .arg(&kabench_shim)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", stderr(&generated));
    let text = String::from_utf8(generated.stdout).unwrap();
    let script = tmp.path().join("submit.sh");
    std::fs::write(&script, &text).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}\n{text}",
        stderr(&syntax)
    );
    // No #SBATCH line carries a value a user gave (sbatch cannot read quoting there).
    for line in text.lines().filter(|l| l.starts_with("#SBATCH")) {
        assert!(
            line.chars()
                .all(|c| c.is_ascii_alphanumeric() || "#-=_ ".contains(c)),
            "{line}"
        );
    }

    // Submit it, with sbatch recorded.
    let path = format!("{}:{}", shims.display(), std::env::var("PATH").unwrap());
    let submitted = Command::new("bash")
        .current_dir(&t)
        .arg(&script)
        .env("PATH", &path)
        .env("STUBS", &stubs)
        .output()
        .unwrap();
    assert!(submitted.status.success(), "{}", stderr(&submitted));
    let said = String::from_utf8_lossy(&submitted.stdout);
    assert!(
        said.contains(&format!(
            "submitted the shards as job 1001; the merged run folder will be {out}"
        )),
        "{said}"
    );
    assert!(Path::new(&out).is_dir(), "the run folder was made as given");
    let shards_job = words(&stubs.join("sbatch-1.args"));
    let escaped = out.replace('%', "%%");
    assert_eq!(
        shards_job,
        [
            "--parsable".to_string(),
            format!("--partition={partition}"),
            format!("--output={escaped}/slurm-%A_%a.log"),
        ]
    );
    let merge_job = words(&stubs.join("sbatch-2.args"));
    assert_eq!(merge_job[1], format!("--partition={partition}"));
    assert_eq!(
        merge_job[2],
        format!("--output={escaped}/slurm-merge-%j.log")
    );
    assert_eq!(merge_job[3], "--dependency=afterany:1001");
    // The scenario was written into the run folder, byte for byte.
    let copy = format!("{out}/fleet-scenario.toml");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(&scenario).unwrap()
    );

    // Run the job scripts as the nodes would: kabench gets every value as one word.
    for job in ["sbatch-1.sh", "sbatch-2.sh"] {
        let ran = Command::new("bash")
            .current_dir(&t)
            .arg(stubs.join(job))
            .env("STUBS", &stubs)
            .env("SLURM_ARRAY_TASK_ID", "0")
            .output()
            .unwrap();
        assert!(ran.status.success(), "{job}: {}", stderr(&ran));
    }
    let calls: Vec<Vec<String>> = files(&stubs, "kabench-").iter().map(|p| words(p)).collect();
    assert_eq!(calls.len(), 2);
    let shard = calls
        .iter()
        .find(|c| c[0] == "run")
        .expect("the shard's run");
    let after = |flag: &str| shard[shard.iter().position(|a| a == flag).unwrap() + 1].clone();
    assert_eq!(shard[1], copy, "the shards run the copy in the run folder");
    assert_eq!(after("--out"), out);
    assert_eq!(after("--target"), "gpu-node-1:11434");
    assert_eq!(after("--shards"), "2");
    let merge = calls.iter().find(|c| c[0] == "merge").expect("the merge");
    assert_eq!(
        merge[1..],
        [
            out.clone(),
            format!("{out}/shard-0-of-2"),
            format!("{out}/shard-1-of-2")
        ]
    );

    for n in 1..=6 {
        assert!(
            !tmp.path().join(marker(n)).exists(),
            "a value ran as shell: {}",
            marker(n)
        );
    }
}

#[test]
fn slurm_values_with_control_characters_are_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().to_str().unwrap();
    let scenario = std::fs::canonicalize(SCENARIO).unwrap();
    let mark = format!("{t}/pwned");
    let heredoc_end = format!("gpu\nSLURM\ntouch {mark}\n");
    for (flag, value) in [
        ("--partition", heredoc_end.as_str()),
        ("--out", &format!("{t}/run\ntouch {mark}")),
        ("--kabench", "kabench\rx"),
        ("--target", "gpu-node-1:11434\u{2028}x"),
    ] {
        let mut cmd = kabench();
        cmd.args(["fleet", "slurm"]).arg(&scenario).args([
            "--shards",
            "2",
            "--target",
            "gpu-node-1:11434",
        ]);
        if flag != "--out" {
            cmd.args(["--out", &format!("{t}/ok")]);
        }
        let out = cmd.args([flag, value]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{flag}: a script was printed");
        let e = stderr(&out);
        assert!(
            e.contains(&format!("{flag} ")) && e.contains("control character"),
            "{flag}: {e}"
        );
    }
    // The default --out comes from the working directory, which may hold anything.
    let cwd = tmp.path().join("work\ntouch x");
    std::fs::create_dir(&cwd).unwrap();
    let out = kabench()
        .current_dir(&cwd)
        .args(["fleet", "slurm"])
        .arg(&scenario)
        .args(["--shards", "2", "--target", "gpu-node-1:11434"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the default --out"),
        "{}",
        stderr(&out)
    );
    assert!(!Path::new(&mark).exists());
    assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0);
}

#[test]
fn the_k8s_manifest_carries_the_scenario_base64_whatever_its_comments_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(SCENARIO).unwrap();
    // Each of these ends a YAML block scalar; the next "lines" would become keys.
    let hostile = format!(
        "# a\u{2028}evil: 1\n# b\u{85}kind: Secret\n# c\u{2029}\"x\": '|'\n{original}\n# tail   \n"
    );
    let scenario = tmp.path().join("s.toml");
    std::fs::write(&scenario, &hostile).unwrap();
    let image = "registry.example/kabench:0.1.0 # \"x\": {y} [z] 'q'";
    let claim = "runs: \"c\" & *alias";
    let namespace = "ns' \"x\": y";
    let out = kabench()
        .args(["fleet", "k8s"])
        .arg(&scenario)
        .args(["--shards", "3", "--target", "http://ollama-0.ollama:11434"])
        .args(["--image", image, "--claim", claim, "--namespace", namespace])
        .args(["--name", "bench1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for c in ['\u{2028}', '\u{2029}', '\u{85}'] {
        assert!(
            !text.contains(c),
            "a line break YAML reads is in the manifest"
        );
    }
    let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_yaml_ng::Value::deserialize(d).expect("valid YAML"))
        .collect();
    assert_eq!(docs.len(), 3, "{text}");
    let keys: Vec<&str> = docs[0]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, ["apiVersion", "kind", "metadata", "binaryData"]);
    let cm: ConfigMap = serde_yaml_ng::from_value(docs[0].clone()).expect("a typed ConfigMap");
    assert_eq!(cm.metadata.namespace.as_deref(), Some(namespace));
    assert!(cm.data.is_none());
    let binary = cm.binary_data.unwrap();
    assert_eq!(binary.keys().collect::<Vec<_>>(), ["scenario.toml"]);
    assert_eq!(
        binary["scenario.toml"].0,
        hostile.as_bytes(),
        "byte for byte"
    );
    for doc in &docs[1..] {
        let job: Job = serde_yaml_ng::from_value(doc.clone()).expect("a typed Job");
        assert_eq!(job.metadata.namespace.as_deref(), Some(namespace));
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.containers[0].image.as_deref(), Some(image));
        let claims: Vec<String> = pod
            .volumes
            .unwrap()
            .iter()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|p| p.claim_name.clone())
            .collect();
        assert_eq!(claims, [claim]);
    }
    // The claim is named in the header comment too: quoted, on its one line.
    assert!(text.lines().take(3).all(|l| l.starts_with('#')), "{text}");

    let bad = kabench()
        .args(["fleet", "k8s", SCENARIO, "--shards", "2"])
        .args(["--target", "http://o:11434", "--image", "img\nkind: Secret"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--image "), "{}", stderr(&bad));
    assert!(bad.stdout.is_empty());
}

#[test]
fn shard_counts_over_the_limit_are_refused_before_anything_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let local = kabench::shard::max_local_shards();
    let over_local = (local + 1).to_string();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec![
                "fleet",
                "slurm",
                SCENARIO,
                "--target",
                "h:1",
                "--shards",
                "4294967295",
            ],
            "1024".into(),
        ),
        (
            vec![
                "fleet", "k8s", SCENARIO, "--target", "h:1", "--image", "i", "--shards", "1025",
            ],
            "1024".into(),
        ),
        (
            vec!["run", SCENARIO, "--shards", "4294967295"],
            local.to_string(),
        ),
        (
            vec!["run", SCENARIO, "--shards", &over_local],
            local.to_string(),
        ),
        (
            vec!["run", SCENARIO, "--shard", "0/4294967295"],
            "1024".into(),
        ),
    ];
    for (args, limit) in cases {
        let started = Instant::now();
        let mut cmd = kabench();
        cmd.args(&args);
        if args[1] != "k8s" {
            cmd.args(["--out", out.to_str().unwrap()]);
        }
        let o = cmd.output().unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains("--shard") && e.contains(&limit), "{args:?}: {e}");
        assert!(started.elapsed() < Duration::from_secs(5), "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?}");
        assert!(!out.exists(), "{args:?} made its folder");
    }
    // The most shards there may be fit in 500 MB (virtual) for either engine.
    for engine in [["slurm", "--out"], ["k8s", "--image"]] {
        let o = Command::new("bash")
            .arg("-c")
            .arg("ulimit -v 500000; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_kabench"))
            .args(["fleet", engine[0], SCENARIO, "--target", "h:1"])
            .args(["--shards", "1024", engine[1]])
            .arg(tmp.path().join("big"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{engine:?}: {}", stderr(&o));
        let text = String::from_utf8(o.stdout).unwrap();
        assert!(text.contains("shard-1023-of-1024"), "{engine:?}");
    }
    let far = kabench()
        .args([
            "fleet", "slurm", SCENARIO, "--target", "h:1", "--shards", "2",
        ])
        .args(["--start-delay", "400d", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(far.status.code(), Some(2));
    assert!(stderr(&far).contains("--start-delay"), "{}", stderr(&far));
}

#[test]
fn a_barrier_far_ahead_or_in_the_past_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    for (at, says) in [
        ("2099-01-01T00:00:00Z", "over the limit of 1day ahead"),
        (
            "2020-01-01T00:00:00Z",
            "in the past, over the limit of 2s behind",
        ),
    ] {
        for mode in [vec!["--shard", "0/2"], vec!["--shards", "2"], vec![]] {
            let o = kabench()
                .args(["run", SCENARIO, "--target", "sim", "--start-at", at])
                .args(&mode)
                .args(["--out", out.to_str().unwrap(), "-q"])
                .output()
                .unwrap();
            let e = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{at} {mode:?}: {e}");
            // A shard may start after its barrier (it ends late); a day behind is a
            // mistake.
            let says = if mode.first() == Some(&"--shard") && says.contains("behind") {
                "in the past, over the limit of 1day behind for a shard"
            } else {
                says
            };
            assert!(
                e.contains(&format!("--start-at {at}")) && e.contains(says),
                "{e}"
            );
            assert!(!out.exists(), "{at} {mode:?} made its folder");
        }
    }
}

#[test]
fn a_shard_says_it_waits_for_its_barrier_and_never_sends_before_its_start() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("tiny.toml");
    std::fs::write(&scenario, TINY).unwrap();
    let out = tmp.path().join("run");
    let began = SystemTime::now();
    let start_at = kabench::shard::format_time(began + Duration::from_secs(3));
    let o = kabench()
        .args(["run"])
        .arg(&scenario)
        .args(["--target", "sim", "--shard", "0/1", "--start-at", &start_at])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains(&format!("waiting for the start barrier {start_at}: ")),
        "{e}"
    );
    let shard = out.join("shard-0-of-1");
    let meta = read_json(&shard.join("run.json"));
    assert_eq!(meta["status"], "complete");
    // Woke at the barrier, not before it nor long after.
    let offset = meta["shard"]["clock_offset_ms"].as_f64().unwrap();
    assert!((0.0..500.0).contains(&offset), "{offset}");
    let rows = request_rows(&shard);
    assert_eq!(rows.len(), 1);
    // The send was intended after the barrier's unload allowance, well after the start.
    let intended: f64 = rows[0]["intended_ms"].parse().unwrap();
    assert!(intended >= 2000.0, "{intended}");
}

#[test]
fn shards_on_one_machine_say_they_wait_for_their_barrier() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("tiny.toml");
    std::fs::write(&scenario, TINY).unwrap();
    let out = tmp.path().join("run");
    let start_at = kabench::shard::format_time(SystemTime::now() + Duration::from_secs(3));
    let o = kabench()
        .args(["run"])
        .arg(&scenario)
        .args(["--target", "sim", "--shards", "2", "--no-prewarm"])
        .args(["--start-at", &start_at, "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains(&format!(
            "the shards wait for the start barrier {start_at}: "
        )),
        "{e}"
    );
    assert_eq!(read_json(&out.join("run.json"))["status"], "complete");
}

/// A tmpfs of 200 KiB under the test's folder, unmounted on drop.
struct TinyDisk(PathBuf);

impl TinyDisk {
    /// None (with a line saying why) when this process may not mount one.
    fn mount(at: &Path) -> Option<TinyDisk> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!("skipped: mounting a small tmpfs needs root");
            return None;
        }
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=200k", "tmpfs"])
            .arg(at)
            .status()
            .ok()?
            .success();
        if !ok {
            eprintln!("skipped: mount -t tmpfs failed here");
            return None;
        }
        Some(TinyDisk(at.to_path_buf()))
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_run_that_cannot_start_on_a_nearly_full_disk_is_never_left_running() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("tiny.toml");
    std::fs::write(&scenario, TINY).unwrap();
    let Some(disk) = TinyDisk::mount(&tmp.path().join("disk")) else {
        return;
    };
    let out = disk.0.join("run");
    let o = kabench()
        .arg("run")
        .arg(&scenario)
        .args(["--target", "sim", "--out", out.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("256 KiB") && e.contains("could not start"),
        "{e}"
    );
    let run_json = out.join("run.json");
    if run_json.exists() {
        let meta = read_json(&run_json);
        assert_eq!(meta["status"], "failed", "{meta}");
        assert!(
            meta["failure"]
                .as_str()
                .unwrap()
                .contains("could not start"),
            "{meta}"
        );
        assert!(request_rows(&out).is_empty());
    }
    let left: BTreeMap<String, u64> = std::fs::read_dir(&out)
        .map(|d| {
            d.map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect()
        })
        .unwrap_or_default();
    assert!(!left.contains_key(".kabench-reserve"), "{left:?}");
}
