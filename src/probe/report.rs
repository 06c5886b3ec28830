//! What the probe prints: one step per line as it happens (human form with
//! a time column, or one JSON object per line), then a summary.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::phase::{Failure, Phase};
use super::{Mode, Outcome, ProbeOptions};
use crate::ws::close::{self, CloseInfo, meaning as close_meaning};

/// Milliseconds, rounded to microseconds.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Seconds, rounded to milliseconds.
pub fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e3).round() / 1e3
}

/// What a heartbeat is and what answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Beat {
    /// A text message, answered by its echo.
    Text,
    /// A ping frame, answered by a pong.
    Ping,
}

impl Beat {
    fn answer(self) -> &'static str {
        match self {
            Self::Text => "echo",
            Self::Ping => "pong",
        }
    }
}

/// One thing that happened, in order.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    Start {
        url: String,
        host: String,
        mode: String,
    },
    Connected {
        addr: SocketAddr,
        /// `None` when the URL holds an IP address.
        dns_ms: Option<f64>,
        tcp_ms: f64,
    },
    Tls {
        server_name: String,
        version: String,
        ms: f64,
    },
    Handshake {
        status: u16,
        reason: String,
        ms: f64,
        subprotocol: Option<String>,
        /// Response headers as `[name, value]` pairs, in order.
        headers: Vec<(String, String)>,
        /// The start of the body of a refusal.
        body: Option<String>,
    },
    /// A heartbeat went out (JSON only; the human form shows its round trip).
    Heartbeat {
        seq: u64,
        kind: Beat,
    },
    RoundTrip {
        seq: u64,
        kind: Beat,
        rtt_ms: f64,
    },
    NoAnswer {
        seq: u64,
        kind: Beat,
        after_s: f64,
    },
    Received {
        /// `text`, `binary`, `ping` or `pong`.
        kind: &'static str,
        bytes: usize,
        text: Option<String>,
    },
    /// The probe starts the closing handshake.
    Closing {
        why: String,
        code: u16,
        reason: String,
    },
    Failed {
        phase: Phase,
        error: String,
    },
}

/// Which side ended the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Server,
    Probe,
}

/// How the connection ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloseReport {
    pub code: u16,
    pub reason: String,
    pub meaning: &'static str,
    /// `false`: no close frame; `code` is 1006, as WebSocket APIs report it.
    pub frame: bool,
    /// How TCP ended when there was no close frame, or why the probe closed.
    pub detail: Option<String>,
    /// When the probe closed: the server's close frame in answer, if any.
    pub answer: Option<CloseInfo>,
}

impl CloseReport {
    pub fn frame(close: Option<&CloseInfo>) -> Self {
        let (code, reason) = close.map_or((close::NO_STATUS, String::new()), |c| {
            (c.code, c.reason.clone())
        });
        Self {
            code,
            reason,
            meaning: close_meaning(code),
            frame: true,
            detail: None,
            answer: None,
        }
    }

    pub fn no_frame(detail: impl Into<String>) -> Self {
        Self {
            code: close::ABNORMAL,
            reason: String::new(),
            meaning: close_meaning(close::ABNORMAL),
            frame: false,
            detail: Some(detail.into()),
            answer: None,
        }
    }

    /// `1001 "idle timeout (2 s)"`.
    pub fn code_and_reason(&self) -> String {
        CloseInfo::new(self.code, self.reason.clone()).to_string()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HeartbeatStats {
    pub sent: u64,
    pub answered: u64,
    pub rtt_min_ms: Option<f64>,
    pub rtt_avg_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
}

impl HeartbeatStats {
    pub fn answered(&mut self, rtt_ms: f64) {
        let n = self.answered as f64;
        self.answered += 1;
        self.rtt_min_ms = Some(self.rtt_min_ms.map_or(rtt_ms, |m| m.min(rtt_ms)));
        self.rtt_max_ms = Some(self.rtt_max_ms.map_or(rtt_ms, |m| m.max(rtt_ms)));
        let avg = self
            .rtt_avg_ms
            .map_or(rtt_ms, |a| (a * n + rtt_ms) / (n + 1.0));
        self.rtt_avg_ms = Some((avg * 1e3).round() / 1e3);
    }
}

/// The final object: how it ended, and what that suggests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub outcome: Outcome,
    pub exit_code: u8,
    /// Where connecting failed, when the connection never opened.
    pub failed_phase: Option<Phase>,
    /// The upgrade's HTTP status, when the server answered.
    pub status: Option<u16>,
    pub closed_by: Option<Side>,
    pub close: Option<CloseReport>,
    /// At the close: time since the last frame from the server (or since the 101).
    pub idle_received_s: Option<f64>,
    /// At the close: time since the last frame to the server (or since the 101).
    pub idle_sent_s: Option<f64>,
    /// From the 101 to the close.
    pub connected_s: Option<f64>,
    /// From the start of the probe to its end.
    pub duration_s: f64,
    /// Messages and pings the server sent on its own (echoes and pongs excluded).
    pub received: u64,
    pub heartbeats: HeartbeatStats,
    pub diagnosis: Option<String>,
}

impl Summary {
    pub fn failed(failure: Failure, elapsed: Duration) -> Self {
        let outcome = failure.phase.outcome();
        Self {
            outcome,
            exit_code: outcome.exit_code(),
            failed_phase: Some(failure.phase),
            status: failure.status,
            closed_by: None,
            close: None,
            idle_received_s: None,
            idle_sent_s: None,
            connected_s: None,
            duration_s: secs(elapsed),
            received: 0,
            heartbeats: HeartbeatStats::default(),
            diagnosis: None,
        }
    }

    /// The idle time at the close in both directions: time since any frame.
    pub fn idle(&self) -> Option<f64> {
        Some(self.idle_received_s?.min(self.idle_sent_s?))
    }
}

/// Headers every upgrade answer has; the human form leaves them out.
const ROUTINE_HEADERS: [&str; 6] = [
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "content-length",
    "date",
];
/// Lines of a refusal's body shown in the human form.
const BODY_LINES: usize = 5;
/// Characters of a received text message shown in the human form.
const TEXT_PREVIEW: usize = 80;
/// Width of the time and label columns, for continuation lines.
const INDENT: usize = 24;

/// Writes steps and the summary. Write errors (a closed pipe) are ignored:
/// the probe's outcome, and its exit code, do not depend on its audience.
pub struct Reporter<'a> {
    out: &'a mut dyn Write,
    json: bool,
    start: Instant,
}

impl<'a> Reporter<'a> {
    pub fn new(out: &'a mut dyn Write, json: bool, start: Instant) -> Self {
        Self { out, json, start }
    }

    /// Time since the probe started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn start(&mut self, options: &ProbeOptions) {
        let url = options.target.to_string();
        let host = options
            .host
            .clone()
            .unwrap_or_else(|| options.target.authority());
        let mut mode = match options.mode {
            Mode::Silent => "silent: sending nothing".to_string(),
            Mode::Heartbeat { every, ping: false } => {
                format!(
                    "a text heartbeat every {}, expecting its echo",
                    human_secs(every)
                )
            }
            Mode::Heartbeat { every, ping: true } => {
                format!("a ping every {}, expecting a pong", human_secs(every))
            }
        };
        match (options.count, options.duration) {
            (Some(n), _) => mode.push_str(&format!("; stopping after {n} heartbeats")),
            (None, Some(d)) => mode.push_str(&format!("; stopping after {}", human_secs(d))),
            (None, None) => mode.push_str("; until the connection ends"),
        }
        if self.json {
            self.step(Step::Start { url, host, mode });
        } else {
            self.line(&format!("probe {url} (Host: {host}), {mode}"));
        }
    }

    pub fn step(&mut self, step: Step) {
        let t = secs(self.start.elapsed());
        if self.json {
            #[derive(Serialize)]
            struct Line<'s> {
                t: f64,
                #[serde(flatten)]
                step: &'s Step,
            }
            if let Ok(json) = serde_json::to_string(&Line { t, step: &step }) {
                self.line(&json);
            }
            return;
        }
        let Some((label, lines)) = human(&step) else {
            return;
        };
        let mut text = format!(
            "{t:>9.3} s  {label:<10} {}",
            lines.first().map_or("", String::as_str)
        );
        for more in lines.iter().skip(1) {
            text.push_str(&format!("\n{:INDENT$}{more}", ""));
        }
        self.line(&text);
    }

    pub fn summary(&mut self, summary: &Summary) {
        if self.json {
            #[derive(Serialize)]
            struct Line<'s> {
                step: &'static str,
                #[serde(flatten)]
                summary: &'s Summary,
            }
            if let Ok(json) = serde_json::to_string(&Line {
                step: "summary",
                summary,
            }) {
                self.line(&json);
            }
            return;
        }
        let mut text = String::from("\n");
        let mut row = |label: &str, value: String| text.push_str(&format!("{label:<11} {value}\n"));
        if let (Some(close), Some(by)) = (&summary.close, summary.closed_by) {
            row("closed", closed_line(close, by));
        }
        if let (Some(rx), Some(tx)) = (summary.idle_received_s, summary.idle_sent_s) {
            row(
                "idle",
                format!("nothing received for {rx:.2} s, nothing sent for {tx:.2} s"),
            );
        }
        let beats = &summary.heartbeats;
        if beats.sent > 0 {
            let mut value = format!("{} sent, {} answered", beats.sent, beats.answered);
            if let (Some(min), Some(avg), Some(max)) =
                (beats.rtt_min_ms, beats.rtt_avg_ms, beats.rtt_max_ms)
            {
                value.push_str(&format!(
                    "; round trip min {min:.2} / avg {avg:.2} / max {max:.2} ms"
                ));
            }
            row("heartbeats", value);
        }
        match summary.connected_s {
            Some(connected) => row(
                "duration",
                format!(
                    "{connected:.2} s connected, {:.2} s in total",
                    summary.duration_s
                ),
            ),
            None => row("duration", format!("{:.2} s", summary.duration_s)),
        }
        if let Some(diagnosis) = &summary.diagnosis {
            row("diagnosis", diagnosis.clone());
        }
        row(
            "exit",
            format!("{}: {}", summary.exit_code, summary.outcome.describe()),
        );
        self.line(text.trim_end());
    }

    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }
}

/// `2 s`, `1.5 s`.
fn human_secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// The label and lines of a step in the human form (`None`: not shown).
fn human(step: &Step) -> Option<(&'static str, Vec<String>)> {
    let one = |label, text: String| Some((label, vec![text]));
    match step {
        Step::Start { .. } | Step::Heartbeat { .. } => None,
        Step::Connected {
            addr,
            dns_ms,
            tcp_ms,
        } => {
            let dns = dns_ms.map_or(String::new(), |d| format!(" (DNS {d:.1} ms)"));
            one("connected", format!("{addr} in {tcp_ms:.1} ms{dns}"))
        }
        Step::Tls {
            server_name,
            version,
            ms,
        } => one("tls", format!("{version} with {server_name} in {ms:.1} ms")),
        Step::Handshake {
            status,
            reason,
            ms,
            subprotocol,
            headers,
            body,
        } => {
            let mut first = format!("{status} {reason} in {ms:.1} ms");
            if *status == 101 {
                match subprotocol {
                    Some(p) => first.push_str(&format!(", subprotocol {p}")),
                    None => first.push_str(", no subprotocol"),
                }
            } else {
                first.push_str(" (not 101 Switching Protocols: the upgrade was refused)");
            }
            let mut lines = vec![first];
            lines.extend(
                headers
                    .iter()
                    .filter(|(name, _)| {
                        !ROUTINE_HEADERS.contains(&name.to_ascii_lowercase().as_str())
                    })
                    .map(|(name, value)| format!("{}: {value}", name.to_ascii_lowercase())),
            );
            if let Some(body) = body {
                let mut body_lines = body.lines().filter(|l| !l.trim().is_empty());
                match body_lines.next() {
                    Some(line) => lines.push(format!("body: {line}")),
                    None => lines.push("body: (empty)".to_string()),
                }
                lines.extend(
                    body_lines
                        .take(BODY_LINES - 1)
                        .map(|l| format!("      {l}")),
                );
            }
            Some(("handshake", lines))
        }
        Step::RoundTrip { seq, kind, rtt_ms } => one(
            "round trip",
            format!(
                "#{seq} {} → {} in {rtt_ms:.2} ms",
                beat_name(*kind),
                kind.answer()
            ),
        ),
        Step::NoAnswer { seq, kind, after_s } => one(
            "no answer",
            format!(
                "#{seq} {}: no {} within {after_s:.1} s",
                beat_name(*kind),
                kind.answer()
            ),
        ),
        Step::Received { kind, bytes, text } => one(
            "received",
            match (kind, text) {
                (_, Some(text)) => format!("text {}", preview(text)),
                (&"ping", _) => format!("ping, {bytes} bytes (answered with a pong)"),
                (&"pong", _) => format!("pong, {bytes} bytes (not an answer to a heartbeat)"),
                _ => format!("{kind}, {bytes} bytes"),
            },
        ),
        Step::Closing { why, code, reason } => one(
            "closing",
            format!(
                "{why}: sending close {}",
                CloseInfo::new(*code, reason.clone())
            ),
        ),
        Step::Failed { error, .. } => one("failed", error.clone()),
    }
}

fn beat_name(kind: Beat) -> &'static str {
    match kind {
        Beat::Text => "text",
        Beat::Ping => "ping",
    }
}

/// A quoted, escaped, shortened copy of a text message.
fn preview(text: &str) -> String {
    let shown: String = text.chars().take(TEXT_PREVIEW).collect();
    let mut quoted = format!("{shown:?}");
    if shown.len() < text.len() {
        quoted.push_str(&format!(" … ({} bytes)", text.len()));
    }
    quoted
}

fn closed_line(close: &CloseReport, by: Side) -> String {
    let code = close.code_and_reason();
    let meaning = close.meaning;
    match (by, close.frame) {
        (Side::Server, true) if close.code == close::NO_STATUS => {
            "by the server: close frame without a status code (reported as 1005)".to_string()
        }
        (Side::Server, true) => format!("by the server: close frame {code} ({meaning})"),
        (_, false) => format!(
            "without a close frame: {} (reported as 1006, {meaning})",
            close.detail.as_deref().unwrap_or("the connection ended")
        ),
        (Side::Probe, true) => {
            let why = close
                .detail
                .as_deref()
                .map_or(String::new(), |d| format!(" ({d})"));
            let answer = close
                .answer
                .as_ref()
                .map_or(String::new(), |a| format!("; the server answered {a}"));
            format!("by the probe: close {code}{why}{answer}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_statistics() {
        let mut stats = HeartbeatStats::default();
        for rtt in [2.0, 1.0, 3.0] {
            stats.answered(rtt);
        }
        assert_eq!(stats.answered, 3);
        assert_eq!(
            (stats.rtt_min_ms, stats.rtt_avg_ms, stats.rtt_max_ms),
            (Some(1.0), Some(2.0), Some(3.0))
        );
    }

    #[test]
    fn close_lines() {
        let idle = CloseReport::frame(Some(&CloseInfo::new(1001, "idle timeout (60 s)")));
        assert_eq!(
            closed_line(&idle, Side::Server),
            "by the server: close frame 1001 \"idle timeout (60 s)\" (going away)"
        );
        let dropped = CloseReport::no_frame("the server closed TCP (EOF)");
        assert_eq!(
            closed_line(&dropped, Side::Server),
            "without a close frame: the server closed TCP (EOF) (reported as 1006, abnormal closure: no close frame)"
        );
        assert_eq!(close_meaning(1014), "bad gateway");
        assert_eq!(close_meaning(4000), "application-defined");
    }

    #[test]
    fn long_text_is_shortened() {
        let text = "x".repeat(200);
        assert!(preview(&text).ends_with("… (200 bytes)"));
        assert_eq!(preview("tick 1"), "\"tick 1\"");
    }
}
