//! Both HTTP upgrades, done by hand with `httparse` so the relay keeps any
//! bytes read past a handshake (frames can share a packet with the 101) and
//! so the client is answered only once the origin's answer is known.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use tungstenite::http::StatusCode;

use crate::config::{Domain, DomainName};
pub use crate::ws::upgrade::MAX_HEADER_BYTES;
use crate::ws::upgrade::{
    HeadError, HeaderLines, MAX_HEADERS, Offer, check_101, has_token, head_end, request_head,
    valid_key,
};

/// A connection the relay will not serve, and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `None`: drop the connection without an answer.
    pub status: Option<u16>,
    pub reason: String,
    pub domain: Option<DomainName>,
    /// Headers to add to the refusal (e.g. `Sec-WebSocket-Version: 13`).
    pub headers: Vec<(&'static str, String)>,
    /// The origin's own refusal, passed on in place of the relay's text.
    pub origin_answer: Option<Box<OriginAnswer>>,
}

/// An origin's non-101 answer: the client gets its status, its headers
/// (minus hop-by-hop ones) and its body up to [`MAX_REFUSAL_BODY`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginAnswer {
    pub phrase: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// The most of an origin's refusal body passed on to the client.
pub const MAX_REFUSAL_BODY: usize = 64 * 1024;

/// Statuses that never carry a body (RFC 9110 §6.4.1).
fn bodiless(code: u16) -> bool {
    (100..200).contains(&code) || code == 204 || code == 304
}

impl Refusal {
    pub fn status(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status: Some(status),
            reason: reason.into(),
            domain: None,
            headers: Vec::new(),
            origin_answer: None,
        }
    }

    pub fn drop(reason: impl Into<String>) -> Self {
        Self {
            status: None,
            reason: reason.into(),
            domain: None,
            headers: Vec::new(),
            origin_answer: None,
        }
    }

    /// 426: not a WebSocket upgrade. RFC 9110 §15.5.22: a 426 names the
    /// protocol to upgrade to; RFC 6455 §4.4: and the version spoken.
    pub fn upgrade_required(why: &str) -> Self {
        let mut refusal = Self::status(
            426,
            format!(
                "this is a WebSocket relay and {why}; connect with a WebSocket client \
                 (GET with Connection: Upgrade, Upgrade: websocket)"
            ),
        );
        refusal.headers.push(("Upgrade", "websocket".into()));
        refusal.headers.push(("Sec-WebSocket-Version", "13".into()));
        refusal
    }

    pub fn for_domain(mut self, domain: &DomainName) -> Self {
        self.domain = Some(domain.clone());
        self
    }

    /// The HTTP response for this refusal (none when the connection is dropped).
    pub fn response(&self) -> Option<Vec<u8>> {
        let code = self.status?;
        let canonical = StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        let (phrase, body, content_type) = match &self.origin_answer {
            Some(answer) => (answer.phrase.as_str(), answer.body.clone(), None),
            None => (
                canonical,
                format!("{code} {canonical}: {}\n", self.reason).into_bytes(),
                Some("text/plain; charset=utf-8"),
            ),
        };
        let mut out = format!("HTTP/1.1 {code} {}\r\n", printable(phrase)).into_bytes();
        if let Some(answer) = &self.origin_answer {
            for (name, value) in &answer.headers {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if !bodiless(code) {
            if let Some(t) = content_type {
                out.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
            }
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        if !bodiless(code) {
            out.extend_from_slice(&body);
        }
        Some(out)
    }
}

/// A reason phrase safe to put on a status line (RFC 9112 §4: HTAB, SP,
/// VCHAR, obs-text; anything else would end or forge the line).
fn printable(phrase: &str) -> String {
    phrase
        .chars()
        .filter(|c| *c == '\t' || !c.is_control())
        .collect()
}

/// What the relay needs from a client's upgrade request.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    pub path: String,
    pub host: String,
    pub key: String,
    pub protocols: Option<String>,
    pub extensions: Option<String>,
    /// End-to-end headers passed on to the origin as they came.
    pub forward: Vec<(String, Vec<u8>)>,
    pub forwarded_for: Option<String>,
    /// The client came over TLS (`tls-listen`): `X-Forwarded-Proto: https`,
    /// and `origin-protocol = "follow"` means `wss://`.
    pub tls: bool,
}

/// Reads the client's request head. The caller bounds the time it may take.
pub async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(ClientRequest, Vec<u8>), Refusal> {
    // Sized for the first read (`read_some` reserves 4 KiB), so no regrowth.
    let mut buf = Vec::with_capacity(4096);
    loop {
        let n = read_some(stream, &mut buf).await.map_err(|e| {
            Refusal::drop(format!("client connection failed during handshake: {e}"))
        })?;
        if n == 0 {
            return Err(Refusal::drop(
                "client closed the connection before finishing its request",
            ));
        }
        if let Some((request, end)) = parse_request(&buf)? {
            return Ok((request, buf[end..].to_vec()));
        }
    }
}

/// Parses a request head from the bytes read so far: `Ok(None)` while it
/// is incomplete, the request and where it ends once complete, or why it
/// is refused. Pure, so the fuzzer can drive it.
pub fn parse_request(buf: &[u8]) -> Result<Option<(ClientRequest, usize)>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match head_end(request.parse(buf), buf.len()) {
        Ok(Some(end)) => Ok(Some((client_request(&request)?, end))),
        Ok(None) => Ok(None),
        Err(HeadError::TooLarge) => Err(headers_too_large()),
        Err(HeadError::Malformed(e)) => {
            Err(Refusal::status(400, format!("malformed HTTP request: {e}")))
        }
    }
}

fn headers_too_large() -> Refusal {
    Refusal::status(
        431,
        format!("request headers exceed {} KiB", MAX_HEADER_BYTES / 1024),
    )
}

/// Reads once into the spare capacity of `buf` (at most up to the header
/// limit). Into uninitialised capacity (`read_buf`), not a zero-filled
/// slice: zeroing 4 KiB before each of a session's two head reads was 8 % of
/// the user-space instructions of a handshake (docs/BENCHMARKS.md, finding 23).
async fn read_some<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> io::Result<usize> {
    use bytes::BufMut;
    let room = (MAX_HEADER_BYTES - buf.len().min(MAX_HEADER_BYTES)).clamp(1, 4096);
    buf.reserve(room);
    stream.read_buf(&mut buf.limit(room)).await
}

/// Headers that belong to one hop (RFC 9110 §7.6.1), that the relay sets
/// itself, or that describe a body an upgrade request may not have.
const NOT_FORWARDED: [&str; 18] = [
    "host",
    "connection",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
    "expect",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
];

/// Whether `value` is a valid Host (RFC 9110 §7.2, RFC 3986 §3.2.2): a
/// name, an IPv4 address or a bracketed IPv6 address, and an optional
/// numeric port. Nothing else — no userinfo, no fragment, no spaces — so
/// no two readers can disagree about which host a request names.
pub fn valid_host(value: &str) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("v6", Some(port)),
                None => return false,
            },
        }
    } else {
        match value.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok()
    });
    host_ok && port_ok
}

/// Splits a Host into its name (lower case) and port (the scheme's default
/// when absent), to compare two authorities.
fn host_and_port(value: &str, default_port: u16) -> (String, u16) {
    let (host, port) = match value.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && (h.starts_with('[') == h.ends_with(']')) => {
            (h, p.parse().unwrap_or(default_port))
        }
        _ => (value, default_port),
    };
    (host.to_ascii_lowercase(), port)
}

/// The path the origin gets: the request target in origin-form. An
/// absolute-form target (RFC 9112 §3.2.2) is accepted only when its
/// authority is the Host's, and is sent on as its path and query.
fn origin_form(target: &str, host: &str) -> Result<String, String> {
    if target.starts_with('/') {
        return Ok(target.to_string());
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(format!(
            "the request target {target:?} is not a path; send GET /path HTTP/1.1"
        ));
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => {
            return Err(format!(
                "the request target {target:?} has an unknown scheme"
            ));
        }
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if !valid_host(authority) {
        return Err(format!(
            "the request target {target:?} has an invalid authority"
        ));
    }
    if host_and_port(authority, default_port) != host_and_port(host, default_port) {
        return Err(format!(
            "the request target's authority {authority:?} does not match Host {host:?}"
        ));
    }
    Ok(match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    })
}

fn client_request(request: &httparse::Request<'_, '_>) -> Result<ClientRequest, Refusal> {
    let lines = HeaderLines(request.headers);
    let bad = |why: String| Refusal::status(400, why);
    if request.method != Some("GET") {
        return Err(Refusal::upgrade_required(&format!(
            "the request method is {}, not GET",
            request.method.unwrap_or("?")
        )));
    }
    if request.version != Some(1) {
        return Err(bad(
            "a WebSocket upgrade needs HTTP/1.1 (RFC 6455 §4.1); this request is HTTP/1.0".into(),
        ));
    }
    let host = lines
        .single("Host")
        .map_err(bad)?
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("the request has no Host header, so no domain can be chosen".into()))?;
    if !valid_host(host) {
        return Err(bad(format!(
            "the Host header {host:?} is not a valid host[:port]"
        )));
    }
    let path = origin_form(request.path.unwrap_or("/"), host).map_err(bad)?;
    if lines.present("Transfer-Encoding")
        || lines
            .single("Content-Length")
            .map_err(bad)?
            .is_some_and(|n| n != "0")
    {
        return Err(bad(
            "an upgrade request must not have a body (Content-Length or Transfer-Encoding)".into(),
        ));
    }
    let connection = lines.list("Connection").map_err(bad)?;
    if !has_token(&lines.list("Upgrade").map_err(bad)?, "websocket")
        || !has_token(&connection, "upgrade")
    {
        return Err(Refusal::upgrade_required(
            "the request is not a WebSocket upgrade",
        ));
    }
    if lines.single("Sec-WebSocket-Version").map_err(bad)? != Some("13") {
        return Err(Refusal::upgrade_required(
            "only WebSocket version 13 is supported",
        ));
    }
    let key = lines
        .single("Sec-WebSocket-Key")
        .map_err(bad)?
        .ok_or_else(|| bad("the upgrade request has no Sec-WebSocket-Key".into()))?;
    if !valid_key(key) {
        return Err(bad(format!(
            "the Sec-WebSocket-Key {key:?} is not 16 bytes of base64 (RFC 6455 §4.1)"
        )));
    }
    let joined = |name| {
        lines
            .list(name)
            .map(|l| (!l.is_empty()).then(|| l.join(", ")))
            .map_err(bad)
    };
    let protocols = joined("Sec-WebSocket-Protocol")?;
    let extensions = joined("Sec-WebSocket-Extensions")?;
    let forwarded_for = joined("X-Forwarded-For")?;
    // Headers named in Connection are this hop's only (RFC 9110 §7.6.1).
    let forward = request
        .headers
        .iter()
        .filter(|h| {
            !NOT_FORWARDED.iter().any(|n| h.name.eq_ignore_ascii_case(n))
                && !has_token(&connection, h.name)
        })
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect();
    Ok(ClientRequest {
        path,
        host: host.to_string(),
        key: key.to_string(),
        protocols,
        extensions,
        forward,
        forwarded_for,
        tls: false,
    })
}

/// The origin's answer to a successful upgrade.
#[derive(Debug, Clone, Default)]
pub struct Upgraded {
    /// The `Sec-WebSocket-Accept` for the client's key (the origin's, checked).
    pub accept: String,
    pub protocol: Option<String>,
    pub extensions: Option<String>,
    /// Bytes the origin sent after its 101 (already frames for the client).
    pub leftover: Vec<u8>,
}

/// Interim (1xx) responses skipped before the origin's real answer, at most.
const MAX_INTERIM_RESPONSES: usize = 8;
/// How long an origin's refusal body may take to arrive once its head has.
const REFUSAL_BODY_TIME: Duration = Duration::from_secs(1);

/// Sends the upgrade request to the origin and reads its answer.
pub async fn upgrade_origin<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    domain: &Domain,
    request: &ClientRequest,
    client: SocketAddr,
) -> Result<Upgraded, Refusal> {
    let refuse = |status: u16, why: String| Refusal::status(status, why).for_domain(&domain.name);
    let head = origin_request(domain, request, client);
    stream
        .write_all(&head)
        .await
        .map_err(|e| refuse(502, format!("origin connection failed: {e}")))?;
    let mut buf = Vec::with_capacity(4096);
    let mut interim = 0;
    loop {
        // Parse what is there first: an interim response and the real one
        // can share a packet.
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match head_end(response.parse(&buf), buf.len()) {
            Ok(Some(end)) => {
                let code = response.code.unwrap_or(0);
                if (100..200).contains(&code) && code != 101 {
                    // 100 Continue, 103 Early Hints...: not the answer (RFC 9110 §15.2).
                    interim += 1;
                    if interim > MAX_INTERIM_RESPONSES {
                        return Err(refuse(
                            502,
                            format!(
                                "origin sent more than {MAX_INTERIM_RESPONSES} interim responses"
                            ),
                        ));
                    }
                    buf.drain(..end);
                    continue;
                }
                if code != 101 {
                    let refusal = origin_refusal(&response);
                    let leftover = buf[end..].to_vec();
                    let framing = BodyFraming::of(&response);
                    let body = read_refusal_body(stream, leftover, framing).await;
                    let mut refusal = refusal.for_domain(&domain.name);
                    if let Some(answer) = refusal.origin_answer.as_mut() {
                        answer.body = body;
                    }
                    return Err(refusal);
                }
                let offer = Offer {
                    key: &request.key,
                    protocols: request.protocols.as_deref(),
                    extensions: request.extensions.as_deref(),
                };
                // A 101 that fails is a 502, never passed on.
                let accepted = check_101(&HeaderLines(response.headers), offer)
                    .map_err(|why| refuse(502, format!("origin {why}")))?;
                return Ok(Upgraded {
                    accept: accepted.accept,
                    protocol: accepted.protocol,
                    extensions: accepted.extensions,
                    leftover: buf[end..].to_vec(),
                });
            }
            Ok(None) => {}
            Err(HeadError::TooLarge) => {
                return Err(refuse(
                    502,
                    "origin's response headers are too large".into(),
                ));
            }
            Err(HeadError::Malformed(e)) => {
                return Err(refuse(
                    502,
                    format!("origin sent a malformed HTTP response: {e}"),
                ));
            }
        }
        let n = read_some(stream, &mut buf)
            .await
            .map_err(|e| refuse(502, format!("origin connection failed: {e}")))?;
        if n == 0 {
            return Err(refuse(
                502,
                "origin closed the connection without answering the upgrade".into(),
            ));
        }
    }
}

/// Headers of an origin's refusal that belong to its hop only, or that the
/// relay writes itself for the body it passes on.
const NOT_PASSED_BACK: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// An origin's non-101 answer, to be passed on (its body is read after).
fn origin_refusal(response: &httparse::Response<'_, '_>) -> Refusal {
    let code = response.code.unwrap_or(502);
    let phrase = response.reason.unwrap_or("").to_string();
    let lines = HeaderLines(response.headers);
    let connection = lines.list("Connection").unwrap_or_default();
    let headers = response
        .headers
        .iter()
        .filter(|h| {
            !NOT_PASSED_BACK
                .iter()
                .any(|n| h.name.eq_ignore_ascii_case(n))
                && !has_token(&connection, h.name)
        })
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect();
    let mut refusal = Refusal::status(
        code,
        format!("origin refused the WebSocket upgrade with {code} {phrase}")
            .trim_end()
            .to_string(),
    );
    refusal.origin_answer = Some(Box::new(OriginAnswer {
        phrase,
        headers,
        body: Vec::new(),
    }));
    refusal
}

/// How an origin's refusal says where its body ends (RFC 9112 §6.3).
enum BodyFraming {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

impl BodyFraming {
    fn of(response: &httparse::Response<'_, '_>) -> Self {
        let lines = HeaderLines(response.headers);
        if bodiless(response.code.unwrap_or(0)) {
            return Self::None;
        }
        if lines
            .list("Transfer-Encoding")
            .is_ok_and(|te| te.last().is_some_and(|t| t.eq_ignore_ascii_case("chunked")))
        {
            return Self::Chunked;
        }
        match lines.single("Content-Length") {
            Ok(Some(n)) => n.parse().map_or(Self::None, Self::Length),
            Ok(None) => Self::UntilClose,
            Err(_) => Self::None,
        }
    }
}

/// Reads an origin refusal's body, at most [`MAX_REFUSAL_BODY`] bytes and
/// [`REFUSAL_BODY_TIME`]; what arrived by then is what the client gets.
async fn read_refusal_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut raw: Vec<u8>,
    framing: BodyFraming,
) -> Vec<u8> {
    let wanted = match framing {
        BodyFraming::None => return Vec::new(),
        BodyFraming::Length(n) => n.min(MAX_REFUSAL_BODY),
        BodyFraming::Chunked | BodyFraming::UntilClose => MAX_REFUSAL_BODY,
    };
    let chunked = matches!(framing, BodyFraming::Chunked);
    let _ = timeout(REFUSAL_BODY_TIME, async {
        loop {
            let have = if chunked {
                dechunk(&raw).1
            } else {
                raw.len() >= wanted
            };
            if have || raw.len() >= MAX_REFUSAL_BODY * 2 {
                break;
            }
            let mut chunk = vec![0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let mut body = if chunked { dechunk(&raw).0 } else { raw };
    body.truncate(wanted);
    body
}

/// Decodes a chunked body as far as it has arrived: the data, and whether
/// the last chunk was seen.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    while let Ok(httparse::Status::Complete((start, size))) = httparse::parse_chunk_size(raw) {
        if size == 0 {
            return (body, true);
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let data = &raw[start..];
        let take = size.min(data.len());
        body.extend_from_slice(&data[..take]);
        if take < size || data.len() < size + 2 || body.len() >= MAX_REFUSAL_BODY {
            break;
        }
        raw = &data[size + 2..];
    }
    (body, false)
}

/// The upgrade request the relay sends to the origin.
pub fn origin_request(domain: &Domain, request: &ClientRequest, client: SocketAddr) -> Vec<u8> {
    use std::fmt::Write;
    // Written in place into one buffer (writing to a `String` cannot fail):
    // building each line as a `String` of its own cost four allocations per
    // session (docs/BENCHMARKS.md, finding 25).
    let mut head = request_head(&request.path, domain.origin_host_header(), &request.key);
    head.reserve(256);
    head.push_str("X-Forwarded-For: ");
    if let Some(previous) = &request.forwarded_for {
        let _ = write!(head, "{previous}, ");
    }
    let _ = write!(
        head,
        "{}\r\nX-Forwarded-Proto: {}\r\nX-Forwarded-Host: {}\r\n",
        client.ip(),
        if request.tls { "https" } else { "http" },
        request.host,
    );
    if let Some(p) = &request.protocols {
        let _ = write!(head, "Sec-WebSocket-Protocol: {p}\r\n");
    }
    if let Some(e) = &request.extensions {
        let _ = write!(head, "Sec-WebSocket-Extensions: {e}\r\n");
    }
    let mut bytes = head.into_bytes();
    for (name, value) in &request.forward {
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    bytes
}

/// The 101 the client gets once the origin has accepted (in one buffer, as
/// [`origin_request`]).
pub fn switching_protocols(upgraded: &Upgraded) -> Vec<u8> {
    use std::fmt::Write;
    let mut head = String::with_capacity(256);
    let _ = write!(
        head,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        upgraded.accept
    );
    if let Some(p) = &upgraded.protocol {
        let _ = write!(head, "Sec-WebSocket-Protocol: {p}\r\n");
    }
    if let Some(e) = &upgraded.extensions {
        let _ = write!(head, "Sec-WebSocket-Extensions: {e}\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Writes a refusal and closes politely: half-close, then drain briefly, so
/// the client reads the answer instead of a reset.
pub async fn send_refusal<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, refusal: &Refusal) {
    let Some(response) = refusal.response() else {
        return;
    };
    let _ = timeout(Duration::from_secs(1), async {
        stream.write_all(&response).await?;
        stream.shutdown().await?;
        // On the heap: a buffer in the future would make every connection task bigger.
        let mut sink = vec![0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::Config;
    use crate::ws::upgrade::accept_key;

    const CONFIG: &str = r#"
[[domain]]
name = "app.test"
acceleration = "full-site"
origins = ["127.0.0.1:9001"]
websocket = { switch = "on" }
"#;

    /// The exact bytes both heads had before they were written in place.
    #[test]
    fn the_origin_request_and_the_101_read_as_before() {
        let config = Config::parse(CONFIG, std::path::Path::new("t.toml")).unwrap();
        let domain = config.route("app.test").unwrap();
        let head = b"GET /chat?x=1 HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, v2\r\n\
            X-Forwarded-For: 10.0.0.1\r\nCookie: a=b\r\n\r\n";
        let (request, _) = parse_request(head).unwrap().unwrap();
        let sent = origin_request(domain, &request, "127.0.0.9:5000".parse().unwrap());
        assert_eq!(
            String::from_utf8(sent).unwrap(),
            "GET /chat?x=1 HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.9\r\n\
             X-Forwarded-Proto: http\r\nX-Forwarded-Host: app.test\r\n\
             Sec-WebSocket-Protocol: chat, v2\r\nCookie: a=b\r\n\r\n"
        );
        let upgraded = Upgraded {
            accept: accept_key(&request.key),
            protocol: Some("chat".into()),
            extensions: None,
            leftover: Vec::new(),
        };
        assert_eq!(
            String::from_utf8(switching_protocols(&upgraded)).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\n\r\n"
        );
    }

    #[test]
    fn only_sixteen_bytes_of_base64_are_a_key() {
        assert!(valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        for bad in [
            "dGhlIHNhbXBsZSBub25jZQ",           // no padding
            "dGhlIHNhbXBsZSBub25jZXg=",         // 17 bytes
            "dGhlIHNhbXBsZSBub25j",             // 15 bytes
            "dGhlIHNhbXBsZSBub25jZQ==dGhlIHNh", // longer than any key
            "dGhlIHNhbXBsZSBub25jZQ=!",
            "",
        ] {
            assert!(!valid_key(bad), "{bad}");
        }
    }
}
