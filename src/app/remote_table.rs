//! The session table of an attached console: what the relay last said of
//! each live session, and the console's own table kept up to date from it.
//!
//! The relay sends only what changed (`sessions-changed`); everything else
//! ages locally. Keeping the console's table in place — the app sorts it
//! where it is and the next refresh finds it still in that order — is what
//! keeps a frame on 9,000 sessions to a pass over the rows, not a copy and
//! a full sort of 9,000 snapshots a second.

use std::collections::{HashMap, HashSet};

use foldhash::fast::RandomState;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::DomainName;
use crate::relay::heartbeat::Rhythm;
use crate::relay::{SessionId, SessionSnapshot};

#[derive(Debug, Default)]
pub struct RemoteTable {
    /// Each session as the relay last described it, and when.
    known: HashMap<SessionId, (SessionSnapshot, Instant), RandomState>,
    rhythms: HashMap<SessionId, Rhythm, RandomState>,
    /// Sessions described since the console's table was last updated.
    fresh: HashSet<SessionId, RandomState>,
    /// Sessions new since then (appended to the table).
    added: Vec<SessionId>,
    /// Sessions ended since then (their rows go).
    removed: bool,
    /// Everything was fetched again: build the table from scratch.
    rebuild: bool,
    /// When the console's table was last brought up to date.
    aged_to: Option<Instant>,
    /// Domain names as received, shared by every session of the domain.
    names: HashSet<DomainName>,
    /// While a full fetch comes in pages: how many sessions the relay has.
    loading: Option<usize>,
}

impl RemoteTable {
    /// Takes the relay's description of one session, received at `now`.
    pub fn take(&mut self, mut snapshot: SessionSnapshot, rhythm: Rhythm, now: Instant) {
        snapshot.domain = self.shared_name(&snapshot.domain);
        let id = snapshot.id;
        if self.known.insert(id, (snapshot, now)).is_none() {
            self.added.push(id);
        }
        self.rhythms.insert(id, rhythm);
        self.fresh.insert(id);
    }

    /// Brings a session described before up to date with what moved
    /// since, received at `now` (the relay's brief row, `moved`). A session
    /// the table no longer knows (forgotten on its close event, which can
    /// overtake the answer) stays gone.
    pub fn take_moved(
        &mut self,
        id: SessionId,
        rhythm: Rhythm,
        now: Instant,
        moved: impl FnOnce(&mut SessionSnapshot),
    ) {
        let Some((snapshot, at)) = self.known.get_mut(&id) else {
            return;
        };
        age_by(snapshot, now.saturating_duration_since(*at));
        moved(snapshot);
        *at = now;
        self.rhythms.insert(id, rhythm);
        self.fresh.insert(id);
    }

    /// Forgets every session not in `live` (the relay's full list of ids).
    pub fn keep_only(&mut self, live: &HashSet<SessionId>) {
        let before = self.known.len();
        self.known.retain(|id, _| live.contains(id));
        self.rhythms.retain(|id, _| live.contains(id));
        self.removed |= self.known.len() != before;
        // Room for every live one: no rehash of thousands mid-fetch.
        self.known
            .reserve(live.len().saturating_sub(self.known.len()));
        self.rhythms
            .reserve(live.len().saturating_sub(self.rhythms.len()));
    }

    /// Forgets a session the relay said has closed (its `closed` event):
    /// the row goes with the next update, before the next answer.
    pub fn forget(&mut self, id: SessionId) {
        if self.known.remove(&id).is_some() {
            self.removed = true;
        }
        self.rhythms.remove(&id);
        self.fresh.remove(&id);
    }

    /// Forgets every session (the relay answered with its whole table).
    pub fn clear(&mut self) {
        self.known.clear();
        self.rhythms.clear();
        self.added.clear();
        self.rebuild = true;
    }

    /// The ids of the sessions the table knows of.
    pub fn ids(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.known.keys().copied()
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    pub fn rhythm(&self, id: SessionId) -> Option<Rhythm> {
        self.rhythms.get(&id).copied()
    }

    /// `Some(total)` while a full fetch is still coming in pages.
    pub fn loading(&self) -> Option<usize> {
        self.loading
    }

    pub fn set_loading(&mut self, total: Option<usize>) {
        self.loading = total;
    }

    /// Brings the console's `table` up to `now`, in place: rows of ended
    /// sessions go, described ones are replaced, the rest only age by the
    /// time since — in the order the app left them — and new sessions are
    /// appended. A table that does not match (the first, or after a full
    /// answer) is built again.
    pub fn update(&mut self, table: &mut Vec<SessionSnapshot>, now: Instant) {
        let fresh = std::mem::take(&mut self.fresh);
        let mut added = std::mem::take(&mut self.added);
        // A session may end and be described again between two updates.
        added.sort_unstable();
        added.dedup();
        let since = self.aged_to.replace(now);
        let removed = std::mem::take(&mut self.removed);
        let rebuild = std::mem::take(&mut self.rebuild);
        let Some(since) = since.filter(|_| !rebuild) else {
            table.clear();
            table.extend(self.known.values().map(|(s, at)| aged(s, *at, now)));
            return;
        };
        if removed {
            table.retain(|row| self.known.contains_key(&row.id));
        }
        let later = now.saturating_duration_since(since);
        for row in table.iter_mut() {
            let described = (!fresh.is_empty() && fresh.contains(&row.id))
                .then(|| self.known.get(&row.id))
                .flatten();
            match described {
                Some((base, at)) => *row = aged(base, *at, now),
                None => age_by(row, later),
            }
        }
        table.extend(
            added
                .iter()
                .filter_map(|id| self.known.get(id))
                .map(|(s, at)| aged(s, *at, now)),
        );
        if table.len() != self.known.len() {
            // Never expected; a table out of step is rebuilt, not trusted.
            table.clear();
            table.extend(self.known.values().map(|(s, at)| aged(s, *at, now)));
        }
    }

    /// One allocation per domain name, not one per session.
    fn shared_name(&mut self, name: &DomainName) -> DomainName {
        if let Some(shared) = self.names.get(name) {
            return shared.clone();
        }
        self.names.insert(name.clone());
        name.clone()
    }
}

/// `s` as the relay described it at `received`, seen at `now`: older and
/// idler by the time since, with that much less time left.
fn aged(s: &SessionSnapshot, received: Instant, now: Instant) -> SessionSnapshot {
    let mut s = s.clone();
    age_by(&mut s, now.saturating_duration_since(received));
    s
}

fn age_by(s: &mut SessionSnapshot, later: Duration) {
    s.age += later;
    s.idle += later;
    s.remaining = s.remaining.map(|r| r.saturating_sub(later));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::relay::registry::FlowSnapshot;

    const QUIET: FlowSnapshot = FlowSnapshot {
        frames: 0,
        messages: 0,
        bytes: 0,
        last_frame: None,
    };

    fn described(id: SessionId, idle_secs: u64) -> SessionSnapshot {
        SessionSnapshot {
            id,
            worker: 0,
            domain: "App.test".into(),
            client: "127.0.0.1:5000".parse().unwrap(),
            origin: "127.0.0.1:9001".into(),
            path: "/".into(),
            age: Duration::from_secs(idle_secs),
            idle: Duration::from_secs(idle_secs),
            timeout: Some(Duration::from_secs(100)),
            remaining: Some(Duration::from_secs(100 - idle_secs)),
            to_origin: QUIET,
            to_client: QUIET,
            last_frame: None,
        }
    }

    fn ids(table: &[SessionSnapshot]) -> Vec<SessionId> {
        table.iter().map(|s| s.id).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_session_leaves_the_table_before_the_next_answer() {
        let t0 = Instant::now();
        let mut remote = RemoteTable::default();
        for id in 1..=3 {
            remote.take(described(id, 1), Rhythm::default(), t0);
        }
        let mut table = Vec::new();
        remote.update(&mut table, t0);
        table.sort_by_key(|s| s.id);
        remote.forget(2);
        remote.forget(7); // never known: nothing happens
        remote.update(&mut table, t0 + Duration::from_millis(10));
        assert_eq!(ids(&table), [1, 3]);
        assert_eq!(remote.len(), 2);
        assert_eq!(remote.rhythm(2), None);
        // The relay's answer that still lists it would bring it back; one
        // made after the close does not.
        remote.keep_only(&HashSet::from([1, 3]));
        remote.update(&mut table, t0 + Duration::from_millis(20));
        assert_eq!(ids(&table), [1, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn rows_age_in_the_order_the_app_left_them() {
        let t0 = Instant::now();
        let mut remote = RemoteTable::default();
        for id in 1..=3 {
            remote.take(described(id, id), Rhythm::default(), t0);
        }
        let mut table = Vec::new();
        remote.update(&mut table, t0);
        table.sort_by_key(|s| std::cmp::Reverse(s.id));
        assert_eq!(ids(&table), [3, 2, 1]);

        // Nothing described: every row is 2 s idler, in place.
        remote.update(&mut table, t0 + Duration::from_secs(2));
        assert_eq!(ids(&table), [3, 2, 1]);
        assert_eq!(table[0].idle, Duration::from_secs(5));
        assert_eq!(table[2].remaining, Some(Duration::from_secs(97)));

        // Session 2 passed a frame: its row is the relay's, aged since.
        remote.take(
            described(2, 0),
            Rhythm::default(),
            t0 + Duration::from_secs(2),
        );
        remote.update(&mut table, t0 + Duration::from_secs(3));
        assert_eq!(ids(&table), [3, 2, 1]);
        assert_eq!(table[1].idle, Duration::from_secs(1));
        assert_eq!(table[0].idle, Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn ended_sessions_go_and_new_ones_are_appended() {
        let t0 = Instant::now();
        let mut remote = RemoteTable::default();
        for id in 1..=3 {
            remote.take(described(id, 0), Rhythm::default(), t0);
        }
        let mut table = Vec::new();
        remote.update(&mut table, t0);
        table.sort_by_key(|s| s.id);
        remote.keep_only(&[1, 3].into_iter().collect());
        remote.take(described(7, 0), Rhythm::default(), t0);
        remote.update(&mut table, t0 + Duration::from_secs(1));
        assert_eq!(ids(&table), [1, 3, 7]);
        assert_eq!(remote.len(), 3);
        assert!(remote.rhythm(2).is_none());
        // Sessions of one domain share one name.
        assert!(std::ptr::eq(
            table[0].domain.as_str(),
            table[2].domain.as_str()
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_brief_row_moves_a_known_session_and_not_a_forgotten_one() {
        let t0 = Instant::now();
        let mut remote = RemoteTable::default();
        remote.take(described(1, 10), Rhythm::default(), t0);
        remote.take(described(2, 10), Rhythm::default(), t0);
        let mut table = Vec::new();
        remote.update(&mut table, t0);
        table.sort_by_key(|s| s.id);
        remote.forget(2);
        let t1 = t0 + Duration::from_secs(4);
        let passed_a_frame = |s: &mut SessionSnapshot| {
            s.idle = Duration::from_millis(500);
            s.to_origin.messages = 7;
        };
        remote.take_moved(1, Rhythm::default(), t1, passed_a_frame);
        remote.take_moved(2, Rhythm::default(), t1, passed_a_frame);
        remote.update(&mut table, t1 + Duration::from_secs(1));
        assert_eq!(ids(&table), [1]);
        // What moved, aged since; its age from the first description on.
        assert_eq!(table[0].idle, Duration::from_millis(1500));
        assert_eq!(table[0].to_origin.messages, 7);
        assert_eq!(table[0].age, Duration::from_secs(15));
        assert_eq!(table[0].domain.as_str(), "App.test", "the rest kept");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_answer_rebuilds_the_table() {
        let t0 = Instant::now();
        let mut remote = RemoteTable::default();
        remote.take(described(1, 0), Rhythm::default(), t0);
        let mut table = Vec::new();
        remote.update(&mut table, t0);
        remote.clear();
        remote.take(described(5, 0), Rhythm::default(), t0);
        remote.update(&mut table, t0);
        assert_eq!(ids(&table), [5]);
        // A table the app replaced behind its back is not trusted either.
        table.push(described(9, 0));
        remote.update(&mut table, t0);
        assert_eq!(ids(&table), [5]);
    }
}
