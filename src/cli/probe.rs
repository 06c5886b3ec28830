//! `probe URL`: arguments and wiring; the client itself is `crate::probe`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::Exit;
use crate::probe::{self, Mode, ProbeOptions, Target};

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The endpoint: ws://HOST[:PORT]/PATH or wss://…
    #[arg(value_name = "URL")]
    pub url: Target,
    /// Host header to send (and TLS server name), e.g. the CDN domain when
    /// the URL names an IP address or an edge node [default: from the URL]
    #[arg(long, value_name = "HOST", value_parser = probe::parse_host)]
    pub host: Option<String>,
    /// Extra request header; repeatable (e.g. --header 'Cookie: a=b')
    #[arg(long = "header", value_name = "NAME:VALUE", value_parser = probe::parse_header)]
    pub headers: Vec<(String, String)>,
    /// Subprotocol to offer; repeatable or comma-separated, in order of preference
    #[arg(long = "protocol", value_name = "NAME", value_delimiter = ',')]
    pub protocols: Vec<String>,
    /// Send a text message every SECS seconds and time its echo
    #[arg(long, value_name = "SECS", value_parser = parse_secs, conflicts_with = "silent")]
    pub heartbeat: Option<Duration>,
    /// With --heartbeat: send ping frames and time the pongs instead
    #[arg(long, requires = "heartbeat")]
    pub ping: bool,
    /// Send nothing, to measure how long the path lets an idle connection
    /// live (the default without --heartbeat)
    #[arg(long)]
    pub silent: bool,
    /// Stop after N heartbeats (once the last is answered), closing with 1000
    #[arg(long, value_name = "N", requires = "heartbeat",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop SECS seconds after the handshake, closing with 1000
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Time allowed for DNS, TCP, TLS and the upgrade together
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "10")]
    pub connect_timeout: Duration,
    /// Trust the CA certificates in this PEM file too (wss:// to a private CA)
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// One JSON object per line for each step, then a summary object
    #[arg(long)]
    pub json: bool,
}

/// Seconds, fractions allowed: `2`, `0.5`.
fn parse_secs(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.001 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("\"{text}\" is not a number of seconds between 0.001 and 86400"))
}

impl ProbeArgs {
    pub fn options(&self) -> ProbeOptions {
        ProbeOptions {
            target: self.url.clone(),
            host: self.host.clone(),
            headers: self.headers.clone(),
            protocols: self
                .protocols
                .iter()
                .map(|p| p.trim().to_string())
                .collect(),
            mode: match self.heartbeat {
                Some(every) => Mode::Heartbeat {
                    every,
                    ping: self.ping,
                },
                None => Mode::Silent,
            },
            count: self.count,
            duration: self.duration,
            connect_timeout: self.connect_timeout,
            ca_file: self.ca_file.clone(),
            json: self.json,
        }
    }
}

/// Runs the probe; a non-zero outcome becomes an [`Exit`] with its code.
pub fn run(args: &ProbeArgs, out: &mut dyn Write) -> Result<()> {
    let options = args.options();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let summary = runtime.block_on(async {
        let stop = CancellationToken::new();
        let probe = probe::run(&options, out, stop.clone());
        tokio::pin!(probe);
        // Polled from the start, so the handlers are in place before the
        // first byte goes out; after a signal the probe still closes cleanly.
        tokio::select! {
            summary = &mut probe => summary,
            signalled = super::serve::wait_for_stop_signal() => {
                if signalled.is_ok() {
                    stop.cancel();
                }
                probe.await
            }
        }
    });
    match summary.exit_code {
        0 => Ok(()),
        code => Err(Exit(code).into()),
    }
}
