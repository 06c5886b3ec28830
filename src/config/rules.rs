//! Every validation rule, in one place. File loading (`parse.rs`) and the
//! edits made from the UI and the CLI (`edit.rs`) call the same functions, so
//! a value refused in one place is refused everywhere with the same words.

use std::net::{IpAddr, SocketAddr};

use super::error::RuleViolation;
use super::model::{Acceleration, Config, Domain, Origin, Switch};
use super::timeout::{MAX_TIMEOUT_SECS, RECOMMENDED_TIMEOUT_SECS};

type Rule<T> = Result<T, RuleViolation>;

/// The most `[relay] workers` (and `serve --workers`) accepted.
pub const MAX_WORKERS: i64 = 1024;

/// `[relay] workers` / `serve --workers`: 1 to [`MAX_WORKERS`] threads.
pub fn workers(value: i64) -> Rule<usize> {
    if (1..=MAX_WORKERS).contains(&value) {
        Ok(value as usize)
    } else {
        Err(RuleViolation::new(
            format!("workers = {value} is out of range"),
            format!("use 1 to {MAX_WORKERS} relay threads (the default is one per CPU)"),
        ))
    }
}

pub fn timeout(value: i64) -> Rule<u16> {
    match u16::try_from(value) {
        Ok(v) if v <= MAX_TIMEOUT_SECS => Ok(v),
        _ => Err(RuleViolation::new(
            format!("websocket timeout {value} is out of range"),
            format!(
                "use 0 to {MAX_TIMEOUT_SECS} seconds (0 = no idle limit; \
                 {RECOMMENDED_TIMEOUT_SECS} is recommended when the application sends no heartbeat)"
            ),
        )),
    }
}

/// The domain an edit or a command names must exist; the error lists the
/// known ones so a typo is easy to spot.
pub fn existing_domain<'c>(config: &'c Config, name: &str) -> Rule<&'c Domain> {
    config.domain(name).ok_or_else(|| {
        let known: Vec<&str> = config.domains.iter().map(|d| d.name.as_str()).collect();
        RuleViolation::new(
            format!("no domain named \"{name}\""),
            if known.is_empty() {
                "the configuration has no domains yet".to_string()
            } else {
                format!("known domains: {}", known.join(", "))
            },
        )
    })
}

/// The console's limitation: only full-site domains can turn the switch on.
pub fn switch(domain: &str, acceleration: Acceleration, switch: Switch) -> Rule<()> {
    if switch.is_on() {
        configurable(domain, acceleration)?;
    }
    Ok(())
}

/// The console offers no WebSocket controls on other domains, so an edit
/// that would set their switch or timeout is refused with the reason.
pub fn configurable(domain: &str, acceleration: Acceleration) -> Rule<()> {
    if !acceleration.supports_websocket_config() {
        return Err(RuleViolation::new(
            format!(
                "domain \"{domain}\" is {} ({}): WebSocket timeout can only be \
                 configured for full-site acceleration domains",
                acceleration.as_str(),
                acceleration.label().to_lowercase()
            ),
            "set websocket switch = \"off\" (its WebSockets are cut after 15 s idle), \
             or change acceleration to \"full-site\"",
        ));
    }
    Ok(())
}

/// DNS names, compared case-insensitively; single labels such as
/// `localhost` are allowed so local tools can reach a domain.
pub fn domain_name(name: &str) -> Rule<()> {
    dns_name(name).map_err(|why| {
        RuleViolation::new(
            format!("domain name \"{name}\" is not a valid DNS name: {why}"),
            "use letters, digits and hyphens in dot-separated labels, e.g. \"www.example.com\"",
        )
    })
}

fn dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > 253 {
        return Err(format!(
            "it is {} characters long (at most 253)",
            name.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(
                "it has an empty label (two dots in a row, or a leading/trailing dot)".into(),
            );
        }
        if label.len() > 63 {
            return Err(format!("label \"{label}\" is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!("'{c}' is not allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label \"{label}\" starts or ends with a hyphen"));
        }
    }
    Ok(())
}

pub fn server_name(name: &str) -> Rule<()> {
    if name.parse::<IpAddr>().is_ok() || dns_name(name).is_ok() {
        return Ok(());
    }
    Err(RuleViolation::new(
        format!("server-name \"{name}\" is not a host name"),
        "use the Host header your origin expects, e.g. \"www.example.com\", or remove the key to send the domain name",
    ))
}

/// `host:port[:weight]`, with IPv6 hosts in brackets: `[::1]:9001:20`.
pub fn origin(entry: &str) -> Rule<Origin> {
    let bad = |why: &str| {
        RuleViolation::new(
            format!("origin \"{entry}\" {why}"),
            "write origins as \"host:port\" or \"host:port:weight\" (weight 0-100), \
             e.g. \"127.0.0.1:9001\" or \"[::1]:9001:50\"",
        )
    };
    let (host, rest) = if let Some(after) = entry.strip_prefix('[') {
        let (host, rest) = after
            .split_once(']')
            .ok_or_else(|| bad("has an unclosed '['"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad(
                "has brackets around something that is not an IPv6 address",
            ));
        }
        let rest = rest
            .strip_prefix(':')
            .ok_or_else(|| bad("has no port after the IPv6 address"))?;
        (host, rest)
    } else {
        entry.split_once(':').ok_or_else(|| bad("has no port"))?
    };
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    if !host.contains(':') && host.parse::<IpAddr>().is_err() && dns_name(host).is_err() {
        return Err(bad(
            "has a host that is neither an IP address nor a DNS name",
        ));
    }
    let (port, weight) = match rest.split_once(':') {
        Some((port, weight)) => (port, Some(weight)),
        None => (rest, None),
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad(&format!("has port \"{port}\", which is not 1-65535")))?;
    let weight = match weight {
        None => Origin::DEFAULT_WEIGHT,
        Some(w) => w
            .parse::<u8>()
            .ok()
            .filter(|w| *w <= 100)
            .ok_or_else(|| bad(&format!("has weight \"{w}\", which is not 0-100")))?,
    };
    Ok(Origin {
        host: host.to_string(),
        port,
        weight,
    })
}

/// The console's origin rules for one domain: at least one entry, and IP
/// addresses and host names are not mixed.
pub fn origin_list(origins: &[Origin]) -> Rule<()> {
    if origins.is_empty() {
        return Err(RuleViolation::new(
            "the domain has no origins",
            "add at least one origin, e.g. origins = [\"127.0.0.1:9001\"]",
        ));
    }
    let ips = origins.iter().filter(|o| o.is_ip()).count();
    if ips != 0 && ips != origins.len() {
        return Err(RuleViolation::new(
            "origins mix IP addresses and host names",
            "use only IP addresses or only host names in one domain's origin list",
        ));
    }
    if origins.iter().all(|o| o.weight == 0) {
        return Err(RuleViolation::new(
            "every origin has weight 0, so none would ever be picked",
            "give at least one origin a weight from 1 to 100",
        ));
    }
    Ok(())
}

pub fn listen(value: &str) -> Rule<SocketAddr> {
    value.parse().map_err(|_| {
        RuleViolation::new(
            format!("listen address \"{value}\" is not an IP address and port"),
            "use e.g. \"127.0.0.1:8080\" (loopback) or \"[::1]:8080\"; host names are not resolved here",
        )
    })
}

/// A count of seconds for a `[relay]` setting.
pub fn seconds(key: &str, value: i64, max: i64) -> Rule<u64> {
    if (1..=max).contains(&value) {
        Ok(value as u64)
    } else {
        Err(RuleViolation::new(
            format!("{key} = {value} is out of range"),
            format!("use 1 to {max} seconds"),
        ))
    }
}

/// `drain-timeout`: 0 (close at once) up to a day.
pub fn drain_timeout(value: i64) -> Rule<u64> {
    if (0..=86_400).contains(&value) {
        Ok(value as u64)
    } else {
        Err(RuleViolation::new(
            format!("drain-timeout = {value} is out of range"),
            "use 0 (close sessions at once on SIGTERM) to 86400 seconds",
        ))
    }
}

pub fn positive(key: &str, value: i64, max: i64, unit: &str) -> Rule<u64> {
    if (1..=max).contains(&value) {
        Ok(value as u64)
    } else {
        Err(RuleViolation::new(
            format!("{key} = {value} is out of range"),
            format!("use 1 to {max} {unit}"),
        ))
    }
}

/// A path from the config: relative ones start at the config file's directory.
pub fn relative_to_config(value: &str, config_path: &std::path::Path) -> std::path::PathBuf {
    let given = std::path::Path::new(value);
    match config_path.parent() {
        Some(dir) if given.is_relative() => dir.join(given),
        _ => given.to_path_buf(),
    }
}

/// `tls-listen` with no certificate to serve.
pub fn tls_without_certificate() -> RuleViolation {
    RuleViolation::new(
        "tls-listen is set but no certificate is configured",
        "add [relay] tls-certificate = { cert-file = \"…\", key-file = \"…\" } or a domain's certificate, or remove tls-listen",
    )
}

/// `origin-ca-file`: must name a readable file; relative to the config's directory.
pub fn ca_file(value: &str, config_path: &std::path::Path) -> Rule<std::path::PathBuf> {
    let given = std::path::Path::new(value);
    let resolved = match config_path.parent() {
        Some(dir) if given.is_relative() => dir.join(given),
        _ => given.to_path_buf(),
    };
    if resolved.is_file() {
        Ok(resolved)
    } else {
        Err(RuleViolation::new(
            format!(
                "origin-ca-file \"{value}\" is not a readable file ({})",
                resolved.display()
            ),
            "point it at a PEM file of CA certificates (relative paths start at the config file's directory), or remove the key",
        ))
    }
}

/// The longest path a Unix socket address can hold (`sun_path` is 108
/// bytes with its terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// `control-socket`: a path (relative to the config's directory) short
/// enough for a Unix socket address.
pub fn control_socket(value: &str, config_path: &std::path::Path) -> Rule<std::path::PathBuf> {
    let given = std::path::Path::new(value);
    if value.trim().is_empty() {
        return Err(RuleViolation::new(
            "control-socket is empty",
            "give a path such as \"/run/ecdn-console/relay.sock\", or remove the key for the default",
        ));
    }
    let resolved = match config_path.parent() {
        Some(dir) if given.is_relative() && !dir.as_os_str().is_empty() => dir.join(given),
        _ => given.to_path_buf(),
    };
    let len = resolved.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(RuleViolation::new(
            format!(
                "control-socket \"{value}\" is {len} bytes long ({}); a Unix socket path holds at most {MAX_SOCKET_PATH}",
                resolved.display()
            ),
            "pick a shorter path, e.g. under /run or /tmp",
        ));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn origins_parse_with_and_without_weight() {
        let o = origin("127.0.0.1:9001").unwrap();
        assert_eq!((o.host.as_str(), o.port, o.weight), ("127.0.0.1", 9001, 10));
        let o = origin("[::1]:9001:50").unwrap();
        assert_eq!((o.host.as_str(), o.port, o.weight), ("::1", 9001, 50));
        assert_eq!(o.authority(), "[::1]:9001");
        let o = origin("origin.example.com:443:0").unwrap();
        assert_eq!(o.weight, 0);
    }

    #[test]
    fn bad_origins_say_why() {
        assert!(origin("127.0.0.1").unwrap_err().message.contains("no port"));
        assert!(
            origin("127.0.0.1:99999")
                .unwrap_err()
                .message
                .contains("99999")
        );
        assert!(
            origin("127.0.0.1:80:101")
                .unwrap_err()
                .message
                .contains("101")
        );
        assert!(
            origin("bad_host:80")
                .unwrap_err()
                .message
                .contains("neither")
        );
    }

    #[test]
    fn mixed_origins_are_refused() {
        let list = [
            origin("127.0.0.1:1").unwrap(),
            origin("a.example:1").unwrap(),
        ];
        assert!(origin_list(&list).unwrap_err().message.contains("mix"));
    }

    #[test]
    fn domain_names() {
        assert!(domain_name("localhost").is_ok());
        assert!(domain_name("Cloud.Tencent.com").is_ok());
        assert!(domain_name("a..b").is_err());
        assert!(domain_name("-a.com").is_err());
        assert!(domain_name("a_b.com").is_err());
    }

    #[test]
    fn timeout_range() {
        assert_eq!(timeout(0).unwrap(), 0);
        assert_eq!(timeout(300).unwrap(), 300);
        assert!(timeout(301).unwrap_err().message.contains("301"));
        assert!(timeout(-1).is_err());
    }
}
