//! The client for an Ollama endpoint (live Ollama or `kabench sim`): generate, chat
//! and embed with client-clock timings (read by `stream`), plus ps, tags, show,
//! version, pull and load/unload. Every call to a plain `http://` target but a pull
//! goes over kabench's own HTTP/1 connections on hyper (`conn`: the measured path, kept
//! lean: no pool layer, redirect, decompression or retry); `https://` targets and pulls
//! go through reqwest, built on first use. Every failure is data: an `Exchange` carries a
//! `ClientError` whose `kind()` is the `error_kind` column. Knows nothing of scenarios,
//! records or files.
//! The limits on a call (timeouts, the body limit, a control reply decoded) are in
//! `bounds`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::ollama::api;
use crate::ollama::bounds::{
    CONTROL_TIMEOUT, MAX_BODY_BYTES, body_too_long, bounded, decode_reply, read_capped,
    within_control_timeout,
};
use crate::ollama::conn::Http1Pool;
use crate::ollama::error::{ClientError, error_chain, from_reqwest, location, status_error};
use crate::ollama::host::parse_ollama_host;
use crate::ollama::stream::{Exchange, NdjsonDecoder, read_reply, read_response};
use crate::units::KeepAlive;

/// A client for one Ollama endpoint. Cheap to clone (the connection pools are shared).
#[derive(Debug, Clone)]
pub struct OllamaClient {
    /// reqwest, built on first use (an `https://` target, a pull): building it reads
    /// every system root certificate, which a plain-HTTP target never needs.
    http: Arc<OnceLock<Result<reqwest::Client, ClientError>>>,
    /// The lean path, for an `http://` target (`None` for `https://`).
    lean: Option<Http1Pool>,
    base: String,
    /// The path of `base` (empty, or a prefix such as `/ollama`): the lean path's
    /// requests name the path alone, with the host in their `Host` header.
    base_path: String,
    /// `/api/ps`, parsed once: it is polled several times a second during a run.
    ps_url: Option<reqwest::Url>,
    ps_uri: Option<http::Uri>,
}

impl OllamaClient {
    /// A client for `base`, written in any `OLLAMA_HOST` form (H7). Proxies are never
    /// used (benchmarks talk to the target directly) and Nagle is off.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let url = parse_ollama_host(base)?;
        let http: Arc<OnceLock<_>> = Arc::default();
        if url.scheme() != "http" {
            // Errors in building the TLS client show now, not at the first request.
            http.get_or_init(build_reqwest).clone()?;
        }
        let base = url.as_str().trim_end_matches('/').to_string();
        let base_path = url.path().trim_end_matches('/').to_string();
        let lean = if url.scheme() == "http" {
            let uri: http::Uri = base
                .parse()
                .map_err(|e| ClientError::BadHost(format!("{base}: {e}")))?;
            Some(Http1Pool::new(&uri)?)
        } else {
            None
        };
        let ps = format!("{base}/api/ps");
        Ok(OllamaClient {
            http,
            lean,
            ps_url: reqwest::Url::parse(&ps).ok(),
            ps_uri: format!("{base_path}/api/ps").parse().ok(),
            base,
            base_path,
        })
    }

    /// The base URL requests go to, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The reqwest client, built on first use.
    fn reqwest(&self) -> Result<&reqwest::Client, ClientError> {
        self.http
            .get_or_init(build_reqwest)
            .as_ref()
            .map_err(Clone::clone)
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        if let Some(lean) = &self.lean {
            let uri = self.lean_uri(path)?;
            return self.lean_call(lean, http::Method::GET, &uri, None).await;
        }
        let req = self.reqwest()?.get(self.url(path));
        self.control_call(req).await
    }

    /// `path` as the lean path sends it (the base's path prefix and `path`).
    fn lean_uri(&self, path: &str) -> Result<http::Uri, ClientError> {
        format!("{}{path}", self.base_path)
            .parse()
            .map_err(|e| ClientError::BadHost(format!("{}{path}: {e}", self.base)))
    }

    async fn control_call<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let fut = async {
            let resp = req.send().await.map_err(|e| from_reqwest(e, false))?;
            let status = resp.status().as_u16();
            let location = location(resp.headers());
            let body = read_capped(resp).await?;
            decode_reply(status, location, &body)
        };
        within_control_timeout(fut).await
    }

    /// A control call over the lean path (a JSON `body` makes it a POST), read as
    /// [`Self::control_call`] reads it.
    async fn lean_call<T: DeserializeOwned>(
        &self,
        lean: &Http1Pool,
        method: http::Method,
        uri: &http::Uri,
        json: Option<bytes::Bytes>,
    ) -> Result<T, ClientError> {
        use http_body_util::BodyExt;
        let is_json = json.is_some();
        let body = json.unwrap_or_default();
        let fut = async {
            let (resp, lease) = lean.send(&method, uri, is_json, &body).await?;
            let status = resp.status().as_u16();
            let location = location(resp.headers());
            let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        body_too_long()
                    } else {
                        ClientError::BrokenStream(error_chain(&*e))
                    }
                })?
                .to_bytes();
            lease.release();
            decode_reply(status, location, &body)
        };
        within_control_timeout(fut).await
    }

    /// `GET /api/version`: the server's version string.
    pub async fn version(&self) -> Result<String, ClientError> {
        let v: api::VersionResponse = self.get_json("/api/version").await?;
        Ok(v.version)
    }

    /// [`Self::version`] bounded by `timeout` and ended by `stop`.
    pub async fn version_until(
        &self,
        timeout: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<String, ClientError> {
        bounded("/api/version", timeout, stop, self.version()).await
    }

    /// [`Self::show`] bounded by `timeout` and ended by `stop`.
    pub async fn show_until(
        &self,
        model: &str,
        timeout: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<api::ShowResponse, ClientError> {
        bounded("/api/show", timeout, stop, self.show(model)).await
    }

    /// `GET /api/ps`: resident models.
    pub async fn ps(&self) -> Result<api::PsResponse, ClientError> {
        match (&self.lean, &self.ps_uri, &self.ps_url) {
            (Some(lean), Some(uri), _) => self.lean_call(lean, http::Method::GET, uri, None).await,
            (None, _, Some(url)) => self.control_call(self.reqwest()?.get(url.clone())).await,
            _ => self.get_json("/api/ps").await,
        }
    }

    /// `GET /api/tags`: installed models.
    pub async fn tags(&self) -> Result<api::TagsResponse, ClientError> {
        self.get_json("/api/tags").await
    }

    /// `POST /api/show`: a model's details and capabilities (404 when not installed).
    pub async fn show(&self, model: &str) -> Result<api::ShowResponse, ClientError> {
        let body = api::ShowRequest {
            model: model.to_string(),
            ..Default::default()
        };
        if let Some(lean) = &self.lean {
            let json =
                serde_json::to_vec(&body).map_err(|e| ClientError::BadJson(e.to_string()))?;
            let uri = self.lean_uri("/api/show")?;
            return self
                .lean_call(lean, http::Method::POST, &uri, Some(json.into()))
                .await;
        }
        let req = self.reqwest()?.post(self.url("/api/show")).json(&body);
        self.control_call(req).await
    }

    /// `POST /api/pull`, streaming; `on_progress` sees every progress line. An error
    /// line in the stream (unknown model) is a `StreamError`.
    pub async fn pull(
        &self,
        model: &str,
        on_progress: impl FnMut(&api::PullProgress),
    ) -> Result<(), ClientError> {
        let never = tokio_util::sync::CancellationToken::new();
        self.pull_until(model, CONTROL_TIMEOUT, &never, on_progress)
            .await
    }

    /// [`Self::pull`] that fails when the server sends nothing for `stall` (the reply's
    /// headers, or the next progress line: a large pull takes long, but a live one
    /// keeps reporting) and ends at once when `stop` fires.
    pub async fn pull_until(
        &self,
        model: &str,
        stall: Duration,
        stop: &tokio_util::sync::CancellationToken,
        mut on_progress: impl FnMut(&api::PullProgress),
    ) -> Result<(), ClientError> {
        let body = api::PullRequest {
            model: model.to_string(),
            stream: Some(true),
            insecure: None,
        };
        let what = format!("pulling {model}");
        let send = self
            .reqwest()?
            .post(self.url("/api/pull"))
            .json(&body)
            .send();
        let resp = bounded(&what, stall, stop, async {
            send.await.map_err(|e| from_reqwest(e, false))
        })
        .await?;
        let status = resp.status();
        if !status.is_success() {
            let location = location(resp.headers());
            let body = bounded(&what, stall, stop, async {
                resp.bytes().await.map_err(|e| from_reqwest(e, true))
            })
            .await?;
            return Err(status_error(status.as_u16(), location, &body));
        }
        let mut decoder = NdjsonDecoder::new();
        let mut stream = resp.bytes_stream();
        let mut success = false;
        let mut handle = |p: api::PullProgress| -> Result<(), ClientError> {
            if let Some(e) = &p.error {
                return Err(ClientError::StreamError(e.clone()));
            }
            success |= p.status == "success";
            on_progress(&p);
            Ok(())
        };
        while let Some(item) =
            bounded(&what, stall, stop, async { Ok(stream.next().await) }).await?
        {
            let bytes = item.map_err(|e| from_reqwest(e, true))?;
            for p in decoder.push::<api::PullProgress>(&bytes)? {
                handle(p)?;
            }
        }
        if let Some(p) = decoder.finish::<api::PullProgress>()? {
            handle(p)?;
        }
        if success {
            Ok(())
        } else {
            Err(ClientError::BrokenStream(
                "pull ended without \"success\"".into(),
            ))
        }
    }

    /// Loads `model` with an empty prompt (M7), timed on the client's clock (the reply
    /// has no metrics). `num_ctx` goes in `options` (L5, L7).
    pub async fn load(
        &self,
        model: &str,
        keep_alive: Option<&KeepAlive>,
        num_ctx: Option<u32>,
    ) -> Result<Duration, ClientError> {
        let options = num_ctx.map(|n| {
            let mut m = Map::new();
            m.insert("num_ctx".into(), Value::from(n));
            m
        });
        let req = api::GenerateRequest {
            model: model.to_string(),
            keep_alive: keep_alive.map(KeepAlive::to_json),
            options,
            ..Default::default()
        };
        self.empty_generate(&req, "load").await
    }

    /// Unloads `model` (empty prompt, `keep_alive` 0: E6), timed on the client's clock.
    pub async fn unload(&self, model: &str) -> Result<Duration, ClientError> {
        let req = api::GenerateRequest {
            model: model.to_string(),
            keep_alive: Some(Value::from(0)),
            ..Default::default()
        };
        self.empty_generate(&req, "unload").await
    }

    /// [`Self::load`] bounded by `timeout` and ended by `stop`.
    pub async fn load_until(
        &self,
        model: &str,
        num_ctx: Option<u32>,
        timeout: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<Duration, ClientError> {
        let options = num_ctx.map(|n| {
            let mut m = Map::new();
            m.insert("num_ctx".into(), Value::from(n));
            m
        });
        let req = api::GenerateRequest {
            model: model.to_string(),
            options,
            ..Default::default()
        };
        self.empty_generate_until(&req, "load", Some(timeout), Some(stop))
            .await
    }

    /// [`Self::unload`] bounded by `timeout` and ended by `stop`.
    pub async fn unload_until(
        &self,
        model: &str,
        timeout: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<Duration, ClientError> {
        let req = api::GenerateRequest {
            model: model.to_string(),
            keep_alive: Some(Value::from(0)),
            ..Default::default()
        };
        self.empty_generate_until(&req, "unload", Some(timeout), Some(stop))
            .await
    }

    /// `GET /api/ps` bounded by `timeout` (and the control-call limit) and ended by `stop`.
    pub async fn ps_until(
        &self,
        timeout: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<api::PsResponse, ClientError> {
        bounded("/api/ps", timeout, stop, self.ps()).await
    }

    async fn empty_generate(
        &self,
        req: &api::GenerateRequest,
        expect: &str,
    ) -> Result<Duration, ClientError> {
        self.empty_generate_until(req, expect, None, None).await
    }

    async fn empty_generate_until(
        &self,
        req: &api::GenerateRequest,
        expect: &str,
        timeout: Option<Duration>,
        stop: Option<&tokio_util::sync::CancellationToken>,
    ) -> Result<Duration, ClientError> {
        let ex = self
            .exchange_until("/api/generate", req, timeout, false, stop)
            .await;
        if let Some(e) = ex.error {
            return Err(e);
        }
        if ex.done_reason.as_deref() != Some(expect) {
            return Err(ClientError::BadJson(format!(
                "expected done_reason {expect:?}, got {:?}",
                ex.done_reason
            )));
        }
        Ok(ex.e2e())
    }

    /// `POST /api/generate`, streamed or not (as `req.stream` says), with timings.
    /// `timeout` bounds the whole request, body included.
    pub async fn generate(
        &self,
        req: &api::GenerateRequest,
        timeout: Option<Duration>,
    ) -> Exchange {
        self.exchange("/api/generate", req, timeout, false).await
    }

    /// `POST /api/chat`, streamed or not, with timings.
    pub async fn chat(&self, req: &api::ChatRequest, timeout: Option<Duration>) -> Exchange {
        self.exchange("/api/chat", req, timeout, false).await
    }

    /// `POST /api/embed` with timings; metrics from the reply (M8), no tokens.
    pub async fn embed(&self, req: &api::EmbedRequest, timeout: Option<Duration>) -> Exchange {
        self.exchange("/api/embed", req, timeout, true).await
    }

    async fn exchange<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
        timeout: Option<Duration>,
        embed: bool,
    ) -> Exchange {
        self.exchange_until(path, body, timeout, embed, None).await
    }

    /// `POST path` (`/api/generate`, `/api/chat` or `/api/embed`: `embed` says which
    /// reply to read) bounded by `timeout` and ended by `stop`: a stopped request keeps
    /// what was measured before (sent, status, first byte and token) and fails as
    /// `cancelled`.
    pub async fn exchange_until<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
        timeout: Option<Duration>,
        embed: bool,
        stop: Option<&tokio_util::sync::CancellationToken>,
    ) -> Exchange {
        let prepared = match self.prepare(path, body) {
            Ok(p) => p,
            Err(e) => return Exchange::failed(e),
        };
        self.exchange_prepared(&prepared, timeout, embed, stop)
            .await
    }

    /// A request made once and sent many times (every request of a stream is the same):
    /// its URL parsed and its JSON body encoded ahead of the sends.
    pub fn prepare<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Prepared, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::BadJson(e.to_string()))?;
        let full = self.url(path);
        let url = reqwest::Url::parse(&full)
            .map_err(|e| ClientError::BadHost(format!("{}{path}: {e}", self.base)))?;
        Ok(Prepared {
            uri: self.lean_uri(path).ok(),
            url,
            body: bytes::Bytes::from(body),
        })
    }

    /// [`Self::exchange_until`] for a [`Prepared`] request: nothing is encoded per send.
    pub async fn exchange_prepared(
        &self,
        prepared: &Prepared,
        timeout: Option<Duration>,
        embed: bool,
        stop: Option<&tokio_util::sync::CancellationToken>,
    ) -> Exchange {
        let mut ex = Exchange::start();
        let result = {
            let bounded = async {
                match timeout {
                    Some(limit) => {
                        match tokio::time::timeout(limit, self.drive(prepared, &mut ex, embed))
                            .await
                        {
                            Ok(r) => r,
                            Err(_) => Err(ClientError::Timeout(format!(
                                "no complete reply within {limit:?}"
                            ))),
                        }
                    }
                    None => self.drive(prepared, &mut ex, embed).await,
                }
            };
            match stop {
                Some(stop) => tokio::select! {
                    biased;
                    r = bounded => r,
                    _ = stop.cancelled() => Err(ClientError::Cancelled(
                        "interrupted before the response ended".into(),
                    )),
                },
                None => bounded.await,
            }
        };
        ex.end_at = Instant::now();
        ex.error = result.err();
        ex
    }

    async fn drive(
        &self,
        prepared: &Prepared,
        ex: &mut Exchange,
        embed: bool,
    ) -> Result<(), ClientError> {
        if let (Some(lean), Some(uri)) = (&self.lean, &prepared.uri) {
            ex.sent_at = Instant::now();
            let (resp, lease) = lean
                .send(&http::Method::POST, uri, true, &prepared.body)
                .await?;
            ex.first_byte_at = Some(Instant::now());
            let status = resp.status().as_u16();
            let location = location(resp.headers());
            let body = http_body_util::BodyDataStream::new(resp.into_body())
                .map(|piece| piece.map_err(|e| ClientError::BrokenStream(error_chain(&e))));
            // The body is dropped when read_reply returns. The connection serves the
            // next request once it is idle again: at once when the body's end was read
            // with the final line (the usual case, and an error reply read whole),
            // else it is closed as the unread rest is dropped, and the next request
            // skips it.
            let read = read_reply(status, location, body, ex, embed).await;
            lease.release();
            return read;
        }
        let req = self
            .reqwest()?
            .post(prepared.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(prepared.body.clone());
        ex.sent_at = Instant::now();
        let resp = req.send().await.map_err(|e| from_reqwest(e, false))?;
        read_response(resp, ex, embed).await
    }
}

/// reqwest as kabench uses it: no proxy, Nagle off, no redirect followed (a followed
/// 301/302/303 turns a POST into a GET and drops its body: the target would answer a
/// different request, so a redirect is an error instead).
fn build_reqwest() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ClientError::BadHost(error_chain(&e)))
}

/// A POST made ready once for many sends: its URL and its encoded JSON body (shared,
/// not copied, by every send).
#[derive(Debug, Clone)]
pub struct Prepared {
    url: reqwest::Url,
    /// The same URL for the lean path.
    uri: Option<http::Uri>,
    body: bytes::Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ollama::ErrorKind;
    #[test]
    fn base_url_keeps_the_path_without_trailing_slash() {
        let c = OllamaClient::new("http://127.0.0.1:9/x").unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:9/x");
        assert_eq!(c.url("/api/ps"), "http://127.0.0.1:9/x/api/ps");
        let c = OllamaClient::new("127.0.0.1:9").unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:9");
    }

    #[tokio::test]
    async fn connect_refused_is_a_connect_error() {
        // Bind then drop a listener so the port is (very likely) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = OllamaClient::new(&format!("127.0.0.1:{port}")).unwrap();
        let ex = c
            .generate(
                &api::GenerateRequest {
                    model: "m".into(),
                    prompt: Some("hi".into()),
                    ..Default::default()
                },
                Some(Duration::from_secs(5)),
            )
            .await;
        assert_eq!(ex.error.map(|e| e.kind()), Some(ErrorKind::Connect));
        assert_eq!(c.version().await.unwrap_err().kind(), ErrorKind::Connect);
    }
}
