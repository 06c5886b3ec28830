//! The live session table. Sessions write plain atomics on their hot path;
//! the UI samples them when it draws. Nothing here is ever awaited on, and
//! the only lock a frame takes is its own session's (uncontended) ring lock.
//!
//! The table is sharded per relay worker: a worker registers and removes its
//! sessions in its own shard, so workers never contend on one lock; readers
//! merge the shards when they sample, and see one table.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::event::CloseCause;
use super::history::{self, ClientKey, DomainEvidence, History};
use super::metrics::{DomainMetrics, Metrics};
use crate::config::DomainName;
use crate::ws::frame::SeenFrame;
use crate::ws::{FrameKind, close};

pub type SessionId = u64;

/// How many recent frames each session remembers.
pub const RECENT_FRAMES: usize = 50;

/// Which way a frame travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    ClientToOrigin,
    OriginToClient,
}

impl Direction {
    pub fn arrow(self) -> &'static str {
        match self {
            Self::ClientToOrigin => "→ origin",
            Self::OriginToClient => "→ client",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::ClientToOrigin => 0,
            Self::OriginToClient => 1,
        }
    }
}

/// One entry of a session's recent-frames ring (12 bytes, so a full ring is
/// 600 bytes and an idle session that never sent a frame holds none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct RecentEntry {
    /// Milliseconds since the session started.
    at_ms: u32,
    len: u32,
    kind: FrameKind,
    direction: Direction,
}

/// A recent frame, as the UI shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RecentFrame {
    /// Time since the session started.
    pub at: Duration,
    pub direction: Direction,
    pub kind: FrameKind,
    /// Payload length in bytes.
    pub len: u64,
}

/// Per-direction counters.
#[derive(Debug, Default)]
struct Flow {
    frames: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
    /// Nanoseconds since the registry's epoch; 0 = never.
    last_frame: AtomicU64,
    /// When the previous complete data message ended (for heartbeat gaps).
    last_message: AtomicU64,
}

/// Observed gaps between data messages in one direction.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Gaps {
    /// Up to 32 most recent gaps, in milliseconds.
    recent_ms: VecDeque<u32>,
    max_ms: u32,
}

const GAP_SAMPLES: usize = 32;

impl Gaps {
    fn record(&mut self, gap_nanos: u64) {
        let ms = u32::try_from(gap_nanos / 1_000_000).unwrap_or(u32::MAX);
        if self.recent_ms.len() == GAP_SAMPLES {
            self.recent_ms.pop_front();
        }
        self.recent_ms.push_back(ms);
        self.max_ms = self.max_ms.max(ms);
    }
}

/// What a session's frames leave for the UI besides counters.
#[derive(Debug, Default)]
struct Recent {
    frames: VecDeque<RecentEntry>,
    gaps: [Gaps; 2],
}

/// Adds to a counter that only one task writes: a load and a store, not a
/// read-modify-write (a locked instruction on x86) on the frame path.
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
}

/// Timeout stored as milliseconds; this value means "no idle limit".
const NO_LIMIT: u64 = u64::MAX;

/// One live session's counters. Written by its session task, read by anyone.
#[derive(Debug)]
pub struct SessionStats {
    pub id: SessionId,
    pub domain: DomainName,
    pub client: SocketAddr,
    pub origin: Arc<str>,
    pub path: Arc<str>,
    pub started: Instant,
    /// The relay worker (thread) that accepted the session and runs it.
    pub worker: u16,
    epoch: Instant,
    /// When the session entered the table, nanoseconds since the epoch,
    /// stamped under its shard's lock: a reader that took its clock before
    /// walking the table and did not see the session sees a later stamp
    /// next time. (`started` is earlier for a restored session, and for a
    /// new one it is taken before the lock.)
    registered: AtomicU64,
    flows: [Flow; 2],
    /// Last frame that counts as activity (ping/pong only when the domain
    /// says so), nanoseconds since the epoch.
    last_activity: AtomicU64,
    /// The longest gap between two activities (from the start to the first
    /// one included), nanoseconds: what a shorter limit would have cut.
    longest_gap: AtomicU64,
    /// Kind and direction of the last frame: `kind | direction << 7`.
    last_kind: AtomicU8,
    timeout_ms: AtomicU64,
    /// The recent frames and the gaps between messages, under one lock
    /// (taken once per frame).
    recent: Mutex<Recent>,
    /// Cancelled when an operator closes the session from the console (or
    /// when its parent, the relay's shutdown, is cancelled).
    operator_close: CancellationToken,
    /// The close frame an operator asked for, when not the default 1001
    /// `closed by operator` (set once, before `operator_close` fires).
    operator_frame: std::sync::OnceLock<Box<super::event::CloseInfo>>,
    /// The domain's Prometheus counters (looked up once, at registration).
    metrics: Arc<DomainMetrics>,
}

/// The table's time origin: the boot (the monotonic clock's zero) where the
/// clock allows, so that sessions restored from another process, which
/// started before this table existed, keep their times.
fn early_epoch() -> Instant {
    let now = Instant::now();
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .ok()
        .and_then(|uptime| now.checked_sub(Duration::from(uptime)))
        .unwrap_or(now)
}

fn nanos_since(epoch: Instant, t: Instant) -> u64 {
    // +1 so that 0 can mean "never"; saturating keeps it panic-free.
    u64::try_from(t.saturating_duration_since(epoch).as_nanos())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

fn at_nanos(epoch: Instant, nanos: u64) -> Option<Instant> {
    (nanos != 0).then(|| epoch + Duration::from_nanos(nanos - 1))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of plain
    // counters; the data is still usable, and the relay must not panic.
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl SessionStats {
    /// Records one frame header seen on the wire. `counts_as_activity`
    /// applies the domain's `ping-resets-idle` to control frames.
    pub fn record_frame(
        &self,
        now: Instant,
        direction: Direction,
        frame: SeenFrame,
        counts_as_activity: bool,
    ) {
        let SeenFrame {
            kind,
            fin,
            payload_len,
        } = frame;
        let stamp = nanos_since(self.epoch, now);
        // Only this session's task writes its flows.
        let flow = &self.flows[direction.index()];
        bump(&flow.frames, 1);
        bump(&flow.bytes, payload_len);
        flow.last_frame.store(stamp, Relaxed);
        let ends_message = fin && !kind.is_control();
        self.metrics.record_frame(
            usize::from(self.worker),
            direction.index(),
            payload_len,
            ends_message,
        );
        let mut gap = None;
        if ends_message {
            bump(&flow.messages, 1);
            let previous = flow.last_message.load(Relaxed);
            flow.last_message.store(stamp, Relaxed);
            if previous != 0 {
                gap = Some(stamp.saturating_sub(previous));
            }
        }
        if counts_as_activity {
            self.active_at(stamp);
        }
        let dir_bit = if direction == Direction::OriginToClient {
            0x80
        } else {
            0
        };
        self.last_kind.store(kind_code(kind) | dir_bit, Relaxed);
        let at_ms = u32::try_from(now.saturating_duration_since(self.started).as_millis())
            .unwrap_or(u32::MAX);
        let mut recent = lock(&self.recent);
        if let Some(gap) = gap {
            recent.gaps[direction.index()].record(gap);
        }
        let ring = &mut recent.frames;
        if ring.len() == RECENT_FRAMES {
            ring.pop_front();
        }
        ring.push_back(RecentEntry {
            at_ms,
            len: u32::try_from(payload_len).unwrap_or(u32::MAX),
            kind,
            direction,
        });
    }

    /// Records bytes of a data frame's payload passing (a slow upload is
    /// activity too; only its header was seen as a frame).
    pub fn record_activity(&self, now: Instant) {
        self.active_at(nanos_since(self.epoch, now));
    }

    /// Activity at `stamp`: ends the current gap (measured for advice).
    fn active_at(&self, stamp: u64) {
        // Only this session's task writes these: a load and a store, no
        // read-modify-write on the frame path.
        let gap = stamp.saturating_sub(self.last_activity.load(Relaxed));
        if gap > self.longest_gap.load(Relaxed) {
            self.longest_gap.store(gap, Relaxed);
        }
        self.last_activity.store(stamp, Relaxed);
    }

    /// When the last frame that counts as activity passed (or the session
    /// started, if none has).
    pub fn last_activity(&self) -> Instant {
        at_nanos(self.epoch, self.last_activity.load(Relaxed)).unwrap_or(self.started)
    }

    /// The longest gap between activity so far (a gap still open is not
    /// counted: see [`last_activity`](Self::last_activity) for that).
    pub fn longest_gap(&self) -> Duration {
        Duration::from_nanos(self.longest_gap.load(Relaxed))
    }

    pub fn set_timeout(&self, timeout: Option<Duration>) {
        let ms = timeout.map_or(NO_LIMIT, |t| {
            u64::try_from(t.as_millis()).unwrap_or(NO_LIMIT - 1)
        });
        self.timeout_ms.store(ms, Relaxed);
    }

    pub fn timeout(&self) -> Option<Duration> {
        match self.timeout_ms.load(Relaxed) {
            NO_LIMIT => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// When the session will be cut if nothing passes, under its current timeout.
    pub fn deadline(&self) -> Option<Instant> {
        self.timeout().map(|t| self.last_activity() + t)
    }

    /// Asks the session to close with 1001 `closed by operator`.
    pub fn request_close(&self) {
        self.request_close_with(super::event::CloseInfo::new(
            close::GOING_AWAY,
            CloseCause::Operator.label(),
        ));
    }

    /// Whether an operator asked this session to close (its token is also
    /// cancelled by a hand-over, which is not a close).
    pub fn operator_requested(&self) -> bool {
        self.operator_frame.get().is_some()
    }

    /// Asks the session to close with this close frame (to both sides).
    pub fn request_close_with(&self, frame: super::event::CloseInfo) {
        let _ = self.operator_frame.set(Box::new(frame));
        self.operator_close.cancel();
    }

    pub fn close_requested(&self) -> &CancellationToken {
        &self.operator_close
    }

    /// The close frame of an operator's close: the one asked for, else
    /// 1001 `closed by operator`.
    pub fn operator_close_frame(&self) -> (u16, &str) {
        self.operator_frame
            .get()
            .map_or((close::GOING_AWAY, CloseCause::Operator.label()), |f| {
                (f.code, f.reason.as_str())
            })
    }

    pub fn recent_frames(&self) -> Vec<RecentFrame> {
        lock(&self.recent)
            .frames
            .iter()
            .map(|e| RecentFrame {
                at: Duration::from_millis(e.at_ms.into()),
                direction: e.direction,
                kind: e.kind,
                len: e.len.into(),
            })
            .collect()
    }

    /// Gaps between complete data messages in one direction.
    pub fn message_gaps(&self, direction: Direction) -> MessageGaps {
        // Only the copy under the lock the session's frames take: a reader
        // (the control socket's thread, asking for a console) that the
        // scheduler preempts while sorting there would stall that
        // session's worker.
        let (mut gaps, max_ms) = {
            let recent = lock(&self.recent);
            let g = &recent.gaps[direction.index()];
            (g.recent_ms.iter().copied().collect::<Vec<u32>>(), g.max_ms)
        };
        let samples = gaps.len();
        // The middle one only, not a sort: asked of every busy session of
        // an attached console's every refresh.
        let median = (samples > 0).then(|| *gaps.select_nth_unstable(samples / 2).1);
        MessageGaps {
            samples,
            median: median.map(|ms| Duration::from_millis(ms.into())),
            max: (samples > 0).then(|| Duration::from_millis(max_ms.into())),
        }
    }

    pub fn snapshot(&self, now: Instant) -> SessionSnapshot {
        let moving = self.moving(now);
        SessionSnapshot {
            id: self.id,
            worker: self.worker,
            domain: self.domain.clone(),
            client: self.client,
            origin: self.origin.clone(),
            path: self.path.clone(),
            age: now.saturating_duration_since(self.started),
            idle: moving.idle,
            timeout: self.timeout(),
            remaining: moving.remaining,
            to_origin: moving.to_origin,
            to_client: moving.to_client,
            last_frame: moving.last_frame,
        }
    }

    /// What moves of the session at `now` (a snapshot without what stays).
    pub fn moving(&self, now: Instant) -> Moving {
        let flow = |d: Direction| {
            let f = &self.flows[d.index()];
            FlowSnapshot {
                frames: f.frames.load(Relaxed),
                messages: f.messages.load(Relaxed),
                bytes: f.bytes.load(Relaxed),
                last_frame: at_nanos(self.epoch, f.last_frame.load(Relaxed)),
            }
        };
        let last_kind = self.last_kind.load(Relaxed);
        let last_activity = self.last_activity();
        Moving {
            idle: now.saturating_duration_since(last_activity),
            remaining: self
                .timeout()
                .map(|t| (last_activity + t).saturating_duration_since(now)),
            to_origin: flow(Direction::ClientToOrigin),
            to_client: flow(Direction::OriginToClient),
            last_frame: kind_of(last_kind & 0x7f).map(|kind| {
                let direction = if last_kind & 0x80 != 0 {
                    Direction::OriginToClient
                } else {
                    Direction::ClientToOrigin
                };
                (direction, kind)
            }),
        }
    }
}

/// The part of a [`SessionSnapshot`] that moves while the session lives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moving {
    pub idle: Duration,
    pub remaining: Option<Duration>,
    pub to_origin: FlowSnapshot,
    pub to_client: FlowSnapshot,
    pub last_frame: Option<(Direction, FrameKind)>,
}

/// A session's counters as they move to another relay process (a
/// hand-over, DESIGN §7). Instants travel as ages before the moment of the
/// export, which the receiver maps onto its own clock, so an idle clock
/// does not move.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsState {
    pub id: SessionId,
    pub domain: DomainName,
    pub client: SocketAddr,
    pub origin: String,
    pub path: String,
    pub age_ns: u64,
    /// Since the last activity (the start, if none).
    pub idle_ns: u64,
    pub longest_gap_ns: u64,
    pub last_kind: u8,
    flows: [FlowState; 2],
    recent: Vec<RecentEntry>,
    gaps: [Gaps; 2],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FlowState {
    frames: u64,
    messages: u64,
    bytes: u64,
    /// Ages; `None`: never.
    last_frame_ns: Option<u64>,
    last_message_ns: Option<u64>,
}

/// Nanoseconds from `t` to `now` (0 if `t` is later).
fn age_ns(now: Instant, t: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(t).as_nanos()).unwrap_or(u64::MAX)
}

/// `now` minus `age_ns`, or as early as the clock goes.
fn before(now: Instant, age_ns: u64) -> Instant {
    now.checked_sub(Duration::from_nanos(age_ns)).unwrap_or(now)
}

impl SessionStats {
    /// Whether the session entered the table or passed a frame at or after
    /// `clock_ms` (on [`Registry::clock_ms`]'s clock).
    pub fn changed_since(&self, clock_ms: u64) -> bool {
        let since = clock_ms.saturating_mul(1_000_000);
        self.registered_since(clock_ms)
            || self
                .flows
                .iter()
                .any(|f| f.last_frame.load(Relaxed) >= since)
    }

    /// Whether the session entered the table at or after `clock_ms`: a
    /// reader whose previous walk took its clock at `clock_ms` has not
    /// seen it yet.
    pub fn registered_since(&self, clock_ms: u64) -> bool {
        self.registered.load(Relaxed) >= clock_ms.saturating_mul(1_000_000)
    }

    /// The counters at `now`, to be restored in another process.
    pub fn export(&self, now: Instant) -> StatsState {
        let ago = |nanos: u64| at_nanos(self.epoch, nanos).map(|t| age_ns(now, t));
        let flow = |f: &Flow| FlowState {
            frames: f.frames.load(Relaxed),
            messages: f.messages.load(Relaxed),
            bytes: f.bytes.load(Relaxed),
            last_frame_ns: ago(f.last_frame.load(Relaxed)),
            last_message_ns: ago(f.last_message.load(Relaxed)),
        };
        let recent = lock(&self.recent);
        StatsState {
            id: self.id,
            domain: self.domain.clone(),
            client: self.client,
            origin: self.origin.to_string(),
            path: self.path.to_string(),
            age_ns: age_ns(now, self.started),
            idle_ns: age_ns(now, self.last_activity()),
            longest_gap_ns: self.longest_gap.load(Relaxed),
            last_kind: self.last_kind.load(Relaxed),
            flows: [flow(&self.flows[0]), flow(&self.flows[1])],
            recent: recent.frames.iter().copied().collect(),
            gaps: recent.gaps.clone(),
        }
    }
}

/// Summary of the gaps between data messages in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageGaps {
    pub samples: usize,
    pub median: Option<Duration>,
    pub max: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSnapshot {
    pub frames: u64,
    pub messages: u64,
    pub bytes: u64,
    pub last_frame: Option<Instant>,
}

/// A session's counters at one instant, for drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSnapshot {
    pub id: SessionId,
    /// The relay worker the session runs on (0-based).
    pub worker: u16,
    pub domain: DomainName,
    pub client: SocketAddr,
    pub origin: Arc<str>,
    pub path: Arc<str>,
    pub age: Duration,
    pub idle: Duration,
    /// `None`: no idle limit.
    pub timeout: Option<Duration>,
    /// Time left before the idle deadline; `None`: no idle limit.
    pub remaining: Option<Duration>,
    pub to_origin: FlowSnapshot,
    pub to_client: FlowSnapshot,
    pub last_frame: Option<(Direction, FrameKind)>,
}

impl SessionSnapshot {
    /// How far toward its deadline the session is, 0.0..=1.0 (0 with no limit).
    pub fn idle_ratio(&self) -> f64 {
        match self.timeout {
            Some(t) if !t.is_zero() => (self.idle.as_secs_f64() / t.as_secs_f64()).min(1.0),
            _ => 0.0,
        }
    }
}

/// Details of a new session, given when it is registered.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub domain: DomainName,
    pub client: SocketAddr,
    pub origin: Arc<str>,
    pub path: Arc<str>,
    pub timeout: Option<Duration>,
}

/// All live sessions, in one shard per relay worker.
#[derive(Debug)]
pub struct Registry {
    epoch: Instant,
    next_id: AtomicU64,
    shards: Box<[Shard]>,
    /// What ended sessions showed, for advice (README, "Advice from evidence"): one for every
    /// worker, since a client's reconnect may land on another one.
    history: Arc<History>,
    metrics: Arc<Metrics>,
}

/// How many parts one worker's sessions are split into, by id. A reader
/// walking the table (an attached console's `sessions-changed`, the
/// `sessions` command) holds one part's lock at a time, so a worker opening
/// or closing a session — and every session of that worker meanwhile —
/// waits at most for the walk of one part, a 64th of its sessions: ~5 µs
/// at 9,000 sessions and ~50 µs at 100,000, where one lock per worker made
/// it wait for the whole walk (0.3 ms at 9,000, 3 ms at 100,000).
const PARTS: usize = 64;
const _: () = assert!(PARTS.is_power_of_two());

/// Which part session `id` belongs in. Scattered (Fibonacci hashing), not
/// `id % PARTS`: ids are handed out in order and a reader walks the parts
/// in order, so with consecutive ids in consecutive parts a worker opening
/// sessions would keep meeting the reader in the very part it walks next.
fn part_of(id: SessionId) -> usize {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    // The top bits of the product: below PARTS, so the cast loses nothing.
    (id.wrapping_mul(GOLDEN) >> (u64::BITS - PARTS.trailing_zeros())) as usize
}

/// One worker's sessions, in [`PARTS`] parts.
#[derive(Debug)]
struct Shard(Box<[Part]>);

/// Aligned to a cache line so that two workers (or a worker and a reader)
/// locking neighbouring parts do not share one.
// A std Mutex, not tokio's: it is never held across an `.await`, and only
// for a map insert/remove or while a reader looks at the part's sessions.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Part(Mutex<HashMap<SessionId, Arc<SessionStats>>>);

impl Default for Shard {
    fn default() -> Self {
        Self((0..PARTS).map(|_| Part::default()).collect())
    }
}

impl Shard {
    /// The part that holds (or will hold) session `id`.
    fn part(&self, id: SessionId) -> MutexGuard<'_, HashMap<SessionId, Arc<SessionStats>>> {
        lock(&self.0[part_of(id)].0)
    }

    /// Each part in turn, locked while `visit` looks at it.
    fn each_part(&self, mut visit: impl FnMut(&HashMap<SessionId, Arc<SessionStats>>)) {
        for part in self.0.iter() {
            visit(&lock(&part.0));
        }
    }

    /// Whether any part holds a session, locking parts only until one does.
    fn any(&self) -> bool {
        self.0.iter().any(|part| !lock(&part.0).is_empty())
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A table for one worker.
    pub fn new() -> Self {
        Self::with_workers(1)
    }

    /// A table with one shard per worker (at least one).
    pub fn with_workers(workers: usize) -> Self {
        Self::with_metrics(workers, Arc::new(Metrics::with_workers(workers)))
    }

    /// [`with_workers`](Self::with_workers), its sessions counting into `metrics`.
    pub fn with_metrics(workers: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            epoch: early_epoch(),
            next_id: AtomicU64::new(1),
            shards: (0..workers.max(1)).map(|_| Shard::default()).collect(),
            history: Arc::new(History::new()),
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// How many workers (shards) the table has.
    pub fn workers(&self) -> usize {
        self.shards.len()
    }

    /// Adds a session; it stays until the returned guard is dropped, so a
    /// session task that ends in any way (even a panic) leaves no ghost.
    pub fn register(self: &Arc<Self>, new: NewSession) -> SessionGuard {
        self.register_on(0, new, &CancellationToken::new())
    }

    /// [`register`](Self::register), with the session's close request a
    /// child of `parent` (the relay's shutdown), so a session waits on one
    /// token for both.
    pub fn register_under(
        self: &Arc<Self>,
        new: NewSession,
        parent: &CancellationToken,
    ) -> SessionGuard {
        self.register_on(0, new, parent)
    }

    /// [`register_under`](Self::register_under), in the shard of `worker`
    /// (taken modulo the number of shards).
    pub fn register_on(
        self: &Arc<Self>,
        worker: usize,
        new: NewSession,
        parent: &CancellationToken,
    ) -> SessionGuard {
        let worker = worker % self.shards.len();
        let id = self.next_id.fetch_add(1, Relaxed);
        let now = Instant::now();
        let metrics = self.metrics.domain(&new.domain);
        metrics.session_opened();
        let stats = Arc::new(SessionStats {
            id,
            domain: new.domain,
            client: new.client,
            origin: new.origin,
            path: new.path,
            started: now,
            worker: u16::try_from(worker).unwrap_or(u16::MAX),
            epoch: self.epoch,
            registered: AtomicU64::new(0),
            flows: Default::default(),
            last_activity: AtomicU64::new(nanos_since(self.epoch, now)),
            longest_gap: AtomicU64::new(0),
            last_kind: AtomicU8::new(0),
            timeout_ms: AtomicU64::new(NO_LIMIT),
            recent: Mutex::new(Recent::default()),
            operator_close: parent.child_token(),
            operator_frame: std::sync::OnceLock::new(),
            metrics,
        });
        stats.set_timeout(new.timeout);
        if self.history.reconnect_may_match(now) {
            self.history.opened(
                &stats.domain,
                &ClientKey::new(stats.client.ip(), &stats.path),
                now,
            );
        }
        self.insert(worker, &stats);
        SessionGuard {
            registry: self.clone(),
            stats,
            worker,
        }
    }

    /// Puts back a session that another relay process (or a hand-over that
    /// was refused) exported: same id, counters, recent frames and idle
    /// clock. `exported_at` is the export's moment on this process's clock.
    /// Counted as live, not as a new session.
    pub fn restore(
        self: &Arc<Self>,
        worker: usize,
        state: StatsState,
        exported_at: Instant,
        parent: &CancellationToken,
    ) -> SessionGuard {
        let worker = worker % self.shards.len();
        self.next_id.fetch_max(state.id.saturating_add(1), Relaxed);
        // A late round (sessions whose handshakes finished in the old
        // process after the hand-over) may bring an id this process has
        // given out meanwhile: that session takes a new one.
        let id = if self.get(state.id).is_some() {
            self.next_id.fetch_add(1, Relaxed)
        } else {
            state.id
        };
        let metrics = self.metrics.domain(&state.domain);
        metrics.session_restored();
        let stamp = |age: Option<u64>| {
            age.map_or(0, |age| nanos_since(self.epoch, before(exported_at, age)))
        };
        let flow = |f: &FlowState| Flow {
            frames: AtomicU64::new(f.frames),
            messages: AtomicU64::new(f.messages),
            bytes: AtomicU64::new(f.bytes),
            last_frame: AtomicU64::new(stamp(f.last_frame_ns)),
            last_message: AtomicU64::new(stamp(f.last_message_ns)),
        };
        let stats = Arc::new(SessionStats {
            id,
            domain: state.domain,
            client: state.client,
            origin: state.origin.into(),
            path: state.path.into(),
            started: before(exported_at, state.age_ns),
            worker: u16::try_from(worker).unwrap_or(u16::MAX),
            epoch: self.epoch,
            registered: AtomicU64::new(0),
            flows: [flow(&state.flows[0]), flow(&state.flows[1])],
            last_activity: AtomicU64::new(stamp(Some(state.idle_ns))),
            longest_gap: AtomicU64::new(state.longest_gap_ns),
            last_kind: AtomicU8::new(state.last_kind),
            timeout_ms: AtomicU64::new(NO_LIMIT),
            recent: Mutex::new(Recent {
                frames: state.recent.into_iter().take(RECENT_FRAMES).collect(),
                gaps: state.gaps,
            }),
            operator_close: parent.child_token(),
            operator_frame: std::sync::OnceLock::new(),
            metrics,
        });
        self.insert(worker, &stats);
        SessionGuard {
            registry: self.clone(),
            stats,
            worker,
        }
    }

    /// Puts a session in its worker's shard, stamped under the lock (see
    /// `SessionStats::registered`).
    fn insert(&self, worker: usize, stats: &Arc<SessionStats>) {
        let mut shard = self.shards[worker].part(stats.id);
        stats
            .registered
            .store(nanos_since(self.epoch, Instant::now()), Relaxed);
        shard.insert(stats.id, stats.clone());
    }

    /// The table's clock in milliseconds (for "what changed since").
    pub fn clock_ms(&self, now: Instant) -> u64 {
        nanos_since(self.epoch, now) / 1_000_000
    }

    /// New sessions get ids above `id` from now on (sessions about to be
    /// restored keep theirs, and no new one may take one of them).
    pub fn reserve_ids_through(&self, id: SessionId) {
        self.next_id.fetch_max(id.saturating_add(1), Relaxed);
    }

    pub fn len(&self) -> usize {
        let mut len = 0;
        for shard in self.shards.iter() {
            shard.each_part(|part| len += part.len());
        }
        len
    }

    /// Asked by the console before every wait (does the screen tick?):
    /// stops at the first session instead of counting them all.
    pub fn is_empty(&self) -> bool {
        !self.shards.iter().any(|shard| shard.any())
    }

    pub fn get(&self, id: SessionId) -> Option<Arc<SessionStats>> {
        self.shards
            .iter()
            .find_map(|s| s.part(id).get(&id).cloned())
    }

    /// Every live session of every worker (cheap `Arc` clones; each part's
    /// lock is released before the next is taken and before the caller
    /// looks at any of them).
    pub fn sessions(&self) -> Vec<Arc<SessionStats>> {
        let mut all = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            shard.each_part(|part| all.extend(part.values().cloned()));
        }
        all
    }

    /// Calls `visit` for every live session of every worker, under each
    /// part's lock in turn (as long as [`sessions`](Self::sessions) holds
    /// it to clone the `Arc`s): for a pass over 9,000 sessions that keeps
    /// only a few, without cloning and dropping 9,000 `Arc`s. `visit` must
    /// be quick and must not touch the registry.
    pub fn for_each_session(&self, mut visit: impl FnMut(&Arc<SessionStats>)) {
        for shard in self.shards.iter() {
            shard.each_part(|part| part.values().for_each(&mut visit));
        }
    }

    /// Every live session's counters at `now`.
    pub fn snapshot(&self, now: Instant) -> Vec<SessionSnapshot> {
        self.sessions().iter().map(|s| s.snapshot(now)).collect()
    }

    /// The evidence store of ended sessions.
    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// Records how a session ended (call once, before its guard drops).
    pub fn record_close(&self, stats: &SessionStats, cause: &CloseCause, idle: Duration) {
        self.history.closed(stats, cause, idle, Instant::now());
    }

    /// A domain's sessions of the last 10 minutes, ended and live.
    pub fn evidence(&self, domain: &DomainName, now: Instant) -> DomainEvidence {
        history::evidence(&self.history, &self.sessions(), domain, now)
    }

    /// Asks one session to close with 1001 `closed by operator`. Returns
    /// whether the session exists.
    pub fn close(&self, id: SessionId) -> bool {
        self.get(id).map(|s| s.request_close()).is_some()
    }
}

/// Keeps a session in the registry while it lives.
#[derive(Debug)]
pub struct SessionGuard {
    registry: Arc<Registry>,
    stats: Arc<SessionStats>,
    worker: usize,
}

impl SessionGuard {
    pub fn stats(&self) -> &Arc<SessionStats> {
        &self.stats
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.stats.metrics.session_closed();
        if let Some(shard) = self.registry.shards.get(self.worker) {
            shard.part(self.stats.id).remove(&self.stats.id);
        }
    }
}

/// A frame kind packed into the last-frame atomic (0: no frame yet).
fn kind_code(kind: FrameKind) -> u8 {
    kind as u8 + 1
}

fn kind_of(code: u8) -> Option<FrameKind> {
    use strum::IntoEnumIterator;
    FrameKind::iter().nth(usize::from(code.checked_sub(1)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn new_session(registry: &Arc<Registry>, timeout: Option<u64>) -> SessionGuard {
        registry.register(NewSession {
            domain: "a.test".into(),
            client: "127.0.0.1:5000".parse().unwrap(),
            origin: "127.0.0.1:9001".into(),
            path: "/".into(),
            timeout: timeout.map(Duration::from_secs),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_active_frame() {
        let registry = Arc::new(Registry::new());
        let guard = new_session(&registry, Some(60));
        tokio::time::advance(Duration::from_secs(10)).await;
        let s = guard.stats();
        s.record_frame(
            Instant::now(),
            Direction::ClientToOrigin,
            SeenFrame {
                kind: FrameKind::Text,
                fin: true,
                payload_len: 5,
            },
            true,
        );
        tokio::time::advance(Duration::from_secs(7)).await;
        // A ping that does not count as activity leaves the idle time alone.
        s.record_frame(
            Instant::now(),
            Direction::OriginToClient,
            SeenFrame {
                kind: FrameKind::Ping,
                fin: true,
                payload_len: 0,
            },
            false,
        );
        let snap = s.snapshot(Instant::now());
        assert_eq!(snap.idle, Duration::from_secs(7));
        assert_eq!(snap.remaining, Some(Duration::from_secs(53)));
        assert_eq!(snap.to_origin.messages, 1);
        assert_eq!(snap.to_origin.bytes, 5);
        assert_eq!(snap.to_client.frames, 1);
        assert_eq!(snap.to_client.messages, 0);
        assert_eq!(
            snap.last_frame,
            Some((Direction::OriginToClient, FrameKind::Ping))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ring_keeps_the_last_fifty_frames_and_gaps_are_measured() {
        let registry = Arc::new(Registry::new());
        let guard = new_session(&registry, None);
        for _ in 0..60 {
            tokio::time::advance(Duration::from_secs(2)).await;
            guard.stats().record_frame(
                Instant::now(),
                Direction::ClientToOrigin,
                SeenFrame {
                    kind: FrameKind::Text,
                    fin: true,
                    payload_len: 3,
                },
                true,
            );
        }
        let frames = guard.stats().recent_frames();
        assert_eq!(frames.len(), RECENT_FRAMES);
        assert_eq!(frames.last().unwrap().at, Duration::from_secs(120));
        let gaps = guard.stats().message_gaps(Direction::ClientToOrigin);
        assert_eq!(gaps.median, Some(Duration::from_secs(2)));
        assert_eq!(gaps.max, Some(Duration::from_secs(2)));
        assert_eq!(guard.stats().snapshot(Instant::now()).remaining, None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_median_gap_is_the_middle_one_of_uneven_gaps() {
        let registry = Arc::new(Registry::new());
        let guard = new_session(&registry, None);
        let text = SeenFrame {
            kind: FrameKind::Text,
            fin: true,
            payload_len: 1,
        };
        for gap_secs in [0, 9, 1, 4, 2] {
            tokio::time::advance(Duration::from_secs(gap_secs)).await;
            guard
                .stats()
                .record_frame(Instant::now(), Direction::OriginToClient, text, true);
        }
        let gaps = guard.stats().message_gaps(Direction::OriginToClient);
        assert_eq!(gaps.samples, 4);
        // 9, 1, 4, 2 s: the upper middle of the four, as the console shows it.
        assert_eq!(gaps.median, Some(Duration::from_secs(4)));
        assert_eq!(gaps.max, Some(Duration::from_secs(9)));
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_guard_removes_the_session() {
        let registry = Arc::new(Registry::new());
        let guard = new_session(&registry, Some(5));
        let id = guard.stats().id;
        assert!(registry.get(id).is_some());
        assert!(registry.close(id));
        assert!(guard.stats().close_requested().is_cancelled());
        drop(guard);
        assert!(registry.is_empty());
        assert!(!registry.close(id));
    }

    /// A session handed over from another process (a late round arrives
    /// while consoles are attached) started long before anyone's clock:
    /// it still counts as new to a reader that walked the table before it
    /// arrived, and as old to one that walked it after.
    #[tokio::test(start_paused = true)]
    async fn a_restored_session_is_new_to_a_reader_that_walked_before_it_came() {
        let old = Arc::new(Registry::new());
        let guard = new_session(&old, Some(300));
        tokio::time::advance(Duration::from_secs(3600)).await;
        let state = guard.stats().export(Instant::now());
        let new = Arc::new(Registry::new());
        tokio::time::advance(Duration::from_millis(5)).await;
        let walked = new.clock_ms(Instant::now());
        tokio::time::advance(Duration::from_millis(5)).await;
        let restored = new.restore(0, state, Instant::now(), &CancellationToken::new());
        let s = restored.stats();
        assert!(s.registered_since(walked));
        assert!(
            s.changed_since(walked),
            "an attached console must be told of it"
        );
        tokio::time::advance(Duration::from_millis(5)).await;
        let later = new.clock_ms(Instant::now());
        assert!(!s.registered_since(later));
        assert!(!s.changed_since(later));
    }

    #[test]
    fn consecutive_ids_scatter_over_every_part() {
        let mut seen = [0usize; PARTS];
        (1..=16 * PARTS as u64).for_each(|id| seen[part_of(id)] += 1);
        // Every part used, none more than twice its share.
        assert!(seen.iter().all(|&n| n > 0 && n <= 32), "{seen:?}");
        // Neighbours apart: a reader walking part k then k+1 does not
        // meet a worker opening ids n, n+1 in the same order.
        let steps = (1..PARTS as u64).filter(|&id| part_of(id + 1) == part_of(id) + 1);
        assert!(steps.count() < PARTS / 8);
    }

    #[test]
    fn shards_merge_into_one_table() {
        let registry = Arc::new(Registry::with_workers(3));
        let new = |port| NewSession {
            domain: "a.test".into(),
            client: SocketAddr::from(([127, 0, 0, 1], port)),
            origin: "127.0.0.1:9001".into(),
            path: "/".into(),
            timeout: None,
        };
        let parent = CancellationToken::new();
        let guards: Vec<_> = (0..6)
            .map(|w| registry.register_on(w, new(5000 + w as u16), &parent))
            .collect();
        assert_eq!(registry.len(), 6);
        assert!(!registry.is_empty());
        let mut ids: Vec<_> = registry
            .snapshot(Instant::now())
            .iter()
            .map(|s| s.id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 6, "every session once");
        let on_worker = |w| {
            registry
                .snapshot(Instant::now())
                .iter()
                .filter(|s| s.worker == w)
                .count()
        };
        assert_eq!((on_worker(0), on_worker(1), on_worker(2)), (2, 2, 2));
        let last = guards[5].stats().id;
        assert!(registry.close(last));
        drop(guards);
        assert!(registry.is_empty());
        // One session on the last worker is found too.
        let one = registry.register_on(2, new(6000), &parent);
        assert!(!registry.is_empty());
        drop(one);
        assert!(registry.is_empty());
    }

    /// A console walking the table must not stop a worker opening or
    /// closing sessions — the worker's frames would wait with it.
    #[test]
    fn a_worker_opens_and_closes_sessions_while_a_reader_walks_the_table() {
        let registry = Arc::new(Registry::with_workers(1));
        let new = || NewSession {
            domain: "a.test".into(),
            client: SocketAddr::from(([127, 0, 0, 1], 5000)),
            origin: "127.0.0.1:9001".into(),
            path: "/".into(),
            timeout: None,
        };
        let mut guards: Vec<_> = (0..4 * PARTS).map(|_| registry.register(new())).collect();
        // The walk starts with the lowest part that holds a session; the
        // next id and the session to close are in others.
        let first = guards.iter().map(|g| part_of(g.stats().id)).min().unwrap();
        assert_ne!(part_of(4 * PARTS as u64 + 1), first);
        let closing = guards
            .iter()
            .position(|g| part_of(g.stats().id) != first)
            .unwrap();
        let mut closing = Some(guards.swap_remove(closing));
        let mut visits = 0;
        let mut worked = None;
        registry.for_each_session(|_| {
            visits += 1;
            let Some(closing) = closing.take() else {
                return;
            };
            // Mid-walk, one part locked: a worker opens and closes.
            let registry = registry.clone();
            let (done, finished) = std::sync::mpsc::channel();
            let worker = std::thread::spawn(move || {
                let opened = registry.register(new());
                drop(closing);
                done.send(opened.stats().id).unwrap();
                opened
            });
            worked = Some((finished.recv_timeout(Duration::from_secs(5)), worker));
        });
        let (opened, worker) = worked.unwrap();
        let opened = opened.expect("a worker opened and closed while a reader walked another part");
        let _opened = worker.join().unwrap();
        // One closed before its part was walked, one opened after its part's
        // turn had not yet come: both as the table is.
        assert_eq!(visits, 4 * PARTS);
        assert_eq!(registry.len(), 4 * PARTS);
        assert!(registry.get(opened).is_some());
    }
}
