//! What the console remembers of relay events: the event log, per-domain
//! totals and close reasons, and per-minute history for the sparklines.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use tui_input::Input;

use crate::config::DomainName;
use crate::relay::{CloseCause, RelayEvent};

use super::list::ListCursor;

/// How many events the log keeps (the counts keep everything).
pub const LOG_CAPACITY: usize = 10_000;
/// Minutes of history behind the sparklines.
pub const HISTORY_MINUTES: usize = 120;

/// The Event Log's kinds, in the order `f` cycles through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, strum::EnumIter)]
pub enum KindFilter {
    #[default]
    All,
    Opened,
    Closed,
    Refused,
    Config,
}

impl KindFilter {
    pub fn next(self) -> Self {
        super::cycled(self, 1)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Opened => "opened",
            Self::Closed => "closed",
            Self::Refused => "refused",
            Self::Config => "config",
        }
    }

    fn accepts(self, e: &RelayEvent) -> bool {
        match self {
            Self::All => true,
            Self::Opened => matches!(e, RelayEvent::Opened { .. }),
            Self::Closed => matches!(e, RelayEvent::Closed { .. }),
            Self::Refused => matches!(e, RelayEvent::Refused { .. }),
            Self::Config => matches!(
                e,
                RelayEvent::ConfigApplied { .. }
                    | RelayEvent::ConfigRejected { .. }
                    | RelayEvent::AcceptFailed { .. }
                    | RelayEvent::ControlRefused { .. }
            ),
        }
    }
}

/// Counts for one domain since the console started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainTotals {
    pub opened: u64,
    pub closed: u64,
    pub idle_closes: u64,
    pub refused: u64,
    /// Close reason label → count.
    pub reasons: BTreeMap<&'static str, u64>,
}

/// One minute of history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Minutes since the Unix epoch.
    pub minute: u64,
    /// Most sessions seen live during the minute.
    pub active: u64,
    pub closes: u64,
    pub idle_closes: u64,
}

#[derive(Debug, Default)]
pub struct EventLog {
    entries: VecDeque<RelayEvent>,
    pub kind: KindFilter,
    /// Lower-case domain name, or all domains.
    pub domain: Option<DomainName>,
    pub text: Input,
    pub editing: bool,
    pub cursor: ListCursor,
    totals: HashMap<DomainName, DomainTotals>,
    history: VecDeque<Minute>,
}

pub fn minute_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 60)
}

impl EventLog {
    pub fn push(&mut self, event: RelayEvent) {
        if let Some(domain) = event.domain() {
            let totals = self.totals.entry(domain.clone()).or_default();
            match &event {
                RelayEvent::Opened { .. } => totals.opened += 1,
                RelayEvent::Closed { cause, .. } => {
                    totals.closed += 1;
                    if matches!(cause, CloseCause::IdleTimeout { .. }) {
                        totals.idle_closes += 1;
                    }
                    *totals.reasons.entry(cause.label()).or_default() += 1;
                }
                RelayEvent::Refused { .. } => totals.refused += 1,
                _ => {}
            }
        }
        if let RelayEvent::Closed { cause, at, .. } = &event {
            let idle = matches!(cause, CloseCause::IdleTimeout { .. });
            self.record(minute_of(*at), |m| {
                m.closes += 1;
                m.idle_closes += u64::from(idle);
            });
        }
        if self.entries.len() == LOG_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(event);
        // Newest first: keep the selection on the same event as rows arrive,
        // unless the operator is at the top (following the tail).
        if self.cursor.index != 0 && self.accepts(self.entries.back()) {
            self.cursor.index += 1;
        }
    }

    /// Records how many sessions are live now.
    pub fn sample_active(&mut self, now: SystemTime, active: usize) {
        self.record(minute_of(now), |m| m.active = m.active.max(active as u64));
    }

    fn record(&mut self, minute: u64, f: impl FnOnce(&mut Minute)) {
        // Events arrive in time order, give or take; a late one lands in
        // the newest bucket rather than reshuffling history.
        if self.history.back().is_none_or(|m| minute > m.minute) {
            self.history.push_back(Minute {
                minute,
                ..Minute::default()
            });
            while self.history.len() > HISTORY_MINUTES {
                self.history.pop_front();
            }
        }
        if let Some(m) = self.history.back_mut() {
            f(m);
        }
    }

    /// The last `n` minutes up to `now`, oldest first, with gaps filled.
    pub fn minutes(&self, now: SystemTime, n: usize) -> Vec<Minute> {
        let end = minute_of(now);
        let start = end.saturating_sub(n.saturating_sub(1) as u64);
        (start..=end)
            .map(|minute| {
                self.history
                    .iter()
                    .find(|m| m.minute == minute)
                    .copied()
                    .unwrap_or(Minute {
                        minute,
                        ..Minute::default()
                    })
            })
            .collect()
    }

    pub fn totals(&self, domain: &str) -> DomainTotals {
        self.totals
            .get(&DomainName::from(domain))
            .cloned()
            .unwrap_or_default()
    }

    /// Domains with close reasons, in name order.
    pub fn reason_counts(&self) -> Vec<(&DomainName, &BTreeMap<&'static str, u64>)> {
        let mut v: Vec<_> = self
            .totals
            .iter()
            .filter(|(_, t)| !t.reasons.is_empty())
            .map(|(d, t)| (d, &t.reasons))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// The events of `backlog` not among the last `recent` logged. A relay
    /// that took over from another carries its ring of recent events along,
    /// so a console attaching again to the new one is sent events it
    /// already shows (and counts).
    pub fn unseen(&self, backlog: Vec<RelayEvent>, recent: usize) -> Vec<RelayEvent> {
        let seen: Vec<&RelayEvent> = self.entries.iter().rev().take(recent).collect();
        backlog.into_iter().filter(|e| !seen.contains(&e)).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn accepts(&self, e: Option<&RelayEvent>) -> bool {
        let Some(e) = e else { return false };
        if !self.kind.accepts(e) {
            return false;
        }
        if let Some(d) = &self.domain
            && e.domain().is_none_or(|n| d != n)
        {
            return false;
        }
        let text = self.text.value().trim();
        text.is_empty() || e.to_string().to_lowercase().contains(&text.to_lowercase())
    }

    /// The events that pass the filters, newest first.
    pub fn filtered(&self) -> Vec<&RelayEvent> {
        self.entries
            .iter()
            .rev()
            .filter(|e| self.accepts(Some(e)))
            .collect()
    }

    /// The close event of a session, if it is still in the log.
    pub fn closed_event(&self, id: crate::relay::SessionId) -> Option<&RelayEvent> {
        self.entries
            .iter()
            .rev()
            .find(|e| matches!(e, RelayEvent::Closed { id: i, .. } if *i == id))
    }

    pub fn filters_active(&self) -> bool {
        self.kind != KindFilter::All || self.domain.is_some() || !self.text.value().is_empty()
    }
}
