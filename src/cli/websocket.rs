//! `websocket DOMAIN [--on|--off] [--timeout SECS]`: the "WebSocket
//! timeout" card of the Advanced Configuration tab, from the shell.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;

use super::cloud::CloudTarget;
use super::open_config;
use crate::config::{
    Config, ConfigFile, Domain, Edit, EffectiveTimeout, LIMITATION_TEXT, RECOMMENDATION_TEXT,
    Switch, TimeoutSource, WebSocketSettings, effective_timeout, rules,
};
use crate::control::protocol::ConfigReply;
use crate::control::{ClientError, ControlClient, ErrorCode, Request};

#[derive(Debug, Args)]
pub struct WebsocketArgs {
    /// The domain's name (case-insensitive)
    pub domain: String,

    /// Turn the WebSocket switch on (full-site acceleration domains only)
    #[arg(long, conflicts_with = "off")]
    pub on: bool,

    /// Turn the switch off: WebSockets still pass but are cut after 15 s idle
    #[arg(long)]
    pub off: bool,

    /// Idle timeout in seconds, 0-300 (0 = no idle limit; 60 is recommended
    /// when the application sends no heartbeat)
    // i64, not u16: an out-of-range value must get the config rule's own
    // message rather than a generic parse error from clap.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub timeout: Option<i64>,

    /// Show or change the domain on the Tencent Cloud account, through the
    /// CDN API, instead of in the file
    #[arg(long)]
    pub cloud: bool,

    #[command(flatten)]
    pub target: CloudTarget,
}

impl WebsocketArgs {
    fn switch(&self) -> Option<Switch> {
        match (self.on, self.off) {
            (true, _) => Some(Switch::On),
            (_, true) => Some(Switch::Off),
            _ => None,
        }
    }
}

pub fn run(
    args: &WebsocketArgs,
    config_path: Option<&Path>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let switch = args.switch();
    if args.cloud {
        return super::cloud::websocket(&args.target, &args.domain, switch, args.timeout, out);
    }
    args.target.refuse_without_cloud()?;
    let mut file = open_config(config_path, err)?;
    let text = if switch.is_none() && args.timeout.is_none() {
        show(rules::existing_domain(file.config(), &args.domain)?)
    } else {
        set(&mut file, &args.domain, switch, args.timeout, err)?
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

fn show(domain: &Domain) -> String {
    let ws = &domain.websocket;
    let t = effective_timeout(domain);
    let mut text = format!(
        "{}  ({}, {})\n",
        domain.name,
        domain.acceleration.label(),
        domain.status.as_str()
    );
    setting_lines(&mut text, ws, t);
    field(
        &mut text,
        "Pings reset idle",
        if ws.ping_resets_idle { "yes" } else { "no" },
    );
    text.push('\n');
    text.push_str(advice(domain));
    text.push('\n');
    text
}

/// The card's lines for the switch, the timeout and what they mean, for
/// the file's domains and the account's alike.
pub(super) fn setting_lines(text: &mut String, ws: &WebSocketSettings, t: EffectiveTimeout) {
    field(text, "Switch", ws.switch.as_str());
    field(text, "Timeout", &format!("{} s", ws.timeout));
    field(
        text,
        "Effective timeout",
        &format!("{t} — {}", t.explanation()),
    );
}

fn field(text: &mut String, label: &str, value: &str) {
    let _ = writeln!(text, "  {label:<18} {value}");
}

/// The card's footnote: the limitation where the switch cannot be used,
/// the recommendation where it can.
fn advice(domain: &Domain) -> &'static str {
    if domain.can_configure_websocket() {
        RECOMMENDATION_TEXT
    } else {
        LIMITATION_TEXT
    }
}

fn set(
    file: &mut ConfigFile,
    name: &str,
    switch: Option<Switch>,
    timeout: Option<i64>,
    err: &mut dyn Write,
) -> Result<String> {
    let before = rules::existing_domain(file.config(), name)?.clone();
    let not_changed = || format!("{}: WebSocket setting not changed", before.name);
    // The same rule as the file's `timeout` key, so the message is the same.
    let timeout = timeout
        .map(rules::timeout)
        .transpose()
        .with_context(not_changed)?;
    let wanted = WebSocketSettings {
        switch: switch.unwrap_or(before.websocket.switch),
        timeout: timeout.unwrap_or(before.websocket.timeout),
        ..before.websocket
    };
    if wanted == before.websocket {
        return Ok(unchanged_text(
            &before.name,
            &wanted,
            effective_timeout(&before),
            &format!("{} not written", file.path().display()),
        ));
    }
    let edit = Edit::SetWebSocket {
        domain: before.name.to_string(),
        switch,
        timeout,
    };
    let mut relay_could_not = None;
    if let Some(relay) = running_relay(file) {
        let pid = relay.pid;
        match relay.edit(&edit) {
            Ok(saved) => {
                let after = rules::existing_domain(&saved, &before.name)?;
                let by = format!(
                    "saved to {} by the running relay, pid {pid}: in force now",
                    file.path().display()
                );
                return Ok(changed(&before, after, &by));
            }
            // It cannot write the file (a read-only mount under systemd's
            // ProtectSystem): save it here; it takes it as a file change.
            Err(EditError::CannotSave(why)) => relay_could_not = Some((pid, why)),
            Err(EditError::Other(e)) => return Err(e).with_context(not_changed),
        }
    }
    file.apply(&edit).with_context(not_changed)?;
    let after = rules::existing_domain(file.config(), &before.name)?;
    if let Some((pid, why)) = relay_could_not {
        writeln!(
            err,
            "note: the running relay (pid {pid}) could not save the file ({why}); \
             saved here instead, and the relay takes it as a file change"
        )?;
    }
    let by = format!("saved to {}", file.path().display());
    Ok(changed(&before, after, &by))
}

/// Why the running relay did not take an edit.
enum EditError {
    /// It could not write the file; the edit may still be saved here.
    CannotSave(String),
    Other(anyhow::Error),
}

/// A relay running on this very file, reached over its control socket.
struct RunningRelay {
    runtime: tokio::runtime::Runtime,
    client: ControlClient,
    pid: u32,
    version: u64,
}

/// The relay that runs `file`, if one answers on the control socket the
/// file implies and holds the same text: the edit then goes to it, which
/// saves the file (the one owner of it, DESIGN §7) and puts the change in
/// force at once. Otherwise the file is edited here, and a relay on it
/// takes the change as a file change.
fn running_relay(file: &ConfigFile) -> Option<RunningRelay> {
    let socket = crate::control::implied_socket(file.config())?;
    let runtime = super::control::runtime().ok()?;
    let (client, version) = runtime.block_on(async {
        let mut client = ControlClient::probe(&socket).await?;
        let held: ConfigReply = client.request(&Request::ConfigGet).await.ok()?;
        // Another file on the same address, or a change it has not taken yet.
        (held.text == file.text()).then_some((client, held.version))
    })?;
    Some(RunningRelay {
        pid: client.pid_to_show(),
        runtime,
        client,
        version,
    })
}

impl RunningRelay {
    /// Has the relay save and apply `edit`; the config it saved.
    fn edit(mut self, edit: &Edit) -> Result<Config, EditError> {
        let request = Request::ConfigEdit {
            version: self.version,
            edit: edit.clone(),
        };
        let saved: ConfigReply = match self.runtime.block_on(self.client.request(&request)) {
            Ok(saved) => saved,
            Err(ClientError::Refused(r)) if r.error == ErrorCode::Failed => {
                return Err(EditError::CannotSave(r.message));
            }
            Err(e) => return Err(EditError::Other(super::control::cli_error(e))),
        };
        Config::parse(&saved.text, &saved.path).map_err(|e| EditError::Other(e.into()))
    }
}

/// `cloud.tencent.com: WebSocket on, timeout 100 s → 30 s (saved to PATH)`,
/// then what that means for idle sessions.
fn changed(before: &Domain, after: &Domain, destination: &str) -> String {
    let mut text = changed_text(
        &after.name,
        &before.websocket,
        &after.websocket,
        effective_timeout(after),
        destination,
    );
    if !after.can_configure_websocket() {
        let _ = writeln!(text, "{LIMITATION_TEXT}");
    }
    text
}

/// `NAME: WebSocket off → on, timeout 60 s → 100 s (DESTINATION)` and the
/// effective idle timeout line: the file's and the account's wording.
pub(super) fn changed_text(
    name: &str,
    old: &WebSocketSettings,
    new: &WebSocketSettings,
    t: EffectiveTimeout,
    destination: &str,
) -> String {
    let mut text = format!(
        "{name}: WebSocket {}, timeout {} ({destination})\n",
        arrow(old.switch.as_str(), new.switch.as_str()),
        arrow(&format!("{} s", old.timeout), &format!("{} s", new.timeout)),
    );
    let _ = writeln!(text, "effective idle timeout: {t} — {}", t.explanation());
    text
}

/// `NAME: WebSocket off, timeout 60 s (unchanged; WHY)`, and when the
/// timeout is not what is in force (switch off, not full-site) the line
/// that says so: a script that set 60 s must not read it as in force.
pub(super) fn unchanged_text(
    name: &str,
    ws: &WebSocketSettings,
    t: EffectiveTimeout,
    why: &str,
) -> String {
    let mut text = format!(
        "{name}: WebSocket {}, timeout {} s (unchanged; {why})\n",
        ws.switch.as_str(),
        ws.timeout
    );
    if matches!(
        t.source,
        TimeoutSource::SwitchOff | TimeoutSource::NotFullSite
    ) {
        let _ = writeln!(text, "effective idle timeout: {t} — {}", t.explanation());
    }
    text
}

fn arrow(old: &str, new: &str) -> String {
    if old == new {
        new.to_string()
    } else {
        format!("{old} → {new}")
    }
}
