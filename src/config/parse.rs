//! Text → [`Config`]: TOML syntax and unknown keys through serde, then every
//! rule of `rules.rs`, each problem pinned to the line and column of the
//! value that broke it.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Problem, Problems, RuleViolation};
use super::model::{
    Acceleration, AdminSettings, Area, CertificateFiles, Config, Domain, IdleCloseMode,
    OriginProtocol, RelaySettings, Status, Switch, WebSocketSettings,
};
use super::name::DomainName;
use super::rules;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    relay: Option<RawRelay>,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    domain: Vec<RawDomain>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRelay {
    listen: Option<Spanned<String>>,
    handshake_timeout: Option<Spanned<i64>>,
    origin_connect_timeout: Option<Spanned<i64>>,
    max_message_bytes: Option<Spanned<i64>>,
    max_sessions: Option<Spanned<i64>>,
    idle_close: Option<IdleCloseMode>,
    origin_ca_file: Option<Spanned<String>>,
    control_socket: Option<Spanned<String>>,
    workers: Option<Spanned<i64>>,
    drain_timeout: Option<Spanned<i64>>,
    tls_listen: Option<Spanned<String>>,
    tls_certificate: Option<Spanned<RawCertificate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCertificate {
    cert_file: String,
    key_file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAdmin {
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDomain {
    name: Spanned<String>,
    acceleration: Spanned<Acceleration>,
    status: Option<Status>,
    area: Option<Area>,
    origins: Spanned<Vec<Spanned<String>>>,
    server_name: Option<Spanned<String>>,
    origin_protocol: Option<OriginProtocol>,
    websocket: Option<RawWebSocket>,
    certificate: Option<Spanned<RawCertificate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawWebSocket {
    switch: Option<Spanned<Switch>>,
    timeout: Option<Spanned<i64>>,
    ping_resets_idle: Option<bool>,
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
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            invalid(vec![Problem::at(
                text,
                offset,
                e.message().trim().to_string(),
                syntax_fix(e.message()),
            )])
        })?;
        let mut checker = Checker {
            text,
            problems: Vec::new(),
        };
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
            let first = names
                .iter()
                .find(|(n, _)| n == raw_domain.name.get_ref())
                .map(|(_, line)| *line);
            let line = Problem::at(
                text,
                raw_domain.name.span().start,
                String::new(),
                String::new(),
            )
            .line;
            if let Some(first_line) = first {
                checker.report(
                    raw_domain.name.span(),
                    RuleViolation::new(
                        format!(
                            "domain \"{}\" is defined twice (first on line {first_line}); names are compared case-insensitively",
                            raw_domain.name.get_ref()
                        ),
                        "remove one of the two [[domain]] entries or rename it",
                    ),
                );
            }
            names.push((raw_domain.name.get_ref().as_str().into(), line));
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

fn syntax_fix(message: &str) -> String {
    if message.contains("unknown field") {
        "remove or correct the key (keys are case-sensitive and use hyphens)".into()
    } else if message.contains("unknown variant") {
        "use one of the values listed".into()
    } else if message.contains("missing field") {
        "add the key".into()
    } else if message.contains("invalid type") {
        "check the value's type: strings need quotes, numbers must not have them".into()
    } else {
        "fix the TOML syntax at this position".into()
    }
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
        idle_close: raw.idle_close.unwrap_or(defaults.idle_close),
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
            .and_then(|v| certificate(c, v, path)),
    }
}

fn certificate(
    c: &mut Checker,
    raw: &Spanned<RawCertificate>,
    path: &Path,
) -> Option<CertificateFiles> {
    c.check(raw, |r| {
        Ok(CertificateFiles {
            cert_file: rules::relative_to_config(&r.cert_file, path),
            key_file: rules::relative_to_config(&r.key_file, path),
        })
    })
}

fn admin_settings(c: &mut Checker, raw: Option<RawAdmin>) -> AdminSettings {
    AdminSettings {
        listen: raw
            .and_then(|raw| raw.listen)
            .and_then(|v| c.check(&v, |s| rules::listen(s))),
    }
}

fn domain(c: &mut Checker, raw: RawDomain, path: &Path) -> Option<Domain> {
    let certificate = raw
        .certificate
        .as_ref()
        .and_then(|v| certificate(c, v, path));
    let name_ok = c.check(&raw.name, |n| rules::domain_name(n)).is_some();
    let name = raw.name.into_inner();
    let acceleration = *raw.acceleration.get_ref();

    let mut origins = Vec::new();
    for entry in raw.origins.get_ref() {
        if let Some(origin) = c.check(entry, |e| rules::origin(e)) {
            origins.push(origin);
        }
    }
    let origins_ok = origins.len() == raw.origins.get_ref().len()
        && c.check(&raw.origins, |_| rules::origin_list(&origins))
            .is_some();

    let server_name_ok = raw
        .server_name
        .as_ref()
        .is_none_or(|s| c.check(s, |s| rules::server_name(s)).is_some());

    let defaults = WebSocketSettings::default();
    let mut websocket = defaults;
    let mut websocket_ok = true;
    if let Some(ws) = raw.websocket {
        if let Some(switch) = &ws.switch {
            websocket.switch = *switch.get_ref();
            websocket_ok &= c
                .check(switch, |s| rules::switch(&name, acceleration, *s))
                .is_some();
        }
        if let Some(timeout) = &ws.timeout {
            match c.check(timeout, |t| rules::timeout(*t)) {
                Some(t) => websocket.timeout = t,
                None => websocket_ok = false,
            }
        }
        websocket.ping_resets_idle = ws.ping_resets_idle.unwrap_or(defaults.ping_resets_idle);
    }

    (name_ok && origins_ok && server_name_ok && websocket_ok).then(|| Domain {
        name: name.into(),
        acceleration,
        status: raw.status.unwrap_or_default(),
        area: raw.area.unwrap_or_default(),
        origins,
        server_name: raw.server_name.map(Spanned::into_inner),
        origin_protocol: raw.origin_protocol.unwrap_or_default(),
        websocket,
        certificate,
    })
}
