//! `ecdn-console serve`: the relay without a UI. One line per event on
//! stdout; the config is reloaded on SIGHUP and when the file changes; a
//! bad new file is refused and the old config stays in force; SIGTERM or
//! Ctrl-C closes every session with 1001 and exits cleanly.

use std::io::Write;

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{Config, ConfigFile, ConfigWatch, Reload, WATCH_POLL_INTERVAL};
use crate::relay::{self, CLOSE_GRACE, RelayEvent, RelayHandle};

/// How events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `TIME  EVENT  details`, one line each.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Runs the relay until SIGTERM/SIGINT. `file` is already loaded and valid;
/// `workers` (from `--workers`) overrides its `[relay] workers`.
pub async fn run(
    file: ConfigFile,
    format: LogFormat,
    workers: Option<usize>,
    out: &mut dyn Write,
) -> Result<()> {
    let path = file.path().to_path_buf();
    let config = Arc::new(with_workers(file.config().clone(), workers));
    // Handlers first: a SIGHUP sent as soon as the "listening" line appears
    // must reload, not kill the process with the default action.
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    // Every worker on a thread of its own: this runtime only writes the
    // event log and watches signals and the file, so neither delays a frame.
    let (relay, mut events) = relay::spawn_relay_thread(config.clone())?;
    let mut log = EventLog { format, out };
    log.write_started(&relay, &path, &config)?;
    let mut watcher = ConfigWatch::new(&path, file.text());
    let mut tick = tokio::time::interval(WATCH_POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            Some(event) = events.recv() => log.write(&event)?,
            _ = hangup.recv() => {
                let reload = watcher.reload_now();
                log.write(&put_in_force(&relay, &mut watcher, reload, workers, "SIGHUP"))?;
            }
            _ = tick.tick() => {
                if let Some(reload) = watcher.poll(std::time::Instant::now()) {
                    log.write(&put_in_force(&relay, &mut watcher, reload, workers, "file changed"))?;
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }

    relay.shutdown();
    // Sessions close with 1001 and get a moment for their close handshakes;
    // their events are still printed.
    {
        let stopped = tokio::time::timeout(CLOSE_GRACE * 3, relay.stopped());
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                Some(event) = events.recv() => log.write(&event)?,
            }
        }
    }
    while let Ok(event) = events.try_recv() {
        log.write(&event)?;
    }
    relay.join(CLOSE_GRACE);
    log.line("stopped", "relay stopped")?;
    Ok(())
}

/// The config with `--workers`, when given, in place of `[relay] workers`.
fn with_workers(mut config: Config, workers: Option<usize>) -> Config {
    if let Some(n) = workers {
        config.relay.workers = n;
    }
    config
}

/// Puts a reloaded config in force, or reports why it was refused.
fn put_in_force(
    relay: &RelayHandle,
    watcher: &mut ConfigWatch,
    reload: Reload,
    workers: Option<usize>,
    trigger: &str,
) -> RelayEvent {
    let at = SystemTime::now();
    let file = match reload {
        Reload::Apply(file) => file,
        Reload::Refused(error) => return RelayEvent::ConfigRejected { at, error },
    };
    watcher.applied(&file);
    let new = with_workers(file.config().clone(), workers);
    let mut detail = format!(
        "{} reloaded ({trigger}): {} domain(s)",
        watcher.path().display(),
        new.domains.len()
    );
    if new.relay.listen != relay.config().relay.listen {
        detail.push_str(&format!(
            "; listen {} takes effect after a restart (still on {})",
            new.relay.listen,
            relay.local_addr()
        ));
    }
    if new.relay.workers != relay.workers() {
        detail.push_str(&format!(
            "; workers = {} takes effect after a restart (still {})",
            new.relay.workers,
            relay.workers()
        ));
    }
    relay.apply_config(Arc::new(new));
    RelayEvent::ConfigApplied { at, detail }
}

struct EventLog<'o> {
    format: LogFormat,
    out: &'o mut dyn Write,
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

    fn write(&mut self, event: &RelayEvent) -> Result<()> {
        match self.format {
            LogFormat::Text => writeln!(
                self.out,
                "{} {event}",
                humantime::format_rfc3339_millis(event.at())
            )?,
            LogFormat::Json => writeln!(self.out, "{}", serde_json::to_string(event)?)?,
        }
        self.out.flush()?;
        Ok(())
    }

    /// A line of serve's own (not a relay event).
    fn line(&mut self, kind: &str, detail: &str) -> Result<()> {
        let at = humantime::format_rfc3339_millis(SystemTime::now());
        match self.format {
            LogFormat::Text => writeln!(self.out, "{at} {kind:<7} {detail}")?,
            LogFormat::Json => writeln!(
                self.out,
                "{}",
                serde_json::json!({ "event": kind, "at": at.to_string(), "detail": detail })
            )?,
        }
        self.out.flush()?;
        Ok(())
    }
}
