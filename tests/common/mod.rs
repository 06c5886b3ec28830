//! Shared helpers for tests that drive the relay over real loopback sockets.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ecdn_console::config::Config;
use ecdn_console::relay::{self, RelayEvent, RelayHandle};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

pub type Client = WebSocketStream<TcpStream>;

/// A config with `[relay]` on an ephemeral loopback port and the given
/// `[[domain]]` tables appended. `{origin}` in `domains` is replaced.
pub fn config(relay_extra: &str, domains: &str, origin: SocketAddr) -> Arc<Config> {
    let text = format!(
        "[relay]\nlisten = \"127.0.0.1:0\"\nhandshake-timeout = 2\norigin-connect-timeout = 1\n{relay_extra}\n{}",
        domains.replace("{origin}", &origin.to_string())
    );
    Arc::new(Config::parse(&text, Path::new("test.toml")).expect("test config"))
}

/// One full-site domain `app.test` with the given websocket table.
pub fn one_domain(websocket: &str) -> String {
    format!(
        "[[domain]]\nname = \"app.test\"\nacceleration = \"full-site\"\norigins = [\"{{origin}}\"]\nwebsocket = {websocket}\n"
    )
}

pub async fn start_relay(config: Arc<Config>) -> (RelayHandle, mpsc::Receiver<RelayEvent>) {
    relay::start(config).await.expect("relay starts")
}

/// The embedded echo origin on an ephemeral port.
pub async fn echo_origin(options: ecdn_console::origin::OriginOptions) -> SocketAddr {
    ecdn_console::origin::spawn(
        "127.0.0.1:0".parse().unwrap(),
        options,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap()
}

/// What a recording origin saw.
#[derive(Debug)]
pub enum Seen {
    Headers(Vec<(String, String)>),
    Message(Message),
    Ended,
}

/// An origin that reports everything it receives and sends what it is told.
/// Close frames are reported as `Seen::Message(Message::Close(..))`.
pub async fn recording_origin() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Seen>,
    mpsc::UnboundedSender<Message>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let (send_tx, mut send_rx) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let headers_tx = seen_tx.clone();
        let ws = tokio_tungstenite::accept_hdr_async(
            stream,
            move |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                let _ = headers_tx.send(Seen::Headers(headers));
                Ok(resp)
            },
        )
        .await
        .unwrap();
        let (mut sink, mut source) = ws.split();
        loop {
            tokio::select! {
                m = source.next() => match m {
                    Some(Ok(m)) => { let _ = seen_tx.send(Seen::Message(m)); }
                    _ => { let _ = seen_tx.send(Seen::Ended); break; }
                },
                m = send_rx.recv() => match m {
                    Some(m) => { let _ = sink.send(m).await; }
                    // Dropping the sender makes the origin vanish without a close frame.
                    None => break,
                },
            }
        }
    });
    (addr, seen_rx, send_tx)
}

/// Connects a WebSocket client through the relay with `host` as Host header.
pub async fn connect(relay: SocketAddr, host: &str) -> Client {
    try_connect(relay, host, None)
        .await
        .expect("WebSocket handshake through the relay")
}

pub async fn try_connect(
    relay: SocketAddr,
    host: &str,
    protocols: Option<&str>,
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{relay}/chat?room=1")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert("host", host.parse().unwrap());
    if let Some(p) = protocols {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", p.parse().unwrap());
    }
    let stream = TcpStream::connect(relay).await.unwrap();
    tokio_tungstenite::client_async(request, stream)
        .await
        .map(|(ws, _)| ws)
}

/// Reads until a close frame (returned) or the end of the stream (`None`).
pub async fn next_close(client: &mut Client) -> Option<CloseFrame> {
    while let Some(m) = client.next().await {
        match m {
            Ok(Message::Close(frame)) => return frame,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Waits for a close on the recording origin's stream.
pub async fn origin_close(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Option<CloseFrame> {
    while let Some(s) = seen.recv().await {
        match s {
            Seen::Message(Message::Close(frame)) => return frame,
            Seen::Ended => return None,
            _ => {}
        }
    }
    None
}

/// Sends a raw HTTP request and returns the status code (`None`: dropped).
pub async fn raw_status(relay: SocketAddr, request: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(relay).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok())
}

pub fn upgrade_request(host: &str) -> Vec<u8> {
    format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// The next event matching `pred`, within 10 s.
pub async fn wait_event(
    events: &mut mpsc::Receiver<RelayEvent>,
    mut pred: impl FnMut(&RelayEvent) -> bool,
) -> RelayEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = events.recv().await.expect("relay event stream open");
            if pred(&e) {
                return e;
            }
        }
    })
    .await
    .expect("expected relay event")
}

pub fn code(frame: &Option<CloseFrame>) -> Option<u16> {
    frame.as_ref().map(|f| u16::from(f.code))
}

pub fn reason(frame: &Option<CloseFrame>) -> String {
    frame
        .as_ref()
        .map(|f| f.reason.to_string())
        .unwrap_or_default()
}

/// A file with `contents` in a fresh temporary folder (removed with the
/// returned guard).
pub fn temp_file(name: &str, contents: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}

/// A config in a fresh directory for a `serve` process: one domain
/// `name` to `origin` with a 300 s limit, the control socket at
/// `relay.sock` beside it. The directory guard, the config's path and the
/// socket's.
pub fn relay_dir(name: &str, origin: SocketAddr) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "[relay]\nlisten = \"127.0.0.1:0\"\ncontrol-socket = \"relay.sock\"\n\n[[domain]]\n\
             name = \"{name}\"\nacceleration = \"full-site\"\norigins = [\"{origin}\"]\n\
             websocket = {{ switch = \"on\", timeout = 300 }}\n"
        ),
    )
    .unwrap();
    let socket = dir.path().join("relay.sock");
    (dir, config, socket)
}

/// `ecdn-console sessions --json` against the relay on `socket`: its
/// sessions by client address.
pub async fn sessions_by_client(socket: &Path) -> HashMap<SocketAddr, serde_json::Value> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ecdn-console"))
        .args(["sessions", "--json", "--socket"])
        .arg(socket)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "sessions --json: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.into_iter()
        .map(|s| (s["client"].as_str().unwrap().parse().unwrap(), s))
        .collect()
}

/// A TLS echo origin for `app.test`, with a certificate from a fresh CA.
/// Returns its address and the CA's PEM.
pub async fn tls_origin() -> (SocketAddr, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["app.test".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // Clients that refuse the certificate are part of the tests.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, ca.pem())
}

/// The common setup: the echo origin and a relay with one domain `app.test`
/// whose `websocket` table is `websocket`.
pub async fn relay_to_echo(websocket: &str) -> (RelayHandle, mpsc::Receiver<RelayEvent>) {
    let origin = echo_origin(ecdn_console::origin::OriginOptions::default()).await;
    start_relay(config("", &one_domain(websocket), origin)).await
}

/// A raw client: handshake by hand, then bytes.
pub async fn raw_client(relay: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(relay).await.unwrap();
    stream
        .write_all(&upgrade_request("app.test"))
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A process's open-files limit as /proc shows it: `[soft, hard]`.
pub fn open_files_limit(pid: u32) -> [String; 2] {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let values: Vec<String> = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .unwrap_or_else(|| panic!("no open-files line in {limits}"))
        .split_whitespace()
        .take(2)
        .map(String::from)
        .collect();
    [values[0].clone(), values[1].clone()]
}

/// Why a child's output had no line with what was waited for.
#[derive(Debug)]
pub enum NoLine {
    /// The output ended first (the process exited).
    Ended,
    TimedOut,
}

/// The next of a child's output `lines` containing `needle`, within `limit`.
pub async fn next_line_with(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    needle: &str,
    limit: Duration,
) -> Result<String, NoLine> {
    let found = tokio::time::timeout(limit, async {
        while let Some(line) = lines.recv().await {
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => Ok(line),
        Ok(None) => Err(NoLine::Ended),
        Err(_) => Err(NoLine::TimedOut),
    }
}

/// `ecdn-console --config CONFIG serve ARGS` with `envs`, its stdout piped
/// and killed when dropped. Never the NOTIFY_SOCKET of whoever runs the
/// tests; a test's own (in `envs`) wins.
pub fn serve_command(
    config: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ecdn-console"));
    command
        .arg("--config")
        .arg(config)
        .arg("serve")
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    command
}
