//! `ecdn-console probe URL`: a troubleshooting client for any WebSocket
//! endpoint — ours, a real CDN, anything. It reports the handshake, each
//! heartbeat's round trip, what the server sends, and at the end who closed
//! and how, with the idle time in each direction at that moment, so that a
//! path's idle timeout can be read off (`--silent`) or shown not to bite
//! (`--heartbeat`).
//!
//! It speaks the protocol at the frame level (see [`wire`], over the frame
//! rules of [`crate::ws`]) so that it reports the close code the server
//! really sent. It shares the relay's WebSocket vocabulary (`ws`) and TLS
//! roots, nothing of the UI.

mod connect;
mod diagnose;
mod phase;
mod report;
mod session;
mod wire;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use strum::IntoEnumIterator;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use connect::{Target, parse_header, parse_host};
pub use phase::Phase;
pub use report::{CloseReport, HeartbeatStats, Side, Summary};

/// What the probe sends while the connection is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing at all: the connection lasts as long as the path allows an
    /// idle connection (server pings are still answered, as any client must).
    Silent,
    /// A text message (`ping: false`, expecting an echo) or a ping frame
    /// (expecting a pong) every `every`.
    Heartbeat { every: Duration, ping: bool },
}

/// Everything `probe` needs, parsed and checked.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub target: Target,
    /// The Host header (and TLS server name); default: the URL's authority.
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Subprotocols offered, in order of preference.
    pub protocols: Vec<String>,
    pub mode: Mode,
    /// Stop after this many heartbeats (once the last one is answered).
    pub count: Option<u64>,
    /// Stop this long after the handshake.
    pub duration: Option<Duration>,
    /// Bound on DNS + TCP + TLS + upgrade together.
    pub connect_timeout: Duration,
    /// Extra CA certificates (PEM) to trust for `wss://`.
    pub ca_file: Option<PathBuf>,
    /// One JSON object per line instead of the human form.
    pub json: bool,
}

/// How a probe ended; each has its own exit code. In exit-code order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::EnumIter)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// `--count`/`--duration` reached or stopped by a signal; the probe
    /// closed with 1000.
    Finished,
    /// The server (or something on the path) sent a close frame.
    ServerClosed,
    /// The connection ended without a close frame (reported as 1006).
    Dropped,
    /// The server answered the upgrade with something else than a valid 101.
    HandshakeRefused,
    /// DNS failure, refused connection, or no answer in time.
    ConnectFailed,
    /// The TLS handshake failed.
    TlsFailed,
    /// The server broke the protocol; the probe closed with 1002 or 1009.
    ProtocolError,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Finished => 0,
            Self::ServerClosed => 3,
            Self::Dropped => 4,
            Self::HandshakeRefused => 5,
            Self::ConnectFailed => 6,
            Self::TlsFailed => 7,
            Self::ProtocolError => 8,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Finished => {
                "ended as asked (--count or --duration reached, or Ctrl-C): the probe closed with 1000"
            }
            Self::ServerClosed => "the server closed the connection with a close frame",
            Self::Dropped => "the connection was dropped without a close frame (1006)",
            Self::HandshakeRefused => {
                "the upgrade was refused (an HTTP status other than 101) or its answer was invalid"
            }
            Self::ConnectFailed => {
                "could not connect: DNS failure, connection refused, or no answer in time"
            }
            Self::TlsFailed => "the TLS handshake failed",
            Self::ProtocolError => {
                "the server sent a malformed frame; the probe closed with 1002 (or 1009)"
            }
        }
    }
}

/// The exit codes, for `probe --help`.
pub fn exit_codes_help() -> String {
    let mut help = String::from("Exit codes:\n");
    let mut row = |code: u8, text: &str| help.push_str(&format!("  {code}  {text}\n"));
    row(Outcome::Finished.exit_code(), Outcome::Finished.describe());
    row(1, "the probe itself failed (e.g. cannot start its runtime)");
    row(2, "bad arguments");
    // In exit-code order (the enum's), for `--help` and the README.
    for outcome in Outcome::iter().skip(1) {
        row(outcome.exit_code(), outcome.describe());
    }
    help.trim_end().to_string()
}

/// Runs one probe, writing its steps to `out`, and returns the summary
/// (which it has written too). Cancelling `stop` ends the session like
/// `--duration` would: a close 1000 and [`Outcome::Finished`].
pub async fn run(options: &ProbeOptions, out: &mut dyn Write, stop: CancellationToken) -> Summary {
    let start = Instant::now();
    let mut rep = report::Reporter::new(out, options.json, start);
    rep.start(options);
    let connected = tokio::select! {
        r = connect::connect(options, &mut rep) => Some(r),
        // Ctrl-C must not wait for a slow DNS server or a dropped SYN.
        () = stop.cancelled() => None,
    };
    let summary = match connected {
        Some(Ok(connected)) => session::run(options, connected, &mut rep, stop).await,
        Some(Err(failure)) => Summary::failed(failure, start.elapsed()),
        None => {
            let error = "stopped (Ctrl-C) before the connection opened".to_string();
            rep.step(report::Step::Failed {
                phase: Phase::Tcp,
                error,
            });
            let failure = phase::Failure {
                phase: Phase::Tcp,
                status: None,
            };
            Summary::failed(failure, start.elapsed())
        }
    };
    let summary = Summary {
        diagnosis: diagnose::diagnose(&summary, options.mode),
        ..summary
    };
    rep.summary(&summary);
    summary
}
