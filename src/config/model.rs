//! The validated configuration: what the relay, the UI and the CLI work with.
//!
//! A file becomes a `Config` through [`Config::parse`](crate::config::Config::parse),
//! which runs every rule in `rules.rs`; edits go through the same rules
//! (`edit.rs`) before they are saved and applied. The fields are public, so
//! code that builds one itself (the cloud source, tests) must keep to those
//! rules: nothing downstream re-checks them.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strum::{EnumIter, EnumString, IntoStaticStr, VariantNames};

use super::name::DomainName;

/// The whole file: the `[relay]` table and every `[[domain]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub relay: RelaySettings,
    pub admin: AdminSettings,
    pub domains: Vec<Domain>,
}

impl Config {
    /// The domain whose name equals `host` (case-insensitive, port ignored),
    /// exactly as the relay routes a request's Host header.
    pub fn route(&self, host: &str) -> Option<&Domain> {
        let name = host_without_port(host);
        self.domains.iter().find(|d| d.name == name)
    }

    /// The domain with this exact (case-insensitive) name.
    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.name == name)
    }
}

/// `example.com:8080` → `example.com`, `[::1]:80` → `::1`; a trailing dot of
/// an absolute name is dropped too, as browsers and curl may send one.
pub fn host_without_port(host: &str) -> &str {
    let host = host.trim();
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    bare.strip_suffix('.').unwrap_or(bare)
}

/// The `[relay]` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelaySettings {
    pub listen: SocketAddr,
    pub handshake_timeout: Duration,
    pub origin_connect_timeout: Duration,
    pub max_message_bytes: u64,
    pub max_sessions: usize,
    pub idle_close: IdleCloseMode,
    /// Extra CA certificates (PEM) trusted for `https` origins, for origins
    /// behind a private CA. Relative paths are resolved against the config
    /// file's directory.
    pub origin_ca_file: Option<std::path::PathBuf>,
    /// The control socket (docs/CONTROL.md); `None`: the default path derived from
    /// `listen`. Relative paths are resolved against the config file's directory.
    pub control_socket: Option<std::path::PathBuf>,
    /// How long live sessions may go on after SIGTERM (or `stop`) before
    /// they get 1001 `relay shutting down`; zero closes them at once.
    pub drain_timeout: Duration,
    /// Relay threads, each with its own listener on `listen` (SO_REUSEPORT);
    /// a session stays on the worker that accepted it.
    pub workers: usize,
    /// Where `wss://` clients connect (TLS at the edge); none by default.
    pub tls_listen: Option<SocketAddr>,
    /// The certificate for a client whose SNI names no domain with one of its own.
    pub tls_certificate: Option<CertificateFiles>,
}

/// A PEM certificate chain and its private key, paths already resolved
/// against the config file's directory. Read (and checked) by the relay,
/// at start and on every reload, so a renewed file is picked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct CertificateFiles {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
}

/// The default `workers`: one per CPU this process may run on.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            handshake_timeout: Duration::from_secs(10),
            origin_connect_timeout: Duration::from_secs(5),
            max_message_bytes: 16 * 1024 * 1024,
            max_sessions: 100_000,
            idle_close: IdleCloseMode::CloseFrame,
            origin_ca_file: None,
            control_socket: None,
            drain_timeout: Duration::ZERO,
            workers: default_workers(),
            tls_listen: None,
            tls_certificate: None,
        }
    }
}

/// The `[admin]` table: the `/metrics`, `/healthz`, `/readyz` listener.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AdminSettings {
    /// None: no admin listener (`serve --admin ADDR` can still open one).
    pub listen: Option<SocketAddr>,
}

/// How the relay ends a session that went idle for too long.
///
/// Config enums are spelled once, in kebab-case: serde reads and writes
/// that spelling, strum derives `as_str`, parsing, the list of values
/// (`VARIANTS`, the forms' options) and iteration from the same attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[derive(EnumIter, IntoStaticStr, EnumString, VariantNames)]
#[strum(serialize_all = "kebab-case")]
pub enum IdleCloseMode {
    /// Close frame 1001 `idle timeout (N s)` to both sides, then drop TCP.
    CloseFrame,
    /// Drop TCP with no close frame, as real CDNs do (the client sees 1006).
    Abort,
}

/// One `[[domain]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Domain {
    /// As written in the file; compares case-insensitively.
    pub name: DomainName,
    pub acceleration: Acceleration,
    pub status: Status,
    pub area: Area,
    pub origins: Vec<Origin>,
    pub server_name: Option<String>,
    pub origin_protocol: OriginProtocol,
    pub websocket: WebSocketSettings,
    /// Served to TLS clients whose SNI is this domain's name.
    pub certificate: Option<CertificateFiles>,
}

impl Domain {
    /// The CNAME the CDN would hand out for this domain (read-only, derived).
    pub fn cname(&self) -> String {
        format!("{}.dsa.dnsv1.com", self.name.to_ascii_lowercase())
    }

    /// The Host header sent to the origin.
    pub fn origin_host_header(&self) -> &str {
        self.server_name.as_deref().unwrap_or(&self.name)
    }

    /// Whether this domain may turn the WebSocket switch on at all.
    pub fn can_configure_websocket(&self) -> bool {
        self.acceleration.supports_websocket_config()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[derive(EnumIter, IntoStaticStr, EnumString, VariantNames)]
#[strum(serialize_all = "kebab-case")]
pub enum Acceleration {
    FullSite,
    DynamicStatic,
    Dynamic,
}

impl Acceleration {
    /// The console's name for the type.
    pub fn label(self) -> &'static str {
        match self {
            Self::FullSite => "Full-site acceleration",
            Self::DynamicStatic => "Dynamic and static acceleration",
            Self::Dynamic => "Dynamic acceleration",
        }
    }

    pub fn supports_websocket_config(self) -> bool {
        self == Self::FullSite
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[derive(EnumIter, IntoStaticStr, EnumString, VariantNames)]
#[strum(serialize_all = "kebab-case")]
pub enum Status {
    #[default]
    Online,
    Offline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[derive(EnumIter, IntoStaticStr, EnumString, VariantNames)]
#[strum(serialize_all = "kebab-case")]
pub enum Area {
    #[default]
    Mainland,
    Overseas,
    Global,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[derive(EnumIter, IntoStaticStr, EnumString, VariantNames)]
#[strum(serialize_all = "kebab-case")]
pub enum OriginProtocol {
    /// `ws://` to the origin.
    #[default]
    Http,
    /// `wss://` to the origin.
    Https,
    /// The client's scheme. The relay listens on plain TCP, so this is `ws://`.
    Follow,
}

impl OriginProtocol {
    /// Whether the relay speaks TLS to the origin for a plain-TCP client.
    pub fn uses_tls(self) -> bool {
        self == Self::Https
    }

    /// Whether the relay speaks TLS to the origin for this client:
    /// `follow` means `wss://` for a client that came over TLS.
    pub fn uses_tls_for(self, client_tls: bool) -> bool {
        self == Self::Https || (self == Self::Follow && client_tls)
    }
}

/// `as_str`: the value as the file spells it (strum's, the same as serde's).
macro_rules! spelled {
    ($($enum:ty),*) => {$(
        impl $enum {
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    )*};
}

spelled!(
    IdleCloseMode,
    Acceleration,
    Status,
    Area,
    OriginProtocol,
    Switch
);

/// One `host:port[:weight]` entry of `origins`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub host: String,
    pub port: u16,
    pub weight: u8,
}

impl Origin {
    /// Weight used when an entry names none.
    pub const DEFAULT_WEIGHT: u8 = 10;

    /// `host:port`, with IPv6 hosts bracketed: what `TcpStream::connect` takes.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn is_ip(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.authority())?;
        if self.weight != Self::DEFAULT_WEIGHT {
            write!(f, ":{}", self.weight)?;
        }
        Ok(())
    }
}

/// The WebSocket switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[derive(EnumIter, IntoStaticStr, EnumString, VariantNames)]
#[strum(serialize_all = "kebab-case")]
pub enum Switch {
    On,
    #[default]
    Off,
}

impl Switch {
    pub fn is_on(self) -> bool {
        self == Self::On
    }

    pub fn toggled(self) -> Self {
        match self {
            Self::On => Self::Off,
            Self::Off => Self::On,
        }
    }
}

/// `websocket = { switch, timeout, ping-resets-idle }`. Its default (off,
/// the recommended timeout) is in `timeout.rs` with the other timeout rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WebSocketSettings {
    pub switch: Switch,
    /// Seconds, 0..=300; 0 means no idle limit.
    pub timeout: u16,
    pub ping_resets_idle: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use strum::{IntoEnumIterator, VariantNames};

    use super::*;

    /// serde (the file) and strum (`as_str`, parsing, form options) must
    /// spell every value alike.
    fn spelled_alike<T>()
    where
        T: IntoEnumIterator + Serialize + Copy + Into<&'static str> + std::str::FromStr + PartialEq,
    {
        for value in T::iter() {
            let name: &'static str = value.into();
            assert_eq!(
                serde_json::to_string(&value).unwrap(),
                format!("\"{name}\"")
            );
            assert!(name.parse::<T>().is_ok_and(|parsed| parsed == value));
        }
    }

    #[test]
    fn config_values_are_spelled_once() {
        spelled_alike::<IdleCloseMode>();
        spelled_alike::<Acceleration>();
        spelled_alike::<Status>();
        spelled_alike::<Area>();
        spelled_alike::<OriginProtocol>();
        spelled_alike::<Switch>();
        assert_eq!(
            Acceleration::VARIANTS,
            ["full-site", "dynamic-static", "dynamic"]
        );
    }
}
