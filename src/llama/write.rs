//! The one way a server config reaches disk: a new file, under a fixed name kabench
//! chooses, directly inside the run folder. Never through a link, never over an
//! existing file, never elsewhere.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Writes `text` to `folder/name`, a file that must not exist yet. `name` is a plain
/// file name of `a-z 0-9 . _ -` (no separators, not starting with `.`).
pub fn write_new_in(folder: &Path, name: &str, text: &str) -> Result<PathBuf, String> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if !plain {
        return Err(format!(
            "config file name '{name}' is not a plain file name"
        ));
    }
    let path = folder.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_new_file_in_the_folder_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_new_in(dir.path(), "cell-0-preset.ini", "x = 1\n").unwrap();
        assert_eq!(p, dir.path().join("cell-0-preset.ini"));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "x = 1\n");
        let e = write_new_in(dir.path(), "cell-0-preset.ini", "y").unwrap_err();
        assert!(e.contains("cannot create"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "x = 1\n");
        for bad in ["", "../x", "a/b", ".hidden", "A.ini", "x\n"] {
            let e = write_new_in(dir.path(), bad, "y").unwrap_err();
            assert!(e.contains("not a plain file name"), "{bad:?}: {e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn never_follows_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("victim");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("swap.yaml")).unwrap();
        assert!(write_new_in(dir.path(), "swap.yaml", "evil").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
