//! `ecdn-console attach`: the same console on a relay running in another
//! process (`serve`, or another console's in-process relay), over its
//! control socket. Events are followed and drawn as they come; the
//! sessions are asked for once a second, after a key, and once a burst of
//! events settles (see `Pace`); edits go to the relay, which saves and
//! applies them. Quitting detaches; the relay keeps running.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use crossterm::event::EventStream;
use futures_util::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::cpus::{ConsoleCpus, Placement};
use super::terminal::{
    PANIC_NOTIFY, TerminalGuard, console_runtime, in_terminal, stopped_by_panic,
};
use super::{FRAME, Options, TICK, action_for_event, draw, init_logging};
use crate::app::{
    Action, App, Certificates, Clock, Effect, RelayView, Remote, RemoteEvidence, RemoteTable,
    SaveError, SaveErrorKind, SessionPage, Settings, Status, update,
};
use crate::config::Config;
use crate::control::protocol::{
    ChangesReply, ClosedReply, ConfigReply, EventsReply, EvidenceInfo, EvidenceReply, IdSummary,
    RecentInfo, SessionReply, SessionsReply, TlsInfo,
};
use crate::control::{ClientError, ControlClient, ErrorCode, Request};
use crate::relay::{RelayEvent, SessionId};
use crate::ui::Theme;

/// Attaches to the relay answering on `socket`. `note` is shown first
/// (e.g. why plain `ecdn-console` attached instead of starting a relay).
pub fn run(options: &Options, socket: &Path, note: Option<String>) -> Result<()> {
    let log = init_logging(None);
    give_way_to_the_relay();
    let runtime = console_runtime()?;
    // Before connecting: none of the console's threads has moved yet.
    let cpus = ConsoleCpus::at_start();
    let (mut poll, config, events) = runtime.block_on(connect(socket))?;
    keep_off_the_relay(&cpus, poll.relay_pid());
    let theme = Theme::from_env(options.no_color);
    let settings = Settings {
        config_path: poll.hello.config.clone(),
        relay_addr: Some(poll.hello.listen),
        banner: options.banner.clone(),
        sessions_stay: None,
    };
    let remote = Remote {
        socket: socket.to_path_buf(),
        pid: poll.pid_to_show(),
        config_version: config.0,
        ..Remote::default()
    };
    let mut app = App::with_view(config.1, RelayView::Remote(Box::new(remote)), settings);
    app.certificates = config.2;
    let (backlog, mut events) = events;
    for event in backlog {
        update(&mut app, Action::Relay(event));
    }
    let text = note.unwrap_or_else(|| {
        format!(
            "Attached to the relay at {} (pid {}). Quitting detaches; the relay keeps running.",
            poll.hello.listen,
            poll.pid_to_show()
        )
    });
    let text = match log {
        Some(log) => format!("{text} Logging to {}", log.display()),
        None => text,
    };
    app.status = Some(Status { text, error: false });
    tracing::info!("attached to {}", socket.display());
    let result = in_terminal(options.mouse, |guard| {
        let mut relay = Attached {
            poll: &mut poll,
            events: &mut events,
            cpus: &cpus,
        };
        runtime.block_on(attach_loop(guard, &mut app, &mut relay, &theme))
    })?;
    tracing::info!("detached from {}", socket.display());
    stopped_by_panic()?;
    result
}

/// How much an attached console lowers its CPU priority (`nice`).
const NICE: i32 = 10;

/// An attached console usually runs on the relay's own machine, over SSH:
/// when the two want the same core, the relay's frames go first. Drawing
/// is once a second and a few ms; a console that waits a little for a core
/// is not noticed, a relay frame that waits behind it is (DESIGN §5:
/// drawing never delays a frame).
fn give_way_to_the_relay() {
    match rustix::process::nice(NICE) {
        Ok(now) => tracing::info!("console CPU priority lowered to nice {now}"),
        Err(e) => tracing::info!("console CPU priority left as it is: {e}"),
    }
}

/// A config version, its config, and the certificates in force with it.
type Fetched = (u64, Arc<Config>, Certificates);

type Connected = (
    ControlClient,
    Fetched,
    (Vec<RelayEvent>, mpsc::Receiver<RelayEvent>),
);

/// Two connections: one for requests, one following events.
async fn connect(socket: &Path) -> Result<Connected> {
    let mut poll = ControlClient::connect(socket).await?;
    let fetched = fetch_config(&mut poll).await?;
    let mut follow = ControlClient::connect(socket).await?;
    let reply: EventsReply = follow.request(&Request::Events { follow: true }).await?;
    let (tx, rx) = mpsc::channel(crate::relay::EVENT_CAPACITY);
    tokio::spawn(async move {
        while let Ok(Some(event)) = follow.next_event().await {
            if tx.send(event).await.is_err() {
                break;
            }
        }
    });
    Ok((poll, fetched, (reply.events, rx)))
}

async fn fetch_config(poll: &mut ControlClient) -> Result<Fetched> {
    let reply: ConfigReply = poll.request(&Request::ConfigGet).await?;
    let config = Config::parse(&reply.text, &reply.path)?;
    Ok((reply.version, Arc::new(config), certificates_of(&reply)))
}

/// The certificates a config answer reports (an older relay's: unknown).
fn certificates_of(reply: &ConfigReply) -> Certificates {
    reply
        .tls
        .as_ref()
        .map_or(Certificates::Unknown, TlsInfo::certificates)
}

/// Where the console's relay answers, and what the console keeps for
/// following it to the next one.
struct Attached<'a> {
    poll: &'a mut ControlClient,
    events: &'a mut mpsc::Receiver<RelayEvent>,
    cpus: &'a Result<ConsoleCpus, String>,
}

/// Keeps the console off the CPUs of the relay `pid`'s workers, where it
/// can (`tui/cpus.rs`), and logs what it did.
/// `pid` is the relay's in this namespace: `/proc/<hello.pid>` would be
/// another process when the relay runs in a container.
fn keep_off_the_relay(cpus: &Result<ConsoleCpus, String>, pid: Option<u32>) {
    let placement = match (cpus, pid) {
        (Ok(cpus), Some(pid)) => cpus.keep_off_the_relays(pid),
        (Ok(_), None) => Placement::Left(
            "the relay runs in a PID namespace this console cannot see, so its threads cannot be read"
                .into(),
        ),
        (Err(why), _) => Placement::Left(why.clone()),
    };
    tracing::info!("{placement}");
}

async fn attach_loop(
    guard: &mut TerminalGuard,
    app: &mut App,
    relay: &mut Attached<'_>,
    theme: &Theme,
) -> Result<()> {
    let Attached { poll, events, cpus } = relay;
    let mut input = EventStream::new();
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut connected = true;
    let mut pace = Pace::new(Instant::now());
    let mut known = Known::default();
    loop {
        if pace.draw_due(Instant::now()) {
            let started = Instant::now();
            let sampling = connected && pace.sample_due(started);
            if sampling && let Err(e) = sample(app, poll, &mut known).await {
                connected = false;
                lost(app, &e.to_string());
            }
            let sampled = started.elapsed();
            app.refresh(Clock::now());
            let refreshed = started.elapsed();
            draw(guard, app, theme)?;
            // The transfer included: what bench/attach.sh reports.
            tracing::debug!(
                target: "ecdn_console::frame",
                frame_us = started.elapsed().as_micros() as u64,
                sampled = sampling,
                sample_us = sampled.as_micros() as u64,
                refresh_us = (refreshed - sampled).as_micros() as u64,
                "frame"
            );
            // The next page of a full fetch comes with the next frame.
            pace.drawn(Instant::now(), sampling, known.paging());
        }
        tokio::select! {
            // A key, a resize or a mouse event.
            event = input.next() => match event {
                Some(Ok(event)) => {
                    pace.input();
                    if let Some(action) = action_for_event(app, guard, &event) {
                        let effects = update(app, action);
                        if perform(app, poll, effects).await {
                            return Ok(());
                        }
                    }
                }
                _ => return Ok(()),
            },
            // The relay's events, followed on the second connection.
            event = events.recv(), if connected => match event {
                Some(event) => {
                    let mut config_changed = take_event(app, event);
                    while let Ok(event) = events.try_recv() {
                        config_changed |= take_event(app, event);
                    }
                    if config_changed {
                        follow_config(app, poll).await;
                        // Every session's limit may have moved: fetch all.
                        known.fetch_all();
                        pace.input();
                    } else {
                        pace.relay_event(Instant::now());
                    }
                }
                None => {
                    connected = false;
                    lost(app, "it closed the connection");
                    pace.input();
                }
            },
            // The frame-rate cap.
            () = sleep_until(pace.next_draw()), if pace.dirty() => {}
            // Idle counters move by themselves: sample and redraw once a
            // second, or soon after a burst of events settles.
            () = sleep_until(pace.next_sample()), if connected && !pace.dirty() => pace.sample_now(),
            // The relay went away: a new one may answer on the same socket
            // (`serve --takeover`, a kept background relay). Try again.
            () = tokio::time::sleep(RECONNECT), if !connected => {
                if reconnect(app, poll, events).await {
                    // The new relay may be pinned elsewhere, or not at all.
                    keep_off_the_relay(cpus, poll.relay_pid());
                    connected = true;
                    known = Known::default();
                    pace.input();
                }
            }
            _ = hangup.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            () = PANIC_NOTIFY.notified() => return Ok(()),
        }
    }
}

/// Takes one relay event into the app; `true` when it changed the config.
fn take_event(app: &mut App, event: RelayEvent) -> bool {
    let config_changed = matches!(event, RelayEvent::ConfigApplied { .. });
    update(app, Action::Relay(event));
    config_changed
}

/// After the relay's last event of a burst, how long the console waits
/// before asking for the sessions.
const SETTLE: Duration = Duration::from_millis(150);

/// When the console asks the relay for its sessions, and when it only
/// draws. A key or a relay event redraws at once (at most one frame per
/// `FRAME`). The sessions are asked for once a second (their counters
/// move), after a key (it may open a page that needs the relay), for each
/// page of an answer still coming in, and `SETTLE` after a burst of events
/// — never in the middle of one, when the relay is busiest (500 sessions
/// opening at once) and the events themselves say what closed. A steady
/// stream of events still gets an answer a second.
#[derive(Debug)]
struct Pace {
    /// A frame is owed.
    dirty: bool,
    /// The next frame asks the relay first.
    stale: bool,
    last_draw: Instant,
    last_sample: Instant,
    next_sample: Instant,
}

impl Pace {
    fn new(now: Instant) -> Self {
        Self {
            dirty: true,
            stale: true,
            last_draw: now - FRAME,
            last_sample: now,
            next_sample: now + TICK,
        }
    }

    fn dirty(&self) -> bool {
        self.dirty
    }

    fn next_draw(&self) -> Instant {
        self.last_draw + FRAME
    }

    fn next_sample(&self) -> Instant {
        self.next_sample
    }

    fn draw_due(&self, now: Instant) -> bool {
        self.dirty && now >= self.next_draw()
    }

    /// Whether the frame about to be drawn at `now` asks the relay first.
    fn sample_due(&self, now: Instant) -> bool {
        self.stale || now >= self.next_sample
    }

    /// A key, a resize, a reconnect: draw, with fresh sessions.
    fn input(&mut self) {
        self.dirty = true;
        self.stale = true;
    }

    /// The second since the last answer is up (or a burst settled).
    fn sample_now(&mut self) {
        self.input();
    }

    /// An event from the relay at `now`: draw it, and ask for the sessions
    /// once the events have paused for `SETTLE` (a second after the last
    /// answer at the latest).
    fn relay_event(&mut self, now: Instant) {
        self.dirty = true;
        self.next_sample = (now + SETTLE).min(self.last_sample + TICK);
    }

    /// A frame was drawn at `now`, after asking the relay if `sampled`;
    /// `paging`: the answer has more pages, the next frame asks for one.
    fn drawn(&mut self, now: Instant, sampled: bool, paging: bool) {
        self.last_draw = now;
        if sampled {
            self.last_sample = now;
            self.next_sample = now + TICK;
        }
        self.dirty = paging;
        self.stale = paging;
    }
}

/// How often a console that lost its relay tries the socket again.
const RECONNECT: Duration = Duration::from_secs(1);

/// Connects again to the relay's socket; on success the console follows the
/// relay now answering there (after a hand-over: the new process).
async fn reconnect(
    app: &mut App,
    poll: &mut ControlClient,
    events: &mut mpsc::Receiver<RelayEvent>,
) -> bool {
    let Some(socket) = app.relay.remote().map(|r| r.socket.clone()) else {
        return false;
    };
    let Ok((new_poll, (version, config, certificates), (backlog, rx))) = connect(&socket).await
    else {
        return false;
    };
    *poll = new_poll;
    *events = rx;
    let pid = poll.pid_to_show();
    if let Some(remote) = app.relay.remote_mut() {
        remote.pid = pid;
        remote.config_version = version;
    }
    app.certificates = certificates;
    update(app, Action::Reloaded(Ok(config)));
    for event in app.log.unseen(backlog, crate::control::state::EVENT_RING) {
        update(app, Action::Relay(event));
    }
    app.status = Some(Status {
        text: format!(
            "Attached again: the relay at {} is now pid {pid}.",
            socket.display()
        ),
        error: false,
    });
    true
}

fn lost(app: &mut App, why: &str) {
    app.status = Some(Status {
        text: format!(
            "Lost the relay ({why}); what is shown is no longer live. Trying the socket again each second; q quits."
        ),
        error: true,
    });
}

/// How the console asks its relay for sessions: each refresh fetches only
/// what changed since the previous answer (`sessions-changed`), so an
/// attached console on 9,000 idle sessions costs the relay a list of ids a
/// second. Every answer comes in pages of `PAGE`, one a frame — the first
/// fetch of 9,000 sessions, or 1,000 busy sessions changing every second —
/// so no frame waits for more than a page.
#[derive(Debug, Default)]
struct Known {
    /// The relay's clock of the last complete answer; `None`: fetch all.
    clock: Option<u64>,
    /// An answer still coming in pages.
    paging: Option<Paging>,
    /// The relay does not know `sessions-changed` (an older build).
    full_only: bool,
    /// The relay does not know its `brief` rows (an older build).
    no_brief: bool,
    /// The relay does not know `evidence` (an older build): the advice on
    /// screen is then made of no history, as it was then.
    no_evidence: bool,
    /// When the sessions of the domain whose advice is on screen were last
    /// asked for.
    evidence_at: Option<Instant>,
}

/// How often the sessions behind the advice on screen are asked for again.
const DOMAIN_EVIDENCE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
struct Paging {
    /// What the pages answer: changes since this clock (`None`: all).
    since: Option<u64>,
    /// The last id received.
    after: SessionId,
    /// The relay's clock at the first page: once complete, changes are
    /// asked for since then (what changed meanwhile comes again).
    started: u64,
}

/// Sessions per page: ~125 KB of JSON, a few ms each way.
const PAGE: usize = 250;

impl Known {
    /// Takes in what changed into `table`; `Err` when the relay cannot say.
    async fn refresh(
        &mut self,
        poll: &mut ControlClient,
        table: &mut RemoteTable,
    ) -> Result<(), ClientError> {
        while !self.full_only {
            let brief = !self.no_brief;
            let request = match self.paging {
                Some(p) => Request::SessionsChanged {
                    since: p.since,
                    known: None,
                    after: Some(p.after),
                    limit: Some(PAGE),
                    brief,
                },
                None => Request::SessionsChanged {
                    since: self.clock,
                    known: self.clock.map(|_| IdSummary::of(table.ids())),
                    after: None,
                    limit: Some(PAGE),
                    brief,
                },
            };
            match poll.request::<ChangesReply>(&request).await {
                Ok(reply) => {
                    self.take_changes(reply, table);
                    return Ok(());
                }
                Err(ClientError::Refused(_)) if brief => self.no_brief = true,
                Err(ClientError::Refused(_)) => self.full_only = true,
                Err(e) => return Err(e),
            }
        }
        let reply: SessionsReply = poll.request(&Request::Sessions { domain: None }).await?;
        let now = Instant::now();
        table.clear();
        for info in &reply.sessions {
            table.take(info.snapshot(now), info.rhythm(), now);
        }
        Ok(())
    }

    fn take_changes(&mut self, reply: ChangesReply, table: &mut RemoteTable) {
        let now = Instant::now();
        // No ids: the same sessions live as we know of (or a later page).
        if let Some(ids) = reply.ids {
            let live: HashSet<SessionId> = ids.into_iter().collect();
            table.keep_only(&live);
            // A first fetch: say how far it got while the pages come in.
            table.set_loading(table.is_empty().then_some(live.len()));
        }
        let last = reply.changed.last().map(|s| s.id);
        for info in &reply.changed {
            table.take(info.snapshot(now), info.rhythm(), now);
        }
        for row in &reply.moved {
            table.take_moved(row.id(), row.rhythm(), now, |s| row.apply(s, now));
        }
        // Pages go by id: the last one is the page's, whichever list.
        let last = last.max(reply.moved.last().map(|row| row.id()));
        let (since, started) = match self.paging {
            Some(p) => (p.since, p.started),
            None => (self.clock, reply.clock),
        };
        match last.filter(|_| reply.more) {
            Some(after) => {
                self.paging = Some(Paging {
                    since,
                    after,
                    started,
                })
            }
            None => {
                self.paging = None;
                self.clock = Some(started);
                table.set_loading(None);
            }
        }
    }

    /// Brings `held` to the relay's evidence: the counts and cuts of live
    /// clients every time, the sessions of `advice` (the domain whose
    /// advice is on screen) when its page opens and every few seconds.
    async fn refresh_evidence(
        &mut self,
        poll: &mut ControlClient,
        held: &mut RemoteEvidence,
        advice: Option<String>,
    ) -> Result<(), ClientError> {
        if self.no_evidence {
            return Ok(());
        }
        // A domain's sessions are most of the answer (~170 bytes each: 1.5 MB
        // and 5 ms for 9,000), and the advice moves slowly: ask for them
        // when its page opens and every few seconds, the counts every time.
        let now = Instant::now();
        let fresh = self
            .evidence_at
            .is_some_and(|at| now < at + DOMAIN_EVIDENCE_EVERY);
        let on_screen = held
            .domain
            .as_ref()
            .is_some_and(|e| Some(e.domain.as_str()) == advice.as_deref());
        let ask = advice.filter(|_| !(fresh && on_screen));
        let asked = ask.is_some();
        match fetch_evidence(poll, ask).await {
            Ok(mut evidence) => {
                if asked {
                    self.evidence_at = Some(now);
                } else {
                    evidence.domain = held.domain.take();
                }
                *held = evidence;
            }
            Err(ClientError::Refused(e)) if e.error == ErrorCode::BadRequest => {
                self.no_evidence = true;
                held.unavailable = true;
            }
            // The domain went from the config meanwhile: the next look
            // has the new config.
            Err(ClientError::Refused(_)) => held.domain = None,
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Asks for every session again, from the first page.
    fn fetch_all(&mut self) {
        self.clock = None;
        self.paging = None;
    }

    /// An answer is still coming in: draw the next page soon.
    fn paging(&self) -> bool {
        self.paging.is_some()
    }
}

/// Fetches the session table, and the open session's page.
async fn sample(
    app: &mut App,
    poll: &mut ControlClient,
    known: &mut Known,
) -> Result<(), ClientError> {
    let open = app.open_detail().map(|d| d.id);
    let advice = app.advice_domain().map(ToString::to_string);
    let Some(remote) = app.relay.remote_mut() else {
        return Ok(());
    };
    known.refresh(poll, &mut remote.table).await?;
    known
        .refresh_evidence(poll, &mut remote.evidence, advice)
        .await?;
    let page = match open {
        Some(id) => match poll.request::<SessionReply>(&Request::Session { id }).await {
            Ok(r) => {
                let now = Instant::now();
                Some(SessionPage {
                    snapshot: r.session.session.snapshot(now),
                    recent: r.session.recent_frames.iter().map(|f| f.frame()).collect(),
                    rhythm: r.session.session.rhythm(),
                })
            }
            Err(ClientError::Refused(_)) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    remote.page = page;
    Ok(())
}

/// The relay's evidence: the counts and cuts always, the sessions of the
/// domain whose advice is on screen (`domain`).
async fn fetch_evidence(
    poll: &mut ControlClient,
    domain: Option<String>,
) -> Result<RemoteEvidence, ClientError> {
    let reply: EvidenceReply = poll.request(&Request::Evidence { domain }).await?;
    Ok(RemoteEvidence {
        recent: reply.recent.iter().map(RecentInfo::counts).collect(),
        cut_while_alive: reply.cut_while_alive,
        domain: reply.evidence.as_ref().map(EvidenceInfo::evidence),
        unavailable: false,
    })
}

/// Another console's edit (or a reload) moved the relay's config: show it
/// at once. A dialog's draft is kept and now made on the new version; the
/// dialog says when its domain changed (`config_changed` in the app). A
/// change that comes between this look and a save is still refused as a
/// conflict by the relay, and `r` fetches it, keeping the draft.
async fn follow_config(app: &mut App, poll: &mut ControlClient) {
    let Ok((version, config, certificates)) = fetch_config(poll).await else {
        return;
    };
    // A reload can renew certificates without changing the text.
    app.certificates = certificates;
    let mine = app.relay.remote().map_or(0, |r| r.config_version);
    if version != mine {
        if let Some(r) = app.relay.remote_mut() {
            r.config_version = version;
        }
        update(app, Action::ConfigChanged(config));
    }
}

/// Carries out `effects` against the remote relay. Returns whether to quit
/// (detach).
async fn perform(app: &mut App, poll: &mut ControlClient, effects: Vec<Effect>) -> bool {
    let mut queue = std::collections::VecDeque::from(effects);
    while let Some(effect) = queue.pop_front() {
        let follow_up = match effect {
            Effect::Save(edit) => {
                let version = app.relay.remote().map_or(0, |r| r.config_version);
                let request = Request::ConfigEdit {
                    version,
                    edit: edit.clone(),
                };
                let action = match poll.request::<ConfigReply>(&request).await {
                    Ok(reply) => match Config::parse(&reply.text, &reply.path) {
                        Ok(config) => {
                            app.certificates = certificates_of(&reply);
                            if let Some(r) = app.relay.remote_mut() {
                                r.config_version = reply.version;
                            }
                            Action::Saved {
                                config: Arc::new(config),
                                edit,
                            }
                        }
                        Err(e) => Action::SaveFailed(SaveError::from(&e)),
                    },
                    Err(e) => Action::SaveFailed(save_error(&e)),
                };
                update(app, action)
            }
            Effect::Reload => {
                let result = fetch_config(poll).await;
                let action = match result {
                    Ok((version, config, certificates)) => {
                        app.certificates = certificates;
                        if let Some(r) = app.relay.remote_mut() {
                            r.config_version = version;
                        }
                        Action::Reloaded(Ok(config))
                    }
                    Err(e) => Action::Reloaded(Err(SaveError {
                        kind: SaveErrorKind::Io,
                        message: e.to_string(),
                    })),
                };
                update(app, action)
            }
            // The relay applied the configuration when it saved it.
            Effect::ApplyToRelay(_) => Vec::new(),
            Effect::CloseSession(id) => {
                let request = Request::CloseSession {
                    id,
                    code: None,
                    reason: None,
                };
                if let Err(e) = poll.request::<ClosedReply>(&request).await {
                    tracing::info!(id, "close-session: {e}");
                }
                Vec::new()
            }
            // The cloud source and probe run in the console that owns the
            // relay; an attached console does not offer them yet.
            Effect::LoadCloud | Effect::Probe(_) => {
                app.status = Some(Status {
                    text: "Not available while attached to a relay; run it in the relay's own console.".into(),
                    error: true,
                });
                Vec::new()
            }
            // Attached, quitting detaches: the relay keeps its sessions anyway.
            Effect::Quit | Effect::KeepSessions => return true,
        };
        queue.extend(follow_up);
    }
    false
}

fn save_error(e: &ClientError) -> SaveError {
    let kind = match e {
        ClientError::Refused(r) if r.error == ErrorCode::Conflict => SaveErrorKind::Conflict,
        ClientError::Refused(r) if r.error == ErrorCode::Invalid => SaveErrorKind::Invalid,
        _ => SaveErrorKind::Io,
    };
    SaveError {
        kind,
        message: e.to_string(),
    }
}

/// Whether a relay answers on `socket` (for plain `ecdn-console`).
pub fn relay_answers(socket: &Path) -> bool {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return false;
    };
    runtime.block_on(ControlClient::probe(socket)).is_some()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Draws every frame that is due at `now`; whether it asked the relay.
    fn frame(pace: &mut Pace, now: Instant) -> Option<bool> {
        if !pace.draw_due(now) {
            return None;
        }
        let sampled = pace.sample_due(now);
        pace.drawn(now, sampled, false);
        Some(sampled)
    }

    #[test]
    fn a_burst_of_events_is_drawn_at_once_and_sampled_once_it_settles() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        assert_eq!(frame(&mut pace, t0), Some(true), "the first frame asks");
        // 500 sessions open over 60 ms: events every 10 ms.
        let mut sampled_during = 0;
        for i in 1..=6 {
            let now = t0 + 100 * MS + i * 10 * MS;
            pace.relay_event(now);
            if frame(&mut pace, now) == Some(true) {
                sampled_during += 1;
            }
        }
        assert_eq!(sampled_during, 0, "no answer asked for in the burst");
        let last = t0 + 160 * MS;
        // The frame cap left the last events for one more frame: drawn, not asked.
        assert_eq!(frame(&mut pace, last + FRAME), Some(false));
        assert!(!pace.dirty());
        assert_eq!(pace.next_sample(), last + SETTLE);
        pace.sample_now();
        assert_eq!(frame(&mut pace, last + SETTLE), Some(true));
        assert_eq!(pace.next_sample(), last + SETTLE + TICK);
    }

    #[test]
    fn a_steady_stream_of_events_still_gets_an_answer_a_second() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        frame(&mut pace, t0);
        // An event every 100 ms keeps pushing the settle time back...
        for i in 1..=9 {
            pace.relay_event(t0 + i * 100 * MS);
            frame(&mut pace, t0 + i * 100 * MS);
        }
        // ...but never past a second after the last answer.
        assert_eq!(pace.next_sample(), t0 + TICK);
    }

    #[test]
    fn keys_and_pages_ask_the_relay_on_the_next_frame() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        frame(&mut pace, t0);
        pace.input();
        assert_eq!(frame(&mut pace, t0 + 10 * MS), None, "one frame per FRAME");
        assert_eq!(frame(&mut pace, t0 + FRAME), Some(true));
        // A page of a longer answer: the next frame asks for the next one.
        pace.drawn(t0 + FRAME, true, true);
        assert_eq!(frame(&mut pace, t0 + 2 * FRAME), Some(true));
        assert_eq!(frame(&mut pace, t0 + 3 * FRAME), None, "complete: idle");
    }

    /// An answer as the relay writes it: `changed` holds sessions `ids`.
    fn answer(
        clock: u64,
        all: Option<&[SessionId]>,
        changed: &[SessionId],
        more: bool,
    ) -> ChangesReply {
        let session = |id: SessionId| {
            serde_json::json!({
                "id": id, "domain": "app.test", "client": "127.0.0.1:5000",
                "origin": "127.0.0.1:9001", "path": "/", "age_secs": 1.0, "idle_secs": 1.0,
                "timeout_secs": 100.0, "remaining_secs": 99.0,
                "to_origin": {"frames": 0, "messages": 0, "bytes": 0, "last_frame_secs_ago": null},
                "to_client": {"frames": 0, "messages": 0, "bytes": 0, "last_frame_secs_ago": null},
                "last_frame": null
            })
        };
        let mut value = serde_json::json!({
            "clock": clock,
            "changed": changed.iter().map(|&id| session(id)).collect::<Vec<_>>(),
            "more": more,
        });
        if let Some(all) = all {
            value["ids"] = serde_json::json!(all);
        }
        serde_json::from_value(value).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_fetch_comes_in_pages_and_then_asks_since_its_first_page() {
        let mut known = Known::default();
        let mut table = RemoteTable::default();
        known.take_changes(answer(100, Some(&[1, 2, 3]), &[1, 2], true), &mut table);
        assert!(known.paging());
        assert_eq!(table.loading(), Some(3));
        assert_eq!(known.clock, None, "not complete yet");
        let page = known.paging.unwrap();
        assert_eq!((page.since, page.after), (None, 2));
        known.take_changes(answer(130, None, &[3], false), &mut table);
        assert!(!known.paging());
        assert_eq!(table.loading(), None);
        assert_eq!(table.len(), 3);
        // What changed while the pages came in is asked for again.
        assert_eq!(known.clock, Some(100));
    }

    /// A page with brief rows (`moved`) as well: they move the sessions
    /// the table has, and the next page starts after the page's highest
    /// id, whichever list it is in.
    #[tokio::test(start_paused = true)]
    async fn brief_rows_move_known_sessions_and_count_for_the_next_page() {
        let mut known = Known::default();
        let mut table = RemoteTable::default();
        known.take_changes(answer(100, Some(&[2, 9]), &[2, 9], false), &mut table);
        assert_eq!(known.clock, Some(100));
        let mut value = serde_json::to_value(answer(200, None, &[7], true)).unwrap();
        let brief = |id: SessionId, messages: u64| {
            serde_json::json!([
                id,
                250,
                99750,
                [messages, messages, 10, 250],
                [0, 0, 0, null],
                ["client-to-origin", "text"],
                [0, null, null],
                [0, null, null]
            ])
        };
        value["moved"] = serde_json::json!([brief(2, 4), brief(9, 6)]);
        known.take_changes(serde_json::from_value(value).unwrap(), &mut table);
        assert!(known.paging(), "more to come");
        let page = known.paging.unwrap();
        assert_eq!((page.since, page.after), (Some(100), 9));
        let mut rows = Vec::new();
        table.update(&mut rows, Instant::now());
        rows.sort_by_key(|s| s.id);
        let messages: Vec<_> = rows.iter().map(|s| (s.id, s.to_origin.messages)).collect();
        assert_eq!(messages, [(2, 4), (7, 0), (9, 6)]);
        assert_eq!(rows[0].idle, Duration::from_millis(250));
        assert_eq!(
            rows[0].domain.as_str(),
            "app.test",
            "kept from the description"
        );
    }

    /// A relay older than `brief` refuses the field (its requests deny
    /// unknown fields): the console asks again without it, and keeps
    /// doing so, with the table whole.
    #[tokio::test]
    async fn a_relay_that_does_not_know_brief_is_asked_without_it() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let older_relay = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let hello = r#"{"hello":"ecdn-console-control","version":1,"build":"0.0.1","pid":1,"listen":"127.0.0.1:1","config":"/c.toml","config_version":1,"mode":"serve"}"#;
            write
                .write_all(format!("{hello}\n").as_bytes())
                .await
                .unwrap();
            let mut lines = BufReader::new(read).lines();
            let mut asked = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = if line.contains("brief") {
                    r#"{"ok":false,"error":"bad-request","message":"unknown field `brief`"}"#
                        .to_string()
                } else {
                    let mut reply =
                        serde_json::to_value(answer(100, Some(&[1]), &[1], false)).unwrap();
                    reply["ok"] = true.into();
                    reply.to_string()
                };
                asked.push(line);
                write
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .unwrap();
            }
            asked
        });
        let mut poll = ControlClient::connect(&path).await.unwrap();
        let mut known = Known::default();
        let mut table = RemoteTable::default();
        known.refresh(&mut poll, &mut table).await.unwrap();
        assert_eq!(table.len(), 1);
        known.refresh(&mut poll, &mut table).await.unwrap();
        drop(poll);
        let asked = older_relay.await.unwrap();
        assert_eq!(asked.len(), 3, "{asked:?}");
        assert!(asked[0].contains("\"brief\":true"), "{asked:?}");
        assert!(
            asked[1].contains("sessions-changed") && !asked[1].contains("brief"),
            "{asked:?}"
        );
        assert!(
            asked[2].contains("\"since\":100") && !asked[2].contains("brief"),
            "{asked:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn many_changes_come_in_pages_of_the_same_question() {
        let mut known = Known {
            clock: Some(500),
            ..Known::default()
        };
        let mut table = RemoteTable::default();
        known.take_changes(answer(900, Some(&[1, 2, 3]), &[1, 2], true), &mut table);
        let page = known.paging.unwrap();
        assert_eq!((page.since, page.after, page.started), (Some(500), 2, 900));
        assert_eq!(table.loading(), Some(3), "the table was empty");
        known.take_changes(answer(950, None, &[3], false), &mut table);
        assert_eq!(known.clock, Some(900));
        // A config change while paging starts over from the first page.
        known.take_changes(answer(1000, None, &[1], true), &mut table);
        known.fetch_all();
        assert!(!known.paging());
        assert_eq!(known.clock, None);
    }
}
