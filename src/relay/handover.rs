//! Live session hand-over, the relay's half (DESIGN §7): stopping every
//! session that can move between two turns of its loop and giving up its
//! sockets and state; keeping the listeners' backlogs; taking such
//! sessions in (from another process, or back after a refused hand-over).
//! The wire between the two processes is `crate::handover`.
//!
//! Waking 9,000 sessions costs no memory per session: their close tokens
//! are children of one relay-wide "generation" token, and a hand-over
//! cancels that generation (a new one takes its place for sessions that
//! start meanwhile). A woken session tells the shutdown, an operator's
//! close and a hand-over apart by what is set beside the token.

use std::collections::HashSet;
use std::io;
use std::ops::Range;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::listener::{ConnectionSlot, Shared, run_session};
use super::registry::{Registry, SessionGuard, SessionId, StatsState};
use super::session::{LaneState, PausedSession, SessionSetup};

/// What wakes every session (and accept loop) at once.
#[derive(Debug)]
pub struct Interrupts {
    pub shutdown: CancellationToken,
    /// Parent of the close tokens of sessions registered now.
    generation: Mutex<CancellationToken>,
    /// While a hand-over collects, where sessions and listeners report.
    collector: Mutex<Option<mpsc::UnboundedSender<Moved>>>,
    /// The other end, taken by the hand-over that began.
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Moved>>>,
    /// The verdict of hand-over round `n` (listeners wait for it).
    verdict: watch::Sender<Verdict>,
    /// Each worker's runtime and connection state, to put sessions on.
    workers: Mutex<Vec<WorkerRef>>,
}

impl std::fmt::Debug for WorkerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerRef")
            .field("worker", &self.shared.worker)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Verdict {
    round: u64,
    committed: Option<bool>,
}

#[derive(Clone)]
struct WorkerRef {
    runtime: tokio::runtime::Handle,
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// What a session or an accept loop reports to a hand-over.
#[derive(Debug)]
pub enum Moved {
    /// A session stopped for the hand-over.
    Session(Box<MovedSession>),
    /// A session that cannot move (a TLS side) and carries on here.
    Stays(SessionId),
    /// A copy of a listening socket; the accept loop waits for the verdict.
    Listener(MovedListener),
}

/// A stopped session: everything another process needs to carry it on.
pub struct MovedSession {
    pub stats: StatsState,
    pub lanes: [LaneState; 2],
    pub client: std::net::TcpStream,
    pub origin: std::net::TcpStream,
    /// When `stats` was taken, on this process's clock.
    pub exported_at: Instant,
    /// In the process it came from: what keeps it in the table and counted
    /// until the hand-over commits.
    held: Option<(SessionGuard, ConnectionSlot)>,
}

/// Which listener a moved listening socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// `[relay] listen`.
    Plain,
    /// `[relay] tls-listen`.
    Tls,
}

#[derive(Debug)]
pub struct MovedListener {
    pub kind: ListenerKind,
    pub listener: std::net::TcpListener,
}

impl std::fmt::Debug for MovedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MovedSession")
            .field("id", &self.stats.id)
            .finish()
    }
}

impl MovedSession {
    /// A session received from another process.
    pub fn received(
        stats: StatsState,
        lanes: [LaneState; 2],
        client: std::net::TcpStream,
        origin: std::net::TcpStream,
        exported_at: Instant,
    ) -> Self {
        Self {
            stats,
            lanes,
            client,
            origin,
            exported_at,
            held: None,
        }
    }
}

impl Interrupts {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            generation: Mutex::new(shutdown.child_token()),
            shutdown,
            collector: Mutex::new(None),
            receiver: Mutex::new(None),
            verdict: watch::Sender::new(Verdict::default()),
            workers: Mutex::new(Vec::new()),
        }
    }

    /// The parent for the close token of a session registered now.
    pub fn session_parent(&self) -> CancellationToken {
        lock(&self.generation).clone()
    }

    /// A worker announces itself (from its own runtime).
    pub fn add_worker(&self, shared: Arc<Shared>) {
        lock(&self.workers).push(WorkerRef {
            runtime: tokio::runtime::Handle::current(),
            shared,
        });
    }

    /// Gives `moved` to the hand-over under way; back when there is none.
    pub fn report(&self, moved: Moved) -> Result<(), Moved> {
        match &*lock(&self.collector) {
            Some(tx) => tx.send(moved).map_err(|e| e.0),
            None => Err(moved),
        }
    }

    /// Starts collecting (sessions are woken by the caller, in waves).
    fn begin(&self) -> bool {
        let mut collector = lock(&self.collector);
        if collector.is_some() || self.shutdown.is_cancelled() {
            return false;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        *collector = Some(tx);
        *lock(&self.receiver) = Some(rx);
        self.verdict.send_modify(|v| {
            v.round += 1;
            v.committed = None;
        });
        true
    }

    /// Whether a hand-over is collecting: a session woken now is to stop.
    pub fn collecting(&self) -> bool {
        lock(&self.collector).is_some()
    }

    /// Wakes every session and accept loop of the current generation; a
    /// new generation takes its place for what starts from now on.
    fn wake_all(&self) {
        let old = std::mem::replace(&mut *lock(&self.generation), self.shutdown.child_token());
        old.cancel();
    }

    fn stop_collecting(&self) {
        *lock(&self.collector) = None;
    }

    fn decide(&self, committed: bool) {
        self.verdict.send_modify(|v| v.committed = Some(committed));
    }

    /// Waits for the verdict of the round `listener` was reported in.
    async fn verdict_of(&self, round: u64) -> bool {
        let mut rx = self.verdict.subscribe();
        loop {
            let v = *rx.borrow_and_update();
            if v.round != round {
                return false;
            }
            if let Some(committed) = v.committed {
                return committed;
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    }
}

/// What an accept loop does when its generation token fired: `Ok` when it
/// should go on accepting (nothing was taken), `Err` when its listener
/// was handed over and it must end.
pub async fn offer_listener(
    shared: &Shared,
    listener: &TcpListener,
    kind: ListenerKind,
) -> Result<(), ()> {
    let interrupts = &shared.interrupts;
    if interrupts.shutdown.is_cancelled() {
        return Err(());
    }
    let round = interrupts.verdict.borrow().round;
    let Ok(copy) = listener.as_fd().try_clone_to_owned() else {
        return Ok(());
    };
    let moved = Moved::Listener(MovedListener {
        kind,
        listener: std::net::TcpListener::from(copy),
    });
    if interrupts.report(moved).is_err() {
        return Ok(());
    }
    // Accepting nothing meanwhile: new clients wait in the backlog, which
    // the copy carries to the next process.
    if interrupts.verdict_of(round).await {
        Err(())
    } else {
        Ok(())
    }
}

/// What a session's task does with a paused session: report it to the
/// hand-over, or (the hand-over ended meanwhile) carry it on here.
pub fn session_paused(slot: ConnectionSlot, guard: SessionGuard, paused: PausedSession) {
    let shared = slot.shared().clone();
    let now = Instant::now();
    let moved = MovedSession {
        stats: guard.stats().export(now),
        lanes: paused.lanes,
        client: paused.client,
        origin: paused.origin,
        exported_at: now,
        held: Some((guard, slot)),
    };
    if let Err(Moved::Session(moved)) = shared.interrupts.report(Moved::Session(Box::new(moved))) {
        resume(&shared, moved);
    }
}

/// Carries `moved` on on this worker (call on its runtime).
fn resume(shared: &Arc<Shared>, mut moved: Box<MovedSession>) {
    // Out of the table first: the restored entry takes the same id.
    drop(moved.held.take());
    if let Err(e) = adopt(shared, moved) {
        tracing::warn!("a session could not be carried on: {e}");
    }
}

/// Starts a session from its moved state on the current runtime (a worker's).
fn adopt(shared: &Arc<Shared>, moved: Box<MovedSession>) -> io::Result<()> {
    start(shared, register(shared, moved))
}

/// A moved session in this process's table, not running yet.
struct Registered {
    guard: SessionGuard,
    lanes: [LaneState; 2],
    client: std::net::TcpStream,
    origin: std::net::TcpStream,
}

/// Puts `moved` in the session table (on `shared`'s worker), from any thread.
fn register(shared: &Shared, moved: Box<MovedSession>) -> Registered {
    let moved = *moved;
    let parent = shared.interrupts.session_parent();
    let guard = shared
        .registry
        .restore(shared.worker, moved.stats, moved.exported_at, &parent);
    Registered {
        guard,
        lanes: moved.lanes,
        client: moved.client,
        origin: moved.origin,
    }
}

/// Runs a registered session (call on its worker's runtime).
fn start(shared: &Arc<Shared>, registered: Registered) -> io::Result<()> {
    let session = prepare(shared, registered)?;
    shared.tracker.spawn(session);
    Ok(())
}

/// A registered session's task, its sockets on the reactor of `shared`'s
/// worker (call with that worker's runtime entered), not spawned yet.
fn prepare(
    shared: &Arc<Shared>,
    registered: Registered,
) -> io::Result<impl Future<Output = ()> + Send + 'static> {
    let Registered {
        guard,
        lanes,
        client,
        origin,
    } = registered;
    client.set_nonblocking(true)?;
    origin.set_nonblocking(true)?;
    let client = TcpStream::from_std(client)?;
    let origin = TcpStream::from_std(origin)?;
    let setup = SessionSetup {
        stats: guard.stats().clone(),
        client_leftover: Vec::new(),
        origin_leftover: Vec::new(),
        extensions: false,
        config: shared.config.clone(),
        interrupts: shared.interrupts.clone(),
        resume: Some(Box::new(lanes)),
    };
    let slot = ConnectionSlot::take(shared);
    Ok(run_session(slot, guard, client, origin, setup))
}

/// Everything a hand-over collected, held until it commits or is refused.
/// Dropped without [`commit`](Self::commit), it puts everything back.
pub struct Collected {
    interrupts: Arc<Interrupts>,
    registry: Arc<Registry>,
    rx: mpsc::UnboundedReceiver<Moved>,
    expected_listeners: usize,
    pub sessions: Vec<Box<MovedSession>>,
    pub listeners: Vec<MovedListener>,
    /// Sessions that cannot move and carry on here.
    pub stays: usize,
    /// Every session that reported (moved or staying).
    seen: HashSet<SessionId>,
    done: bool,
}

impl std::fmt::Debug for Collected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collected")
            .field("sessions", &self.sessions.len())
            .field("listeners", &self.listeners.len())
            .field("stays", &self.stays)
            .finish()
    }
}

/// Idle sessions woken at once in the first wave.
const PAUSE_CHUNK: usize = 256;

/// How long sessions get to stop; one that has not by then (it cannot be
/// mid-way in anything longer than a read) is left where it is.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts a hand-over; `None` when one is under way or the relay stops.
pub fn begin(
    interrupts: &Arc<Interrupts>,
    registry: &Arc<Registry>,
    expected_listeners: usize,
) -> Option<Collected> {
    if !interrupts.begin() {
        return None;
    }
    let rx = lock(&interrupts.receiver).take()?;
    Some(Collected {
        interrupts: interrupts.clone(),
        registry: registry.clone(),
        rx,
        expected_listeners,
        sessions: Vec::new(),
        listeners: Vec::new(),
        stays: 0,
        seen: HashSet::new(),
        done: false,
    })
}

impl Collected {
    /// The first wave: stops the sessions idle for `min_idle` or more
    /// (they move while the busy ones still run). Returns the range of
    /// [`sessions`](Self::sessions) it added.
    pub async fn pause_idle(&mut self, min_idle: Duration) -> Range<usize> {
        let first = self.sessions.len();
        let now = Instant::now();
        let idle: Vec<_> = self
            .registry
            .sessions()
            .into_iter()
            .filter(|s| now.saturating_duration_since(s.last_activity()) >= min_idle)
            .collect();
        // A few hundred at a time: 9,000 sessions woken at once would queue
        // ahead of the busy ones on their workers for a tenth of a second.
        for chunk in idle.chunks(PAUSE_CHUNK) {
            let waiting = chunk.iter().map(|s| s.id).collect();
            for s in chunk {
                s.close_requested().cancel();
            }
            self.gather(waiting, 0).await;
        }
        first..self.sessions.len()
    }

    /// The last wave: stops every other session and takes the listeners;
    /// then nothing more is collected.
    pub async fn pause_rest(&mut self) -> Range<usize> {
        let first = self.sessions.len();
        self.interrupts.wake_all();
        // Without cloning every session's `Arc` (9,000 of them took 1-3 ms
        // here, with every busy session paused).
        let mut waiting = HashSet::new();
        self.registry.for_each_session(|s| {
            if !self.seen.contains(&s.id) {
                waiting.insert(s.id);
            }
        });
        self.gather(waiting, self.expected_listeners).await;
        self.interrupts.stop_collecting();
        // Reports that raced the end of collecting are still in the channel.
        while let Ok(moved) = self.rx.try_recv() {
            self.take(moved);
        }
        first..self.sessions.len()
    }

    async fn gather(&mut self, mut waiting: HashSet<SessionId>, listeners: usize) {
        let deadline = Instant::now() + COLLECT_TIMEOUT;
        let mut recheck = tokio::time::interval(Duration::from_millis(20));
        while !waiting.is_empty() || self.listeners.len() < listeners {
            tokio::select! {
                moved = self.rx.recv() => match moved {
                    Some(moved) => {
                        if let Some(id) = self.take(moved) {
                            waiting.remove(&id);
                        }
                    }
                    None => break,
                },
                // A session that ended meanwhile never reports.
                _ = recheck.tick() => {
                    let live: HashSet<_> = self.registry.sessions().iter().map(|s| s.id).collect();
                    waiting.retain(|id| live.contains(id));
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
    }

    /// Files one report; the session's id, if it was one.
    fn take(&mut self, moved: Moved) -> Option<SessionId> {
        match moved {
            Moved::Session(s) => {
                let id = s.stats.id;
                self.seen.insert(id);
                self.sessions.push(s);
                Some(id)
            }
            Moved::Stays(id) => {
                self.seen.insert(id);
                self.stays += 1;
                Some(id)
            }
            Moved::Listener(l) => {
                self.listeners.push(l);
                None
            }
        }
    }

    /// The other process has everything: the listeners' accept loops end,
    /// and dropping this afterwards lets go of the sessions (closing this
    /// process's descriptors only; the connections live on there).
    pub fn commit(&mut self) {
        self.done = true;
        self.interrupts.decide(true);
    }

    /// The hand-over failed: every session carries on here, where it was.
    pub fn resume(mut self) {
        self.done = true;
        self.put_back();
    }

    fn put_back(&mut self) {
        self.interrupts.stop_collecting();
        self.interrupts.decide(false);
        self.listeners.clear();
        let workers = lock(&self.interrupts.workers).clone();
        let sessions = self.sessions.drain(..).map(|mut s| {
            let worker = s
                .held
                .as_ref()
                .map_or(0, |(g, _)| usize::from(g.stats().worker));
            // Out of the table now, before the restored entry appears.
            drop(s.held.take());
            (worker, s)
        });
        start_on_workers(&workers, sessions);
    }
}

impl Drop for Collected {
    fn drop(&mut self) {
        // Dropped on an error path: nothing is lost.
        if !self.done {
            self.put_back();
        }
    }
}

/// Starts sessions received from another process, spread over the workers,
/// the most recently active first (the streaming ones waited longest).
/// Returns once every one is in the table and started. It runs on the
/// caller's thread, which should be one that gives way to the workers
/// (`crate::handover::adopt`): starting 9,000 sessions is ~20 µs of
/// syscalls and bookkeeping each, and done on the workers themselves it
/// kept both cores busy for 90 ms, in which the busy sessions' round trips
/// waited up to 40 ms (bench/handover.sh).
pub fn adopt_received(interrupts: &Interrupts, mut sessions: Vec<Box<MovedSession>>) {
    let workers = lock(&interrupts.workers).clone();
    if workers.is_empty() {
        return;
    }
    // Boxed, and each key read once: sorting 9,000 large values in place
    // took ~10 ms, and reaching into them for the key at each comparison
    // ~5 ms, all of it added to the busy sessions' pause.
    sessions.sort_by_cached_key(|s| s.stats.idle_ns);
    let spread = sessions
        .into_iter()
        .enumerate()
        .map(|(n, s)| (n % workers.len(), s));
    start_on_workers(&workers, spread);
}

/// Puts each `(worker, session)` in the table and starts it on that worker
/// (the first one for an index out of range), in the order given, from the
/// calling thread: a hand-over's, which gives way to the workers. Every
/// session is in the table before this returns (so `sessions` and `attach`
/// list them at once).
fn start_on_workers(
    workers: &[WorkerRef],
    sessions: impl Iterator<Item = (usize, Box<MovedSession>)>,
) {
    if workers.is_empty() {
        return;
    }
    let mut batches: Vec<Vec<_>> = workers
        .iter()
        .map(|_| Vec::with_capacity(ADOPT_BATCH))
        .collect();
    for (n, s) in sessions {
        let n = if n < workers.len() { n } else { 0 };
        let (worker, batch) = (&workers[n], &mut batches[n]);
        // The worker's reactor takes the sockets.
        let _runtime = worker.runtime.enter();
        match prepare(&worker.shared, register(&worker.shared, s)) {
            Ok(session) => batch.push(session),
            Err(e) => tracing::warn!("a session could not be carried on: {e}"),
        }
        if batch.len() == ADOPT_BATCH {
            hand_over_to(worker, std::mem::take(batch));
        }
    }
    for (worker, batch) in workers.iter().zip(batches) {
        if !batch.is_empty() {
            hand_over_to(worker, batch);
        }
    }
}

/// Sessions prepared before they go to their worker in one spawn.
const ADOPT_BATCH: usize = 32;

/// Spawns `sessions` on `worker` from inside it: one wake-up of the worker
/// per batch instead of one per session (a spawn from another thread
/// wakes a parked worker every time).
fn hand_over_to<F>(worker: &WorkerRef, sessions: Vec<F>)
where
    F: Future<Output = ()> + Send + 'static,
{
    let shared = worker.shared.clone();
    worker.runtime.spawn(async move {
        for session in sessions {
            shared.tracker.spawn(session);
        }
    });
}
