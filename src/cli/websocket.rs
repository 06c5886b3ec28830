//! `websocket DOMAIN [--on|--off] [--timeout SECS]`: the "WebSocket
//! timeout" card of the Advanced Configuration tab, from the shell.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;

use super::open_config;
use crate::config::{
    ConfigFile, Domain, Edit, LIMITATION_TEXT, RECOMMENDATION_TEXT, Switch, WebSocketSettings,
    effective_timeout, rules,
};

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
    let mut file = open_config(config_path, err)?;
    let switch = args.switch();
    let text = if switch.is_none() && args.timeout.is_none() {
        show(rules::existing_domain(file.config(), &args.domain)?)
    } else {
        set(&mut file, &args.domain, switch, args.timeout)?
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
    let mut field = |label: &str, value: String| {
        let _ = writeln!(text, "  {label:<18} {value}");
    };
    field("Switch", ws.switch.as_str().to_string());
    field("Timeout", format!("{} s", ws.timeout));
    field("Effective timeout", format!("{t} — {}", t.explanation()));
    field(
        "Pings reset idle",
        if ws.ping_resets_idle { "yes" } else { "no" }.to_string(),
    );
    text.push('\n');
    text.push_str(advice(domain));
    text.push('\n');
    text
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
        return Ok(format!(
            "{}: WebSocket {}, timeout {} s (unchanged; {} not written)\n",
            before.name,
            wanted.switch.as_str(),
            wanted.timeout,
            file.path().display()
        ));
    }
    let edit = Edit::SetWebSocket {
        domain: before.name.clone(),
        switch,
        timeout,
    };
    file.apply(&edit).with_context(not_changed)?;
    let after = rules::existing_domain(file.config(), &before.name)?;
    Ok(changed(&before, after, file.path()))
}

/// `cloud.tencent.com: WebSocket on, timeout 100 s → 30 s (saved to PATH)`,
/// then what that means for idle sessions.
fn changed(before: &Domain, after: &Domain, path: &Path) -> String {
    let (old, new) = (before.websocket, after.websocket);
    let t = effective_timeout(after);
    let mut text = format!(
        "{}: WebSocket {}, timeout {} (saved to {})\n",
        after.name,
        arrow(old.switch.as_str(), new.switch.as_str()),
        arrow(&format!("{} s", old.timeout), &format!("{} s", new.timeout)),
        path.display()
    );
    let _ = writeln!(text, "effective idle timeout: {t} — {}", t.explanation());
    if !after.can_configure_websocket() {
        let _ = writeln!(text, "{LIMITATION_TEXT}");
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
