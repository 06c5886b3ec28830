//! Evidence for advice (README, "Advice from evidence"): what the last 10 minutes of sessions
//! showed, per domain — which were cut for idleness, which of those were
//! *cut while alive* (their client came back within 10 s), each session's
//! longest gap between activity and its heartbeat when one was seen.
//!
//! Fed from the session lifecycle only (registration and close), never per
//! frame, and bounded: at most [`CAPACITY`] ended sessions are kept, the
//! oldest dropped first, whatever the churn. Numbers only — what to say
//! about them is the console's business (`app::advice`).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::event::CloseCause;
use super::heartbeat::{Heartbeat, Rhythm};
use super::registry::{SessionId, SessionStats};
use crate::config::DomainName;

/// How far back the evidence goes.
pub const WINDOW: Duration = Duration::from_secs(600);
/// A client that opens a new session within this long after an idle cut
/// was alive when it was cut.
pub const RECONNECT_WITHIN: Duration = Duration::from_secs(10);
/// Most ended sessions remembered (all domains together): about 120 bytes
/// each, so the evidence never holds more than ~1.2 MB.
pub const CAPACITY: usize = 10_000;

/// Who a client is, for matching a reconnect to the session that was cut:
/// the same address (not port: a new connection has a new one) and path
/// (without its query, which often carries a fresh token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    pub ip: IpAddr,
    pub path: Arc<str>,
}

impl ClientKey {
    pub fn new(ip: IpAddr, target: &str) -> Self {
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        Self {
            ip,
            path: path.into(),
        }
    }
}

/// One ended session.
#[derive(Debug, Clone)]
struct Ended {
    id: SessionId,
    domain: DomainName,
    client: ClientKey,
    ended: Instant,
    /// The idle limit it was cut at, if it was cut for idleness.
    idle_cut: Option<Duration>,
    /// Set when its client opened a new session within [`RECONNECT_WITHIN`].
    cut_while_alive: bool,
    longest_gap: Duration,
    idle_at_close: Duration,
    heartbeat: Option<Heartbeat>,
}

/// An ended session as a hand-over carries it to the next relay process:
/// times as ages, since the two processes' clocks are not comparable as
/// values. Without it a relay that just took over would advise as if the
/// last 10 minutes had shown nothing — a limit that cut live clients
/// minutes ago would look safe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedState {
    pub id: SessionId,
    pub domain: DomainName,
    pub ip: IpAddr,
    pub path: String,
    pub ended_ago_ns: u64,
    #[serde(default)]
    pub idle_cut_ns: Option<u64>,
    pub cut_while_alive: bool,
    pub longest_gap_ns: u64,
    pub idle_at_close_ns: u64,
    /// The heartbeat's median and max gap, once seen.
    #[serde(default)]
    pub heartbeat_ns: Option<(u64, u64)>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Ended {
    fn export(&self, now: Instant) -> EndedState {
        EndedState {
            id: self.id,
            domain: self.domain.clone(),
            ip: self.client.ip,
            path: self.client.path.to_string(),
            ended_ago_ns: nanos(now.saturating_duration_since(self.ended)),
            idle_cut_ns: self.idle_cut.map(nanos),
            cut_while_alive: self.cut_while_alive,
            longest_gap_ns: nanos(self.longest_gap),
            idle_at_close_ns: nanos(self.idle_at_close),
            heartbeat_ns: self.heartbeat.map(|h| (nanos(h.median), nanos(h.max))),
        }
    }

    /// `None` when it ended before this process's clock began (it is
    /// then older than any window anyway).
    fn restore(state: EndedState, now: Instant) -> Option<Self> {
        Some(Self {
            id: state.id,
            domain: state.domain,
            client: ClientKey {
                ip: state.ip,
                path: state.path.into(),
            },
            ended: now.checked_sub(Duration::from_nanos(state.ended_ago_ns))?,
            idle_cut: state.idle_cut_ns.map(Duration::from_nanos),
            cut_while_alive: state.cut_while_alive,
            longest_gap: Duration::from_nanos(state.longest_gap_ns),
            idle_at_close: Duration::from_nanos(state.idle_at_close_ns),
            heartbeat: state.heartbeat_ns.map(|(median, max)| Heartbeat {
                median: Duration::from_nanos(median),
                max: Duration::from_nanos(max),
            }),
        })
    }
}

/// What one session (live or ended within the window) showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvidence {
    pub id: SessionId,
    pub client: ClientKey,
    /// Still open.
    pub live: bool,
    /// The longest gap between activity that ended with activity (so a gap
    /// cut short by the relay does not count: it says nothing of when the
    /// next beat would have come).
    pub longest_gap: Duration,
    /// Idle now (live) or idle when it ended.
    pub idle: Duration,
    /// Its heartbeat, once seen ([`Rhythm::heartbeat`]); `None` for a
    /// session cut before its rhythm showed.
    pub heartbeat: Option<Heartbeat>,
    /// The limit it was cut at for idleness.
    pub idle_cut: Option<Duration>,
    pub cut_while_alive: bool,
}

impl SessionEvidence {
    fn live(stats: &SessionStats, now: Instant) -> Self {
        Self {
            id: stats.id,
            client: ClientKey::new(stats.client.ip(), &stats.path),
            live: true,
            longest_gap: stats.longest_gap(),
            idle: now.saturating_duration_since(stats.last_activity()),
            heartbeat: Rhythm::of(stats).heartbeat(),
            idle_cut: None,
            cut_while_alive: false,
        }
    }

    fn ended(e: &Ended) -> Self {
        Self {
            id: e.id,
            client: e.client.clone(),
            live: false,
            longest_gap: e.longest_gap,
            idle: e.idle_at_close,
            heartbeat: e.heartbeat,
            idle_cut: e.idle_cut,
            cut_while_alive: e.cut_while_alive,
        }
    }
}

/// A domain's sessions of the last [`WINDOW`], live ones included, oldest
/// first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainEvidence {
    pub domain: DomainName,
    pub sessions: Vec<SessionEvidence>,
}

impl DomainEvidence {
    pub fn cut_while_alive(&self) -> usize {
        self.sessions.iter().filter(|s| s.cut_while_alive).count()
    }

    /// The heartbeat seen on any session of this client in the window: a
    /// client cut before its first beat may show its rhythm on a later
    /// session (after the limit was raised).
    pub fn client_heartbeat(&self, client: &ClientKey) -> Option<Heartbeat> {
        self.sessions
            .iter()
            .filter(|s| &s.client == client)
            .filter_map(|s| s.heartbeat)
            .max_by_key(|h| h.max)
    }
}

/// Counts for one domain over the window, for the console's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DomainCounts {
    pub ended: usize,
    pub idle_cuts: usize,
    pub cut_while_alive: usize,
}

/// The evidence store, shared by every worker of a relay.
#[derive(Debug, Default)]
pub struct History {
    ended: Mutex<VecDeque<Ended>>,
    /// When the last idle cut happened: with none in the last
    /// [`RECONNECT_WITHIN`], an opening session has nothing to match, and a
    /// storm of new sessions (10,000/s) scans nothing (measured: the scan of
    /// 10 s of closes per open was 20 % of the relay's CPU under the
    /// handshake-rate benchmark).
    last_idle_cut: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere mid-update leaves it usable.
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// A session opened: if its client was cut for idleness on the same
    /// domain within [`RECONNECT_WITHIN`], that cut was of a live client.
    pub fn opened(&self, domain: &DomainName, client: &ClientKey, now: Instant) {
        if !self.reconnect_may_match(now) {
            return;
        }
        let mut ended = lock(&self.ended);
        let since = now.checked_sub(RECONNECT_WITHIN);
        // Newest first, only as far back as the reconnect window: the cost
        // is bounded by the closes of the last 10 s.
        let cut = ended
            .iter_mut()
            .rev()
            .take_while(|e| since.is_none_or(|s| e.ended >= s))
            .find(|e| {
                e.idle_cut.is_some()
                    && !e.cut_while_alive
                    && e.client == *client
                    && e.domain == *domain
            });
        if let Some(e) = cut {
            e.cut_while_alive = true;
        }
    }

    /// Whether an idle cut happened recently enough for an opening session
    /// to be its client coming back (cheap: callers skip building the
    /// [`ClientKey`] when it did not).
    pub fn reconnect_may_match(&self, now: Instant) -> bool {
        lock(&self.last_idle_cut)
            .is_some_and(|at| now.saturating_duration_since(at) <= RECONNECT_WITHIN)
    }

    /// A session ended.
    pub fn closed(&self, stats: &SessionStats, cause: &CloseCause, idle: Duration, now: Instant) {
        let idle_cut = match cause {
            CloseCause::IdleTimeout { timeout_secs } => Some(
                stats
                    .timeout()
                    .unwrap_or(Duration::from_secs(*timeout_secs)),
            ),
            _ => None,
        };
        let entry = Ended {
            id: stats.id,
            domain: stats.domain.clone(),
            client: ClientKey::new(stats.client.ip(), &stats.path),
            ended: now,
            idle_cut,
            cut_while_alive: false,
            longest_gap: stats.longest_gap(),
            idle_at_close: idle,
            heartbeat: Rhythm::of(stats).heartbeat(),
        };
        if idle_cut.is_some() {
            *lock(&self.last_idle_cut) = Some(now);
        }
        let mut ended = lock(&self.ended);
        prune(&mut ended, now);
        if ended.len() == CAPACITY {
            ended.pop_front();
        }
        ended.push_back(entry);
    }

    /// Ended sessions of `domain` within the window, oldest first.
    pub fn ended_on(&self, domain: &DomainName, now: Instant) -> Vec<SessionEvidence> {
        let since = now.checked_sub(WINDOW);
        lock(&self.ended)
            .iter()
            .filter(|e| since.is_none_or(|s| e.ended >= s))
            .filter(|e| e.domain == *domain)
            .map(SessionEvidence::ended)
            .collect()
    }

    /// Per-domain counts over the window (domain names as the relay
    /// registered them first).
    pub fn counts(&self, now: Instant) -> Vec<(DomainName, DomainCounts)> {
        let since = now.checked_sub(WINDOW);
        let mut out: Vec<(DomainName, DomainCounts)> = Vec::new();
        // By name, not a scan of `out`: a fleet config has thousands of
        // domains, and an attached console asks every second.
        let mut index: std::collections::HashMap<&DomainName, usize> =
            std::collections::HashMap::new();
        let ended = lock(&self.ended);
        for e in ended.iter().filter(|e| since.is_none_or(|s| e.ended >= s)) {
            let i = *index.entry(&e.domain).or_insert_with(|| {
                out.push((e.domain.clone(), DomainCounts::default()));
                out.len() - 1
            });
            let c = &mut out[i].1;
            c.ended += 1;
            c.idle_cuts += usize::from(e.idle_cut.is_some());
            c.cut_while_alive += usize::from(e.cut_while_alive);
        }
        out
    }

    /// Ids of the sessions within the window that were cut while alive.
    pub fn cut_while_alive_ids(&self, now: Instant) -> Vec<SessionId> {
        let since = now.checked_sub(WINDOW);
        lock(&self.ended)
            .iter()
            .filter(|e| e.cut_while_alive && since.is_none_or(|s| e.ended >= s))
            .map(|e| e.id)
            .collect()
    }

    /// Everything within the window, oldest first, for a hand-over.
    pub fn export(&self, now: Instant) -> Vec<EndedState> {
        let since = now.checked_sub(WINDOW);
        lock(&self.ended)
            .iter()
            .filter(|e| since.is_none_or(|s| e.ended >= s))
            .map(|e| e.export(now))
            .collect()
    }

    /// Takes in what the previous relay process remembered (its
    /// [`export`](Self::export) at `exported`, on this process's clock), as
    /// if its sessions had ended here: a client cut there and coming back
    /// here within 10 s still counts as cut while alive. What ended here
    /// meanwhile stays, in order.
    pub fn restore(&self, states: Vec<EndedState>, exported: Instant) {
        let since = Instant::now().checked_sub(WINDOW);
        let mut earlier: Vec<Ended> = states
            .into_iter()
            .filter_map(|s| Ended::restore(s, exported))
            .filter(|e| since.is_none_or(|s| e.ended >= s))
            .collect();
        if earlier.is_empty() {
            return;
        }
        let last_cut = earlier
            .iter()
            .filter(|e| e.idle_cut.is_some())
            .map(|e| e.ended)
            .max();
        {
            let mut last_idle_cut = lock(&self.last_idle_cut);
            *last_idle_cut = (*last_idle_cut).max(last_cut);
        }
        let mut ended = lock(&self.ended);
        earlier.extend(ended.drain(..));
        earlier.sort_by_key(|e| e.ended);
        let excess = earlier.len().saturating_sub(CAPACITY);
        ended.extend(earlier.into_iter().skip(excess));
    }

    /// Ended sessions remembered (at most [`CAPACITY`]).    /// Ended sessions remembered (at most [`CAPACITY`]).
    pub fn len(&self) -> usize {
        lock(&self.ended).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops what fell out of the window.
fn prune(ended: &mut VecDeque<Ended>, now: Instant) {
    let Some(since) = now.checked_sub(WINDOW) else {
        return;
    };
    while ended.front().is_some_and(|e| e.ended < since) {
        ended.pop_front();
    }
}

/// Evidence for one domain: its ended sessions of the window, then its
/// live ones.
pub fn evidence(
    history: &History,
    live: &[Arc<SessionStats>],
    domain: &DomainName,
    now: Instant,
) -> DomainEvidence {
    let mut sessions = history.ended_on(domain, now);
    let mut open: Vec<&Arc<SessionStats>> = live.iter().filter(|s| s.domain == *domain).collect();
    open.sort_by_key(|s| s.id);
    sessions.extend(open.into_iter().map(|s| SessionEvidence::live(s, now)));
    DomainEvidence {
        domain: domain.clone(),
        sessions,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use tokio::time::advance;

    use super::*;
    use crate::relay::registry::{NewSession, Registry, SessionGuard};
    use crate::ws::frame::SeenFrame;

    fn open(registry: &Arc<Registry>, port: u16, path: &str) -> SessionGuard {
        registry.register(NewSession {
            domain: "a.test".into(),
            client: format!("127.0.0.1:{port}").parse().unwrap(),
            origin: "127.0.0.1:9".into(),
            path: path.into(),
            timeout: Some(Duration::from_secs(20)),
        })
    }

    fn idle_cut(registry: &Registry, g: SessionGuard) {
        let cause = CloseCause::IdleTimeout { timeout_secs: 20 };
        registry.record_close(g.stats(), &cause, Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn the_evidence_moves_to_the_next_process_with_its_ages() {
        let old = Arc::new(Registry::new());
        let a = open(&old, 1000, "/chat");
        let b = open(&old, 1001, "/gone");
        advance(Duration::from_secs(20)).await;
        idle_cut(&old, a);
        advance(Duration::from_secs(1)).await;
        let _back = open(&old, 2000, "/chat");
        // Just under the window before the hand-over: kept, then it ages out.
        old.record_close(b.stats(), &CloseCause::ClientClosed, Duration::ZERO);
        let cut = old.history().counts(Instant::now());
        let exported_at = Instant::now();
        let exported = old.history().export(exported_at);
        let wire = serde_json::to_string(&exported).unwrap();

        let new = Arc::new(Registry::new());
        let c = open(&new, 3000, "/idle");
        advance(Duration::from_secs(2)).await;
        idle_cut(&new, c);
        new.history()
            .restore(serde_json::from_str(&wire).unwrap(), exported_at);
        let counts = new.history().counts(Instant::now());
        assert_eq!(
            counts[0].1,
            DomainCounts {
                ended: cut[0].1.ended + 1,
                idle_cuts: cut[0].1.idle_cuts + 1,
                cut_while_alive: 1,
            }
        );
        // The client cut here 0 s ago comes back: matched against both.
        let _again = open(&new, 3001, "/idle");
        assert_eq!(new.history().counts(Instant::now())[0].1.cut_while_alive, 2);
        // Ages kept: the old process's closes leave the window first.
        advance(WINDOW - Duration::from_secs(1)).await;
        assert_eq!(new.history().counts(Instant::now())[0].1.ended, 1);
        // Nothing older than the window is taken in.
        let stale = new.history().export(Instant::now() + WINDOW);
        let fresh = Registry::new();
        fresh.history().restore(
            stale
                .into_iter()
                .map(|mut e| {
                    e.ended_ago_ns = nanos(WINDOW) + 1;
                    e
                })
                .collect(),
            Instant::now(),
        );
        assert!(fresh.history().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_back_within_ten_seconds_was_cut_while_alive() {
        let registry = Arc::new(Registry::new());
        let a = open(&registry, 1000, "/chat");
        let b = open(&registry, 1001, "/chat");
        let c = open(&registry, 1002, "/other");
        advance(Duration::from_secs(20)).await;
        let (a_id, b_id) = (a.stats().id, b.stats().id);
        for g in [a, b, c] {
            idle_cut(&registry, g);
        }
        advance(Duration::from_secs(2)).await;
        // One reconnect from the same address and path marks one cut.
        let _back = open(&registry, 2000, "/chat?token=new");
        advance(Duration::from_secs(9)).await;
        // Beyond 10 s: too late to tell.
        let _late = open(&registry, 2001, "/other");
        let e = registry.evidence(&"A.TEST".into(), Instant::now());
        assert_eq!(e.cut_while_alive(), 1);
        let marked: Vec<_> = registry.history().cut_while_alive_ids(Instant::now());
        assert_eq!(marked.len(), 1);
        assert!(marked[0] == b_id || marked[0] == a_id);
        assert_eq!(e.sessions.len(), 5);
        assert_eq!(e.sessions.iter().filter(|s| s.live).count(), 2);
        let counts = registry.history().counts(Instant::now());
        assert_eq!(counts.len(), 1);
        assert_eq!(
            counts[0].1,
            DomainCounts {
                ended: 3,
                idle_cuts: 3,
                cut_while_alive: 1
            }
        );
        // Ten minutes later the evidence is gone.
        advance(WINDOW).await;
        assert_eq!(registry.history().counts(Instant::now()), vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_bounded_whatever_the_churn() {
        let registry = Arc::new(Registry::new());
        for i in 0..(CAPACITY + 50) {
            let g = open(&registry, 1000, &format!("/{}", i % 7));
            idle_cut(&registry, g);
        }
        assert_eq!(registry.history().len(), CAPACITY);
    }

    #[tokio::test(start_paused = true)]
    async fn the_longest_gap_is_between_activities() {
        let registry = Arc::new(Registry::new());
        let g = open(&registry, 1000, "/");
        use crate::relay::registry::Direction;
        use crate::ws::FrameKind;
        let beat = |active: bool| {
            g.stats().record_frame(
                Instant::now(),
                Direction::ClientToOrigin,
                SeenFrame {
                    kind: FrameKind::Ping,
                    fin: true,
                    payload_len: 0,
                },
                active,
            );
        };
        advance(Duration::from_secs(3)).await;
        beat(true);
        advance(Duration::from_secs(7)).await;
        // A ping that does not count as activity does not end the gap.
        beat(false);
        advance(Duration::from_secs(2)).await;
        beat(true);
        advance(Duration::from_secs(30)).await;
        // The open gap (30 s) is not a gap seen yet.
        assert_eq!(g.stats().longest_gap(), Duration::from_secs(9));
    }
}
