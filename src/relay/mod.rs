//! The WebSocket relay: listener, handshakes and routing, the frame-level
//! session pump, idle deadlines. Knows `config` and nothing else of ours —
//! no screen, no terminal.

pub mod event;
mod grace;
pub mod handover;
pub(crate) mod handshake;
pub mod heartbeat;
pub mod history;
mod io;
mod listener;
pub mod metrics;
pub mod registry;
pub mod reload;
pub mod roots;
mod session;
pub mod tls;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::ws::frame::{
    FrameKind, FrameScanner, MAX_HEADER, Scan, SeenFrame, Violation, close_frame,
};
pub use event::{CloseCause, CloseInfo, RelayEvent};
pub use handover::{Collected, ListenerKind, MovedListener, MovedSession};
pub use handshake::{ClientRequest, MAX_HEADER_BYTES, Refusal, parse_request};
pub use metrics::Metrics;
pub use registry::StatsState;
pub use registry::{
    Direction, FlowSnapshot, MessageGaps, NewSession, RecentFrame, Registry, SessionGuard,
    SessionId, SessionSnapshot, SessionStats,
};
pub use roots::{RootsError, tls_client_config};
pub use session::{CLOSE_GRACE, LaneState};

use crate::config::Config;
use handover::Interrupts;
use listener::{EventSink, Shared, accept_loop};

/// Lifecycle events buffered between the relay and its reader.
pub const EVENT_CAPACITY: usize = 16 * 1024;
/// Worker threads are named this and their number (`relay-0`, …): what
/// `top -H`, `bench/attach.sh` and an attached console (`tui::cpus`) go by.
pub const WORKER_THREAD_PREFIX: &str = "relay-";
/// Listen backlog: bursts of hundreds of connects must not be dropped by
/// the kernel (it caps this at `somaxconn`).
const BACKLOG: i32 = 4096;

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
    Tls(#[from] RootsError),
    #[error("the relay thread stopped while starting")]
    Stopped,
    #[error("cannot serve TLS on [relay] tls-listen: {0}")]
    Certificate(#[from] tls::CertificateError),
}

/// The parts of a running relay that its owner talks to (shared by every worker).
#[derive(Debug)]
struct Inner {
    config: watch::Sender<Arc<Config>>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    /// Cancelled to close the listeners only (a drain); a child of `shutdown`.
    accepting: CancellationToken,
    /// Every worker's accept loops: empty once each has dropped its listener.
    listening: TaskTracker,
    tracker: TaskTracker,
    local_addr: SocketAddr,
    events: EventSink,
    /// Connections being handshaken or relayed on all workers (for `max-sessions`).
    connections: Arc<AtomicUsize>,
    tls: Arc<rustls::ClientConfig>,
    /// `[relay] tls-listen`, when set.
    edge: Option<tls::Edge>,
    /// What wakes every session at once (shutdown, hand-over).
    interrupts: Arc<Interrupts>,
    /// Accept loops of all workers (each gives its listener to a hand-over).
    accept_loops: usize,
}

impl Inner {
    /// What the connection tasks of `worker` share.
    fn worker(&self, worker: usize) -> Arc<Shared> {
        Arc::new(Shared {
            config: self.config.subscribe(),
            registry: self.registry.clone(),
            events: self.events.clone(),
            shutdown: self.shutdown.clone(),
            accepting: self.accepting.clone(),
            listening: self.listening.clone(),
            tracker: self.tracker.clone(),
            connections: self.connections.clone(),
            tls: self.tls.clone(),
            worker,
            interrupts: self.interrupts.clone(),
        })
    }
}

/// A running relay, all its workers behind one handle. Dropping it does not
/// stop the relay; call [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct RelayHandle {
    inner: Arc<Inner>,
    threads: Vec<std::thread::JoinHandle<()>>,
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
        self.inner.registry.metrics().apply_config(&config);
        self.inner.config.send_replace(config);
    }

    /// See [`RelayHandle::try_apply_config`].
    pub fn try_apply_config(&self, config: Arc<Config>) -> Result<(), tls::CertificateError> {
        if let Some(edge) = &self.inner.edge {
            edge.resolver.replace(tls::CertificateSet::load(&config)?);
        }
        self.apply_config(config);
        Ok(())
    }

    /// An edit saved through the console or the control socket: in force
    /// at once; the certificates are read again too (a renewed file is
    /// picked up), and one that cannot be served keeps the old one — the
    /// error is returned for the caller to report.
    pub fn apply_edit(&self, config: Arc<Config>) -> Result<(), tls::CertificateError> {
        let certificates = self.try_apply_config(config.clone());
        if certificates.is_err() {
            self.apply_config(config);
        }
        certificates
    }

    /// Adds an event to the relay's stream (its owner logs and shows it).
    pub fn emit(&self, event: RelayEvent) {
        self.inner.events.emit(event);
    }

    /// Whether [`RelayHandle::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// The start of a hand-over (DESIGN §7). Its waves
    /// ([`Collected::pause_idle`], [`Collected::pause_rest`]) stop every
    /// session that can move (plain TCP on both sides, open) between two
    /// turns of its loop, and take a copy of every listener, whose accept
    /// loop waits. `None` when a hand-over is already under way or the
    /// relay is stopping. Dropping the result without
    /// [`Collected::commit`] puts everything back as it was.
    /// `with_listeners`: whether the accept loops give their listeners
    /// too (a later round, after they have gone, moves sessions only).
    pub fn begin_handover(&self, with_listeners: bool) -> Option<Collected> {
        let listeners = if with_listeners {
            self.inner.accept_loops
        } else {
            0
        };
        handover::begin(&self.inner.interrupts, &self.inner.registry, listeners)
    }

    /// Connections accepted whose handshakes are still under way.
    pub fn handshakes_in_flight(&self) -> usize {
        let connections = self
            .inner
            .connections
            .load(std::sync::atomic::Ordering::Relaxed);
        connections.saturating_sub(self.inner.registry.len())
    }

    /// Starts sessions another relay process handed over, on every worker,
    /// from the calling thread (see `crate::handover::adopt`).
    pub fn adopt(&self, sessions: Vec<Box<MovedSession>>) {
        handover::adopt_received(&self.inner.interrupts, sessions);
    }

    /// See [`RelayHandle::tls_local_addr`].
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.inner.edge.as_ref().map(|e| e.local_addr)
    }

    /// See [`RelayHandle::certificates`].
    pub fn certificates(&self) -> Option<Arc<tls::CertificateSet>> {
        self.inner.edge.as_ref().map(|e| e.resolver.current())
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

    /// The session table of every worker, merged when sampled.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// Where `wss://` clients connect, with `[relay] tls-listen`.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.inner.edge.as_ref().map(|e| e.local_addr)
    }

    /// The certificates served on `tls-listen` (None without it).
    pub fn certificates(&self) -> Option<Arc<tls::CertificateSet>> {
        self.inner.edge.as_ref().map(|e| e.resolver.current())
    }

    /// [`apply_config`](Self::apply_config), after reading the new config's
    /// certificates: if one cannot be served, nothing changes (the old
    /// certificates and config stay in force) and the error says which
    /// file and why.
    pub fn try_apply_config(&self, config: Arc<Config>) -> Result<(), tls::CertificateError> {
        self.link().try_apply_config(config)
    }

    /// The relay's Prometheus metrics (every worker counts into them).
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.inner.registry.metrics()
    }

    /// How many workers (threads with a listener each) are running.
    pub fn workers(&self) -> usize {
        self.inner.registry.workers()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.inner.config.borrow().clone()
    }

    /// Puts a new configuration in force on every worker: every session
    /// re-arms its deadline at once, sessions of offline or deleted domains
    /// are closed. (A new `listen` or `workers` needs a restart.)
    pub fn apply_config(&self, config: Arc<Config>) {
        self.link().apply_config(config);
    }

    /// Events lost because their reader fell behind.
    pub fn dropped_events(&self) -> usize {
        self.inner.events.dropped()
    }

    /// Closes every worker's listener (new clients are refused by the
    /// kernel) and leaves live sessions running: the start of a drain.
    /// Returns once every worker has dropped its listeners (each on its own
    /// thread), so "draining" is never announced while a port still accepts.
    pub async fn stop_accepting(&self) {
        self.inner.accepting.cancel();
        self.inner.listening.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.listening.wait()).await;
    }

    /// Stops accepting on every worker and closes every session with 1001
    /// `relay shutting down`.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Waits until every session of every worker has closed its sockets
    /// (after [`shutdown`](Self::shutdown)).
    pub async fn stopped(&self) {
        self.inner.tracker.wait().await;
    }

    /// Waits, at most `timeout` in all, for the worker threads to finish
    /// after [`shutdown`](Self::shutdown). A relay started with [`start`]
    /// has no thread.
    pub fn join(mut self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        for thread in self.threads.drain(..) {
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// Binds `[relay] listen` and runs one worker on the current tokio runtime,
/// whatever `[relay] workers` says: for callers that own the runtime (tests
/// under paused time). [`spawn_relay_thread`] runs every worker.
pub async fn start(
    config: Arc<Config>,
) -> Result<(RelayHandle, mpsc::Receiver<RelayEvent>), RelayError> {
    let (inner, mut listeners, events) = prepare(config, 1, Arc::default(), None)?;
    let addr = inner.local_addr;
    let worker = listeners.pop().ok_or(RelayError::Stopped)?;
    let shared = inner.worker(0);
    inner.interrupts.add_worker(shared.clone());
    spawn_accept_loops(worker, shared, inner.edge.as_ref(), addr)?;
    // Closed so that `wait()` returns once the accept loop and every
    // session have ended (new sessions are spawned from inside the loop).
    inner.tracker.close();
    Ok((
        RelayHandle {
            inner,
            threads: Vec::new(),
        },
        events,
    ))
}

/// The shared state, one worker's bound listeners each, and the event stream.
type Prepared = (Arc<Inner>, Vec<WorkerListeners>, mpsc::Receiver<RelayEvent>);

/// A worker's listeners: `listen`, and `tls-listen` when set (one each,
/// or more after a hand-over from a relay with more workers).
struct WorkerListeners {
    plain: Vec<std::net::TcpListener>,
    tls: Vec<std::net::TcpListener>,
}

/// Starts a worker's accept loops on the current runtime.
fn spawn_accept_loops(
    listeners: WorkerListeners,
    shared: Arc<Shared>,
    edge: Option<&tls::Edge>,
    addr: SocketAddr,
) -> Result<(), RelayError> {
    let bind_error = |addr, source| RelayError::Bind { addr, source };
    if let Some(edge) = edge {
        for listener in listeners.tls {
            let listener =
                TcpListener::from_std(listener).map_err(|e| bind_error(edge.local_addr, e))?;
            shared
                .tracker
                .spawn(shared.listening.track_future(tls::accept_loop(
                    listener,
                    shared.clone(),
                    edge.acceptor.clone(),
                )));
        }
    }
    for plain in listeners.plain {
        let plain = TcpListener::from_std(plain).map_err(|e| bind_error(addr, e))?;
        let listening = shared
            .listening
            .track_future(accept_loop(plain, shared.clone()));
        shared.tracker.spawn(listening);
    }
    Ok(())
}

/// TLS settings, the listeners and the shared state for `workers` workers.
fn prepare(
    config: Arc<Config>,
    workers: usize,
    metrics: Arc<Metrics>,
    inherited: Option<Vec<MovedListener>>,
) -> Result<Prepared, RelayError> {
    let tls = roots::tls_client_config(config.relay.origin_ca_file.as_deref())?;
    let addr = config.relay.listen;
    let bind_error = |addr| move |source| RelayError::Bind { addr, source };
    let (inherited_plain, inherited_tls) = split_inherited(inherited);
    let listeners = match inherited_plain {
        Some(plain) => plain,
        None => bind_workers(addr, workers).map_err(bind_error(addr))?,
    };
    let local_addr = listeners
        .first()
        .map(std::net::TcpListener::local_addr)
        .transpose()
        .map_err(bind_error(addr))?
        .unwrap_or(addr);
    let (edge, tls_listeners) = match config.relay.tls_listen {
        Some(tls_addr) => {
            let certificates = tls::CertificateSet::load(&config)?;
            let tls_listeners = match inherited_tls {
                Some(inherited) => inherited,
                None => bind_workers(tls_addr, workers).map_err(bind_error(tls_addr))?,
            };
            let local = tls_listeners
                .first()
                .and_then(|l| l.local_addr().ok())
                .unwrap_or(tls_addr);
            (Some(tls::Edge::new(certificates, local)), tls_listeners)
        }
        None => (None, Vec::new()),
    };
    let accept_loops = listeners.len().max(workers)
        + tls_listeners
            .len()
            .max(if edge.is_some() { workers } else { 0 });
    let plain = spread(listeners, workers).map_err(bind_error(addr))?;
    let tls_addr = config.relay.tls_listen.unwrap_or(addr);
    let tls_spread = spread(tls_listeners, workers).map_err(bind_error(tls_addr))?;
    let listeners = plain
        .into_iter()
        .zip(tls_spread)
        .map(|(plain, tls)| WorkerListeners { plain, tls })
        .collect();
    let (event_tx, event_rx) = mpsc::channel(EVENT_CAPACITY);
    metrics.apply_config(&config);
    let (config_tx, _) = watch::channel(config);
    let shutdown = CancellationToken::new();
    let interrupts = Arc::new(Interrupts::new(shutdown.clone()));
    let inner = Arc::new(Inner {
        config: config_tx,
        registry: Arc::new(Registry::with_metrics(workers, metrics.clone())),
        accepting: shutdown.child_token(),
        listening: TaskTracker::new(),
        shutdown,
        tracker: TaskTracker::new(),
        local_addr,
        events: EventSink::with_metrics(event_tx, metrics),
        connections: Arc::new(AtomicUsize::new(0)),
        tls,
        edge,
        interrupts,
        accept_loops,
    });
    Ok((inner, listeners, event_rx))
}

/// Listeners handed over by another process, by kind (`None`: bind anew).
fn split_inherited(
    inherited: Option<Vec<MovedListener>>,
) -> (
    Option<Vec<std::net::TcpListener>>,
    Option<Vec<std::net::TcpListener>>,
) {
    let Some(all) = inherited else {
        return (None, None);
    };
    let (plain, tls): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|l| l.kind == ListenerKind::Plain);
    let unwrap = |v: Vec<MovedListener>| {
        let v: Vec<_> = v.into_iter().map(|l| l.listener).collect();
        (!v.is_empty()).then_some(v)
    };
    (unwrap(plain), unwrap(tls))
}

/// Gives each of `workers` workers its listeners: every listener goes to
/// exactly one worker (a listener nobody accepts on would strand the
/// clients in its backlog); with fewer listeners than workers, the rest
/// share copies.
fn spread(
    listeners: Vec<std::net::TcpListener>,
    workers: usize,
) -> std::io::Result<Vec<Vec<std::net::TcpListener>>> {
    let workers = workers.max(1);
    let count = listeners.len();
    let mut out: Vec<Vec<std::net::TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    if count == 0 {
        return Ok(out);
    }
    for worker in count..workers {
        let copy = listeners[worker % count].try_clone()?;
        out[worker].push(copy);
    }
    for (i, listener) in listeners.into_iter().enumerate() {
        out[i % workers].push(listener);
    }
    Ok(out)
}

/// One listener per worker on `addr`. Several share the port through
/// `SO_REUSEPORT` (the kernel spreads new connections over them); with
/// port 0 the first picks the port and the others bind to it.
fn bind_workers(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    if workers <= 1 {
        return Ok(vec![bind(addr, false)?]);
    }
    if addr.port() != 0 {
        // SO_REUSEPORT would let us share a port another relay (of the same
        // user) listens on; a plain bind first keeps "address in use" an error.
        drop(bind(addr, false)?);
    }
    let first = bind(addr, true)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(bind(addr, true)?);
    }
    Ok(listeners)
}

fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Runs `[relay] workers` workers, each on its own thread with a
/// current-thread runtime and its own listener, so that drawing a UI never
/// delays a frame and every core relays (measured: one shared multi-thread
/// runtime was ~10 % slower on this 2-core machine than a current-thread
/// one). A session stays on the worker that accepted it.
pub fn spawn_relay_thread(
    config: Arc<Config>,
) -> Result<(RelayHandle, mpsc::Receiver<RelayEvent>), RelayError> {
    let metrics = Arc::new(Metrics::with_workers(config.relay.workers));
    spawn_relay_threads_with_metrics(config, metrics)
}

/// [`spawn_relay_thread`], counting into `metrics` (made before the relay,
/// so that an admin listener can answer while the relay is still starting).
pub fn spawn_relay_threads_with_metrics(
    config: Arc<Config>,
    metrics: Arc<Metrics>,
) -> Result<(RelayHandle, mpsc::Receiver<RelayEvent>), RelayError> {
    spawn_relay_threads_inheriting(config, metrics, None)
}

/// What a relay taking over starts with: the old process's listeners, and
/// the highest session id it hands over (new sessions get ids above it,
/// even those accepted before the handed-over ones are restored).
#[derive(Debug)]
pub struct Inherited {
    pub listeners: Vec<MovedListener>,
    pub last_id: SessionId,
}

/// [`spawn_relay_threads_with_metrics`] on what another relay process
/// handed over (`None`: bind `[relay] listen` and `tls-listen`).
pub fn spawn_relay_threads_inheriting(
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    inherited: Option<Inherited>,
) -> Result<(RelayHandle, mpsc::Receiver<RelayEvent>), RelayError> {
    let workers = config.relay.workers.max(1);
    let (listeners, last_id) = match inherited {
        Some(i) => (Some(i.listeners), i.last_id),
        None => (None, 0),
    };
    let (inner, listeners, events) = prepare(config, workers, metrics, listeners)?;
    // Before any accept loop runs.
    inner.registry.reserve_ids_through(last_id);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut handle = RelayHandle {
        inner: inner.clone(),
        threads: Vec::with_capacity(workers),
    };
    let fail = |handle: RelayHandle, error| {
        handle.inner.tracker.close();
        handle.shutdown();
        handle.join(CLOSE_GRACE);
        Err(error)
    };
    for (worker, listener) in listeners.into_iter().enumerate() {
        let shared = inner.worker(worker);
        let edge = inner.edge.clone();
        let ready = ready_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{WORKER_THREAD_PREFIX}{worker}"))
            .spawn(move || run_worker(listener, shared, edge, ready));
        match spawned {
            Ok(thread) => handle.threads.push(thread),
            Err(e) => return fail(handle, RelayError::Runtime(e)),
        }
    }
    drop(ready_tx);
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return fail(handle, e),
            Err(_) => return fail(handle, RelayError::Stopped),
        }
    }
    // Every accept loop is tracked: `wait()` may now return once they and
    // every session have ended.
    inner.tracker.close();
    Ok((handle, events))
}

/// One worker's thread: its runtime, its accept loop, until shutdown and
/// its sessions' close handshakes (within bounds) are done.
fn run_worker(
    listeners: WorkerListeners,
    shared: Arc<Shared>,
    edge: Option<tls::Edge>,
    ready: std::sync::mpsc::Sender<Result<(), RelayError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(RelayError::Runtime(e)));
            return;
        }
    };
    runtime.block_on(async move {
        let addr = shared.config.borrow().relay.listen;
        let shutdown = shared.shutdown.clone();
        let tracker = shared.tracker.clone();
        shared.interrupts.add_worker(shared.clone());
        if let Err(e) = spawn_accept_loops(listeners, shared, edge.as_ref(), addr) {
            let _ = ready.send(Err(e));
            return;
        }
        let _ = ready.send(Ok(()));
        shutdown.cancelled().await;
        // Sessions get their close handshakes, within bounds.
        let _ = tokio::time::timeout(CLOSE_GRACE * 3, tracker.wait()).await;
    });
}
