//! `[relay] workers`: several relay threads, each with its own listener on
//! the same address, behind one handle — one session table, one event
//! stream, config changes and shutdown reaching every worker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use ecdn_console::origin::OriginOptions;
use ecdn_console::relay::{self, RelayEvent, RelayHandle};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

/// Enough sessions that the kernel's SO_REUSEPORT hash puts some on each of
/// two workers (all on one: 2 in 65,536).
const SESSIONS: usize = 16;

async fn two_workers(
    websocket: &str,
) -> (
    RelayHandle,
    mpsc::Receiver<RelayEvent>,
    std::net::SocketAddr,
) {
    let origin = echo_origin(OriginOptions::default()).await;
    let config = config("workers = 2", &one_domain(websocket), origin);
    let (relay, events) = relay::spawn_relay_thread(config).unwrap();
    assert_eq!(relay.workers(), 2);
    (relay, events, origin)
}

async fn open_sessions(relay: &RelayHandle) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..SESSIONS {
        clients.push(connect(relay.local_addr(), "app.test").await);
    }
    timeout(Duration::from_secs(5), async {
        while relay.registry().len() < SESSIONS {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every session is in the table");
    clients
}

/// Sessions per worker, from the merged table.
fn per_worker(relay: &RelayHandle) -> [usize; 2] {
    let mut counts = [0; 2];
    for s in relay.registry().snapshot(Instant::now()) {
        counts[usize::from(s.worker)] += 1;
    }
    counts
}

#[tokio::test]
async fn sessions_of_both_workers_are_in_one_table_and_one_event_stream() {
    let (relay, mut events, _) = two_workers("{ switch = \"on\", timeout = 60 }").await;
    let mut clients = open_sessions(&relay).await;
    let counts = per_worker(&relay);
    assert!(
        counts[0] > 0 && counts[1] > 0,
        "sessions per worker: {counts:?}"
    );
    assert_eq!(counts[0] + counts[1], SESSIONS);

    let snapshot = relay.registry().snapshot(Instant::now());
    let ids: HashSet<_> = snapshot.iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), SESSIONS, "each session appears once");
    let clients_seen: HashSet<_> = snapshot.iter().map(|s| s.client).collect();
    assert_eq!(clients_seen.len(), SESSIONS);

    // Every worker relays: each client's message comes back and is counted
    // in its session's row, whichever worker holds it.
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(Message::text(format!("m{i}"))).await.unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::text(format!("m{i}"))
        );
    }
    timeout(Duration::from_secs(5), async {
        loop {
            let snap = relay.registry().snapshot(Instant::now());
            if snap
                .iter()
                .all(|s| s.to_origin.messages == 1 && s.to_client.messages == 1)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every session counted its two messages");

    // One event stream: an `opened` for every session of both workers.
    let mut opened = HashSet::new();
    while opened.len() < SESSIONS {
        let event = timeout(Duration::from_secs(2), events.recv())
            .await
            .expect("an opened event per session")
            .unwrap();
        if let RelayEvent::Opened { id, .. } = event {
            assert!(
                ids.contains(&id),
                "an opened event for a session in the table"
            );
            opened.insert(id);
        }
    }
    relay.shutdown();
    relay.join(Duration::from_secs(5));
}

#[tokio::test]
async fn a_config_change_cuts_idle_sessions_on_every_worker() {
    let (relay, _events, origin) = two_workers("{ switch = \"on\", timeout = 60 }").await;
    let mut clients = open_sessions(&relay).await;
    let counts = per_worker(&relay);
    assert!(
        counts[0] > 0 && counts[1] > 0,
        "sessions per worker: {counts:?}"
    );

    relay.apply_config(config(
        "workers = 2",
        &one_domain("{ switch = \"on\", timeout = 1 }"),
        origin,
    ));
    for client in clients.iter_mut() {
        let close = timeout(Duration::from_secs(4), next_close(client))
            .await
            .expect("cut within the new 1 s limit");
        assert_eq!(code(&close), Some(1001));
        assert_eq!(reason(&close), "idle timeout (1 s)");
    }
    timeout(Duration::from_secs(3), async {
        while !relay.registry().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the table empties on both workers");
    relay.shutdown();
    relay.join(Duration::from_secs(5));
}

#[tokio::test]
async fn shutdown_closes_every_workers_sessions_and_ends_its_threads() {
    let (relay, _events, _) = two_workers("{ switch = \"on\", timeout = 60 }").await;
    let mut clients = open_sessions(&relay).await;
    let counts = per_worker(&relay);
    assert!(
        counts[0] > 0 && counts[1] > 0,
        "sessions per worker: {counts:?}"
    );

    relay.shutdown();
    for client in clients.iter_mut() {
        let close = timeout(Duration::from_secs(3), next_close(client))
            .await
            .expect("a close frame from either worker");
        assert_eq!(code(&close), Some(1001));
        assert_eq!(reason(&close), "relay shutting down");
    }
    timeout(Duration::from_secs(5), relay.stopped())
        .await
        .expect("every worker's sessions ended");
    let addr = relay.local_addr();
    relay.join(Duration::from_secs(5));
    // Every worker's listener is gone: nothing accepts on the port.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_port_in_use_is_still_an_error_with_several_workers() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = echo_origin(OriginOptions::default()).await;
    let text = format!(
        "[relay]\nlisten = \"{}\"\nworkers = 2\n{}",
        taken.local_addr().unwrap(),
        one_domain("{ switch = \"on\", timeout = 60 }").replace("{origin}", &origin.to_string())
    );
    let config =
        ecdn_console::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let error = relay::spawn_relay_thread(std::sync::Arc::new(config)).unwrap_err();
    assert!(error.to_string().contains("cannot listen on"), "{error}");
}
