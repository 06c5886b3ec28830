//! Getting to an open WebSocket, one phase at a time — DNS, TCP, TLS, the
//! HTTP upgrade — each under the same deadline, so that a failure can say
//! which phase failed and the exit code can tell them apart.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::ProbeOptions;
use super::phase::{Failure, Phase};
use super::report::{Reporter, Step, ms};
use crate::relay::roots::{RootsError, tls_client_config};
use crate::ws::upgrade::{
    Bad101, HeadError, HeaderLines, MAX_HEADER_BYTES, MAX_HEADERS, Offer, check_101, generate_key,
    head_end, request_head,
};

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
        // The http crate drops a fragment silently; a probe that quietly
        // sent a different request from the one typed would mislead.
        if url.contains('#') {
            return Err(format!(
                "\"{url}\" has a fragment (#…), which a WebSocket URL cannot carry (RFC 6455 §3): drop it, or write %23 if the path holds a '#'"
            ));
        }
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
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(format!(
                "\"{url}\" carries user information (user@host), which a WebSocket URL has no place for (RFC 6455 §3): send credentials with --header 'Authorization: …'"
            ));
        }
        let port = port_of(uri.authority().map_or("", |a| a.as_str()))
            .map_err(|port| {
                format!("\"{url}\" has the port {port}; a port is a number from 1 to 65535")
            })?
            .unwrap_or(if secure { 443 } else { 80 });
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

/// The port an authority names, `None` when it names none (or an empty
/// one, which RFC 3986 reads as the default); the text when it is not a
/// port. `Uri::port` cannot tell "no port" from "not a port".
fn port_of(authority: &str) -> Result<Option<u16>, String> {
    let after_host = match authority.rfind(']') {
        Some(end) => &authority[end + 1..],
        None => authority,
    };
    match after_host.rsplit_once(':') {
        None | Some((_, "")) => Ok(None),
        Some((_, port)) => match port.parse::<u16>() {
            Ok(n) if n != 0 => Ok(Some(n)),
            _ => Err(port.to_string()),
        },
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
    if !text.starts_with('[') && text.matches(':').count() > 1 {
        return Err(format!(
            "\"{text}\" looks like a bare IPv6 address; a Host header brackets it: --host '[{text}]'"
        ));
    }
    if let Err(port) = port_of(text) {
        return Err(format!(
            "\"{text}\" has the port {port}; a port is a number from 1 to 65535"
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

/// The one deadline every phase runs under, and how it reads in messages.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    secs: f64,
}

/// Connects, reporting each phase; on failure the failing step is reported too.
pub async fn connect(options: &ProbeOptions, rep: &mut Reporter<'_>) -> Result<Connected, Failure> {
    let deadline = Deadline {
        at: Instant::now() + options.connect_timeout,
        secs: options.connect_timeout.as_secs_f64(),
    };
    let target = &options.target;
    let fail = |rep: &mut Reporter<'_>, phase, error: &dyn fmt::Display| {
        rep.step(Step::Failed {
            phase,
            error: error.to_string(),
        });
        Failure {
            phase,
            status: None,
        }
    };
    let resolved = resolve(target, deadline)
        .await
        .map_err(|e| fail(rep, Phase::Dns, &e))?;
    let tcp = connect_tcp(&resolved.addrs, deadline)
        .await
        .map_err(|e| fail(rep, Phase::Tcp, &e))?;
    rep.step(Step::Connected {
        addr: tcp.addr,
        dns_ms: resolved.ms,
        tcp_ms: tcp.ms,
    });
    let _ = tcp.stream.set_nodelay(true);
    let host_header = options.host.clone().unwrap_or_else(|| target.authority());
    let stream: Box<dyn Io> = if target.secure {
        let tls = secure(tcp, &host_header, options.ca_file.as_deref(), deadline)
            .await
            .map_err(|e| fail(rep, Phase::Tls, &e))?;
        rep.step(Step::Tls {
            server_name: tls.server_name,
            version: tls.version,
            ms: tls.ms,
        });
        tls.stream
    } else {
        Box::new(tcp.stream)
    };
    upgrade(stream, options, &host_header, deadline, rep)
        .await
        .map_err(|e| match e {
            UpgradeFailure::Refused(failure) => failure,
            UpgradeFailure::Failed(e) => fail(rep, Phase::Upgrade, &e),
        })
}

/// The addresses of the target's host.
struct Resolved {
    addrs: Vec<SocketAddr>,
    /// `None` when the URL holds an IP address.
    ms: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
enum DnsError {
    #[error("cannot resolve {host}: {source} (check the host name and your DNS)")]
    Lookup {
        host: String,
        source: std::io::Error,
    },
    #[error("no DNS answer for {host} within {secs} s")]
    TimedOut { host: String, secs: f64 },
    #[error("{host} has no address")]
    NoAddress { host: String },
}

async fn resolve(target: &Target, deadline: Deadline) -> Result<Resolved, DnsError> {
    let host = || target.host.clone();
    let start = Instant::now();
    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
    let addrs: Vec<SocketAddr> = match timeout_at(deadline.at, lookup).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(source)) => {
            return Err(DnsError::Lookup {
                host: host(),
                source,
            });
        }
        Err(_) => {
            return Err(DnsError::TimedOut {
                host: host(),
                secs: deadline.secs,
            });
        }
    };
    if addrs.is_empty() {
        return Err(DnsError::NoAddress { host: host() });
    }
    let literal = target.host.parse::<std::net::IpAddr>().is_ok();
    Ok(Resolved {
        addrs,
        ms: (!literal).then(|| ms(start.elapsed())),
    })
}

/// The TCP connection that was accepted.
struct Tcp {
    stream: TcpStream,
    addr: SocketAddr,
    ms: f64,
}

/// Why one address did not accept.
#[derive(Debug, thiserror::Error)]
enum TcpAttempt {
    #[error("connection refused by {0} (nothing listens on that port, or a firewall rejects it)")]
    Refused(SocketAddr),
    #[error("cannot connect to {addr}: {source}")]
    Failed {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "no answer from {addr} within {secs} s (the host is down, or a firewall drops the packets)"
    )]
    TimedOut { addr: SocketAddr, secs: f64 },
}

/// Every address failed: each attempt, in order.
#[derive(Debug)]
struct TcpFailed(Vec<TcpAttempt>);

impl fmt::Display for TcpFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, attempt) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{attempt}")?;
        }
        Ok(())
    }
}

/// Tries each address in turn until one accepts.
async fn connect_tcp(addrs: &[SocketAddr], deadline: Deadline) -> Result<Tcp, TcpFailed> {
    let mut failures = Vec::new();
    for &addr in addrs {
        let start = Instant::now();
        match timeout_at(deadline.at, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                return Ok(Tcp {
                    stream,
                    addr,
                    ms: ms(start.elapsed()),
                });
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                failures.push(TcpAttempt::Refused(addr));
            }
            Ok(Err(source)) => failures.push(TcpAttempt::Failed { addr, source }),
            Err(_) => {
                let secs = deadline.secs;
                failures.push(TcpAttempt::TimedOut { addr, secs });
                break;
            }
        }
    }
    Err(TcpFailed(failures))
}

/// A finished TLS handshake.
struct Secured {
    stream: Box<dyn Io>,
    server_name: String,
    version: String,
    ms: f64,
}

/// The TLS handshake failed; the text says what went wrong and what to try.
#[derive(Debug, thiserror::Error)]
enum TlsError {
    #[error("cannot use --ca-file: {0}")]
    CaFile(#[from] RootsError),
    #[error("cannot use \"{name}\" as a TLS server name: {source}")]
    ServerName {
        name: String,
        source: rustls::pki_types::InvalidDnsNameError,
    },
    #[error(
        "TLS handshake with {server_name} failed: {source}{}",
        tls_hint(source, server_name)
    )]
    Handshake {
        server_name: String,
        source: std::io::Error,
    },
    #[error("the TLS handshake with {addr} did not finish within {secs} s")]
    TimedOut { addr: SocketAddr, secs: f64 },
}

/// The TLS handshake over `tcp`, with the Host header's name.
async fn secure(
    tcp: Tcp,
    host_header: &str,
    ca_file: Option<&Path>,
    deadline: Deadline,
) -> Result<Secured, TlsError> {
    let start = Instant::now();
    let server_name = host_only(host_header).to_string();
    let config = tls_client_config(ca_file)?;
    let name = rustls::pki_types::ServerName::try_from(server_name.clone()).map_err(|source| {
        TlsError::ServerName {
            name: server_name.clone(),
            source,
        }
    })?;
    let handshake = tokio_rustls::TlsConnector::from(config).connect(name, tcp.stream);
    let stream = match timeout_at(deadline.at, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => {
            return Err(TlsError::Handshake {
                server_name,
                source,
            });
        }
        Err(_) => {
            return Err(TlsError::TimedOut {
                addr: tcp.addr,
                secs: deadline.secs,
            });
        }
    };
    let version = stream
        .get_ref()
        .1
        .protocol_version()
        .map_or_else(|| "TLS".to_string(), |v| format!("{v:?}").replace('_', "."));
    Ok(Secured {
        stream: Box::new(stream),
        server_name,
        version,
        ms: ms(start.elapsed()),
    })
}

fn tls_hint(e: &std::io::Error, server_name: &str) -> String {
    match e
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
    }
}

/// The upgrade failed: refused with a status (already reported with its
/// headers and body), or broken off.
enum UpgradeFailure {
    Refused(Failure),
    Failed(UpgradeError),
}

#[derive(Debug, thiserror::Error)]
enum UpgradeError {
    #[error("the server closed the connection without answering the upgrade request")]
    NoAnswer,
    #[error("the connection failed during the upgrade: {0}")]
    Io(#[from] std::io::Error),
    #[error("the answer is not HTTP ({error}); it starts with {start:?}")]
    NotHttp {
        error: httparse::Error,
        start: String,
    },
    #[error("the response headers exceed {} KiB", MAX_HEADER_BYTES / 1024)]
    TooLarge,
    #[error("no answer to the upgrade request within {secs} s")]
    TimedOut { secs: f64 },
    #[error("the server {0}")]
    Bad101(#[from] Bad101),
}

/// Sends the upgrade request and reads the answer: a 101 that passes the
/// checks opens the WebSocket.
async fn upgrade(
    mut stream: Box<dyn Io>,
    options: &ProbeOptions,
    host_header: &str,
    deadline: Deadline,
    rep: &mut Reporter<'_>,
) -> Result<Connected, UpgradeFailure> {
    let key = generate_key();
    let request = upgrade_request(options, host_header, &key);
    let start = Instant::now();
    let answer = timeout_at(deadline.at, async {
        stream.write_all(&request).await?;
        read_response(&mut stream).await
    })
    .await
    .map_err(|_| UpgradeError::TimedOut {
        secs: deadline.secs,
    });
    let (head, rest) = answer.and_then(|r| r).map_err(UpgradeFailure::Failed)?;
    let upgrade_ms = ms(start.elapsed());
    let opened_at = Instant::now();
    if head.status != 101 {
        let body = read_body(&mut stream, &head, rest, deadline.at).await;
        rep.step(Step::Handshake {
            status: head.status,
            reason: head.reason,
            ms: upgrade_ms,
            subprotocol: None,
            headers: head.headers,
            body: Some(body),
        });
        return Err(UpgradeFailure::Refused(Failure {
            phase: Phase::Upgrade,
            status: Some(head.status),
        }));
    }
    let protocols = options.protocols.join(", ");
    let offer = Offer {
        key: &key,
        protocols: (!protocols.is_empty()).then_some(protocols.as_str()),
        extensions: None,
    };
    let checked = check_101(&HeaderLines(&head.lines()), offer);
    rep.step(Step::Handshake {
        status: head.status,
        reason: head.reason.clone(),
        ms: upgrade_ms,
        subprotocol: head.header("sec-websocket-protocol").map(str::to_string),
        headers: head.headers.clone(),
        body: None,
    });
    checked.map_err(|e| UpgradeFailure::Failed(e.into()))?;
    Ok(Connected {
        stream,
        leftover: rest,
        opened_at,
    })
}

fn upgrade_request(options: &ProbeOptions, host: &str, key: &str) -> Vec<u8> {
    let mut head = request_head(&options.target.path, host, key);
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

    /// The headers as `httparse` lines, for the shared checks.
    fn lines(&self) -> Vec<httparse::Header<'_>> {
        self.headers
            .iter()
            .map(|(name, value)| httparse::Header {
                name,
                value: value.as_bytes(),
            })
            .collect()
    }
}

/// Reads the response head; returns the bytes read past it too.
async fn read_response(stream: &mut Box<dyn Io>) -> Result<(ResponseHead, BytesMut), UpgradeError> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(UpgradeError::NoAnswer);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match head_end(response.parse(&buf), buf.len()) {
            Ok(Some(end)) => {
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
                return Ok((head, buf));
            }
            Ok(None) => {}
            Err(HeadError::TooLarge) => return Err(UpgradeError::TooLarge),
            Err(HeadError::Malformed(error)) => {
                let start = String::from_utf8_lossy(&buf[..buf.len().min(60)]).into_owned();
                return Err(UpgradeError::NotHttp { error, start });
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
        // Parts the request could not carry are refused, not dropped.
        for (bad, says) in [
            ("ws://127.0.0.1:99999/", "port 99999"),
            ("ws://127.0.0.1:0/", "port 0"),
            ("ws://[::1]:http/", "port http"),
            ("ws://user:pw@127.0.0.1/", "user information"),
            ("ws://127.0.0.1/chat#room", "fragment"),
        ] {
            let error = bad.parse::<Target>().unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
        let t: Target = "ws://127.0.0.1:/x".parse().unwrap();
        assert_eq!(
            (t.port, t.path.as_str()),
            (80, "/x"),
            "an empty port is the default"
        );
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
        assert!(parse_host("[::1]:8443").is_ok());
        assert!(
            parse_host("[::1]:99999")
                .unwrap_err()
                .contains("port 99999")
        );
        assert!(parse_host("::1").unwrap_err().contains("'[::1]'"));
        assert_eq!(host_only("cdn.example.com:8443"), "cdn.example.com");
        assert_eq!(host_only("[::1]:80"), "::1");
        assert_eq!(host_only("app.test"), "app.test");
    }
}
