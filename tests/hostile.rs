//! The real binary against small hostile servers on loopback: a server that redirects,
//! one that answers `/api/version` but is not Ollama. Each test starts its own server
//! on 127.0.0.1:0 and stops with the test.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/run")
        .join(name)
        .display()
        .to_string()
}

async fn serve(app: Router) -> SocketAddr {
    serve_at(|_| app).await
}

/// Serves the app `make` builds for the address it gets.
async fn serve_at(make: impl FnOnce(SocketAddr) -> Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = make(addr);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// `kabench run fast-sim.toml --target URL` in a blocking thread: (exit code, stderr).
async fn run_against(addr: SocketAddr) -> (i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kabench"))
            .args(["run", &fixture("fast-sim.toml"), "--quiet", "--no-prewarm"])
            .arg("--target")
            .arg(format!("http://{addr}"))
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_an_error_naming_status_and_location_never_followed() {
    // /api/version answers; every other request is redirected to /moved, which answers
    // 404 to a GET: a client that followed the 302 would report "not installed".
    let addr = serve_at(|addr| {
        let moved = format!("http://{addr}/moved");
        Router::new()
            .route("/api/version", get(|| async { r#"{"version":"0.32.15"}"# }))
            .route(
                "/moved",
                get(|| async { (StatusCode::NOT_FOUND, r#"{"error":"model 'x' not found"}"#) }),
            )
            .fallback(move || async move {
                (StatusCode::FOUND, [(header::LOCATION, moved)], "").into_response()
            })
    })
    .await;
    let (code, stderr) = run_against(addr).await;
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("HTTP 302"), "{stderr}");
    assert!(
        stderr.contains(&format!("redirect to http://{addr}/moved")),
        "{stderr}"
    );
    assert!(!stderr.contains("not installed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_ollama_is_named_so_not_unreachable() {
    for body in [
        "<html><body>router admin</body></html>",
        r#"{"name":"some other api"}"#,
    ] {
        let app = Router::new().fallback(move || async move { body });
        let addr = serve(app).await;
        let (code, stderr) = run_against(addr).await;
        assert_ne!(code, 0, "{stderr}");
        assert!(
            stderr.contains("answered GET /api/version but is not Ollama"),
            "{stderr}"
        );
        assert!(!stderr.contains("cannot reach"), "{stderr}");
    }
}
