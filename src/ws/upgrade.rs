//! The HTTP upgrade both ways (RFC 6455 §4): the key and its accept value,
//! reading header lines the way RFC 9110 §5.3 says, where a head ends, and
//! the checks a client makes of a 101 — the relay of its origin's answer,
//! the probe of the server's.

use tungstenite::handshake::derive_accept_key;

pub use tungstenite::handshake::client::generate_key;

/// Request or response headers larger than this are refused (431 / 502).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Header lines in one head, at most.
pub const MAX_HEADERS: usize = 100;

/// The `Sec-WebSocket-Accept` value that answers `key`.
pub fn accept_key(key: &str) -> String {
    derive_accept_key(key.as_bytes())
}

/// RFC 6455 §4.1: the key is 16 random bytes, base64-encoded. Decoded
/// into a buffer on the stack (a key that needs more room than 16 bytes'
/// 24 characters can hold is not valid anyway), not a `Vec` per handshake.
pub fn valid_key(key: &str) -> bool {
    use base64::Engine;
    let mut bytes = [0u8; 18];
    base64::engine::general_purpose::STANDARD
        .decode_slice(key, &mut bytes)
        .is_ok_and(|len| len == 16)
}

/// The start of an upgrade request (its remaining headers and the blank
/// line are the caller's).
pub fn request_head(path: &str, host: &str, key: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
}

/// Why a request or response head cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the headers exceed {} KiB", MAX_HEADER_BYTES / 1024)]
    TooLarge,
    #[error("{0}")]
    Malformed(httparse::Error),
}

/// What `httparse` made of the `buffered` bytes read so far: where the head
/// ends, `None` while it may still be completed, or why it never will.
pub fn head_end(
    parsed: httparse::Result<usize>,
    buffered: usize,
) -> Result<Option<usize>, HeadError> {
    match parsed {
        Ok(httparse::Status::Complete(end)) => Ok(Some(end)),
        Ok(httparse::Status::Partial) if buffered < MAX_HEADER_BYTES => Ok(None),
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            Err(HeadError::TooLarge)
        }
        Err(e) => Err(HeadError::Malformed(e)),
    }
}

/// A message's header lines, read the way RFC 9110 §5.3 says: repeated
/// lines of a list header are one list; a header that may appear once is
/// refused when it appears twice.
pub struct HeaderLines<'h, 'b>(pub &'h [httparse::Header<'b>]);

impl<'h> HeaderLines<'h, '_> {
    pub fn values(&self, name: &'h str) -> impl Iterator<Item = &'h [u8]> + 'h {
        let lines: &'h [httparse::Header<'_>] = self.0;
        lines
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    pub fn present(&self, name: &'h str) -> bool {
        self.values(name).next().is_some()
    }

    /// A header that may appear at most once, as text.
    pub fn single(&self, name: &'h str) -> Result<Option<&'h str>, String> {
        let mut values = self.values(name);
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(format!("more than one {name} header"));
        }
        text(name, first).map(Some)
    }

    /// Every element of a comma-separated list header, over all its lines.
    pub fn list(&self, name: &'h str) -> Result<Vec<&'h str>, String> {
        let mut elements = Vec::new();
        for value in self.values(name) {
            elements.extend(
                text(name, value)?
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty()),
            );
        }
        Ok(elements)
    }
}

fn text<'v>(name: &str, value: &'v [u8]) -> Result<&'v str, String> {
    std::str::from_utf8(value)
        .map(str::trim)
        .map_err(|_| format!("the {name} header is not valid text"))
}

/// Whether a list header holds `token` (tokens compare case-insensitively).
pub fn has_token(list: &[&str], token: &str) -> bool {
    list.iter().any(|t| t.eq_ignore_ascii_case(token))
}

/// What the client offered in its upgrade request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offer<'a> {
    pub key: &'a str,
    /// `Sec-WebSocket-Protocol`, comma-separated.
    pub protocols: Option<&'a str>,
    /// `Sec-WebSocket-Extensions`, comma-separated, with parameters.
    pub extensions: Option<&'a str>,
}

/// What a valid 101 chose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// The server's `Sec-WebSocket-Accept`, checked against the key: a
    /// relay answering its client with the same key passes it on instead
    /// of computing it again.
    pub accept: String,
    pub protocol: Option<String>,
    pub extensions: Option<String>,
}

/// A 101 that is not a valid answer to the offer: the client must fail the
/// connection (RFC 6455 §4.1). Displayed after "the server " or "origin ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Bad101 {
    #[error("answered 101 without Upgrade: websocket (Upgrade: {0:?})")]
    NotWebSocket(String),
    #[error("answered 101 without Connection: Upgrade")]
    NoConnectionUpgrade,
    #[error(
        "answered 101 with a wrong Sec-WebSocket-Accept ({0:?}): a proxy on the path may be \
         rewriting the handshake"
    )]
    WrongAccept(String),
    #[error("chose the subprotocol {0:?}, which the client did not offer")]
    Subprotocol(String),
    #[error("accepted the extension {0:?}, which the client did not offer")]
    Extension(String),
    #[error("answered 101 with a bad header: {0}")]
    Header(String),
}

/// Checks a 101 as strictly as a client must: a WebSocket upgrade, the
/// right accept key, and nothing the client did not offer.
pub fn check_101(lines: &HeaderLines<'_, '_>, offer: Offer<'_>) -> Result<Accepted, Bad101> {
    let upgrade = lines.list("Upgrade").map_err(Bad101::Header)?;
    if upgrade.len() != 1 || !has_token(&upgrade, "websocket") {
        return Err(Bad101::NotWebSocket(upgrade.join(", ")));
    }
    if !has_token(
        &lines.list("Connection").map_err(Bad101::Header)?,
        "upgrade",
    ) {
        return Err(Bad101::NoConnectionUpgrade);
    }
    let accept = lines
        .single("Sec-WebSocket-Accept")
        .map_err(Bad101::Header)?
        .unwrap_or("");
    let expected = accept_key(offer.key);
    if accept != expected {
        return Err(Bad101::WrongAccept(accept.to_string()));
    }
    let protocol = lines
        .single("Sec-WebSocket-Protocol")
        .map_err(Bad101::Header)?
        .map(str::to_string);
    if let Some(p) = &protocol
        && !offer
            .protocols
            .is_some_and(|o| o.split(',').any(|x| x.trim() == p))
    {
        return Err(Bad101::Subprotocol(p.clone()));
    }
    let extensions = lines
        .list("Sec-WebSocket-Extensions")
        .map_err(Bad101::Header)?;
    let offered = |name: &str| {
        offer.extensions.is_some_and(|o| {
            o.split(',')
                .map(|x| x.split(';').next().unwrap_or("").trim())
                .any(|x| x.eq_ignore_ascii_case(name))
        })
    };
    for extension in &extensions {
        let name = extension.split(';').next().unwrap_or("").trim();
        if !offered(name) {
            return Err(Bad101::Extension(name.to_string()));
        }
    }
    Ok(Accepted {
        accept: expected,
        protocol,
        extensions: (!extensions.is_empty()).then(|| extensions.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lines<'a>(headers: &'a [(&'a str, &'a str)]) -> Vec<httparse::Header<'a>> {
        headers
            .iter()
            .map(|(name, value)| httparse::Header {
                name,
                value: value.as_bytes(),
            })
            .collect()
    }

    #[test]
    fn a_101_is_checked_against_the_offer() {
        let key = generate_key();
        let accept = accept_key(&key);
        let good = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept.as_str()),
            ("Sec-WebSocket-Protocol", "chat"),
        ];
        let offer = Offer {
            key: &key,
            protocols: Some("v2, chat"),
            extensions: None,
        };
        let headers = lines(&good);
        let accepted = check_101(&HeaderLines(&headers), offer).unwrap();
        assert_eq!(accepted.protocol.as_deref(), Some("chat"));
        let unoffered = Offer {
            protocols: None,
            ..offer
        };
        assert_eq!(
            check_101(&HeaderLines(&headers), unoffered),
            Err(Bad101::Subprotocol("chat".into()))
        );
        let headers = lines(&good[1..]);
        assert!(matches!(
            check_101(&HeaderLines(&headers), offer),
            Err(Bad101::NotWebSocket(_))
        ));
    }

    #[test]
    fn heads_end_or_grow_or_fail() {
        assert_eq!(head_end(Ok(httparse::Status::Complete(7)), 9), Ok(Some(7)));
        assert_eq!(head_end(Ok(httparse::Status::Partial), 10), Ok(None));
        assert_eq!(
            head_end(Ok(httparse::Status::Partial), MAX_HEADER_BYTES),
            Err(HeadError::TooLarge)
        );
        assert!(valid_key(&generate_key()) && !valid_key("short"));
    }
}
