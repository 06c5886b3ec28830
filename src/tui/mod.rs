//! The terminal side of the console: owns the terminal, turns terminal
//! events, relay events and signals into actions, carries out effects, and
//! draws — only when something changed, at a capped frame rate.

pub mod attach;
pub mod cloud;
pub mod cpus;
pub mod effects;
pub mod keep;
pub mod terminal;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use crossterm::event::{Event, EventStream, MouseButton, MouseEventKind};
use crossterm::terminal::{BeginSynchronizedUpdate, EndSynchronizedUpdate};
use crossterm::{execute, queue};
use futures_util::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use crate::app::{Action, App, Clock, Command, Settings, update};
use crate::config::{ConfigFile, DEFAULT_CONFIG, FileFollower, Reload, default_config_path};
use crate::control::{Control, ControlServer};
use crate::relay::{self, RelayEvent, RelayHandle};
use crate::ui::{self, Theme};

pub use effects::{RelayControl, perform};
use terminal::{PANIC_NOTIFY, TerminalGuard, console_runtime, in_terminal, stopped_by_panic};

/// At most this many frames per second; a burst of changes is one frame.
pub(crate) const FRAME: Duration = Duration::from_millis(33);
/// While sessions are live their idle counters move: redraw this often.
pub(crate) const TICK: Duration = Duration::from_secs(1);
/// How long quitting waits for the relay to close its sessions.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// How the console is started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--config`; `None`: the default location.
    pub config_path: Option<PathBuf>,
    /// `--no-color` (`NO_COLOR` is honoured as well).
    pub no_color: bool,
    /// `--mouse`: capture the mouse (stops text selection over SSH).
    pub mouse: bool,
    /// A line under the header, e.g. the demo's banner.
    pub banner: Option<String>,
    /// The demo's sessions (its clients and origins are in this process)
    /// cannot be kept by a background relay.
    pub sessions_in_process: bool,
}

/// `ecdn-console` without a command: loads (or creates) the configuration,
/// starts the relay on its own thread, and runs the console.
pub fn run(options: &Options) -> Result<()> {
    let path = options
        .config_path
        .clone()
        .unwrap_or_else(default_config_path);
    let (file, created) = ConfigFile::load_or_create(&path, DEFAULT_CONFIG)?;
    // A relay for this file already runs (a `serve`, a kept background
    // relay, another console): attach to it instead of failing to bind.
    if let Some(socket) = crate::control::implied_socket(file.config())
        && attach::relay_answers(&socket)
    {
        let note = format!(
            "A relay for {} already runs: attached to it at {}. Quitting detaches; it keeps running.",
            path.display(),
            socket.display()
        );
        return attach::run(options, &socket, Some(note));
    }
    let log = init_logging(None);
    crate::limits::raise_open_files_limit_logged();
    let config = Arc::new(file.config().clone());
    let (relay, events) = relay::spawn_relay_thread(config)?;
    let mut notes = Vec::new();
    if created {
        notes.push(format!(
            "Created {} from the built-in default configuration.",
            path.display()
        ));
    }
    if let Some(log) = log {
        tracing::info!("console started; config {}", path.display());
        notes.push(format!("Logging to {}", log.display()));
    }
    run_with(file, relay, events, options, notes.first().cloned())
}

/// Runs the console on a loaded file and a running relay (the demo starts
/// its own). Shuts the relay down on the way out.
pub fn run_with(
    mut file: ConfigFile,
    relay: RelayHandle,
    mut events: mpsc::Receiver<RelayEvent>,
    options: &Options,
    note: Option<String>,
) -> Result<()> {
    let theme = Theme::from_env(options.no_color);
    let settings = Settings {
        config_path: file.path().to_path_buf(),
        relay_addr: Some(relay.local_addr()),
        banner: options.banner.clone(),
        sessions_stay: None,
    };
    let config = Arc::new(file.config().clone());
    let mut app = App::new(config, relay.registry().clone(), settings);
    app.certificates = RelayControl::certificates(&relay);
    // The in-process relay has a control socket too (shell commands,
    // `attach` from another terminal); without one the console still works.
    let control = start_control(&relay, &file);
    let note = match (&control, note) {
        (Err(e), _) => Some(format!("No control socket: {e}")),
        (Ok(_), note) => note,
    };
    let control = control.ok();
    app.settings.sessions_stay = if options.sessions_in_process {
        Some(SESSIONS_IN_THIS_PROCESS)
    } else if control.is_none() {
        Some(NO_SOCKET_TO_TAKE_THEM_FROM)
    } else {
        None
    };
    if let Some(note) = note {
        app.status = Some(crate::app::Status {
            text: note,
            error: false,
        });
    }
    let runtime = console_runtime()?;
    let result = in_terminal(options.mouse, |guard| {
        runtime.block_on(event_loop(
            guard,
            &mut app,
            &mut file,
            &relay,
            &mut events,
            control.as_ref(),
            &theme,
        ))
    })?;
    // The terminal is back (or gone, after SIGHUP).
    let kept = match (&result, &control) {
        (Ok(Exit::Kept(report, background)), _) => Some((report.clone(), background.clone())),
        (Ok(Exit::Signal("SIGHUP")), Some(control))
            if !relay.registry().is_empty() && app.settings.sessions_stay.is_none() =>
        {
            runtime.block_on(keep_on_hangup(control, file.path()))
        }
        _ => None,
    };
    if let Some((report, background)) = &kept {
        println!(
            "{} live session(s) kept running in a background relay (pid {}), logging to {}.\n\
             Get the console back on them with: {}",
            report.sessions,
            report.to_pid,
            background.log.display(),
            background.attach_command()
        );
        // TLS sessions cannot move: they stay here until they end or the drain passes.
        runtime.block_on(wait_for_stayers(&relay));
    }
    drop(control);
    // What is left gets 1001 `relay shutting down`.
    relay.shutdown();
    relay.join(SHUTDOWN_WAIT);
    tracing::info!("console stopped");
    stopped_by_panic()?;
    result.map(|_| ())
}

/// What a kept background relay's owner needs to say about it.
#[derive(Debug, Clone)]
pub struct KeptBy {
    pub log: PathBuf,
    pub socket: PathBuf,
}

impl KeptBy {
    fn attach_command(&self) -> String {
        format!("ecdn-console attach --socket {}", self.socket.display())
    }
}

/// SIGHUP (the SSH connection dropped) with live sessions: a background
/// relay takes them over; if it cannot, they are closed as before.
async fn keep_on_hangup(
    control: &ControlServer,
    config: &std::path::Path,
) -> Option<(crate::handover::GiveReport, KeptBy)> {
    let mut background = keep::spawn(&control.control, config, control.path()).ok()?;
    match keep::outcome(&control.control, &mut background).await {
        Ok(report) => {
            tracing::info!(
                "SIGHUP: {} session(s) handed to pid {}",
                report.sessions,
                report.to_pid
            );
            Some((
                report,
                KeptBy {
                    log: background.log,
                    socket: background.socket,
                },
            ))
        }
        Err(why) => {
            tracing::warn!("SIGHUP: could not keep the sessions ({why}); closing them");
            None
        }
    }
}

/// After a hand-over: waits for the sessions that could not move, at most
/// `[relay] drain-timeout`.
async fn wait_for_stayers(relay: &RelayHandle) {
    let until = tokio::time::Instant::now() + relay.config().relay.drain_timeout;
    while !relay.registry().is_empty() && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Why the quit question of the demo offers only to close its sessions.
const SESSIONS_IN_THIS_PROCESS: &str = "the demo's clients and origins run in this process";
/// Why it does when the console's control socket could not be started.
const NO_SOCKET_TO_TAKE_THEM_FROM: &str =
    "this console has no control socket for a background relay to take them over from";

/// Why the loop ended.
enum Exit {
    Quit,
    /// `k` in the quit dialog, and a background relay took the sessions.
    Kept(crate::handover::GiveReport, KeptBy),
    Signal(&'static str),
    TerminalGone,
    Panic,
}

fn start_control(relay: &RelayHandle, file: &ConfigFile) -> Result<ControlServer> {
    let control = Control::new(relay.link(), file.clone(), "console");
    let path = crate::control::socket_path(file.config(), relay.local_addr());
    Ok(ControlServer::start(control, &path)?)
}

/// Keeps the console's file and the control socket's in step: a save made
/// here becomes the relay's new version; an edit made over the socket (an
/// attached console) is shown here.
fn sync_config(app: &mut App, file: &mut ConfigFile, control: &Control, seen: &mut u64) {
    let (theirs, version) = control.config.file();
    if version != *seen && theirs.text() != file.text() {
        *file = theirs;
        // The control socket put it in force already.
        let config = Arc::new(file.config().clone());
        update(app, Action::ConfigChanged(config));
    } else if theirs.text() != file.text() {
        control.config.replace(file.clone());
    }
    *seen = control.config.version();
}

/// Puts a change of the console's file in force on its relay (or refuses
/// it, as `serve` would), shows it, and hands it to attached consoles.
fn take_file_change(
    app: &mut App,
    file: &mut ConfigFile,
    relay: &RelayHandle,
    control: Option<&Arc<Control>>,
    follower: &mut FileFollower,
    reload: Reload,
    seen: &mut u64,
) {
    let reloaded =
        crate::relay::reload::put_in_force(relay, follower, reload, None, "file changed");
    tracing::info!("{}", reloaded.event);
    if let Some(taken) = reloaded.in_force {
        *file = taken;
        if let Some(c) = control {
            c.config.replace(file.clone());
            *seen = c.config.version();
        }
        update(app, Action::ConfigChanged(Arc::new(file.config().clone())));
    }
    publish(control, &reloaded.event);
    // Said where the operator looks: what the file asks that only a
    // restart does (a new listen address).
    if matches!(reloaded.event, RelayEvent::ConfigApplied { .. }) {
        let mut text = "The file changed and is in force".to_string();
        for note in &reloaded.after_restart {
            text.push_str("; ");
            text.push_str(note);
        }
        app.status = Some(crate::app::Status { text, error: false });
    }
    update(app, Action::Relay(reloaded.event));
}

async fn event_loop(
    guard: &mut TerminalGuard,
    app: &mut App,
    file: &mut ConfigFile,
    relay: &RelayHandle,
    events: &mut mpsc::Receiver<RelayEvent>,
    server: Option<&ControlServer>,
    theme: &Theme,
) -> Result<Exit> {
    let control = server.map(|s| &s.control);
    // Where a background relay can take the sessions from: none when
    // `sessions_stay` says why not (the demo).
    let server = server.filter(|_| app.settings.sessions_stay.is_none());
    let stop = control.map(|c| c.stop.clone()).unwrap_or_default();
    let mut keeping: Option<keep::Background> = None;
    let mut edits = control.map(|c| c.config.subscribe());
    let mut seen = control.map_or(0, |c| c.config.version());
    // The file changed on disk (an editor, config management, a
    // ConfigMap): the relay takes it as `serve` would.
    let (mut follower, cannot_watch) = FileFollower::new(file.path(), file.text());
    if let Some(line) = cannot_watch {
        tracing::warn!("{line}");
    }
    let mut input = EventStream::new();
    // Over SSH a dropped connection can leave crossterm's reader spinning
    // instead of failing (crossterm#793): SIGHUP is the reliable signal.
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut relay_open = true;
    let mut dirty = true;
    let mut last_draw = Instant::now() - FRAME;
    let mut next_tick = Instant::now() + TICK;
    let exit = loop {
        if dirty && last_draw.elapsed() >= FRAME {
            app.refresh(Clock::now());
            draw(guard, app, theme)?;
            dirty = false;
            last_draw = Instant::now();
            next_tick = last_draw + TICK;
        }
        let ticking = app.needs_ticks();
        tokio::select! {
            // A key, a resize or a mouse event.
            event = input.next() => match event {
                Some(Ok(event)) => {
                    dirty = true;
                    if let Some(action) = action_for_event(app, guard, &event) {
                        let effects = update(app, action);
                        if effects.iter().any(|e| matches!(e, crate::app::Effect::KeepSessions)) {
                            keeping = start_keeping(app, server, file.path());
                        }
                        let quit = perform(app, file, relay, effects);
                        if let Some(c) = control {
                            sync_config(app, file, c, &mut seen);
                        }
                        // A save made here is not a change to reload.
                        follower.in_force(file);
                        if quit {
                            break Exit::Quit;
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("terminal input failed: {e}");
                    break Exit::TerminalGone;
                }
                None => break Exit::TerminalGone,
            },
            // Lifecycle events; a burst is drained into one redraw.
            event = events.recv(), if relay_open => match event {
                Some(event) => {
                    publish(control, &event);
                    update(app, Action::Relay(event));
                    while let Ok(event) = events.try_recv() {
                        publish(control, &event);
                        update(app, Action::Relay(event));
                    }
                    dirty = true;
                }
                None => {
                    relay_open = false;
                    app.status = Some(crate::app::Status {
                        text: "The relay stopped; see the log. Sessions are no longer relayed.".into(),
                        error: true,
                    });
                    dirty = true;
                }
            },
            // The frame-rate cap: draw what changed since the last frame.
            () = sleep_until(last_draw + FRAME), if dirty => {}
            // Live idle counters move by themselves: redraw once a second.
            () = sleep_until(next_tick), if ticking && !dirty => dirty = true,
            // An edit over the control socket (an attached console).
            Some(Ok(())) = async { match edits.as_mut() { Some(e) => Some(e.changed().await), None => None } } => {
                if let Some(c) = control {
                    sync_config(app, file, c, &mut seen);
                }
                follower.in_force(file);
                dirty = true;
            }
            reload = follower.changed() => {
                take_file_change(app, file, relay, control, &mut follower, reload, &mut seen);
                dirty = true;
            }
            // The background relay of `k` took the sessions, or could not.
            outcome = async {
                match (control, keeping.as_mut()) {
                    (Some(c), Some(bg)) => keep::outcome(c, bg).await,
                    _ => std::future::pending().await,
                }
            }, if keeping.is_some() => {
                let background = keeping.take();
                match (outcome, background) {
                    (Ok(report), Some(bg)) => {
                        break Exit::Kept(report, KeptBy { log: bg.log, socket: bg.socket });
                    }
                    (Err(why), _) => {
                        app.status = Some(crate::app::Status {
                            text: format!("Could not keep the sessions: {why}. Nothing was closed."),
                            error: true,
                        });
                    }
                    (Ok(_), None) => {}
                }
                dirty = true;
            }
            // `ecdn-console stop` over the control socket.
            () = stop.cancelled() => break Exit::Signal("stop request"),
            _ = hangup.recv() => break Exit::Signal("SIGHUP"),
            _ = terminate.recv() => break Exit::Signal("SIGTERM"),
            () = PANIC_NOTIFY.notified() => break Exit::Panic,
        }
    };
    match &exit {
        Exit::Quit => tracing::info!("quit from the console"),
        Exit::Kept(report, _) => tracing::info!(
            "quit from the console; {} session(s) kept by pid {}",
            report.sessions,
            report.to_pid
        ),
        Exit::Signal(name) => tracing::info!("{name}: shutting down"),
        Exit::TerminalGone => tracing::warn!("terminal closed: shutting down"),
        Exit::Panic => tracing::error!("a panic stopped the console"),
    }
    Ok(exit)
}

/// `k` in the quit dialog: starts the background relay that takes the
/// sessions over (the loop then waits for the outcome).
fn start_keeping(
    app: &mut App,
    server: Option<&ControlServer>,
    config: &std::path::Path,
) -> Option<keep::Background> {
    let fail = |app: &mut App, why: String| {
        app.status = Some(crate::app::Status {
            text: format!("Could not keep the sessions: {why}. Nothing was closed."),
            error: true,
        });
        None
    };
    // The quit question does not offer `k` then; a caller that asks anyway
    // is told why.
    let Some(server) = server else {
        let why = app
            .settings
            .sessions_stay
            .unwrap_or(NO_SOCKET_TO_TAKE_THEM_FROM);
        return fail(app, why.to_string());
    };
    match keep::spawn(&server.control, config, server.path()) {
        Ok(background) => {
            app.status = Some(crate::app::Status {
                text: format!(
                    "Handing the live sessions to a background relay (pid {}, log {})…",
                    background.child.id(),
                    background.log.display()
                ),
                error: false,
            });
            Some(background)
        }
        Err(e) => fail(app, format!("cannot start a background relay: {e}")),
    }
}

fn publish(control: Option<&Arc<Control>>, event: &RelayEvent) {
    if let Some(c) = control {
        c.events.publish(event);
    }
}

/// Each frame is wrapped in synchronized-update escapes, so slow links
/// never show half a frame.
pub(crate) fn draw(guard: &mut TerminalGuard, app: &App, theme: &Theme) -> io::Result<()> {
    queue!(guard.terminal.backend_mut(), BeginSynchronizedUpdate)?;
    guard.terminal.draw(|frame| ui::render(frame, app, theme))?;
    execute!(guard.terminal.backend_mut(), EndSynchronizedUpdate)
}

pub(crate) fn action_for_event(app: &App, guard: &TerminalGuard, event: &Event) -> Option<Action> {
    match event {
        Event::Key(key) => app.action_for_key(key),
        // Only arrives with --mouse (capture is off otherwise).
        Event::Mouse(mouse) => match mouse.kind {
            MouseEventKind::ScrollUp => Some(Action::Cmd(Command::Up)),
            MouseEventKind::ScrollDown => Some(Action::Cmd(Command::Down)),
            MouseEventKind::Down(MouseButton::Left) => {
                let size = guard.terminal.size().ok()?;
                let area = ratatui::layout::Rect::new(0, 0, size.width, size.height);
                ui::menu_hit(area, app, mouse.column, mouse.row)
                    .map(|s| Action::Cmd(Command::Goto(s)))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Logs go to a file, never to the terminal the console draws on:
/// `$ECDN_CONSOLE_LOG`, else `default` (the demo keeps its log in its
/// temporary directory), else `<cache dir>/ecdn-console/console.log`.
/// `RUST_LOG` sets the level (default `info`). Returns the file's path.
pub fn init_logging(default: Option<PathBuf>) -> Option<PathBuf> {
    let path = std::env::var_os("ECDN_CONSOLE_LOG")
        .map(PathBuf::from)
        .or(default)
        .or_else(|| dirs::cache_dir().map(|d| d.join("ecdn-console").join("console.log")))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok()?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .ok()?;
    Some(path)
}
