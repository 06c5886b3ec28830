//! The control socket's wire format, shared by the server (in every relay)
//! and the client (shell commands, `attach`). One JSON object per line.
//!
//! The server speaks first, with a [`Hello`]. Then each line the client
//! sends is a [`Request`]; each gets one answer line: `{"ok": true, ...}`
//! with the request's fields, or `{"ok": false, "error": CODE, "message":
//! TEXT}`. `events` with `follow` keeps the connection as a stream of
//! `{"event": {...}}` lines after its answer.
//!
//! Adding a request: one [`Request`] variant and one handler in
//! `server.rs` returning a `Serialize` struct (its fields are the answer's).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::certificates::{Certificates, Served};
use crate::config::{DomainName, Edit};
use crate::relay::heartbeat::{Heartbeat, Rhythm};
use crate::relay::history::{ClientKey, DomainCounts, DomainEvidence, SessionEvidence};
use crate::relay::tls::{CertificateInfo, CertificateSet};
use crate::relay::{
    Direction, FlowSnapshot, FrameKind, MessageGaps, RecentFrame, RelayEvent, SessionId,
    SessionSnapshot, SessionStats,
};

/// The protocol's name in the hello line.
pub const PROTOCOL: &str = "ecdn-console-control";
/// Bumped when a request or answer changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request line accepted (a config edit is well below this).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The first line the server writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`PROTOCOL`].
    pub hello: String,
    pub version: u32,
    /// The relay's build (`ecdn-console --version`).
    pub build: String,
    pub pid: u32,
    /// Where the relay's clients connect.
    pub listen: SocketAddr,
    /// The configuration file the relay runs on.
    pub config: PathBuf,
    pub config_version: u64,
    /// `serve`, or `console` for a console's in-process relay.
    pub mode: String,
}

/// What a client may ask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames)]
#[serde(tag = "request", rename_all = "kebab-case", deny_unknown_fields)]
#[strum(serialize_all = "kebab-case")]
pub enum Request {
    /// The hello again (also a cheap "are you there").
    Hello,
    /// Every live session, optionally of one domain (case-insensitive).
    Sessions {
        #[serde(default)]
        domain: Option<String>,
    },
    /// What changed since an earlier answer of this request: the ids of
    /// every live session, and the sessions that started or passed a frame
    /// since `since` (that answer's `clock`; every session without it). An
    /// attached console on 9,000 idle sessions then moves a list of ids per
    /// refresh, not 9,000 sessions' counters.
    SessionsChanged {
        #[serde(default)]
        since: Option<u64>,
        /// The sessions the client knows of: when they are the relay's,
        /// the answer leaves `ids` out.
        #[serde(default)]
        known: Option<IdSummary>,
        /// Only sessions with ids above this one (the next page).
        #[serde(default)]
        after: Option<SessionId>,
        /// At most this many sessions, lowest ids first; `more` in the
        /// answer says whether any were left out. A brief row counts a
        /// quarter of a session.
        #[serde(default)]
        limit: Option<usize>,
        /// Sessions the client was told of in an earlier answer come as
        /// brief rows in `moved`: what an attached console asks of every
        /// busy session every second is a fifth of a full description.
        /// Left out when false: a relay older than it refuses the field.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        brief: bool,
    },
    /// One session with its recent frames and message gaps.
    Session { id: SessionId },
    /// Closes a session with a close frame to both sides.
    CloseSession {
        id: SessionId,
        /// Default 1001.
        #[serde(default)]
        code: Option<u16>,
        /// Default `closed by operator`.
        #[serde(default)]
        reason: Option<String>,
    },
    /// The ring of recent events; with `follow`, then every new one.
    Events {
        #[serde(default)]
        follow: bool,
    },
    /// The configuration text in force and its version.
    ConfigGet,
    /// Applies an edit made on config `version`; refused with `conflict`
    /// when the relay's config has moved on since.
    ConfigEdit { version: u64, edit: Edit },
    /// Stops the relay (sessions get 1001 `relay shutting down`).
    Stop,
    /// The timeout the last 10 minutes of a domain's sessions call for
    /// (DESIGN §10): the answer's fields are `recommend --json`'s.
    Recommend { domain: String },
    /// The evidence behind the advice (DESIGN §10), for an attached
    /// console to show what the relay's own history shows: every domain's
    /// counts over the last 10 minutes, the sessions cut while alive, and
    /// with `domain` that domain's sessions of the window, ended and live.
    Evidence {
        #[serde(default)]
        domain: Option<String>,
    },
    /// A new relay process takes this one's listeners and sessions over
    /// (DESIGN §7). After the `ok` answer the connection carries the binary
    /// hand-over of `crate::handover`, not JSON lines.
    Takeover { version: u32 },
    /// The reverse: a relay process that handed its sessions to this one
    /// gives the few that finished their handshakes there afterwards. Same
    /// binary hand-over after the `ok`, this relay receiving.
    Give { version: u32 },
}

/// Why a request failed, as a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The line is not JSON.
    BadJson,
    /// JSON, but not a request this relay knows (or a bad field).
    BadRequest,
    /// The line is longer than [`MAX_REQUEST_BYTES`].
    TooLong,
    UnknownSession,
    /// No domain of that name in the relay's configuration.
    UnknownDomain,
    /// A close code a relay may not send.
    BadCloseCode,
    /// The edit was made on an older config version.
    Conflict,
    /// The edit breaks a rule or would not make a valid file.
    Invalid,
    /// Saving failed (I/O), or the relay cannot do it.
    Failed,
    /// This client fell behind a followed event stream.
    Lagged,
    /// Another user's process.
    PermissionDenied,
    /// A hand-over of another version than this relay's.
    VersionMismatch,
}

/// An `{"ok": false, ...}` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: ErrorCode,
    pub message: String,
}

impl ErrorReply {
    /// A request named a domain the relay's config does not have.
    pub fn unknown_domain(name: &str) -> Self {
        Self {
            error: ErrorCode::UnknownDomain,
            message: format!(
                "no domain \"{name}\" in the relay's configuration \
                 (`ecdn-console domains` lists the domains)"
            ),
        }
    }
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FlowInfo {
    pub frames: u64,
    pub messages: u64,
    pub bytes: u64,
    /// Seconds since the last frame this way; `None`: none yet.
    pub last_frame_secs_ago: Option<f64>,
}

/// One live session (`sessions --json` prints these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: SessionId,
    pub domain: String,
    pub client: SocketAddr,
    pub origin: String,
    pub path: String,
    pub age_secs: f64,
    pub idle_secs: f64,
    /// `None`: no idle limit.
    pub timeout_secs: Option<f64>,
    /// Seconds before the idle deadline; `None`: no idle limit.
    pub remaining_secs: Option<f64>,
    pub to_origin: FlowInfo,
    pub to_client: FlowInfo,
    pub last_frame: Option<(Direction, FrameKind)>,
    /// The relay worker (thread) the session runs on.
    #[serde(default)]
    pub worker: u16,
    /// Gaps between data messages each way (the heartbeat evidence).
    #[serde(default)]
    pub gaps_client_to_origin: GapsInfo,
    #[serde(default)]
    pub gaps_origin_to_client: GapsInfo,
}

/// Message gaps of one direction (the heartbeat evidence).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct GapsInfo {
    pub samples: usize,
    pub median_secs: Option<f64>,
    pub max_secs: Option<f64>,
}

/// A session's page: its counters, message gaps and recent frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionDetail {
    #[serde(flatten)]
    pub session: SessionInfo,
    pub recent_frames: Vec<FrameInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrameInfo {
    /// Seconds after the session started.
    pub at_secs: f64,
    pub direction: Direction,
    pub kind: FrameKind,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionsReply {
    pub sessions: Vec<SessionInfo>,
}

/// A set of session ids, told apart cheaply: the count and the sum. Ids
/// only grow, so a set that lost some sessions and gained as many has a
/// larger sum; equal summaries are the same set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IdSummary {
    pub count: usize,
    pub sum: u64,
}

impl IdSummary {
    pub fn of(ids: impl IntoIterator<Item = SessionId>) -> Self {
        ids.into_iter().fold(Self::default(), |s, id| Self {
            count: s.count + 1,
            sum: s.sum.wrapping_add(id),
        })
    }
}

/// The answer to `sessions-changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangesReply {
    /// The relay's clock (ms) when the answer was made: the next `since`.
    pub clock: u64,
    /// Every live session; left out when `known` matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<SessionId>>,
    /// The sessions that started or passed a frame since `since` (with
    /// `brief`: only those the client has not been told of yet).
    pub changed: Vec<SessionInfo>,
    /// With `brief`: the sessions the client knows that passed a frame
    /// since `since`, as brief rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved: Vec<BriefInfo>,
    /// `limit` left sessions out: ask again with `after` = the last id.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
}

/// A session the client already knows, as a brief row: only what moves,
/// in one JSON array (docs/CONTROL.md) — `[id, idle_ms, remaining_ms,
/// to_origin, to_client, last_frame, gaps_client_to_origin,
/// gaps_origin_to_client]`. Times are whole milliseconds: a full row's
/// seconds are rounded to them too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BriefInfo(
    pub SessionId,
    /// Idle, ms.
    pub u64,
    /// Time left before the idle deadline, ms; `None`: no idle limit.
    pub Option<u64>,
    pub BriefFlow,
    pub BriefFlow,
    pub Option<(Direction, FrameKind)>,
    pub BriefGaps,
    pub BriefGaps,
);

/// A flow's counters in a brief row: `[frames, messages, bytes,
/// last_frame_ms_ago]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BriefFlow(pub u64, pub u64, pub u64, pub Option<u64>);

/// Message gaps in a brief row: `[samples, median_ms, max_ms]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BriefGaps(pub usize, pub Option<u64>, pub Option<u64>);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionReply {
    pub session: SessionDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedReply {
    pub closing: SessionId,
    pub code: u16,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsReply {
    pub events: Vec<RelayEvent>,
    /// Whether `{"event": ...}` lines follow.
    pub following: bool,
}

/// One line of a followed event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLine {
    pub event: RelayEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigReply {
    pub version: u64,
    pub path: PathBuf,
    /// The file's text as the relay holds it (comments included).
    pub text: String,
    /// What `[relay] tls-listen` serves. Absent from older relays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
}

/// The certificates a relay serves on `[relay] tls-listen` (the console's
/// Certificate column and line).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TlsInfo {
    /// Where `wss://` clients connect; `null` without `tls-listen`.
    pub listen: Option<SocketAddr>,
    /// `[relay] tls-certificate`: served to every name without its own.
    #[serde(default)]
    pub default: Option<CertificateEntry>,
    /// Domains with a `certificate` of their own, by lowercase name.
    #[serde(default)]
    pub domains: BTreeMap<String, CertificateEntry>,
}

/// One certificate in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateEntry {
    /// The leaf certificate's subject, e.g. `CN=app.test`.
    pub subject: String,
    /// Its expiry, RFC 3339 in UTC (`2027-03-01T00:00:00Z`).
    pub not_after: String,
}

impl TlsInfo {
    /// What a relay with `tls-listen` bound at `listen` and serving `set`
    /// reports (`None`, `None` without `tls-listen`).
    pub fn of(listen: Option<SocketAddr>, set: Option<&CertificateSet>) -> Self {
        let Some(set) = set else {
            return Self::default();
        };
        Self {
            listen,
            default: set.default_info().map(CertificateEntry::of),
            domains: set
                .own_infos()
                // Lower-case on the wire (docs/CONTROL.md).
                .map(|(name, info)| (name.to_ascii_lowercase(), CertificateEntry::of(info)))
                .collect(),
        }
    }

    /// The console's copy (an entry whose date does not parse is left out).
    pub fn certificates(&self) -> Certificates {
        if self.listen.is_none() {
            return Certificates::NoTls;
        }
        Certificates::Served(Served {
            default: self.default.as_ref().and_then(CertificateEntry::info),
            domains: self
                .domains
                .iter()
                .filter_map(|(name, e)| Some((DomainName::from(name.as_str()), e.info()?)))
                .collect(),
        })
    }
}

impl CertificateEntry {
    fn of(info: &CertificateInfo) -> Self {
        Self {
            subject: info.subject.clone(),
            not_after: humantime::format_rfc3339_seconds(info.not_after).to_string(),
        }
    }

    fn info(&self) -> Option<CertificateInfo> {
        Some(CertificateInfo {
            subject: self.subject.clone(),
            not_after: humantime::parse_rfc3339(&self.not_after).ok()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoppingReply {
    pub stopping: bool,
}

/// The answer to `recommend`: the recommendation's fields (DESIGN §10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommendReply {
    #[serde(flatten)]
    pub recommendation: crate::app::advice::Recommendation,
}

/// The answer to `evidence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceReply {
    /// Per domain over the last 10 minutes (domains with none left out).
    pub recent: Vec<RecentInfo>,
    /// Ids of the window's sessions that were cut while alive.
    pub cut_while_alive: Vec<SessionId>,
    /// The asked domain's sessions of the window, ended then live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceInfo>,
}

/// One domain's counts over the last 10 minutes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentInfo {
    pub domain: String,
    pub ended: usize,
    pub idle_cuts: usize,
    pub cut_while_alive: usize,
}

impl RecentInfo {
    pub fn of(domain: &DomainName, c: &DomainCounts) -> Self {
        Self {
            domain: domain.to_string(),
            ended: c.ended,
            idle_cuts: c.idle_cuts,
            cut_while_alive: c.cut_while_alive,
        }
    }

    pub fn counts(&self) -> (DomainName, DomainCounts) {
        let counts = DomainCounts {
            ended: self.ended,
            idle_cuts: self.idle_cuts,
            cut_while_alive: self.cut_while_alive,
        };
        (DomainName::from(self.domain.as_str()), counts)
    }
}

/// A domain's evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceInfo {
    pub domain: String,
    pub sessions: Vec<SessionEvidenceInfo>,
}

/// One session's evidence. Times are seconds, as `sessions` gives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEvidenceInfo {
    pub id: SessionId,
    /// The client's address (without its port) and path (without its
    /// query): who comes back after a cut.
    pub ip: IpAddr,
    pub path: String,
    pub live: bool,
    pub longest_gap_secs: f64,
    /// Idle now (live) or when it ended.
    pub idle_secs: f64,
    /// The heartbeat's median and longest gap, once seen.
    pub heartbeat_secs: Option<(f64, f64)>,
    /// The limit it was cut at for idleness.
    pub idle_cut_secs: Option<f64>,
    pub cut_while_alive: bool,
}

impl From<&DomainEvidence> for EvidenceInfo {
    fn from(e: &DomainEvidence) -> Self {
        Self {
            domain: e.domain.to_string(),
            sessions: e
                .sessions
                .iter()
                .map(|s| SessionEvidenceInfo {
                    id: s.id,
                    ip: s.client.ip,
                    path: s.client.path.to_string(),
                    live: s.live,
                    longest_gap_secs: s.longest_gap.as_secs_f64(),
                    idle_secs: s.idle.as_secs_f64(),
                    heartbeat_secs: s
                        .heartbeat
                        .map(|h| (h.median.as_secs_f64(), h.max.as_secs_f64())),
                    idle_cut_secs: s.idle_cut.map(|d| d.as_secs_f64()),
                    cut_while_alive: s.cut_while_alive,
                })
                .collect(),
        }
    }
}

impl EvidenceInfo {
    pub fn evidence(&self) -> DomainEvidence {
        DomainEvidence {
            domain: DomainName::from(self.domain.as_str()),
            sessions: self
                .sessions
                .iter()
                .map(|s| SessionEvidence {
                    id: s.id,
                    client: ClientKey::new(s.ip, &s.path),
                    live: s.live,
                    longest_gap: duration(s.longest_gap_secs),
                    idle: duration(s.idle_secs),
                    heartbeat: s.heartbeat_secs.map(|(median, max)| Heartbeat {
                        median: duration(median),
                        max: duration(max),
                    }),
                    idle_cut: s.idle_cut_secs.map(duration),
                    cut_while_alive: s.cut_while_alive,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloReply {
    #[serde(flatten)]
    pub hello: Hello,
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Whole milliseconds, rounded as [`secs`] rounds.
fn millis(d: Duration) -> u64 {
    u64::try_from((d.as_nanos() + 500_000) / 1_000_000).unwrap_or(u64::MAX)
}

fn duration(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or_default()
}

impl FlowInfo {
    fn of(f: &FlowSnapshot, now: tokio::time::Instant) -> Self {
        Self {
            frames: f.frames,
            messages: f.messages,
            bytes: f.bytes,
            last_frame_secs_ago: f.last_frame.map(|t| secs(now.saturating_duration_since(t))),
        }
    }

    fn snapshot(&self, now: tokio::time::Instant) -> FlowSnapshot {
        FlowSnapshot {
            frames: self.frames,
            messages: self.messages,
            bytes: self.bytes,
            last_frame: self
                .last_frame_secs_ago
                .and_then(|s| now.checked_sub(duration(s))),
        }
    }
}

impl SessionInfo {
    /// A live session's counters and message gaps at `now`.
    pub fn of_stats(stats: &SessionStats, now: tokio::time::Instant) -> Self {
        Self {
            gaps_client_to_origin: GapsInfo::of(&stats.message_gaps(Direction::ClientToOrigin)),
            gaps_origin_to_client: GapsInfo::of(&stats.message_gaps(Direction::OriginToClient)),
            ..Self::of(&stats.snapshot(now), now)
        }
    }

    /// A snapshot taken at `now` on the relay's clock (no gaps).
    pub fn of(s: &SessionSnapshot, now: tokio::time::Instant) -> Self {
        Self {
            worker: s.worker,
            gaps_client_to_origin: GapsInfo::default(),
            gaps_origin_to_client: GapsInfo::default(),
            id: s.id,
            domain: s.domain.to_string(),
            client: s.client,
            origin: s.origin.to_string(),
            path: s.path.to_string(),
            age_secs: secs(s.age),
            idle_secs: secs(s.idle),
            timeout_secs: s.timeout.map(secs),
            remaining_secs: s.remaining.map(secs),
            to_origin: FlowInfo::of(&s.to_origin, now),
            to_client: FlowInfo::of(&s.to_client, now),
            last_frame: s.last_frame,
        }
    }

    /// Back to a snapshot on this process's clock, as if sampled at `now`.
    pub fn snapshot(&self, now: tokio::time::Instant) -> SessionSnapshot {
        SessionSnapshot {
            id: self.id,
            domain: self.domain.as_str().into(),
            client: self.client,
            origin: self.origin.as_str().into(),
            path: self.path.as_str().into(),
            age: duration(self.age_secs),
            idle: duration(self.idle_secs),
            timeout: self.timeout_secs.map(duration),
            remaining: self.remaining_secs.map(duration),
            to_origin: self.to_origin.snapshot(now),
            to_client: self.to_client.snapshot(now),
            last_frame: self.last_frame,
            worker: self.worker,
        }
    }

    /// The session's message rhythm, as the relay measured it.
    pub fn rhythm(&self) -> Rhythm {
        Rhythm {
            client_to_origin: self.gaps_client_to_origin.gaps(),
            origin_to_client: self.gaps_origin_to_client.gaps(),
        }
    }
}

impl BriefInfo {
    /// A live session's moving parts at `now`.
    pub fn of_stats(stats: &SessionStats, now: tokio::time::Instant) -> Self {
        let s = stats.moving(now);
        Self(
            stats.id,
            millis(s.idle),
            s.remaining.map(millis),
            BriefFlow::of(&s.to_origin, now),
            BriefFlow::of(&s.to_client, now),
            s.last_frame,
            BriefGaps::of(&stats.message_gaps(Direction::ClientToOrigin)),
            BriefGaps::of(&stats.message_gaps(Direction::OriginToClient)),
        )
    }

    pub fn id(&self) -> SessionId {
        self.0
    }

    /// Brings `s`, the client's copy of this session, to what the row
    /// says, on this process's clock at `now` (the row was made at `now`
    /// on the relay's).
    pub fn apply(&self, s: &mut SessionSnapshot, now: tokio::time::Instant) {
        let Self(_, idle, remaining, to_origin, to_client, last_frame, ..) = *self;
        s.idle = Duration::from_millis(idle);
        s.remaining = remaining.map(Duration::from_millis);
        s.to_origin = to_origin.snapshot(now);
        s.to_client = to_client.snapshot(now);
        s.last_frame = last_frame;
    }

    /// The session's message rhythm, as the relay measured it.
    pub fn rhythm(&self) -> Rhythm {
        Rhythm {
            client_to_origin: self.6.gaps(),
            origin_to_client: self.7.gaps(),
        }
    }
}

impl BriefFlow {
    fn of(f: &FlowSnapshot, now: tokio::time::Instant) -> Self {
        Self(
            f.frames,
            f.messages,
            f.bytes,
            f.last_frame
                .map(|t| millis(now.saturating_duration_since(t))),
        )
    }

    fn snapshot(self, now: tokio::time::Instant) -> FlowSnapshot {
        FlowSnapshot {
            frames: self.0,
            messages: self.1,
            bytes: self.2,
            last_frame: self
                .3
                .and_then(|ms| now.checked_sub(Duration::from_millis(ms))),
        }
    }
}

impl BriefGaps {
    fn of(g: &MessageGaps) -> Self {
        Self(g.samples, g.median.map(millis), g.max.map(millis))
    }

    fn gaps(self) -> MessageGaps {
        MessageGaps {
            samples: self.0,
            median: self.1.map(Duration::from_millis),
            max: self.2.map(Duration::from_millis),
        }
    }
}

impl GapsInfo {
    pub fn of(g: &MessageGaps) -> Self {
        Self {
            samples: g.samples,
            median_secs: g.median.map(secs),
            max_secs: g.max.map(secs),
        }
    }

    pub fn gaps(&self) -> MessageGaps {
        MessageGaps {
            samples: self.samples,
            median: self.median_secs.map(duration),
            max: self.max_secs.map(duration),
        }
    }
}

impl FrameInfo {
    pub fn of(f: &RecentFrame) -> Self {
        Self {
            at_secs: secs(f.at),
            direction: f.direction,
            kind: f.kind,
            len: f.len,
        }
    }

    pub fn frame(&self) -> RecentFrame {
        RecentFrame {
            at: duration(self.at_secs),
            direction: self.direction,
            kind: self.kind,
            len: self.len,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// The names a bad request's answer lists are the ones the relay reads.
    #[test]
    fn every_listed_request_name_is_one_the_relay_reads() {
        use strum::VariantNames;
        assert!(Request::VARIANTS.contains(&"sessions-changed"));
        for name in Request::VARIANTS {
            let err = serde_json::from_str::<Request>(&format!(r#"{{"request":"{name}"}}"#))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(!err.contains("unknown variant"), "{name}: {err}");
        }
    }

    #[test]
    fn requests_read_as_documented() {
        let r: Request = serde_json::from_str(r#"{"request":"sessions"}"#).unwrap();
        assert_eq!(r, Request::Sessions { domain: None });
        let r: Request =
            serde_json::from_str(r#"{"request":"close-session","id":7,"code":4000}"#).unwrap();
        assert_eq!(
            r,
            Request::CloseSession {
                id: 7,
                code: Some(4000),
                reason: None
            }
        );
        let r: Request = serde_json::from_str(
            r#"{"request":"config-edit","version":3,"edit":{"edit":"set-websocket","domain":"a.test","switch":"on","timeout":45}}"#,
        )
        .unwrap();
        assert!(matches!(r, Request::ConfigEdit { version: 3, .. }));
        assert!(serde_json::from_str::<Request>(r#"{"request":"nope"}"#).is_err());
        // A misspelt field is an error, not silently the default.
        assert!(serde_json::from_str::<Request>(r#"{"request":"sessions","domian":"a"}"#).is_err());
    }

    #[test]
    fn certificates_travel_in_the_config_answer_and_older_relays_omit_them() {
        let info = CertificateInfo {
            subject: "CN=app.test".into(),
            not_after: std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        };
        let tls = TlsInfo {
            listen: Some("127.0.0.1:8443".parse().unwrap()),
            default: None,
            domains: BTreeMap::from([("app.test".to_string(), CertificateEntry::of(&info))]),
        };
        let reply = ConfigReply {
            version: 2,
            path: "/c.toml".into(),
            text: String::new(),
            tls: Some(tls),
        };
        let line = serde_json::to_string(&reply).unwrap();
        assert!(
            line.contains(r#""domains":{"app.test":{"subject":"CN=app.test","not_after":"2027-01-15T08:00:00Z"}}"#),
            "{line}"
        );
        let back: ConfigReply = serde_json::from_str(&line).unwrap();
        let Some(Certificates::Served(served)) = back.tls.map(|t| t.certificates()) else {
            panic!("no certificates")
        };
        assert_eq!(served.domains.get(&"app.test".into()), Some(&info));
        // A relay before this field: the console says it does not know.
        let old: ConfigReply =
            serde_json::from_str(r#"{"version":1,"path":"/c.toml","text":""}"#).unwrap();
        assert_eq!(old.tls, None);
        let no_tls = TlsInfo::of(None, None);
        assert_eq!(no_tls.certificates(), Certificates::NoTls);
        assert!(
            serde_json::to_string(&no_tls)
                .unwrap()
                .contains(r#""listen":null"#)
        );
    }
}
