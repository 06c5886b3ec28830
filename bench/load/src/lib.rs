//! The load generator behind `ecdn-load` (bench/compare.sh builds and drives it): opens N WebSocket sessions through
//! a target (the relay, another proxy, or an origin directly), at most K
//! handshakes in flight, then drives them in one of three modes:
//!
//! - `echo`: closed loop, every session sends a message and waits for its
//!   echo before sending the next; measures round trips and throughput;
//! - `paced`: every session sends a message every M ms (spread evenly over
//!   the interval) and measures each round trip;
//! - `idle`: the sessions stay silent; each one's close is timed against its
//!   expected deadline (handshake + `--expect-timeout`), and counted by code;
//! - `handshake`: K loops (K = `--concurrency`) each open a session, exchange
//!   one message and close it, over and over: sessions per second (reported
//!   as `messages_per_s`; `rtt_ms` is a whole session, open to closed);
//! - `fanout`: the generator is also the origin (`--push-listen`), pushing a
//!   message to every session every M ms; `rtt_ms` is the delivery time,
//!   from the origin's tick to the client's receipt.
//!
//! Built on tokio-tungstenite like the applications that sit behind a CDN,
//! so every target pays the same client-side costs. Timings are taken on the
//! generator's clock; the load phase starts once every session is open, so
//! handshakes never overlap the measured window.

mod fanout;
mod handshake;
mod report;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub use report::{CloseCount, IdleReport, Report, Summary};
use report::{Recorder, lateness_summary};
use session::{Outcome, Phase};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Closed loop: send, await the echo, send again.
    Echo,
    /// Each session sends every `interval`.
    Paced { interval: Duration },
    /// Silent sessions; closes are timed and counted.
    Idle,
    /// Open, one message, close, again: the reconnect storm.
    Handshake,
    /// The origin (this generator) pushes to every session every `interval`.
    Fanout { interval: Duration },
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Paced { .. } => "paced",
            Mode::Idle => "idle",
            Mode::Handshake => "handshake",
            Mode::Fanout { .. } => "fanout",
        }
    }
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `ws://HOST:PORT/PATH` — where the generator connects.
    pub url: String,
    /// Host header to send (routing key for proxies); default: the URL's.
    pub host: Option<String>,
    pub sessions: usize,
    /// Handshakes in flight at most.
    pub concurrency: usize,
    pub mode: Mode,
    /// Payload bytes per message (binary messages).
    pub size: usize,
    /// Length of the load phase (echo, paced) or of the hold after the last
    /// session opened (idle). `None`: 10 s, or for idle with an expected
    /// timeout, that timeout plus 5 s.
    pub duration: Option<Duration>,
    /// Idle mode: when each session should be closed after its handshake.
    pub expect_timeout: Option<Duration>,
    /// Permit targets outside the loopback range (a load test is for your
    /// own machine unless you say otherwise).
    pub allow_remote: bool,
    /// Fan-out: where the generator's pushing origin listens (the target
    /// must forward sessions there).
    pub push_listen: Option<SocketAddr>,
    /// `wss://` targets: the PEM file of the CA (or self-signed
    /// certificate) to trust. The TLS server name (SNI) is `host`'s, else
    /// the URL's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Round trips at least this slow are printed on stderr as they end.
    pub log_slow: Option<Duration>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            url: "ws://127.0.0.1:8080/".into(),
            host: None,
            sessions: 100,
            concurrency: 64,
            mode: Mode::Echo,
            size: 64,
            duration: None,
            expect_timeout: None,
            allow_remote: false,
            push_listen: None,
            ca_file: None,
            log_slow: None,
        }
    }
}

/// Sent to the caller once every session has opened or failed, before the
/// load phase (or the idle hold) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub opened: usize,
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("bad target URL {url:?}: {reason} (expected ws://HOST:PORT/PATH)")]
    BadUrl { url: String, reason: String },
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error(
        "{addr} is not a loopback address; a load test is for your own machine \
         (pass --allow-remote if you really mean to load {addr})"
    )]
    NotLoopback { addr: SocketAddr },
    #[error("bad option: {0}")]
    BadOption(String),
    #[error("--ca-file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("internal error: {0}")]
    Internal(String),
}

/// Where sessions connect and what they ask for.
struct Target {
    addr: SocketAddr,
    url: String,
    host: Option<HeaderValue>,
    config: WebSocketConfig,
    /// `wss://`: the connector and the server name to ask for.
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
}

/// Runs the load and reports. `on_ready` is called once every session has
/// opened or failed (a script can sample the proxy's memory then).
pub async fn run(options: &LoadOptions, on_ready: impl FnOnce(Ready)) -> Result<Report, LoadError> {
    validate(options)?;
    let target = Arc::new(target(options).await?);
    let recorder = Arc::new(
        Recorder::new(options.log_slow)
            .map_err(|e| LoadError::Internal(format!("histogram: {e}")))?,
    );
    if options.mode == Mode::Handshake {
        return Ok(run_handshakes(options, target, recorder, on_ready).await);
    }
    let push = match (&options.mode, options.push_listen) {
        (Mode::Fanout { .. }, Some(addr)) => Some(
            fanout::PushOrigin::listen(addr, recorder.clone())
                .await
                .map_err(|e| {
                    LoadError::BadOption(format!("--push-listen {addr}: cannot listen: {e}"))
                })?,
        ),
        _ => None,
    };
    let epoch = push
        .as_ref()
        .map_or_else(Instant::now, fanout::PushOrigin::epoch);
    let gate = Arc::new(Semaphore::new(options.concurrency));
    let (opened_tx, mut opened_rx) = mpsc::channel::<bool>(options.sessions.max(1));
    let (phase_tx, phase_rx) = watch::channel::<Option<Phase>>(None);

    let mut tasks = Vec::with_capacity(options.sessions);
    for index in 0..options.sessions {
        let task = session::SessionTask {
            index,
            sessions: options.sessions,
            target: target.clone(),
            mode: options.mode.clone(),
            size: options.size,
            expect_timeout: options.expect_timeout,
            recorder: recorder.clone(),
            gate: gate.clone(),
            opened: opened_tx.clone(),
            phase: phase_rx.clone(),
            epoch,
        };
        tasks.push(tokio::spawn(task.run()));
    }
    drop(opened_tx);

    let mut ready = Ready {
        opened: 0,
        failed: 0,
    };
    // Every task reports once; counting (rather than waiting for the
    // channel to close) lets tasks keep their sender while they run.
    while ready.opened + ready.failed < options.sessions {
        let Some(ok) = opened_rx.recv().await else {
            break;
        };
        if ok {
            ready.opened += 1;
        } else {
            ready.failed += 1;
        }
    }
    on_ready(ready);

    let hold = options
        .duration
        .unwrap_or(match (&options.mode, options.expect_timeout) {
            (Mode::Idle, Some(t)) => t + Duration::from_secs(5),
            _ => Duration::from_secs(10),
        });
    let start = Instant::now();
    let phase = Phase {
        start,
        end: start + hold,
    };
    phase_tx.send_replace(Some(phase));
    let pushing = match (&push, &options.mode) {
        (Some(push), Mode::Fanout { interval }) => {
            Some(push.push(phase.start, phase.end, *interval, options.size))
        }
        _ => None,
    };
    if let Some(pushing) = pushing {
        pushing.await;
    }

    let mut lateness = Vec::new();
    let mut closes: Vec<CloseCount> = Vec::new();
    let mut still_open = 0;
    for task in tasks {
        match task.await {
            Ok(Outcome::Closed { label, lateness: l }) => {
                if let Some(l) = l {
                    lateness.push(l);
                }
                match closes.iter_mut().find(|c| c.close == label) {
                    Some(c) => c.sessions += 1,
                    None => closes.push(CloseCount {
                        close: label,
                        sessions: 1,
                    }),
                }
            }
            Ok(Outcome::StillOpen) => still_open += 1,
            Ok(Outcome::Done | Outcome::Failed) => {}
            Err(e) => recorder.error(format!("session task failed: {e}")),
        }
    }
    if let Some(push) = &push {
        push.stop();
    }
    let elapsed = hold.min(start.elapsed());
    closes.sort_by(|a, b| b.sessions.cmp(&a.sessions).then(a.close.cmp(&b.close)));
    let idle = (options.mode == Mode::Idle).then(|| IdleReport {
        expect_timeout_s: options.expect_timeout.map(|t| t.as_secs_f64()),
        lateness_ms: lateness_summary(&mut lateness),
        closes,
        still_open,
    });
    Ok(recorder.report(options, ready, elapsed, idle))
}

/// Handshake mode: no sessions to open first; the window starts at once.
async fn run_handshakes(
    options: &LoadOptions,
    target: Arc<Target>,
    recorder: Arc<Recorder>,
    on_ready: impl FnOnce(Ready),
) -> Report {
    on_ready(Ready {
        opened: 0,
        failed: 0,
    });
    let hold = options.duration.unwrap_or(Duration::from_secs(10));
    let start = Instant::now();
    handshake::run(
        target,
        recorder.clone(),
        options.concurrency,
        options.size,
        start + hold,
    )
    .await;
    let done = recorder.messages();
    let ready = Ready {
        opened: usize::try_from(done).unwrap_or(usize::MAX),
        failed: usize::try_from(recorder.errors()).unwrap_or(usize::MAX),
    };
    recorder.report(options, ready, hold.min(start.elapsed()), None)
}

fn validate(options: &LoadOptions) -> Result<(), LoadError> {
    let bad = |m: &str| Err(LoadError::BadOption(m.to_string()));
    if options.sessions == 0 {
        return bad("--sessions must be at least 1");
    }
    if options.concurrency == 0 {
        return bad("--concurrency must be at least 1");
    }
    if options.mode != Mode::Idle && options.size == 0 {
        return bad("--size must be at least 1 byte");
    }
    if let Mode::Paced { interval } | Mode::Fanout { interval } = options.mode
        && interval.is_zero()
    {
        return bad("--interval-ms must be at least 1");
    }
    if matches!(options.mode, Mode::Fanout { .. }) && options.push_listen.is_none() {
        return bad("--mode fanout needs --push-listen ADDR, where the target forwards sessions");
    }
    if matches!(options.mode, Mode::Fanout { .. }) && options.size < 8 {
        return bad("--mode fanout needs --size of at least 8 bytes (the time stamp)");
    }
    Ok(())
}

async fn target(options: &LoadOptions) -> Result<Target, LoadError> {
    let bad = |reason: &str| LoadError::BadUrl {
        url: options.url.clone(),
        reason: reason.to_string(),
    };
    let request = options
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| bad(&e.to_string()))?;
    let uri = request.uri();
    let secure = match uri.scheme_str() {
        Some("ws") => false,
        // TLS costs the generator as much as the target: compare wss://
        // targets with each other, and read the generator's CPU beside them.
        Some("wss") => true,
        _ => return Err(bad("only ws:// and wss:// are supported")),
    };
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let addr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| LoadError::Resolve {
            host: host.to_string(),
            source,
        })?
        .next()
        .ok_or_else(|| bad("the host resolves to no address"))?;
    if !addr.ip().is_loopback() && !options.allow_remote {
        return Err(LoadError::NotLoopback { addr });
    }
    let host_header = match &options.host {
        Some(h) => Some(HeaderValue::from_str(h).map_err(|_| {
            LoadError::BadOption(format!("--host {h:?} is not a valid header value"))
        })?),
        None => None,
    };
    let tls = if secure {
        let name = options.host.as_deref().unwrap_or(host);
        // The Host header may carry a port; the server name does not.
        let name = name.rsplit_once(':').map_or(name, |(n, _)| n);
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).map_err(|_| {
            LoadError::BadOption(format!("{name:?} is not a valid TLS server name"))
        })?;
        Some((tls_connector(options)?, name))
    } else {
        None
    };
    Ok(Target {
        addr,
        url: options.url.clone(),
        host: host_header,
        config: client_config(options),
        tls,
    })
}

/// A TLS client trusting only `--ca-file` (a benchmark's own CA).
fn tls_connector(options: &LoadOptions) -> Result<tokio_rustls::TlsConnector, LoadError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let Some(path) = &options.ca_file else {
        return Err(LoadError::BadOption(
            "a wss:// target needs --ca-file FILE (the PEM certificate of the CA that signed the target's)"
                .into(),
        ));
    };
    let ca_error = |reason: String| LoadError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| ca_error(format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ca_error(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ca_error("no CERTIFICATE block in the file".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| LoadError::Internal(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Small read buffers, as a server holding thousands of sessions would use
/// (the default 128 KiB per stream would dominate memory at 9,000 sessions).
/// Large messages get a buffer that takes one in a few reads, so the
/// generator's CPU does not become what the throughput runs measure.
fn client_config(options: &LoadOptions) -> WebSocketConfig {
    let read = if options.size > 4096 { 64 * 1024 } else { 4096 };
    WebSocketConfig::default()
        .read_buffer_size(read)
        .write_buffer_size(0)
}
