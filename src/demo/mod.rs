//! `ecdn-console demo`: the console on a temporary copy of
//! `assets/demo.toml`, with two embedded origins and synthetic clients on
//! loopback whose rhythms make the timeout rules visible within a minute.
//!
//! Two origins, because the ticking one pushes to *every* client it serves:
//! on a shared origin its ticks would keep the silent chat client alive too.
//! Only `ticker.demo.test` points at the ticking one.

mod client;
pub mod scenario;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ConfigFile, DEMO_CONFIG, Edit, write_atomic};
use crate::origin::{self, OriginOptions};
use crate::relay;
use crate::tui;

pub use client::Backoff;
pub use scenario::{Behaviour, ClientSpec, Fate, Scenario};

/// The line under the header while the demo runs.
pub const BANNER: &str =
    "DEMO · synthetic clients and echo origins on loopback · temporary config copy";

/// The status line at start: where to look first.
const FIRST_NOTE: &str = "Try changing chat.demo.test's timeout, then watch who gets cut.";

/// Where the demo's origins listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origins {
    /// Echo only: every domain but the ticker.
    pub echo: SocketAddr,
    /// Echo, and a tick to every client every [`Scenario::tick`].
    pub ticking: SocketAddr,
}

/// Starts the two origins on loopback, on the current runtime, until
/// `stop` is cancelled.
pub async fn start_origins(scenario: &Scenario, stop: &CancellationToken) -> Result<Origins> {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let echo = origin::spawn(loopback, OriginOptions::default(), stop.clone())
        .await
        .context("cannot start the demo's echo origin on 127.0.0.1")?;
    let ticking = origin::spawn(
        loopback,
        OriginOptions {
            tick: Some(scenario.tick),
            protocol: None,
        },
        stop.clone(),
    )
    .await
    .context("cannot start the demo's ticking origin on 127.0.0.1")?;
    Ok(Origins { echo, ticking })
}

/// Writes the demo config to `dir/demo.toml` and, through the same
/// comment-keeping saves as the console, points every domain at the
/// started origins and sets the scenario's timeouts.
pub fn write_config(dir: &Path, scenario: &Scenario, origins: &Origins) -> Result<ConfigFile> {
    let path = dir.join("demo.toml");
    write_atomic(&path, DEMO_CONFIG.as_bytes())
        .with_context(|| format!("cannot write the demo config to {}", path.display()))?;
    let mut file = ConfigFile::load(&path)?;
    let domains = file.config().domains.clone();
    for d in &domains {
        let target = if d.name == scenario::TICKER {
            origins.ticking
        } else {
            origins.echo
        };
        file.apply(&Edit::SetOrigins {
            domain: d.name.to_string(),
            origins: vec![target.to_string()],
            server_name: d.server_name.clone(),
            origin_protocol: d.origin_protocol,
        })?;
    }
    for (domain, timeout) in [
        (scenario::CHAT, scenario.chat_timeout),
        (scenario::TICKER, scenario.ticker_timeout),
    ] {
        let current = file.config().domain(domain).map(|d| d.websocket.timeout);
        if current != Some(timeout) {
            file.apply(&Edit::SetWebSocket {
                domain: domain.into(),
                switch: None,
                timeout: Some(timeout),
            })?;
        }
    }
    Ok(file)
}

/// Starts every synthetic client of `scenario` against the relay at
/// `relay` (loopback only), each in its own task, until `stop` is cancelled.
pub fn spawn_clients(
    scenario: &Scenario,
    relay: SocketAddr,
    stop: &CancellationToken,
) -> Result<TaskTracker> {
    anyhow::ensure!(
        relay.ip().is_loopback(),
        "the demo's clients only connect to loopback, not {relay}"
    );
    let pause = Backoff {
        first: scenario.reconnect,
        max: scenario.max_backoff,
    };
    let tracker = TaskTracker::new();
    for spec in scenario.clients() {
        tracker.spawn(client::run(spec, relay, pause, stop.clone()));
    }
    tracker.close();
    Ok(tracker)
}

/// `ecdn-console demo`: sets the show up, runs the console on it, and
/// takes it down again; the temporary directory goes with it.
pub fn run(options: &tui::Options) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("ecdn-console-demo-")
        .tempdir()
        .context("cannot create a temporary directory for the demo config")?;
    // $ECDN_CONSOLE_LOG if set, else a log that goes away with the demo.
    tui::init_logging(Some(dir.path().join("demo.log")));
    // Its relay is a real one: clients of your own may join the demo's.
    crate::limits::raise_open_files_limit_logged();
    let scenario = Scenario::shipped();
    // Origins and clients get a runtime (and a thread) of their own; the
    // relay and the console have theirs.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("demo")
        .enable_all()
        .build()
        .context("cannot start the demo's runtime")?;
    let stop = CancellationToken::new();
    let origins = runtime.block_on(start_origins(&scenario, &stop))?;
    let file = write_config(dir.path(), &scenario, &origins)?;
    let (relay, events) = relay::spawn_relay_thread(Arc::new(file.config().clone()))?;
    let relay_addr = relay.local_addr();
    tracing::info!(
        "demo: config {}, relay {relay_addr}, origins {} and {} (ticking)",
        file.path().display(),
        origins.echo,
        origins.ticking
    );
    let clients = {
        let _entered = runtime.enter();
        spawn_clients(&scenario, relay_addr, &stop)?
    };
    let mut options = options.clone();
    options.banner = Some(BANNER.into());
    options.sessions_in_process = true;
    let result = tui::run_with(file, relay, events, &options, Some(FIRST_NOTE.into()));
    stop.cancel();
    runtime.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(2), clients.wait()).await;
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    drop(dir);
    result
}
