//! The Kubernetes manifest of `kabench fleet k8s`: a ConfigMap with the scenario, the
//! Indexed Job of the shards (resource requests and limits, a non-root security
//! context whose `fsGroup` makes the shared volume writable, one try per index so a
//! failed shard neither retries past its barrier nor fails the others), the merge Job
//! (it waits until every shard folder ended or an absolute deadline: the barrier, the
//! run's span and ten minutes), and, with `--new-claim`, the ReadWriteMany claim they
//! share. Both Jobs clean up after `ttlSecondsAfterFinished`.

use std::fmt::Write;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Fleet, Unsafe, base64, check_value, q};
use crate::shard::{self, SHARDS_ENV};
use crate::units::limits::excerpt;

/// The uid and gid the image runs as (the Dockerfile's `kabench` user).
pub const IMAGE_UID: u32 = 10001;

/// Kubernetes specifics.
#[derive(Debug, Clone)]
pub struct K8s {
    /// The kabench image.
    pub image: String,
    /// A ReadWriteMany PersistentVolumeClaim shared by the shards and the merge.
    pub claim: String,
    /// Namespace (none: the current one).
    pub namespace: Option<String>,
    /// Print the claim too, of this size (none: the claim exists).
    pub new_claim: Option<String>,
    /// The new claim's storage class (none: the cluster's default).
    pub storage_class: Option<String>,
    /// Each shard's CPU request and limit (Kubernetes quantities).
    pub cpu: (String, String),
    /// Each shard's memory request and limit.
    pub memory: (String, String),
    /// How long the finished Jobs (and their pods) stay, seconds.
    pub ttl_s: u32,
}

/// Refuses a target every pod would reach on itself: a loopback or unspecified
/// address, or `localhost`. `what` names where it came from.
pub fn check_cluster_target(what: &str, url: &str) -> Result<(), Unsafe> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let local = host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    if local {
        return Err(Unsafe(format!(
            "{what} {:?}: a loopback address; in a cluster every pod would load-test itself: give the Ollama address the pods reach (a Service name such as http://ollama.default.svc:11434, or a host's address)",
            excerpt(url)
        )));
    }
    Ok(())
}

/// Refuses a Kubernetes quantity that is not one (digits, an optional fraction and a
/// suffix such as `m`, `Mi`, `Gi`).
fn check_quantity(what: &str, text: &str) -> Result<(), Unsafe> {
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    let suffixes = [
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    if number.is_empty()
        || number.parse::<f64>().is_err()
        || !suffixes.contains(&suffix)
        || text.len() > 20
    {
        return Err(Unsafe(format!(
            "{what} {:?}: not a Kubernetes quantity; write e.g. 500m or 1 (CPU), 256Mi or 1Gi (memory and storage)",
            excerpt(text)
        )));
    }
    Ok(())
}

/// The Kubernetes manifest: a ConfigMap, the Indexed Job of the shards and the merge
/// Job (and the claim first, with `--new-claim`), as one multi-document YAML.
pub fn k8s(fleet: &Fleet, k: &K8s) -> Result<String, Unsafe> {
    fleet.check()?;
    check_value("--image", &k.image)?;
    check_value("--claim", &k.claim)?;
    if let Some(n) = &k.namespace {
        check_value("--namespace", n)?;
    }
    if let Some(c) = &k.storage_class {
        check_value("--storage-class", c)?;
    }
    for t in &fleet.targets {
        check_cluster_target("--target", t)?;
    }
    for (what, v) in [
        ("--cpu-request", &k.cpu.0),
        ("--cpu-limit", &k.cpu.1),
        ("--memory-request", &k.memory.0),
        ("--memory-limit", &k.memory.1),
    ] {
        check_quantity(what, v)?;
    }
    if let Some(size) = &k.new_claim {
        check_quantity("--new-claim", size)?;
    }
    let name = &fleet.name;
    let runs = format!("/runs/{name}");
    let ns = k
        .namespace
        .as_ref()
        .map_or(String::new(), |n| format!("\n  namespace: {}", q(n)));
    let labels = format!(
        "\n  labels:\n    app.kubernetes.io/name: kabench\n    kabench/run: {}",
        q(name)
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# kabench: {} shards of one global schedule, in step from {} (apply it before then),\n\
         # then the merge. The shards write {runs}/shard-<i>-of-{} on the claim {};\n\
         # the merged run folder is {runs} (copy it out and open index.html).\n\
         # A shard that fails, or starts more than {} after the barrier, is merged as missing.",
        fleet.shards,
        shard::format_time(fleet.start_at),
        fleet.shards,
        q(&k.claim),
        humantime::format_duration(fleet.late_tolerance),
    );
    if let Some(size) = &k.new_claim {
        let class = k
            .storage_class
            .as_ref()
            .map_or(String::new(), |c| format!("\n  storageClassName: {}", q(c)));
        let _ = writeln!(
            out,
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {}{ns}{labels}\nspec:\n  accessModes: [\"ReadWriteMany\"]{class}\n  resources:\n    requests:\n      storage: {}\n---",
            q(&k.claim),
            q(size),
        );
    }
    // The scenario travels base64 (binaryData): the pods read it back byte for byte,
    // and no character of it can end the YAML around it.
    let _ = writeln!(
        out,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}{ns}{labels}\nbinaryData:\n  scenario.toml: {}",
        q(&format!("{name}-scenario")),
        q(&base64(fleet.scenario_text.as_bytes()))
    );
    let args = fleet.run_args("/scenario/scenario.toml", &runs, q);
    let security = format!(
        "      securityContext:
        runAsNonRoot: true
        runAsUser: {IMAGE_UID}
        runAsGroup: {IMAGE_UID}
        # Makes the claim's files group-writable by the image's user.
        fsGroup: {IMAGE_UID}
        seccompProfile:
          type: RuntimeDefault
"
    );
    let container_security = "          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: [\"ALL\"]
";
    let resources = format!(
        "          resources:
            requests:
              cpu: {}
              memory: {}
            limits:
              cpu: {}
              memory: {}
",
        q(&k.cpu.0),
        q(&k.memory.0),
        q(&k.cpu.1),
        q(&k.memory.1)
    );
    let _ = writeln!(out, "---");
    let _ = write!(
        out,
        "apiVersion: batch/v1
kind: Job
metadata:
  name: {job}{ns}{labels}
spec:
  completionMode: Indexed
  completions: {n}
  parallelism: {n}
  # One try per index: a shard retried later would miss the start barrier, and a
  # failed index never stops the others; the merge counts it missing.
  backoffLimitPerIndex: 0
  maxFailedIndexes: {n}
  ttlSecondsAfterFinished: {ttl}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: kabench
        kabench/run: {name_q}
    spec:
      restartPolicy: Never
{security}      containers:
        - name: shard
          image: {image}
          command: [\"kabench\"]
          args: [{args}]
          env:
            - name: {shards_env}
              value: {n_q}
{resources}{container_security}          volumeMounts:
            - name: runs
              mountPath: /runs
            - name: scenario
              mountPath: /scenario
              readOnly: true
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: runs
          persistentVolumeClaim:
            claimName: {claim}
        - name: scenario
          configMap:
            name: {cm}
        - name: tmp
          emptyDir: {{}}
",
        job = q(&format!("{name}-shards")),
        name_q = q(name),
        n = fleet.shards,
        n_q = q(&fleet.shards.to_string()),
        ttl = k.ttl_s,
        image = q(&k.image),
        args = args.join(", "),
        shards_env = SHARDS_ENV,
        claim = q(&k.claim),
        cm = q(&format!("{name}-scenario")),
    );
    // The merge waits until every shard folder's run.json has ended, or until an
    // absolute deadline (the barrier, the run's span and ten minutes: not counted from
    // the merge pod's own start), then merges what is there.
    let deadline = fleet
        .start_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + fleet.run_span.as_secs()
        + 600;
    let script = format!(
        "deadline={deadline}; \
         while [ \"$(grep -l '\"ended_at\": \"' {glob}/run.json 2>/dev/null | wc -l)\" -lt {n} ] && [ \"$(date +%s)\" -lt \"$deadline\" ]; do sleep 10; done; \
         exec kabench merge {runs} {glob_all}",
        glob = fleet.shard_glob(&runs),
        n = fleet.shards,
        glob_all = (0..fleet.shards)
            .map(|i| format!(
                "{runs}/{}",
                shard::Shard {
                    index: i,
                    count: fleet.shards
                }
                .dir_name()
            ))
            .collect::<Vec<_>>()
            .join(" "),
    );
    // The merge pod ends at the deadline and a short merge at the latest.
    let active = deadline
        .saturating_sub(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
        .max(60)
        + 1800;
    let _ = writeln!(out, "---");
    let _ = write!(
        out,
        "apiVersion: batch/v1
kind: Job
metadata:
  name: {job}{ns}{labels}
spec:
  backoffLimit: 0
  activeDeadlineSeconds: {active}
  ttlSecondsAfterFinished: {ttl}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: kabench
        kabench/run: {name_q}
    spec:
      restartPolicy: Never
{security}      containers:
        - name: merge
          image: {image}
          command: [\"/bin/sh\", \"-c\"]
          args: [{script}]
{resources}{container_security}          volumeMounts:
            - name: runs
              mountPath: /runs
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: runs
          persistentVolumeClaim:
            claimName: {claim}
        - name: tmp
          emptyDir: {{}}
",
        job = q(&format!("{name}-merge")),
        name_q = q(name),
        ttl = k.ttl_s,
        image = q(&k.image),
        script = q(&script),
        claim = q(&k.claim),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_refused_and_others_kept() {
        for bad in [
            "127.0.0.1:11434",
            "http://localhost:11434",
            "http://[::1]:11434/",
            "0.0.0.0:11434",
            "http://127.1.2.3",
            "LOCALHOST.",
        ] {
            let e = check_cluster_target("--target", bad).unwrap_err().0;
            assert!(e.starts_with("--target ") && e.contains("loopback"), "{e}");
        }
        for ok in [
            "http://ollama.default.svc:11434",
            "10.0.0.2:11434",
            "http://[fd00::1]:11434",
        ] {
            assert!(check_cluster_target("--target", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn quantities_are_checked() {
        for ok in ["500m", "1", "0.5", "256Mi", "1Gi", "2G"] {
            assert!(check_quantity("--cpu-request", ok).is_ok(), "{ok}");
        }
        for bad in ["", "lots", "1 Gi", "1Gi\"", "-1", "m"] {
            assert!(check_quantity("--memory-limit", bad).is_err(), "{bad}");
        }
    }
}
