//! Changes made from the UI or the CLI, applied to the TOML *document* so the
//! operator's comments, key order and formatting survive. Each edit checks
//! its values with the same rules as file loading before touching anything.

use serde::{Deserialize, Serialize};
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, TableLike, Value};

use super::error::RuleViolation;
use super::model::{Acceleration, Area, Config, OriginProtocol, Status, Switch};
use super::name::DomainName;
use super::rules;

/// A new `[[domain]]`, as the add-domain form fills it in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NewDomain {
    pub name: String,
    pub acceleration: Acceleration,
    pub area: Area,
    pub origins: Vec<String>,
    pub server_name: Option<String>,
    pub origin_protocol: OriginProtocol,
}

/// One change to the configuration. (Serialized for the control socket:
/// `{"edit": "set-websocket", "domain": ..., ...}`.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "edit",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum Edit {
    /// The "WebSocket timeout" card: switch and/or timeout.
    #[serde(rename = "set-websocket")]
    SetWebSocket {
        domain: String,
        switch: Option<Switch>,
        timeout: Option<u16>,
    },
    SetStatus {
        domain: String,
        status: Status,
    },
    /// The Origin Configuration tab.
    SetOrigins {
        domain: String,
        origins: Vec<String>,
        server_name: Option<String>,
        origin_protocol: OriginProtocol,
    },
    AddDomain(NewDomain),
    RemoveDomain {
        domain: String,
    },
}

impl Edit {
    /// Checks the edit against `config` (the current one) and applies it to
    /// `doc`. On error `doc` is untouched.
    pub fn apply(&self, config: &Config, doc: &mut DocumentMut) -> Result<(), RuleViolation> {
        match self {
            Edit::SetWebSocket {
                domain,
                switch,
                timeout,
            } => {
                let current = rules::existing_domain(config, domain)?;
                let new_switch = switch.unwrap_or(current.websocket.switch);
                rules::switch(&current.name, current.acceleration, new_switch)?;
                if let Some(t) = timeout {
                    rules::configurable(&current.name, current.acceleration)?;
                    rules::timeout((*t).into())?;
                }
                let table = domain_table(doc, &current.name)?;
                let ws = child_table(table, "websocket")?;
                if let Some(s) = switch {
                    set_value(ws, "switch", s.as_str().into());
                }
                if let Some(t) = timeout {
                    set_value(ws, "timeout", i64::from(*t).into());
                }
                Ok(())
            }
            Edit::SetStatus { domain, status } => {
                let current = rules::existing_domain(config, domain)?;
                set_value(
                    domain_table(doc, &current.name)?,
                    "status",
                    status.as_str().into(),
                );
                Ok(())
            }
            Edit::SetOrigins {
                domain,
                origins,
                server_name,
                origin_protocol,
            } => {
                let current = rules::existing_domain(config, domain)?;
                check_origins(origins, server_name.as_deref())?;
                let table = domain_table(doc, &current.name)?;
                set_value(table, "origins", string_array(origins));
                match server_name {
                    Some(s) => set_value(table, "server-name", s.as_str().into()),
                    None => {
                        table.remove("server-name");
                    }
                }
                set_value(table, "origin-protocol", origin_protocol.as_str().into());
                Ok(())
            }
            Edit::AddDomain(new) => add_domain(config, doc, new),
            Edit::RemoveDomain { domain } => {
                let current = rules::existing_domain(config, domain)?;
                let domains = domain_array(doc)?;
                let index = position(domains, &current.name)?;
                domains.remove(index);
                Ok(())
            }
        }
    }

    /// A short description for events and messages.
    pub fn describe(&self) -> String {
        match self {
            Edit::SetWebSocket {
                domain,
                switch,
                timeout,
            } => {
                let mut parts = Vec::new();
                if let Some(s) = switch {
                    parts.push(format!("switch {}", s.as_str()));
                }
                if let Some(t) = timeout {
                    parts.push(format!("timeout {t} s"));
                }
                format!("{domain}: WebSocket {}", parts.join(", "))
            }
            Edit::SetStatus { domain, status } => format!("{domain}: {}", status.as_str()),
            Edit::SetOrigins { domain, .. } => format!("{domain}: origin configuration"),
            Edit::AddDomain(new) => format!("{}: added", new.name),
            Edit::RemoveDomain { domain } => format!("{domain}: deleted"),
        }
    }
}

fn check_origins(origins: &[String], server_name: Option<&str>) -> Result<(), RuleViolation> {
    let parsed = origins
        .iter()
        .map(|o| rules::origin(o))
        .collect::<Result<Vec<_>, _>>()?;
    rules::origin_list(&parsed)?;
    if let Some(s) = server_name {
        rules::server_name(s)?;
    }
    Ok(())
}

fn add_domain(
    config: &Config,
    doc: &mut DocumentMut,
    new: &NewDomain,
) -> Result<(), RuleViolation> {
    rules::domain_name(&new.name)?;
    if config.domain(&new.name).is_some() {
        return Err(RuleViolation::new(
            format!("domain \"{}\" already exists", new.name),
            "choose another name, or manage the existing domain",
        ));
    }
    check_origins(&new.origins, new.server_name.as_deref())?;

    let mut table = Table::new();
    table.insert("name", Item::Value(new.name.as_str().into()));
    table.insert(
        "acceleration",
        Item::Value(new.acceleration.as_str().into()),
    );
    table.insert("status", Item::Value(Status::Online.as_str().into()));
    table.insert("area", Item::Value(new.area.as_str().into()));
    table.insert("origins", Item::Value(string_array(&new.origins)));
    if let Some(s) = &new.server_name {
        table.insert("server-name", Item::Value(s.as_str().into()));
    }
    table.insert(
        "origin-protocol",
        Item::Value(new.origin_protocol.as_str().into()),
    );
    let mut ws = InlineTable::new();
    ws.insert("switch", Switch::Off.as_str().into());
    ws.insert(
        "timeout",
        i64::from(super::timeout::RECOMMENDED_TIMEOUT_SECS).into(),
    );
    table.insert("websocket", Item::Value(Value::InlineTable(ws)));

    match doc.get_mut("domain") {
        None => {
            let mut array = toml_edit::ArrayOfTables::new();
            array.push(table);
            doc.insert("domain", Item::ArrayOfTables(array));
        }
        Some(item) => item
            .as_array_of_tables_mut()
            .ok_or_else(not_array_of_tables)?
            .push(table),
    }
    Ok(())
}

fn not_array_of_tables() -> RuleViolation {
    RuleViolation::new(
        "`domain` is not written as [[domain]] tables",
        "write each domain as a [[domain]] table",
    )
}

fn domain_array(doc: &mut DocumentMut) -> Result<&mut toml_edit::ArrayOfTables, RuleViolation> {
    doc.get_mut("domain")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(not_array_of_tables)
}

fn position(domains: &toml_edit::ArrayOfTables, name: &str) -> Result<usize, RuleViolation> {
    let wanted = DomainName::from(name);
    domains
        .iter()
        .position(|t| {
            t.get("name")
                .and_then(Item::as_str)
                .is_some_and(|n| wanted == n)
        })
        .ok_or_else(|| RuleViolation::new(format!("no domain named \"{name}\""), ""))
}

fn domain_table<'d>(doc: &'d mut DocumentMut, name: &str) -> Result<&'d mut Table, RuleViolation> {
    let domains = domain_array(doc)?;
    let index = position(domains, name)?;
    domains
        .get_mut(index)
        .ok_or_else(|| RuleViolation::new(format!("no domain named \"{name}\""), ""))
}

/// The `websocket` sub-table of a domain, however it is written (inline
/// table, `[domain.websocket]`, dotted keys); created inline when missing.
fn child_table<'t>(
    table: &'t mut Table,
    key: &str,
) -> Result<&'t mut dyn TableLike, RuleViolation> {
    let needs_new = table.get(key).and_then(Item::as_table_like).is_none();
    if needs_new {
        table.insert(key, Item::Value(Value::InlineTable(InlineTable::new())));
    }
    table
        .get_mut(key)
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| RuleViolation::new(format!("`{key}` is not a table"), ""))
}

/// Replaces a value but keeps its decoration (the comment after it).
fn set_value(table: &mut dyn TableLike, key: &str, mut value: Value) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            *value.decor_mut() = old.decor().clone();
            *old = value;
        }
        None => {
            table.insert(key, Item::Value(value));
        }
    }
}

fn string_array(items: &[String]) -> Value {
    let mut array = Array::new();
    for item in items {
        array.push(item.as_str());
    }
    Value::Array(array)
}
