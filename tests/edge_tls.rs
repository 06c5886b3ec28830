//! TLS at the edge (`[relay] tls-listen`) with the real binary: a private
//! CA made here (rcgen), two domains with their own certificates chosen by
//! SNI, `wss://` sessions relayed end to end by tokio-tungstenite clients
//! that verify them, `X-Forwarded-Proto: https`, `origin-protocol =
//! "follow"`, certificates replaced and reloaded while an old session
//! stays up, a broken one refused with the old one still served, and a
//! client that never starts its TLS handshake dropped at handshake-timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod serve_process;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ecdn_console::origin::OriginOptions;
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serve_process::ServeProcess;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

type TlsClient = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A certificate for `name`, written as `dir/<file>.pem` and `.key`; its DER.
    fn issue(&self, dir: &Path, file: &str, name: &str) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    }
}

/// A `wss://` client for `host` (the SNI and the Host header) through `relay`.
async fn wss(relay: std::net::SocketAddr, host: &str, ca: &Ca) -> Result<TlsClient, String> {
    let request = format!("wss://{host}:{}/", relay.port())
        .into_client_request()
        .unwrap();
    let tcp = TcpStream::connect(relay).await.unwrap();
    tokio_tungstenite::client_async_tls_with_config(
        request,
        tcp,
        None,
        Some(Connector::Rustls(ca.client_config())),
    )
    .await
    .map(|(ws, _)| ws)
    .map_err(|e| e.to_string())
}

/// The certificate the relay served on this connection.
fn served(client: &TlsClient) -> Vec<u8> {
    match client.get_ref() {
        MaybeTlsStream::Rustls(tls) => tls.get_ref().1.peer_certificates().unwrap()[0].to_vec(),
        _ => panic!("not a TLS connection"),
    }
}

async fn echo(client: &mut TlsClient, text: &str) -> String {
    client.send(Message::text(text)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(3), client.next())
        .await
        .expect("an answer")
        .unwrap()
        .unwrap();
    reply.into_text().unwrap().to_string()
}

/// `config-get` over the control socket, by hand (one JSON line each way).
async fn config_get(socket: &Path) -> serde_json::Value {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let hello = lines.next_line().await.unwrap().unwrap();
    assert!(hello.contains("ecdn-console-control"), "{hello}");
    write
        .write_all(b"{\"request\":\"config-get\"}\n")
        .await
        .unwrap();
    let answer = lines.next_line().await.unwrap().unwrap();
    serde_json::from_str(&answer).unwrap()
}

fn config_text(echo: std::net::SocketAddr, tls_origin: std::net::SocketAddr) -> String {
    format!(
        "[relay]\nlisten = \"127.0.0.1:0\"\ntls-listen = \"127.0.0.1:0\"\nhandshake-timeout = 1\n\
         control-socket = \"relay.sock\"\n\
         origin-ca-file = \"origin-ca.pem\"\n\n\
         [[domain]]\nname = \"a.test\"\nacceleration = \"full-site\"\norigins = [\"{echo}\"]\n\
         certificate = {{ cert-file = \"a.pem\", key-file = \"a.key\" }}\n\n\
         [[domain]]\nname = \"b.test\"\nacceleration = \"full-site\"\norigins = [\"{echo}\"]\n\
         certificate = {{ cert-file = \"certs/b.pem\", key-file = \"certs/b.key\" }}\n\n\
         [[domain]]\nname = \"app.test\"\nacceleration = \"full-site\"\norigins = [\"{tls_origin}\"]\n\
         origin-protocol = \"follow\"\ncertificate = {{ cert-file = \"app.pem\", key-file = \"app.key\" }}\n"
    )
}

#[tokio::test]
async fn wss_at_the_edge_with_sni_certificates_and_reloads() {
    let echo_addr = echo_origin(OriginOptions::default()).await;
    let (tls_origin_addr, origin_ca) = tls_origin().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("origin-ca.pem"), origin_ca).unwrap();
    let ca = Ca::new();
    let a1 = ca.issue(dir.path(), "a", "a.test");
    let b = ca.issue(&dir.path().join("certs"), "b", "b.test");
    ca.issue(dir.path(), "app", "app.test");
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, config_text(echo_addr, tls_origin_addr)).unwrap();
    let mut serve = ServeProcess::start(&path, &[], &[]).await;
    let edge = serve.tls.expect("a tls-listen address");

    // SNI picks each domain's certificate (the client verifies it).
    let mut a_old = wss(edge, "a.test", &ca).await.unwrap();
    assert_eq!(served(&a_old), a1);
    let mut b_client = wss(edge, "b.test", &ca).await.unwrap();
    assert_eq!(served(&b_client), b);
    assert_eq!(echo(&mut a_old, "hello").await, "hello");
    assert_eq!(echo(&mut b_client, "over tls").await, "over tls");
    // The origin hears that the client came over TLS.
    let headers = echo(&mut b_client, "/headers").await.to_ascii_lowercase();
    assert!(headers.contains("x-forwarded-proto: https"), "{headers}");

    // The console (attached over the control socket) learns the
    // certificates in force from the config answer.
    let tls = config_get(&dir.path().join("relay.sock")).await["tls"].clone();
    assert_eq!(tls["listen"], edge.to_string(), "{tls}");
    assert_eq!(tls["domains"]["b.test"]["subject"], "CN=b.test", "{tls}");
    assert!(
        tls["domains"]["a.test"]["not_after"]
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "{tls}"
    );
    assert!(tls["default"].is_null(), "{tls}");

    // origin-protocol = "follow": wss:// to the origin for a TLS client…
    let mut follow = wss(edge, "app.test", &ca).await.unwrap();
    assert_eq!(echo(&mut follow, "followed").await, "followed");
    // …and ws:// for a plain one, which this TLS-only origin refuses.
    assert!(try_connect(serve.addr, "app.test", None).await.is_err());

    // probe works against the edge, trusting the private CA with --ca-file.
    std::fs::write(dir.path().join("edge-ca.pem"), ca.issuer.pem()).unwrap();
    let probe = tokio::process::Command::new(env!("CARGO_BIN_EXE_ecdn-console"))
        .arg("probe")
        .arg(format!("wss://127.0.0.1:{}/", edge.port()))
        .args([
            "--host",
            "b.test",
            "--heartbeat",
            "0.2",
            "--count",
            "2",
            "--ca-file",
        ])
        .arg(dir.path().join("edge-ca.pem"))
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&probe.stdout);
    assert_eq!(
        probe.status.code(),
        Some(0),
        "{report}{}",
        String::from_utf8_lossy(&probe.stderr)
    );

    // A renewed certificate, reloaded: new clients get it, the old session stays.
    let a2 = ca.issue(dir.path(), "a", "a.test");
    serve.signal("HUP");
    serve.line_with("reloaded (SIGHUP)").await;
    let a_new = wss(edge, "a.test", &ca).await.unwrap();
    assert_eq!(served(&a_new), a2);
    assert_eq!(echo(&mut a_old, "still up").await, "still up");

    // A broken certificate is refused with the file named; the old one serves on.
    std::fs::write(dir.path().join("a.pem"), "this is not a certificate\n").unwrap();
    serve.signal("HUP");
    let rejected = serve.line_with("rejected").await;
    assert!(
        rejected.contains("a.pem") && rejected.contains("not PEM"),
        "{rejected}"
    );
    let a_after = wss(edge, "a.test", &ca).await.unwrap();
    assert_eq!(served(&a_after), a2);
    assert_eq!(echo(&mut a_old, "and still").await, "and still");

    serve.signal("TERM");
    assert_eq!(serve.exit_code(Duration::from_secs(5)).await, Some(0));
}

#[tokio::test]
async fn a_client_that_never_completes_the_tls_handshake_is_dropped_at_handshake_timeout() {
    let echo_addr = echo_origin(OriginOptions::default()).await;
    let (tls_origin_addr, origin_ca) = tls_origin().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("origin-ca.pem"), origin_ca).unwrap();
    let ca = Ca::new();
    ca.issue(dir.path(), "a", "a.test");
    ca.issue(&dir.path().join("certs"), "b", "b.test");
    ca.issue(dir.path(), "app", "app.test");
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, config_text(echo_addr, tls_origin_addr)).unwrap();
    let mut serve = ServeProcess::start(&path, &[], &[]).await;
    let edge = serve.tls.unwrap();

    let mut silent = TcpStream::connect(edge).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf))
        .await
        .expect("dropped within the handshake timeout");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "dropped early: {waited:?}"
    );
    let line = serve.line_with("TLS handshake").await;
    assert!(line.contains("handshake timeout"), "{line}");
    // Others are served meanwhile.
    let mut client = wss(edge, "a.test", &ca).await.unwrap();
    assert_eq!(echo(&mut client, "ok").await, "ok");
    serve.signal("TERM");
    assert_eq!(serve.exit_code(Duration::from_secs(5)).await, Some(0));
}
