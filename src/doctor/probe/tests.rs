//! The probes against the simulator with `finish_lag` (a busy host: `/api/ps` shows a
//! request's new expiry a moment after its reply, P4), the model resident beforehand at
//! an expiry a request the doctor did not observe set (as after the num_ctx reloads).

use std::time::Duration;

use serde_json::json;

use super::super::dry::with_keep_alive;
use super::super::forms::{Effect, Native};
use super::super::http::{Req, Server};
use super::Doctor;
use crate::engine::sim;
use crate::engine::sim_settings::{FaultSettings, SimSettings};

/// How long after its reply the simulator's scheduler hears of a request's end.
const LAG: Duration = Duration::from_millis(400);

#[tokio::test]
async fn an_expiry_set_before_the_request_is_never_read_as_its_effect() {
    let settings = SimSettings {
        gpus: Some(0),
        faults: FaultSettings {
            finish_lag: Some(format!("{}ms", LAG.as_millis())),
            ..SimSettings::for_tests().faults
        },
        ..SimSettings::for_tests()
    };
    let sim = sim::spawn(&settings, 1, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut doctor = Doctor {
        server: Server::new(&sim.base_url()).unwrap(),
        checks: Vec::new(),
        default_ka: Some(Effect::Seconds(300.0)),
        loads: Vec::new(),
        cached_before: None,
        allow_evict: false,
    };
    // A request the doctor does not observe leaves the model idle with 30 s to live.
    let body = with_keep_alive(Native::Generate.body("tiny-50m", json!({})), "30s");
    let reply = doctor
        .server
        .send(&Req::post("/api/generate", body))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text);
    tokio::time::sleep(LAG * 2).await;
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
    sim.shutdown().await;
}
