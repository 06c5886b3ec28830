//! `ecdn-load`: the WebSocket load generator (the library of this crate).
//! Parses arguments, runs the load on a small multi-thread runtime, prints
//! the report. Exit codes: 0 report printed, 2 bad arguments, 1 no session
//! could be opened or the run could not start.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ecdn_load::{self as load, LoadOptions, Mode};

/// WebSocket load generator: echo (closed loop), paced and idle sessions
/// through a relay, a proxy or an origin directly, over ws:// or wss://.
#[derive(Debug, Parser)]
#[command(name = "ecdn-load", version)]
struct Args {
    /// Target, e.g. ws://127.0.0.1:8080/ (loopback unless --allow-remote)
    url: String,
    /// Host header to send (the relay routes by it)
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Sessions to open
    #[arg(long, default_value_t = 100, value_name = "N")]
    sessions: usize,
    /// Handshakes in flight at most
    #[arg(long, default_value_t = 64, value_name = "K")]
    concurrency: usize,
    /// echo: closed loop; paced: one message per --interval-ms; idle: silent
    /// sessions; handshake: --concurrency loops of open, one message, close
    /// (sessions/s); fanout: this generator is the origin on --push-listen and
    /// pushes to every session every --interval-ms (delivery time)
    #[arg(long, value_enum, default_value_t = ModeArg::Echo)]
    mode: ModeArg,
    /// Paced mode: each session sends every M milliseconds (fanout: the origin pushes)
    #[arg(long, default_value_t = 100, value_name = "M")]
    interval_ms: u64,
    /// Payload bytes per message (e.g. 64, 4096, 65536)
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    size: usize,
    /// Seconds of load once every session is open (idle: seconds to hold);
    /// default 10, or for idle with --expect-timeout that timeout + 5
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Idle mode: the idle timeout the target should enforce; closes are
    /// timed against handshake + SECS
    #[arg(long, value_name = "SECS")]
    expect_timeout: Option<f64>,
    /// Runtime worker threads (the generator shares the cores with the target)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8))]
    workers: u16,
    /// Print the report as one JSON object
    #[arg(long)]
    json: bool,
    /// Print "ready: N opened, M failed" on stderr once every session is open
    #[arg(long)]
    ready_line: bool,
    /// Allow a target outside the loopback range
    #[arg(long)]
    allow_remote: bool,
    /// Fanout mode: where this generator's pushing origin listens (the
    /// target must forward sessions there)
    #[arg(long, value_name = "ADDR")]
    push_listen: Option<std::net::SocketAddr>,
    /// wss:// targets: trust the CA certificate(s) in this PEM file (the
    /// TLS server name is --host's, else the URL's)
    #[arg(long, value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Print each round trip (or delivery) slower than MS milliseconds on
    /// stderr, with the wall-clock time it ended (UTC), to line it up with
    /// a proxy's log
    #[arg(long, value_name = "MS")]
    log_slow_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Echo,
    Paced,
    Idle,
    Handshake,
    Fanout,
}

fn seconds(flag: &str, value: Option<f64>) -> Result<Option<Duration>, String> {
    value
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| format!("{flag} {s}: expected a non-negative number of seconds"))
        })
        .transpose()
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.workers))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let ready_line = args.ready_line;
    let result = runtime.block_on(load::run(&options, |ready| {
        if ready_line {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "ready: {} opened, {} failed",
                ready.opened, ready.failed
            );
            let _ = err.flush();
        }
    }));
    match result {
        Ok(report) => {
            if args.json {
                match serde_json::to_string(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("error: cannot encode the report: {e}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                println!("{report}");
            }
            if report.opened == 0 {
                eprintln!("error: no session could be opened");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(load::LoadError::BadOption(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn options(args: &Args) -> Result<LoadOptions, String> {
    let mode = match args.mode {
        ModeArg::Echo => Mode::Echo,
        ModeArg::Paced => Mode::Paced {
            interval: Duration::from_millis(args.interval_ms),
        },
        ModeArg::Idle => Mode::Idle,
        ModeArg::Handshake => Mode::Handshake,
        ModeArg::Fanout => Mode::Fanout {
            interval: Duration::from_millis(args.interval_ms),
        },
    };
    Ok(LoadOptions {
        url: args.url.clone(),
        host: args.host.clone(),
        sessions: args.sessions,
        concurrency: args.concurrency,
        mode,
        size: args.size,
        duration: seconds("--duration", args.duration)?,
        expect_timeout: seconds("--expect-timeout", args.expect_timeout)?,
        allow_remote: args.allow_remote,
        push_listen: args.push_listen,
        ca_file: args.ca_file.clone(),
        log_slow: args
            .log_slow_ms
            .map(|ms| {
                Duration::try_from_secs_f64(ms / 1000.0).map_err(|_| {
                    format!("--log-slow-ms {ms}: expected a non-negative number of milliseconds")
                })
            })
            .transpose()?,
    })
}
