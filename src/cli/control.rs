//! The shell commands that talk to a running relay over its control socket
//! (README, "Command line"; docs/CONTROL.md): `sessions`, `close-session`, `events`, `stop`,
//! `recommend` (README, "Advice from evidence").

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use super::{BadInput, table};
use crate::config::{ConfigFile, default_config_path};
use crate::control::protocol::{
    ClosedReply, EventsReply, RecommendReply, SessionInfo, SessionsReply, StoppingReply,
};
use crate::control::{ClientError, ControlClient, ErrorCode, Request, default_socket_path};

/// Where to find the relay.
#[derive(Debug, Args)]
pub struct SocketArgs {
    /// The relay's control socket [default: the one of the relay running
    /// --config: its [relay] control-socket, else the default path for its
    /// listen address]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// One JSON array of sessions (ids, peers, counters, idle and deadline in seconds)
    #[arg(long)]
    pub json: bool,
    /// Only the sessions of this domain
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,
}

#[derive(Debug, Args)]
pub struct CloseSessionArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// The session's id (`ecdn-console sessions` lists them)
    pub id: u64,
    /// Close code sent to both sides
    #[arg(long, value_name = "N", default_value_t = 1001)]
    pub code: u16,
    /// Close reason sent to both sides (at most 123 bytes)
    #[arg(long, value_name = "TEXT", default_value = "closed by operator")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// After the recent events, print new ones as they happen (Ctrl-C stops)
    #[arg(long)]
    pub follow: bool,
    /// One JSON object per line, as `serve --log-format json` writes them
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
}

#[derive(Debug, Args)]
pub struct RecommendArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// The domain (as in the relay's config; case-insensitive)
    pub domain: String,
    /// One JSON object: domain, current_limit_secs, recommended_timeout_secs,
    /// reason, sessions_seen, heartbeat_secs, cut_while_alive, would_cut_now
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
}

/// No relay answered on the socket: exit status 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoRelay(pub String);

/// The socket named by `--socket`, else the one implied by the config file.
pub fn resolve_socket(args: &SocketArgs, config_path: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = &args.socket {
        return Ok(path.clone());
    }
    let path = config_path.map_or_else(default_config_path, Path::to_path_buf);
    if !path.exists() {
        return Err(BadInput(format!(
            "{} does not exist, so it names no relay; give the relay's socket with --socket PATH \
             or its config with --config FILE",
            path.display()
        ))
        .into());
    }
    let file = ConfigFile::load(&path)?;
    let config = file.config();
    Ok(config
        .relay
        .control_socket
        .clone()
        .unwrap_or_else(|| default_socket_path(config.relay.listen)))
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Turns a client error into the CLI's vocabulary: no relay → exit 3,
/// the operator's mistake → exit 2.
pub(super) fn cli_error(e: ClientError) -> anyhow::Error {
    match &e {
        ClientError::NoRelay { .. } => NoRelay(e.to_string()).into(),
        ClientError::Refused(r)
            if matches!(
                r.error,
                ErrorCode::UnknownSession
                    | ErrorCode::UnknownDomain
                    | ErrorCode::BadCloseCode
                    | ErrorCode::Invalid
            ) =>
        {
            BadInput(r.message.clone()).into()
        }
        _ => e.into(),
    }
}

async fn connect(path: &Path) -> Result<ControlClient> {
    ControlClient::connect(path).await.map_err(cli_error)
}

pub fn sessions(
    args: &SessionsArgs,
    config_path: Option<&Path>,
    out: &mut dyn Write,
) -> Result<()> {
    let path = resolve_socket(&args.socket, config_path)?;
    let reply: SessionsReply = runtime()?.block_on(async {
        let mut client = connect(&path).await?;
        client
            .request(&Request::Sessions {
                domain: args.domain.clone(),
            })
            .await
            .map_err(cli_error)
    })?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&reply.sessions)?)?;
    } else if reply.sessions.is_empty() {
        writeln!(out, "no live sessions")?;
    } else {
        let rows: Vec<Vec<String>> = reply.sessions.iter().map(session_row).collect();
        out.write_all(
            table::render(
                &[
                    "Id",
                    "Domain",
                    "Client",
                    "Origin",
                    "Age",
                    "Idle",
                    "Msgs ↑/↓",
                    "Path",
                ],
                &rows,
            )
            .as_bytes(),
        )?;
    }
    Ok(())
}

fn session_row(s: &SessionInfo) -> Vec<String> {
    let idle = match s.timeout_secs {
        Some(t) => format!("{:.0} s / {t:.0} s", s.idle_secs),
        None => format!("{:.0} s / no limit", s.idle_secs),
    };
    vec![
        s.id.to_string(),
        s.domain.clone(),
        s.client.to_string(),
        s.origin.clone(),
        format!("{:.0} s", s.age_secs),
        idle,
        format!("{}/{}", s.to_origin.messages, s.to_client.messages),
        s.path.clone(),
    ]
}

pub fn close_session(
    args: &CloseSessionArgs,
    config_path: Option<&Path>,
    out: &mut dyn Write,
) -> Result<()> {
    let path = resolve_socket(&args.socket, config_path)?;
    let reply: ClosedReply = runtime()?.block_on(async {
        let mut client = connect(&path).await?;
        client
            .request(&Request::CloseSession {
                id: args.id,
                code: Some(args.code),
                reason: Some(args.reason.clone()),
            })
            .await
            .map_err(cli_error)
    })?;
    writeln!(
        out,
        "closing session #{} with {} \"{}\"",
        reply.closing, reply.code, reply.reason
    )?;
    Ok(())
}

/// `events [--follow]`: the relay's recent events, then with `--follow` the
/// new ones. A takeover (`serve --takeover`, an upgrade) ends the old
/// relay's stream; the new relay already answers at the same path, so the
/// follow carries on there, skipping the recent events it carried over
/// that were printed already. Notes go to `err`, so `--json` stays JSON.
pub fn events(
    args: &EventsArgs,
    config_path: Option<&Path>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let path = resolve_socket(&args.socket, config_path)?;
    runtime()?.block_on(async {
        let mut client = connect(&path).await?;
        let mut printed = Printed::default();
        loop {
            let reply: EventsReply = client
                .request(&Request::Events {
                    follow: args.follow,
                })
                .await
                .map_err(cli_error)?;
            for event in reply.events {
                if printed.first_time(&event) {
                    write_event(out, &event, args.json)?;
                }
            }
            if !args.follow {
                return Ok(());
            }
            loop {
                let next = tokio::select! {
                    next = client.next_event() => next.map_err(cli_error)?,
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                };
                let Some(event) = next else { break };
                write_event(out, &event, args.json)?;
                printed.remember(event);
            }
            let before = client.pid_to_show();
            match ControlClient::connect(&path).await {
                Ok(next) if next.pid_to_show() != before => {
                    writeln!(
                        err,
                        "note: relay pid {before} handed over to pid {} at {}; following it",
                        next.pid_to_show(),
                        path.display()
                    )?;
                    client = next;
                }
                _ => {
                    writeln!(
                        err,
                        "note: the relay (pid {before}) stopped; no relay answers at {}",
                        path.display()
                    )?;
                    return Ok(());
                }
            }
        }
    })
}

/// The events printed lately, as many as a relay keeps: a relay that took
/// over sends its (carried-over) ring again, and those are not new.
#[derive(Default)]
struct Printed(std::collections::VecDeque<crate::relay::RelayEvent>);

impl Printed {
    /// Whether `event` of a backlog is not among those printed lately;
    /// remembers it.
    fn first_time(&mut self, event: &crate::relay::RelayEvent) -> bool {
        if self.0.contains(event) {
            return false;
        }
        self.remember(event.clone());
        true
    }

    /// A followed event: new by definition, kept for the next backlog.
    fn remember(&mut self, event: crate::relay::RelayEvent) {
        if self.0.len() == crate::control::state::EVENT_RING {
            self.0.pop_front();
        }
        self.0.push_back(event);
    }
}

fn write_event(out: &mut dyn Write, event: &crate::relay::RelayEvent, json: bool) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(event)?)?;
    } else {
        writeln!(
            out,
            "{} {event}",
            humantime::format_rfc3339_millis(event.at())
        )?;
    }
    out.flush()?;
    Ok(())
}

pub fn stop(args: &StopArgs, config_path: Option<&Path>, out: &mut dyn Write) -> Result<()> {
    let path = resolve_socket(&args.socket, config_path)?;
    let (pid, listen): (u32, std::net::SocketAddr) = runtime()?.block_on(async {
        let mut client = connect(&path).await?;
        let (pid, listen) = (client.pid_to_show(), client.hello.listen);
        let _: StoppingReply = client.request(&Request::Stop).await.map_err(cli_error)?;
        Ok::<_, anyhow::Error>((pid, listen))
    })?;
    writeln!(out, "relay {listen} (pid {pid}) is stopping, as on SIGTERM")?;
    Ok(())
}

/// `attach`: the console on the relay answering on the socket.
pub fn attach(
    args: &AttachArgs,
    config_path: Option<&Path>,
    console: &crate::tui::Options,
) -> Result<()> {
    let path = resolve_socket(&args.socket, config_path)?;
    crate::tui::attach::run(console, &path, None).map_err(|e| match e.downcast::<ClientError>() {
        Ok(client) => cli_error(client),
        Err(e) => e,
    })
}

/// `recommend DOMAIN`: the running relay's advice for a domain (README, "Advice from evidence").
pub fn recommend(
    args: &RecommendArgs,
    config_path: Option<&Path>,
    out: &mut dyn Write,
) -> Result<()> {
    let path = resolve_socket(&args.socket, config_path)?;
    let reply: RecommendReply = runtime()?.block_on(async {
        let mut client = connect(&path).await?;
        client
            .request(&Request::Recommend {
                domain: args.domain.clone(),
            })
            .await
            .map_err(cli_error)
    })?;
    let r = reply.recommendation;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
        return Ok(());
    }
    let limit = |secs: Option<u64>| secs.map_or("no limit".to_string(), |s| format!("{s} s"));
    let recommended = match r.recommended_timeout_secs {
        0 => "0 s (no idle limit)".to_string(),
        n => format!("{n} s"),
    };
    writeln!(out, "{}: recommended timeout {recommended}", r.domain)?;
    writeln!(out, "  {}", r.reason)?;
    writeln!(
        out,
        "  in force {}; last 10 min: {} sessions, {} cut while alive, heartbeat {}",
        limit(r.current_limit_secs),
        r.sessions_seen,
        r.cut_while_alive,
        r.heartbeat_secs
            .map_or("none seen".to_string(), |h| format!("~{h} s")),
    )?;
    if !r.would_cut_now.is_empty() {
        let ids: Vec<String> = r.would_cut_now.iter().map(|id| format!("#{id}")).collect();
        writeln!(out, "  would cut now: {}", ids.join(", "))?;
    }
    Ok(())
}
