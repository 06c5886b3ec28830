//! Getting to an open WebSocket, one phase at a time — DNS, TCP, TLS, the
//! HTTP upgrade — each under the same deadline, so that a failure can say
//! which phase failed and the exit code can tell them apart.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use bytes::BytesMut;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;

use super::report::{Reporter, Step, ms};
use super::{Outcome, ProbeOptions};
use crate::relay::{MAX_HEADER_BYTES, tls_client_config};

/// A `ws://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub secure: bool,
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, as sent in the request line.
    pub path: String,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        let uri: tungstenite::http::Uri = url.parse().map_err(|e| {
            format!("\"{url}\" is not a URL ({e}); write it like ws://host:port/path")
        })?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            Some(other) => {
                return Err(format!(
                    "\"{url}\" has the scheme {other}://; the probe speaks ws:// and wss:// only"
                ));
            }
            None => {
                return Err(format!(
                    "\"{url}\" has no scheme; write ws://{url} or wss://{url}"
                ));
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("\"{url}\" has no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        Ok(Self {
            secure,
            host,
            port,
            path,
        })
    }
}

impl Target {
    /// `host[:port]` as the Host header carries it (the port only when it
    /// is not the scheme's default).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default_port = if self.secure { 443 } else { 80 };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// `NAME:VALUE` for `--header`.
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("\"{text}\" is not NAME:VALUE (e.g. --header 'Cookie: a=b')"))?;
    let (name, value) = (name.trim(), value.trim());
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("\"{name}\" is not a valid header name"));
    }
    if value.contains(['\r', '\n']) {
        return Err(format!("the value of {name} contains a line break"));
    }
    let lower = name.to_ascii_lowercase();
    let managed = match lower.as_str() {
        "host" => Some("use --host"),
        "sec-websocket-protocol" => Some("use --protocol"),
        "sec-websocket-extensions" => Some("the probe negotiates no extension"),
        "upgrade" | "connection" | "sec-websocket-key" | "sec-websocket-version" => {
            Some("the probe sets it for the upgrade")
        }
        _ => None,
    };
    match managed {
        Some(why) => Err(format!("--header {name} is not allowed: {why}")),
        None => Ok((name.to_string(), value.to_string())),
    }
}

/// `--host`: a Host header value (`name`, `name:port`, `[v6]:port`).
pub fn parse_host(text: &str) -> Result<String, String> {
    if text.is_empty() || text.contains(|c: char| c.is_whitespace() || c.is_control() || c == '/') {
        return Err(format!(
            "\"{text}\" is not a host name (e.g. --host cdn.example.com)"
        ));
    }
    Ok(text.to_string())
}

/// The host part of a Host header, as a TLS server name.
fn host_only(host_header: &str) -> &str {
    if let Some(rest) = host_header.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host_header.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => host_header,
    }
}

/// Where a connection attempt failed: decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Dns,
    Tcp,
    Tls,
    Upgrade,
}

impl Phase {
    pub fn outcome(self) -> Outcome {
        match self {
            Self::Dns | Self::Tcp => Outcome::ConnectFailed,
            Self::Tls => Outcome::TlsFailed,
            Self::Upgrade => Outcome::HandshakeRefused,
        }
    }
}

/// A failed attempt; already reported as a step.
#[derive(Debug, Clone)]
pub struct Failure {
    pub phase: Phase,
    /// The HTTP status when the server answered the upgrade with something else than 101.
    pub status: Option<u16>,
}

/// Any byte stream the session can run on (TCP or TLS over TCP).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open WebSocket.
pub struct Connected {
    pub stream: Box<dyn Io>,
    /// Bytes that came after the 101 (frames may share its packet).
    pub leftover: BytesMut,
    /// When the 101 arrived: the session's clocks start here.
    pub opened_at: Instant,
}

/// Connects, reporting each phase; on failure the failing step is reported too.
pub async fn connect(options: &ProbeOptions, rep: &mut Reporter<'_>) -> Result<Connected, Failure> {
    let deadline = Instant::now() + options.connect_timeout;
    let secs = options.connect_timeout.as_secs_f64();
    let target = &options.target;
    let fail = |rep: &mut Reporter<'_>, phase, error: String| {
        rep.step(Step::Failed { phase, error });
        Failure {
            phase,
            status: None,
        }
    };

    let dns_start = Instant::now();
    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
    let addrs: Vec<SocketAddr> = match timeout_at(deadline, lookup).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => {
            return Err(fail(
                rep,
                Phase::Dns,
                format!(
                    "cannot resolve {}: {e} (check the host name and your DNS)",
                    target.host
                ),
            ));
        }
        Err(_) => {
            return Err(fail(
                rep,
                Phase::Dns,
                format!("no DNS answer for {} within {secs} s", target.host),
            ));
        }
    };
    let dns_ms = target
        .host
        .parse::<std::net::IpAddr>()
        .is_err()
        .then(|| ms(dns_start.elapsed()));
    if addrs.is_empty() {
        return Err(fail(
            rep,
            Phase::Dns,
            format!("{} has no address", target.host),
        ));
    }

    let (tcp, addr, tcp_ms) = match connect_tcp(&addrs, deadline, secs).await {
        Ok(connected) => connected,
        Err(e) => return Err(fail(rep, Phase::Tcp, e)),
    };
    rep.step(Step::Connected {
        addr,
        dns_ms,
        tcp_ms,
    });
    let _ = tcp.set_nodelay(true);

    let host_header = options.host.clone().unwrap_or_else(|| target.authority());
    let mut stream: Box<dyn Io> = if target.secure {
        let tls_start = Instant::now();
        let server_name = host_only(&host_header).to_string();
        match timeout_at(deadline, tls(tcp, &server_name, options.ca_file.as_deref())).await {
            Ok(Ok((stream, version))) => {
                rep.step(Step::Tls {
                    server_name,
                    version,
                    ms: ms(tls_start.elapsed()),
                });
                Box::new(stream)
            }
            Ok(Err(e)) => return Err(fail(rep, Phase::Tls, e)),
            Err(_) => {
                return Err(fail(
                    rep,
                    Phase::Tls,
                    format!("the TLS handshake with {addr} did not finish within {secs} s"),
                ));
            }
        }
    } else {
        Box::new(tcp)
    };

    let key = generate_key();
    let request = upgrade_request(options, &host_header, &key);
    let upgrade_start = Instant::now();
    let answer = timeout_at(deadline, async {
        stream.write_all(&request).await?;
        read_response(&mut stream).await
    })
    .await;
    let (head, rest) = match answer {
        Ok(Ok(Some(answer))) => answer,
        Ok(Ok(None)) => {
            return Err(fail(
                rep,
                Phase::Upgrade,
                "the server closed the connection without answering the upgrade request".into(),
            ));
        }
        Ok(Err(e)) => {
            return Err(fail(
                rep,
                Phase::Upgrade,
                format!("the connection failed during the upgrade: {e}"),
            ));
        }
        Err(_) => {
            return Err(fail(
                rep,
                Phase::Upgrade,
                format!("no answer to the upgrade request within {secs} s"),
            ));
        }
    };
    let upgrade_ms = ms(upgrade_start.elapsed());
    let opened_at = Instant::now();

    if head.status != 101 {
        let body = read_body(&mut stream, &head, rest, deadline).await;
        rep.step(Step::Handshake {
            status: head.status,
            reason: head.reason,
            ms: upgrade_ms,
            subprotocol: None,
            headers: head.headers,
            body: Some(body),
        });
        return Err(Failure {
            phase: Phase::Upgrade,
            status: Some(head.status),
        });
    }
    let problem = check_101(&head, &key, &options.protocols);
    let subprotocol = head.header("sec-websocket-protocol").map(str::to_string);
    rep.step(Step::Handshake {
        status: head.status,
        reason: head.reason.clone(),
        ms: upgrade_ms,
        subprotocol,
        headers: head.headers.clone(),
        body: None,
    });
    if let Some(problem) = problem {
        return Err(fail(rep, Phase::Upgrade, problem));
    }
    Ok(Connected {
        stream,
        leftover: rest,
        opened_at,
    })
}

/// Tries each address in turn until one accepts.
async fn connect_tcp(
    addrs: &[SocketAddr],
    deadline: Instant,
    secs: f64,
) -> Result<(TcpStream, SocketAddr, f64), String> {
    let mut failures = Vec::new();
    for &addr in addrs {
        let start = Instant::now();
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok((stream, addr, ms(start.elapsed()))),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => failures.push(format!(
                "connection refused by {addr} (nothing listens on that port, or a firewall rejects it)"
            )),
            Ok(Err(e)) => failures.push(format!("cannot connect to {addr}: {e}")),
            Err(_) => {
                failures.push(format!(
                    "no answer from {addr} within {secs} s (the host is down, or a firewall drops the packets)"
                ));
                break;
            }
        }
    }
    Err(failures.join("; "))
}

/// The TLS handshake; the error says what went wrong and what to try.
async fn tls(
    tcp: TcpStream,
    server_name: &str,
    ca_file: Option<&Path>,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, String), String> {
    let config = tls_client_config(ca_file).map_err(|e| format!("cannot use --ca-file: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| format!("cannot use \"{server_name}\" as a TLS server name: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| tls_error(&e, server_name))?;
    let version = stream
        .get_ref()
        .1
        .protocol_version()
        .map_or_else(|| "TLS".to_string(), |v| format!("{v:?}").replace('_', "."));
    Ok((stream, version))
}

fn tls_error(e: &std::io::Error, server_name: &str) -> String {
    let hint = match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(_)) => format!(
            " (the certificate is not valid for \"{server_name}\" or not trusted: check the \
             name (--host sets it), or trust a private CA with --ca-file)"
        ),
        Some(rustls::Error::InvalidMessage(_)) => {
            " (the server does not speak TLS on this port: is it a ws:// endpoint?)".to_string()
        }
        _ if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            " (the server closed the connection during the TLS handshake)".to_string()
        }
        _ => String::new(),
    };
    format!("TLS handshake with {server_name} failed: {e}{hint}")
}

fn upgrade_request(options: &ProbeOptions, host: &str, key: &str) -> Vec<u8> {
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        options.target.path
    );
    if !options.protocols.is_empty() {
        head.push_str(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            options.protocols.join(", ")
        ));
    }
    let has_agent = options
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("user-agent"));
    if !has_agent {
        head.push_str(&format!(
            "User-Agent: ecdn-console-probe/{}\r\n",
            env!("CARGO_PKG_VERSION")
        ));
    }
    for (name, value) in &options.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The status line and headers of the server's answer.
#[derive(Debug, Clone)]
struct ResponseHead {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
}

impl ResponseHead {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

/// Reads the response head; `None` when the server closed before answering.
/// Returns the bytes read past the head too.
async fn read_response(
    stream: &mut Box<dyn Io>,
) -> std::io::Result<Option<(ResponseHead, BytesMut)>> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut response = httparse::Response::new(&mut headers);
        let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(end)) => {
                let head = ResponseHead {
                    status: response.code.unwrap_or(0),
                    reason: response.reason.unwrap_or("").to_string(),
                    headers: response
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                };
                let _ = buf.split_to(end);
                return Ok(Some((head, buf)));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEADER_BYTES => {}
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return Err(invalid(format!(
                    "the response headers exceed {} KiB",
                    MAX_HEADER_BYTES / 1024
                )));
            }
            Err(e) => {
                let start = String::from_utf8_lossy(&buf[..buf.len().min(60)]).into_owned();
                return Err(invalid(format!(
                    "the answer is not HTTP ({e}); it starts with {start:?}"
                )));
            }
        }
    }
}

/// How much of a refusal's body is kept: enough for its first lines.
const BODY_BYTES: usize = 2048;
/// A refusal's body gets this long to arrive, at most.
const BODY_WAIT: Duration = Duration::from_secs(1);

/// The start of a refusal's body (as far as it arrives promptly).
async fn read_body(
    stream: &mut Box<dyn Io>,
    head: &ResponseHead,
    mut body: BytesMut,
    deadline: Instant,
) -> String {
    let length = head
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let wanted = length.min(BODY_BYTES);
    let deadline = deadline.min(Instant::now() + BODY_WAIT);
    while body.len() < wanted {
        match timeout_at(deadline, stream.read_buf(&mut body)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    body.truncate(wanted);
    String::from_utf8_lossy(&body).into_owned()
}

/// A 101 that is not a valid WebSocket answer to our request.
fn check_101(head: &ResponseHead, key: &str, offered: &[String]) -> Option<String> {
    let upgrade = head.header("upgrade").unwrap_or("");
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Some(format!(
            "the server answered 101 but with Upgrade: \"{upgrade}\", not websocket"
        ));
    }
    let accept = head.header("sec-websocket-accept").unwrap_or("");
    if accept != derive_accept_key(key.as_bytes()) {
        return Some(format!(
            "the server answered 101 with a wrong Sec-WebSocket-Accept (\"{accept}\"): \
             a proxy on the path may be rewriting the handshake"
        ));
    }
    if let Some(chosen) = head.header("sec-websocket-protocol")
        && !offered.iter().any(|p| p == chosen)
    {
        return Some(format!(
            "the server chose the subprotocol \"{chosen}\", which the probe did not offer"
        ));
    }
    if let Some(ext) = head.header("sec-websocket-extensions") {
        return Some(format!(
            "the server chose the extension \"{ext}\", which the probe did not offer"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls() {
        let t: Target = "ws://app.test:8080/chat?room=1".parse().unwrap();
        assert_eq!(
            (t.secure, t.host.as_str(), t.port, t.path.as_str()),
            (false, "app.test", 8080, "/chat?room=1")
        );
        assert_eq!(t.authority(), "app.test:8080");
        let t: Target = "wss://[::1]".parse().unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 443, "/")
        );
        assert_eq!(t.to_string(), "wss://[::1]/");
        for bad in ["http://x/", "x.test/ws", "ws:///path", "ws://a b/"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_and_hosts() {
        assert_eq!(
            parse_header("Cookie: a=b; c=d").unwrap(),
            ("Cookie".into(), "a=b; c=d".into())
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Host: x").unwrap_err().contains("--host"));
        assert!(
            parse_header("Sec-WebSocket-Protocol: x")
                .unwrap_err()
                .contains("--protocol")
        );
        assert!(parse_host("cdn.example.com:8443").is_ok());
        assert!(parse_host("a b").is_err());
        assert_eq!(host_only("cdn.example.com:8443"), "cdn.example.com");
        assert_eq!(host_only("[::1]:80"), "::1");
        assert_eq!(host_only("app.test"), "app.test");
    }
}
