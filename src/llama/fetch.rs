//! The status calls, bounded: a time limit, no redirects, a body cap. `GET /models`
//! on the router, `GET /running` and `GET /v1/models` on llama-swap; each reply read
//! by its module's parser.

use std::time::Duration;

use super::router::{RouterModel, parse_models};
use super::swap::{RunningModel, parse_model_list, parse_running};

/// How long one status call may take.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest status body read (4 MiB: thousands of models).
pub const MAX_STATUS_BYTES: usize = 4 << 20;

/// A client for one server's status endpoints.
#[derive(Debug, Clone)]
pub struct StatusClient {
    http: reqwest::Client,
    base: String,
}

impl StatusClient {
    /// A client for the server at `base` (`http://127.0.0.1:PORT`, no trailing path).
    pub fn new(base: &str) -> Result<StatusClient, String> {
        let base = base.trim_end_matches('/');
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(format!(
                "server address '{base}' must start with http:// or https://"
            ));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(STATUS_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(StatusClient {
            http,
            base: base.to_string(),
        })
    }

    /// The body of `GET path`, if the status is 2xx and it fits [`MAX_STATUS_BYTES`].
    pub async fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        let url = format!("{}{path}", self.base);
        let call = async {
            let mut resp = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            let status = resp.status();
            let mut body = Vec::new();
            while let Some(piece) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
                if body.len() + piece.len() > MAX_STATUS_BYTES {
                    return Err(format!(
                        "GET {url}: reply longer than {MAX_STATUS_BYTES} bytes"
                    ));
                }
                body.extend_from_slice(&piece);
            }
            if !status.is_success() {
                return Err(format!(
                    "GET {url}: HTTP {status}: {}",
                    crate::units::limits::excerpt(&String::from_utf8_lossy(&body))
                ));
            }
            Ok(body)
        };
        tokio::time::timeout(STATUS_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| Err(format!("GET {url}: no reply within {STATUS_TIMEOUT:?}")))
    }

    /// The router's models and their states.
    pub async fn router_models(&self) -> Result<Vec<RouterModel>, String> {
        parse_models(&self.get("/models").await?)
    }

    /// llama-swap's running models.
    pub async fn swap_running(&self) -> Result<Vec<RunningModel>, String> {
        parse_running(&self.get("/running").await?)
    }

    /// llama-swap's configured model ids.
    pub async fn swap_models(&self) -> Result<Vec<String>, String> {
        parse_model_list(&self.get("/v1/models").await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot HTTP server answering `reply` once; its address.
    async fn answer_once(reply: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(&reply).await;
        });
        format!("http://{addr}")
    }

    fn http(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn reads_running_models_through_http() {
        let base = answer_once(http(
            "200 OK",
            r#"{"running":[{"model":"m","state":"ready","ttl":2}]}"#,
        ))
        .await;
        let running = StatusClient::new(&base)
            .unwrap()
            .swap_running()
            .await
            .unwrap();
        assert_eq!(running[0].model, "m");
    }

    #[tokio::test]
    async fn a_redirect_or_error_status_is_an_error() {
        let base = answer_once(http("302 Found\r\nlocation: http://example.invalid/", "")).await;
        let e = StatusClient::new(&base)
            .unwrap()
            .router_models()
            .await
            .unwrap_err();
        assert!(e.contains("302"), "{e}");
        let base = answer_once(http("500 Internal Server Error", "boom")).await;
        let e = StatusClient::new(&base)
            .unwrap()
            .swap_models()
            .await
            .unwrap_err();
        assert!(e.contains("500") && e.contains("boom"), "{e}");
    }

    #[tokio::test]
    async fn an_endless_body_is_cut_at_the_cap() {
        let mut reply = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
        reply.extend(std::iter::repeat_n(b' ', MAX_STATUS_BYTES + 10));
        let base = answer_once(reply).await;
        let e = StatusClient::new(&base)
            .unwrap()
            .router_models()
            .await
            .unwrap_err();
        assert!(e.contains("longer than"), "{e}");
    }

    #[test]
    fn an_address_without_a_scheme_is_refused() {
        assert!(
            StatusClient::new("127.0.0.1:8080")
                .unwrap_err()
                .contains("http://")
        );
    }
}
