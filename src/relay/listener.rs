//! Accepting connections and turning each into a session: handshake with
//! the client, routing, the origin's handshake, then the pump.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::event::{CloseCause, RelayEvent};
use super::handover::{self, Interrupts, ListenerKind};
use super::handshake::{
    ClientRequest, Refusal, Upgraded, read_request, send_refusal, switching_protocols,
    upgrade_origin,
};
use super::io::RawIo;
use super::metrics::Metrics;
use super::registry::{NewSession, Registry, SessionGuard};
use super::session::{self, Outcome, SessionEnd, SessionSetup};
use super::upstream::{connect_origin, tls_connect};
use crate::config::{Config, DomainName, Status, effective_timeout};
use crate::ws::{close, close_frame};

/// Sends lifecycle events without ever waiting: a UI that falls behind loses
/// events (counted), it never slows a session.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<RelayEvent>,
    dropped: Arc<AtomicUsize>,
    /// Closes and refusals are counted here, before the event can be dropped.
    metrics: Arc<Metrics>,
}

impl EventSink {
    #[cfg(test)]
    pub fn new(tx: mpsc::Sender<RelayEvent>) -> Self {
        Self::with_metrics(tx, Arc::default())
    }

    pub fn with_metrics(tx: mpsc::Sender<RelayEvent>, metrics: Arc<Metrics>) -> Self {
        Self {
            tx,
            dropped: Arc::new(AtomicUsize::new(0)),
            metrics,
        }
    }

    pub fn emit(&self, event: RelayEvent) {
        self.metrics.observe(&event);
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    pub fn dropped(&self) -> usize {
        self.dropped.load(Relaxed)
    }
}

/// What every connection task shares.
pub struct Shared {
    pub config: watch::Receiver<Arc<Config>>,
    pub registry: Arc<Registry>,
    pub events: EventSink,
    pub shutdown: CancellationToken,
    /// Cancelled when the listeners close (a drain, or shutdown).
    pub accepting: CancellationToken,
    /// Tracks the accept loops, so a drain can wait for the listeners to close.
    pub listening: TaskTracker,
    pub tracker: TaskTracker,
    /// Connections being handshaken or relayed on every worker (for `max-sessions`).
    pub connections: Arc<AtomicUsize>,
    pub tls: Arc<rustls::ClientConfig>,
    /// The worker (thread) these connections run on.
    pub worker: usize,
    /// The shutdown and the hand-over, which wake every session.
    pub interrupts: Arc<Interrupts>,
}

/// Counts a connection for `max-sessions` until dropped.
pub struct ConnectionSlot(Arc<Shared>);

impl ConnectionSlot {
    pub fn take(shared: &Arc<Shared>) -> Self {
        shared.connections.fetch_add(1, Relaxed);
        ConnectionSlot(shared.clone())
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.0
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Relaxed);
    }
}

const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts until shutdown. Running out of descriptors backs off (never
/// spins) and answers the waiting client 503 through a spare descriptor.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut spare = open_spare();
    let mut backoff = Duration::from_millis(5);
    let mut generation = shared.interrupts.session_parent();
    loop {
        let accepted = tokio::select! {
            () = shared.accepting.cancelled() => break,
            () = generation.cancelled() => {
                if handover::offer_listener(&shared, &listener, ListenerKind::Plain).await.is_err() {
                    break;
                }
                generation = shared.interrupts.session_parent();
                continue;
            }
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                spawn_connection(&shared, stream, peer);
            }
            Err(e) if is_out_of_descriptors(&e) => {
                shared.events.emit(RelayEvent::AcceptFailed {
                    at: SystemTime::now(),
                    error: format!("{e}; refusing new clients until descriptors free up"),
                });
                refuse_with_spare(&listener, &mut spare, &shared).await;
                tokio::select! {
                    () = shared.accepting.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
            // Aborted handshakes and similar per-connection errors: next.
            Err(_) => {}
        }
    }
}

fn open_spare() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    use nix::errno::Errno;
    // Descriptors per process or system-wide, or kernel memory for sockets.
    e.raw_os_error().map(Errno::from_raw).is_some_and(|errno| {
        matches!(
            errno,
            Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM
        )
    })
}

/// Frees the spare descriptor, accepts one waiting client, answers it 503
/// and closes it, then takes the spare back.
async fn refuse_with_spare(
    listener: &TcpListener,
    spare: &mut Option<std::fs::File>,
    shared: &Shared,
) {
    if spare.take().is_none() {
        *spare = open_spare();
        return;
    }
    if let Ok(Ok((mut stream, peer))) = timeout(Duration::from_millis(1), listener.accept()).await {
        let refusal = Refusal::status(503, "the relay is out of file descriptors; try again later");
        if let Some(response) = refusal.response() {
            let _ = stream.try_write(&response);
        }
        let _ = stream.shutdown().await;
        refused(shared, peer, refusal);
    }
    *spare = open_spare();
}

fn spawn_connection(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let slot = ConnectionSlot::take(shared);
    shared
        .tracker
        .spawn(handle_connection(slot, stream, peer, false));
}

/// A client connection as the handshake and the pump see it: a plain TCP
/// stream, or the near end of a TLS client's bridge.
pub trait ClientIo: RawIo + AsyncRead + AsyncWrite + Unpin {}
impl<T: RawIo + AsyncRead + AsyncWrite + Unpin> ClientIo for T {}

pub fn refused(shared: &Shared, client: SocketAddr, refusal: Refusal) {
    shared.events.emit(RelayEvent::Refused {
        at: SystemTime::now(),
        client,
        domain: refusal.domain,
        status: refusal.status,
        reason: refusal.reason,
    });
}

/// The connection's first task: handshakes, then it hands a successful
/// session to a task of its own and ends, so a session that idles for
/// minutes holds only its session state, not the handshake's.
pub async fn handle_connection<C: ClientIo>(
    slot: ConnectionSlot,
    mut client: C,
    peer: SocketAddr,
    client_tls: bool,
) {
    let shared = slot.0.clone();
    let shared = &*shared;
    // Boxed: the handshake's state is large and short-lived; a session that
    // then idles for minutes should not carry its space in its task.
    let outcome = tokio::select! {
        r = Box::pin(handshake(shared, &mut client, peer, client_tls)) => r,
        () = shared.shutdown.cancelled() => Err(Refusal::status(503, "the relay is shutting down")),
    };
    match outcome {
        Ok(established) => start_session(slot, client, peer, established).await,
        Err(refusal) => {
            send_refusal(&mut client, &refusal).await;
            refused(shared, peer, refusal);
        }
    }
}

/// A session whose handshakes both succeeded. Of its domain it keeps the
/// name and the idle limit only: a copy of the whole `Domain` (its origins,
/// its certificate settings) cost two allocations per session.
struct Established {
    domain: DomainName,
    idle_limit: Option<Duration>,
    request: ClientRequest,
    client_leftover: Vec<u8>,
    origin: OriginConn,
    origin_addr: String,
    upgraded: Upgraded,
}

enum OriginConn {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl OriginConn {
    /// Ends an upgraded origin connection the relay will not use, with a
    /// close frame of its own (the relay's decision, so a close frame is
    /// owed), best effort and bounded.
    async fn close_with(self, code: u16, reason: &str) {
        let frame = close_frame(code, reason, true);
        let _ = timeout(Duration::from_secs(1), async {
            match self {
                OriginConn::Tcp(mut s) => {
                    s.write_all(&frame).await?;
                    s.shutdown().await
                }
                OriginConn::Tls(mut s) => {
                    s.write_all(&frame).await?;
                    s.shutdown().await
                }
            }
        })
        .await;
    }
}

/// Whether the domain is still configured and online under the config in force now.
fn still_served(shared: &Shared, name: &DomainName) -> Result<(), (Refusal, CloseCause)> {
    let config = shared.config.borrow();
    let (status, cause, what) = match config.domain(name) {
        None => (404, CloseCause::DomainRemoved, "removed"),
        Some(d) if d.status == Status::Offline => (503, CloseCause::DomainOffline, "taken offline"),
        Some(_) => return Ok(()),
    };
    let refusal = Refusal::status(
        status,
        format!("domain {name} was {what} while its upgrade waited on the origin"),
    )
    .for_domain(name);
    Err((refusal, cause))
}

async fn handshake<C: ClientIo>(
    shared: &Shared,
    client: &mut C,
    peer: SocketAddr,
    client_tls: bool,
) -> Result<Established, Refusal> {
    let handshake_timeout = shared.config.borrow().relay.handshake_timeout;
    let (mut request, client_leftover) = timeout(handshake_timeout, read_request(client))
        .await
        .map_err(|_| {
        Refusal::drop(format!(
            "handshake timeout: the client did not finish its upgrade request within {} s",
            handshake_timeout.as_secs()
        ))
    })??;
    request.tls = client_tls;
    // Route with the configuration in force now, not at accept time.
    let config = shared.config.borrow().clone();
    let domain = config.route(&request.host).ok_or_else(|| {
        Refusal::status(
            404,
            format!(
                "no domain \"{}\" is configured on this relay",
                crate::config::host_without_port(&request.host)
            ),
        )
    })?;
    if domain.status == Status::Offline {
        return Err(
            Refusal::status(503, format!("domain {} is offline", domain.name))
                .for_domain(&domain.name),
        );
    }
    let max = config.relay.max_sessions;
    if shared.connections.load(Relaxed) > max {
        return Err(
            Refusal::status(503, format!("session limit reached (max-sessions = {max})"))
                .for_domain(&domain.name),
        );
    }
    let connect_timeout = config.relay.origin_connect_timeout;
    let (tcp, origin_addr) = connect_origin(domain, connect_timeout).await?;
    let no_answer = || {
        Refusal::status(
            504,
            format!(
                "origin {origin_addr} did not answer the upgrade within {} s",
                connect_timeout.as_secs()
            ),
        )
        .for_domain(&domain.name)
    };
    let (origin, upgraded) = if domain.origin_protocol.uses_tls_for(client_tls) {
        let tls = &shared.tls;
        let upgrade = async {
            let mut stream = tls_connect(tcp, domain, tls).await?;
            let upgraded = upgrade_origin(&mut stream, domain, &request, peer).await?;
            Ok::<_, Refusal>((OriginConn::Tls(Box::new(stream)), upgraded))
        };
        timeout(connect_timeout, upgrade)
            .await
            .map_err(|_| no_answer())??
    } else {
        let mut stream = tcp;
        let upgraded = timeout(
            connect_timeout,
            upgrade_origin(&mut stream, domain, &request, peer),
        )
        .await
        .map_err(|_| no_answer())??;
        (OriginConn::Tcp(stream), upgraded)
    };
    // The origin's answer can take seconds: the domain may have been deleted
    // or taken offline meanwhile, and a session must start under the config
    // in force when it starts, not the one its handshake began with.
    if let Err((refusal, cause)) = still_served(shared, &domain.name) {
        origin.close_with(close::GOING_AWAY, cause.label()).await;
        return Err(refusal);
    }
    Ok(Established {
        domain: domain.name.clone(),
        idle_limit: effective_timeout(domain).limit,
        request,
        client_leftover,
        origin,
        origin_addr,
        upgraded,
    })
}

async fn start_session<C: ClientIo>(
    slot: ConnectionSlot,
    mut client: C,
    peer: SocketAddr,
    est: Established,
) {
    let shared = &*slot.0;
    let Established {
        domain,
        idle_limit,
        request,
        client_leftover,
        origin,
        origin_addr,
        upgraded,
    } = est;
    let answer = switching_protocols(&upgraded);
    if let Err(e) = client.write_all(&answer).await {
        refused(
            shared,
            peer,
            Refusal::drop(format!("client went away before the 101 was sent: {e}"))
                .for_domain(&domain),
        );
        return;
    }
    let guard = shared.registry.register_on(
        shared.worker,
        NewSession {
            domain: domain.clone(),
            client: peer,
            origin: origin_addr.as_str().into(),
            path: request.path.as_str().into(),
            timeout: idle_limit,
        },
        &shared.interrupts.session_parent(),
    );
    shared.events.emit(RelayEvent::Opened {
        id: guard.stats().id,
        at: SystemTime::now(),
        domain,
        client: peer,
        origin: origin_addr,
        path: request.path,
        subprotocol: upgraded.protocol,
    });
    let setup = SessionSetup {
        stats: guard.stats().clone(),
        client_leftover,
        origin_leftover: upgraded.leftover,
        extensions: upgraded.extensions.is_some(),
        config: shared.config.clone(),
        interrupts: shared.interrupts.clone(),
        resume: None,
    };
    let tracker = shared.tracker.clone();
    match origin {
        OriginConn::Tcp(origin) => {
            tracker.spawn(run_session(slot, guard, client, origin, setup));
        }
        OriginConn::Tls(tls) => match bridge_tls(shared, *tls) {
            Ok(origin) => {
                tracker.spawn(run_session(slot, guard, client, origin, setup));
            }
            Err(e) => {
                drop(guard);
                refused(
                    shared,
                    peer,
                    Refusal::drop(format!("cannot bridge the TLS origin: {e}")),
                );
            }
        },
    }
}

/// A session's own task: the pump, then the `Closed` event (or, paused for
/// a hand-over, its report). A `map`, not an `async` block: the task then
/// holds the pump's future exactly once (an async block would also keep a
/// copy of it and of its arguments).
pub(super) fn run_session<C: RawIo, O: RawIo>(
    slot: ConnectionSlot,
    guard: SessionGuard,
    client: C,
    origin: O,
    setup: SessionSetup,
) -> impl std::future::Future<Output = ()> + Send {
    session::run(client, origin, setup).map(move |outcome| match outcome {
        Outcome::Ended(end) => session_closed(slot, guard, end),
        Outcome::Paused(paused) => handover::session_paused(slot, guard, *paused),
    })
}

fn session_closed(slot: ConnectionSlot, guard: SessionGuard, end: SessionEnd) {
    {
        let stats = guard.stats().clone();
        slot.0.registry.record_close(&stats, &end.cause, end.idle);
        // Out of the session table before anyone hears it closed: a reader
        // of the Closed event must not still find the session live.
        drop(guard);
        slot.0.events.emit(RelayEvent::Closed {
            id: stats.id,
            at: SystemTime::now(),
            domain: stats.domain.clone(),
            client: stats.client,
            origin: stats.origin.to_string(),
            cause: end.cause,
            to_client: end.to_client,
            to_origin: end.to_origin,
            idle: end.idle,
            duration: Instant::now().saturating_duration_since(stats.started),
        });
        drop(slot);
    }
}

/// A TLS origin cannot be polled for raw readiness, so a small task copies
/// between it and one end of a socket pair; the session pumps the other end.
fn bridge_tls(
    shared: &Shared,
    mut tls: tokio_rustls::client::TlsStream<TcpStream>,
) -> io::Result<impl RawIo> {
    let (mut near, far) = UnixStream::pair()?;
    shared.tracker.spawn(async move {
        let _ = tokio::io::copy_bidirectional(&mut tls, &mut near).await;
    });
    Ok(far)
}
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::Config;

    /// What an idle session costs is mostly the size of its task's future:
    /// keep it well under HAProxy's 3.5 KiB per session (see
    /// docs/BENCHMARKS.md). A regression here (a buffer or a handshake
    /// state kept in the session's future) shows up as a failure, not as a
    /// slow drift in the benchmarks.
    #[tokio::test]
    async fn a_session_task_stays_small() {
        let (events, _rx) = mpsc::channel(1);
        let (_config_tx, config) = watch::channel(Arc::new(Config {
            relay: Default::default(),
            admin: Default::default(),
            domains: vec![],
        }));
        let shared = Arc::new(Shared {
            config: config.clone(),
            registry: Default::default(),
            events: EventSink::new(events),
            shutdown: Default::default(),
            accepting: Default::default(),
            listening: Default::default(),
            tracker: Default::default(),
            connections: Default::default(),
            tls: super::super::roots::tls_client_config(None).unwrap(),
            worker: 0,
            interrupts: Arc::new(Interrupts::new(Default::default())),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let origin = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let guard = shared.registry.register(NewSession {
            domain: "a.test".into(),
            client: "127.0.0.1:1".parse().unwrap(),
            origin: "127.0.0.1:2".into(),
            path: "/".into(),
            timeout: None,
        });
        let setup = SessionSetup {
            stats: guard.stats().clone(),
            client_leftover: Vec::new(),
            origin_leftover: Vec::new(),
            extensions: false,
            config,
            interrupts: shared.interrupts.clone(),
            resume: None,
        };
        let task = run_session(ConnectionSlot(shared.clone()), guard, client, origin, setup);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1536, "a session task's future is {size} bytes");
    }
}
