//! `ecdn-console cloud`: the console on a Tencent Cloud account. The same
//! app and screens as on a file, with no relay: the domains come from
//! `DescribeDomainsConfig`, an edit goes to `UpdateDomainConfig`, and `p`
//! runs a silent probe against the domain's edge. API calls and probes run
//! as tasks whose results come back into `update` as actions.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use crossterm::event::EventStream;
use futures_util::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::terminal::{
    PANIC_NOTIFY, TerminalGuard, console_runtime, in_terminal, stopped_by_panic,
};
use super::{Options, action_for_event, draw, init_logging};
use crate::app::cloud::config_of;
use crate::app::{
    Action, App, CloudEvent, CloudView, DomainSource, Effect, ProbeResult, ProbeState, SaveError,
    SaveErrorKind, Settings, update,
};
use crate::cloud::{Client, CloudWebSocket};
use crate::config::{Edit, MAX_TIMEOUT_SECS, rules};
use crate::probe::{self, Mode, ProbeOptions, Summary};
use crate::relay::Registry;
use crate::ui::Theme;

const FRAME: Duration = Duration::from_millis(33);
const TICK: Duration = Duration::from_secs(1);
/// A silent probe ends by itself after this: longer than any timeout the
/// switch can set, so an edge with no idle limit is reported as such.
const PROBE_LIMIT: Duration = Duration::from_secs(MAX_TIMEOUT_SECS as u64 + 30);

/// Runs the console on the account `client` reaches.
pub fn run(options: &Options, client: Client) -> Result<()> {
    let theme = Theme::from_env(options.no_color);
    let log = init_logging(None);
    let settings = Settings {
        config_path: PathBuf::new(),
        relay_addr: None,
        banner: options.banner.clone(),
        sessions_stay: None,
    };
    // An empty registry: no relay runs, so no session ever shows up.
    let mut app = App::new(
        Arc::new(config_of(&[])),
        Arc::new(Registry::new()),
        settings,
    );
    app.source = DomainSource::Cloud(CloudView::new(client.endpoint().shown.clone()));
    if let Some(log) = log {
        tracing::info!(
            "cloud console started; endpoint {}",
            client.endpoint().shown
        );
        app.status = Some(crate::app::Status {
            text: format!("Logging to {}", log.display()),
            error: false,
        });
    }
    let runtime = console_runtime()?;
    // The probe writes to a `dyn Write` it borrows across awaits, so its
    // task is not `Send`: tasks run on this thread's LocalSet.
    let local = tokio::task::LocalSet::new();
    let result = in_terminal(options.mouse, |guard| {
        local.block_on(&runtime, event_loop(guard, &mut app, &client, &theme))
    })?;
    tracing::info!("cloud console stopped");
    stopped_by_panic()?;
    result
}

/// What a background task hands back.
enum Done {
    Action(Action),
    /// UpdateDomainConfig succeeded: the new object, then `Saved`.
    Updated {
        edit: Edit,
        domain: String,
        websocket: CloudWebSocket,
    },
}

/// The runner's side of the tasks: where results go, what stops probes.
struct Tasks<'a> {
    client: &'a Client,
    done: mpsc::UnboundedSender<Done>,
    stop: CancellationToken,
}

async fn event_loop(
    guard: &mut TerminalGuard,
    app: &mut App,
    client: &Client,
    theme: &Theme,
) -> Result<()> {
    let (done, mut results) = mpsc::unbounded_channel();
    let tasks = Tasks {
        client,
        done,
        stop: CancellationToken::new(),
    };
    let mut input = EventStream::new();
    // As in the file's console: SIGHUP is how a dropped SSH session shows.
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tasks.perform(app, vec![Effect::LoadCloud]);
    let mut dirty = true;
    let mut last_draw = Instant::now() - FRAME;
    let mut next_tick = Instant::now() + TICK;
    loop {
        if dirty && last_draw.elapsed() >= FRAME {
            app.refresh(crate::app::Clock::now());
            draw(guard, app, theme)?;
            dirty = false;
            last_draw = Instant::now();
            next_tick = last_draw + TICK;
        }
        let ticking = probing(app);
        tokio::select! {
            // A key, a resize or a mouse event.
            event = input.next() => match event {
                Some(Ok(event)) => {
                    dirty = true;
                    if let Some(action) = action_for_event(app, guard, &event) {
                        let effects = update(app, action);
                        if tasks.perform(app, effects) {
                            break;
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("terminal input failed: {e}");
                    break;
                }
                None => break,
            },
            // An API call or a probe finished (or a page arrived).
            Some(result) = results.recv() => {
                dirty = true;
                let effects = match result {
                    Done::Action(action) => update(app, action),
                    Done::Updated { edit, domain, websocket } => {
                        update(app, Action::Cloud(CloudEvent::Updated { domain, websocket }));
                        update(app, Action::Saved { config: app.config.clone(), edit })
                    }
                };
                if tasks.perform(app, effects) {
                    break;
                }
            },
            // The frame-rate cap: draw what changed since the last frame.
            () = sleep_until(last_draw + FRAME), if dirty => {}
            // A running probe's idle counter moves: redraw once a second.
            () = sleep_until(next_tick), if ticking && !dirty => dirty = true,
            _ = hangup.recv() => break,
            _ = terminate.recv() => break,
            () = PANIC_NOTIFY.notified() => break,
        }
    }
    tasks.stop.cancel();
    Ok(())
}

fn probing(app: &App) -> bool {
    app.cloud().is_some_and(|v| {
        v.probes
            .values()
            .any(|p| matches!(p, ProbeState::Running { .. }))
    })
}

impl Tasks<'_> {
    /// Starts the work `effects` ask for; whether to quit.
    fn perform(&self, app: &App, effects: Vec<Effect>) -> bool {
        let mut quit = false;
        for effect in effects {
            match effect {
                Effect::LoadCloud => self.load(),
                Effect::Save(edit) => self.save(app, edit),
                Effect::Probe(domain) => self.probe(domain),
                Effect::Quit => quit = true,
                // No file and no relay on an account.
                Effect::Reload
                | Effect::ApplyToRelay(_)
                | Effect::CloseSession(_)
                | Effect::KeepSessions => {}
            }
        }
        quit
    }

    fn send(&self, done: Done) {
        // The receiver lives as long as the loop; after it, nobody listens.
        let _ = self.done.send(done);
    }

    fn load(&self) {
        let (client, done) = (self.client.clone(), self.done.clone());
        tokio::task::spawn_local(async move {
            let pages = done.clone();
            let result = client
                .describe_domains(|p| {
                    let _ = pages.send(Done::Action(Action::Cloud(CloudEvent::Progress(p))));
                })
                .await;
            let event = match result {
                Ok(domains) => {
                    tracing::info!(count = domains.len(), "listed the account's domains");
                    CloudEvent::Loaded(domains)
                }
                Err(e) => {
                    tracing::warn!("listing domains failed: {e}");
                    CloudEvent::LoadFailed(e.to_string())
                }
            };
            let _ = done.send(Done::Action(Action::Cloud(event)));
        });
    }

    /// UpdateDomainConfig with the whole WebSocket object: the edit's
    /// fields over the domain's current ones.
    fn save(&self, app: &App, edit: Edit) {
        let Edit::SetWebSocket {
            domain,
            switch,
            timeout,
        } = &edit
        else {
            self.send(Done::Action(Action::SaveFailed(SaveError {
                kind: SaveErrorKind::Invalid,
                message: "only the WebSocket setting can be changed on a Tencent Cloud account"
                    .into(),
            })));
            return;
        };
        let Some(current) = app.config.domain(domain) else {
            return;
        };
        let switch = switch.unwrap_or(current.websocket.switch);
        let timeout = match rules::timeout(timeout.unwrap_or(current.websocket.timeout).into()) {
            Ok(t) => t,
            Err(e) => {
                self.send(Done::Action(Action::SaveFailed(SaveError {
                    kind: SaveErrorKind::Invalid,
                    message: e.to_string(),
                })));
                return;
            }
        };
        let name = current.name.to_string();
        let (client, done) = (self.client.clone(), self.done.clone());
        tokio::task::spawn_local(async move {
            let result = client.update_websocket(&name, switch, timeout).await;
            let message = match result {
                Ok(request_id) => {
                    tracing::info!(domain = %name, %request_id, "UpdateDomainConfig accepted");
                    Done::Updated {
                        edit,
                        domain: name,
                        websocket: CloudWebSocket {
                            switch,
                            timeout,
                            reported: true,
                        },
                    }
                }
                Err(e) => {
                    tracing::warn!(domain = %name, "UpdateDomainConfig failed: {e}");
                    Done::Action(Action::SaveFailed(SaveError {
                        kind: SaveErrorKind::Refused,
                        message: e.to_string(),
                    }))
                }
            };
            let _ = done.send(message);
        });
    }

    /// `probe --silent wss://DOMAIN/`: how long the edge lets it idle.
    fn probe(&self, domain: String) {
        let (done, stop) = (self.done.clone(), self.stop.child_token());
        tokio::task::spawn_local(async move {
            let result = match format!("wss://{}/", domain.to_ascii_lowercase()).parse() {
                Ok(target) => {
                    let options = ProbeOptions {
                        target,
                        host: None,
                        headers: Vec::new(),
                        protocols: Vec::new(),
                        mode: Mode::Silent,
                        count: None,
                        duration: Some(PROBE_LIMIT),
                        connect_timeout: Duration::from_secs(10),
                        ca_file: None,
                        json: false,
                    };
                    let mut out = std::io::sink();
                    probe_result(&probe::run(&options, &mut out, stop).await)
                }
                Err(e) => ProbeResult {
                    cut_after_idle_secs: None,
                    text: format!("cannot probe: {e}"),
                },
            };
            let _ = done.send(Done::Action(Action::Cloud(CloudEvent::Probed {
                domain,
                result,
            })));
        });
    }
}

/// A probe's summary as the domain page shows it.
fn probe_result(summary: &Summary) -> ProbeResult {
    use crate::probe::Outcome;
    let idle = match (summary.idle_received_s, summary.idle_sent_s) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let how = summary.close.as_ref().map_or_else(String::new, |c| {
        if c.frame {
            format!("(close {} {})", c.code, c.reason)
        } else {
            "(dropped without a close frame)".to_string()
        }
    });
    match summary.outcome {
        Outcome::ServerClosed | Outcome::Dropped => ProbeResult {
            cut_after_idle_secs: idle,
            text: how,
        },
        Outcome::Finished => ProbeResult {
            cut_after_idle_secs: None,
            text: format!("not cut within {} s of silence", PROBE_LIMIT.as_secs()),
        },
        other => ProbeResult {
            cut_after_idle_secs: None,
            text: summary
                .diagnosis
                .clone()
                .unwrap_or_else(|| other.describe().to_string()),
        },
    }
}
