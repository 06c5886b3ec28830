//! The console's state and its update logic (the Elm architecture): an
//! [`Action`] goes in, the state changes, and [`Effect`]s come out for the
//! runner to carry out. Nothing here touches a terminal, a file or a socket,
//! so every behaviour can be tested by sending actions.

pub mod action;
pub mod advice;
pub mod certificates;
pub mod cloud;
pub mod dialog;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fixtures;
pub mod keymap;
pub mod list;
pub mod log;
pub mod relay_view;
pub mod remote_table;
mod update;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;
use tui_input::Input;

pub use action::{Action, Command, Effect, SaveError, SaveErrorKind};
pub use advice::{Recommendation, WhatIf};
pub use certificates::{Certificates, DomainCertificate, Expiry};
pub use cloud::{CloudEvent, CloudView, DomainSource, LoadState, ProbeResult, ProbeState};
pub use dialog::{Confirm, Dialog, Field, FieldValue, Form, FormKind, Impact, Message, WsDraft};
pub use keymap::Context;
pub use list::ListCursor;
pub use log::{DomainTotals, EventLog, KindFilter, Minute};
pub use relay_view::{RelayView, Remote, RemoteEvidence, SessionPage};
pub use remote_table::RemoteTable;
pub use update::update;

use crate::config::{Config, Domain, DomainName};
use strum::IntoEnumIterator;

use crate::relay::heartbeat::Rhythm;
use crate::relay::history::{DomainCounts, DomainEvidence};
use crate::relay::{Registry, SessionId, SessionSnapshot};

/// Where `value` stands in its enum's order.
fn position<T: IntoEnumIterator + PartialEq>(value: T) -> usize {
    T::iter().position(|v| v == value).unwrap_or(0)
}

/// The value `delta` places on in its enum's order, wrapping around: the
/// menu, the tabs and the cycling filters.
pub(crate) fn cycled<T: IntoEnumIterator + PartialEq + Copy>(value: T, delta: isize) -> T {
    let n = T::iter().count().max(1) as isize;
    let i = (position(value) as isize + delta).rem_euclid(n) as usize;
    T::iter().nth(i).unwrap_or(value)
}

/// The time a frame is drawn at: monotonic for session counters, wall
/// clock for event times. Tests pass a fixed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Clock {
    pub fn now() -> Self {
        Self {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// The left menu, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumIter)]
pub enum Screen {
    Overview,
    Domains,
    Sessions,
    Events,
}

impl Screen {
    pub fn title(self) -> &'static str {
        match self {
            Screen::Overview => "Overview",
            Screen::Domains => "Domain Management",
            Screen::Sessions => "Live Sessions",
            Screen::Events => "Event Log",
        }
    }

    /// The screen `delta` places down the menu, wrapping around.
    pub fn step(self, delta: isize) -> Self {
        cycled(self, delta)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Menu,
    Content,
}

/// The Manage page's tabs, in their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter)]
pub enum ManageTab {
    Basic,
    Origin,
    Advanced,
    Sessions,
}

impl ManageTab {
    pub fn title(self) -> &'static str {
        match self {
            ManageTab::Basic => "Basic Information",
            ManageTab::Origin => "Origin Configuration",
            ManageTab::Advanced => "Advanced Configuration",
            ManageTab::Sessions => "Sessions",
        }
    }

    pub fn short_title(self) -> &'static str {
        match self {
            ManageTab::Basic => "Basic",
            ManageTab::Origin => "Origin",
            ManageTab::Advanced => "Advanced",
            ManageTab::Sessions => "Sessions",
        }
    }

    pub fn index(self) -> usize {
        position(self)
    }

    fn step(self, delta: isize) -> Self {
        cycled(self, delta)
    }
}

/// A domain's Manage page.
#[derive(Debug, Clone)]
pub struct ManageState {
    pub domain: DomainName,
    pub tab: ManageTab,
    /// The Sessions tab's cursor.
    pub cursor: ListCursor,
    /// A session opened from the Sessions tab.
    pub detail: Option<SessionDetail>,
}

/// An opened session: its recent frames.
#[derive(Debug, Clone)]
pub struct SessionDetail {
    pub id: SessionId,
    pub cursor: ListCursor,
}

#[derive(Debug, Default)]
pub struct DomainsState {
    pub cursor: ListCursor,
    pub filter: Input,
    pub filtering: bool,
    pub manage: Option<ManageState>,
}

/// Live Sessions' sort keys, in the order `s` cycles through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, strum::EnumIter)]
pub enum SortKey {
    /// Closest to its idle deadline first (no limit last).
    #[default]
    Deadline,
    /// Longest idle first.
    Idle,
    /// Oldest first.
    Age,
    /// Most bytes (both ways) first.
    Traffic,
    Domain,
    Id,
}

impl SortKey {
    pub fn next(self) -> Self {
        cycled(self, 1)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Deadline => "closest to deadline",
            Self::Idle => "longest idle",
            Self::Age => "oldest",
            Self::Traffic => "most traffic",
            Self::Domain => "domain",
            Self::Id => "id",
        }
    }

    pub fn sort(self, sessions: &mut [SessionSnapshot]) {
        let traffic = |s: &SessionSnapshot| s.to_origin.bytes + s.to_client.bytes;
        match self {
            // `None` (no idle limit) sorts after every deadline.
            Self::Deadline => sessions.sort_by(|a, b| {
                let key = |s: &SessionSnapshot| (s.remaining.is_none(), s.remaining, s.id);
                key(a).cmp(&key(b))
            }),
            Self::Idle => sessions.sort_by(|a, b| b.idle.cmp(&a.idle).then(a.id.cmp(&b.id))),
            Self::Age => sessions.sort_by(|a, b| b.age.cmp(&a.age).then(a.id.cmp(&b.id))),
            Self::Traffic => {
                sessions.sort_by(|a, b| traffic(b).cmp(&traffic(a)).then(a.id.cmp(&b.id)))
            }
            // `DomainName` orders without regard to case, without allocating:
            // this runs every frame.
            Self::Domain => sessions.sort_by(|a, b| {
                a.domain
                    .cmp(&b.domain)
                    .then(a.remaining.cmp(&b.remaining))
                    .then(a.id.cmp(&b.id))
            }),
            Self::Id => sessions.sort_by_key(|s| s.id),
        }
    }
}

#[derive(Debug, Default)]
pub struct SessionsState {
    pub sort: SortKey,
    pub cursor: ListCursor,
    /// The selected session; the cursor follows it as rows re-sort.
    pub selected: Option<SessionId>,
    pub detail: Option<SessionDetail>,
}

/// A one-line message under the content (saved, cancelled, failed, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

/// Facts about the running console shown in the header.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub config_path: PathBuf,
    pub relay_addr: Option<SocketAddr>,
    /// A line shown under the header (the demo's banner).
    pub banner: Option<String>,
    /// Why no background relay can keep this console's live sessions when
    /// it quits (the demo's clients run in its own process); `None`: the
    /// quit question offers to keep them.
    pub sessions_stay: Option<&'static str>,
}

/// The whole UI state.
#[derive(Debug)]
pub struct App {
    pub config: Arc<Config>,
    /// The relay, in this process or attached over its control socket.
    pub relay: RelayView,
    pub settings: Settings,
    pub clock: Clock,
    pub screen: Screen,
    pub focus: Focus,
    pub overview: ListCursor,
    pub domains: DomainsState,
    pub sessions: SessionsState,
    pub log: EventLog,
    pub dialog: Option<Dialog>,
    pub help: Option<ListCursor>,
    pub status: Option<Status>,
    /// Sessions as sampled at the last refresh, in the chosen sort order.
    pub live: Vec<SessionSnapshot>,
    /// Live sessions per domain (lower-case name).
    /// Live sessions per domain name as the relay registered it (the
    /// config's spelling); looked up case-insensitively.
    live_per_domain: HashMap<DomainName, usize>,
    /// A file (the default) or a Tencent Cloud account.
    pub source: DomainSource,
    /// The certificates the relay's `tls-listen` serves, as the runner last
    /// took them from the relay (at start and whenever a config is applied).
    pub certificates: Certificates,
    /// The relay's evidence counts per domain over the last 10 minutes.
    recent: HashMap<DomainName, DomainCounts>,
    /// Sessions of the last 10 minutes cut while alive (marked in the log).
    cut_while_alive: HashSet<SessionId>,
    /// The observed rhythm of the sessions near the screen, taken at the
    /// last refresh: drawing never asks the relay.
    rhythms: HashMap<SessionId, Rhythm>,
    /// The open session pages, taken at the last refresh.
    pages: Vec<SessionPage>,
}

impl App {
    /// The console on its in-process relay's session table.
    pub fn new(config: Arc<Config>, registry: Arc<Registry>, settings: Settings) -> Self {
        Self::with_view(config, RelayView::Local(registry), settings)
    }

    /// The console on any relay (`attach` passes a remote one).
    pub fn with_view(config: Arc<Config>, relay: RelayView, settings: Settings) -> Self {
        Self {
            config,
            relay,
            settings,
            clock: Clock::now(),
            screen: Screen::Overview,
            focus: Focus::Menu,
            overview: ListCursor::default(),
            domains: DomainsState::default(),
            sessions: SessionsState::default(),
            log: EventLog::default(),
            dialog: None,
            help: None,
            status: None,
            live: Vec::new(),
            live_per_domain: HashMap::new(),
            source: DomainSource::File,
            certificates: Certificates::default(),
            recent: HashMap::new(),
            cut_while_alive: HashSet::new(),
            rhythms: HashMap::new(),
            pages: Vec::new(),
        }
        // No sampling here: the runner refreshes before every draw, and
        // tests with their own clock.
    }

    /// Samples the session table at `clock` (before each draw).
    pub fn refresh(&mut self, clock: Clock) {
        self.clock = clock;
        self.relay.sample(clock.mono, &mut self.live);
        // The rows are mostly in last frame's order: a pass, not a full sort.
        self.sessions.sort.sort(&mut self.live);
        self.count_per_domain();
        // Looked up per domain row: by name, for configs of thousands.
        self.recent = self.relay.recent(clock.mono).into_iter().collect();
        self.cut_while_alive = self
            .relay
            .cut_while_alive_ids(clock.mono)
            .into_iter()
            .collect();
        self.log.sample_active(clock.wall, self.live.len());
        // The quit question counts what it would close as that changes.
        if let Some(Dialog::Confirm(Confirm::Quit { live, .. })) = &mut self.dialog {
            *live = self.relay.len();
        }
        self.follow_selected_session();
        self.take_frame_needs(clock);
    }

    /// Live sessions per domain name, counted in runs of rows of the same
    /// domain: a hash per run, not per session per frame.
    fn count_per_domain(&mut self) {
        self.live_per_domain.clear();
        let mut run: Option<(&DomainName, usize)> = None;
        for s in &self.live {
            match &mut run {
                Some((name, n)) if **name == s.domain => *n += 1,
                _ => {
                    if let Some((name, n)) = run.replace((&s.domain, 1)) {
                        *self.live_per_domain.entry(name.clone()).or_default() += n;
                    }
                }
            }
        }
        if let Some((name, n)) = run {
            *self.live_per_domain.entry(name.clone()).or_default() += n;
        }
    }

    /// Takes what the next frame draws beyond the sampled table — the
    /// rhythms of the rows near the screen, the open session pages — so
    /// rendering reads the app and never queries the relay.
    fn take_frame_needs(&mut self, clock: Clock) {
        let mut ids: Vec<SessionId> = self.live[self.sessions.cursor.near_window(self.live.len())]
            .iter()
            .map(|s| s.id)
            .collect();
        let mut open: Vec<SessionId> = self.sessions.detail.iter().map(|d| d.id).collect();
        if let Some(m) = &self.domains.manage {
            let of = self.sessions_of(&m.domain);
            ids.extend(of[m.cursor.near_window(of.len())].iter().map(|s| s.id));
            open.extend(m.detail.iter().map(|d| d.id));
        }
        self.rhythms = ids
            .into_iter()
            .filter_map(|id| Some((id, self.relay.rhythm(id)?)))
            .collect();
        self.pages = open
            .into_iter()
            .filter_map(|id| self.relay.page(id, clock.mono))
            .collect();
    }

    /// Keeps the Live Sessions cursor on the same session as rows re-sort.
    fn follow_selected_session(&mut self) {
        let s = &mut self.sessions;
        if let Some(id) = s.selected
            && let Some(i) = self.live.iter().position(|x| x.id == id)
        {
            s.cursor.index = i;
        }
        s.cursor.clamp(self.live.len());
        s.selected = self.live.get(s.cursor.index).map(|x| x.id);
    }

    pub fn live_on(&self, domain: &DomainName) -> usize {
        self.live_per_domain.get(domain).copied().unwrap_or(0)
    }

    /// The domain list after the `/` filter.
    pub fn visible_domains(&self) -> Vec<&Domain> {
        let f = self.domains.filter.value().trim().to_lowercase();
        self.config
            .domains
            .iter()
            .filter(|d| {
                f.is_empty()
                    || d.name.to_lowercase().contains(&f)
                    || d.cname().contains(&f)
                    || d.acceleration.as_str().contains(&f)
                    || d.status.as_str() == f
                    || d.origins.iter().any(|o| o.to_string().contains(&f))
            })
            .collect()
    }

    pub fn selected_domain(&self) -> Option<&Domain> {
        self.visible_domains()
            .get(self.domains.cursor.index)
            .copied()
    }

    /// The domain whose Manage page is open.
    pub fn managed_domain(&self) -> Option<&Domain> {
        let m = self.domains.manage.as_ref()?;
        self.config.domain(&m.domain)
    }

    /// Live sessions of one domain, closest to deadline first.
    pub fn sessions_of(&self, domain: &DomainName) -> Vec<&SessionSnapshot> {
        let mut v: Vec<&SessionSnapshot> =
            self.live.iter().filter(|s| s.domain == *domain).collect();
        v.sort_by(|a, b| {
            let key = |s: &SessionSnapshot| (s.remaining.is_none(), s.remaining, s.id);
            key(a).cmp(&key(b))
        });
        v
    }

    /// A live session's observed rhythm, as the last refresh took it for
    /// the rows near the screen.
    pub fn rhythm(&self, id: SessionId) -> Option<Rhythm> {
        self.rhythms.get(&id).copied()
    }

    /// An open session's page as the last refresh took it; `None` once the
    /// session has ended.
    pub fn page(&self, id: SessionId) -> Option<&SessionPage> {
        self.pages.iter().find(|p| p.snapshot.id == id)
    }

    /// A domain's counts over the last 10 minutes (ended sessions, idle
    /// cuts, cuts of clients that were alive), as of the last refresh.
    pub fn recent_on(&self, domain: &DomainName) -> DomainCounts {
        self.recent.get(domain).copied().unwrap_or_default()
    }

    /// The certificate a TLS client of `domain` is served, judged at the
    /// last refresh's wall clock.
    pub fn certificate(&self, domain: &DomainName) -> DomainCertificate<'_> {
        self.certificates.of_domain(domain, self.clock.wall)
    }

    /// Whether a (closed) session was cut while its client was alive.
    pub fn was_cut_while_alive(&self, id: SessionId) -> bool {
        self.cut_while_alive.contains(&id)
    }

    /// The last 10 minutes of a domain's sessions, ended and live. Takes
    /// the evidence store's lock: ask for the domain on screen only.
    /// `None` while an attached console waits for the relay's.
    pub fn evidence(&self, domain: &DomainName) -> Option<DomainEvidence> {
        self.relay.evidence(domain, self.clock.mono)
    }

    /// The timeout the evidence calls for, and why (README, "Advice from
    /// evidence"); `None` until the evidence is known.
    pub fn recommendation(&self, domain: &Domain) -> Option<Recommendation> {
        Some(advice::recommend_on(self.evidence(&domain.name)?, domain))
    }

    /// The domain whose advice is on screen (its Advanced tab, or its edit
    /// dialog's what-if): the one an attached console fetches evidence for.
    pub fn advice_domain(&self) -> Option<&DomainName> {
        if let Some(Dialog::EditWebSocket(draft)) = &self.dialog {
            return Some(&draft.domain);
        }
        match (&self.screen, &self.domains.manage) {
            (Screen::Domains, Some(m)) if m.tab == ManageTab::Advanced => Some(&m.domain),
            _ => None,
        }
    }

    /// The session shown in a detail page, if one is open.
    pub fn open_detail(&self) -> Option<&SessionDetail> {
        match self.screen {
            Screen::Sessions => self.sessions.detail.as_ref(),
            Screen::Domains => self.domains.manage.as_ref().and_then(|m| m.detail.as_ref()),
            _ => None,
        }
    }

    /// Which key table is in force.
    pub fn context(&self) -> Context {
        if self.help.is_some() {
            return Context::Help;
        }
        self.context_behind_help()
    }

    /// The context as if the help were closed (what the help describes).
    pub fn context_behind_help(&self) -> Context {
        match &self.dialog {
            Some(Dialog::EditWebSocket(_)) => return Context::EditWebSocket,
            Some(Dialog::Form(_)) => return Context::Form,
            Some(Dialog::Confirm(c)) => return c.context(),
            Some(Dialog::Message(_)) => return Context::Message,
            None => {}
        }
        if self.focus == Focus::Menu {
            return Context::Menu;
        }
        match self.screen {
            Screen::Overview => Context::Overview,
            Screen::Sessions | Screen::Events if self.is_cloud() => Context::CloudNoSessions,
            Screen::Domains if self.is_cloud() => match &self.domains.manage {
                Some(m) => Context::CloudManage(m.tab),
                None if self.domains.filtering => Context::Filter,
                None => Context::CloudDomains,
            },
            Screen::Domains => match &self.domains.manage {
                Some(m) if m.detail.is_some() => Context::SessionDetail,
                Some(m) => Context::Manage(m.tab),
                None if self.domains.filtering => Context::Filter,
                None => Context::Domains,
            },
            Screen::Sessions if self.sessions.detail.is_some() => Context::SessionDetail,
            Screen::Sessions => Context::Sessions,
            Screen::Events if self.log.editing => Context::Filter,
            Screen::Events => Context::Events,
        }
    }

    /// The action a key press means right now.
    pub fn action_for_key(&self, key: &crossterm::event::KeyEvent) -> Option<Action> {
        keymap::action_for(self.context(), key)
    }

    /// Whether anything on screen changes by itself as time passes.
    pub fn needs_ticks(&self) -> bool {
        !self.live.is_empty() || !self.relay.is_empty()
    }

    fn set_status(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
        });
    }

    fn set_error_status(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: true,
        });
    }
}

#[cfg(test)]
pub(crate) mod tests;
