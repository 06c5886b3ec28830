//! The handshake: every answer the client can get, each refusal an event.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use ecdn_console::origin::OriginOptions;
use ecdn_console::relay::RelayEvent;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

async fn refused_event(
    events: &mut tokio::sync::mpsc::Receiver<RelayEvent>,
) -> (Option<u16>, String, Option<String>) {
    match wait_event(events, |e| matches!(e, RelayEvent::Refused { .. })).await {
        RelayEvent::Refused {
            status,
            reason,
            domain,
            ..
        } => (status, reason, domain.map(String::from)),
        _ => unreachable!(),
    }
}

/// Sends `request` and checks the client got `status` and a `Refused`
/// event with the same status; returns the event's reason.
async fn expect_refusal(
    relay: &ecdn_console::relay::RelayHandle,
    events: &mut tokio::sync::mpsc::Receiver<RelayEvent>,
    request: &[u8],
    status: u16,
) -> String {
    assert_eq!(raw_status(relay.local_addr(), request).await, Some(status));
    let (event_status, reason, _) = refused_event(events).await;
    assert_eq!(event_status, Some(status));
    reason
}

/// A port with nothing listening on it.
async fn dead_port() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn unknown_host_is_404() {
    let (relay, mut events) = relay_to_echo("{ switch = \"on\", timeout = 60 }").await;
    assert_eq!(
        raw_status(relay.local_addr(), &upgrade_request("other.test")).await,
        Some(404)
    );
    let (status, reason, _) = refused_event(&mut events).await;
    assert_eq!(status, Some(404));
    assert!(reason.contains("other.test"), "{reason}");
}

#[tokio::test]
async fn host_matching_ignores_case_and_port() {
    let (relay, _events) = relay_to_echo("{ switch = \"on\", timeout = 60 }").await;
    let mut client = connect(relay.local_addr(), "APP.Test:8080").await;
    client.send(Message::text("hi")).await.unwrap();
    assert_eq!(client.next().await.unwrap().unwrap(), Message::text("hi"));
}

#[tokio::test]
async fn offline_domain_is_503() {
    let origin = echo_origin(OriginOptions::default()).await;
    let domain = one_domain("{ switch = \"on\", timeout = 60 }")
        .replace("acceleration", "status = \"offline\"\nacceleration");
    let (relay, mut events) = start_relay(config("", &domain, origin)).await;
    assert_eq!(
        raw_status(relay.local_addr(), &upgrade_request("app.test")).await,
        Some(503)
    );
    let (status, reason, domain) = refused_event(&mut events).await;
    assert_eq!((status, domain.as_deref()), (Some(503), Some("app.test")));
    assert!(reason.contains("offline"));
}

#[tokio::test]
async fn plain_http_is_426_with_an_explanation() {
    let (relay, mut events) = relay_to_echo("{ switch = \"on\", timeout = 60 }").await;
    let mut stream = TcpStream::connect(relay.local_addr()).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 426 Upgrade Required"),
        "{response}"
    );
    assert!(response.contains("WebSocket"), "{response}");
    assert_eq!(refused_event(&mut events).await.0, Some(426));
}

#[tokio::test]
async fn oversized_headers_are_431() {
    let (relay, mut events) = relay_to_echo("{ switch = \"on\", timeout = 60 }").await;
    let mut request = upgrade_request("app.test");
    request.truncate(request.len() - 2);
    request.extend(format!("X-Big: {}\r\n\r\n", "a".repeat(20 * 1024)).bytes());
    assert_eq!(raw_status(relay.local_addr(), &request).await, Some(431));
    assert_eq!(refused_event(&mut events).await.0, Some(431));
}

#[tokio::test]
async fn no_reachable_origin_is_502() {
    let dead = dead_port().await;
    let (relay, mut events) = start_relay(config(
        "",
        &one_domain("{ switch = \"on\", timeout = 60 }"),
        dead,
    ))
    .await;
    let reason = expect_refusal(&relay, &mut events, &upgrade_request("app.test"), 502).await;
    assert!(reason.contains(&dead.to_string()), "{reason}");
}

#[tokio::test]
async fn origin_that_never_answers_is_504_at_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s); // accept TCP, never answer
        }
    });
    let (relay, mut events) = start_relay(config(
        "",
        &one_domain("{ switch = \"on\", timeout = 60 }"),
        silent,
    ))
    .await;
    let started = Instant::now();
    assert_eq!(
        raw_status(relay.local_addr(), &upgrade_request("app.test")).await,
        Some(504)
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_millis(2000),
        "{waited:?}"
    );
    assert_eq!(refused_event(&mut events).await.0, Some(504));
}

#[tokio::test]
async fn origin_refusal_status_reaches_the_client() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .await;
    });
    let (relay, mut events) = start_relay(config(
        "",
        &one_domain("{ switch = \"on\", timeout = 60 }"),
        origin,
    ))
    .await;
    let reason = expect_refusal(&relay, &mut events, &upgrade_request("app.test"), 403).await;
    assert!(reason.contains("403"), "{reason}");
}

#[tokio::test]
async fn slow_client_is_dropped_at_the_handshake_timeout() {
    let (relay, mut events) = relay_to_echo("{ switch = \"on\", timeout = 60 }").await;
    let mut stream = TcpStream::connect(relay.local_addr()).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let n = timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(
        n.is_err() || buf.is_empty(),
        "no answer, just a dropped connection"
    );
    assert!(started.elapsed() >= Duration::from_millis(1900));
    let (status, reason, _) = refused_event(&mut events).await;
    assert_eq!(status, None);
    assert!(reason.contains("handshake timeout"), "{reason}");
}

#[tokio::test]
async fn session_limit_is_503() {
    let origin = echo_origin(OriginOptions::default()).await;
    let (relay, mut events) = start_relay(config(
        "max-sessions = 1",
        &one_domain("{ switch = \"on\", timeout = 60 }"),
        origin,
    ))
    .await;
    let _first = connect(relay.local_addr(), "app.test").await;
    let reason = expect_refusal(&relay, &mut events, &upgrade_request("app.test"), 503).await;
    assert!(reason.contains("max-sessions"), "{reason}");
}

#[tokio::test]
async fn subprotocol_chosen_by_the_origin_reaches_the_client() {
    let origin = echo_origin(OriginOptions {
        tick: None,
        protocol: Some("chat.v2".into()),
    })
    .await;
    let (relay, mut events) = start_relay(config(
        "",
        &one_domain("{ switch = \"on\", timeout = 60 }"),
        origin,
    ))
    .await;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/",
            relay.local_addr()
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("host", "app.test".parse().unwrap());
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "chat.v1, chat.v2".parse().unwrap(),
    );
    let stream = TcpStream::connect(relay.local_addr()).await.unwrap();
    let (_ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "chat.v2"
    );
    let RelayEvent::Opened {
        subprotocol, path, ..
    } = wait_event(&mut events, |e| matches!(e, RelayEvent::Opened { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(subprotocol.as_deref(), Some("chat.v2"));
    assert_eq!(path, "/");
}

#[tokio::test]
async fn origin_sees_forwarding_headers_path_and_server_name() {
    let (origin, mut seen, _send) = recording_origin().await;
    let domain = one_domain("{ switch = \"on\", timeout = 60 }").replace(
        "acceleration",
        "server-name = \"backend.internal\"\nacceleration",
    );
    let (relay, _events) = start_relay(config("", &domain, origin)).await;
    let _client = connect(relay.local_addr(), "app.test").await;
    let Some(Seen::Headers(headers)) = seen.recv().await else {
        panic!("headers first")
    };
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("host").as_deref(), Some("backend.internal"));
    assert_eq!(get("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(get("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(get("x-forwarded-host").as_deref(), Some("app.test"));
}

#[tokio::test]
async fn path_and_query_are_forwarded_unchanged() {
    let (relay, mut events) = relay_to_echo("{ switch = \"on\", timeout = 60 }").await;
    let _client = connect(relay.local_addr(), "app.test").await;
    let RelayEvent::Opened { path, .. } =
        wait_event(&mut events, |e| matches!(e, RelayEvent::Opened { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(path, "/chat?room=1");
}

#[tokio::test]
async fn weighted_failover_reaches_the_live_origin() {
    let live = echo_origin(OriginOptions::default()).await;
    let dead = dead_port().await;
    let domain = format!(
        "[[domain]]\nname = \"app.test\"\nacceleration = \"full-site\"\norigins = [\"{dead}:90\", \"{live}:10\"]\n"
    );
    let (relay, mut events) = start_relay(config("", &domain, live)).await;
    for _ in 0..5 {
        let mut client = connect(relay.local_addr(), "app.test").await;
        client.send(Message::text("x")).await.unwrap();
        assert_eq!(client.next().await.unwrap().unwrap(), Message::text("x"));
        let RelayEvent::Opened { origin, .. } =
            wait_event(&mut events, |e| matches!(e, RelayEvent::Opened { .. })).await
        else {
            unreachable!()
        };
        assert_eq!(origin, live.to_string());
    }
}
