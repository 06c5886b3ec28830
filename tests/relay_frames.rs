//! What passes through a session: messages, close codes, vanishing peers,
//! limits and garbage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use ecdn_console::origin::OriginOptions;
use ecdn_console::relay::{CloseCause, RelayEvent};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const ON_60: &str = "{ switch = \"on\", timeout = 60 }";

async fn closed_event(events: &mut tokio::sync::mpsc::Receiver<RelayEvent>) -> RelayEvent {
    wait_event(events, |e| matches!(e, RelayEvent::Closed { .. })).await
}

#[tokio::test]
async fn messages_of_every_size_arrive_intact_both_ways() {
    let (relay, _events) = relay_to_echo(ON_60).await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    for size in [0, 1, 125, 126, 65535, 65536, 1 << 20, 5 << 20] {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        client.send(Message::binary(payload.clone())).await.unwrap();
        let echo = client.next().await.unwrap().unwrap();
        assert_eq!(echo.into_data().as_ref(), payload.as_slice(), "size {size}");
    }
    client.send(Message::text("héllo ✓")).await.unwrap();
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        Message::text("héllo ✓")
    );
    let snap = &relay.registry().snapshot(tokio::time::Instant::now())[0];
    assert_eq!(snap.to_origin.messages, 9);
    assert_eq!(snap.to_client.messages, 9);
}

#[tokio::test]
async fn client_close_code_and_reason_reach_the_origin() {
    let (origin, mut seen, _send) = recording_origin().await;
    let (relay, mut events) = start_relay(config("", &one_domain(ON_60), origin)).await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    client
        .close(Some(CloseFrame {
            code: CloseCode::from(4000),
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    let at_origin = origin_close(&mut seen).await;
    assert_eq!(
        (code(&at_origin), reason(&at_origin).as_str()),
        (Some(4000), "bye")
    );
    let RelayEvent::Closed {
        cause,
        to_origin,
        to_client,
        ..
    } = closed_event(&mut events).await
    else {
        unreachable!()
    };
    assert_eq!(cause, CloseCause::ClientClosed);
    assert_eq!(to_origin.unwrap().code, 4000);
    // The origin's reply (tungstenite echoes the code) went back to the client.
    assert_eq!(to_client.unwrap().code, 4000);
}

#[tokio::test]
async fn origin_close_code_and_reason_reach_the_client() {
    let (relay, mut events) = relay_to_echo(ON_60).await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    client
        .send(Message::text("/close 4001 see you later"))
        .await
        .unwrap();
    let close = next_close(&mut client).await;
    assert_eq!(
        (code(&close), reason(&close).as_str()),
        (Some(4001), "see you later")
    );
    let RelayEvent::Closed {
        cause, to_client, ..
    } = closed_event(&mut events).await
    else {
        unreachable!()
    };
    assert_eq!(cause, CloseCause::OriginClosed);
    assert_eq!(to_client.unwrap().reason, "see you later");
}

#[tokio::test]
async fn a_vanished_client_is_mirrored_to_the_origin_as_a_dropped_connection() {
    let (origin, mut seen, _send) = recording_origin().await;
    let (relay, mut events) = start_relay(config("", &one_domain(ON_60), origin)).await;
    let client = connect(relay.local_addr(), "app.test").await;
    drop(client); // TCP closed, no close frame
    assert_eq!(
        origin_close(&mut seen).await,
        None,
        "the origin sees its connection end without a close frame"
    );
    let RelayEvent::Closed {
        cause, to_origin, ..
    } = closed_event(&mut events).await
    else {
        unreachable!()
    };
    assert_eq!(cause, CloseCause::ClientVanished);
    assert_eq!(to_origin, None);
}

/// Reads one unmasked close frame from a raw client: (code, reason).
async fn raw_close(stream: &mut TcpStream) -> (u16, String) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 0x88, "a close frame");
    let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
    stream.read_exact(&mut payload).await.unwrap();
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    (code, String::from_utf8_lossy(&payload[2..]).into_owned())
}

#[tokio::test]
async fn a_vanished_origin_is_mirrored_to_the_client_as_a_dropped_connection() {
    // DESIGN §1: the relay never invents a close the origin did not send.
    // A raw client, so nothing but the bytes on the wire is judged: the
    // origin's last message arrives, then end-of-stream, no close frame.
    let (origin, _seen, send) = recording_origin().await;
    let (relay, mut events) = start_relay(config("", &one_domain(ON_60), origin)).await;
    let mut raw = raw_client(relay.local_addr()).await;
    send.send(Message::text("last words")).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(send); // the recording origin drops its TCP connection
    let mut rest = Vec::new();
    timeout(Duration::from_secs(2), raw.read_to_end(&mut rest))
        .await
        .expect("promptly")
        .expect("a clean end-of-stream, not a reset");
    let mut expected = vec![0x81, 10];
    expected.extend_from_slice(b"last words");
    assert_eq!(rest, expected, "the last message, then EOF: no close frame");
    let RelayEvent::Closed {
        cause, to_client, ..
    } = closed_event(&mut events).await
    else {
        unreachable!()
    };
    assert_eq!(cause, CloseCause::OriginVanished);
    assert_eq!(to_client, None, "the relay sent the client no close frame");
}

#[tokio::test]
async fn an_oversized_message_is_closed_with_1009() {
    let (origin, mut seen, _send) = recording_origin().await;
    let (relay, mut events) = start_relay(config(
        "max-message-bytes = 1024",
        &one_domain(ON_60),
        origin,
    ))
    .await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    client.send(Message::binary(vec![0u8; 1000])).await.unwrap();
    client.send(Message::binary(vec![0u8; 2000])).await.unwrap();
    let close = next_close(&mut client).await;
    assert_eq!(code(&close), Some(1009));
    let mut origin_got = Vec::new();
    let at_origin = loop {
        match seen.recv().await.unwrap() {
            Seen::Message(Message::Close(frame)) => break frame,
            Seen::Message(m) => origin_got.push(m.len()),
            _ => {}
        }
    };
    assert_eq!(
        origin_got,
        [1000],
        "the oversized message never reached the origin"
    );
    assert_eq!(code(&at_origin), Some(1001));
    let RelayEvent::Closed { cause, .. } = closed_event(&mut events).await else {
        unreachable!()
    };
    assert_eq!(cause, CloseCause::MessageTooBig { from_client: true });
}

#[tokio::test]
async fn garbage_from_a_client_closes_only_that_session() {
    let (origin, mut seen, _send) = recording_origin().await;
    let bystander_origin = echo_origin(OriginOptions::default()).await;
    let domains = format!(
        "{}[[domain]]\nname = \"other.test\"\nacceleration = \"full-site\"\norigins = [\"{bystander_origin}\"]\nwebsocket = {ON_60}\n",
        one_domain(ON_60)
    );
    let (relay, mut events) = start_relay(config("", &domains, origin)).await;
    let mut bystander = connect(relay.local_addr(), "other.test").await;
    let mut raw = raw_client(relay.local_addr()).await;
    // A complete header with a reserved opcode and every reserved bit set.
    raw.write_all(&[0xFF; 16]).await.unwrap();
    let (to_client, why) = timeout(Duration::from_secs(2), raw_close(&mut raw))
        .await
        .unwrap();
    assert_eq!(to_client, 1002);
    assert!(why.starts_with("protocol error"), "{why}");
    assert_eq!(code(&origin_close(&mut seen).await), Some(1001));
    let RelayEvent::Closed { cause, .. } = closed_event(&mut events).await else {
        unreachable!()
    };
    assert!(
        matches!(
            cause,
            CloseCause::ProtocolError {
                from_client: true,
                ..
            }
        ),
        "{cause:?}"
    );
    // The other session never noticed.
    bystander.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        bystander.next().await.unwrap().unwrap(),
        Message::text("still here")
    );
}

#[tokio::test]
async fn frames_in_the_same_packet_as_the_101_are_not_lost() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        let request = String::from_utf8_lossy(&buf[..n]).to_string();
        let key = request
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_string();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .into_bytes();
        answer.extend_from_slice(&[0x81, 5]);
        answer.extend_from_slice(b"hello");
        s.write_all(&answer).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let (relay, _events) = start_relay(config("", &one_domain(ON_60), origin)).await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    let first = timeout(Duration::from_secs(2), client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first, Message::text("hello"));
}

#[tokio::test]
async fn fragmented_messages_pass_through() {
    let (origin, mut seen, _send) = recording_origin().await;
    let (relay, _events) = start_relay(config("", &one_domain(ON_60), origin)).await;
    let mut raw = raw_client(relay.local_addr()).await;
    let mask = [9u8, 8, 7, 6];
    let frame = |first: u8, payload: &[u8]| {
        let mut f = vec![first, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    };
    let mut wire = frame(0x01, b"frag");
    wire.extend(frame(0x89, b"mid-ping"));
    wire.extend(frame(0x80, b"mented"));
    // One byte at a time: headers split across reads must still be understood.
    for byte in wire {
        raw.write_all(&[byte]).await.unwrap();
    }
    loop {
        match seen.recv().await.unwrap() {
            Seen::Message(Message::Text(t)) => {
                assert_eq!(t.as_str(), "fragmented");
                break;
            }
            Seen::Message(Message::Ping(_)) | Seen::Headers(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

/// A masked binary frame header for `len` payload bytes (mask 0: the
/// payload bytes go on the wire as they are).
fn masked_binary_header(len: u16) -> Vec<u8> {
    let mut head = vec![0x82, 0x80 | 126];
    head.extend_from_slice(&len.to_be_bytes());
    head.extend_from_slice(&[0, 0, 0, 0]);
    head
}

#[tokio::test]
async fn a_slow_large_frame_is_activity_while_its_bytes_arrive() {
    // Issue found from outside: a frame trickling in was cut as idle,
    // because only frame starts counted. 2,000 bytes at 100 bytes every
    // 100 ms on a 1 s timeout: its header is 2 s old when the last byte lands.
    let (origin, mut seen, _send) = recording_origin().await;
    let (relay, mut events) = start_relay(config(
        "",
        &one_domain("{ switch = \"on\", timeout = 1 }"),
        origin,
    ))
    .await;
    let mut raw = raw_client(relay.local_addr()).await;
    raw.write_all(&masked_binary_header(2000)).await.unwrap();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        raw.write_all(&[7u8; 100]).await.unwrap();
    }
    let message = timeout(Duration::from_secs(2), async {
        loop {
            match seen.recv().await {
                Some(Seen::Message(m)) => return Some(m),
                Some(Seen::Headers(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .expect("the origin hears the message");
    assert_eq!(message, Some(Message::binary(vec![7u8; 2000])));
    // Once the bytes stop, the idle limit applies from the last of them.
    let RelayEvent::Closed { cause, idle, .. } = closed_event(&mut events).await else {
        unreachable!()
    };
    assert_eq!(cause, CloseCause::IdleTimeout { timeout_secs: 1 });
    assert!(idle < Duration::from_millis(1500), "idle {idle:?}");
}
