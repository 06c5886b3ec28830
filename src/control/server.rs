//! The control server: one per relay, on its own thread so that nothing it
//! does (sampling thousands of sessions, writing JSON) delays a frame on
//! the data path. Each client is a task; a client that misbehaves (not
//! JSON, an endless line, never reading) is answered or dropped, and no
//! other client or session notices.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;

use crate::app::advice;
use crate::config::ConfigFile;
use crate::handover::{GiveReport, HANDOVER_VERSION};
use crate::relay::registry::SessionStats;
use crate::relay::{CloseInfo, RelayEvent, RelayLink, SessionId};

use super::protocol::{
    BriefInfo, ChangesReply, ClosedReply, ConfigReply, ErrorCode, ErrorReply, EventLine,
    EventsReply, EvidenceInfo, EvidenceReply, FrameInfo, Hello, HelloReply, IdSummary,
    MAX_REQUEST_BYTES, PROTOCOL, PROTOCOL_VERSION, RecentInfo, RecommendReply, Request,
    SessionDetail, SessionInfo, SessionReply, SessionsReply, StoppingReply, TlsInfo,
};
use super::socket::{SocketError, StagedSocket, bind, own_path, taken_over};
use super::state::{ConfigCell, EventRing};

/// A client that does not take an answer within this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// More clients than this at once are turned away.
const MAX_CLIENTS: usize = 64;
/// How long a relay that handed over waits for the new process to take
/// the socket's path, and how often it looks.
const SUCCESSOR_WAIT: Duration = Duration::from_secs(2);
const SUCCESSOR_POLL: Duration = Duration::from_millis(5);

/// What the server works on, shared with the relay's owner.
#[derive(Debug)]
pub struct Control {
    pub relay: RelayLink,
    pub config: Arc<ConfigCell>,
    pub events: EventRing,
    /// Cancelled by a `stop` request; the owner stops the relay.
    pub stop: CancellationToken,
    /// Cancelled by a second `stop`: a drain under way ends at once.
    pub stop_now: CancellationToken,
    /// `serve` or `console`.
    pub mode: &'static str,
    clients: AtomicUsize,
    /// What became of the last hand-over asked for on the socket.
    pub handover: tokio::sync::watch::Sender<Option<HandoverNotice>>,
    /// The socket's path, and whether it is still this relay's (after a
    /// hand-over it belongs to the new process, which binds it anew).
    socket: std::sync::Mutex<Option<PathBuf>>,
}

/// The end of a hand-over this relay took part in as the old process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoverNotice {
    /// Everything movable is the new process's now.
    Committed(GiveReport),
    /// Nothing changed: every session carries on here.
    Refused(String),
}

impl Control {
    pub fn new(relay: RelayLink, file: ConfigFile, mode: &'static str) -> Arc<Self> {
        Arc::new(Self {
            relay,
            config: ConfigCell::new(file),
            events: EventRing::default(),
            stop: CancellationToken::new(),
            stop_now: CancellationToken::new(),
            mode,
            clients: AtomicUsize::new(0),
            handover: tokio::sync::watch::Sender::new(None),
            socket: std::sync::Mutex::new(None),
        })
    }

    /// The socket's path while it is this relay's (after a hand-over: the
    /// one it was set aside to).
    pub fn socket_path(&self) -> Option<PathBuf> {
        self.socket
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Before a hand-over: gives this relay's socket a second name,
    /// `PATH.<pid>`, which stays this relay's whatever becomes of `PATH`.
    /// The new process renames its own socket over `PATH` just before it
    /// confirms, so the path changes hands in one step and never answers
    /// nobody. Returns `PATH`, or `None` without a socket or a second name.
    fn name_aside(&self) -> Option<PathBuf> {
        let path = self.socket_path()?;
        let aside = own_path(&path);
        let _ = std::fs::remove_file(&aside);
        std::fs::hard_link(&path, &aside).ok()?;
        Some(path)
    }

    /// The hand-over committed: the sessions that stay here (TLS) are
    /// listed and closed at `PATH.<pid>` until this process exits.
    fn keep_aside(&self, path: &Path) {
        *self
            .socket
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(own_path(path));
    }

    fn forget_socket(&self) {
        self.socket
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
    }

    /// The hand-over was refused: `PATH` is this relay's again, even if
    /// the new process had already renamed its socket over it (and died).
    fn take_back(&self, path: &Path) {
        let aside = own_path(path);
        if taken_over(path, &aside) {
            let _ = std::fs::rename(&aside, path);
        } else {
            let _ = std::fs::remove_file(&aside);
        }
    }

    /// Waits (up to `within`) until the new process of a hand-over answers
    /// at `path`: a client that asks right after this relay let go — or
    /// this relay itself, handing on the sessions whose handshakes were
    /// under way — then reaches the new process, not this one.
    async fn successor_at(&self, path: &Path, within: Duration) -> bool {
        let Some(own) = self.socket_path() else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + within;
        while !taken_over(path, &own) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(SUCCESSOR_POLL).await;
        }
        true
    }

    /// Removes this relay's socket file (never the new process's).
    fn remove_socket(&self) {
        let path = self
            .socket
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        if let Some(path) = path {
            let _ = std::fs::remove_file(path);
        }
    }

    /// The config answer, with the certificates `tls-listen` serves.
    fn config_reply(&self) -> ConfigReply {
        let certificates = self.relay.certificates();
        ConfigReply {
            tls: Some(TlsInfo::of(
                self.relay.tls_local_addr(),
                certificates.as_deref(),
            )),
            ..self.config.get()
        }
    }

    fn hello(&self) -> Hello {
        Hello {
            hello: PROTOCOL.to_string(),
            version: PROTOCOL_VERSION,
            build: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            listen: self.relay.local_addr(),
            config: self.config.get().path,
            config_version: self.config.version(),
            mode: self.mode.to_string(),
        }
    }
}

/// A running control server. Dropping it stops the server and removes
/// the socket file.
#[derive(Debug)]
pub struct ControlServer {
    pub control: Arc<Control>,
    path: PathBuf,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlServer {
    /// Binds `path` (see [`bind`]) and serves it on a thread of its own.
    pub fn start(control: Arc<Control>, path: &Path) -> Result<Self, SocketError> {
        let listener = bind(path)?;
        Self::serve(control, listener, path)
    }

    /// Serves a socket bound before a hand-over (see [`StagedSocket`]).
    pub fn start_staged(control: Arc<Control>, staged: StagedSocket) -> Result<Self, SocketError> {
        let (listener, path) = staged.into_listener();
        Self::serve(control, listener, &path)
    }

    fn serve(
        control: Arc<Control>,
        listener: std::os::unix::net::UnixListener,
        path: &Path,
    ) -> Result<Self, SocketError> {
        *control
            .socket
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(path.to_path_buf());
        let shutdown = CancellationToken::new();
        let (ctl, stop) = (control.clone(), shutdown.clone());
        let thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    match UnixListener::from_std(listener) {
                        Ok(listener) => accept_loop(listener, ctl, stop).await,
                        Err(e) => tracing::warn!("control socket unusable: {e}"),
                    }
                });
            })
            .map_err(|source| SocketError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            control,
            path: path.to_path_buf(),
            shutdown,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // After a hand-over the set-aside one: the path is the new process's.
        self.control.remove_socket();
    }
}

async fn accept_loop(listener: UnixListener, control: Arc<Control>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors and the like: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let control = control.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = client(stream, &control) => {}
            }
        });
    }
}

/// Counts a client until dropped.
struct ClientSlot<'a>(&'a AtomicUsize);

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

async fn client(stream: UnixStream, control: &Arc<Control>) {
    let (read, write) = stream.into_split();
    let mut out = Out(write);
    if let Err(refusal) = check_peer(out.0.as_ref(), control) {
        let _ = out.error(&refusal).await;
        return;
    }
    let _slot = ClientSlot(&control.clients);
    if control.clients.fetch_add(1, Relaxed) >= MAX_CLIENTS {
        let _ = out
            .error(&ErrorReply {
                error: ErrorCode::Failed,
                message: format!(
                    "too many control clients (at most {MAX_CLIENTS}); try again later"
                ),
            })
            .await;
        return;
    }
    if out.line(&control.hello()).await.is_err() {
        return;
    }
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_REQUEST_BYTES));
    while let Some(line) = lines.next().await {
        let line = match line {
            Ok(line) => line,
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                let _ = out
                    .error(&ErrorReply {
                        error: ErrorCode::TooLong,
                        message: format!(
                            "request line longer than {MAX_REQUEST_BYTES} bytes; closing the connection"
                        ),
                    })
                    .await;
                return;
            }
            Err(LinesCodecError::Io(_)) => return,
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let answer = match parse(line) {
            Ok(Request::Takeover { version }) => {
                if !lines.read_buffer().is_empty() {
                    let _ = out
                        .error(&ErrorReply {
                            error: ErrorCode::BadRequest,
                            message: "nothing may follow a takeover request before its answer"
                                .into(),
                        })
                        .await;
                    return;
                }
                let read = lines.into_inner();
                return takeover(control, read, out, version).await;
            }
            Ok(Request::Give { version }) => {
                let read = lines.into_inner();
                return receive_given(control, read, out, version).await;
            }
            Ok(request) => handle(control, request),
            Err(e) => Answer::Error(e),
        };
        let done = match answer {
            Answer::Reply(text) => out.raw(&text).await.is_err(),
            Answer::Error(e) => out.error(&e).await.is_err(),
            Answer::Follow(reply, rx) => {
                if out.ok(&reply).await.is_ok() {
                    follow(&mut out, rx).await;
                }
                true
            }
        };
        if done {
            return;
        }
    }
}

/// A new relay process asked for this one's sessions: answer, then hand
/// them over on the same connection (see `crate::handover`).
async fn takeover(
    control: &Arc<Control>,
    read: tokio::net::unix::OwnedReadHalf,
    mut out: Out,
    version: u32,
) {
    if version != HANDOVER_VERSION {
        let message = format!(
            "this relay hands over with version {HANDOVER_VERSION}, the new process asked for \
             {version}; nothing was changed. Use a build that speaks version {HANDOVER_VERSION}, \
             or restart the relay (sessions get 1001)"
        );
        let _ = out
            .error(&ErrorReply {
                error: ErrorCode::VersionMismatch,
                message: message.clone(),
            })
            .await;
        control
            .handover
            .send_replace(Some(HandoverNotice::Refused(message)));
        return;
    }
    let reply =
        serde_json::json!({ "handover_version": HANDOVER_VERSION, "pid": std::process::id() });
    if out.ok(&reply).await.is_err() {
        return;
    }
    let stream = match read.reunite(out.0).map(UnixStream::into_std) {
        Ok(Ok(stream)) => stream,
        _ => return,
    };
    let shared = control.name_aside();
    let notice =
        match crate::handover::give(&control.relay, stream, control.events.recent(false).0).await {
            Ok(report) => {
                if shared.is_none() {
                    // No second name: the path is the new process's, and this
                    // relay must not remove it on the way out.
                    control.forget_socket();
                }
                if let Some(path) = &shared {
                    control.keep_aside(path);
                    if !control.successor_at(path, SUCCESSOR_WAIT).await {
                        tracing::warn!(
                            "the new relay (pid {}) has not taken {} within {} s",
                            report.to_pid,
                            path.display(),
                            SUCCESSOR_WAIT.as_secs()
                        );
                    }
                }
                HandoverNotice::Committed(report)
            }
            Err(e) => {
                if let Some(path) = &shared {
                    control.take_back(path);
                }
                HandoverNotice::Refused(e.to_string())
            }
        };
    control.handover.send_replace(Some(notice));
}

/// The relay this one took over gives the sessions whose handshakes
/// finished there after the hand-over: receive and start them.
async fn receive_given(
    control: &Arc<Control>,
    read: tokio::net::unix::OwnedReadHalf,
    mut out: Out,
    version: u32,
) {
    if version != HANDOVER_VERSION {
        let _ = out
            .error(&ErrorReply {
                error: ErrorCode::VersionMismatch,
                message: format!(
                    "this relay takes hand-overs of version {HANDOVER_VERSION}, not {version}"
                ),
            })
            .await;
        return;
    }
    let reply =
        serde_json::json!({ "handover_version": HANDOVER_VERSION, "pid": std::process::id() });
    if out.ok(&reply).await.is_err() {
        return;
    }
    let Ok(Ok(stream)) = read.reunite(out.0).map(UnixStream::into_std) else {
        return;
    };
    let path = control.socket_path().unwrap_or_default();
    let received = tokio::task::spawn_blocking(move || {
        let mut takeover = crate::handover::Takeover::on(stream, &path)?;
        let received = takeover.receive()?;
        takeover.confirm()?;
        Ok::<_, crate::handover::HandoverError>(received)
    })
    .await;
    match received {
        Ok(Ok(received)) => {
            tracing::info!(
                "took {} more session(s) from pid {}",
                received.sessions.len(),
                received.from_pid
            );
            crate::handover::adopt(&control.relay, received.sessions).await;
        }
        Ok(Err(e)) => tracing::warn!("a late hand-over failed: {e}"),
        Err(e) => tracing::warn!("a late hand-over failed: {e}"),
    }
}

/// Refuses a peer running as another user (root excepted); the refusal is
/// an event.
fn check_peer(stream: &UnixStream, control: &Control) -> Result<(), ErrorReply> {
    let me = nix::unistd::geteuid().as_raw();
    let cred = stream.peer_cred().map_err(|e| ErrorReply {
        error: ErrorCode::PermissionDenied,
        message: format!("cannot read the peer's credentials: {e}"),
    })?;
    let uid = cred.uid();
    if uid == me || uid == 0 {
        return Ok(());
    }
    let reason = format!("peer uid {uid} is not the relay's uid {me}");
    control.relay.emit(RelayEvent::ControlRefused {
        at: SystemTime::now(),
        uid,
        pid: cred.pid(),
        reason: reason.clone(),
    });
    Err(ErrorReply {
        error: ErrorCode::PermissionDenied,
        message: format!("{reason}; run the command as the user that runs the relay"),
    })
}

fn parse(line: &str) -> Result<Request, ErrorReply> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| ErrorReply {
        error: ErrorCode::BadJson,
        message: format!(
            "not JSON ({e}); send one JSON object per line, e.g. {{\"request\":\"sessions\"}}"
        ),
    })?;
    serde_json::from_value(value).map_err(|e| ErrorReply {
        error: ErrorCode::BadRequest,
        message: format!(
            "not a request this relay understands ({e}); requests: {} (see docs/CONTROL.md)",
            <Request as strum::VariantNames>::VARIANTS.join(", ")
        ),
    })
}

enum Answer {
    /// A whole `{"ok":true,...}` line.
    Reply(String),
    Error(ErrorReply),
    /// The answer, then every new event until the client goes.
    Follow(EventsReply, broadcast::Receiver<RelayEvent>),
}

/// `{"ok": true}` plus the fields of `body`.
fn ok<T: Serialize>(body: &T) -> Answer {
    match ok_line(body) {
        Ok(text) => Answer::Reply(text),
        Err(e) => Answer::Error(e),
    }
}

fn ok_line<T: Serialize>(body: &T) -> Result<String, ErrorReply> {
    /// Written straight out: building a `serde_json::Value` of a 9,000
    /// session answer first cost more than the answer itself.
    #[derive(Serialize)]
    struct Ok<'a, T> {
        ok: bool,
        #[serde(flatten)]
        body: &'a T,
    }
    serde_json::to_string(&Ok { ok: true, body }).map_err(|e| ErrorReply {
        error: ErrorCode::Failed,
        message: format!("cannot encode the answer: {e}"),
    })
}

/// One request, one handler.
fn handle(control: &Control, request: Request) -> Answer {
    match request {
        Request::Hello => ok(&HelloReply {
            hello: control.hello(),
        }),
        Request::Sessions { domain } => match sessions(control, domain.as_deref()) {
            Ok(reply) => ok(&reply),
            Err(e) => Answer::Error(e),
        },
        Request::SessionsChanged {
            since,
            known,
            after,
            limit,
            brief,
        } => ok(&changes(
            control,
            since,
            known,
            Page {
                after,
                limit,
                brief,
            },
        )),
        Request::Session { id } => match session(control, id) {
            Ok(reply) => ok(&reply),
            Err(e) => Answer::Error(e),
        },
        Request::CloseSession { id, code, reason } => {
            match close_session(control, id, code, reason) {
                Ok(reply) => ok(&reply),
                Err(e) => Answer::Error(e),
            }
        }
        Request::Events { follow } => {
            let (events, rx) = control.events.recent(follow);
            let reply = EventsReply {
                events,
                following: follow,
            };
            match rx {
                Some(rx) => Answer::Follow(reply, rx),
                None => ok(&reply),
            }
        }
        // Answered in `client`: they take the connection over.
        Request::Takeover { .. } | Request::Give { .. } => Answer::Error(ErrorReply {
            error: ErrorCode::BadRequest,
            message: "takeover must be the first request of a connection".into(),
        }),
        Request::ConfigGet => ok(&control.config_reply()),
        Request::ConfigEdit { version, edit } => match control.config.edit(version, &edit) {
            Ok((config, _)) => {
                let mut detail = format!("{} (over the control socket)", edit.describe());
                if let Err(e) = control.relay.apply_edit(config) {
                    detail.push_str(&format!(
                        "; certificate {e}: the old certificate keeps being served"
                    ));
                }
                control.relay.emit(RelayEvent::ConfigApplied {
                    at: SystemTime::now(),
                    detail,
                });
                ok(&control.config_reply())
            }
            Err(e) => Answer::Error(e),
        },
        Request::Stop => {
            // The first asks for a drain; another, as a second SIGTERM,
            // ends the drain at once.
            if control.stop.is_cancelled() {
                control.stop_now.cancel();
            }
            control.stop.cancel();
            ok(&StoppingReply { stopping: true })
        }
        Request::Recommend { domain } => match recommend(control, &domain) {
            Ok(reply) => ok(&reply),
            Err(e) => Answer::Error(e),
        },
        Request::Evidence { domain } => match evidence(control, domain.as_deref()) {
            Ok(reply) => ok(&reply),
            Err(e) => Answer::Error(e),
        },
    }
}

/// The console's advice, from this relay's evidence and the config in force.
fn recommend(control: &Control, domain: &str) -> Result<RecommendReply, ErrorReply> {
    let config = control.relay.config();
    let now = tokio::time::Instant::now();
    advice::recommend_for(control.relay.registry(), &config, domain, now)
        .map(|recommendation| RecommendReply { recommendation })
        .map_err(|advice::AdviceError::UnknownDomain(d)| ErrorReply::unknown_domain(&d))
}

/// What the advice is made of: the counts of every domain, the cuts of
/// live clients, and one domain's sessions when asked (an unknown domain
/// is an error, as for `recommend`).
fn evidence(control: &Control, domain: Option<&str>) -> Result<EvidenceReply, ErrorReply> {
    let now = tokio::time::Instant::now();
    let registry = control.relay.registry();
    let evidence = match domain {
        Some(name) => {
            let config = control.relay.config();
            let d = config
                .domain(name)
                .ok_or_else(|| ErrorReply::unknown_domain(name))?;
            Some(EvidenceInfo::from(&registry.evidence(&d.name, now)))
        }
        None => None,
    };
    let history = registry.history();
    Ok(EvidenceReply {
        recent: history
            .counts(now)
            .iter()
            .map(|(d, c)| RecentInfo::of(d, c))
            .collect(),
        cut_while_alive: history.cut_while_alive_ids(now),
        evidence,
    })
}

/// The live sessions, of one domain when asked: a domain the config does
/// not have is an error, so a typo is not read as "no sessions".
fn sessions(control: &Control, domain: Option<&str>) -> Result<SessionsReply, ErrorReply> {
    let now = tokio::time::Instant::now();
    if let Some(d) = domain
        && control.relay.config().domain(d).is_none()
    {
        return Err(ErrorReply::unknown_domain(d));
    }
    let mut stats = control.relay.registry().sessions();
    if let Some(d) = domain {
        stats.retain(|s| s.domain == d);
    }
    stats.sort_by_key(|s| s.id);
    Ok(SessionsReply {
        sessions: stats
            .iter()
            .map(|s| SessionInfo::of_stats(s, now))
            .collect(),
    })
}

/// A page of a `sessions-changed` answer: ids above `after`, at most `limit`
/// sessions (a brief row a quarter of one).
#[derive(Debug, Clone, Copy)]
struct Page {
    after: Option<SessionId>,
    limit: Option<usize>,
    brief: bool,
}

/// What a row of a page costs against its `limit`, in quarters.
const FULL_ROW: usize = 4;
const BRIEF_ROW: usize = 1;

fn changes(
    control: &Control,
    since: Option<u64>,
    known: Option<IdSummary>,
    page: Page,
) -> ChangesReply {
    let now = tokio::time::Instant::now();
    let registry = control.relay.registry();
    // Taken before looking: a frame passing meanwhile shows again next time.
    let clock = registry.clock_ms(now);
    // One pass: every id, and the few sessions that changed.
    // Told of already: in the table when the answer `since` names was
    // made, so described then or before; a brief row does. One that
    // entered it since is described in full.
    let told = |s: &SessionStats| page.brief && since.is_some_and(|t| !s.registered_since(t));
    let mut ids = Vec::new();
    let mut changed = Vec::new();
    registry.for_each_session(|s| {
        ids.push(s.id);
        if since.is_none_or(|t| s.changed_since(t)) && page.after.is_none_or(|after| s.id > after) {
            // Id and kind of row beside each: sorting and paging need no
            // further trip to the session.
            changed.push((s.id, told(s), s.clone()));
        }
    });
    let mut more = false;
    if let Some(limit) = page.limit {
        changed.sort_unstable_by_key(|(id, ..)| *id);
        let budget = limit.saturating_mul(FULL_ROW);
        let mut spent = 0;
        let fits = changed
            .iter()
            .take_while(|(_, told, _)| {
                spent += if *told { BRIEF_ROW } else { FULL_ROW };
                spent <= budget
            })
            .count();
        more = changed.len() > fits;
        changed.truncate(fits);
    }
    let summary = IdSummary::of(ids.iter().copied());
    let (moved, changed): (Vec<_>, Vec<_>) = changed.into_iter().partition(|(_, told, _)| *told);
    ChangesReply {
        clock,
        // The first page carries the ids; the next ones need not.
        ids: (page.after.is_none() && known != Some(summary)).then_some(ids),
        changed: changed
            .iter()
            .map(|(.., s)| SessionInfo::of_stats(s, now))
            .collect(),
        moved: moved
            .iter()
            .map(|(.., s)| BriefInfo::of_stats(s, now))
            .collect(),
        more,
    }
}

fn unknown_session(id: SessionId) -> ErrorReply {
    ErrorReply {
        error: ErrorCode::UnknownSession,
        message: format!("no live session #{id}; `ecdn-console sessions` lists the live ones"),
    }
}

fn session(control: &Control, id: SessionId) -> Result<SessionReply, ErrorReply> {
    let stats = control
        .relay
        .registry()
        .get(id)
        .ok_or_else(|| unknown_session(id))?;
    let now = tokio::time::Instant::now();
    Ok(SessionReply {
        session: SessionDetail {
            session: SessionInfo::of_stats(&stats, now),
            recent_frames: stats.recent_frames().iter().map(FrameInfo::of).collect(),
        },
    })
}

/// Close codes an endpoint may send (RFC 6455 §7.4, IANA registry).
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A close reason must fit a control frame (125 bytes with the code).
pub const MAX_CLOSE_REASON: usize = 123;

fn close_session(
    control: &Control,
    id: SessionId,
    code: Option<u16>,
    reason: Option<String>,
) -> Result<ClosedReply, ErrorReply> {
    let code = code.unwrap_or(1001);
    if !valid_close_code(code) {
        return Err(ErrorReply {
            error: ErrorCode::BadCloseCode,
            message: format!(
                "close code {code} may not be sent; use 1000-1003, 1007-1014 or 3000-4999 (default 1001)"
            ),
        });
    }
    let reason = reason.unwrap_or_else(|| "closed by operator".into());
    if reason.len() > MAX_CLOSE_REASON {
        return Err(ErrorReply {
            error: ErrorCode::BadCloseCode,
            message: format!(
                "close reason is {} bytes; a close frame holds at most {MAX_CLOSE_REASON}",
                reason.len()
            ),
        });
    }
    let stats = control
        .relay
        .registry()
        .get(id)
        .ok_or_else(|| unknown_session(id))?;
    stats.request_close_with(CloseInfo::new(code, reason.clone()));
    Ok(ClosedReply {
        closing: id,
        code,
        reason,
    })
}

/// Events written in one write at most: a burst (500 sessions opening at
/// once) goes out in a few writes, not one per event.
const FOLLOW_BATCH: usize = 256;

/// Streams events until the client goes or falls too far behind. Events
/// that queued while the previous write went out leave together: one
/// write and one wake-up of the client per batch instead of per event,
/// which is what a console competing for CPU with a busy relay feels.
async fn follow(out: &mut Out, mut rx: broadcast::Receiver<RelayEvent>) {
    use broadcast::error::{RecvError, TryRecvError};
    let mut batch = Vec::new();
    loop {
        let mut received = rx.recv().await;
        let mut lines = 0;
        // `Some`: the stream ends after this batch.
        let end = loop {
            match received {
                Ok(event) => {
                    if append_line(&mut batch, &EventLine { event }).is_err() {
                        return;
                    }
                    lines += 1;
                }
                Err(e) => break Some(e),
            }
            if lines == FOLLOW_BATCH {
                break None;
            }
            received = match rx.try_recv() {
                Ok(event) => Ok(event),
                Err(TryRecvError::Empty) => break None,
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
        };
        if out.lines(&batch).await.is_err() {
            return;
        }
        batch.clear();
        match end {
            None => {}
            Some(RecvError::Lagged(n)) => {
                let _ = out
                    .error(&ErrorReply {
                        error: ErrorCode::Lagged,
                        message: format!(
                            "this client fell {n} events behind and is dropped; reconnect"
                        ),
                    })
                    .await;
                return;
            }
            Some(RecvError::Closed) => return,
        }
    }
}

/// Adds `body` as one JSON line to `batch`.
fn append_line<T: Serialize>(batch: &mut Vec<u8>, body: &T) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *batch, body)?;
    batch.push(b'\n');
    Ok(())
}

/// A client's write half; every write is bounded in time.
struct Out(OwnedWriteHalf);

impl Out {
    async fn raw(&mut self, text: &str) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(text.len() + 1);
        buf.extend_from_slice(text.as_bytes());
        buf.push(b'\n');
        self.lines(&buf).await
    }

    /// Whole lines, each ending in a newline (nothing to write: nothing done).
    async fn lines(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(WRITE_TIMEOUT, self.0.write_all(buf)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "control client does not read",
            )),
        }
    }

    async fn line<T: Serialize>(&mut self, body: &T) -> std::io::Result<()> {
        let text = serde_json::to_string(body).map_err(std::io::Error::other)?;
        self.raw(&text).await
    }

    async fn ok<T: Serialize>(&mut self, body: &T) -> std::io::Result<()> {
        match ok_line(body) {
            Ok(text) => self.raw(&text).await,
            Err(e) => self.error(&e).await,
        }
    }

    async fn error(&mut self, e: &ErrorReply) -> std::io::Result<()> {
        let mut value = serde_json::json!({ "ok": false });
        if let (Some(map), Ok(serde_json::Value::Object(fields))) =
            (value.as_object_mut(), serde_json::to_value(e))
        {
            map.extend(fields);
        }
        self.raw(&value.to_string()).await
    }
}
