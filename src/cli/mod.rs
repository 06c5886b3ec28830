//! The command line: argument definitions (clap derive) and the commands
//! that work without the relay. `main.rs` only parses, calls [`run`] and
//! turns an error into an exit code with [`exit_code`].
//!
//! Adding a command: a variant of [`Command`] with its `Args` struct in its
//! own file, and one arm in [`run`].

mod cloud;
mod config_cmd;
mod control;
mod demo;
mod domains;
mod probe;
mod serve;
mod table;
mod websocket;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

use crate::config::{ConfigError, ConfigFile, DEFAULT_CONFIG, RuleViolation, default_config_path};

pub use cloud::{CloudArgs, CloudTarget};
pub use config_cmd::ConfigCommand;
pub use control::{
    AttachArgs, CloseSessionArgs, EventsArgs, NoRelay, RecommendArgs, SessionsArgs, StopArgs,
};
pub use demo::DemoArgs;
pub use domains::DomainsArgs;
pub use probe::ProbeArgs;
pub use serve::{OriginArgs, ServeArgs};
pub use websocket::WebsocketArgs;

/// Exit code for bad input: an invalid config, argument or domain name.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code for a runtime failure: I/O, a conflicting edit on disk.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of the control commands when no relay answers on the socket.
pub const EXIT_NO_RELAY: u8 = 3;

/// Terminal console for CDN WebSocket idle-timeout settings, with a live
/// in-process WebSocket relay.
#[derive(Debug, Parser)]
#[command(name = "ecdn-console", version)]
pub struct Cli {
    /// Configuration file [default: ./ecdn-console.toml if present, else
    /// the user's config directory; created from the built-in default if missing]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Console: no colours (also when NO_COLOR is set); selection is shown in reverse video
    #[arg(long)]
    pub no_color: bool,

    /// Console: enable the mouse (click the menu, scroll lists); off by
    /// default because capturing it stops text selection over SSH
    #[arg(long)]
    pub mouse: bool,

    /// Without a command: the console (TUI) with the relay running in-process.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The console on a demo: synthetic clients, an echo origin, timeouts on screen
    ///
    /// Runs on a temporary copy of the built-in demo config (no file of
    /// yours is read or written), with embedded origins and synthetic
    /// clients on loopback whose heartbeats get them cut, or not, within
    /// the first minute. Change a timeout and watch who gets cut.
    Demo(DemoArgs),
    /// Work with configuration files
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List the domains, as the console's domain list shows them
    Domains(DomainsArgs),
    /// Show or change a domain's WebSocket switch and idle timeout
    ///
    /// Without --on, --off or --timeout it shows the setting and what it
    /// means for idle sessions. With them it changes the setting, checked by
    /// the same rules as the file, and saves the file keeping its comments.
    Websocket(WebsocketArgs),
    /// Run the relay without the console: one line per event on stdout
    ///
    /// Reloads the config on SIGHUP and when the file changes (a bad file is
    /// refused and the old config stays in force). SIGTERM or Ctrl-C closes
    /// every session with 1001 "relay shutting down" and exits 0.
    Serve(ServeArgs),
    /// Run the embedded echo origin on its own, for demos and tests
    ///
    /// Echoes text and binary messages and answers pings. The text message
    /// `/headers` returns the upgrade request's headers as the origin saw
    /// them; `/close CODE [REASON]` makes the origin close the session.
    Origin(OriginArgs),
    /// Troubleshoot any WebSocket endpoint: handshake, round trips, and how it ends
    ///
    /// Prints the handshake's result, each heartbeat's round trip and what the
    /// server sends; at the end who closed and how (close code and reason, or a
    /// drop without a close frame, 1006), the idle time in each direction at
    /// that moment, the duration, and a diagnosis. With --silent (the default
    /// without --heartbeat) it measures how long the path lets an idle
    /// connection live. Ctrl-C closes with 1000.
    #[command(after_help = crate::probe::exit_codes_help())]
    Probe(ProbeArgs),
    /// The console on a Tencent Cloud account's domains, through the CDN API
    ///
    /// Domain Management lists the account's domains; Manage → Advanced
    /// Configuration sets a domain's WebSocket switch and timeout with
    /// UpdateDomainConfig, and p on a domain's page measures the edge's idle
    /// timeout with a silent probe of wss://DOMAIN/. Keys:
    /// TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY (and
    /// TENCENTCLOUD_SESSION_TOKEN), else ~/.tccli/PROFILE.credential.
    Cloud(CloudArgs),
    /// List a running relay's live sessions (over its control socket)
    ///
    /// Exit status 3 when no relay answers on the socket.
    Sessions(SessionsArgs),
    /// Close one of a running relay's sessions with a close frame to both sides
    ///
    /// Exit status 2 for an unknown id or a code a relay may not send, 3
    /// when no relay answers.
    CloseSession(CloseSessionArgs),
    /// Print a running relay's recent events, and with --follow the new ones
    ///
    /// The relay keeps the last 1000 events. Exit status 3 when no relay answers.
    Events(EventsArgs),
    /// The console on a running relay (`serve`, or another console's)
    ///
    /// Every screen, on the relay's live sessions and events; edits are
    /// saved and applied by the relay. Quitting detaches: the relay and its
    /// sessions keep running. Exit status 3 when no relay answers.
    Attach(AttachArgs),
    /// Stop a running relay, as SIGTERM does
    ///
    /// Exit status 3 when no relay answers.
    Stop(StopArgs),
    /// A running relay's recommended timeout for a domain, from the last 10
    /// minutes of its sessions (clients cut while alive, heartbeats, gaps)
    ///
    /// Exit status 2 for a domain the relay does not have, 3 when no relay
    /// answers.
    Recommend(RecommendArgs),
}

/// A command that has already reported its outcome and only needs the
/// process to exit with `code` (probe's outcomes); nothing more is printed.
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub struct Exit(pub u8);

/// Whether `error` is an [`Exit`]: the command said everything already.
pub fn is_silent(error: &anyhow::Error) -> bool {
    error.is::<Exit>()
}

/// stdout, remembering whether its reader went away (`events | head`): a
/// command that stops there has done what was asked, and says nothing —
/// not `error: Broken pipe`. Only stdout's own broken pipe counts: one on
/// the control socket is a relay that went away, and is an error.
pub struct Stdout<W> {
    inner: W,
    reader_gone: bool,
}

impl<W: Write> Stdout<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            reader_gone: false,
        }
    }

    pub fn reader_gone(&self) -> bool {
        self.reader_gone
    }

    fn note<T>(&mut self, result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &result
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            self.reader_gone = true;
        }
        result
    }
}

impl<W: Write> Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let result = self.inner.write(buf);
        self.note(result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = self.inner.flush();
        self.note(result)
    }
}

/// Whether `error` is a broken pipe (with [`Stdout::reader_gone`]: the
/// command stopped because stdout's reader left).
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Bad input the CLI itself detects (as opposed to the config's rules).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Runs one command, writing its results to `out` and notes to `err`.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let config_path = cli.config;
    let console = crate::tui::Options {
        config_path: config_path.clone(),
        no_color: cli.no_color,
        mouse: cli.mouse,
        banner: None,
        sessions_in_process: false,
    };
    match cli.command {
        Some(Command::Demo(args)) => demo::run(&args, &console, config_path.as_deref(), err),
        Some(Command::Config(cmd)) => config_cmd::run(cmd, config_path.as_deref(), out, err),
        Some(Command::Domains(args)) => domains::run(&args, config_path.as_deref(), out, err),
        Some(Command::Websocket(args)) => websocket::run(&args, config_path.as_deref(), out, err),
        Some(Command::Serve(args)) => serve::run_serve(&args, config_path.as_deref(), out, err),
        Some(Command::Origin(args)) => serve::run_origin(&args, out),
        Some(Command::Probe(args)) => probe::run(&args, out),
        Some(Command::Cloud(args)) => cloud::console(&args, &console, err),
        Some(Command::Sessions(args)) => control::sessions(&args, config_path.as_deref(), out),
        Some(Command::CloseSession(args)) => {
            control::close_session(&args, config_path.as_deref(), out)
        }
        Some(Command::Events(args)) => control::events(&args, config_path.as_deref(), out, err),
        Some(Command::Attach(args)) => control::attach(&args, config_path.as_deref(), &console),
        Some(Command::Stop(args)) => control::stop(&args, config_path.as_deref(), out),
        Some(Command::Recommend(args)) => control::recommend(&args, config_path.as_deref(), out),
        // Scripts and pipes get the help, not a console they cannot see.
        None if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) => {
            write!(err, "{}", Cli::command().render_help())?;
            Err(BadInput(
                "without a command ecdn-console opens the console, which needs a terminal; \
                 run it in one, or pick one of the commands above"
                    .into(),
            )
            .into())
        }
        None => crate::tui::run(&console),
    }
}

/// 2 when the operator's input is at fault (they can fix it and retry),
/// 1 when the machine is (I/O, a conflicting edit); an [`Exit`]'s own code.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if let Some(Exit(code)) = error.downcast_ref::<Exit>() {
        return *code;
    }
    if error.chain().any(|e| e.is::<NoRelay>()) {
        return EXIT_NO_RELAY;
    }
    let bad_input = error.chain().any(|e| {
        e.downcast_ref::<ConfigError>()
            .is_some_and(ConfigError::is_bad_input)
            || e.is::<RuleViolation>()
            || e.is::<BadInput>()
            || e.is::<crate::cloud::EndpointError>()
            || e.is::<crate::cloud::CredentialsError>()
    });
    if bad_input {
        EXIT_BAD_INPUT
    } else {
        EXIT_FAILURE
    }
}

/// The whole chain of an error on one line: context first, then the cause
/// with its fix. A cause whose text its parent already quotes (`cannot read
/// F: No such file` over the `io::Error` itself) is not repeated.
pub fn error_message(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(part.trim_end()) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text.trim_end().to_string()
}

/// The file every command works on: `--config`, else the default location.
/// A missing file is created from the built-in default, and the operator is
/// told, so a config never appears unannounced.
fn open_config(config_path: Option<&Path>, err: &mut dyn Write) -> Result<ConfigFile> {
    let path = config_path.map_or_else(default_config_path, Path::to_path_buf);
    let (file, created) = ConfigFile::load_or_create(&path, DEFAULT_CONFIG)?;
    if created {
        writeln!(
            err,
            "note: {} did not exist; created it from the built-in default configuration",
            path.display()
        )?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rule_violations_and_invalid_files_are_bad_input() {
        let rule = anyhow::Error::from(RuleViolation::new("bad", "fix"));
        assert_eq!(exit_code(&rule), EXIT_BAD_INPUT);
        let wrapped = rule.context("cannot change x");
        assert_eq!(exit_code(&wrapped), EXIT_BAD_INPUT);
        let conflict = anyhow::Error::from(ConfigError::Conflict { path: "x".into() });
        assert_eq!(exit_code(&conflict), EXIT_FAILURE);
    }

    #[test]
    fn error_messages_do_not_repeat_a_quoted_cause() {
        let read = ConfigError::Read {
            path: "c.toml".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        let error = anyhow::Error::from(read).context("loading");
        assert_eq!(error_message(&error), "loading: cannot read c.toml: gone");
    }
}
