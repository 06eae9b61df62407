//! The real llama.cpp servers in `../shared/` for the tests: their binaries, and the
//! tiny GGUF models the router and llama-swap list (a folder holding nothing else).
//! Where a binary or the models are missing, or `KABENCH_SKIP_REAL_LLAMA=1`, the test
//! skips with one line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{ollama_dir, root};

/// The two tiny models the llama.cpp tests load.
pub const SMALL: &str = "tiny-50m";
/// The larger of the two.
pub const BIG: &str = "tiny-150m";

/// One line on stderr and `None`.
pub fn skip<T>(why: &str) -> Option<T> {
    eprintln!("skipping the real llama.cpp test: {why}");
    None
}

/// `../shared/<rel>` when it exists and real-server tests are wanted.
pub fn shared_bin(rel: &str) -> Option<PathBuf> {
    if std::env::var("KABENCH_SKIP_REAL_LLAMA").is_ok_and(|v| v == "1") {
        return skip("KABENCH_SKIP_REAL_LLAMA=1");
    }
    let path = root().join("../shared").join(rel);
    if path.is_file() {
        Some(path.canonicalize().unwrap_or(path))
    } else {
        skip(&format!("{} is absent", path.display()))
    }
}

/// Writes each of `names` missing from `dir` (`<name>.gguf`) with the Ollama folder's
/// `make_tiny_models.py`.
pub fn write_tiny_models(dir: &Path, names: &[&str]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|m| !dir.join(format!("{m}.gguf")).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let out = Command::new("python3")
        .arg(ollama_dir().join("make_tiny_models.py"))
        .arg(dir)
        .args(&missing)
        .output()
        .map_err(|e| format!("python3 could not run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "make_tiny_models.py failed (pip install gguf numpy?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// `target/llama-kinds/gguf` with [`SMALL`] and [`BIG`] only (the router lists every
/// GGUF of its folder), written once per test process.
pub fn gguf_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = DIR.get_or_init(|| {
        let dir = root().join("target/llama-kinds/gguf");
        write_tiny_models(&dir, &[SMALL, BIG]).map(|()| dir)
    });
    match made {
        Ok(dir) => Some(dir.clone()),
        Err(why) => skip(why),
    }
}
