//! Idle deadlines over real sockets: who gets cut, when, and with what.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use ecdn_console::origin::OriginOptions;
use ecdn_console::relay::{CloseCause, CloseInfo, RelayEvent};
use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn idle_session_is_closed_with_1001_on_both_sides() {
    let (origin, mut seen, _send) = recording_origin().await;
    let cfg = config("", &one_domain("{ switch = \"on\", timeout = 1 }"), origin);
    let (relay, mut events) = start_relay(cfg).await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    let started = Instant::now();
    let close = next_close(&mut client).await;
    let waited = started.elapsed();
    assert_eq!(code(&close), Some(1001));
    assert_eq!(reason(&close), "idle timeout (1 s)");
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    let at_origin = origin_close(&mut seen).await;
    assert_eq!(code(&at_origin), Some(1001));
    assert_eq!(reason(&at_origin), "idle timeout (1 s)");
    let event = wait_event(&mut events, |e| matches!(e, RelayEvent::Closed { .. })).await;
    let RelayEvent::Closed {
        cause,
        to_client,
        to_origin,
        idle,
        ..
    } = event
    else {
        unreachable!()
    };
    assert_eq!(cause, CloseCause::IdleTimeout { timeout_secs: 1 });
    assert_eq!(to_client.unwrap().code, 1001);
    assert_eq!(to_origin.unwrap().code, 1001);
    assert!(idle >= Duration::from_millis(950), "{idle:?}");
    // The session is gone from the registry once closed.
    timeout(Duration::from_secs(2), async {
        while !relay.registry().is_empty() {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn heartbeat_keeps_a_session_alive_past_the_timeout() {
    let (relay, _events) = relay_to_echo("{ switch = \"on\", timeout = 1 }").await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    for i in 0..6 {
        sleep(Duration::from_millis(400)).await;
        client
            .send(Message::text(format!("beat {i}")))
            .await
            .unwrap();
        let echo = client.next().await.unwrap().unwrap();
        assert_eq!(echo, Message::text(format!("beat {i}")));
    }
    // 2.4 s with a 1 s timeout, still open.
    assert_eq!(relay.registry().len(), 1);
}

async fn pings_only(ping_resets_idle: bool) -> Option<u16> {
    let origin = echo_origin(OriginOptions::default()).await;
    let ws = format!("{{ switch = \"on\", timeout = 1, ping-resets-idle = {ping_resets_idle} }}");
    let (relay, _events) = start_relay(config("", &one_domain(&ws), origin)).await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    let result = timeout(Duration::from_millis(2200), async {
        loop {
            sleep(Duration::from_millis(300)).await;
            if client.send(Message::Ping(vec![1].into())).await.is_err() {
                return None;
            }
            // Read the pong (or the close).
            match client.next().await {
                Some(Ok(Message::Pong(_))) => {}
                Some(Ok(Message::Close(frame))) => return code(&frame),
                _ => return None,
            }
        }
    })
    .await;
    result.unwrap_or(Some(0))
}

#[tokio::test]
async fn pings_count_as_activity_unless_the_domain_says_otherwise() {
    // Some(0): still open when the test stopped pinging.
    assert_eq!(pings_only(true).await, Some(0));
    assert_eq!(pings_only(false).await, Some(1001));
}

#[tokio::test]
async fn origin_traffic_alone_keeps_a_session_alive() {
    let origin = echo_origin(OriginOptions {
        tick: Some(Duration::from_millis(300)),
        protocol: None,
    })
    .await;
    let cfg = config("", &one_domain("{ switch = \"on\", timeout = 1 }"), origin);
    let (relay, _events) = start_relay(cfg).await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    let mut ticks = 0;
    let deadline = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < deadline {
        match timeout(deadline - Instant::now(), client.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.starts_with("tick") => ticks += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => break,
        }
    }
    assert!(ticks >= 6, "{ticks} ticks");
    assert_eq!(relay.registry().len(), 1);
}

#[tokio::test]
async fn timeout_zero_never_cuts() {
    let (relay, _events) = relay_to_echo("{ switch = \"on\", timeout = 0 }").await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    assert!(
        timeout(Duration::from_millis(2500), client.next())
            .await
            .is_err(),
        "nothing arrives"
    );
    let snapshot = relay.registry().snapshot(Instant::now());
    assert_eq!(snapshot[0].timeout, None);
    assert_eq!(snapshot[0].remaining, None);
}

#[tokio::test(start_paused = true)]
async fn switch_off_cuts_after_fifteen_seconds() {
    let origin = echo_origin(OriginOptions::default()).await;
    let cfg = config(
        "",
        &one_domain("{ switch = \"off\", timeout = 100 }"),
        origin,
    );
    let (relay, _events) = start_relay(cfg).await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    let started = Instant::now();
    let close = next_close(&mut client).await;
    assert_eq!(reason(&close), "idle timeout (15 s)");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(15) && waited < Duration::from_secs(16),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn dynamic_domains_get_fifteen_seconds_too() {
    let origin = echo_origin(OriginOptions::default()).await;
    let domain =
        "[[domain]]\nname = \"api.test\"\nacceleration = \"dynamic\"\norigins = [\"{origin}\"]\n";
    let (relay, _events) = start_relay(config("", domain, origin)).await;
    let mut client = connect(relay.local_addr(), "api.test").await;
    let started = Instant::now();
    assert_eq!(
        reason(&next_close(&mut client).await),
        "idle timeout (15 s)"
    );
    assert!(started.elapsed() >= Duration::from_secs(15));
}

#[tokio::test]
async fn abort_mode_gives_the_client_no_close_frame() {
    let origin = echo_origin(OriginOptions::default()).await;
    let cfg = config(
        "idle-close = \"abort\"",
        &one_domain("{ switch = \"on\", timeout = 1 }"),
        origin,
    );
    let (relay, mut events) = start_relay(cfg).await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    let started = Instant::now();
    // The stream ends (or errors) without a close frame: what clients report as 1006.
    assert_eq!(next_close(&mut client).await, None);
    assert!(started.elapsed() >= Duration::from_millis(950));
    let (cause, to_client) = next_closed(&mut events).await;
    assert_eq!(cause, CloseCause::IdleTimeout { timeout_secs: 1 });
    assert_eq!(to_client, None);
}

fn with_websocket(
    relay: &ecdn_console::relay::RelayHandle,
    ws: &str,
    origin: std::net::SocketAddr,
) {
    relay.apply_config(config("", &one_domain(ws), origin));
}

#[tokio::test]
async fn lowering_the_timeout_below_the_idle_time_closes_at_once() {
    let origin = echo_origin(OriginOptions::default()).await;
    let cfg = config("", &one_domain("{ switch = \"on\", timeout = 60 }"), origin);
    let (relay, _events) = start_relay(cfg).await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    sleep(Duration::from_millis(1300)).await;
    let changed = Instant::now();
    with_websocket(&relay, "{ switch = \"on\", timeout = 1 }", origin);
    let close = next_close(&mut client).await;
    assert_eq!(reason(&close), "idle timeout (1 s)");
    assert!(
        changed.elapsed() < Duration::from_millis(300),
        "{:?}",
        changed.elapsed()
    );
}

#[tokio::test]
async fn raising_the_timeout_extends_a_live_session() {
    let origin = echo_origin(OriginOptions::default()).await;
    let cfg = config("", &one_domain("{ switch = \"on\", timeout = 1 }"), origin);
    let (relay, _events) = start_relay(cfg).await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    let started = Instant::now();
    sleep(Duration::from_millis(500)).await;
    with_websocket(&relay, "{ switch = \"on\", timeout = 2 }", origin);
    let close = next_close(&mut client).await;
    assert_eq!(reason(&close), "idle timeout (2 s)");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1950), "{waited:?}");
}

#[tokio::test]
async fn switching_off_drops_live_sessions_to_the_fifteen_second_rule() {
    let origin = echo_origin(OriginOptions::default()).await;
    let cfg = config("", &one_domain("{ switch = \"on\", timeout = 0 }"), origin);
    let (relay, _events) = start_relay(cfg).await;
    let _client = connect(relay.local_addr(), "app.test").await;
    with_websocket(&relay, "{ switch = \"off\", timeout = 0 }", origin);
    timeout(Duration::from_secs(2), async {
        loop {
            let s = relay.registry().snapshot(Instant::now());
            if s[0].timeout == Some(Duration::from_secs(15)) {
                break;
            }
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the session's timeout becomes 15 s");
}

#[tokio::test]
async fn taking_a_domain_offline_closes_its_sessions() {
    let origin = echo_origin(OriginOptions::default()).await;
    let cfg = config("", &one_domain("{ switch = \"on\", timeout = 60 }"), origin);
    let (relay, mut events) = start_relay(cfg).await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    let offline = one_domain("{ switch = \"on\", timeout = 60 }")
        .replace("acceleration", "status = \"offline\"\nacceleration");
    relay.apply_config(config("", &offline, origin));
    let close = next_close(&mut client).await;
    assert_eq!(code(&close), Some(1001));
    assert_eq!(reason(&close), "domain offline");
    let (cause, _) = next_closed(&mut events).await;
    assert_eq!(cause, CloseCause::DomainOffline);
    // And new clients are refused with 503.
    assert_eq!(
        raw_status(relay.local_addr(), &upgrade_request("app.test")).await,
        Some(503)
    );
}

#[tokio::test]
async fn removing_a_domain_closes_its_sessions() {
    let origin = echo_origin(OriginOptions::default()).await;
    let cfg = config("", &one_domain("{ switch = \"on\", timeout = 60 }"), origin);
    let (relay, _events) = start_relay(cfg).await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    relay.apply_config(config("", "", origin));
    assert_eq!(reason(&next_close(&mut client).await), "domain removed");
}

#[tokio::test]
async fn an_operator_can_close_a_session() {
    let (origin, mut seen, _send) = recording_origin().await;
    let cfg = config("", &one_domain("{ switch = \"on\", timeout = 60 }"), origin);
    let (relay, _events) = start_relay(cfg).await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    let id = relay.registry().snapshot(Instant::now())[0].id;
    assert!(relay.registry().close(id));
    assert_eq!(reason(&next_close(&mut client).await), "closed by operator");
    assert_eq!(reason(&origin_close(&mut seen).await), "closed by operator");
}

#[tokio::test]
async fn shutdown_closes_every_session_with_1001() {
    let (relay, _events) = relay_to_echo("{ switch = \"on\", timeout = 60 }").await;
    let mut a = connect(relay.local_addr(), "app.test").await;
    let mut b = connect(relay.local_addr(), "app.test").await;
    relay.shutdown();
    for client in [&mut a, &mut b] {
        let close = next_close(client).await;
        assert_eq!(code(&close), Some(1001));
        assert_eq!(reason(&close), "relay shutting down");
    }
    timeout(Duration::from_secs(3), relay.stopped())
        .await
        .expect("relay stops");
}

/// A client that never answers the relay's idle close keeps its session for
/// the close grace (1 s), no longer: then the relay drops the connection.
#[tokio::test]
async fn a_client_that_never_answers_the_close_is_cut_after_the_grace() {
    use tokio::io::AsyncReadExt;
    let (relay, mut events) = relay_to_echo("{ switch = \"on\", timeout = 1 }").await;
    let mut raw = raw_client(relay.local_addr()).await;
    let mut head = [0u8; 2];
    timeout(Duration::from_secs(3), raw.read_exact(&mut head))
        .await
        .expect("the idle close")
        .unwrap();
    assert_eq!(head[0], 0x88, "a close frame");
    let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
    raw.read_exact(&mut payload).await.unwrap();
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    let closed_at = Instant::now();
    // No answer: read on until the relay lets go.
    let mut rest = Vec::new();
    let _ = timeout(Duration::from_secs(3), raw.read_to_end(&mut rest))
        .await
        .expect("cut within the grace");
    let waited = closed_at.elapsed();
    assert!(rest.is_empty(), "nothing after the close frame: {rest:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(1600),
        "cut {waited:?} after the close"
    );
    let (cause, to_client) = next_closed(&mut events).await;
    assert_eq!(cause, CloseCause::IdleTimeout { timeout_secs: 1 });
    assert_eq!(to_client.unwrap().code, 1001);
}

/// The next session end the relay reports: why, and the close frame the
/// client received.
async fn next_closed(
    events: &mut tokio::sync::mpsc::Receiver<RelayEvent>,
) -> (CloseCause, Option<CloseInfo>) {
    match wait_event(events, |e| matches!(e, RelayEvent::Closed { .. })).await {
        RelayEvent::Closed {
            cause, to_client, ..
        } => (cause, to_client),
        _ => unreachable!(),
    }
}
