//! One task per session: a single `select!` over both sockets, the idle
//! deadline, config changes, operator close and shutdown.
//!
//! Bytes are forwarded as they are read; only frame headers are looked at
//! (see `frame.rs`). A direction whose destination is not writable keeps its
//! unwritten bytes and stops reading its source until they drain, so memory
//! per session is bounded by one read, and an idle session holds nothing.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;

use tokio::io::{Interest, Ready};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::ReusableBoxFuture;

use serde::{Deserialize, Serialize};

use super::event::{CloseCause, CloseInfo};
use super::grace;
use super::handover::{Interrupts, Moved};
use super::io::{RawIo, ReadNow, ready_for, with_read_buf, write_now};
use super::registry::{Direction, SessionStats};
use crate::config::{Config, IdleCloseMode, Status, effective_timeout};
use crate::ws::close;
use crate::ws::frame::{FrameKind, FrameScanner, Violation, close_frame};

/// How long the relay waits for the close handshake it started (or that
/// one side started) before dropping both connections.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Reads per readiness event before giving the other branches a turn.
const READS_PER_WAKE: usize = 4;

/// Everything a session needs besides its two sockets.
pub struct SessionSetup {
    pub stats: Arc<SessionStats>,
    pub client_leftover: Vec<u8>,
    pub origin_leftover: Vec<u8>,
    pub extensions: bool,
    pub config: watch::Receiver<Arc<Config>>,
    /// The relay's shutdown and hand-over.
    pub interrupts: Arc<Interrupts>,
    /// Where a session handed over (or put back after a refused hand-over)
    /// resumes: each direction's scanner and unsent bytes.
    pub resume: Option<Box<[LaneState; 2]>>,
}

/// One direction of a session as it moves to another process: where its
/// frame scanner stands and the bytes read but not yet written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaneState {
    scanner: FrameScanner,
    #[serde(with = "base64_bytes")]
    pending: Vec<u8>,
}

/// How a session's task ended.
pub enum Outcome {
    /// Both sides are closed.
    Ended(SessionEnd),
    /// Stopped, untouched, for a hand-over: both sockets and where each
    /// direction stands (client → origin first).
    Paused(Box<PausedSession>),
}

/// A session between two frames of its loop, ready to move.
pub struct PausedSession {
    pub lanes: [LaneState; 2],
    pub client: std::net::TcpStream,
    pub origin: std::net::TcpStream,
}

/// How a session ended, for the `Closed` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    pub cause: CloseCause,
    pub to_client: Option<CloseInfo>,
    pub to_origin: Option<CloseInfo>,
    pub idle: Duration,
}

/// One direction of the session.
struct Lane {
    direction: Direction,
    scanner: FrameScanner,
    /// Bytes read but not yet taken by the destination.
    pending: Vec<u8>,
    /// The source sent its close frame.
    source_closed: bool,
    /// Pass what is read on; false once the relay closes the session itself
    /// (bytes are then only scanned for the close reply).
    forwarding: bool,
}

impl Lane {
    fn state(&mut self) -> LaneState {
        LaneState {
            scanner: self.scanner.clone(),
            pending: std::mem::take(&mut self.pending),
        }
    }

    fn restore(&mut self, state: LaneState) {
        self.scanner = state.scanner;
        self.pending = state.pending;
    }

    fn new(direction: Direction, max_message_bytes: u64, extensions: bool) -> Self {
        Self {
            direction,
            scanner: FrameScanner::new(
                direction == Direction::ClientToOrigin,
                max_message_bytes,
                extensions,
            ),
            pending: Vec::new(),
            source_closed: false,
            forwarding: true,
        }
    }
}

/// What happened on a lane while reading or writing.
enum LaneEvent {
    Nothing,
    SourceGone,
    DestinationGone,
    Violation(Violation),
    Close(CloseInfo),
}

enum Phase {
    Open,
    /// A close is under way; drop both connections at this instant at the latest.
    Closing(Instant),
}

/// Which side an event concerns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Origin,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Origin => 1,
        }
    }
}

struct Pump {
    /// Also where the session's domain name is (`stats.domain`).
    stats: Arc<SessionStats>,
    /// Per source side (`Side::index`): the client's lane carries
    /// client → origin, the origin's origin → client.
    lanes: [Lane; 2],
    /// Per side: its connection ended or failed.
    gone: [bool; 2],
    phase: Phase,
    timeout: Option<Duration>,
    ping_resets_idle: bool,
    idle_close: IdleCloseMode,
    cause: Option<CloseCause>,
    idle_at_close: Duration,
    to_client: Option<CloseInfo>,
    to_origin: Option<CloseInfo>,
    /// After a client's protocol error, the close owed to the client: sent
    /// once the origin has answered the relay's close, so frames the origin
    /// sent before (echoes of earlier messages) still reach the client —
    /// as they would without a relay in between.
    owed_to_client: Option<(u16, String)>,
    /// Per side (`Side::index`): end its TCP once what waits for it is
    /// written, mirroring a peer that vanished.
    fin_owed: [bool; 2],
}

/// Runs a session until both sides are closed; never panics, never blocks.
///
/// A plain function that prepares the session and returns the loop as an
/// `async move` block using its captures in place: an `async fn` would keep
/// its arguments beside the locals it moves them into, and every idle
/// session would pay for both.
pub fn run<C: RawIo, O: RawIo>(
    client: C,
    origin: O,
    setup: SessionSetup,
) -> impl std::future::Future<Output = Outcome> + Send {
    let SessionSetup {
        stats,
        client_leftover,
        origin_leftover,
        extensions,
        mut config,
        interrupts,
        resume,
    } = setup;
    let current = config.borrow_and_update().clone();
    let max = current.relay.max_message_bytes;
    let mut pump = Pump {
        stats: stats.clone(),
        lanes: [
            Lane::new(Direction::ClientToOrigin, max, extensions),
            Lane::new(Direction::OriginToClient, max, extensions),
        ],
        gone: [false; 2],
        phase: Phase::Open,
        timeout: None,
        ping_resets_idle: true,
        idle_close: current.relay.idle_close,
        cause: None,
        idle_at_close: Duration::ZERO,
        to_client: None,
        to_origin: None,
        owed_to_client: None,
        fin_owed: [false; 2],
    };
    if let Some(lanes) = resume {
        for (lane, state) in pump.lanes.iter_mut().zip(*lanes) {
            lane.restore(state);
        }
    }
    // Frames that arrived in the same packets as the handshakes.
    for (side, bytes) in [
        (Side::Client, client_leftover),
        (Side::Origin, origin_leftover),
    ] {
        if !bytes.is_empty() {
            let event = pump.ingest(side, &bytes, &client, &origin);
            pump.on_lane_event(side, event, &client, &origin);
        }
    }
    async move {
        let idle_timer = sleep_until(Instant::now());
        tokio::pin!(idle_timer);
        pump.apply_config(&current, idle_timer.as_mut());
        // The config may have changed since the handshake checked it: a
        // deleted domain's session must not run with no idle limit at all.
        pump.check_domain(&current, &client, &origin);
        drop(current);

        // Cancelled by an operator's close, or by the relay's shutdown (it is
        // a child of the shutdown token): one future instead of two. It and
        // the config watch are created once, not on every turn of the loop:
        // each creation registers a waiter under a lock, per frame.
        let stopped = stats.close_requested().clone().cancelled_owned();
        tokio::pin!(stopped);
        let mut changes = ReusableBoxFuture::new(next_change(config));
        let mut config_alive = true;
        let mut paused = false;
        // The idle timer, the close grace, config changes and close requests
        // wake the task through this, so a turn woken by a socket does not
        // poll them again (each poll takes a lock or two).
        let control = Arc::new(ControlWake::default());
        control.poll_all();
        let mut was_open = true;
        while !pump.finished() {
            let open = matches!(pump.phase, Phase::Open);
            if open != was_open {
                // Closing: the grace must be waited on, the rest no longer.
                control.poll_all();
                was_open = open;
            }
            let client_interest = pump.interest(Side::Client);
            let origin_interest = pump.interest(Side::Origin);
            tokio::select! {
                // The client is readable (client → origin, read only while the
                // origin has taken everything) or writable (leftovers for it).
                r = ready_for(&client, client_interest.unwrap_or(Interest::READABLE)), if client_interest.is_some() => {
                    pump.on_ready(Side::Client, r, &client, &origin);
                }
                // The origin, likewise.
                r = ready_for(&origin, origin_interest.unwrap_or(Interest::READABLE)), if origin_interest.is_some() => {
                    pump.on_ready(Side::Origin, r, &client, &origin);
                }
                // Open: the idle deadline (re-armed from the recorded last
                // activity, so a busy session costs one atomic store per
                // frame and no timer work), a new configuration (it applies
                // to live sessions at once), a close request. Closing: the
                // close handshake took too long.
                fired = Control {
                    wake: &control,
                    pump: &pump,
                    idle: idle_timer.as_mut(),
                    changes: &mut changes,
                    config_alive,
                    stopped: stopped.as_mut(),
                } => {
                    // What it fired for may have changed the others (a timer
                    // re-armed, a new config future): poll all next turn.
                    control.poll_all();
                    match fired {
                        Fired::Idle => pump.on_idle_timer(idle_timer.as_mut(), &client, &origin),
                        Fired::Grace => {
                            pump.pay_owed_close(&client);
                            break;
                        }
                        Fired::Changed((changed, mut config)) => match changed {
                            Ok(()) => {
                                let new = config.borrow_and_update().clone();
                                changes.set(next_change(config));
                                pump.apply_config(&new, idle_timer.as_mut());
                                pump.check_domain(&new, &client, &origin);
                            }
                            Err(_) => config_alive = false,
                        },
                        Fired::Stopped => {
                            if interrupts.shutdown.is_cancelled() {
                                pump.relay_close(CloseCause::Shutdown, &client, &origin);
                            } else if stats.operator_requested() {
                                let (code, reason) = stats.operator_close_frame();
                                let reason = reason.to_string();
                                pump.relay_close_with(CloseCause::Operator, code, &reason, &client, &origin);
                            } else if interrupts.collecting() && pump.movable() && client.movable() && origin.movable() {
                                paused = true;
                                break;
                            } else {
                                // A hand-over cannot take it (a TLS side): it stays
                                // here, still closed by the shutdown (its own token
                                // has fired for good, so an operator's close of it
                                // now waits for the shutdown).
                                stopped.set(interrupts.shutdown.clone().cancelled_owned());
                                if interrupts.collecting() {
                                    let _ = interrupts.report(Moved::Stays(stats.id));
                                }
                            }
                        }
                    }
                }
            }
        }
        if let Phase::Closing(until) = pump.phase {
            // Finished closing within the grace (or cut at its end).
            grace::forget(stats.id, until);
        }
        if paused {
            let lanes = pump.lanes.each_mut().map(Lane::state);
            if let (Some(client), Some(origin)) = (client.into_movable(), origin.into_movable()) {
                return Outcome::Paused(Box::new(PausedSession {
                    lanes,
                    client,
                    origin,
                }));
            }
            // The reactor would not let go of a socket (it cannot happen
            // short of a kernel error): the session is lost with it.
            pump.set_cause(CloseCause::ClientVanished);
        }
        Outcome::Ended(pump.end())
    }
}

/// The next config change and the receiver for the one after.
type Change = (
    Result<(), watch::error::RecvError>,
    watch::Receiver<Arc<Config>>,
);

/// Which of the rarely firing branches fired.
enum Fired {
    Idle,
    Grace,
    Changed(Change),
    Stopped,
}

/// The waker the rarely firing branches are polled with: it notes that one
/// of them may be ready, then wakes the session's task.
#[derive(Default)]
struct ControlWake {
    pending: AtomicBool,
    task: AtomicWaker,
}

impl ControlWake {
    /// Poll every branch on the next turn (the first, or after a change).
    fn poll_all(&self) {
        self.pending.store(true, Ordering::Release);
    }
}

impl Wake for ControlWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.poll_all();
        self.task.wake();
    }
}

/// The idle timer, the close grace, config changes and the close request
/// as one branch, polled only when one of them woke the task: a turn woken
/// by a socket costs one atomic load here instead of a poll of each (the
/// config watch's and the close token's polls take locks).
struct Control<'a, S> {
    wake: &'a Arc<ControlWake>,
    pump: &'a Pump,
    idle: Pin<&'a mut tokio::time::Sleep>,
    changes: &'a mut ReusableBoxFuture<'static, Change>,
    config_alive: bool,
    stopped: Pin<&'a mut S>,
}

impl<S: Future<Output = ()>> Future for Control<'_, S> {
    type Output = Fired;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Fired> {
        let this = self.get_mut();
        // Cleared before polling: a wake from here on polls again.
        if !this.wake.pending.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.wake.task.register(cx.waker());
        let waker = Waker::from(this.wake.clone());
        let mut cx = Context::from_waker(&waker);
        let pump = this.pump;
        match pump.phase {
            Phase::Closing(until) => {
                return grace::poll_elapsed(pump.stats.id, until, &mut cx).map(|()| Fired::Grace);
            }
            Phase::Open => {}
        }
        if pump.timeout.is_some() && this.idle.as_mut().poll(&mut cx).is_ready() {
            return Poll::Ready(Fired::Idle);
        }
        if this.config_alive
            && let Poll::Ready(change) = this.changes.poll(&mut cx)
        {
            return Poll::Ready(Fired::Changed(change));
        }
        if this.stopped.as_mut().poll(&mut cx).is_ready() {
            return Poll::Ready(Fired::Stopped);
        }
        Poll::Pending
    }
}

/// The next config change, handing the receiver back for the one after.
async fn next_change(mut config: watch::Receiver<Arc<Config>>) -> Change {
    let changed = config.changed().await;
    (changed, config)
}

impl Pump {
    fn lane(&mut self, source: Side) -> &mut Lane {
        &mut self.lanes[source.index()]
    }

    fn gone(&self, side: Side) -> bool {
        self.gone[side.index()]
    }

    /// The relay closes the session itself: nothing more is passed on
    /// either way (bytes are only scanned for the close replies).
    fn stop_forwarding(&mut self) {
        for lane in &mut self.lanes {
            lane.forwarding = false;
        }
    }

    /// What to wait for on `side`'s socket: readable while its lane may
    /// read, writable while bytes wait for it; `None` when nothing.
    fn interest(&self, side: Side) -> Option<Interest> {
        match (self.wants_read(side), self.wants_write(side)) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }

    /// `side`'s socket is ready: read from it and/or flush what waits for it.
    fn on_ready(
        &mut self,
        side: Side,
        ready: io::Result<Ready>,
        client: &impl RawIo,
        origin: &impl RawIo,
    ) {
        let ready = match ready {
            Ok(r) => r,
            Err(_) => return self.side_vanished(side, client, origin),
        };
        if ready.is_writable() && self.wants_write(side) {
            let event = match side {
                Side::Client => self.flush(Side::Client, client),
                Side::Origin => self.flush(Side::Origin, origin),
            };
            // A failed write means `side` is gone; the lane feeding it reports it.
            self.on_lane_event(other(side), event, client, origin);
        }
        if ready.is_readable() && self.wants_read(side) {
            let event = self.read(side, client, origin);
            self.on_lane_event(side, event, client, origin);
        }
    }

    fn wants_read(&self, source: Side) -> bool {
        let lane = &self.lanes[source.index()];
        !self.gone(source) && !lane.source_closed && lane.pending.is_empty()
    }

    fn wants_write(&self, dest: Side) -> bool {
        let lane = &self.lanes[other(dest).index()];
        !self.gone(dest) && !lane.pending.is_empty()
    }

    /// Whether the session is in a state another process can carry on:
    /// open, both sides there, nothing owed that only this pump knows.
    fn movable(&self) -> bool {
        matches!(self.phase, Phase::Open)
            && self.gone == [false; 2]
            && self.cause.is_none()
            && self.owed_to_client.is_none()
            && self.fin_owed == [false; 2]
            && self.lanes.iter().all(|l| l.forwarding && !l.source_closed)
    }

    fn finished(&self) -> bool {
        // Each side: done sending, and what waits for the other side is
        // written (or that side is gone).
        [Side::Client, Side::Origin].into_iter().all(|side| {
            let lane = &self.lanes[side.index()];
            (lane.source_closed || self.gone(side))
                && (lane.pending.is_empty() || self.gone(other(side)))
        })
    }

    /// Reads what `source` has (a few times while it keeps coming, once
    /// when a short read shows its queue is empty).
    fn read(&mut self, source: Side, client: &impl RawIo, origin: &impl RawIo) -> LaneEvent {
        for _ in 0..READS_PER_WAKE {
            let lane = self.lane(source);
            if !lane.pending.is_empty() || lane.source_closed {
                break;
            }
            let (src, dst): (&dyn ReadSide, &dyn WriteSide) = match source {
                Side::Client => (client, origin),
                Side::Origin => (origin, client),
            };
            let (event, drained) = with_read_buf(|buf| {
                let carry = self.lane(source).scanner.copy_carry(buf);
                match src.read_now_dyn(&mut buf[carry..]) {
                    Ok(ReadNow { n: 0, .. }) => (Some(LaneEvent::SourceGone), true),
                    Ok(ReadNow { n, drained }) => (
                        Some(self.ingest_dyn(source, &buf[..carry + n], dst)),
                        drained,
                    ),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => (None, true),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                        (Some(LaneEvent::Nothing), false)
                    }
                    Err(_) => (Some(LaneEvent::SourceGone), true),
                }
            });
            match event {
                None => break, // spurious wake-up
                Some(LaneEvent::Nothing) if !drained => continue,
                Some(LaneEvent::Nothing) => break,
                Some(other) => return other,
            }
        }
        LaneEvent::Nothing
    }

    fn ingest(
        &mut self,
        source: Side,
        data: &[u8],
        client: &impl RawIo,
        origin: &impl RawIo,
    ) -> LaneEvent {
        let dst: &dyn WriteSide = match source {
            Side::Client => origin,
            Side::Origin => client,
        };
        let mut bytes = vec![0; crate::ws::MAX_HEADER];
        let carry = self.lane(source).scanner.copy_carry(&mut bytes);
        bytes.truncate(carry);
        bytes.extend_from_slice(data);
        self.ingest_dyn(source, &bytes, dst)
    }

    /// Scans `data` from `source` and passes the complete frames on.
    fn ingest_dyn(&mut self, source: Side, data: &[u8], dst: &dyn WriteSide) -> LaneEvent {
        let now = Instant::now();
        let ping_counts = self.ping_resets_idle;
        let dest_gone = self.gone(other(source));
        let owes_client = self.owed_to_client.is_some();
        // Borrowed beside the lane, not cloned: no reference count moves per read.
        let stats = &*self.stats;
        let lane = &mut self.lanes[source.index()];
        let direction = lane.direction;
        let scan = lane.scanner.scan(data, |frame| {
            let counts = !matches!(frame.kind, FrameKind::Ping | FrameKind::Pong) || ping_counts;
            stats.record_frame(now, direction, frame, counts);
        });
        // The origin's close reply is not passed on while a close is owed to
        // the client: the relay's own close goes in its place.
        let forward = if scan.close.is_some() && source == Side::Origin && owes_client {
            scan.close_at
        } else {
            scan.forward
        };
        if scan.data_payload {
            stats.record_activity(now);
        }
        if lane.forwarding
            && !dest_gone
            && forward > 0
            && queue_or_write(dst, &mut lane.pending, &data[..forward]).is_err()
        {
            return LaneEvent::DestinationGone;
        }
        if let Some(v) = scan.violation {
            return LaneEvent::Violation(v);
        }
        if let Some(close) = scan.close {
            lane.source_closed = true;
            return LaneEvent::Close(close);
        }
        LaneEvent::Nothing
    }

    /// Writes what waits for `dest`.
    fn flush(&mut self, dest: Side, dst: &impl RawIo) -> LaneEvent {
        let lane = self.lane(other(dest));
        match write_now(dst, &lane.pending) {
            Ok(n) => {
                lane.pending.drain(..n);
                if lane.pending.is_empty() {
                    // Give the memory back: most sessions are idle most of the time.
                    lane.pending = Vec::new();
                    self.fin_if_flushed(dest, dst);
                }
                LaneEvent::Nothing
            }
            Err(_) => LaneEvent::DestinationGone,
        }
    }

    /// Reacts to what a lane (whose source is `source`) reported.
    fn on_lane_event(
        &mut self,
        source: Side,
        event: LaneEvent,
        client: &impl RawIo,
        origin: &impl RawIo,
    ) {
        match event {
            LaneEvent::Nothing => {}
            LaneEvent::SourceGone => self.side_vanished(source, client, origin),
            LaneEvent::DestinationGone => self.side_vanished(other(source), client, origin),
            LaneEvent::Close(info) => {
                let forwarded = self.lane(source).forwarding;
                if source == Side::Origin && self.owed_to_client.is_some() {
                    self.pay_owed_close(client);
                } else if forwarded {
                    match source {
                        Side::Client => self.to_origin = Some(info),
                        Side::Origin => self.to_client = Some(info),
                    }
                }
                self.set_cause(match source {
                    Side::Client => CloseCause::ClientClosed,
                    Side::Origin => CloseCause::OriginClosed,
                });
                self.start_closing();
            }
            LaneEvent::Violation(v) => self.violation(source, v, client, origin),
        }
    }

    /// A side's connection ended (or failed) without a close frame.
    ///
    /// Mirrored (DESIGN §1: the relay never invents a close the peer did
    /// not send): what the vanished side sent before it left still reaches
    /// the survivor, then the survivor's TCP is ended without a close frame
    /// too, so each side sees what it would see connected directly (a
    /// browser reports 1006). An earlier version sent the client 1014
    /// instead, which Autobahn's client and tungstenite reject as invalid.
    fn side_vanished(&mut self, side: Side, client: &impl RawIo, origin: &impl RawIo) {
        let already_closed = self.lane(side).source_closed;
        self.mark_gone(side);
        if side == Side::Origin {
            self.pay_owed_close(client);
        }
        if already_closed || !matches!(self.phase, Phase::Open) {
            return;
        }
        self.set_cause(match side {
            Side::Client => CloseCause::ClientVanished,
            Side::Origin => CloseCause::OriginVanished,
        });
        // The survivor's bytes go nowhere now; it is read only to see it leave.
        self.stop_forwarding();
        let survivor = other(side);
        // Bytes still waiting for the vanished side can never be delivered.
        self.lane(survivor).pending = Vec::new();
        self.fin_owed[survivor.index()] = true;
        match survivor {
            Side::Client => self.fin_if_flushed(survivor, client),
            Side::Origin => self.fin_if_flushed(survivor, origin),
        }
        self.start_closing();
    }

    /// Ends `dest`'s TCP (FIN) once everything owed to it has been written.
    fn fin_if_flushed(&mut self, dest: Side, dst: &dyn WriteSide) {
        if !self.fin_owed[dest.index()] || !self.lane(other(dest)).pending.is_empty() {
            return;
        }
        self.fin_owed[dest.index()] = false;
        if dst.shutdown_write_dyn().is_err() {
            self.mark_gone(dest);
        }
    }

    fn violation(&mut self, source: Side, v: Violation, client: &impl RawIo, origin: &impl RawIo) {
        let from_client = source == Side::Client;
        let (cause, code, reason) = match v {
            Violation::TooBig { limit } => (
                CloseCause::MessageTooBig { from_client },
                close::MESSAGE_TOO_BIG,
                format!("message exceeds {limit} bytes"),
            ),
            Violation::Protocol(detail) => (
                CloseCause::ProtocolError {
                    from_client,
                    detail: detail.clone(),
                },
                close::PROTOCOL_ERROR,
                format!("protocol error: {detail}"),
            ),
        };
        self.set_cause(cause);
        // Whatever the offender sends next is not worth reading.
        self.lane(source).source_closed = true;
        self.lane(source).forwarding = false;
        if from_client {
            // The origin learns its peer is gone; the client learns why once
            // the origin has answered (see `owed_to_client`).
            self.to_origin = self.inject(
                Side::Origin,
                close::GOING_AWAY,
                &format!("client went away: {reason}"),
                client,
                origin,
            );
            self.owed_to_client = Some((code, reason));
            if self.to_origin.is_none() {
                self.pay_owed_close(client);
            }
        } else {
            self.stop_forwarding();
            self.to_origin = self.inject(Side::Origin, code, &reason, client, origin);
            // The client did nothing wrong: 1011, the server-side failure
            // code every client accepts (1014 is rejected by Autobahn's
            // client and tungstenite).
            self.to_client = self.inject(
                Side::Client,
                close::INTERNAL_ERROR,
                &format!("origin failed: {reason}"),
                client,
                origin,
            );
        }
        self.start_closing();
    }

    /// Sends the close owed to the client after its protocol error.
    fn pay_owed_close(&mut self, client: &impl RawIo) {
        let Some((code, reason)) = self.owed_to_client.take() else {
            return;
        };
        self.lane(Side::Origin).forwarding = false;
        self.to_client = self.inject_into(Side::Client, code, &reason, client);
    }

    /// The relay ends the session itself (idle, shutdown, config), with
    /// the close frame `cause` owns.
    fn relay_close(&mut self, cause: CloseCause, client: &impl RawIo, origin: &impl RawIo) {
        match cause.relay_close() {
            Some(frame) => {
                self.relay_close_with(cause, frame.code, &frame.reason, client, origin);
            }
            // Not a close the relay starts with a frame: the sides just go.
            None => {
                self.set_cause(cause);
                self.gone = [true; 2];
            }
        }
    }

    /// [`relay_close`](Self::relay_close) with a frame given (an operator's).
    fn relay_close_with(
        &mut self,
        cause: CloseCause,
        code: u16,
        reason: &str,
        client: &impl RawIo,
        origin: &impl RawIo,
    ) {
        self.set_cause(cause);
        self.stop_forwarding();
        self.to_client = self.inject(Side::Client, code, reason, client, origin);
        self.to_origin = self.inject(Side::Origin, code, reason, client, origin);
        self.start_closing();
    }

    /// Sends a close frame of the relay's own to `dest` — only at a frame
    /// boundary of that direction. A side that cannot get one is dropped.
    fn inject(
        &mut self,
        dest: Side,
        code: u16,
        reason: &str,
        client: &impl RawIo,
        origin: &impl RawIo,
    ) -> Option<CloseInfo> {
        match dest {
            Side::Client => self.inject_into(dest, code, reason, client),
            Side::Origin => self.inject_into(dest, code, reason, origin),
        }
    }

    fn inject_into(
        &mut self,
        dest: Side,
        code: u16,
        reason: &str,
        dst: &dyn WriteSide,
    ) -> Option<CloseInfo> {
        if self.gone(dest) {
            return None;
        }
        let lane = self.lane(other(dest));
        if !lane.scanner.at_boundary() {
            self.mark_gone(dest);
            return None;
        }
        let frame = close_frame(code, reason, dest == Side::Origin);
        let lane = self.lane(other(dest));
        if queue_or_write(dst, &mut lane.pending, &frame).is_err() {
            self.mark_gone(dest);
            return None;
        }
        Some(CloseInfo::new(code, reason))
    }

    fn mark_gone(&mut self, side: Side) {
        self.gone[side.index()] = true;
    }

    fn set_cause(&mut self, cause: CloseCause) {
        if self.cause.is_none() {
            self.idle_at_close = self.stats.last_activity().elapsed();
            self.cause = Some(cause);
        }
    }

    fn start_closing(&mut self) {
        if matches!(self.phase, Phase::Open) {
            self.phase = Phase::Closing(Instant::now() + CLOSE_GRACE);
        }
    }

    fn on_idle_timer(
        &mut self,
        timer: std::pin::Pin<&mut tokio::time::Sleep>,
        client: &impl RawIo,
        origin: &impl RawIo,
    ) {
        let Some(timeout) = self.timeout else { return };
        let deadline = self.stats.last_activity() + timeout;
        if Instant::now() < deadline {
            // There was activity since the timer was armed: sleep until the new deadline.
            timer.reset(deadline);
            return;
        }
        let secs = timeout.as_secs();
        let cause = CloseCause::IdleTimeout { timeout_secs: secs };
        match self.idle_close {
            IdleCloseMode::CloseFrame => {
                self.relay_close(cause, client, origin);
            }
            IdleCloseMode::Abort => {
                // As real CDNs do: no close frame, the TCP connections just end.
                self.set_cause(cause);
                self.gone = [true; 2];
            }
        }
    }

    /// Re-arms the deadline under the new rule (it may now lie in the past,
    /// which closes the session at once).
    fn apply_config(&mut self, config: &Config, timer: std::pin::Pin<&mut tokio::time::Sleep>) {
        self.idle_close = config.relay.idle_close;
        let Some(domain) = config.domain(&self.stats.domain) else {
            return;
        };
        let effective = effective_timeout(domain);
        self.timeout = effective.limit;
        self.ping_resets_idle = domain.websocket.ping_resets_idle;
        self.stats.set_timeout(effective.limit);
        if let Some(t) = effective.limit {
            timer.reset(self.stats.last_activity() + t);
        }
    }

    /// A domain taken offline or deleted closes its sessions.
    fn check_domain(&mut self, config: &Config, client: &impl RawIo, origin: &impl RawIo) {
        match config.domain(&self.stats.domain) {
            None => self.relay_close(CloseCause::DomainRemoved, client, origin),
            Some(d) if d.status == Status::Offline => {
                self.relay_close(CloseCause::DomainOffline, client, origin);
            }
            Some(_) => {}
        }
    }

    fn end(self) -> SessionEnd {
        SessionEnd {
            // Ending without any cause means the grace ran out mid-handshake
            // of a close nobody started; report it as the client leaving.
            cause: self.cause.unwrap_or(CloseCause::ClientVanished),
            to_client: self.to_client,
            to_origin: self.to_origin,
            idle: self.idle_at_close,
        }
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Client => Side::Origin,
        Side::Origin => Side::Client,
    }
}

/// Writes now if nothing is waiting, and keeps what the socket did not take.
fn queue_or_write(dst: &dyn WriteSide, pending: &mut Vec<u8>, data: &[u8]) -> io::Result<()> {
    if !pending.is_empty() {
        pending.extend_from_slice(data);
        return Ok(());
    }
    let n = dst.write_now_dyn(data)?;
    if n < data.len() {
        pending.extend_from_slice(&data[n..]);
    }
    Ok(())
}

/// Object-safe halves of [`RawIo`], so the synchronous part of the pump is
/// compiled once rather than per socket type.
trait ReadSide {
    fn read_now_dyn(&self, buf: &mut [u8]) -> io::Result<ReadNow>;
}

trait WriteSide {
    fn write_now_dyn(&self, data: &[u8]) -> io::Result<usize>;
    fn shutdown_write_dyn(&self) -> io::Result<()>;
}

impl<T: RawIo> ReadSide for T {
    fn read_now_dyn(&self, buf: &mut [u8]) -> io::Result<ReadNow> {
        self.read_now(buf)
    }
}

impl<T: RawIo> WriteSide for T {
    fn write_now_dyn(&self, data: &[u8]) -> io::Result<usize> {
        write_now(self, data)
    }
    fn shutdown_write_dyn(&self) -> io::Result<()> {
        self.shutdown_write()
    }
}

/// Unsent bytes as base64 in the hand-over's JSON.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
