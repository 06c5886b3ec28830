//! The one-line diagnosis under the summary: what the outcome says about
//! the path, and what to do about it. Only where it helps — a connect or
//! TLS error already says everything in its own line.

use super::report::Summary;
use super::{Mode, Outcome};
use crate::ws::close;

/// Below this much silence a close is not attributed to an idle timeout.
const MIN_IDLE_SECS: f64 = 1.0;

pub fn diagnose(summary: &Summary, mode: Mode) -> Option<String> {
    match summary.outcome {
        Outcome::HandshakeRefused => summary.status.and_then(refusal),
        Outcome::ConnectFailed | Outcome::TlsFailed => None,
        Outcome::ProtocolError => Some(
            "the server's frames break the WebSocket protocol (RFC 6455): check that the URL \
             is a WebSocket endpoint and that no proxy on the path rewrites the stream"
                .into(),
        ),
        Outcome::Finished => finished(summary, mode),
        Outcome::ServerClosed | Outcome::Dropped => closed(summary, mode),
    }
}

fn finished(summary: &Summary, mode: Mode) -> Option<String> {
    let connected = summary.connected_s?;
    let beats = &summary.heartbeats;
    match mode {
        Mode::Silent if summary.received == 0 => Some(format!(
            "nothing closed the connection during {connected:.1} s of silence: any idle timeout \
             on this path is longer than that"
        )),
        Mode::Silent => Some(format!(
            "the connection stayed up {connected:.1} s while the probe sent nothing; the server's \
             own messages kept it active"
        )),
        Mode::Heartbeat { ping, .. } if beats.answered < beats.sent => {
            let missing = beats.sent - beats.answered;
            Some(if ping {
                format!(
                    "{missing} of {} pings got no pong: the server or a proxy on the path does \
                     not answer pings",
                    beats.sent
                )
            } else {
                format!(
                    "{missing} of {} heartbeats got no echo: the server may not echo text \
                     messages (try --ping)",
                    beats.sent
                )
            })
        }
        Mode::Heartbeat { every, .. } => Some(format!(
            "the connection stayed up {connected:.1} s with a heartbeat every {} s",
            every.as_secs_f64()
        )),
    }
}

fn closed(summary: &Summary, mode: Mode) -> Option<String> {
    let close = summary.close.as_ref()?;
    let idle = summary.idle()?;
    let what = close.code_and_reason();
    if close.code == close::BAD_GATEWAY {
        return Some(format!(
            "closed with {what}: the server (a relay or proxy) lost its origin, which went away \
             without a close frame; look at the origin"
        ));
    }
    // Heartbeats keep the sending side busy, so only a silent probe can
    // see a whole idle timeout elapse.
    if mode == Mode::Silent && idle >= MIN_IDLE_SECS {
        let timeout = idle.round();
        let every = (timeout / 2.0).floor().max(1.0);
        let advice = format!("send a heartbeat more often than that (e.g. every {every} s)");
        return Some(if close.frame {
            format!(
                "closed after {idle:.1} s idle with {what}: the path has a {timeout} s idle \
                 timeout; {advice}"
            )
        } else {
            format!(
                "dropped without a close frame after {idle:.1} s idle, as CDNs and load \
                 balancers do at their idle timeout: the path likely has a {timeout} s idle \
                 timeout; {advice}"
            )
        });
    }
    if let Mode::Heartbeat { ping: true, every } = mode
        && close.reason.contains("idle")
    {
        return Some(format!(
            "closed with {what} although a ping went out every {} s: the path seems to \
             count only data messages as activity; send text heartbeats (without --ping)",
            every.as_secs_f64()
        ));
    }
    if !close.frame {
        return Some(format!(
            "the connection was cut without a close frame {idle:.1} s after the last frame: a \
             proxy, NAT or firewall on the path, or a crashed server, ended it"
        ));
    }
    let text_heartbeat = matches!(mode, Mode::Heartbeat { ping: false, .. });
    let hint = match close.code {
        close::NORMAL => "the server ended the session normally",
        close::GOING_AWAY => {
            "the server is going away (shutting down or restarting, or a policy of its own)"
        }
        close::PROTOCOL_ERROR => {
            "the server saw a protocol error in what the probe sent; a proxy on the path may be altering frames"
        }
        close::UNSUPPORTED_DATA if text_heartbeat => {
            "the server does not accept text messages: try --ping"
        }
        close::UNSUPPORTED_DATA => "the server does not accept this kind of data",
        close::NO_STATUS => "the server closed without saying why",
        close::POLICY_VIOLATION => {
            "the server's policy refused this client (authentication, origin, rate limits)"
        }
        close::MESSAGE_TOO_BIG => "a message was too big for the server",
        close::INTERNAL_ERROR => "the server hit an internal error: look at its logs",
        close::SERVICE_RESTART => "the server is restarting: reconnect with backoff",
        close::TRY_AGAIN_LATER => "the server is overloaded: reconnect later, with backoff",
        4000..=4999 => {
            "an application-defined code: its meaning is in the server application's documentation"
        }
        _ => return None,
    };
    Some(format!("closed with {what}: {hint}"))
}

fn refusal(status: u16) -> Option<String> {
    let hint = match status {
        301 | 302 | 303 | 307 | 308 => {
            "the server redirects, and WebSocket clients do not follow redirects: probe the Location shown above"
        }
        400 => "the server found the upgrade request malformed: check the path and --header values",
        401 | 403 => {
            "the server wants credentials or refuses this client: add them with --header (Authorization, Cookie), or check its allow-lists"
        }
        404 => {
            "nothing answers this Host and path: check the URL's path and --host (CDNs and relays route by Host)"
        }
        426 => "the server wants another protocol: the URL may not be a WebSocket endpoint",
        429 => "the server is rate-limiting: retry later",
        502 => {
            "a proxy or CDN could not reach its origin, or got an invalid answer from it: check the origin"
        }
        503 => "the service is unavailable: offline, overloaded, or at its session limit",
        504 => "a proxy or CDN got no answer from its origin in time: check the origin",
        500..=599 => "the server failed: look at its logs",
        _ => return None,
    };
    Some(format!("the upgrade was refused with {status}: {hint}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::probe::report::{CloseReport, HeartbeatStats, Side};
    use crate::ws::CloseInfo;

    fn closed_summary(close: CloseReport, idle: f64) -> Summary {
        let outcome = if close.frame {
            Outcome::ServerClosed
        } else {
            Outcome::Dropped
        };
        Summary {
            outcome,
            exit_code: outcome.exit_code(),
            failed_phase: None,
            status: Some(101),
            closed_by: Some(Side::Server),
            close: Some(close),
            idle_received_s: Some(idle),
            idle_sent_s: Some(idle),
            connected_s: Some(idle),
            duration_s: idle,
            received: 0,
            heartbeats: HeartbeatStats::default(),
            diagnosis: None,
        }
    }

    #[test]
    fn a_silent_probe_reads_the_idle_timeout() {
        let close = CloseReport::frame(Some(&CloseInfo::new(1001, "idle timeout (60 s)")));
        assert_eq!(
            diagnose(&closed_summary(close, 60.02), Mode::Silent).unwrap(),
            "closed after 60.0 s idle with 1001 \"idle timeout (60 s)\": the path has a 60 s \
             idle timeout; send a heartbeat more often than that (e.g. every 30 s)"
        );
        let dropped = CloseReport::no_frame("the server closed TCP (EOF)");
        let text = diagnose(&closed_summary(dropped, 15.0), Mode::Silent).unwrap();
        assert!(
            text.contains("without a close frame after 15.0 s idle"),
            "{text}"
        );
    }

    #[test]
    fn codes_and_statuses_get_their_hints() {
        let gone = CloseReport::frame(Some(&CloseInfo::new(1014, "origin went away")));
        assert!(
            diagnose(&closed_summary(gone, 0.2), Mode::Silent)
                .unwrap()
                .contains("origin")
        );
        let app = CloseReport::frame(Some(&CloseInfo::new(4000, "bye")));
        assert!(
            diagnose(&closed_summary(app, 0.2), Mode::Silent)
                .unwrap()
                .contains("application-defined")
        );
        let ping = Mode::Heartbeat {
            every: Duration::from_secs(1),
            ping: true,
        };
        let idle = CloseReport::frame(Some(&CloseInfo::new(1001, "idle timeout (2 s)")));
        assert!(
            diagnose(&closed_summary(idle, 0.5), ping)
                .unwrap()
                .contains("without --ping")
        );
        assert!(refusal(404).unwrap().contains("--host"));
        assert_eq!(refusal(200), None);
    }
}
