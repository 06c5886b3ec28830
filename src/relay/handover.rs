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

use std::io;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::listener::{ConnectionSlot, Shared, run_session};
use super::registry::{SessionGuard, SessionId, StatsState};
use super::session::{LaneState, PausedSession, SessionSetup};

/// What wakes every session (and accept loop) at once.
#[derive(Debug)]
pub struct Interrupts {
    pub shutdown: CancellationToken,
    /// Parent of the close tokens of sessions registered now.
    generation: Mutex<CancellationToken>,
    /// While a hand-over collects, where sessions and listeners report.
    collector: Mutex<Option<mpsc::UnboundedSender<Moved>>>,
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

    /// Starts collecting: every session of the current generation wakes.
    fn begin(&self) -> Option<(mpsc::UnboundedReceiver<Moved>, u64)> {
        let mut collector = lock(&self.collector);
        if collector.is_some() || self.shutdown.is_cancelled() {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        *collector = Some(tx);
        let mut round = 0;
        self.verdict.send_modify(|v| {
            v.round += 1;
            v.committed = None;
            round = v.round;
        });
        let old = std::mem::replace(&mut *lock(&self.generation), self.shutdown.child_token());
        drop(collector);
        old.cancel();
        Some((rx, round))
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
        resume(&shared, *moved);
    }
}

/// Carries `moved` on on this worker (call on its runtime).
fn resume(shared: &Arc<Shared>, mut moved: MovedSession) {
    // Out of the table first: the restored entry takes the same id.
    drop(moved.held.take());
    if let Err(e) = adopt(shared, moved) {
        tracing::warn!("a session could not be carried on: {e}");
    }
}

/// Starts a session from its moved state on the current runtime (a worker's).
fn adopt(shared: &Arc<Shared>, moved: MovedSession) -> io::Result<()> {
    moved.client.set_nonblocking(true)?;
    moved.origin.set_nonblocking(true)?;
    let client = TcpStream::from_std(moved.client)?;
    let origin = TcpStream::from_std(moved.origin)?;
    let parent = shared.interrupts.session_parent();
    let guard = shared
        .registry
        .restore(shared.worker, moved.stats, moved.exported_at, &parent);
    let setup = SessionSetup {
        stats: guard.stats().clone(),
        domain: guard.stats().domain.to_string(),
        client_leftover: Vec::new(),
        origin_leftover: Vec::new(),
        extensions: false,
        config: shared.config.clone(),
        interrupts: shared.interrupts.clone(),
        resume: Some(Box::new(moved.lanes)),
    };
    let slot = ConnectionSlot::take(shared);
    shared
        .tracker
        .spawn(run_session(slot, guard, client, origin, setup));
    Ok(())
}

/// Everything a hand-over collected, held until it commits or is refused.
#[derive(Debug)]
pub struct Collected {
    interrupts: Arc<Interrupts>,
    pub sessions: Vec<MovedSession>,
    pub listeners: Vec<MovedListener>,
    /// Sessions that cannot move and carry on here.
    pub stays: usize,
    done: bool,
}

/// How long sessions get to stop; one that has not by then (it cannot be
/// mid-way in anything longer than a read) is left where it is.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Stops every movable session and takes a copy of every listener.
pub async fn collect(
    interrupts: &Arc<Interrupts>,
    expected_listeners: usize,
    live: impl Fn() -> Vec<SessionId>,
) -> Option<Collected> {
    let (mut rx, _round) = interrupts.begin()?;
    let mut waiting: std::collections::HashSet<SessionId> = live().into_iter().collect();
    let mut collected = Collected {
        interrupts: interrupts.clone(),
        sessions: Vec::new(),
        listeners: Vec::new(),
        stays: 0,
        done: false,
    };
    let deadline = Instant::now() + COLLECT_TIMEOUT;
    let mut recheck = tokio::time::interval(Duration::from_millis(20));
    loop {
        if collected.listeners.len() >= expected_listeners && waiting.is_empty() {
            break;
        }
        tokio::select! {
            moved = rx.recv() => match moved {
                Some(Moved::Session(s)) => {
                    waiting.remove(&s.stats.id);
                    collected.sessions.push(*s);
                }
                Some(Moved::Stays(id)) => {
                    waiting.remove(&id);
                    collected.stays += 1;
                }
                Some(Moved::Listener(l)) => collected.listeners.push(l),
                None => break,
            },
            // A session that ended meanwhile never reports.
            _ = recheck.tick() => {
                let live: std::collections::HashSet<_> = live().into_iter().collect();
                waiting.retain(|id| live.contains(id));
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    interrupts.stop_collecting();
    // Reports that raced the end of collecting are still in the channel.
    while let Ok(moved) = rx.try_recv() {
        match moved {
            Moved::Session(s) => collected.sessions.push(*s),
            Moved::Stays(_) => collected.stays += 1,
            Moved::Listener(l) => collected.listeners.push(l),
        }
    }
    Some(collected)
}

impl Collected {
    /// The other process has everything: this one lets go of the sessions
    /// (closing its descriptors only; the connections live on there) and
    /// of its listeners.
    pub fn commit(mut self) {
        self.done = true;
        self.interrupts.decide(true);
        self.sessions.clear();
        self.listeners.clear();
    }

    /// The hand-over failed: every session carries on here, where it was.
    pub fn resume(mut self) {
        self.done = true;
        self.put_back();
    }

    fn put_back(&mut self) {
        self.interrupts.decide(false);
        self.listeners.clear();
        let workers = lock(&self.interrupts.workers).clone();
        let mut per_worker: Vec<Vec<MovedSession>> = workers.iter().map(|_| Vec::new()).collect();
        for mut s in self.sessions.drain(..) {
            let worker = s
                .held
                .as_ref()
                .map_or(0, |(g, _)| usize::from(g.stats().worker));
            // Out of the table now, before the restored entry appears.
            drop(s.held.take());
            let worker = if worker < per_worker.len() { worker } else { 0 };
            if let Some(list) = per_worker.get_mut(worker) {
                list.push(s);
            }
        }
        spawn_on_workers(&workers, per_worker);
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

fn spawn_on_workers(workers: &[WorkerRef], per_worker: Vec<Vec<MovedSession>>) {
    for (worker, sessions) in workers.iter().zip(per_worker) {
        if sessions.is_empty() {
            continue;
        }
        let shared = worker.shared.clone();
        worker.runtime.spawn(async move {
            for s in sessions {
                if let Err(e) = adopt(&shared, s) {
                    tracing::warn!("a session could not be carried on: {e}");
                }
            }
        });
    }
}

/// Starts sessions received from another process, spread over the workers.
pub fn adopt_received(interrupts: &Interrupts, sessions: Vec<MovedSession>) {
    let workers = lock(&interrupts.workers).clone();
    if workers.is_empty() {
        return;
    }
    let mut per_worker: Vec<Vec<MovedSession>> = workers.iter().map(|_| Vec::new()).collect();
    for (i, s) in sessions.into_iter().enumerate() {
        per_worker[i % workers.len()].push(s);
    }
    spawn_on_workers(&workers, per_worker);
}
