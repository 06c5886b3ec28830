//! Close codes (RFC 6455 §7.4 and the IANA registry), what each means, and
//! a close frame's code and reason as one side sent it.

use serde::{Deserialize, Serialize};

pub const NORMAL: u16 = 1000;
pub const GOING_AWAY: u16 = 1001;
pub const PROTOCOL_ERROR: u16 = 1002;
pub const UNSUPPORTED_DATA: u16 = 1003;
/// Never sent: what an API reports for a close frame without a code.
pub const NO_STATUS: u16 = 1005;
/// Never sent: what an API reports when TCP ended without a close frame.
pub const ABNORMAL: u16 = 1006;
pub const INVALID_PAYLOAD: u16 = 1007;
pub const POLICY_VIOLATION: u16 = 1008;
pub const MESSAGE_TOO_BIG: u16 = 1009;
pub const MANDATORY_EXTENSION: u16 = 1010;
pub const INTERNAL_ERROR: u16 = 1011;
pub const SERVICE_RESTART: u16 = 1012;
pub const TRY_AGAIN_LATER: u16 = 1013;
pub const BAD_GATEWAY: u16 = 1014;
pub const TLS_HANDSHAKE: u16 = 1015;

/// Each registered code and its meaning.
const MEANINGS: [(u16, &str); 15] = [
    (NORMAL, "normal closure"),
    (GOING_AWAY, "going away"),
    (PROTOCOL_ERROR, "protocol error"),
    (UNSUPPORTED_DATA, "unsupported data"),
    (NO_STATUS, "no status code"),
    (ABNORMAL, "abnormal closure: no close frame"),
    (INVALID_PAYLOAD, "invalid payload data"),
    (POLICY_VIOLATION, "policy violation"),
    (MESSAGE_TOO_BIG, "message too big"),
    (MANDATORY_EXTENSION, "mandatory extension missing"),
    (INTERNAL_ERROR, "internal server error"),
    (SERVICE_RESTART, "service restart"),
    (TRY_AGAIN_LATER, "try again later"),
    (BAD_GATEWAY, "bad gateway"),
    (TLS_HANDSHAKE, "TLS handshake failure"),
];

/// The meaning of a close code.
pub fn meaning(code: u16) -> &'static str {
    if let Some((_, text)) = MEANINGS.iter().find(|(c, _)| *c == code) {
        return text;
    }
    match code {
        3000..=3999 => "registered for libraries and frameworks",
        4000..=4999 => "application-defined",
        _ => "not a valid close code",
    }
}

/// Codes an endpoint may put in a close frame it sends (RFC 6455 §7.4): a reply to
/// a close echoes the peer's code when it is one of these.
pub fn sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Close reasons must fit a control frame (125 bytes with the 2-byte code).
pub const MAX_REASON: usize = 123;

/// A close frame's code and reason, as one side sent it (or as the relay
/// sent it on that side's behalf). Shown in log lines by `relay::event`,
/// which escapes the peer's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseInfo {
    pub code: u16,
    pub reason: String,
}

impl CloseInfo {
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// The payload of a close frame: the code, then the reason cut (at a
    /// character boundary) to fit a control frame.
    pub fn payload(&self) -> Vec<u8> {
        let reason = truncate_utf8(&self.reason, MAX_REASON);
        let mut payload = Vec::with_capacity(2 + reason.len());
        payload.extend_from_slice(&self.code.to_be_bytes());
        payload.extend_from_slice(reason.as_bytes());
        payload
    }

    /// Reads a close frame's (unmasked) payload; `None` when it has no code
    /// (reported as [`NO_STATUS`]). A 1-byte payload is the caller's to refuse.
    pub fn from_payload(payload: &[u8]) -> Option<Self> {
        match payload {
            [hi, lo, reason @ ..] => Some(Self::new(
                u16::from_be_bytes([*hi, *lo]),
                String::from_utf8_lossy(reason).into_owned(),
            )),
            _ => None,
        }
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meanings_and_sendable_codes() {
        assert_eq!(meaning(BAD_GATEWAY), "bad gateway");
        assert_eq!(meaning(4000), "application-defined");
        assert_eq!(meaning(999), "not a valid close code");
        assert!(sendable(1014) && sendable(4000) && !sendable(NO_STATUS) && !sendable(ABNORMAL));
    }

    #[test]
    fn payloads_fit_a_control_frame_and_read_back() {
        let long = CloseInfo::new(4000, "é".repeat(100));
        let payload = long.payload();
        assert!(payload.len() <= 125);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
        let short = CloseInfo::new(GOING_AWAY, "bye");
        assert_eq!(CloseInfo::from_payload(&short.payload()), Some(short));
        assert_eq!(CloseInfo::from_payload(&[]), None);
    }
}
