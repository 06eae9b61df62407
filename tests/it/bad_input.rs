//! Bad input through the real binary: each exits 2 with a message that says what to
//! do, before any request is sent.

use std::path::Path;
use std::process::Command;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/run")
        .join(name)
        .display()
        .to_string()
}

fn kabench(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kabench"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_out_folder_that_cannot_be_written_is_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    // Under a plain file: no one can create it, root included.
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let out = file.join("run");
    let (code, stderr) = kabench(&[
        "run",
        &fixture("fast-sim.toml"),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot write the run folder")
            && stderr.contains("choose an --out folder you can write to"),
        "{stderr}"
    );
    // A read-only folder (when this user is not exempt from permissions).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = tmp.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(ro.join("probe"), "x").is_err() {
            let out = ro.join("run");
            let (code, stderr) = kabench(&[
                "run",
                &fixture("fast-sim.toml"),
                "--quiet",
                "--out",
                out.to_str().unwrap(),
            ]);
            assert_eq!(code, 2, "{stderr}");
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn a_target_address_the_client_cannot_use_is_bad_input() {
    let (code, stderr) = kabench(&[
        "run",
        &fixture("fast-sim.toml"),
        "--quiet",
        "--target",
        "ftp://[::1",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("write an Ollama address"), "{stderr}");
}

#[test]
fn swarm_with_zero_users_is_bad_input() {
    let (code, stderr) = kabench(&[
        "swarm",
        &fixture("fast-sim.toml"),
        "--quiet",
        "--users",
        "0",
        "--run-time",
        "1s",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("at least 1 user"), "{stderr}");
}

#[test]
fn an_out_folder_holding_other_files_is_refused_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("site");
    std::fs::create_dir_all(out.join("charts")).unwrap();
    std::fs::write(out.join("index.html"), "my page").unwrap();
    std::fs::write(out.join("charts/logo.svg"), "<svg/>").unwrap();
    let (code, stderr) = kabench(&[
        "run",
        &fixture("fast-sim.toml"),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("is not empty and is not a kabench run folder"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("index.html")).unwrap(),
        "my page"
    );
    assert!(out.join("charts/logo.svg").exists());
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2);
}
