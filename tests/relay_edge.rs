//! Edge hardening (issue 10), over real sockets with raw bytes — the
//! requests and answers a library would refuse to send: strict HTTP on
//! both hops (RFC 9110/9112, RFC 6455 §4), the domain re-checked when a
//! session starts, and frame lengths RFC 6455 §5.2 forbids.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ecdn_console::config::Config;
use ecdn_console::origin::OriginOptions;
use ecdn_console::relay::RelayEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tungstenite::handshake::derive_accept_key;

const ON_60: &str = "{ switch = \"on\", timeout = 60 }";
/// How a scripted origin answers, given the accept key.
type Answer = fn(&str) -> Vec<u8>;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// What a scripted origin saw of one connection.
struct OriginView {
    /// The request head, as text.
    head: mpsc::UnboundedReceiver<String>,
    /// Bytes received after the head, until EOF.
    after: mpsc::UnboundedReceiver<Vec<u8>>,
}

/// An origin that answers every request head with `answer(accept key)`
/// once `gate` opens (at once without one) — a sloppy origin on demand.
async fn scripted_origin(
    answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
    gate: Option<oneshot::Receiver<()>>,
) -> (SocketAddr, OriginView) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (head_tx, head) = mpsc::unbounded_channel();
    let (after_tx, after) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut gate = gate;
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = Vec::new();
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut chunk = [0u8; 1024];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let text = String::from_utf8_lossy(&buf).into_owned();
            let key = text
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap_or("")
                .trim()
                .to_string();
            let _ = head_tx.send(text);
            if let Some(g) = gate.take() {
                let _ = g.await;
            }
            let _ = stream
                .write_all(&answer(&derive_accept_key(key.as_bytes())))
                .await;
            let mut rest = Vec::new();
            let _ = timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
            let _ = after_tx.send(rest);
        }
    });
    (addr, OriginView { head, after })
}

fn accept_101(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// Sends `request` and returns the whole response the client reads (the
/// relay closes after a refusal; after a 101, what arrived within 300 ms).
async fn exchange(relay: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(relay).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = timeout(
        Duration::from_millis(1500),
        stream.read_to_end(&mut response),
    )
    .await;
    String::from_utf8_lossy(&response).into_owned()
}

fn status_of(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}

/// An upgrade request with `extra` header lines (each ending in `\r\n`).
fn request_with(target: &str, host_lines: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\n{host_lines}Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

async fn relay_to(
    origin: SocketAddr,
) -> (ecdn_console::relay::RelayHandle, mpsc::Receiver<RelayEvent>) {
    start_relay(config("", &one_domain(ON_60), origin)).await
}

async fn refused(events: &mut mpsc::Receiver<RelayEvent>) -> (Option<u16>, String) {
    match wait_event(events, |e| matches!(e, RelayEvent::Refused { .. })).await {
        RelayEvent::Refused { status, reason, .. } => (status, reason),
        _ => unreachable!(),
    }
}

// ---- Sessions and reloads ----

/// The relay's config with app.test changed by `change`.
fn changed(relay: &ecdn_console::relay::RelayHandle, change: &str) -> Arc<Config> {
    let mut config = (*relay.config()).clone();
    match change {
        "delete" => config.domains.clear(),
        _ => config.domains[0].status = ecdn_console::config::Status::Offline,
    }
    Arc::new(config)
}

#[tokio::test]
async fn a_domain_deleted_or_taken_offline_while_the_origin_answers_gets_no_101() {
    for (change, status, reason) in [
        ("delete", 404, "domain removed"),
        ("offline", 503, "domain offline"),
    ] {
        let (open, gate) = oneshot::channel();
        let (origin, mut view) = scripted_origin(accept_101, Some(gate)).await;
        let (relay, mut events) = relay_to(origin).await;
        let addr = relay.local_addr();
        let client = tokio::spawn(async move {
            exchange(addr, &request_with("/", "Host: app.test\r\n", "")).await
        });
        view.head.recv().await.unwrap(); // the upgrade now waits on the origin
        relay.apply_config(changed(&relay, change));
        open.send(()).unwrap();
        let response = client.await.unwrap();
        assert_eq!(status_of(&response), Some(status), "{change}: {response}");
        let (_, why) = refused(&mut events).await;
        assert!(why.contains("while its upgrade waited"), "{why}");
        // The origin, which did answer 101, gets the relay's close with the reason.
        let after = view.after.recv().await.unwrap();
        assert_eq!(after[0], 0x88, "{change}: a close frame, got {after:?}");
        let mask = [after[2], after[3], after[4], after[5]];
        let payload: Vec<u8> = after[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
        assert_eq!(String::from_utf8_lossy(&payload[2..]), reason);
    }
}

// ---- HTTP parsing, client side ----

#[tokio::test]
async fn malformed_requests_get_400_with_what_is_wrong() {
    let (origin, _view) = scripted_origin(accept_101, None).await;
    let (relay, _events) = relay_to(origin).await;
    let host = "Host: app.test\r\n";
    let cases: Vec<(String, &str)> = vec![
        (
            request_with("/", host, "Content-Length: 5\r\n") + "hello",
            "body",
        ),
        (
            request_with("/", host, "Transfer-Encoding: chunked\r\n"),
            "body",
        ),
        (
            request_with("http://evil.test/x", host, ""),
            "does not match Host",
        ),
        (
            request_with("/", "Host: app.test:@evil.test\r\n", ""),
            "not a valid host",
        ),
        (
            request_with("/", "Host: app.test:80#@evil.test\r\n", ""),
            "not a valid host",
        ),
        (
            request_with("/", "Host: app.test:80 evil\r\n", ""),
            "not a valid host",
        ),
        (
            request_with("/", "Host: app.test\r\nHost: other.test\r\n", ""),
            "more than one Host",
        ),
        (
            request_with("/", host, "").replacen("HTTP/1.1", "HTTP/1.0", 1),
            "HTTP/1.1",
        ),
        (
            request_with("/", host, "").replace(KEY, "abc"),
            "16 bytes of base64",
        ),
        (request_with("*", host, ""), "not a path"),
    ];
    for (request, why) in cases {
        let response = exchange(relay.local_addr(), &request).await;
        assert_eq!(status_of(&response), Some(400), "{request:?} -> {response}");
        assert!(response.contains(why), "{request:?} -> {response}");
    }
}

#[tokio::test]
async fn an_absolute_form_target_for_the_same_host_reaches_the_origin_in_origin_form() {
    let (origin, mut view) = scripted_origin(accept_101, None).await;
    let (relay, _events) = relay_to(origin).await;
    let response = exchange(
        relay.local_addr(),
        &request_with("http://APP.test:80/room?id=1", "Host: app.test\r\n", ""),
    )
    .await;
    assert_eq!(status_of(&response), Some(101), "{response}");
    let head = view.head.recv().await.unwrap();
    assert!(head.starts_with("GET /room?id=1 HTTP/1.1\r\n"), "{head}");
}

#[tokio::test]
async fn repeated_list_headers_are_one_list_and_hop_by_hop_headers_stay_behind() {
    let (origin, mut view) = scripted_origin(
        |accept| {
            let mut answer = accept_101(accept);
            answer.truncate(answer.len() - 2);
            answer.extend_from_slice(b"Sec-WebSocket-Protocol: beta\r\n\r\n");
            answer
        },
        None,
    )
    .await;
    let (relay, _events) = relay_to(origin).await;
    let request = "GET / HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\n\
         Connection: keep-alive\r\nConnection: Upgrade, X-Secret-Hop\r\nX-Secret-Hop: 1\r\n\
         X-End-To-End: kept\r\nExpect: 100-continue\r\n\
         Sec-WebSocket-Protocol: alpha\r\nSec-WebSocket-Protocol: beta\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let response = exchange(relay.local_addr(), request).await;
    assert_eq!(status_of(&response), Some(101), "{response}");
    assert!(
        response.contains("Sec-WebSocket-Protocol: beta"),
        "{response}"
    );
    let head = view.head.recv().await.unwrap().to_ascii_lowercase();
    assert!(
        head.contains("sec-websocket-protocol: alpha, beta\r\n"),
        "{head}"
    );
    assert!(head.contains("x-end-to-end: kept"), "{head}");
    assert!(
        !head.contains("x-secret-hop"),
        "hop-by-hop header forwarded: {head}"
    );
    assert!(!head.contains("expect"), "Expect forwarded: {head}");
}

#[tokio::test]
async fn every_426_names_the_protocol_and_version_to_use() {
    let (origin, _view) = scripted_origin(accept_101, None).await;
    let (relay, _events) = relay_to(origin).await;
    for request in [
        "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n".to_string(),
        "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n".to_string(),
        request_with("/", "Host: app.test\r\n", "").replace("Version: 13", "Version: 8"),
    ] {
        let response = exchange(relay.local_addr(), &request).await;
        assert_eq!(status_of(&response), Some(426), "{response}");
        assert!(
            response.contains("\r\nUpgrade: websocket\r\n"),
            "{response}"
        );
        assert!(
            response.contains("\r\nSec-WebSocket-Version: 13\r\n"),
            "{response}"
        );
    }
}

// ---- The origin's answer ----

#[tokio::test]
async fn interim_responses_before_the_101_are_skipped() {
    let (origin, _view) = scripted_origin(
        |accept| {
            let mut answer =
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                    .to_vec();
            answer.extend(accept_101(accept));
            answer
        },
        None,
    )
    .await;
    let (relay, _events) = relay_to(origin).await;
    let response = exchange(
        relay.local_addr(),
        &request_with("/", "Host: app.test\r\n", ""),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 101 "), "{response}");
    assert!(!response.contains("100 Continue"), "{response}");
}

#[tokio::test]
async fn a_101_that_is_not_a_websocket_upgrade_or_adds_an_extension_is_502() {
    let answers: [(Answer, &str); 3] = [
        (
            |accept| {
                format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").into_bytes()
            },
            "without Upgrade: websocket",
        ),
        (
            |accept| {
                format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").into_bytes()
            },
            "without Upgrade: websocket",
        ),
        (
            |accept| {
                let mut answer = accept_101(accept);
                answer.truncate(answer.len() - 2);
                answer.extend_from_slice(b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
                answer
            },
            "did not offer",
        ),
    ];
    for (answer, why) in answers {
        let (origin, _view) = scripted_origin(answer, None).await;
        let (relay, mut events) = relay_to(origin).await;
        let response = exchange(
            relay.local_addr(),
            &request_with("/", "Host: app.test\r\n", ""),
        )
        .await;
        assert_eq!(status_of(&response), Some(502), "{response}");
        let (_, reason) = refused(&mut events).await;
        assert!(reason.contains(why), "{reason}");
    }
}

/// What a client reads when the origin answers its upgrade with `answer`.
async fn answer_through(answer: Answer) -> String {
    let (origin, _view) = scripted_origin(answer, None).await;
    let (relay, _events) = relay_to(origin).await;
    exchange(
        relay.local_addr(),
        &request_with("/", "Host: app.test\r\n", ""),
    )
    .await
}

#[tokio::test]
async fn an_origins_refusal_reaches_the_client_with_its_headers_and_body() {
    let response = answer_through(|_| {
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"chat\"\r\n\
              Connection: close, X-Origin-Hop\r\nX-Origin-Hop: 1\r\nContent-Length: 12\r\n\r\nlog in first"
                .to_vec()
        }).await;
    assert!(
        response.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{response}"
    );
    assert!(
        response.contains("WWW-Authenticate: Bearer realm=\"chat\"\r\n"),
        "{response}"
    );
    assert!(!response.contains("X-Origin-Hop"), "{response}");
    assert!(response.contains("Content-Length: 12\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nlog in first"), "{response}");
}

#[tokio::test]
async fn a_204_or_a_chunked_refusal_is_passed_on_well_formed() {
    let response =
        answer_through(|_| b"HTTP/1.1 204 No Content\r\nX-Why: none\r\n\r\n".to_vec()).await;
    assert!(
        response.starts_with("HTTP/1.1 204 No Content\r\n"),
        "{response}"
    );
    assert!(
        response.ends_with("\r\n\r\n"),
        "a 204 has no body: {response:?}"
    );
    assert!(!response.contains("Content-Length"), "{response}");

    let response = answer_through(|_| b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnot \r\n7\r\nallowed\r\n0\r\n\r\n".to_vec()).await;
    assert!(
        response.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{response}"
    );
    assert!(!response.contains("chunked"), "{response}");
    assert!(
        response.ends_with("Content-Length: 11\r\nConnection: close\r\n\r\nnot allowed"),
        "{response:?}"
    );
}

// ---- Frames ----

#[tokio::test]
async fn a_frame_length_with_the_top_bit_set_is_a_protocol_error_1002() {
    let origin = echo_origin(OriginOptions::default()).await;
    let (relay, _events) = relay_to(origin).await;
    let mut stream = raw_client(relay.local_addr()).await;
    // Binary, masked, 64-bit length 0x8000_0000_0000_0000 (RFC 6455 §5.2:
    // the most significant bit MUST be 0).
    let mut frame = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
    frame.extend_from_slice(&[1, 2, 3, 4]);
    stream.write_all(&frame).await.unwrap();
    let mut close = [0u8; 4];
    timeout(Duration::from_secs(2), stream.read_exact(&mut close))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(close[0], 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([close[2], close[3]]), 1002);
}
