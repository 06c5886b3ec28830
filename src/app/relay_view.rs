//! The one handle through which the console sees a relay: its own
//! in-process relay's session table, or — attached to a relay in another
//! process — the samples the runner fetched over the control socket.
//! Screens ask it the same questions either way.

use crate::config::DomainName;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::time::Instant;

use super::remote_table::RemoteTable;
use crate::relay::heartbeat::Rhythm;
use crate::relay::history::{DomainCounts, DomainEvidence};
use crate::relay::{RecentFrame, Registry, SessionId, SessionSnapshot};

/// A session's page: counters, recent frames, message rhythm.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPage {
    pub snapshot: SessionSnapshot,
    pub recent: Vec<RecentFrame>,
    pub rhythm: Rhythm,
}

/// What an attached console last fetched from its relay.
#[derive(Debug, Default)]
pub struct Remote {
    /// The relay's control socket.
    pub socket: PathBuf,
    /// The relay's process id (shown in the header).
    pub pid: u32,
    /// The configuration version the console's edits are made on.
    pub config_version: u64,
    /// The live sessions as the relay last described them.
    pub table: RemoteTable,
    /// The open session's page, fetched with its recent frames.
    pub page: Option<SessionPage>,
    /// What the relay's history last showed (its `evidence` answer): the
    /// advice on screen is made of the relay's evidence, as the relay's own
    /// `recommend` is.
    pub evidence: RemoteEvidence,
}

/// The relay's evidence as last fetched: always the counts and the cuts of
/// live clients, one domain's sessions while its advice is on screen.
#[derive(Debug, Default)]
pub struct RemoteEvidence {
    pub recent: Vec<(DomainName, DomainCounts)>,
    pub cut_while_alive: Vec<SessionId>,
    pub domain: Option<DomainEvidence>,
    /// The relay cannot say (a build before `evidence`): advise from no
    /// history, as that build's consoles did.
    pub unavailable: bool,
}

#[derive(Debug)]
pub enum RelayView {
    /// The relay runs in this process: sample its table directly.
    Local(Arc<Registry>),
    /// Attached to a relay in another process.
    Remote(Box<Remote>),
}

impl RelayView {
    /// Brings `live` to every live session at `now`. A local relay's table
    /// is sampled afresh; an attached console's is updated in place, so
    /// rows the app sorted stay in that order (see `RemoteTable`).
    pub fn sample(&mut self, now: Instant, live: &mut Vec<SessionSnapshot>) {
        match self {
            Self::Local(r) => *live = r.snapshot(now),
            Self::Remote(r) => r.table.update(live, now),
        }
    }

    /// The relay said session `id` closed. A local table already lost it;
    /// an attached console's drops its row now rather than at the next
    /// answer.
    pub fn session_closed(&mut self, id: SessionId) {
        if let Self::Remote(r) = self {
            r.table.forget(id);
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Local(r) => r.len(),
            Self::Remote(r) => r.table.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Self::Local(r) => r.is_empty(),
            Self::Remote(r) => r.table.is_empty(),
        }
    }

    /// While an attached console's first fetch still comes in: how many
    /// sessions the relay has.
    pub fn loading(&self) -> Option<usize> {
        match self {
            Self::Local(_) => None,
            Self::Remote(r) => r.table.loading(),
        }
    }

    /// A live session's observed rhythm.
    pub fn rhythm(&self, id: SessionId) -> Option<Rhythm> {
        match self {
            Self::Local(r) => r.get(id).map(|stats| Rhythm::of(&stats)),
            Self::Remote(r) => r.table.rhythm(id),
        }
    }

    /// A live session's page, or `None` once it has ended.
    pub fn page(&self, id: SessionId, now: Instant) -> Option<SessionPage> {
        match self {
            Self::Local(r) => r.get(id).map(|stats| SessionPage {
                snapshot: stats.snapshot(now),
                recent: stats.recent_frames(),
                rhythm: Rhythm::of(&stats),
            }),
            Self::Remote(r) => r.page.as_ref().filter(|p| p.snapshot.id == id).cloned(),
        }
    }

    /// Per-domain counts over the last 10 minutes (README, "Advice from
    /// evidence").
    pub fn recent(&self, now: Instant) -> Vec<(DomainName, DomainCounts)> {
        match self {
            Self::Local(r) => r.history().counts(now),
            Self::Remote(r) => r.evidence.recent.clone(),
        }
    }

    /// Sessions of the last 10 minutes that were cut while alive.
    pub fn cut_while_alive_ids(&self, now: Instant) -> Vec<SessionId> {
        match self {
            Self::Local(r) => r.history().cut_while_alive_ids(now),
            Self::Remote(r) => r.evidence.cut_while_alive.clone(),
        }
    }

    /// A domain's evidence for the recommendation; `None` while an
    /// attached console has not fetched it yet.
    pub fn evidence(&self, domain: &DomainName, now: Instant) -> Option<DomainEvidence> {
        match self {
            Self::Local(r) => Some(r.evidence(domain, now)),
            Self::Remote(r) if r.evidence.unavailable => Some(DomainEvidence {
                domain: domain.clone(),
                sessions: Vec::new(),
            }),
            Self::Remote(r) => r
                .evidence
                .domain
                .as_ref()
                .filter(|e| e.domain == *domain)
                .cloned(),
        }
    }

    /// The in-process relay's table, when there is one.
    pub fn local(&self) -> Option<&Arc<Registry>> {
        match self {
            Self::Local(r) => Some(r),
            Self::Remote(_) => None,
        }
    }

    pub fn remote(&self) -> Option<&Remote> {
        match self {
            Self::Remote(r) => Some(r),
            Self::Local(_) => None,
        }
    }

    pub fn remote_mut(&mut self) -> Option<&mut Remote> {
        match self {
            Self::Remote(r) => Some(r),
            Self::Local(_) => None,
        }
    }
}
