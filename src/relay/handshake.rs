//! Both HTTP upgrades, done by hand with `httparse` so the relay keeps any
//! bytes read past a handshake (frames can share a packet with the 101) and
//! so the client is answered only once the origin's answer is known.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tungstenite::handshake::derive_accept_key;
use tungstenite::http::StatusCode;

use crate::config::{Domain, Origin};

/// Request or response headers larger than this are refused (431 / 502).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;

/// A connection the relay will not serve, and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `None`: drop the connection without an answer.
    pub status: Option<u16>,
    pub reason: String,
    pub domain: Option<String>,
    /// Headers to add to the refusal (e.g. `Sec-WebSocket-Version: 13`).
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    pub fn status(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status: Some(status),
            reason: reason.into(),
            domain: None,
            headers: Vec::new(),
        }
    }

    pub fn drop(reason: impl Into<String>) -> Self {
        Self {
            status: None,
            ..Self::status(0, reason)
        }
    }

    pub fn for_domain(mut self, domain: &str) -> Self {
        self.domain = Some(domain.to_string());
        self
    }

    /// The HTTP response for this refusal (none when the connection is dropped).
    pub fn response(&self) -> Option<Vec<u8>> {
        let code = self.status?;
        let phrase = StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        let body = format!("{code} {phrase}: {}\n", self.reason);
        let mut out = format!(
            "HTTP/1.1 {code} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&body);
        Some(out.into_bytes())
    }
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
    let mut buf = Vec::with_capacity(1024);
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
    match request.parse(buf) {
        Ok(httparse::Status::Complete(end)) => Ok(Some((client_request(&request)?, end))),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEADER_BYTES => Err(headers_too_large()),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(headers_too_large()),
        Err(e) => Err(Refusal::status(400, format!("malformed HTTP request: {e}"))),
    }
}

fn headers_too_large() -> Refusal {
    Refusal::status(
        431,
        format!("request headers exceed {} KiB", MAX_HEADER_BYTES / 1024),
    )
}

/// Reads once into the spare capacity of `buf` (at most up to the header limit).
async fn read_some<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> io::Result<usize> {
    let start = buf.len();
    let room = (MAX_HEADER_BYTES - start.min(MAX_HEADER_BYTES)).clamp(1, 4096);
    buf.resize(start + room, 0);
    let result = stream.read(&mut buf[start..]).await;
    buf.truncate(start + *result.as_ref().unwrap_or(&0));
    result
}

fn header<'h>(headers: &'h [httparse::Header<'_>], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Headers the relay sets itself or that belong to one hop only.
const NOT_FORWARDED: [&str; 14] = [
    "host",
    "connection",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-forwarded-proto",
    "x-forwarded-host",
];

fn client_request(request: &httparse::Request<'_, '_>) -> Result<ClientRequest, Refusal> {
    let headers = &*request.headers;
    let not_websocket = |why: &str| {
        Refusal::status(
            426,
            format!(
                "this is a WebSocket relay and {why}; connect with a WebSocket client \
                 (GET with Connection: Upgrade, Upgrade: websocket)"
            ),
        )
    };
    if request.method != Some("GET") {
        return Err(not_websocket(&format!(
            "the request method is {}, not GET",
            request.method.unwrap_or("?")
        )));
    }
    if !has_token(header(headers, "upgrade"), "websocket")
        || !has_token(header(headers, "connection"), "upgrade")
    {
        return Err(not_websocket("the request is not a WebSocket upgrade"));
    }
    if header(headers, "sec-websocket-version") != Some("13") {
        let mut refusal = not_websocket("only WebSocket version 13 is supported");
        refusal.headers.push(("Sec-WebSocket-Version", "13".into()));
        return Err(refusal);
    }
    let key = header(headers, "sec-websocket-key")
        .filter(|k| !k.is_empty())
        .ok_or_else(|| Refusal::status(400, "the upgrade request has no Sec-WebSocket-Key"))?;
    let host = header(headers, "host")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            Refusal::status(
                400,
                "the request has no Host header, so no domain can be chosen",
            )
        })?;
    let forward = headers
        .iter()
        .filter(|h| {
            let name = h.name.to_ascii_lowercase();
            !NOT_FORWARDED.contains(&name.as_str()) && name != "x-forwarded-for"
        })
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect();
    Ok(ClientRequest {
        path: request.path.unwrap_or("/").to_string(),
        host: host.to_string(),
        key: key.to_string(),
        protocols: header(headers, "sec-websocket-protocol").map(str::to_string),
        extensions: header(headers, "sec-websocket-extensions").map(str::to_string),
        forward,
        forwarded_for: header(headers, "x-forwarded-for").map(str::to_string),
        tls: false,
    })
}

/// Origins in the order to try them: a weighted random draw without
/// replacement among weighted origins, then the weight-0 backups in order.
pub fn origin_order(origins: &[Origin]) -> Vec<&Origin> {
    let mut pool: Vec<&Origin> = origins.iter().filter(|o| o.weight > 0).collect();
    let mut order = Vec::with_capacity(origins.len());
    let mut rng = rand::rng();
    while !pool.is_empty() {
        let total: u32 = pool.iter().map(|o| u32::from(o.weight)).sum();
        let mut pick = rng.random_range(0..total);
        let index = pool
            .iter()
            .position(|o| {
                let w = u32::from(o.weight);
                if pick < w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .unwrap_or(0);
        order.push(pool.remove(index));
    }
    order.extend(origins.iter().filter(|o| o.weight == 0));
    order
}

/// Connects to the first origin that accepts TCP, in weighted order.
pub async fn connect_origin(
    domain: &Domain,
    connect_timeout: Duration,
) -> Result<(TcpStream, String), Refusal> {
    let mut timed_out = false;
    let mut failures = Vec::new();
    for origin in origin_order(&domain.origins) {
        let authority = origin.authority();
        match timeout(connect_timeout, TcpStream::connect(&authority)).await {
            Ok(Ok(stream)) => {
                // Frames are small and latency-sensitive: never wait to coalesce.
                let _ = stream.set_nodelay(true);
                return Ok((stream, authority));
            }
            Ok(Err(e)) => failures.push(format!("{authority}: {e}")),
            Err(_) => {
                timed_out = true;
                failures.push(format!(
                    "{authority}: no answer in {} s",
                    connect_timeout.as_secs()
                ));
            }
        }
    }
    let (status, what) = if timed_out {
        (504, "origin did not answer in time")
    } else {
        (502, "no origin reachable")
    };
    Err(
        Refusal::status(status, format!("{what} ({})", failures.join("; ")))
            .for_domain(&domain.name),
    )
}

/// The origin's answer to a successful upgrade.
#[derive(Debug, Clone, Default)]
pub struct Upgraded {
    pub protocol: Option<String>,
    pub extensions: Option<String>,
    /// Bytes the origin sent after its 101 (already frames for the client).
    pub leftover: Vec<u8>,
}

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
    let mut buf = Vec::with_capacity(1024);
    loop {
        let n = read_some(stream, &mut buf)
            .await
            .map_err(|e| refuse(502, format!("origin connection failed: {e}")))?;
        if n == 0 {
            return Err(refuse(
                502,
                "origin closed the connection without answering the upgrade".into(),
            ));
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(end)) => {
                let upgraded =
                    check_response(&response, &request.key, request.protocols.as_deref())
                        .map_err(|r| r.for_domain(&domain.name))?;
                return Ok(Upgraded {
                    leftover: buf[end..].to_vec(),
                    ..upgraded
                });
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEADER_BYTES => {}
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return Err(refuse(
                    502,
                    "origin's response headers are too large".into(),
                ));
            }
            Err(e) => {
                return Err(refuse(
                    502,
                    format!("origin sent a malformed HTTP response: {e}"),
                ));
            }
        }
    }
}

/// The upgrade request the relay sends to the origin.
pub fn origin_request(domain: &Domain, request: &ClientRequest, client: SocketAddr) -> Vec<u8> {
    let forwarded_for = match &request.forwarded_for {
        Some(previous) => format!("{previous}, {}", client.ip()),
        None => client.ip().to_string(),
    };
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\
         X-Forwarded-For: {forwarded_for}\r\nX-Forwarded-Proto: {}\r\nX-Forwarded-Host: {}\r\n",
        request.path,
        domain.origin_host_header(),
        request.key,
        if request.tls { "https" } else { "http" },
        request.host,
    );
    if let Some(p) = &request.protocols {
        head.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    if let Some(e) = &request.extensions {
        head.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
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

fn check_response(
    response: &httparse::Response<'_, '_>,
    key: &str,
    offered: Option<&str>,
) -> Result<Upgraded, Refusal> {
    let code = response.code.unwrap_or(0);
    if code != 101 {
        let reason = response.reason.unwrap_or("");
        return Err(Refusal::status(
            code,
            format!("origin refused the WebSocket upgrade with {code} {reason}")
                .trim_end()
                .to_string(),
        ));
    }
    let headers = &*response.headers;
    if header(headers, "sec-websocket-accept") != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err(Refusal::status(
            502,
            "origin answered 101 with a wrong Sec-WebSocket-Accept",
        ));
    }
    let protocol = header(headers, "sec-websocket-protocol").map(str::to_string);
    if let Some(p) = &protocol {
        let was_offered = offered.is_some_and(|o| o.split(',').any(|x| x.trim() == p));
        if !was_offered {
            return Err(Refusal::status(
                502,
                format!("origin chose subprotocol \"{p}\", which the client did not offer"),
            ));
        }
    }
    Ok(Upgraded {
        protocol,
        extensions: header(headers, "sec-websocket-extensions").map(str::to_string),
        leftover: Vec::new(),
    })
}

/// The 101 the client gets once the origin has accepted.
pub fn switching_protocols(key: &str, upgraded: &Upgraded) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if let Some(p) = &upgraded.protocol {
        head.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    if let Some(e) = &upgraded.extensions {
        head.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
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

/// A TLS connection to an origin (`origin-protocol = "https"`).
pub async fn tls_connect(
    stream: TcpStream,
    domain: &Domain,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Refusal> {
    let name = domain.origin_host_header().to_string();
    let server_name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
        Refusal::status(
            502,
            format!("cannot use \"{name}\" as a TLS server name: {e}"),
        )
    })?;
    tokio_rustls::TlsConnector::from(tls.clone())
        .connect(server_name, stream)
        .await
        .map_err(|e| {
            Refusal::status(502, format!("TLS handshake with the origin failed: {e}"))
                .for_domain(&domain.name)
        })
}

/// The trust roots for `wss://` origins: the public web PKI, plus the
/// operator's own CA certificates (`origin-ca-file`) if any.
pub fn tls_client_config(
    extra_ca_file: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_ca_file {
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read origin-ca-file {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| format!("origin-ca-file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("origin-ca-file {}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!(
                "origin-ca-file {} holds no PEM certificate",
                path.display()
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
