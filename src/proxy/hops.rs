//! Forwarding loops: an upstream that is the proxy's own address is refused at start
//! ([`check_not_self`]), and each forwarded request carries [`HOPS`], the ids of the
//! kabench proxies it passed, so one that comes back is refused with a 508 however the
//! loop is made (two proxies pointing at each other, a balancer in between).

use std::net::SocketAddr;
use std::time::Duration;

/// The header each forwarded request carries, listing the ids of the kabench proxies
/// it passed: one that comes back holding this proxy's id is a loop.
pub const HOPS: &str = "x-kabench-proxy-hops";
/// The most proxies a request may pass (a longer chain is taken for a loop).
pub const MAX_HOPS: usize = 16;

/// An id for this proxy process and start: its pid and the start time's nanoseconds.
pub(super) fn hop_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// The proxy's upstream is the proxy itself: every request would come back to it.
#[derive(Debug)]
pub struct SelfUpstream(pub String);

impl std::fmt::Display for SelfUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SelfUpstream {}

/// Whether `ip` is one of this host's addresses (it can be bound).
fn is_local(ip: std::net::IpAddr) -> bool {
    ip.is_loopback() || std::net::TcpListener::bind((ip, 0)).is_ok()
}

/// Refuses an `upstream` that resolves to `listen` (its port on the same address, on
/// any local address when the proxy listens on all of them). A name that does not
/// resolve passes: its requests get 502s, logged.
pub(super) async fn check_not_self(listen: SocketAddr, upstream: &str) -> Result<(), SelfUpstream> {
    let Ok(url) = reqwest::Url::parse(upstream) else {
        return Ok(());
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Ok(());
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let Ok(Ok(addrs)) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    else {
        return Ok(());
    };
    for a in addrs {
        let same = a.port() == listen.port()
            && (a.ip() == listen.ip()
                || (listen.ip().is_unspecified() && is_local(a.ip()))
                || (a.ip().is_unspecified()
                    && (listen.ip().is_loopback() || listen.ip().is_unspecified())));
        if same {
            return Err(SelfUpstream(format!(
                "the upstream {upstream} is this proxy's own address {listen} ({a}): it would forward every request to itself; point --upstream (or OLLAMA_HOST, when --upstream is not given) at the Ollama server, and the app's OLLAMA_HOST at the proxy"
            )));
        }
    }
    Ok(())
}
