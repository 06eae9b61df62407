//! HTTP/1 connections to one plain-`http://` host, kept open between requests, on
//! hyper's connection API: a request takes an idle connection (or opens one) and gives
//! it back once it has read its response ([`Lease::release`]); a connection whose
//! response body was dropped before its end closes, and is skipped. A request that could
//! not be written because its idle connection had just closed is sent again on another
//! one; nothing else is retried. This is the measured path of `OllamaClient`: no pool
//! layer, no per-request task of its own, no host lookup in a map.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use crate::ollama::error::{ClientError, error_chain};

type Sender = SendRequest<Full<Bytes>>;

/// The open connections to one host.
#[derive(Debug, Clone)]
pub struct Http1Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// What `TcpStream::connect` is given: `host:port`.
    address: String,
    /// The `Host` header of every request.
    host: HeaderValue,
    /// Connections given back, newest last.
    idle: Mutex<Vec<Sender>>,
}

/// A connection lent to one request until its response has been read.
pub struct Lease {
    sender: Option<Sender>,
    pool: Arc<Inner>,
}

impl Lease {
    /// Gives the connection back for the next request, once the response body has
    /// been read or dropped: a connection still busy with it is made ready (or found
    /// closed) before its next use. A lease dropped without it closes its connection.
    pub fn release(mut self) {
        if let Some(sender) = self.sender.take()
            && !sender.is_closed()
        {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(sender);
        }
    }
}

impl Http1Pool {
    /// Connections to the host and port of `base` (an `http://` URI).
    pub fn new(base: &Uri) -> Result<Http1Pool, ClientError> {
        let authority = base
            .authority()
            .ok_or_else(|| ClientError::BadHost(format!("{base}: no host")))?;
        let port = authority.port_u16().unwrap_or(80);
        // `[::1]` is written with brackets in a URI and in `host:port`.
        let address = format!("{}:{port}", authority.host());
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| ClientError::BadHost(format!("{base}: {e}")))?;
        Ok(Http1Pool {
            inner: Arc::new(Inner {
                address,
                host,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Sends `method path` with `body` (JSON when `json`), on an idle connection or a
    /// new one; returns the response head and the connection's lease.
    pub async fn send(
        &self,
        method: &Method,
        path: &Uri,
        json: bool,
        body: &Bytes,
    ) -> Result<(Response<Incoming>, Lease), ClientError> {
        let request = || {
            let mut req = Request::new(Full::new(body.clone()));
            *req.method_mut() = method.clone();
            *req.uri_mut() = path.clone();
            let headers = req.headers_mut();
            headers.insert(HOST, self.inner.host.clone());
            if json {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            req
        };
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request()).await {
                Ok(resp) => return Ok((resp, self.lease(sender))),
                // Not written: the connection closed while idle. Another one is tried.
                Err(e) if e.message().is_some() => continue,
                Err(e) => return Err(broken(e.error())),
            }
        }
        let mut sender = self.connect().await?;
        let resp = sender
            .send_request(request())
            .await
            .map_err(|e| broken(&e))?;
        Ok((resp, self.lease(sender)))
    }

    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn lease(&self, sender: Sender) -> Lease {
        Lease {
            sender: Some(sender),
            pool: self.inner.clone(),
        }
    }

    /// Opens a connection (Nagle off); its I/O runs as a task of its own.
    async fn connect(&self) -> Result<Sender, ClientError> {
        let stream = tokio::net::TcpStream::connect(&self.inner.address)
            .await
            .map_err(|e| {
                ClientError::Connect(format!("tcp connect error: {}: {e}", self.inner.address))
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Connect(error_chain(&e)))?;
        tokio::spawn(async move {
            // Its end (closed by either side, or failed) shows in the request on it.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// A failure after the connection was open.
fn broken(e: &hyper::Error) -> ClientError {
    ClientError::BrokenStream(error_chain(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback server answering each request head it reads with `200 ok`; it closes
    /// each connection after `per_connection` answers. Returns its base URI and the
    /// request heads it read, one connection per entry.
    async fn server(per_connection: usize) -> (Uri, Arc<Mutex<Vec<Vec<String>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base: Uri = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let conn = {
                    let mut all = log.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut answered = 0;
                    let mut piece = [0u8; 4096];
                    while answered < per_connection {
                        let Ok(n) = socket.read(&mut piece).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&piece[..n]);
                        // The bodies sent here are empty: a head ends a request.
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_string();
                            buf.drain(..end + 4);
                            log.lock().unwrap()[conn].push(head);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            socket.write_all(reply).await.unwrap();
                            answered += 1;
                        }
                    }
                });
            }
        });
        (base, seen)
    }

    async fn get(pool: &Http1Pool, path: &str) -> Result<String, ClientError> {
        let (resp, lease) = pool
            .send(&Method::GET, &path.parse().unwrap(), false, &Bytes::new())
            .await?;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        lease.release();
        Ok(String::from_utf8_lossy(&body).to_string())
    }

    #[tokio::test]
    async fn a_connection_serves_request_after_request_with_the_host_named() {
        let (base, seen) = server(usize::MAX).await;
        let pool = Http1Pool::new(&base).unwrap();
        for _ in 0..3 {
            assert_eq!(get(&pool, "/api/ps").await.unwrap(), "ok");
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "one connection for three requests: {seen:?}");
        let head = seen[0][0].to_ascii_lowercase();
        assert!(head.starts_with("get /api/ps http/1.1"), "{head}");
        let host = base.authority().unwrap().as_str().to_ascii_lowercase();
        assert!(head.contains(&format!("host: {host}")), "{head}");
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_replaced() {
        let (base, seen) = server(1).await;
        let pool = Http1Pool::new(&base).unwrap();
        for _ in 0..3 {
            assert_eq!(get(&pool, "/api/version").await.unwrap(), "ok");
            // The server's close reaches the client before the next request.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(seen.lock().unwrap().len(), 3, "one connection per answer");
    }

    #[tokio::test]
    async fn a_lease_not_given_back_closes_its_connection() {
        let (base, seen) = server(usize::MAX).await;
        let pool = Http1Pool::new(&base).unwrap();
        let (_resp, lease) = pool
            .send(&Method::GET, &"/a".parse().unwrap(), false, &Bytes::new())
            .await
            .unwrap();
        drop(lease);
        assert_eq!(get(&pool, "/b").await.unwrap(), "ok");
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let pool = Http1Pool::new(&format!("http://127.0.0.1:{port}").parse().unwrap()).unwrap();
        let err = get(&pool, "/").await.unwrap_err();
        assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
    }
}
