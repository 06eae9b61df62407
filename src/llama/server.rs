//! A server kabench starts itself, once per swept value: its command template filled
//! (each `{placeholder}` replaced inside its own argument, never through a shell), its
//! stdout and stderr written to a log file the caller names, a bounded wait for
//! `GET /health`, and a stop that sends SIGTERM, then SIGKILL after a grace period. A
//! server still running when its handle is dropped (an error, Ctrl-C) is killed and
//! reaped, so no child is left behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::llama::client::LlamaClient;
use crate::llama::kind::ServerKind;
use crate::units::limits::{excerpt, printable};

/// Why a managed server could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The command template names a placeholder kabench does not fill.
    #[error("unknown placeholder {{{name}}} in the server command: only {known} are filled")]
    Placeholder {
        /// The placeholder's name.
        name: String,
        /// The names that are filled.
        known: String,
    },
    /// The process could not be started.
    #[error("cannot start `{command}`: {why}")]
    Spawn {
        /// The command as run.
        command: String,
        /// What the OS said.
        why: String,
    },
    /// It exited before it was healthy.
    #[error("`{command}` exited ({status}) before answering GET /health; its log {log}: {last}")]
    Exited {
        /// The command as run.
        command: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: String,
        /// The log's last line.
        last: String,
    },
    /// It never answered `GET /health` with 200 in time.
    #[error(
        "`{command}` did not answer GET /health with 200 within {waited:?}; it was stopped; its log {log}: {last}"
    )]
    NotHealthy {
        /// The command as run.
        command: String,
        /// How long kabench waited.
        waited: Duration,
        /// Its log file.
        log: String,
        /// The log's last line.
        last: String,
    },
    /// Ctrl-C came while waiting.
    #[error("interrupted while starting `{0}`")]
    Cancelled(String),
}

/// Fills `template`: every `{name}` of `values` is replaced inside the argument that
/// holds it (an argument stays one argument whatever the value holds); `{{` and `}}`
/// stay literal braces. A placeholder not in `values` is an error.
pub fn fill(template: &[String], values: &[(&str, String)]) -> Result<Vec<String>, ServerError> {
    template
        .iter()
        .map(|arg| {
            let mut out = String::new();
            let mut rest = arg.as_str();
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let after = &rest[open + 1..];
                if let Some(stripped) = after.strip_prefix('{') {
                    out.push('{');
                    rest = stripped;
                    continue;
                }
                let Some(close) = after.find('}') else {
                    out.push('{');
                    rest = after;
                    continue;
                };
                let name = &after[..close];
                match values.iter().find(|(n, _)| *n == name) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        return Err(ServerError::Placeholder {
                            name: name.to_string(),
                            known: values
                                .iter()
                                .map(|(n, _)| format!("{{{n}}}"))
                                .collect::<Vec<_>>()
                                .join(", "),
                        });
                    }
                }
                rest = &after[close + 1..];
            }
            out.push_str(&rest.replace("}}", "}"));
            Ok(out)
        })
        .collect()
}

/// A free loopback port, for `{port}` (bound then released).
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The first of `n` consecutive loopback ports that are all free now, for a server that
/// numbers its upstreams from a start port (llama-swap's `startPort`): a free port
/// alone says nothing of the next, which another process may hold, and an upstream
/// that cannot bind its port exits at once.
pub fn free_ports(n: u16) -> std::io::Result<u16> {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let mut last = None;
    for _ in 0..64 {
        let start = free_port()?;
        if start.checked_add(n).is_some() && (1..n).all(|i| free(start + i)) {
            return Ok(start);
        }
        last = Some(start);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no {n} consecutive free loopback ports found (last tried from {last:?})"),
    ))
}

/// A running server kabench started.
#[derive(Debug)]
pub struct ManagedServer {
    child: Option<Child>,
    command: String,
    log: PathBuf,
    /// Its client.
    pub client: LlamaClient,
}

impl ManagedServer {
    /// Runs `argv` (already filled) with its output to `log`, and waits until
    /// `GET /health` at `base` answers 200, at most `within`.
    pub async fn start(
        argv: &[String],
        log: &Path,
        base: &str,
        kind: ServerKind,
        within: Duration,
        cancel: &CancellationToken,
    ) -> Result<ManagedServer, ServerError> {
        let command = argv
            .iter()
            .map(|a| printable(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let spawn_err = |why: String| ServerError::Spawn {
            command: command.clone(),
            why,
        };
        let Some((program, args)) = argv.split_first() else {
            return Err(spawn_err("the command is empty".into()));
        };
        let out = std::fs::File::create(log)
            .map_err(|e| spawn_err(format!("its log {}: {e}", log.display())))?;
        let err = out.try_clone().map_err(|e| spawn_err(e.to_string()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| spawn_err(e.to_string()))?;
        let client = LlamaClient::new(base, kind).map_err(|e| spawn_err(e.to_string()))?;
        let mut server = ManagedServer {
            child: Some(child),
            command,
            log: log.to_path_buf(),
            client,
        };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = server.exited() {
                return Err(ServerError::Exited {
                    command: server.command.clone(),
                    status,
                    log: server.log.display().to_string(),
                    last: server.last_log_line(),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                server.stop(Duration::from_secs(2)).await;
                return Err(ServerError::NotHealthy {
                    command: server.command.clone(),
                    waited: within,
                    log: server.log.display().to_string(),
                    last: server.last_log_line(),
                });
            }
            if server
                .client
                .healthy(left.min(Duration::from_secs(2)))
                .await
            {
                return Ok(server);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50).min(left)) => {}
                _ = cancel.cancelled() => {
                    server.stop(Duration::from_secs(2)).await;
                    return Err(ServerError::Cancelled(server.command.clone()));
                }
            }
        }
    }

    /// Its process id (the root of the tree whose memory is sampled).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The command as run.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The exit status when it has exited.
    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    fn last_log_line(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        excerpt(
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or(""),
        )
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`; reaps it.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ManagedServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && matches!(child.try_wait(), Ok(None))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_consecutive_and_each_can_be_bound() {
        let start = free_ports(3).unwrap();
        for p in start..start + 3 {
            std::net::TcpListener::bind(("127.0.0.1", p))
                .unwrap_or_else(|e| panic!("port {p} of the block from {start}: {e}"));
        }
        // A block whose first port is held is never handed out.
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let held_port = held.local_addr().unwrap().port();
        for _ in 0..20 {
            let s = free_ports(2).unwrap();
            assert!(
                s != held_port && s + 1 != held_port,
                "{s} overlaps {held_port}"
            );
        }
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn placeholders_fill_inside_their_own_argument() {
        let values = [
            ("port", "8080".to_string()),
            ("model_path", "/m/a b;rm -rf.gguf".to_string()),
        ];
        let out = fill(
            &args(&["srv", "-m", "{model_path}", "--port={port}", "{{x}}"]),
            &values,
        )
        .unwrap();
        assert_eq!(
            out,
            ["srv", "-m", "/m/a b;rm -rf.gguf", "--port=8080", "{x}"]
        );
        let err = fill(&args(&["{ttl}"]), &values).unwrap_err().to_string();
        assert!(err.contains("{ttl}") && err.contains("{port}"), "{err}");
    }

    #[tokio::test]
    async fn a_command_that_exits_is_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("kabench-managed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("s.log");
        let argv = args(&["sh", "-c", "echo bad model >&2; exit 3"]);
        let err = ManagedServer::start(
            &argv,
            &log,
            "http://127.0.0.1:9",
            ServerKind::LlamaServer,
            Duration::from_secs(5),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("sh -c") && err.contains("bad model"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
