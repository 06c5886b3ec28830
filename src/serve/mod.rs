//! `ecdn-console serve`: the relay without a UI. One line per event on
//! stdout; the config is reloaded on SIGHUP and when the file changes; a
//! bad new file is refused and the old config stays in force; SIGTERM or
//! Ctrl-C drains for `[relay] drain-timeout` (listeners closed, `/readyz`
//! 503, live sessions carry on), then closes what is left with 1001 and
//! exits cleanly. Speaks sd_notify when `NOTIFY_SOCKET` is set.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use sd_notify::NotifyState;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState, Readiness};
use crate::config::{Config, ConfigFile, FileFollower, Reload};
use crate::control::{Control, ControlServer, HandoverNotice, StagedSocket};
use crate::handover::{GiveReport, HandoverError, Received, Takeover};
use crate::relay::reload::with_workers;
use crate::relay::{self, CLOSE_GRACE, Metrics, RelayEvent, RelayHandle};
mod upgrade;

pub use upgrade::takeover_command;

/// How events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `TIME  EVENT  details`, one line each.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// How `serve` runs, from its command line.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub format: LogFormat,
    /// `--admin ADDR`: overrides `[admin] listen`.
    pub admin: Option<SocketAddr>,
    /// `--workers N`: overrides `[relay] workers`.
    pub workers: Option<usize>,
    /// `--takeover`: the control socket of the relay whose listeners and
    /// sessions this one takes over (DESIGN §7).
    pub takeover: Option<std::path::PathBuf>,
}

/// Runs the relay until SIGTERM/SIGINT (then drains, see [`drain`]). `file`
/// is already loaded and valid.
pub async fn run(file: ConfigFile, options: ServeOptions, out: &mut dyn Write) -> Result<()> {
    // Before any listener or handed-over descriptor exists.
    let open_files = crate::limits::raise_open_files_limit_line();
    let workers = options.workers;
    let path = file.path().to_path_buf();
    let config = Arc::new(with_workers(file.config().clone(), workers));
    // Handlers first: a SIGHUP sent as soon as the "listening" line appears
    // must reload, not kill the process with the default action.
    let mut signals = Signals {
        hangup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
        terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        upgrade: signal(SignalKind::user_defined2()).context("cannot listen for SIGUSR2")?,
        reopen: signal(SignalKind::user_defined1()).context("cannot listen for SIGUSR1")?,
    };
    let metrics = Arc::new(Metrics::with_workers(config.relay.workers));
    let admin = Arc::new(AdminState::new(metrics.clone()));
    let stop_admin = CancellationToken::new();
    let admin_addr = options.admin.or(config.admin.listen);
    // The admin listener comes first, so a probe sees 503 while the relay
    // starts; after a takeover the old process still holds it, so later.
    let mut admin_local = match (admin_addr, &options.takeover) {
        (Some(addr), None) => Some(start_admin(addr, &admin, &stop_admin, Duration::ZERO).await?),
        _ => None,
    };
    let _stop_admin = stop_admin.clone().drop_guard();
    // Every worker on a thread of its own: this runtime only writes the
    // event log, serves the admin endpoints and watches signals and the
    // file, so none of that delays a frame.
    let (relay, mut events, mut took_over, control) = match &options.takeover {
        None => {
            let (relay, events) =
                match relay::spawn_relay_threads_with_metrics(config.clone(), metrics) {
                    Ok(started) => started,
                    Err(e @ relay::RelayError::Bind { .. }) => {
                        return Err(already_running(&file).await.unwrap_or_else(|| e.into()));
                    }
                    Err(e) => return Err(e.into()),
                };
            let control = start_control(&relay, &file)?;
            (relay, events, None, control)
        }
        Some(socket) => {
            // Bound before the hand-over, so that the socket's path changes
            // hands in one rename when it commits.
            let mut staged = StagedSocket::bind(socket)?;
            let (relay, events, report) =
                take_over(socket, &mut staged, &path, config.clone(), metrics).await?;
            let control = ControlServer::start_staged(
                Control::new(relay.link(), file.clone(), "serve"),
                staged,
            )?;
            (relay, events, Some(report), control)
        }
    };
    if let (Some(addr), Some(_)) = (admin_addr, &took_over) {
        admin_local = Some(start_admin(addr, &admin, &stop_admin, ADMIN_HANDOVER_WAIT).await?);
    }
    let ctl = control.control.clone();
    if let Some(report) = &mut took_over {
        // A console attaching later sees the Event Log from before too.
        ctl.events.carry_over(std::mem::take(&mut report.events));
    }
    let mut edits = ctl.config.subscribe();
    let mut handovers = ctl.handover.subscribe();
    admin.set(Readiness::Ready);
    let mut log = EventLog {
        format: options.format,
        out,
        control: ctl.clone(),
        out_lost: false,
    };
    if let Some(report) = &took_over {
        log.line("takeover", &report.to_string())?;
    }
    // Watched before the first line goes out: a script (or a test) that
    // changes the file once it sees `listening` is always nudged.
    let (mut follower, cannot_watch) = FileFollower::new(&path, file.text());
    log.write_started(&relay, &path, &config)?;
    if let Some(line) = &open_files {
        log.line("limits", line)?;
    }
    log.line(
        "control",
        &format!("control socket at {}", control.path().display()),
    )?;
    if let Some(addr) = relay.tls_local_addr() {
        log.line("tls", &format!("wss:// clients on {addr}"))?;
    }
    if let Some(addr) = admin_local {
        log.line(
            "admin",
            &format!("admin endpoints on http://{addr}/ (/metrics, /healthz, /readyz)"),
        )?;
    }
    if took_over.is_some() {
        // Started by an upgrade in place (SIGUSR2) under systemd, this is
        // the service's process now.
        notify(&[NotifyState::MainPid(std::process::id()), NotifyState::Ready]);
    } else {
        notify(&[NotifyState::Ready]);
    }
    if let Some(line) = &cannot_watch {
        log.line("config", line)?;
    }
    let mut upgrading = None;
    let mut gave_away = false;

    loop {
        tokio::select! {
            Some(event) = events.recv() => {
                if log.write_batch(event, &mut events)? > 1 {
                    // A burst (a reconnect storm): let the next events
                    // gather instead of waking this thread for each one.
                    tokio::time::sleep(BURST_PAUSE).await;
                }
            }
            _ = signals.hangup.recv() => {
                let reload = follower.reload_now();
                log.write(put_in_force(&relay, &ctl, &mut follower, reload, workers, "SIGHUP"))?;
            }
            reload = follower.changed() => {
                log.write(put_in_force(&relay, &ctl, &mut follower, reload, workers, "file changed"))?;
            }
            // An edit over the control socket saved the file: what is
            // on disk is now in force, not a change to reload.
            Ok(()) = edits.changed() => follower.in_force(&ctl.config.file().0),
            // `ecdn-console stop`: as SIGTERM.
            () = ctl.stop.cancelled() => break,
            Ok(()) = handovers.changed() => {
                let notice = handovers.borrow_and_update().clone();
                match notice {
                    Some(HandoverNotice::Committed(report)) => {
                        let aside = ctl.socket_path();
                        log.line("handover", &handed_over(&report, relay.config().relay.drain_timeout, aside.as_deref()))?;
                        // The new process binds the admin address now.
                        stop_admin.cancel();
                        gave_away = true;
                        break;
                    }
                    Some(HandoverNotice::Refused(why)) => {
                        log.line("handover", &format!("hand-over refused, every session carries on here: {why}"))?;
                    }
                    None => {}
                }
            }
            _ = signals.upgrade.recv() => {
                let line = if upgrading.is_some() {
                    "SIGUSR2: an upgrade is already under way".to_string()
                } else {
                    match upgrade::spawn(&path, control.path(), &options) {
                        Ok((child, program)) => {
                            let pid = child.id().unwrap_or(0);
                            upgrading = Some(child);
                            format!("SIGUSR2: started {} (pid {pid}) to take this relay over", program.display())
                        }
                        Err(e) => format!("SIGUSR2: cannot start a new relay ({e}); every session carries on here"),
                    }
                };
                log.line("upgrade", &line)?;
            }
            status = upgrade::exited(&mut upgrading) => {
                upgrading = None;
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                log.line("upgrade", &format!("the new relay exited ({status}) before taking over; every session carries on here"))?;
            }
            _ = signals.reopen.recv() => {
                log.line("signal", "SIGUSR1 ignored: serve writes its log to stdout, there is no file to reopen")?;
            }
            _ = signals.terminate.recv() => break,
            _ = signals.interrupt.recv() => break,
        }
    }

    admin.set(Readiness::Draining);
    // Handed over, the service goes on in the new process: not stopping.
    if !gave_away {
        notify(&[NotifyState::Stopping]);
    }
    if gave_away {
        hand_over_late(&relay, control.path(), &mut events, &mut log).await?;
    }
    drain(&relay, &mut events, &mut signals, &ctl.stop_now, &mut log).await?;
    relay.shutdown();
    // Sessions close with 1001 and get a moment for their close handshakes;
    // their events are still printed.
    {
        let stopped = tokio::time::timeout(CLOSE_GRACE * 3, relay.stopped());
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                Some(event) = events.recv() => log.write(event)?,
            }
        }
    }
    while let Ok(event) = events.try_recv() {
        log.write(event)?;
    }
    relay.join(CLOSE_GRACE);
    drop(control);
    log.line("stopped", "relay stopped")?;
    Ok(())
}

/// After a hand-over: clients whose handshakes were under way then become
/// sessions here (the listeners have gone); once they have, they follow to
/// the new process in a second round, so no client is refused or cut.
async fn hand_over_late(
    relay: &RelayHandle,
    socket: &std::path::Path,
    events: &mut mpsc::Receiver<RelayEvent>,
    log: &mut EventLog<'_>,
) -> Result<()> {
    let config = relay.config();
    let deadline = tokio::time::Instant::now()
        + config.relay.handshake_timeout
        + config.relay.origin_connect_timeout;
    while relay.link().handshakes_in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::select! {
            Some(event) = events.recv() => log.write(event)?,
            () = tokio::time::sleep(DRAIN_POLL) => {}
        }
    }
    if relay.registry().is_empty() {
        return Ok(());
    }
    match crate::handover::give_late(&relay.link(), socket).await {
        Ok(report) if report.sessions > 0 => log.line(
            "handover",
            &format!(
                "handed {} more session(s) (their handshakes finished after the hand-over) to pid {}",
                report.sessions, report.to_pid
            ),
        )?,
        Ok(_) => {}
        Err(e) => log.line(
            "handover",
            &format!("could not hand the later sessions over ({e}); they drain here"),
        )?,
    }
    Ok(())
}

/// How long a new process waits for the old one to free the admin address.
const ADMIN_HANDOVER_WAIT: Duration = Duration::from_secs(3);

/// Binds the admin address (retrying for `wait` while another process
/// still holds it) and serves it.
async fn start_admin(
    addr: SocketAddr,
    state: &Arc<AdminState>,
    stop: &CancellationToken,
    wait: Duration,
) -> Result<SocketAddr> {
    let deadline = tokio::time::Instant::now() + wait;
    let listener = loop {
        match admin::bind(addr).await {
            Ok(listener) => break listener,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    tokio::spawn(admin::serve(listener, state.clone(), stop.clone()));
    Ok(local)
}

/// What `serve --takeover` logs once it runs the sessions.
struct TookOver {
    from_pid: u32,
    from_build: String,
    sessions: usize,
    listeners: usize,
    stays: usize,
    took: Duration,
    /// Of `took`: receiving, starting this relay, the commit, starting
    /// the moved sessions (the busiest first).
    phases: [Duration; 4],
    /// The old relay's recent events, for this one's ring.
    events: Vec<RelayEvent>,
}

impl std::fmt::Display for TookOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "took over {} session(s) and {} listener(s) from pid {} (build {}) in {} ms \
             (receive {} ms, start {} ms, commit {} ms, sessions {} ms)",
            self.sessions,
            self.listeners,
            self.from_pid,
            self.from_build,
            self.took.as_millis(),
            self.phases[0].as_millis(),
            self.phases[1].as_millis(),
            self.phases[2].as_millis(),
            self.phases[3].as_millis()
        )?;
        if self.stays > 0 {
            write!(
                f,
                "; {} TLS session(s) stay with pid {} until they end",
                self.stays, self.from_pid
            )?;
        }
        Ok(())
    }
}

/// `aside`: where this process's control socket went (see
/// `Control::socket_path`), for the sessions that stay.
fn handed_over(report: &GiveReport, drain: Duration, aside: Option<&std::path::Path>) -> String {
    let mut text = format!(
        "handed {} session(s) and {} listener(s) over to pid {} in {} ms (busy sessions paused {} ms)",
        report.sessions,
        report.listeners,
        report.to_pid,
        report.took.as_millis(),
        report.busy_paused.as_millis()
    );
    if report.stays > 0 {
        text.push_str(&format!(
            "; {} session(s) stay here (TLS) until they end or drain-timeout ({} s)",
            report.stays,
            drain.as_secs()
        ));
        if let Some(aside) = aside {
            text.push_str(&format!(
                "; `ecdn-console sessions --socket {}` lists them",
                aside.display()
            ));
        }
    }
    text
}

/// Takes the listeners and sessions of the relay on `socket`, runs them on
/// a relay of its own. Nothing is started for the sessions until the old
/// process has let go; any error before that leaves them all there.
async fn take_over(
    socket: &std::path::Path,
    staged: &mut StagedSocket,
    config_path: &std::path::Path,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
) -> Result<(RelayHandle, mpsc::Receiver<RelayEvent>, TookOver)> {
    let started = std::time::Instant::now();
    let socket = socket.to_path_buf();
    // The old relay's workers keep serving its busy sessions meanwhile.
    let (takeover, received) = crate::handover::on_a_thread_that_gives_way("takeover", move || {
        let mut takeover = Takeover::connect(&socket)?;
        let received = takeover.receive()?;
        Ok::<_, HandoverError>((takeover, received))
    })
    .await?
    .map_err(|e| match e {
        HandoverError::Connect { .. } => anyhow::anyhow!(
            "{e}; nothing to take over: start the relay first with `ecdn-console serve --config {}`, \
             or leave out --takeover",
            config_path.display()
        ),
        e => anyhow::Error::new(e).context("hand-over refused"),
    })?;
    let received_at = std::time::Instant::now();
    let Received {
        from_pid,
        from_build,
        listeners,
        sessions,
        stays,
        evidence,
        evidence_at,
        events: carried_events,
    } = received;
    let listener_count = listeners.len();
    let last_id = sessions.iter().map(|s| s.stats.id).max().unwrap_or(0);
    let inherited = relay::Inherited { listeners, last_id };
    let (relay, events) = relay::spawn_relay_threads_inheriting(config, metrics, Some(inherited))
        .context("hand-over refused: this relay cannot start")?;
    let started_at = std::time::Instant::now();
    // The socket's path is ours from here (the old relay takes it back if
    // the hand-over fails yet); clients asking now wait in the backlog until
    // every session is in the table, then see them all.
    if let Err(e) = staged.publish() {
        tracing::warn!("{e}; the control socket stays at its staging name");
    }
    if let Err(e) = tokio::task::spawn_blocking(move || takeover.confirm()).await? {
        relay.shutdown();
        relay.join(CLOSE_GRACE);
        return Err(anyhow::Error::new(e).context("hand-over refused"));
    }
    let committed_at = std::time::Instant::now();
    let moved = sessions.len();
    relay.registry().history().restore(evidence, evidence_at);
    crate::handover::adopt(&relay.link(), sessions).await;
    let report = TookOver {
        from_pid,
        from_build,
        sessions: moved,
        listeners: listener_count,
        stays,
        took: started.elapsed(),
        phases: [
            received_at - started,
            started_at - received_at,
            committed_at - started_at,
            committed_at.elapsed(),
        ],
        events: carried_events,
    };
    Ok((relay, events, report))
}

/// The config with `--workers`, when given, in place of `[relay] workers`.
struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
    /// SIGUSR2: upgrade in place (see `upgrade`).
    upgrade: Signal,
    /// SIGUSR1, which logrotate set-ups send to nginx to reopen its logs:
    /// serve writes to stdout and has nothing to reopen, but the signal's
    /// default action would kill the relay and every session.
    reopen: Signal,
}

/// How often a drain checks whether every session has ended.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// The drain of `[relay] drain-timeout`: the listeners close at once (the
/// caller already made `/readyz` answer 503); live sessions go on until
/// they end or the timeout passes; a second SIGTERM or SIGINT ends it at
/// once. The caller then closes what is left with 1001.
async fn drain(
    relay: &RelayHandle,
    events: &mut mpsc::Receiver<RelayEvent>,
    signals: &mut Signals,
    stop_now: &CancellationToken,
    log: &mut EventLog<'_>,
) -> Result<()> {
    let timeout = relay.config().relay.drain_timeout;
    relay.stop_accepting().await;
    let live = relay.registry().len();
    if timeout.is_zero() || live == 0 {
        return Ok(());
    }
    relay.metrics().start_drain();
    log.line(
        "drain",
        &format!(
            "draining: listeners closed, {live} session(s) live; what is left gets 1001 \"relay shutting down\" in {} s (SIGTERM, Ctrl-C or ecdn-console stop again: now)",
            timeout.as_secs()
        ),
    )?;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut poll = tokio::time::interval(DRAIN_POLL);
    let how = loop {
        tokio::select! {
            () = &mut deadline => break "drain-timeout passed",
            _ = signals.terminate.recv() => break "second signal",
            _ = signals.interrupt.recv() => break "second signal",
            () = stop_now.cancelled() => break "second stop",
            Some(event) = events.recv() => log.write(event)?,
            _ = poll.tick() => {
                if relay.registry().is_empty() {
                    break "every session ended";
                }
            }
        }
    };
    // Closed events already queued belong to the drain's count.
    while let Ok(event) = events.try_recv() {
        log.write(event)?;
    }
    let ended = relay.metrics().ended_during_drain();
    let left = relay.registry().len();
    log.line(
        "drain",
        &format!(
            "drain over ({how}): {ended} session(s) ended by themselves, {left} to close with 1001"
        ),
    )?;
    Ok(())
}

/// The control socket at `[relay] control-socket` or the default path.
/// When `file`'s listen address is taken: whether by a relay for the same
/// file that answers on its control socket, and then what to do instead.
async fn already_running(file: &ConfigFile) -> Option<anyhow::Error> {
    let socket = crate::control::implied_socket(file.config())?;
    let client = crate::control::ControlClient::probe(&socket).await?;
    let hello = &client.hello;
    let who = match hello.mode.as_str() {
        "console" => "a console's in-process relay",
        _ => "ecdn-console serve",
    };
    Some(anyhow::anyhow!(
        "a relay for {} already runs on {} (pid {}, {who}); `ecdn-console serve --takeover` \
         replaces it without dropping a session, `ecdn-console attach` opens the console on it \
         (its control socket: {})",
        file.path().display(),
        hello.listen,
        client.pid_to_show(),
        socket.display()
    ))
}

fn start_control(relay: &RelayHandle, file: &ConfigFile) -> Result<ControlServer> {
    let path = crate::control::socket_path(file.config(), relay.local_addr());
    let control = Control::new(relay.link(), file.clone(), "serve");
    Ok(ControlServer::start(control, &path)?)
}

/// Tells systemd (only when `NOTIFY_SOCKET` is set; a failure to reach it
/// is not the relay's problem).
fn notify(state: &[NotifyState]) {
    let _ = sd_notify::notify(state);
}

/// Puts a reloaded config in force, or reports why it was refused; tells
/// systemd and, when taken, the control socket.
fn put_in_force(
    relay: &RelayHandle,
    control: &Control,
    follower: &mut FileFollower,
    reload: Reload,
    workers: Option<usize>,
    trigger: &str,
) -> RelayEvent {
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        notify(&[NotifyState::Reloading, now]);
    }
    let reloaded = relay::reload::put_in_force(relay, follower, reload, workers, trigger);
    if let Some(file) = reloaded.in_force {
        control.config.replace(file);
    }
    notify(&[NotifyState::Ready]);
    reloaded.event
}

/// Events written at most in one write.
const BATCH_MAX: usize = 1024;
/// After a batch of several events, how long the log lets the next ones
/// gather: in a storm of 10,000 sessions/s the log thread would otherwise
/// wake (and write) once per event, on the cores the workers need.
const BURST_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

struct EventLog<'o> {
    format: LogFormat,
    out: &'o mut dyn Write,
    /// Every event written also goes to the control socket's ring.
    control: Arc<Control>,
    /// Writing to `out` failed (the reader of a pipe went away, a full
    /// disk): the relay carries on without it rather than cut every
    /// session over its log; the events still reach the control socket.
    out_lost: bool,
}

impl EventLog<'_> {
    fn write_started(
        &mut self,
        relay: &RelayHandle,
        path: &std::path::Path,
        config: &Config,
    ) -> Result<()> {
        let detail = format!(
            "listening on {} ({} worker(s)) with {} domain(s) from {}",
            relay.local_addr(),
            relay.workers(),
            config.domains.len(),
            path.display()
        );
        self.line("listening", &detail)
    }

    fn write(&mut self, event: RelayEvent) -> Result<()> {
        let mut buf = Vec::with_capacity(256);
        self.format(&mut buf, event)?;
        self.emit(&buf);
        Ok(())
    }

    /// Writes `buf` to the log unless it is lost; says once, on stderr,
    /// when it is.
    fn emit(&mut self, buf: &[u8]) {
        if self.out_lost {
            return;
        }
        if let Err(e) = self.out.write_all(buf).and_then(|()| self.out.flush()) {
            self.out_lost = true;
            eprintln!(
                "ecdn-console serve: stopped printing events: stdout failed ({e}); \
                 the relay carries on, and its events stay on the control socket \
                 (ecdn-console events --follow)"
            );
        }
    }

    /// Writes `first` and the events already waiting (at most
    /// [`BATCH_MAX`]) in one write; returns how many.
    fn write_batch(
        &mut self,
        first: RelayEvent,
        events: &mut tokio::sync::mpsc::Receiver<RelayEvent>,
    ) -> Result<usize> {
        let mut buf = Vec::with_capacity(256);
        self.format(&mut buf, first)?;
        let mut n = 1;
        while n < BATCH_MAX {
            let Ok(event) = events.try_recv() else { break };
            self.format(&mut buf, event)?;
            n += 1;
        }
        self.emit(&buf);
        Ok(n)
    }

    /// Formats `event` onto `buf`, then hands it to the control socket's
    /// ring (moved, not copied).
    fn format(&self, buf: &mut Vec<u8>, event: RelayEvent) -> Result<()> {
        match self.format {
            LogFormat::Text => writeln!(
                buf,
                "{} {event}",
                humantime::format_rfc3339_millis(event.at())
            )?,
            LogFormat::Json => {
                serde_json::to_writer(&mut *buf, &event)?;
                buf.push(b'\n');
            }
        }
        self.control.events.publish_owned(event);
        Ok(())
    }

    /// A line of serve's own (not a relay event).
    fn line(&mut self, kind: &str, detail: &str) -> Result<()> {
        let at = humantime::format_rfc3339_millis(SystemTime::now());
        let mut buf = Vec::with_capacity(128);
        match self.format {
            LogFormat::Text => writeln!(buf, "{at} {kind:<7} {detail}")?,
            LogFormat::Json => writeln!(
                buf,
                "{}",
                serde_json::json!({ "event": kind, "at": at.to_string(), "detail": detail })
            )?,
        }
        self.emit(&buf);
        Ok(())
    }
}
