//! The admin listener (docs/OPERATIONS.md): `GET /metrics` (Prometheus text
//! format), `GET /healthz` (200 while the process runs), `GET /readyz`
//! (200 while the relay listens with a valid config; 503 before that and
//! while it drains). Read-only: nothing here can change the relay.
//!
//! HTTP is hyper's (HTTP/1.1, header read timeout), not a parser of ours.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::relay::Metrics;

/// A scraper or probe that does not finish its request in this time is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections served at once, so a flood of them cannot take memory
/// from the relay; a connection beyond it ends the oldest.
const MAX_CONNECTIONS: usize = 64;

/// Where the relay is in its life, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Readiness {
    Starting = 0,
    Ready = 1,
    Draining = 2,
}

/// What the admin endpoints read.
#[derive(Debug)]
pub struct AdminState {
    metrics: Arc<Metrics>,
    readiness: AtomicU8,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            readiness: AtomicU8::new(Readiness::Starting as u8),
        }
    }

    pub fn set(&self, readiness: Readiness) {
        self.readiness.store(readiness as u8, Relaxed);
    }

    pub fn readiness(&self) -> Readiness {
        match self.readiness.load(Relaxed) {
            1 => Readiness::Ready,
            2 => Readiness::Draining,
            _ => Readiness::Starting,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {addr} for the admin endpoints: {source}. \
     Change [admin] listen in the config or serve --admin (e.g. \"127.0.0.1:9091\")"
)]
pub struct AdminBindError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Binds the admin listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AdminBindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AdminBindError { addr, source })
}

/// Serves the admin endpoints until `shutdown`.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let open = Arc::new(OpenConnections::default());
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors and the like: the relay reports those; wait a little.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Full: the newcomer is a probe or a scraper as likely as not, and
        // whoever holds the oldest connection has had its turn (nginx
        // likewise closes kept-alive connections when it runs short). So
        // 64 connections held open, slow or silent, cannot keep /healthz
        // from answering.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                open.evict_oldest();
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                permit
            }
        };
        let (id, evicted) = open.add();
        let state = state.clone();
        let shutdown = shutdown.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(&state, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = shutdown.cancelled() => {}
                () = evicted.cancelled() => {}
            }
            open.remove(id);
            drop(permit);
        });
    }
}

/// The admin connections being served, oldest first, each with the token
/// that ends it.
#[derive(Default)]
struct OpenConnections(Mutex<(u64, BTreeMap<u64, CancellationToken>)>);

impl OpenConnections {
    fn add(&self) -> (u64, CancellationToken) {
        let mut guard = self.lock();
        let (next, open) = &mut *guard;
        let id = *next;
        *next += 1;
        let token = CancellationToken::new();
        open.insert(id, token.clone());
        (id, token)
    }

    fn remove(&self, id: u64) {
        self.lock().1.remove(&id);
    }

    /// Ends the oldest connection; its slot frees once its task has ended.
    fn evict_oldest(&self) {
        if let Some((_, token)) = self.lock().1.pop_first() {
            token.cancel();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, BTreeMap<u64, CancellationToken>)> {
        // Nothing panics while holding it; a poisoned map is still a map.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One request's answer; only the method and the path are looked at.
fn respond(state: &AdminState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(
            StatusCode::NOT_FOUND,
            "not found; the admin endpoints are /metrics, /healthz and /readyz\n",
        );
    }
    if request.method() != Method::GET {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is allowed; the admin endpoints are read-only\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    match path {
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(state.metrics.encode())));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(Metrics::CONTENT_TYPE),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        _ => match state.readiness() {
            Readiness::Ready => text(StatusCode::OK, "ready\n"),
            Readiness::Starting => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
            Readiness::Draining => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        },
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
