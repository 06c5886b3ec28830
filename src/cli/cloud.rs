//! `domains --cloud` and `websocket DOMAIN --cloud`: the same commands on
//! a Tencent Cloud account's domains, through the CDN API (README, "Tencent Cloud").
//! Same table, same JSON names, same rules and wording as for the file.

use std::fmt::Write as _;
use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use super::{domains, table, websocket};
use crate::cloud::{self, Client, CloudDomain, Endpoint, PROPAGATION_NOTE};
use crate::config::{RECOMMENDATION_TEXT, RuleViolation, Switch, rules};

/// Where the API is and whose keys to use: `--endpoint`, `--profile`
/// (with `--cloud` on `domains` and `websocket`; on `cloud` itself).
#[derive(Debug, Clone, Default, Args)]
pub struct CloudTarget {
    /// With --cloud: the API endpoint [default: https://cdn.tencentcloudapi.com;
    /// plain http:// only to a loopback address]
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// With --cloud: the tccli profile whose ~/.tccli/PROFILE.credential is
    /// read when TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY are not set
    /// [default: default]
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
}

impl CloudTarget {
    /// The endpoint is checked first, so a refused one never gets as far
    /// as reading keys or opening a connection.
    pub fn client(&self) -> Result<Client> {
        let endpoint =
            Endpoint::parse(self.endpoint.as_deref().unwrap_or(cloud::DEFAULT_ENDPOINT))?;
        let credentials = cloud::credentials::load(self.profile.as_deref())?;
        Ok(Client::new(endpoint, credentials))
    }

    /// `--endpoint`/`--profile` without `--cloud` would be silently ignored.
    pub fn refuse_without_cloud(&self) -> Result<()> {
        if self.endpoint.is_some() || self.profile.is_some() {
            return Err(super::BadInput(
                "--endpoint and --profile only apply with --cloud (add --cloud to work on the \
                 Tencent Cloud account)"
                    .into(),
            )
            .into());
        }
        Ok(())
    }
}

/// `cloud`: where the account is.
#[derive(Debug, Args)]
pub struct CloudArgs {
    #[command(flatten)]
    pub target: CloudTarget,
}

/// `cloud`: the console on the account. The endpoint and the keys are
/// checked before the terminal is taken, so their errors read as usual.
pub fn console(args: &CloudArgs, options: &crate::tui::Options, err: &mut dyn Write) -> Result<()> {
    use std::io::IsTerminal;
    let client = args.target.client()?;
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        writeln!(
            err,
            "the console needs a terminal; for scripts use `domains --cloud` and `websocket DOMAIN --cloud`"
        )?;
        return Err(super::BadInput("ecdn-console cloud needs a terminal".into()).into());
    }
    crate::tui::cloud::run(options, client)
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `domains --cloud [--json]`.
pub fn domains(target: &CloudTarget, json: bool, out: &mut dyn Write) -> Result<()> {
    let client = target.client()?;
    let list = runtime()?.block_on(client.describe_domains(|_| {}))?;
    let text = if json {
        domains_json(&client, &list)?
    } else if list.is_empty() {
        "no domains on this Tencent Cloud account\n".to_string()
    } else {
        let rows: Vec<Vec<String>> = list.iter().map(row).collect();
        table::render(&domains::HEADERS, &rows)
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

fn row(d: &CloudDomain) -> Vec<String> {
    vec![
        d.name.clone(),
        d.status.clone(),
        d.cname.clone(),
        d.acceleration_column(),
        d.area.clone(),
        d.origins.join(", "),
        d.effective_timeout().column_label(),
    ]
}

#[derive(Serialize)]
struct CloudDomainsJson<'a> {
    endpoint: &'a str,
    domains: Vec<CloudDomainJson<'a>>,
}

/// The API's fields plus what the console derives, under the file's
/// names where they mean the same (`websocket_label`,
/// `effective_timeout_secs`).
#[derive(Serialize)]
struct CloudDomainJson<'a> {
    #[serde(flatten)]
    domain: &'a CloudDomain,
    websocket_label: String,
    effective_timeout_secs: Option<u64>,
}

fn domains_json(client: &Client, list: &[CloudDomain]) -> Result<String> {
    let doc = CloudDomainsJson {
        endpoint: &client.endpoint().shown,
        domains: list
            .iter()
            .map(|domain| {
                let t = domain.effective_timeout();
                CloudDomainJson {
                    domain,
                    websocket_label: t.column_label(),
                    effective_timeout_secs: t.secs(),
                }
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&doc)?;
    text.push('\n');
    Ok(text)
}

/// `websocket DOMAIN --cloud [--on|--off] [--timeout SECS]`.
pub fn websocket(
    target: &CloudTarget,
    name: &str,
    switch: Option<Switch>,
    timeout: Option<i64>,
    out: &mut dyn Write,
) -> Result<()> {
    // The file's rule, checked before anything is read or sent.
    let timeout = timeout
        .map(rules::timeout)
        .transpose()
        .with_context(|| format!("{name}: WebSocket setting not changed"))?;
    let client = target.client()?;
    let runtime = runtime()?;
    let before = runtime
        .block_on(client.describe_domain(name))?
        .ok_or_else(|| unknown_domain(name))?;
    let text = if switch.is_none() && timeout.is_none() {
        show(&before)
    } else {
        runtime.block_on(set(&client, &before, switch, timeout))?
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

fn unknown_domain(name: &str) -> RuleViolation {
    RuleViolation::new(
        format!("no domain named \"{name}\" on the Tencent Cloud account"),
        "list the account's domains with `ecdn-console domains --cloud`",
    )
}

fn show(domain: &CloudDomain) -> String {
    let ws = domain.websocket.settings();
    let mut text = format!(
        "{}  ({}, {})\n",
        domain.name,
        domain.acceleration_label(),
        domain.status
    );
    websocket::setting_lines(&mut text, &ws, domain.effective_timeout());
    text.push('\n');
    text.push_str(RECOMMENDATION_TEXT);
    text.push('\n');
    text
}

async fn set(
    client: &Client,
    before: &CloudDomain,
    switch: Option<Switch>,
    timeout: Option<u16>,
) -> Result<String> {
    let old = before.websocket.settings();
    let mut new = old;
    new.switch = switch.unwrap_or(old.switch);
    // The kept timeout is the API's; it passes the same rule before it is
    // sent back (an update always carries both fields).
    new.timeout = match timeout {
        Some(t) => t,
        None => rules::timeout(old.timeout.into()).with_context(|| {
            format!(
                "{}: the account's current timeout is outside the console's range; give --timeout",
                before.name
            )
        })?,
    };
    if new == old && before.websocket.reported {
        return Ok(websocket::unchanged_text(
            &before.name,
            &new,
            before.effective_timeout(),
            "nothing sent",
        ));
    }
    let request_id = client
        .update_websocket(&before.name, new.switch, new.timeout)
        .await?;
    let after = CloudDomain {
        websocket: cloud::CloudWebSocket {
            switch: new.switch,
            timeout: new.timeout,
            reported: true,
        },
        ..before.clone()
    };
    let destination = format!("sent to Tencent Cloud, RequestId {request_id}");
    let mut text = websocket::changed_text(
        &before.name,
        &old,
        &new,
        after.effective_timeout(),
        &destination,
    );
    let _ = writeln!(text, "{PROPAGATION_NOTE}");
    let _ = writeln!(
        text,
        "measure it on the edge: ecdn-console probe wss://{}/ --silent",
        before.name
    );
    Ok(text)
}
