//! Lifecycle events: the only thing the relay pushes. Counters are sampled
//! from the registry instead, so a busy session costs the UI nothing.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::registry::SessionId;
use crate::config::DomainName;
use crate::ws::close;

pub use crate::ws::CloseInfo;

/// A close as a log line shows it: the peer's reason escaped ([`LogText`]).
impl fmt::Display for CloseInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} \"{}\"", self.code, LogText(&self.reason))
        }
    }
}

/// A peer-controlled string (a path, a close reason, a refusal's detail)
/// made safe for a text log line: log lines are data, so a newline cannot
/// forge a line, an escape code cannot reach an operator's terminal, and a
/// `"` cannot end a quoted field early. JSON logs are escaped by serde.
pub struct LogText<'a>(pub &'a str);

impl fmt::Display for LogText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        escape_into(f, self.0)
    }
}

/// Whatever `T` displays, escaped as [`LogText`] is — without first
/// formatting it into a `String` of its own.
struct LogDisplay<T>(T);

impl<T: fmt::Display> fmt::Display for LogDisplay<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        write!(Escaping(f), "{}", self.0)
    }
}

/// A writer that escapes what passes through it, as [`LogText`].
struct Escaping<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s)
    }
}

fn needs_escape(c: char) -> bool {
    c == '"' || c == '\\' || c.is_control()
}

/// Writes `text` escaped. The runs between escapes go out in one write each
/// (most log text has nothing to escape): `serve`'s two lines per session
/// wrote every character through the formatter on their own.
fn escape_into<W: fmt::Write + ?Sized>(out: &mut W, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest.find(needs_escape) {
        out.write_str(&rest[..at])?;
        let mut tail = rest[at..].chars();
        let Some(c) = tail.next() else { break };
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c => write!(out, "\\u{{{:x}}}", u32::from(c))?,
        }
        rest = tail.as_str();
    }
    out.write_str(rest)
}

/// A socket address as its `Display` writes it (no width is ever asked for
/// on a log line): an IPv4 address's numbers through `itoa`, where `std`
/// formats each octet through the generic formatter — 2.6 k of the relay's
/// ~88 k user-space instructions per session went to the client address
/// of serve's two lines (docs/BENCHMARKS.md, finding 28). IPv6 as `std`
/// writes it.
struct LogAddr<'a>(&'a SocketAddr);

impl fmt::Display for LogAddr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let SocketAddr::V4(v4) = self.0 else {
            return self.0.fmt(f);
        };
        let [a, b, c, d] = v4.ip().octets();
        let mut n = itoa::Buffer::new();
        f.write_str(n.format(a))?;
        for octet in [b, c, d] {
            f.write_str(".")?;
            f.write_str(n.format(octet))?;
        }
        f.write_str(":")?;
        f.write_str(n.format(v4.port()))
    }
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum CloseCause {
    /// No frame for the effective timeout.
    IdleTimeout { timeout_secs: u64 },
    /// The client sent a close frame.
    ClientClosed,
    /// The origin sent a close frame.
    OriginClosed,
    /// The client's TCP connection ended without a close frame.
    ClientVanished,
    /// The origin's TCP connection ended without a close frame.
    OriginVanished,
    /// A message exceeded `max-message-bytes` (1009).
    MessageTooBig { from_client: bool },
    /// A malformed frame (1002).
    ProtocolError { from_client: bool, detail: String },
    /// The domain was taken offline.
    DomainOffline,
    /// The domain was deleted from the configuration.
    DomainRemoved,
    /// An operator closed it from the console.
    Operator,
    /// The relay is shutting down.
    Shutdown,
}

impl CloseCause {
    /// [`label`](Self::label) of an idle timeout.
    pub const IDLE_LABEL: &'static str = "idle timeout";

    /// A short stable label, used for per-domain counts and log lines.
    pub fn label(&self) -> &'static str {
        match self {
            Self::IdleTimeout { .. } => Self::IDLE_LABEL,
            Self::ClientClosed => "client closed",
            Self::OriginClosed => "origin closed",
            Self::ClientVanished => "client went away",
            Self::OriginVanished => "origin went away",
            Self::MessageTooBig { .. } => "message too big",
            Self::ProtocolError { .. } => "protocol error",
            Self::DomainOffline => "domain offline",
            Self::DomainRemoved => "domain removed",
            Self::Operator => "closed by operator",
            Self::Shutdown => "relay shutting down",
        }
    }

    /// The close code the relay sends for this cause: 1001 when it ends a
    /// session itself, 1009 or 1002 to the side that broke a rule; `None`
    /// when a peer closed or vanished (what it sent, if anything, is passed on).
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::IdleTimeout { .. }
            | Self::DomainOffline
            | Self::DomainRemoved
            | Self::Operator
            | Self::Shutdown => Some(close::GOING_AWAY),
            Self::MessageTooBig { .. } => Some(close::MESSAGE_TOO_BIG),
            Self::ProtocolError { .. } => Some(close::PROTOCOL_ERROR),
            Self::ClientClosed
            | Self::OriginClosed
            | Self::ClientVanished
            | Self::OriginVanished => None,
        }
    }

    /// The close frame both sides get when the relay ends a session itself
    /// (idle, operator, shutdown, config): 1001 and the cause in words.
    pub fn relay_close(&self) -> Option<CloseInfo> {
        let code = self.code().filter(|&c| c == close::GOING_AWAY)?;
        Some(CloseInfo::new(code, self.to_string()))
    }
}

impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IdleTimeout { timeout_secs } => write!(f, "idle timeout ({timeout_secs} s)"),
            Self::MessageTooBig { from_client } => {
                write!(f, "message too big from {}", side(*from_client))
            }
            Self::ProtocolError {
                from_client,
                detail,
            } => write!(f, "protocol error from {}: {detail}", side(*from_client)),
            other => f.write_str(other.label()),
        }
    }
}

fn side(from_client: bool) -> &'static str {
    if from_client { "client" } else { "origin" }
}

/// Something that happened to a session or a connection attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "event")]
pub enum RelayEvent {
    Opened {
        id: SessionId,
        #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
        at: SystemTime,
        domain: DomainName,
        client: SocketAddr,
        origin: String,
        path: String,
        subprotocol: Option<String>,
    },
    Closed {
        id: SessionId,
        #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
        at: SystemTime,
        domain: DomainName,
        client: SocketAddr,
        origin: String,
        cause: CloseCause,
        /// The close frame the client received (from the origin or the relay).
        to_client: Option<CloseInfo>,
        /// The close frame the origin received (from the client or the relay).
        to_origin: Option<CloseInfo>,
        /// How long the session had been idle when it ended.
        #[serde(serialize_with = "seconds", deserialize_with = "from_seconds")]
        idle: Duration,
        #[serde(serialize_with = "seconds", deserialize_with = "from_seconds")]
        duration: Duration,
    },
    Refused {
        #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
        at: SystemTime,
        client: SocketAddr,
        domain: Option<DomainName>,
        /// HTTP status answered, or `None` when the connection was dropped.
        status: Option<u16>,
        reason: String,
    },
    /// A new configuration took effect (serve's reload, a UI save).
    ConfigApplied {
        #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
        at: SystemTime,
        detail: String,
    },
    /// A new configuration was refused; the old one stays in force.
    ConfigRejected {
        #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
        at: SystemTime,
        error: String,
    },
    /// A control-socket client was turned away (another user's process).
    ControlRefused {
        #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
        at: SystemTime,
        uid: u32,
        pid: Option<i32>,
        reason: String,
    },
    /// The listener could not accept (e.g. out of file descriptors).
    AcceptFailed {
        #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
        at: SystemTime,
        error: String,
    },
}

impl RelayEvent {
    pub fn at(&self) -> SystemTime {
        match self {
            Self::Opened { at, .. }
            | Self::Closed { at, .. }
            | Self::Refused { at, .. }
            | Self::ConfigApplied { at, .. }
            | Self::ConfigRejected { at, .. }
            | Self::ControlRefused { at, .. }
            | Self::AcceptFailed { at, .. } => *at,
        }
    }

    pub fn domain(&self) -> Option<&DomainName> {
        match self {
            Self::Opened { domain, .. } | Self::Closed { domain, .. } => Some(domain),
            Self::Refused { domain, .. } => domain.as_ref(),
            _ => None,
        }
    }
}

/// One log line per event, for `serve`'s text output and the event log.
impl fmt::Display for RelayEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Opened {
                id,
                domain,
                client,
                origin,
                path,
                subprotocol,
                ..
            } => {
                write!(
                    f,
                    "opened  #{id} {domain} client={} origin={origin} path={}",
                    LogAddr(client),
                    LogText(path)
                )?;
                if let Some(p) = subprotocol {
                    write!(f, " subprotocol={}", LogText(p))?;
                }
                Ok(())
            }
            Self::Closed {
                id,
                domain,
                client,
                cause,
                to_client,
                to_origin,
                idle,
                duration,
                ..
            } => {
                write!(
                    f,
                    "closed  #{id} {domain} client={} reason=\"{}\" idle={:.1}s duration={:.1}s",
                    LogAddr(client),
                    LogDisplay(cause),
                    idle.as_secs_f64(),
                    duration.as_secs_f64()
                )?;
                write!(f, " to-client={}", CloseOrNone(to_client))?;
                write!(f, " to-origin={}", CloseOrNone(to_origin))
            }
            Self::Refused {
                client,
                domain,
                status,
                reason,
                ..
            } => {
                let status = status.map_or("dropped".to_string(), |s| s.to_string());
                write!(
                    f,
                    "refused {} client={} status={status} reason=\"{}\"",
                    domain.as_deref().unwrap_or("-"),
                    LogAddr(client),
                    LogText(reason)
                )
            }
            Self::ConfigApplied { detail, .. } => {
                write!(f, "config  applied: {}", LogText(detail))
            }
            Self::ConfigRejected { error, .. } => {
                write!(
                    f,
                    "config  rejected, previous config stays in force: {}",
                    LogText(error)
                )
            }
            Self::ControlRefused {
                uid, pid, reason, ..
            } => {
                let pid = pid.map_or("?".to_string(), |p| p.to_string());
                write!(
                    f,
                    "control refused uid={uid} pid={pid} reason=\"{}\"",
                    LogText(reason)
                )
            }
            Self::AcceptFailed { error, .. } => write!(f, "accept  failed: {}", LogText(error)),
        }
    }
}

/// Timestamps as RFC 3339 with milliseconds, for log lines and JSON.
pub fn rfc3339<S: Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*at))
}

/// The other way, for clients of the control socket.
pub fn from_rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
}

fn from_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
}

/// Durations as (fractional) seconds, for JSON.
fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// A close frame on a log line, or `none` (written in place, no `String`).
struct CloseOrNone<'a>(&'a Option<CloseInfo>);

impl fmt::Display for CloseOrNone<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(c) => c.fmt(f),
            None => f.write_str("none"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn log_text_escapes_each_unsafe_character_and_keeps_the_rest() {
        let text = "plain é\"q\\b\nn\rr\tt\u{1b}[0m\u{7f}\u{85}end";
        assert_eq!(
            LogText(text).to_string(),
            "plain é\\\"q\\\\b\\nn\\rr\\tt\\u{1b}[0m\\u{7f}\\u{85}end"
        );
        assert_eq!(LogText("").to_string(), "");
        assert_eq!(LogText("\n").to_string(), "\\n");
    }

    #[test]
    fn log_addresses_read_as_std_writes_them() {
        for addr in [
            "127.0.0.1:1",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.30.40:8080",
            "[::1]:443",
            "[2001:db8::7]:65535",
            "[::ffff:10.0.0.1]:80",
        ] {
            let a: SocketAddr = addr.parse().unwrap();
            assert_eq!(LogAddr(&a).to_string(), a.to_string());
            assert_eq!(LogAddr(&a).to_string(), addr);
        }
    }

    /// Session #7 of app.test closed, 127.0.0.1:1 ↔ 127.0.0.1:2.
    fn closed(
        cause: CloseCause,
        to_client: Option<CloseInfo>,
        to_origin: Option<CloseInfo>,
        idle: Duration,
        duration: Duration,
    ) -> RelayEvent {
        RelayEvent::Closed {
            id: 7,
            at: SystemTime::UNIX_EPOCH,
            domain: "app.test".into(),
            client: "127.0.0.1:1".parse().unwrap(),
            origin: "127.0.0.1:2".into(),
            cause,
            to_client,
            to_origin,
            idle,
            duration,
        }
    }

    #[test]
    fn a_closed_line_reads_as_before() {
        let closed = closed(
            CloseCause::ProtocolError {
                from_client: true,
                detail: "bad \"frame\"\n".into(),
            },
            Some(CloseInfo::new(1002, "protocol error")),
            None,
            Duration::from_millis(1250),
            Duration::from_secs(3),
        );
        assert_eq!(
            closed.to_string(),
            "closed  #7 app.test client=127.0.0.1:1 reason=\"protocol error from client: \
             bad \\\"frame\\\"\\n\" idle=1.2s duration=3.0s \
             to-client=1002 \"protocol error\" to-origin=none"
        );
    }

    #[test]
    fn peer_strings_cannot_forge_a_log_line_or_reach_the_terminal() {
        let forged = "bye\n2026-12-01T00:00:00.000Z opened  #999 app.test\u{1b}[2J\"x=\"y";
        let closed = closed(
            CloseCause::ClientClosed,
            None,
            Some(CloseInfo::new(4000, forged)),
            Duration::ZERO,
            Duration::ZERO,
        );
        let refused = RelayEvent::Refused {
            at: SystemTime::UNIX_EPOCH,
            client: "127.0.0.1:1".parse().unwrap(),
            domain: None,
            status: Some(400),
            reason: format!("the Host header {forged} is bad"),
        };
        for line in [closed.to_string(), refused.to_string()] {
            assert!(!line.contains('\n'), "{line}");
            assert!(!line.chars().any(char::is_control), "{line}");
            assert!(line.contains("bye\\n2026"), "{line}");
            assert!(line.contains("\\u{1b}[2J"), "{line}");
            // The quoted field is not ended early by the peer's quote.
            assert!(line.contains("\\\"x=\\\"y"), "{line}");
        }
    }
}
