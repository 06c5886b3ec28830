//! Many sessions exchanging sequence-numbered messages through the relay:
//! nothing may be lost, duplicated or reordered. The CI run is small and
//! short; `reliability/soak.sh` runs thousands of sessions for minutes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use common::*;
use ecdn_console::origin::OriginOptions;
use ecdn_console::relay::{self, CloseCause, RelayEvent};
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

struct Soak {
    sessions: usize,
    duration: Duration,
    /// Messages in flight per session before waiting for their echoes.
    window: u64,
}

async fn soak(params: Soak) -> u64 {
    let origin = echo_origin(OriginOptions::default()).await;
    let cfg = config(
        "max-message-bytes = 1048576",
        &one_domain("{ switch = \"on\", timeout = 30 }"),
        origin,
    );
    // The relay on its own thread, as in the console.
    let (relay, mut events) = relay::spawn_relay_thread(cfg).unwrap();
    let addr = relay.local_addr();
    let checked = Arc::new(AtomicU64::new(0));
    // Clients connect the way real ones do: not all in the same millisecond.
    let handshakes = Arc::new(tokio::sync::Semaphore::new(64));
    let deadline = Instant::now() + params.duration;
    let mut tasks = Vec::new();
    for session in 0..params.sessions {
        let checked = checked.clone();
        let handshakes = handshakes.clone();
        let window = params.window;
        tasks.push(tokio::spawn(async move {
            let permit = handshakes.acquire_owned().await.unwrap();
            let mut ws = connect(addr, "app.test").await;
            drop(permit);
            let mut next_sent = 0u64;
            let mut next_expected = 0u64;
            while Instant::now() < deadline {
                for _ in 0..window {
                    // Alternate text and binary, with sizes that cross frame-header forms.
                    let msg = if next_sent.is_multiple_of(2) {
                        Message::text(format!(
                            "{session}:{next_sent}:{}",
                            "x".repeat((next_sent % 300) as usize)
                        ))
                    } else {
                        let mut data = next_sent.to_be_bytes().to_vec();
                        data.resize(8 + (next_sent % 70_000) as usize, session as u8);
                        Message::binary(data)
                    };
                    ws.send(msg).await.unwrap();
                    next_sent += 1;
                }
                while next_expected < next_sent {
                    let seq = match ws.next().await.unwrap().unwrap() {
                        Message::Text(t) => {
                            let mut parts = t.split(':');
                            assert_eq!(
                                parts.next().unwrap(),
                                session.to_string(),
                                "crossed sessions"
                            );
                            parts.next().unwrap().parse::<u64>().unwrap()
                        }
                        Message::Binary(b) => u64::from_be_bytes(b[..8].try_into().unwrap()),
                        other => panic!("unexpected {other:?}"),
                    };
                    assert_eq!(
                        seq, next_expected,
                        "session {session}: lost, duplicated or reordered"
                    );
                    next_expected += 1;
                    checked.fetch_add(1, Relaxed);
                }
            }
            ws.close(None).await.unwrap();
            while ws.next().await.is_some() {}
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut closed = 0;
    while closed < params.sessions {
        if let RelayEvent::Closed { cause, .. } =
            wait_event(&mut events, |e| matches!(e, RelayEvent::Closed { .. })).await
        {
            assert_eq!(cause, CloseCause::ClientClosed);
            closed += 1;
        }
    }
    assert!(relay.registry().is_empty());
    relay.shutdown();
    relay.join(Duration::from_secs(5));
    checked.load(Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_loses_nothing() {
    let checked = soak(Soak {
        sessions: 50,
        duration: Duration::from_secs(2),
        window: 4,
    })
    .await;
    assert!(checked > 1000, "only {checked} messages checked");
}

/// `SOAK_SESSIONS` sessions for `SOAK_SECS` seconds (reliability/soak.sh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by reliability/soak.sh"]
async fn a_long_soak_loses_nothing() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let sessions = env("SOAK_SESSIONS", 2000) as usize;
    let secs = env("SOAK_SECS", 180);
    let started = Instant::now();
    let checked = soak(Soak {
        sessions,
        duration: Duration::from_secs(secs),
        window: 2,
    })
    .await;
    println!(
        "soak: {sessions} sessions for {:.0} s, {checked} messages checked in order, none lost or duplicated",
        started.elapsed().as_secs_f64()
    );
}
