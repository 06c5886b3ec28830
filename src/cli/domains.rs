//! `domains [--json]`: the console's domain list.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::cloud::CloudTarget;
use super::{open_config, table};
use crate::config::{Config, Domain, effective_timeout};

#[derive(Debug, Args)]
pub struct DomainsArgs {
    /// Print JSON for scripts: every setting, the CNAME, and the effective
    /// idle timeout in seconds (null = no idle limit)
    #[arg(long)]
    pub json: bool,

    /// The Tencent Cloud account's domains, through the CDN API, instead of
    /// the file's (keys: TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY, else
    /// ~/.tccli/PROFILE.credential)
    #[arg(long)]
    pub cloud: bool,

    #[command(flatten)]
    pub target: CloudTarget,
}

pub fn run(
    args: &DomainsArgs,
    config_path: Option<&Path>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    if args.cloud {
        return super::cloud::domains(&args.target, args.json, out);
    }
    args.target.refuse_without_cloud()?;
    let file = open_config(config_path, err)?;
    let text = if args.json {
        json(file.path(), file.config())?
    } else {
        text_table(file.config())
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

pub(super) const HEADERS: [&str; 7] = [
    "Domain",
    "Status",
    "CNAME",
    "Acceleration",
    "Area",
    "Origin",
    "WebSocket",
];

fn text_table(config: &Config) -> String {
    if config.domains.is_empty() {
        return "no domains configured\n".to_string();
    }
    let rows: Vec<Vec<String>> = config.domains.iter().map(row).collect();
    table::render(&HEADERS, &rows)
}

fn row(d: &Domain) -> Vec<String> {
    let origins: Vec<String> = d.origins.iter().map(ToString::to_string).collect();
    vec![
        d.name.to_string(),
        d.status.as_str().to_string(),
        d.cname(),
        d.acceleration.as_str().to_string(),
        d.area.as_str().to_string(),
        origins.join(", "),
        effective_timeout(d).column_label(),
    ]
}

#[derive(Serialize)]
struct DomainsJson<'a> {
    config: String,
    domains: Vec<DomainJson<'a>>,
}

/// The model's own fields plus what the console derives from them, so a
/// script never has to reimplement the timeout rule.
#[derive(Serialize)]
struct DomainJson<'a> {
    #[serde(flatten)]
    domain: &'a Domain,
    cname: String,
    websocket_label: String,
    effective_timeout_secs: Option<u64>,
}

fn json(path: &Path, config: &Config) -> Result<String> {
    let doc = DomainsJson {
        config: path.display().to_string(),
        domains: config
            .domains
            .iter()
            .map(|domain| {
                let t = effective_timeout(domain);
                DomainJson {
                    domain,
                    cname: domain.cname(),
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
