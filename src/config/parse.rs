//! Text → [`Config`]: the raw file through `schema.rs` (syntax, types,
//! unknown keys), then missing keys, enum values and every rule of
//! `rules.rs`, each problem pinned to the line and column of the value that
//! broke it.

use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use strum::VariantNames;
use toml::Spanned;

use super::error::{ConfigError, Problem, Problems, RuleViolation};
use super::model::{
    Acceleration, AdminSettings, Area, CertificateFiles, Config, Domain, OriginProtocol,
    RelaySettings, Status, Switch, WebSocketSettings,
};
use super::name::DomainName;
use super::rules;
use super::schema::{self, UnknownKey};

// No `deny_unknown_fields`, no required field and no enum here: unknown
// keys, missing keys and values outside a list are found by our own checks
// below, each with its own advice (see `schema.rs`).
#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    relay: Option<RawRelay>,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    domain: Vec<Spanned<RawDomain>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", expecting = "a [relay] table")]
struct RawRelay {
    listen: Option<Spanned<String>>,
    handshake_timeout: Option<Spanned<i64>>,
    origin_connect_timeout: Option<Spanned<i64>>,
    max_message_bytes: Option<Spanned<i64>>,
    max_sessions: Option<Spanned<i64>>,
    idle_close: Option<Spanned<String>>,
    origin_ca_file: Option<Spanned<String>>,
    control_socket: Option<Spanned<String>>,
    workers: Option<Spanned<i64>>,
    drain_timeout: Option<Spanned<i64>>,
    tls_listen: Option<Spanned<String>>,
    tls_certificate: Option<Spanned<RawCertificate>>,
}

#[derive(Deserialize)]
#[serde(
    rename_all = "kebab-case",
    expecting = "a table like { cert-file = \"edge.pem\", key-file = \"edge.key\" }"
)]
struct RawCertificate {
    cert_file: Option<String>,
    key_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", expecting = "an [admin] table")]
struct RawAdmin {
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", expecting = "a [[domain]] table")]
struct RawDomain {
    name: Option<Spanned<String>>,
    acceleration: Option<Spanned<String>>,
    status: Option<Spanned<String>>,
    area: Option<Spanned<String>>,
    origins: Option<Spanned<Vec<Spanned<String>>>>,
    server_name: Option<Spanned<String>>,
    origin_protocol: Option<Spanned<String>>,
    websocket: Option<RawWebSocket>,
    certificate: Option<Spanned<RawCertificate>>,
}

#[derive(Deserialize)]
#[serde(
    rename_all = "kebab-case",
    expecting = "a table like { switch = \"on\", timeout = 60 }"
)]
struct RawWebSocket {
    switch: Option<Spanned<String>>,
    timeout: Option<Spanned<i64>>,
    ping_resets_idle: Option<bool>,
}

/// The keys of the table at `table` (a path of keys, array indices left
/// out), for the advice on an unknown key.
fn known_keys(table: &[String]) -> &'static [&'static str] {
    let path: Vec<&str> = table.iter().map(String::as_str).collect();
    match path.as_slice() {
        [] => schema::fields_of::<RawFile>(),
        ["relay"] => schema::fields_of::<RawRelay>(),
        ["admin"] => schema::fields_of::<RawAdmin>(),
        ["domain"] => schema::fields_of::<RawDomain>(),
        ["domain", "websocket"] => schema::fields_of::<RawWebSocket>(),
        ["relay", "tls-certificate"] | ["domain", "certificate"] => {
            schema::fields_of::<RawCertificate>()
        }
        _ => &[],
    }
}

/// Collects problems while walking the file, so one run reports them all.
struct Checker<'a> {
    text: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn report(&mut self, span: Range<usize>, violation: RuleViolation) {
        self.problems.push(Problem::at(
            self.text,
            span.start,
            violation.message,
            violation.fix,
        ));
    }

    /// Runs a rule on a spanned value; a violation is reported at the value.
    fn check<T, U>(
        &mut self,
        value: &Spanned<T>,
        rule: impl FnOnce(&T) -> Result<U, RuleViolation>,
    ) -> Option<U> {
        match rule(value.get_ref()) {
            Ok(v) => Some(v),
            Err(violation) => {
                self.report(value.span(), violation);
                None
            }
        }
    }

    fn unknown_key(&mut self, unknown: UnknownKey) {
        let place = if unknown.table.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in `{}`", unknown.table.join("."))
        };
        let known = known_keys(&unknown.table);
        self.report(
            unknown.span,
            RuleViolation::new(
                format!(
                    "unknown field `{}` {place}, expected {}",
                    unknown.key,
                    schema::expected(known)
                ),
                "remove or correct the key (keys are case-sensitive and use hyphens)",
            ),
        );
    }

    /// A key the table must have; reported at the table when absent.
    fn required<T>(
        &mut self,
        table: &Range<usize>,
        place: &str,
        key: &str,
        value: Option<T>,
    ) -> Option<T> {
        if value.is_none() {
            self.report(
                table.clone(),
                RuleViolation::new(
                    format!("missing field `{key}` in {place}"),
                    format!("add the key `{key}` to this table"),
                ),
            );
        }
        value
    }

    /// One of an enum's values, spelled as strum (and the file) spell it.
    fn choice<E: FromStr + VariantNames>(
        &mut self,
        key: &str,
        value: &Spanned<String>,
    ) -> Option<E> {
        self.check(value, |v| {
            v.parse::<E>().map_err(|_| {
                RuleViolation::new(
                    format!(
                        "unknown variant `{v}` for `{key}`, expected {}",
                        schema::expected(E::VARIANTS)
                    ),
                    "use one of the values listed",
                )
            })
        })
    }

    /// An optional enum key: `default` when absent (or wrong, reported).
    fn choice_or<E: FromStr + VariantNames>(
        &mut self,
        key: &str,
        value: Option<&Spanned<String>>,
        default: E,
    ) -> E {
        value.and_then(|v| self.choice(key, v)).unwrap_or(default)
    }
}

impl Config {
    /// Parses and validates a whole file. `path` only labels the errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |problems| {
            ConfigError::Invalid(Problems {
                path: path.to_path_buf(),
                problems,
            })
        };
        let (raw, unknown) =
            schema::read::<RawFile>(text).map_err(|e| invalid(vec![e.into_problem(text)]))?;
        let mut checker = Checker {
            text,
            problems: Vec::new(),
        };
        for key in unknown {
            checker.unknown_key(key);
        }
        let tls_listen_span = raw
            .relay
            .as_ref()
            .and_then(|r| r.tls_listen.as_ref())
            .map(Spanned::span);
        let relay = relay_settings(&mut checker, raw.relay, path);
        let admin = admin_settings(&mut checker, raw.admin);
        let mut domains: Vec<Domain> = Vec::new();
        let mut names: Vec<(DomainName, usize)> = Vec::new();
        for raw_domain in raw.domain {
            if let Some(name) = &raw_domain.get_ref().name {
                duplicate_name(&mut checker, &mut names, name);
            }
            if let Some(domain) = domain(&mut checker, raw_domain, path) {
                domains.push(domain);
            }
        }
        if let Some(span) = tls_listen_span {
            let certified =
                relay.tls_certificate.is_some() || domains.iter().any(|d| d.certificate.is_some());
            if !certified && checker.problems.is_empty() {
                checker.report(span, rules::tls_without_certificate());
            }
        }
        if checker.problems.is_empty() {
            Ok(Config {
                relay,
                admin,
                domains,
            })
        } else {
            Err(invalid(checker.problems))
        }
    }
}

/// Reports a name already seen (case-insensitively), and remembers it.
fn duplicate_name(c: &mut Checker, names: &mut Vec<(DomainName, usize)>, name: &Spanned<String>) {
    let first = names
        .iter()
        .find(|(n, _)| n == name.get_ref())
        .map(|(_, line)| *line);
    let line = Problem::at(c.text, name.span().start, String::new(), String::new()).line;
    if let Some(first_line) = first {
        c.report(
            name.span(),
            RuleViolation::new(
                format!(
                    "domain \"{}\" is defined twice (first on line {first_line}); names are compared case-insensitively",
                    name.get_ref()
                ),
                "remove one of the two [[domain]] entries or rename it",
            ),
        );
    }
    names.push((name.get_ref().as_str().into(), line));
}

fn relay_settings(c: &mut Checker, raw: Option<RawRelay>, path: &Path) -> RelaySettings {
    let defaults = RelaySettings::default();
    let Some(raw) = raw else { return defaults };
    let secs = |c: &mut Checker, v: &Option<Spanned<i64>>, key: &str, max, default: Duration| {
        v.as_ref()
            .and_then(|v| c.check(v, |n| rules::seconds(key, *n, max)))
            .map_or(default, Duration::from_secs)
    };
    RelaySettings {
        listen: raw
            .listen
            .as_ref()
            .and_then(|v| c.check(v, |s| rules::listen(s)))
            .unwrap_or(defaults.listen),
        handshake_timeout: secs(
            c,
            &raw.handshake_timeout,
            "handshake-timeout",
            3600,
            defaults.handshake_timeout,
        ),
        origin_connect_timeout: secs(
            c,
            &raw.origin_connect_timeout,
            "origin-connect-timeout",
            600,
            defaults.origin_connect_timeout,
        ),
        max_message_bytes: raw
            .max_message_bytes
            .as_ref()
            .and_then(|v| {
                c.check(v, |n| {
                    rules::positive("max-message-bytes", *n, 1 << 30, "bytes")
                })
            })
            .unwrap_or(defaults.max_message_bytes),
        max_sessions: raw
            .max_sessions
            .as_ref()
            .and_then(|v| {
                c.check(v, |n| {
                    rules::positive("max-sessions", *n, 10_000_000, "sessions")
                })
            })
            .map_or(defaults.max_sessions, |n| n as usize),
        idle_close: c.choice_or("idle-close", raw.idle_close.as_ref(), defaults.idle_close),
        origin_ca_file: raw
            .origin_ca_file
            .as_ref()
            .and_then(|v| c.check(v, |f| rules::ca_file(f, path))),
        control_socket: raw
            .control_socket
            .as_ref()
            .and_then(|v| c.check(v, |f| rules::control_socket(f, path))),
        workers: raw
            .workers
            .as_ref()
            .and_then(|v| c.check(v, |n| rules::workers(*n)))
            .unwrap_or(defaults.workers),
        drain_timeout: raw
            .drain_timeout
            .as_ref()
            .and_then(|v| c.check(v, |n| rules::drain_timeout(*n)))
            .map_or(defaults.drain_timeout, Duration::from_secs),
        tls_listen: raw
            .tls_listen
            .as_ref()
            .and_then(|v| c.check(v, |s| rules::listen(s))),
        tls_certificate: raw
            .tls_certificate
            .as_ref()
            .and_then(|v| certificate(c, v, "`relay.tls-certificate`", path)),
    }
}

fn certificate(
    c: &mut Checker,
    raw: &Spanned<RawCertificate>,
    place: &str,
    path: &Path,
) -> Option<CertificateFiles> {
    let table = raw.span();
    let raw = raw.get_ref();
    let cert_file = c.required(&table, place, "cert-file", raw.cert_file.as_ref());
    let key_file = c.required(&table, place, "key-file", raw.key_file.as_ref());
    Some(CertificateFiles {
        cert_file: rules::relative_to_config(cert_file?, path),
        key_file: rules::relative_to_config(key_file?, path),
    })
}

fn admin_settings(c: &mut Checker, raw: Option<RawAdmin>) -> AdminSettings {
    AdminSettings {
        listen: raw
            .and_then(|raw| raw.listen)
            .and_then(|v| c.check(&v, |s| rules::listen(s))),
    }
}

fn domain(c: &mut Checker, raw: Spanned<RawDomain>, path: &Path) -> Option<Domain> {
    let table = raw.span();
    let raw = raw.into_inner();
    let place = "this [[domain]]";
    let certificate = raw
        .certificate
        .as_ref()
        .and_then(|v| certificate(c, v, "the domain's `certificate`", path));
    let name = c.required(&table, place, "name", raw.name);
    let name_ok = name
        .as_ref()
        .is_some_and(|n| c.check(n, |n| rules::domain_name(n)).is_some());
    let acceleration = c
        .required(&table, place, "acceleration", raw.acceleration)
        .and_then(|a| c.choice::<Acceleration>("acceleration", &a));

    let raw_origins = c.required(&table, place, "origins", raw.origins);
    let mut origins = Vec::new();
    let mut origins_ok = false;
    if let Some(raw_origins) = &raw_origins {
        for entry in raw_origins.get_ref() {
            if let Some(origin) = c.check(entry, |e| rules::origin(e)) {
                origins.push(origin);
            }
        }
        origins_ok = origins.len() == raw_origins.get_ref().len()
            && c.check(raw_origins, |_| rules::origin_list(&origins))
                .is_some();
    }

    let server_name_ok = raw
        .server_name
        .as_ref()
        .is_none_or(|s| c.check(s, |s| rules::server_name(s)).is_some());

    let defaults = WebSocketSettings::default();
    let mut websocket = defaults;
    let mut websocket_ok = true;
    if let Some(ws) = raw.websocket {
        if let Some(value) = &ws.switch {
            match c.choice::<Switch>("switch", value) {
                Some(switch) => websocket.switch = switch,
                None => websocket_ok = false,
            }
            if let (true, Some(name), Some(acceleration)) = (websocket_ok, &name, acceleration) {
                websocket_ok &= c
                    .check(value, |_| {
                        rules::switch(name.get_ref(), acceleration, websocket.switch)
                    })
                    .is_some();
            }
        }
        if let Some(timeout) = &ws.timeout {
            match c.check(timeout, |t| rules::timeout(*t)) {
                Some(t) => websocket.timeout = t,
                None => websocket_ok = false,
            }
        }
        websocket.ping_resets_idle = ws.ping_resets_idle.unwrap_or(defaults.ping_resets_idle);
    }
    let status = c.choice_or("status", raw.status.as_ref(), Status::default());
    let area = c.choice_or("area", raw.area.as_ref(), Area::default());
    let origin_protocol = c.choice_or(
        "origin-protocol",
        raw.origin_protocol.as_ref(),
        OriginProtocol::default(),
    );

    let (name, acceleration) = (name?, acceleration?);
    (name_ok && origins_ok && server_name_ok && websocket_ok).then(|| Domain {
        name: name.into_inner().into(),
        acceleration,
        status,
        area,
        origins,
        server_name: raw.server_name.map(Spanned::into_inner),
        origin_protocol,
        websocket,
        certificate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table the file can hold has its keys listed for the advice,
    /// and each nested table is a key of its parent.
    #[test]
    fn every_table_lists_its_keys() {
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (table, parent_key) in [
            (path(&[]), None),
            (path(&["relay"]), Some("relay")),
            (path(&["admin"]), Some("admin")),
            (path(&["domain"]), Some("domain")),
            (path(&["domain", "websocket"]), Some("websocket")),
            (path(&["domain", "certificate"]), Some("certificate")),
            (path(&["relay", "tls-certificate"]), Some("tls-certificate")),
        ] {
            assert!(!known_keys(&table).is_empty(), "{table:?}");
            if let Some(key) = parent_key {
                let parent = &table[..table.len() - 1];
                assert!(known_keys(parent).contains(&key), "{table:?}");
            }
        }
        assert!(known_keys(&path(&["relay"])).contains(&"handshake-timeout"));
    }
}
