//! `OLLAMA_HOST` read exactly as Ollama reads it (H7), into the base URL the client
//! dials. Knows nothing of requests.

use crate::ollama::error::ClientError;

/// Reads an `OLLAMA_HOST` value exactly as Ollama does (H7): spaces and quotes trimmed;
/// no scheme → `http` with port 11434; `http://h` → 80, `https://h` → 443; a path is
/// kept; an unparsable port falls back to the scheme's default; `0.0.0.0` and `::`
/// (listen-on-all addresses) are dialled on loopback. Empty means `127.0.0.1:11434`.
pub fn parse_ollama_host(raw: &str) -> Result<reqwest::Url, ClientError> {
    let s = raw.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    let (scheme, hostport, default_port) = match s.split_once("://") {
        None => ("http", s, "11434"),
        Some(("http", rest)) => ("http", rest, "80"),
        Some(("https", rest)) => ("https", rest, "443"),
        Some((other, _)) => {
            return Err(ClientError::BadHost(format!(
                "{raw:?}: scheme {other:?} is not http or https"
            )));
        }
    };
    let (hostport, path) = match hostport.split_once('/') {
        Some((hp, p)) => (hp, p),
        None => (hostport, ""),
    };
    let (mut host, mut port) = match split_host_port(hostport) {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => {
            let bare = hostport.trim_start_matches('[').trim_end_matches(']');
            let host = if bare.parse::<std::net::IpAddr>().is_ok() {
                bare.to_string()
            } else if hostport.is_empty() {
                "127.0.0.1".to_string()
            } else {
                hostport.to_string()
            };
            (host, default_port.to_string())
        }
    };
    if host.is_empty() {
        // Go's SplitHostPort accepts ":11434"; Ollama then dials the local host.
        host = "127.0.0.1".to_string();
    }
    if port.parse::<u16>().is_err() {
        port = default_port.to_string();
    }
    host = match host.as_str() {
        "0.0.0.0" => "127.0.0.1".to_string(),
        "::" | "::0" => "::1".to_string(),
        _ => host,
    };
    let host_part = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let text = if path.is_empty() {
        format!("{scheme}://{host_part}:{port}")
    } else {
        format!("{scheme}://{host_part}:{port}/{path}")
    };
    reqwest::Url::parse(&text).map_err(|e| ClientError::BadHost(format!("{raw:?}: {e}")))
}

/// Go's `net.SplitHostPort`: `host:port` or `[v6]:port`; `None` without a port.
fn split_host_port(hostport: &str) -> Option<(&str, &str)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = hostport.rsplit_once(':')?;
    if host.contains(':') {
        // A bare IPv6 address without brackets has no port.
        return None;
    }
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ollama::ErrorKind;
    fn host(raw: &str) -> String {
        parse_ollama_host(raw).unwrap().to_string()
    }

    #[test]
    fn h7_host_forms() {
        assert_eq!(host(""), "http://127.0.0.1:11434/");
        assert_eq!(host("  \"1.2.3.4\" "), "http://1.2.3.4:11434/");
        assert_eq!(host("example.com"), "http://example.com:11434/");
        assert_eq!(host("example.com:8080"), "http://example.com:8080/");
        assert_eq!(host("http://example.com"), "http://example.com/");
        assert_eq!(host("https://example.com"), "https://example.com/");
        assert_eq!(host("http://example.com:1234"), "http://example.com:1234/");
        assert_eq!(host("example.com:abc"), "http://example.com:11434/");
        assert_eq!(host("example.com:99999"), "http://example.com:11434/");
        assert_eq!(host("http://h:abc"), "http://h/");
        assert_eq!(
            host("example.com/ollama"),
            "http://example.com:11434/ollama"
        );
        assert_eq!(host("0.0.0.0"), "http://127.0.0.1:11434/");
        assert_eq!(host("0.0.0.0:5000"), "http://127.0.0.1:5000/");
        assert_eq!(host("::"), "http://[::1]:11434/");
        assert_eq!(host("[::]:5000"), "http://[::1]:5000/");
        assert_eq!(host("[::1]:5000"), "http://[::1]:5000/");
        assert_eq!(host(":5000"), "http://127.0.0.1:5000/");
        assert_eq!(host("'localhost:1'"), "http://localhost:1/");
        assert_eq!(
            parse_ollama_host("ftp://x").unwrap_err().kind(),
            ErrorKind::BadHost
        );
    }
}
