//! `ecdn-console attach`: the same console on a relay running in another
//! process (`serve`, or another console's in-process relay), over its
//! control socket. Sessions are sampled at the draw rate, events followed,
//! edits sent to the relay, which saves and applies them. Quitting
//! detaches; the relay keeps running.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use crossterm::event::EventStream;
use futures_util::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::terminal::{
    PANIC_NOTIFY, TerminalGuard, console_runtime, in_terminal, stopped_by_panic,
};
use super::{FRAME, Options, TICK, action_for_event, draw, init_logging};
use crate::app::{
    Action, App, Certificates, Clock, Effect, RelayView, Remote, SaveError, SaveErrorKind,
    SessionPage, Settings, Status, update,
};
use crate::config::Config;
use crate::control::protocol::{
    ChangesReply, ClosedReply, ConfigReply, EventsReply, IdSummary, SessionInfo, SessionReply,
    SessionsReply, TlsInfo,
};
use crate::control::{ClientError, ControlClient, ErrorCode, Request};
use crate::relay::heartbeat::Rhythm;
use crate::relay::{RelayEvent, SessionId, SessionSnapshot};
use crate::ui::Theme;

/// Attaches to the relay answering on `socket`. `note` is shown first
/// (e.g. why plain `ecdn-console` attached instead of starting a relay).
pub fn run(options: &Options, socket: &Path, note: Option<String>) -> Result<()> {
    let log = init_logging(None);
    let runtime = console_runtime()?;
    let (mut poll, config, events) = runtime.block_on(connect(socket))?;
    let theme = Theme::from_env(options.no_color);
    let settings = Settings {
        config_path: poll.hello.config.clone(),
        relay_addr: Some(poll.hello.listen),
        banner: options.banner.clone(),
    };
    let remote = Remote {
        socket: socket.to_path_buf(),
        pid: poll.hello.pid,
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
            poll.hello.listen, poll.hello.pid
        )
    });
    let text = match log {
        Some(log) => format!("{text} Logging to {}", log.display()),
        None => text,
    };
    app.status = Some(Status { text, error: false });
    tracing::info!("attached to {}", socket.display());
    let result = in_terminal(options.mouse, |guard| {
        runtime.block_on(attach_loop(guard, &mut app, &mut poll, &mut events, &theme))
    })?;
    tracing::info!("detached from {}", socket.display());
    stopped_by_panic()?;
    result
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

async fn attach_loop(
    guard: &mut TerminalGuard,
    app: &mut App,
    poll: &mut ControlClient,
    events: &mut mpsc::Receiver<RelayEvent>,
    theme: &Theme,
) -> Result<()> {
    let mut input = EventStream::new();
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut connected = true;
    let mut dirty = true;
    let mut last_draw = Instant::now() - FRAME;
    let mut next_tick = Instant::now() + TICK;
    let mut known = Known::default();
    loop {
        if dirty && last_draw.elapsed() >= FRAME {
            let started = Instant::now();
            if connected && let Err(e) = sample(app, poll, &mut known).await {
                connected = false;
                lost(app, &e.to_string());
            }
            app.refresh(Clock::now());
            draw(guard, app, theme)?;
            // The transfer included: what bench/attach.sh reports.
            tracing::debug!(target: "ecdn_console::frame", frame_us = started.elapsed().as_micros() as u64, "frame");
            dirty = false;
            last_draw = Instant::now();
            next_tick = last_draw + TICK;
        }
        tokio::select! {
            // A key, a resize or a mouse event.
            event = input.next() => match event {
                Some(Ok(event)) => {
                    dirty = true;
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
                    let config_changed = matches!(event, RelayEvent::ConfigApplied { .. });
                    update(app, Action::Relay(event));
                    while let Ok(event) = events.try_recv() {
                        update(app, Action::Relay(event));
                    }
                    if config_changed {
                        follow_config(app, poll).await;
                        // Every session's limit may have moved: fetch all.
                        known.clock = None;
                    }
                    dirty = true;
                }
                None => {
                    connected = false;
                    lost(app, "it closed the connection");
                    dirty = true;
                }
            },
            // The frame-rate cap.
            () = sleep_until(last_draw + FRAME), if dirty => {}
            // Idle counters move by themselves: sample and redraw once a second.
            () = sleep_until(next_tick), if connected && !dirty => dirty = true,
            // The relay went away: a new one may answer on the same socket
            // (`serve --takeover`, a kept background relay). Try again.
            () = tokio::time::sleep(RECONNECT), if !connected => {
                if reconnect(app, poll, events).await {
                    connected = true;
                    known = Known::default();
                    dirty = true;
                }
            }
            _ = hangup.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            () = PANIC_NOTIFY.notified() => return Ok(()),
        }
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
    let pid = poll.hello.pid;
    if let Some(remote) = app.relay.remote_mut() {
        remote.pid = pid;
        remote.config_version = version;
    }
    app.certificates = certificates;
    update(app, Action::Reloaded(Ok(config)));
    for event in backlog {
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

/// What the relay last said of each live session, and when: each refresh
/// fetches only what changed since (`sessions-changed`), so an attached
/// console on 9,000 idle sessions costs the relay a list of ids a second.
#[derive(Debug, Default)]
struct Known {
    /// Each session as the relay last described it, converted once.
    sessions: HashMap<SessionId, (SessionSnapshot, Instant)>,
    rhythms: HashMap<SessionId, Rhythm>,
    /// The relay's clock of the last answer; `None`: fetch everything.
    clock: Option<u64>,
    /// The relay does not know `sessions-changed` (an older build).
    full_only: bool,
    /// The set of sessions changed since the console's table was built
    /// (it is rebuilt); otherwise the changed ones are replaced in place.
    reshaped: bool,
    /// Sessions whose counters came in since the last table update.
    updated: Vec<SessionId>,
    /// When the console's table was last brought up to date.
    aged_to: Option<Instant>,
}

impl Known {
    /// Takes in what changed; `Err` when the relay cannot say.
    async fn refresh(&mut self, poll: &mut ControlClient) -> Result<(), ClientError> {
        if !self.full_only {
            let request = Request::SessionsChanged {
                since: self.clock,
                known: self.clock.map(|_| self.summary()),
            };
            match poll.request::<ChangesReply>(&request).await {
                Ok(reply) => {
                    let now = Instant::now();
                    // No ids: the same sessions live as we know of.
                    if let Some(ids) = reply.ids {
                        let live: HashSet<SessionId> = ids.into_iter().collect();
                        self.sessions.retain(|id, _| live.contains(id));
                        self.rhythms.retain(|id, _| live.contains(id));
                        self.reshaped = true;
                    }
                    for info in reply.changed {
                        self.reshaped |= !self.sessions.contains_key(&info.id);
                        self.take(&info, now);
                        self.updated.push(info.id);
                    }
                    self.clock = Some(reply.clock);
                    return Ok(());
                }
                Err(ClientError::Refused(_)) => self.full_only = true,
                Err(e) => return Err(e),
            }
        }
        let reply: SessionsReply = poll.request(&Request::Sessions { domain: None }).await?;
        let now = Instant::now();
        self.sessions.clear();
        self.rhythms.clear();
        for info in &reply.sessions {
            self.take(info, now);
        }
        self.reshaped = true;
        Ok(())
    }

    /// Brings the console's session table up to `now`. Most refreshes
    /// change few sessions: those are replaced and the rest only age by
    /// the time since (no copy of 9,000 snapshots per second); when
    /// sessions came or went the table is built again.
    fn update_table(&mut self, table: &mut Vec<SessionSnapshot>, now: Instant) {
        let updated = std::mem::take(&mut self.updated);
        let since = self.aged_to.replace(now);
        match since {
            Some(since) if !self.reshaped && table.len() == self.sessions.len() => {
                let later = now.saturating_duration_since(since);
                let fresh: HashSet<SessionId> = updated.into_iter().collect();
                for s in table.iter_mut() {
                    match self.sessions.get(&s.id).filter(|_| fresh.contains(&s.id)) {
                        Some((base, at)) => *s = aged(base, *at, now),
                        None => age_by(s, later),
                    }
                }
            }
            _ => {
                *table = self
                    .sessions
                    .values()
                    .map(|(s, at)| aged(s, *at, now))
                    .collect();
            }
        }
        self.reshaped = false;
    }

    fn take(&mut self, info: &SessionInfo, now: Instant) {
        self.sessions.insert(info.id, (info.snapshot(now), now));
        self.rhythms.insert(info.id, info.rhythm());
    }

    /// How many sessions we know of and their ids' sum: the relay leaves
    /// the id list out when its own are the same.
    fn summary(&self) -> IdSummary {
        IdSummary::of(self.sessions.keys().copied())
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

/// Fetches the session table, and the open session's page.
async fn sample(
    app: &mut App,
    poll: &mut ControlClient,
    known: &mut Known,
) -> Result<(), ClientError> {
    known.refresh(poll).await?;
    let now = Instant::now();
    let open = app.open_detail().map(|d| d.id);
    let page = match open {
        Some(id) => match poll.request::<SessionReply>(&Request::Session { id }).await {
            Ok(r) => Some(SessionPage {
                snapshot: r.session.session.snapshot(now),
                recent: r.session.recent_frames.iter().map(|f| f.frame()).collect(),
                rhythm: r.session.session.rhythm(),
            }),
            Err(ClientError::Refused(_)) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    if let Some(remote) = app.relay.remote_mut() {
        if known.reshaped
            || !known.updated.is_empty()
            || remote.rhythms.len() != known.rhythms.len()
        {
            remote.rhythms.clone_from(&known.rhythms);
        }
        known.update_table(&mut remote.sessions, now);
        remote.page = page;
    }
    Ok(())
}

/// Another console's edit (or a reload) moved the relay's config: show it,
/// unless a dialog holds a draft — that one's save will then be refused as
/// a conflict, and `r` fetches the new version, keeping the draft.
async fn follow_config(app: &mut App, poll: &mut ControlClient) {
    if app.dialog.is_some() {
        return;
    }
    let Ok((version, config, certificates)) = fetch_config(poll).await else {
        return;
    };
    // A reload can renew certificates without changing the text.
    app.certificates = certificates;
    let mine = app.relay.remote().map_or(0, |r| r.config_version);
    if version != mine {
        app.config = config;
        if let Some(r) = app.relay.remote_mut() {
            r.config_version = version;
        }
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

/// How long `ecdn-console --config F` waits for a running relay's hello
/// before concluding there is none and starting its own.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether a relay answers on `socket` (for plain `ecdn-console`).
pub fn relay_answers(socket: &Path) -> bool {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return false;
    };
    runtime.block_on(async {
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, ControlClient::connect(socket)).await,
            Ok(Ok(_))
        )
    })
}
