//! Polls the upstream's `/api/ps` for the resident-models gauges and `vram.csv`, and
//! its `/api/tags` (every [`TAGS_EVERY`] polls) for the models `/metrics` names. A
//! reply is read up to [`PS_MAX_BYTES`]: a larger one is not read (the gauges read
//! "unavailable", warned once), so a huge `/api/ps` cannot grow the proxy's memory.

use std::sync::Weak;
use std::time::Duration;

use super::metrics::Resident;
use super::{Shared, inspect::Pain, lock};

/// How often `/api/ps` is polled.
pub const PS_INTERVAL: Duration = Duration::from_secs(1);
/// The largest `/api/ps` reply read (4 MiB: thousands of loaded models).
pub const PS_MAX_BYTES: usize = 4 << 20;

/// `/api/tags` is read once every this many `/api/ps` polls (and at start).
pub const TAGS_EVERY: u32 = 5;

/// Reads a reply's body, or `None` when it runs over `limit` bytes or fails.
async fn bounded(mut r: reqwest::Response, limit: usize) -> Result<Vec<u8>, bool> {
    if r.content_length().is_some_and(|n| n > limit as u64) {
        return Err(true);
    }
    let mut out = Vec::new();
    loop {
        match r.chunk().await {
            Ok(Some(c)) => {
                if out.len() + c.len() > limit {
                    return Err(true);
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(_) => return Err(false),
        }
    }
}

/// Polls until the proxy is gone.
pub(super) async fn poll(weak: Weak<Shared>) {
    // `/api/tags` first: until it answers, every model is labelled `other`.
    let mut n = 0u32;
    loop {
        let Some(shared) = weak.upgrade() else { return };
        if n.is_multiple_of(TAGS_EVERY) {
            tags(&shared).await;
        }
        n = n.wrapping_add(1);
        let url = format!("{}/api/ps", shared.upstream);
        let reply = shared
            .http
            .get(&url)
            .header(super::HOPS, &shared.hop_id)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        let body = match reply {
            Ok(r) if r.status().is_success() => {
                tokio::time::timeout(Duration::from_secs(2), bounded(r, PS_MAX_BYTES))
                    .await
                    .unwrap_or(Err(false))
            }
            _ => Err(false),
        };
        match body {
            Ok(bytes) => sample(&shared, &bytes),
            Err(too_large) => {
                let mut r = lock(&shared.recorder);
                r.metrics.resident.clear();
                r.metrics.upstream_up = false;
                if too_large {
                    r.pain(Pain::PsTooLarge);
                }
            }
        }
        drop(shared);
        tokio::time::sleep(PS_INTERVAL).await;
    }
}

fn sample(shared: &Shared, bytes: &[u8]) {
    let Ok(ps) = serde_json::from_slice::<crate::ollama::api::PsResponse>(bytes) else {
        return;
    };
    let t_ms = shared.start.elapsed().as_secs_f64() * 1000.0;
    if let Some(w) = lock(&shared.vram).as_mut() {
        for r in crate::telemetry::ollama_ps::readings(&ps) {
            let _ = w.append(&crate::folder::VramSample {
                t_ms,
                source: "ollama_ps".into(),
                device: r.device,
                model: r.model,
                used_bytes: r.used_bytes,
                total_bytes: r.total_bytes,
                extra: r.extra,
                host: String::new(),
            });
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let resident = ps
        .models
        .iter()
        .map(|m| Resident {
            model: m.name.clone(),
            vram: m.size_vram.min(m.size),
            ram: m.size.saturating_sub(m.size_vram),
            expires_in: time::OffsetDateTime::parse(
                &m.expires_at,
                &time::format_description::well_known::Rfc3339,
            )
            .ok()
            .map(|at| (at - now).as_seconds_f64()),
        })
        .collect();
    lock(&shared.recorder)
        .metrics
        .ps(resident, std::time::Instant::now());
}

/// Reads `/api/tags` into the models `/metrics` names (kept as they were when it fails).
pub(super) async fn tags(shared: &Shared) {
    let url = format!("{}/api/tags", shared.upstream);
    let Ok(r) = shared
        .http
        .get(&url)
        .header(super::HOPS, &shared.hop_id)
        .timeout(Duration::from_secs(2))
        .send()
        .await
    else {
        return;
    };
    if !r.status().is_success() {
        return;
    }
    let Ok(Ok(bytes)) =
        tokio::time::timeout(Duration::from_secs(2), bounded(r, PS_MAX_BYTES)).await
    else {
        return;
    };
    if let Ok(t) = serde_json::from_slice::<crate::ollama::api::TagsResponse>(&bytes) {
        lock(&shared.recorder)
            .metrics
            .set_listed(t.models.iter().map(|m| m.name.as_str()));
    }
}
