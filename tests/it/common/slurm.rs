//! A one-node Slurm cluster for the tests: Debian's `slurm-wlm` and `munge` (Slurm
//! 22.05), a `slurm.conf` written under `target/slurm/<name>/` (the controller and the
//! node on free loopback ports, state and spool in that folder, `SlurmUser=root`, one
//! node of 2 CPUs whose partition oversubscribes), and its own `munged`, `slurmctld`
//! and `slurmd`, stopped when the [`Slurm`] is dropped. `sbatch`, `squeue` and
//! `scancel` reach it through `SLURM_CONF` ([`Slurm::cmd`]).
//!
//! Where it cannot start (no Slurm installed, not root, a daemon that does not come
//! up) the test skips with one line on stderr; with `KABENCH_REQUIRE_SLURM=1` (set by
//! `.ci/run` where it installed Slurm) it fails instead.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{free_port, root};

/// A running one-node cluster; its daemons stop on drop.
pub struct Slurm {
    /// Its folder under `target/slurm/`.
    pub dir: PathBuf,
    /// The `slurm.conf`.
    pub conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
    _turn: MutexGuard<'static, ()>,
}

/// One cluster at a time in this test process (two would share the node's name).
static TURN: Mutex<()> = Mutex::new(());

fn skip<T>(why: &str) -> Option<T> {
    if std::env::var("KABENCH_REQUIRE_SLURM").is_ok_and(|v| v == "1") {
        panic!("Slurm required (KABENCH_REQUIRE_SLURM=1) but {why}");
    }
    eprintln!("skipping the real-Slurm test: {why}");
    None
}

fn found(program: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(program).exists())
}

fn short_hostname() -> Option<String> {
    let out = Command::new("hostname").arg("-s").output().ok()?;
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!name.is_empty()).then_some(name)
}

impl Slurm {
    /// Starts the cluster `name` (its folder `target/slurm/<name>`, emptied first), or
    /// `None` after one line on stderr when it cannot be had here.
    pub fn start(name: &str) -> Option<Slurm> {
        for program in [
            "munged",
            "slurmctld",
            "slurmd",
            "sbatch",
            "squeue",
            "scancel",
        ] {
            if !found(program) {
                return skip(&format!(
                    "{program} is not installed (apt-get install slurm-wlm munge)"
                ));
            }
        }
        // SlurmUser=root and a munged of our own need root.
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return skip("not root (the one-node cluster runs its daemons as root)");
        }
        let Some(host) = short_hostname() else {
            return skip("hostname -s says nothing");
        };
        let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
        let dir = root().join("target/slurm").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["munge", "state", "spool"] {
            std::fs::create_dir_all(dir.join(sub)).ok()?;
        }
        let munge = dir.join("munge");
        set_mode(&munge, 0o700);
        let key = munge.join("munge.key");
        if std::fs::copy("/etc/munge/munge.key", &key).is_err() {
            // No system key: a fresh one of our own (munged reads any 32..1024 bytes).
            let mut bytes = vec![0u8; 128];
            let mut urandom = std::fs::File::open("/dev/urandom").ok()?;
            std::io::Read::read_exact(&mut urandom, &mut bytes).ok()?;
            std::fs::write(&key, &bytes).ok()?;
        }
        set_mode(&key, 0o600);
        let socket = munge.join("munge.socket");
        let mut slurm = Slurm {
            conf: dir.join("slurm.conf"),
            dir: dir.clone(),
            daemons: Vec::new(),
            _turn: turn,
        };
        let munged = Command::new("munged")
            .args(["--foreground", "--force"])
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--key-file={}", key.display()))
            .arg(format!("--pid-file={}", munge.join("munged.pid").display()))
            .arg(format!(
                "--seed-file={}",
                munge.join("munged.seed").display()
            ))
            .arg(format!("--log-file={}", munge.join("munged.log").display()))
            .stdout(Stdio::null())
            .stderr(log_file(&dir, "munged.out")?)
            .spawn();
        match munged {
            Ok(child) => slurm.daemons.push(("munged", child)),
            Err(e) => return skip(&format!("munged did not start: {e}")),
        }
        if !wait_for(Duration::from_secs(10), || socket.exists()) {
            return skip(&format!(
                "munged made no socket in 10 s (see {})",
                dir.join("munged.out").display()
            ));
        }
        let (ctld_port, node_port) = (free_port(), free_port());
        let d = dir.display();
        std::fs::write(
            &slurm.conf,
            format!(
                "ClusterName=kabench
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={node_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SwitchType=switch/none
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=kabench Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
",
                socket = socket.display(),
            ),
        )
        .ok()?;
        for daemon in ["slurmctld", "slurmd"] {
            let child = Command::new(daemon)
                .arg("-D")
                .arg("-f")
                .arg(&slurm.conf)
                .stdout(Stdio::null())
                .stderr(log_file(&dir, &format!("{daemon}.out"))?)
                .spawn();
            match child {
                Ok(child) => slurm.daemons.push((daemon, child)),
                Err(e) => return skip(&format!("{daemon} did not start: {e}")),
            }
        }
        // Up once the node is idle in the partition.
        let up = wait_for(Duration::from_secs(30), || {
            slurm
                .cmd("sinfo")
                .args(["-h", "-o", "%t"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
        });
        if !up {
            return skip(&format!(
                "the one-node cluster did not come up in 30 s (see {}/slurmctld.log and slurmd.log)",
                dir.display()
            ));
        }
        Some(slurm)
    }

    /// A Slurm client command (`sbatch`, `squeue`, `scancel`, `sinfo`, or a `bash`
    /// that calls them) pointed at this cluster.
    pub fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", &self.conf);
        cmd
    }

    /// Whether any job of this cluster is still pending or running.
    pub fn busy(&self) -> bool {
        self.cmd("squeue")
            .args(["-h", "-o", "%i %t"])
            .output()
            .map_or(true, |o| {
                !String::from_utf8_lossy(&o.stdout).trim().is_empty()
            })
    }

    /// Waits until no job is left, at most `limit`; false when some still are.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        wait_for(limit, || !self.busy())
    }

    /// A daemon's log so far (for assertion messages).
    pub fn log(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        // Jobs first (their kabench processes are children of slurmd), then the
        // daemons, the node before the controller, munged last.
        let _ = self.cmd("scancel").args(["--user", "root"]).status();
        while let Some((_, mut child)) = self.daemons.pop() {
            let _ = Command::new("kill")
                .arg(child.id().to_string())
                .stderr(Stdio::null())
                .status();
            let stopped = wait_for(Duration::from_secs(5), || {
                child.try_wait().ok().flatten().is_some()
            });
            if !stopped {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

fn log_file(dir: &Path, name: &str) -> Option<std::fs::File> {
    std::fs::File::create(dir.join(name)).ok()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

/// Polls `done` every 100 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}
