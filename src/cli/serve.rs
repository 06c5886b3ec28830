//! `serve` and `origin`: the long-running commands without a UI.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::origin::{self, OriginOptions};
use crate::serve::{self, LogFormat, ServeOptions};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Event line format on stdout
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Serve /metrics, /healthz and /readyz on ADDR (overrides [admin] listen)
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Relay threads, each with its own listener (overrides `[relay] workers`;
    /// default: one per CPU)
    #[arg(long, value_name = "N", value_parser = parse_workers)]
    pub workers: Option<usize>,
    /// Take the listeners and live sessions over from the relay running
    /// this config (or the one on --socket): a restart or upgrade with no
    /// WebSocket dropped
    #[arg(long)]
    pub takeover: bool,
    /// With --takeover: the running relay's control socket [default: the one
    /// implied by --config]
    #[arg(long, value_name = "PATH", requires = "takeover")]
    pub socket: Option<std::path::PathBuf>,
}

fn parse_workers(value: &str) -> Result<usize, String> {
    let n: i64 = value.parse().map_err(|_| {
        format!("\"{value}\" is not a number; give a count of relay threads, e.g. 2")
    })?;
    crate::config::rules::workers(n).map_err(|v| format!("{}; {}", v.message, v.fix))
}

#[derive(Debug, Args)]
pub struct OriginArgs {
    /// Address to listen on (loopback by default)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9001")]
    pub listen: SocketAddr,
    /// Push a `tick N` text message to every client every SECS seconds
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub tick: Option<u64>,
    /// Subprotocol to select when a client offers it
    #[arg(long, value_name = "NAME")]
    pub protocol: Option<String>,
}

/// A single-threaded runtime: like the console's relay thread, one core
/// serves every session.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn run_serve(
    args: &ServeArgs,
    config_path: Option<&Path>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    log_warnings_to_stderr(err);
    let file = super::open_config(config_path, err)?;
    let takeover = args.takeover.then(|| {
        args.socket.clone().unwrap_or_else(|| {
            let relay = &file.config().relay;
            relay
                .control_socket
                .clone()
                .unwrap_or_else(|| crate::control::default_socket_path(relay.listen))
        })
    });
    let options = ServeOptions {
        format: args.log_format,
        admin: args.admin,
        workers: args.workers,
        takeover,
    };
    runtime()?.block_on(serve::run(file, options, out))
}

/// What the relay's threads report beside its events (a moved session that
/// could not be carried on, a late hand-over that failed) goes to stderr,
/// leaving stdout to the event lines; `RUST_LOG` widens or narrows it
/// (default: warnings).
fn log_warnings_to_stderr(err: &mut dyn Write) {
    use std::io::IsTerminal;
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) => tracing_subscriber::EnvFilter::try_new(&value).unwrap_or_else(|e| {
            let _ = writeln!(
                err,
                "warning: RUST_LOG={value:?} is not a log filter ({e}); logging warnings only \
                 (e.g. RUST_LOG=info)"
            );
            tracing_subscriber::EnvFilter::new("warn")
        }),
        Err(_) => tracing_subscriber::EnvFilter::new("warn"),
    };
    // Already set (more than one command in one process, as in tests): kept.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

pub fn run_origin(args: &OriginArgs, out: &mut dyn Write) -> Result<()> {
    runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        let options = OriginOptions {
            tick: args.tick.map(Duration::from_secs),
            protocol: args.protocol.clone(),
        };
        let addr = origin::spawn(args.listen, options, shutdown.clone())
            .await
            .with_context(|| format!("cannot listen on {}; pick another address with --listen", args.listen))?;
        writeln!(out, "origin listening on ws://{addr}/ (echo; /headers; /close CODE [REASON]); Ctrl-C stops it")?;
        out.flush()?;
        wait_for_stop_signal().await?;
        shutdown.cancel();
        Ok(())
    })
}

/// SIGTERM or Ctrl-C.
pub async fn wait_for_stop_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
