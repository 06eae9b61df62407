//! Putting back what a doctor run found: probe models that were not resident are
//! unloaded, models that were are loaded again with their context and remaining
//! keep-alive.

use serde_json::json;

use super::forms::Effect;
use super::http::{Req, Resident, Server};
use crate::ollama::name;

/// Puts back what `before` showed: probe models that were not resident are unloaded,
/// models that were are loaded again with their context and remaining keep-alive
/// (an expiry within a second is left to lapse). Returns one line per action.
pub(super) async fn restore(
    server: &mut Server,
    before: &[Resident],
    model: &str,
    embed: Option<&str>,
) -> Vec<String> {
    let mut lines = Vec::new();
    let was = |m: &str| before.iter().any(|b| name::same_model(&b.name, m));
    for probe in std::iter::once(model).chain(embed) {
        if was(probe) {
            continue;
        }
        match server.find(probe).await {
            Ok(Some(_)) => match server.unload(probe).await {
                Ok(()) => lines.push(format!("unloaded {probe} (not loaded before)")),
                Err(e) => lines.push(format!("could not unload {probe}: {e:#}")),
            },
            Ok(None) => {}
            Err(e) => lines.push(format!("could not read /api/ps: {e:#}")),
        }
    }
    let now_resident = server.ps().await.unwrap_or_default();
    for b in before {
        let now = now_resident
            .iter()
            .find(|m| name::same_model(&m.name, &b.name));
        let untouched = now.is_some_and(|n| {
            n.context_length == b.context_length
                && (n.expires_at - b.expires_at).as_seconds_f64().abs() < 1.0
        });
        if untouched {
            continue;
        }
        let server_now = server.now();
        let keep = if b.forever(server_now) {
            Effect::Forever
        } else {
            let left = (b.expires_at - server_now).as_seconds_f64();
            if left < 1.0 {
                lines.push(format!(
                    "{}: its keep-alive ran out during the run; left unloaded",
                    b.name
                ));
                continue;
            }
            Effect::Seconds(left)
        };
        let mut body = json!({"model": b.name, "keep_alive": keep.to_json()});
        if let Some(c) = b.context_length {
            body["options"] = json!({"num_ctx": c});
        }
        let mut reply = server.send(&Req::post("/api/generate", body.clone())).await;
        if reply.as_ref().is_ok_and(|r| r.status == 400) {
            // An embedding model: an empty input only loads (M8).
            reply = server.send(&Req::post("/api/embed", body)).await;
        }
        match reply {
            Ok(r) if r.status == 200 => lines.push(format!(
                "{}: loaded again (num_ctx {}, keep_alive {})",
                b.name,
                b.context_length.map_or("default".into(), |c| c.to_string()),
                keep.describe()
            )),
            Ok(r) => lines.push(format!(
                "{}: could not load it again: HTTP {}: {}",
                b.name,
                r.status,
                r.error_text()
            )),
            Err(e) => lines.push(format!("{}: could not load it again: {e:#}", b.name)),
        }
    }
    lines
}
