//! The WebSocket relay: listener, handshakes and routing, the frame-level
//! session pump, idle deadlines. Knows `config` and nothing else of ours —
//! no screen, no terminal.

pub mod event;
mod frame;
pub mod handshake;
pub mod heartbeat;
mod io;
mod listener;
pub mod registry;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use event::{CloseCause, CloseInfo, RelayEvent};
pub use frame::{FrameScanner, MAX_HEADER, Scan, SeenFrame, Violation, close_frame};
pub use handshake::{ClientRequest, MAX_HEADER_BYTES, Refusal, parse_request, tls_client_config};
pub use registry::{
    Direction, FlowSnapshot, FrameKind, MessageGaps, NewSession, RecentFrame, Registry,
    SessionGuard, SessionId, SessionSnapshot, SessionStats,
};
pub use session::CLOSE_GRACE;

use crate::config::Config;
use listener::{EventSink, Shared, accept_loop};

/// Lifecycle events buffered between the relay and its reader.
pub const EVENT_CAPACITY: usize = 16 * 1024;
/// Listen backlog: bursts of hundreds of connects must not be dropped by
/// the kernel (it caps this at `somaxconn`).
const BACKLOG: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(
        "cannot listen on {addr}: {source}. Is another relay using it? \
         Change [relay] listen in the config (e.g. \"127.0.0.1:8081\")"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the relay thread: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("cannot set up TLS to origins: {0}")]
    Tls(String),
    #[error("the relay thread stopped while starting")]
    Stopped,
}

/// The parts of a running relay that its owner talks to.
#[derive(Debug)]
struct Inner {
    config: watch::Sender<Arc<Config>>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    local_addr: SocketAddr,
    events: EventSink,
}

/// A running relay. Dropping it does not stop the relay; call [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct RelayHandle {
    inner: Arc<Inner>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A cheap, clonable view of a running relay for other threads (the control
/// socket): its sessions, its configuration, its event stream, its stop.
#[derive(Debug, Clone)]
pub struct RelayLink {
    inner: Arc<Inner>,
}

impl RelayLink {
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    pub fn config(&self) -> Arc<Config> {
        self.inner.config.borrow().clone()
    }

    /// See [`RelayHandle::apply_config`].
    pub fn apply_config(&self, config: Arc<Config>) {
        self.inner.config.send_replace(config);
    }

    /// Adds an event to the relay's stream (its owner logs and shows it).
    pub fn emit(&self, event: RelayEvent) {
        self.inner.events.emit(event);
    }

    /// Whether [`RelayHandle::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }
}

impl RelayHandle {
    /// A view of this relay that other threads may hold.
    pub fn link(&self) -> RelayLink {
        RelayLink {
            inner: self.inner.clone(),
        }
    }

    /// Where clients connect (the actual port when the config says `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.inner.config.borrow().clone()
    }

    /// Puts a new configuration in force: every session re-arms its deadline
    /// at once, sessions of offline or deleted domains are closed. (A new
    /// `listen` address needs a restart.)
    pub fn apply_config(&self, config: Arc<Config>) {
        self.inner.config.send_replace(config);
    }

    /// Events lost because their reader fell behind.
    pub fn dropped_events(&self) -> usize {
        self.inner.events.dropped()
    }

    /// Stops accepting and closes every session with 1001 `relay shutting down`.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Waits until every session has closed its sockets (after [`shutdown`](Self::shutdown)).
    pub async fn stopped(&self) {
        self.inner.tracker.wait().await;
    }

    /// Waits, at most `timeout`, for the relay thread to finish after
    /// [`shutdown`](Self::shutdown). A relay started with [`start`] has no thread.
    pub fn join(mut self, timeout: Duration) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + timeout;
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

/// Binds `[relay] listen` and runs the relay on the current tokio runtime.
pub async fn start(
    config: Arc<Config>,
) -> Result<(RelayHandle, mpsc::Receiver<RelayEvent>), RelayError> {
    let tls = handshake::tls_client_config(config.relay.origin_ca_file.as_deref())
        .map_err(RelayError::Tls)?;
    let addr = config.relay.listen;
    let listener = bind(addr).map_err(|source| RelayError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| RelayError::Bind { addr, source })?;
    let (event_tx, event_rx) = mpsc::channel(EVENT_CAPACITY);
    let (config_tx, config_rx) = watch::channel(config);
    let inner = Arc::new(Inner {
        config: config_tx,
        registry: Arc::new(Registry::new()),
        shutdown: CancellationToken::new(),
        tracker: TaskTracker::new(),
        local_addr,
        events: EventSink::new(event_tx),
    });
    let shared = Arc::new(Shared {
        config: config_rx,
        registry: inner.registry.clone(),
        events: inner.events.clone(),
        shutdown: inner.shutdown.clone(),
        tracker: inner.tracker.clone(),
        connections: AtomicUsize::new(0),
        tls,
    });
    inner.tracker.spawn(accept_loop(listener, shared));
    // Closed so that `wait()` returns once the accept loop and every
    // session have ended (new sessions are spawned from inside the loop).
    inner.tracker.close();
    Ok((
        RelayHandle {
            inner,
            thread: None,
        },
        event_rx,
    ))
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Runs the relay on its own thread with a current-thread runtime, so that
/// drawing a UI never delays a frame (measured: a shared two-worker runtime
/// was ~10 % slower on this 2-core machine).
pub fn spawn_relay_thread(
    config: Arc<Config>,
) -> Result<(RelayHandle, mpsc::Receiver<RelayEvent>), RelayError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(RelayError::Runtime(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                match start(config).await {
                    Ok((handle, events)) => {
                        let inner = handle.inner.clone();
                        let _ = ready_tx.send(Ok((handle, events)));
                        inner.shutdown.cancelled().await;
                        // Sessions get their close handshakes, within bounds.
                        let _ = tokio::time::timeout(CLOSE_GRACE * 3, inner.tracker.wait()).await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })?;
    let (mut handle, events) = ready_rx.recv().map_err(|_| RelayError::Stopped)??;
    handle.thread = Some(thread);
    Ok((handle, events))
}
