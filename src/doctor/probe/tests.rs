//! The probes against a server whose `/api/ps` shows a request's new expiry a moment
//! after its reply (a busy host, P4), with the model resident beforehand at an expiry
//! the doctor never read (as after the num_ctx reloads).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::super::forms::{Effect, Native};
use super::super::http::Server;
use super::Doctor;

/// How long after its reply the stub's `/api/ps` still shows the old expiry.
const LAG: Duration = Duration::from_millis(400);

/// One resident model: its keep-alive, its expiry, and the moment the server processes
/// the last request's end, with the keep-alive it then sets (zero: it unloads then).
#[derive(Default)]
struct Stub {
    keep_alive: Option<time::Duration>,
    expires_at: Option<OffsetDateTime>,
    pending: Option<(OffsetDateTime, time::Duration)>,
}

type Shared = Arc<Mutex<Stub>>;

/// `keep_alive` as Ollama reads it: a number of seconds or a duration string; the
/// string "-1" is refused (KA2).
fn keep_alive(v: &Value) -> Result<Option<time::Duration>, String> {
    let secs = match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) if s == "0" => 0.0,
        Value::String(s) => match s.strip_suffix('s').map(str::parse::<f64>) {
            Some(Ok(n)) => n,
            _ => return Err(format!("time: missing unit in duration \"{s}\"")),
        },
        _ => return Ok(None),
    };
    Ok(Some(if secs < 0.0 {
        time::Duration::days(365 * 292)
    } else {
        time::Duration::seconds_f64(secs)
    }))
}

async fn generate(State(st): State<Shared>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let asked = match body.get("keep_alive").map(keep_alive) {
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, Json(json!({"error": e}))),
        Some(Ok(k)) => k,
        None => None,
    };
    let now = OffsetDateTime::now_utc();
    let mut s = st.lock().unwrap();
    if let Some(k) = asked {
        s.keep_alive = Some(k);
    }
    let k = s.keep_alive.unwrap_or(time::Duration::minutes(5));
    s.pending = Some((now + LAG, k));
    let reply = json!({"model": "tiny-50m", "created_at": now.format(&Rfc3339).unwrap(),
        "response": "", "done": true, "load_duration": 1000});
    (StatusCode::OK, Json(reply))
}

async fn ps(State(st): State<Shared>) -> Json<Value> {
    let now = OffsetDateTime::now_utc();
    let mut s = st.lock().unwrap();
    if let Some((from, k)) = s.pending
        && now >= from
    {
        s.expires_at = (!k.is_zero()).then_some(from + k);
        s.pending = None;
    }
    let models: Vec<Value> = s
        .expires_at
        .iter()
        .map(|e| {
            json!({"name": "tiny-50m:latest", "model": "tiny-50m:latest", "size": 1_000_000,
                "size_vram": 0, "context_length": 4096, "expires_at": e.format(&Rfc3339).unwrap()})
        })
        .collect();
    Json(json!({ "models": models }))
}

#[tokio::test]
async fn an_expiry_set_before_the_request_is_never_read_as_its_effect() {
    let stub: Shared = Arc::new(Mutex::new(Stub {
        keep_alive: Some(time::Duration::seconds(30)),
        expires_at: Some(OffsetDateTime::now_utc() + time::Duration::seconds(30)),
        pending: None,
    }));
    let app = axum::Router::new()
        .route("/api/generate", post(generate))
        .route("/api/ps", get(ps))
        .with_state(stub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut doctor = Doctor {
        server: Server::new(&url).unwrap(),
        checks: Vec::new(),
        default_ka: Some(Effect::Seconds(300.0)),
        loads: Vec::new(),
        cached_before: None,
        allow_evict: false,
    };
    doctor.forms(Native::Generate, "tiny-50m").await.unwrap();
    let row = |id: &str| {
        let c = doctor.checks.iter().find(|c| c.id == id).unwrap();
        (c.verdict, c.evidence.clone())
    };
    // The first form the server takes asks 7 s; for 400 ms /api/ps still shows the
    // 30 s expiry set before it was sent.
    let (verdict, evidence) = row("generate.number");
    assert_eq!(format!("{verdict:?}"), "Honoured", "{evidence}");
    assert!(evidence.starts_with("expires 7."), "{evidence}");
    let (verdict, evidence) = row("generate.duration");
    assert_eq!(format!("{verdict:?}"), "Honoured", "{evidence}");
    assert!(evidence.starts_with("expires 11."), "{evidence}");
    let (_, evidence) = row("generate.zero");
    assert_eq!(evidence, "left /api/ps at once");
}
