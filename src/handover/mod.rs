//! Live session hand-over between two relay processes (DESIGN §7): the
//! listeners and every plain-TCP session move, descriptors and state, so
//! that no byte is lost and no peer sees a close.
//!
//! It starts on the old relay's control socket (`{"request": "takeover",
//! "version": N}`, see docs/CONTROL.md); after the `ok` answer that
//! connection carries the messages of [`wire`]:
//!
//! ```text
//! old → new  begin     version, pid, build; the evidence of the sessions
//!                      that ended in the last 10 minutes (for advice) and
//!                      the ring of recent events (the Event Log of a
//!                      console that attaches afterwards) — before any
//!                      session is paused, so they add nothing to a pause
//! old → new  sessions  up to 100 sessions' state, 2 descriptors each (×n):
//!                      the idle ones first, then the busy ones
//! old → new  listeners the listening sockets (descriptors attached)
//! old → new  end       counts
//! new → old  ready     everything received, the new relay is running
//! old → new  committed the old process has let go
//! ```
//!
//! Until `ready` reaches it, the old process can put everything back (the
//! sessions were only paused); once it has it, it lets go and says
//! `committed`, and only then does the new process start the sessions, so
//! no session is ever run by two processes. A new process that dies, or a
//! connection that drops, before `ready` leaves everything with the old one.
//! The control socket's path changes hands just before `ready` by a rename
//! (see `control::server`), so it answers throughout.

pub mod wire;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::relay::history::EndedState;
use crate::relay::{
    LaneState, ListenerKind, MovedListener, MovedSession, RelayEvent, RelayLink, StatsState,
};

/// The hand-over's version: both processes must speak the same one.
pub const HANDOVER_VERSION: u32 = 1;
/// Sessions per `sessions` message (two descriptors each).
const BATCH: usize = wire::MAX_FDS / 2;
/// How long the old process waits for the new one's `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long either side waits for the other's next message otherwise.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Test knob: the new process waits this many milliseconds before `ready`.
pub const STALL_ENV: &str = "ECDN_CONSOLE_TAKEOVER_STALL_MS";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Message {
    Begin {
        version: u32,
        pid: u32,
        build: String,
        /// What the sessions ended in the last 10 minutes showed. Added
        /// within version 1: an older process leaves it out, or ignores it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        evidence: Vec<EndedState>,
        /// The sender's monotonic clock when `evidence` was taken (ns).
        #[serde(default)]
        clock_ns: u64,
        /// The sender's ring of recent events, oldest first.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        events: Vec<RelayEvent>,
    },
    Sessions {
        /// The sender's monotonic clock when the message was made (ns).
        clock_ns: u64,
        sessions: Vec<SessionWire>,
    },
    /// One per attached descriptor.
    Listeners {
        listeners: Vec<ListenerKind>,
    },
    End {
        sessions: usize,
        /// Sessions that cannot move (TLS) and stay with the old process.
        stays: usize,
    },
    Ready {
        pid: u32,
    },
    Committed,
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionWire {
    stats: StatsState,
    lanes: [LaneState; 2],
    /// When `stats` was taken: this much before the message's clock (ns).
    before_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("a hand-over is already under way, or the relay is stopping")]
    Busy,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the other process broke the protocol: {0}")]
    Protocol(String),
    #[error(
        "the other process speaks hand-over version {theirs}, this one {HANDOVER_VERSION}; \
         restart the relay instead (its sessions get 1001), or use matching builds"
    )]
    Version { theirs: u32 },
    #[error("cannot reach a relay on {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the relay on {path} refused the hand-over: {message}")]
    Refused { path: PathBuf, message: String },
}

fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| u64::try_from(Duration::from(t).as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What the old process reports once it has handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiveReport {
    pub to_pid: u32,
    pub sessions: usize,
    pub listeners: usize,
    pub stays: usize,
    pub took: Duration,
    /// How long the busy sessions (the second wave) were paused.
    pub busy_paused: Duration,
}

/// The old process's side, on the control connection that asked for it.
///
/// Sessions move in two waves: first those idle for [`IDLE_FIRST`] or
/// more (most of them, usually) while the busy ones keep running; then the
/// rest and the listeners. A busy session is paused only for the second
/// wave and the commit, a few milliseconds, not for the whole transfer.
/// It runs on a thread of its own at a lower priority (the socket work
/// blocks it), not on the caller's, nor on the data path's.
/// `events`: the relay's ring of recent events, carried along.
pub async fn give(
    relay: &RelayLink,
    stream: UnixStream,
    events: Vec<RelayEvent>,
) -> Result<GiveReport, HandoverError> {
    let relay = relay.clone();
    on_a_thread_that_gives_way("handover", move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(give_with(&relay, stream, Some(events)))
    })
    .await?
}

/// Starts the sessions a hand-over brought on `relay`'s workers; returns
/// once every one is in the table (so `sessions` and `attach` list them
/// all). The work runs on a thread that gives way to the workers, which
/// meanwhile carry the busy sessions (started first).
pub async fn adopt(relay: &RelayLink, sessions: Vec<Box<MovedSession>>) {
    let pending = Arc::new(Mutex::new(Some(sessions)));
    let (link, on_thread) = (relay.clone(), pending.clone());
    let adopted = on_a_thread_that_gives_way("adopt", move || {
        if let Some(sessions) = take(&on_thread) {
            link.adopt(sessions);
        }
    })
    .await;
    if let Err(e) = adopted {
        // No thread to be had: here, then, rather than lose them.
        tracing::warn!("the moved sessions start at the workers' priority: {e}");
        if let Some(sessions) = take(&pending) {
            relay.adopt(sessions);
        }
    }
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .take()
}

/// How much lower than the relay's workers the two ends of a hand-over run.
const HANDOVER_NICE: i32 = 10;

/// Runs `work` on a thread of its own whose priority is lowered by
/// [`HANDOVER_NICE`] (on Linux, `nice` is the thread's): moving 9,000
/// sessions keeps one thread in each process busy for a third of a second,
/// and on a machine whose cores the relay's workers fill, the busy
/// sessions' frames must not wait for it. The lowered priority ends with
/// the thread: lowering the caller's own (the control server's, or a
/// blocking-pool thread's) would outlast the hand-over, since raising it
/// again needs CAP_SYS_NICE.
pub async fn on_a_thread_that_gives_way<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Err(e) = rustix::process::nice(HANDOVER_NICE) {
                tracing::info!("the hand-over runs at the workers' priority: {e}");
            }
            let _ = done.send(work());
        })?;
    result
        .await
        .map_err(|_| std::io::Error::other("the hand-over's thread ended without an answer"))
}

/// After a hand-over: the sessions whose handshakes were still under way
/// then (they started here once the listeners had gone) follow in a
/// second, smaller round to the process now answering on `path` — it
/// asked for none of them, so this process asks it to take them (`give`).
pub async fn give_late(relay: &RelayLink, path: &Path) -> Result<GiveReport, HandoverError> {
    let stream = ask(path, "give")?;
    give_with(relay, stream, None).await
}

/// `events` is `Some` for the hand-over itself (listeners, evidence and
/// events go along), `None` for the late round (sessions only).
async fn give_with(
    relay: &RelayLink,
    stream: UnixStream,
    events: Option<Vec<RelayEvent>>,
) -> Result<GiveReport, HandoverError> {
    let with_listeners = events.is_some();
    let started = std::time::Instant::now();
    let mut collected = relay
        .begin_handover(with_listeners)
        .ok_or(HandoverError::Busy)?;
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(STEP_TIMEOUT))?;
    // A late round goes to a relay that already has the evidence.
    let clock_ns = monotonic_ns();
    let evidence = if with_listeners {
        relay.registry().history().export(Instant::now())
    } else {
        Vec::new()
    };
    // Any error from here drops `collected`, which puts every session back.
    wire::send(
        &stream,
        &Message::Begin {
            version: HANDOVER_VERSION,
            pid: std::process::id(),
            build: env!("CARGO_PKG_VERSION").to_string(),
            evidence,
            clock_ns,
            events: events.unwrap_or_default(),
        },
        &[],
    )?;
    let idle = collected.pause_idle(IDLE_FIRST).await;
    send_sessions(&stream, &collected.sessions[idle])?;
    let second_wave = std::time::Instant::now();
    let rest = collected.pause_rest().await;
    send_sessions(&stream, &collected.sessions[rest])?;
    let listener_fds: Vec<RawFd> = collected
        .listeners
        .iter()
        .map(|l| l.listener.as_raw_fd())
        .collect();
    let listeners = collected.listeners.iter().map(|l| l.kind).collect();
    wire::send(&stream, &Message::Listeners { listeners }, &listener_fds)?;
    let (sessions, listeners, stays) = (
        collected.sessions.len(),
        collected.listeners.len(),
        collected.stays,
    );
    wire::send(&stream, &Message::End { sessions, stays }, &[])?;
    stream.set_read_timeout(Some(READY_TIMEOUT))?;
    let (answer, _) = wire::recv::<Message>(&stream)?;
    let Message::Ready { pid: to_pid } = answer else {
        return Err(HandoverError::Protocol(format!(
            "expected ready, got {answer:?}"
        )));
    };
    // The commit point: from here on the sessions are the new process's.
    collected.commit();
    // The new process starts the sessions when it reads this; if it never
    // does, it has died and they are lost with it either way.
    let _ = wire::send(&stream, &Message::Committed, &[]);
    let took = started.elapsed();
    let busy_paused = second_wave.elapsed();
    // Closing this process's copies of the descriptors, after the new
    // process could already go on.
    drop(collected);
    Ok(GiveReport {
        to_pid,
        sessions,
        listeners,
        stays,
        took,
        busy_paused,
    })
}

/// Sessions idle this long move in the first wave, while the rest still run.
pub const IDLE_FIRST: Duration = Duration::from_millis(500);

fn send_sessions(stream: &UnixStream, sessions: &[Box<MovedSession>]) -> Result<(), HandoverError> {
    for batch in sessions.chunks(BATCH) {
        let now = Instant::now();
        let clock_ns = monotonic_ns();
        let mut fds = Vec::with_capacity(batch.len() * 2);
        let mut wires = Vec::with_capacity(batch.len());
        for s in batch {
            fds.push(s.client.as_raw_fd());
            fds.push(s.origin.as_raw_fd());
            wires.push(SessionWire {
                stats: s.stats.clone(),
                lanes: s.lanes.clone(),
                before_ns: u64::try_from(now.saturating_duration_since(s.exported_at).as_nanos())
                    .unwrap_or(0),
            });
        }
        let message = Message::Sessions {
            clock_ns,
            sessions: wires,
        };
        wire::send(stream, &message, &fds)?;
    }
    Ok(())
}

/// The new process's side: connected, version agreed, nothing received yet.
#[derive(Debug)]
pub struct Takeover {
    stream: UnixStream,
    path: PathBuf,
}

/// What the old process handed over, not yet started.
#[derive(Debug)]
pub struct Received {
    pub from_pid: u32,
    pub from_build: String,
    pub listeners: Vec<MovedListener>,
    /// Boxed: a moved session is a large value that adopting moves about.
    pub sessions: Vec<Box<MovedSession>>,
    pub stays: usize,
    /// The old relay's evidence, for `History::restore`, and when (on
    /// this process's clock) it was taken.
    pub evidence: Vec<EndedState>,
    pub evidence_at: Instant,
    /// Its ring of recent events, oldest first.
    pub events: Vec<RelayEvent>,
}

impl Takeover {
    /// Connects to the relay on the control socket `path` and asks for its
    /// sessions.
    pub fn connect(path: &Path) -> Result<Self, HandoverError> {
        let stream = ask(path, "takeover")?;
        Ok(Self {
            stream,
            path: path.to_path_buf(),
        })
    }

    /// The receiving side on a connection that asked to give (see
    /// [`give_late`]).
    pub fn on(stream: UnixStream, path: &Path) -> Result<Self, HandoverError> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(STEP_TIMEOUT))?;
        stream.set_write_timeout(Some(STEP_TIMEOUT))?;
        Ok(Self {
            stream,
            path: path.to_path_buf(),
        })
    }
}

/// Connects to the control socket `path`, reads the hello and asks for a
/// hand-over (`takeover` or `give`); the stream, once the answer is `ok`.
fn ask(path: &Path, request: &str) -> Result<UnixStream, HandoverError> {
    let connect_error = |source| HandoverError::Connect {
        path: path.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(path).map_err(connect_error)?;
    stream.set_read_timeout(Some(STEP_TIMEOUT))?;
    stream.set_write_timeout(Some(STEP_TIMEOUT))?;
    let hello = read_line(&stream)?;
    let hello: serde_json::Value = serde_json::from_str(&hello)
        .map_err(|e| HandoverError::Protocol(format!("not a control socket hello: {e}")))?;
    if hello.get("hello").is_none() {
        let message = hello["message"].as_str().unwrap_or("no hello").to_string();
        return Err(HandoverError::Refused {
            path: path.to_path_buf(),
            message,
        });
    }
    let request = serde_json::json!({ "request": request, "version": HANDOVER_VERSION });
    let mut out = &stream;
    std::io::Write::write_all(&mut out, format!("{request}\n").as_bytes())?;
    let answer = read_line(&stream)?;
    let answer: serde_json::Value = serde_json::from_str(&answer)
        .map_err(|e| HandoverError::Protocol(format!("answer is not JSON: {e}")))?;
    if answer["ok"] != serde_json::Value::Bool(true) {
        let message = answer["message"]
            .as_str()
            .unwrap_or("no reason given")
            .to_string();
        return Err(HandoverError::Refused {
            path: path.to_path_buf(),
            message,
        });
    }
    Ok(stream)
}

impl Takeover {
    /// The control socket the old relay answered on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Receives the listeners and every session (paused in the old process).
    pub fn receive(&mut self) -> Result<Received, HandoverError> {
        let (begin, _) = wire::recv::<Message>(&self.stream)?;
        let Message::Begin {
            version,
            pid,
            build,
            evidence,
            clock_ns,
            events,
        } = begin
        else {
            return Err(HandoverError::Protocol(format!(
                "expected begin, got {begin:?}"
            )));
        };
        if version != HANDOVER_VERSION {
            return Err(HandoverError::Version { theirs: version });
        }
        let evidence_at = on_our_clock(clock_ns);
        let mut events = Some(events);
        let mut evidence = Some(evidence);
        let mut sessions = Vec::new();
        let mut listeners = Vec::new();
        loop {
            let (message, fds) = wire::recv::<Message>(&self.stream)?;
            match message {
                Message::Sessions {
                    clock_ns,
                    sessions: batch,
                } => {
                    if fds.len() != batch.len() * 2 {
                        return Err(HandoverError::Protocol(
                            "session descriptors do not match the sessions".into(),
                        ));
                    }
                    let exported = on_our_clock(clock_ns);
                    let mut fds = fds.into_iter();
                    for s in batch {
                        let (Some(client), Some(origin)) = (fds.next(), fds.next()) else {
                            break;
                        };
                        sessions.push(Box::new(received(s, client, origin, exported)));
                    }
                }
                Message::Listeners { listeners: kinds } => {
                    if kinds.len() != fds.len() {
                        return Err(HandoverError::Protocol(
                            "listener descriptors do not match their kinds".into(),
                        ));
                    }
                    listeners.extend(kinds.into_iter().zip(fds).map(|(kind, fd)| MovedListener {
                        kind,
                        listener: std::net::TcpListener::from(fd),
                    }));
                }
                Message::End {
                    sessions: expected,
                    stays,
                } => {
                    if sessions.len() != expected {
                        return Err(HandoverError::Protocol(format!(
                            "announced {expected} sessions, sent {}",
                            sessions.len()
                        )));
                    }
                    return Ok(Received {
                        from_pid: pid,
                        from_build: build,
                        listeners,
                        sessions,
                        stays,
                        evidence: evidence.take().unwrap_or_default(),
                        evidence_at,
                        events: events.take().unwrap_or_default(),
                    });
                }
                other => {
                    return Err(HandoverError::Protocol(format!(
                        "expected sessions, listeners or end, got {other:?}"
                    )));
                }
            }
        }
    }

    /// Tells the old process everything arrived and waits for it to let go.
    /// Only after `Ok` may the sessions run here.
    pub fn confirm(self) -> Result<(), HandoverError> {
        if let Some(ms) = std::env::var(STALL_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            std::thread::sleep(Duration::from_millis(ms));
        }
        wire::send(
            &self.stream,
            &Message::Ready {
                pid: std::process::id(),
            },
            &[],
        )?;
        match wire::recv::<Message>(&self.stream)?.0 {
            Message::Committed => Ok(()),
            other => Err(HandoverError::Protocol(format!(
                "expected committed, got {other:?}"
            ))),
        }
    }
}

/// The old process's clock reading, mapped onto ours: both are the
/// machine's monotonic clock, so an idle clock does not move.
fn on_our_clock(clock_ns: u64) -> Instant {
    Instant::now()
        .checked_sub(Duration::from_nanos(
            monotonic_ns().saturating_sub(clock_ns),
        ))
        .unwrap_or_else(Instant::now)
}

fn received(s: SessionWire, client: OwnedFd, origin: OwnedFd, exported: Instant) -> MovedSession {
    let at = exported
        .checked_sub(Duration::from_nanos(s.before_ns))
        .unwrap_or(exported);
    MovedSession::received(
        s.stats,
        s.lanes,
        std::net::TcpStream::from(client),
        std::net::TcpStream::from(origin),
        at,
    )
}

/// Reads one `\n`-terminated line, a byte at a time: what follows it is
/// the binary hand-over, which must stay unread.
fn read_line(stream: &UnixStream) -> Result<String, HandoverError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let mut input = stream;
    loop {
        let n = std::io::Read::read(&mut input, &mut byte)?;
        if n == 0 {
            return Err(HandoverError::Protocol(
                "the relay closed the connection".into(),
            ));
        }
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
        if line.len() > 64 * 1024 {
            return Err(HandoverError::Protocol("endless line".into()));
        }
    }
    String::from_utf8(line).map_err(|e| HandoverError::Protocol(e.to_string()))
}
