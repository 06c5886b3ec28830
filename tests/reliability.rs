//! Hostile input and resource exhaustion, over real sockets: slow clients,
//! half-closed connections, open-proxy attempts, running out of file
//! descriptors, and saves killed halfway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use ecdn_console::origin::OriginOptions;
use ecdn_console::relay::{CloseCause, RelayEvent};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

const ON_60: &str = "{ switch = \"on\", timeout = 60 }";

#[tokio::test]
async fn slowloris_clients_do_not_delay_others_and_are_dropped_at_the_handshake_timeout() {
    let origin = echo_origin(OriginOptions::default()).await;
    // handshake-timeout = 2 s (see `config`).
    let (relay, mut events) = start_relay(config("", &one_domain(ON_60), origin)).await;
    let addr = relay.local_addr();
    let mut slow = Vec::new();
    for _ in 0..1000 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: app").await.unwrap();
        slow.push(s);
    }
    // Keep trickling: one more byte each, well inside the timeout.
    for s in &mut slow {
        s.write_all(b".").await.unwrap();
    }
    let started = Instant::now();
    let mut client = connect(addr, "app.test").await;
    let handshake = started.elapsed();
    client.send(Message::text("through")).await.unwrap();
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        Message::text("through")
    );
    assert!(
        handshake < Duration::from_millis(500),
        "normal handshake took {handshake:?}"
    );
    // Every slow client is dropped once its handshake time is up.
    let mut dropped = 0;
    for s in &mut slow {
        let mut buf = [0u8; 16];
        match timeout(Duration::from_secs(4), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => dropped += 1,
            other => panic!("slow client got {other:?}"),
        }
    }
    assert_eq!(dropped, 1000);
    let mut timeouts = 0;
    while timeouts < 1000 {
        if let RelayEvent::Refused {
            reason,
            status: None,
            ..
        } = wait_event(&mut events, |e| matches!(e, RelayEvent::Refused { .. })).await
        {
            assert!(reason.contains("handshake timeout"), "{reason}");
            timeouts += 1;
        }
    }
    // The normal session was never disturbed.
    client.send(Message::text("still")).await.unwrap();
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        Message::text("still")
    );
}

#[tokio::test]
async fn a_client_that_half_closes_is_treated_as_gone() {
    let (origin, mut seen, _send) = recording_origin().await;
    let (relay, mut events) = start_relay(config("", &one_domain(ON_60), origin)).await;
    let mut stream = TcpStream::connect(relay.local_addr()).await.unwrap();
    stream
        .write_all(&upgrade_request("app.test"))
        .await
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    stream.shutdown().await.unwrap(); // FIN without a close frame
    // Mirrored: the origin's connection ends the same way, no close frame.
    assert_eq!(origin_close(&mut seen).await, None);
    let RelayEvent::Closed { cause, .. } =
        wait_event(&mut events, |e| matches!(e, RelayEvent::Closed { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(cause, CloseCause::ClientVanished);
}

#[tokio::test]
async fn the_relay_is_not_an_open_proxy() {
    // A listener the request names but the config does not: it must never be contacted.
    let bait = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bait_addr = bait.local_addr().unwrap();
    let (relay, _events) = relay_to_echo(ON_60).await;
    let absolute = format!(
        "GET ws://{bait_addr}/ HTTP/1.1\r\nHost: {bait_addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    assert_eq!(
        raw_status(relay.local_addr(), absolute.as_bytes()).await,
        Some(404)
    );
    let connect_attempt = timeout(Duration::from_millis(300), bait.accept()).await;
    assert!(
        connect_attempt.is_err(),
        "the relay connected to an address not in its config"
    );
}

/// `serve` in a process limited to `fds` descriptors.
async fn limited_serve(
    dir: &std::path::Path,
    origin: std::net::SocketAddr,
    fds: u32,
) -> (tokio::process::Child, std::net::SocketAddr) {
    let path = dir.join("relay.toml");
    std::fs::write(
        &path,
        format!(
            "[relay]\nlisten = \"127.0.0.1:0\"\n[[domain]]\nname = \"app.test\"\nacceleration = \"full-site\"\n\
             origins = [\"{origin}\"]\nwebsocket = {ON_60}\n"
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new("prlimit")
        .arg(format!("--nofile={fds}:{fds}"))
        .arg(env!("CARGO_BIN_EXE_ecdn-console"))
        .arg("--config")
        .arg(&path)
        .arg("serve")
        // Two workers: running out of descriptors on either must not stop the other.
        .args(["--workers", "2"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let addr = first
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap();
    // Keep draining stdout so the relay never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test]
async fn out_of_descriptors_new_clients_are_refused_and_existing_ones_served() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = limited_serve(dir.path(), origin, 48).await;
    let mut sessions = Vec::new();
    let mut refused = 0;
    // Two descriptors per session: ~20 fit under 48 with the process's own.
    for _ in 0..40 {
        match timeout(Duration::from_secs(3), try_connect(addr, "app.test", None)).await {
            Ok(Ok(ws)) => sessions.push(ws),
            Ok(Err(_)) | Err(_) => refused += 1,
        }
        if refused == 3 {
            break;
        }
    }
    assert!(
        refused > 0 && !sessions.is_empty(),
        "{} sessions, {refused} refused",
        sessions.len()
    );
    // Existing sessions keep working.
    for ws in sessions.iter_mut() {
        ws.send(Message::text("alive")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("alive"));
    }
    // Freeing descriptors lets new clients in again: the accept loop recovered.
    for mut ws in sessions.drain(..10) {
        ws.close(None).await.unwrap();
        while ws.next().await.is_some() {}
    }
    sleep(Duration::from_millis(1200)).await;
    // Several new clients, so both workers' accept loops are tried (the
    // kernel spreads connections over their listeners).
    for _ in 0..6 {
        let mut again = timeout(Duration::from_secs(5), connect(addr, "app.test"))
            .await
            .unwrap();
        again.send(Message::text("back")).await.unwrap();
        assert_eq!(again.next().await.unwrap().unwrap(), Message::text("back"));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the relay is still running"
    );
}

#[test]
fn saves_killed_at_random_moments_leave_the_old_or_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, ecdn_console::config::DEFAULT_CONFIG).unwrap();
    let bin = env!("CARGO_BIN_EXE_ecdn-console");
    let mut kills = 0;
    for round in 0..150u32 {
        let before = std::fs::read_to_string(&path).unwrap();
        let timeout_secs = (round % 250 + 1).to_string();
        let mut child = std::process::Command::new(bin)
            .args([
                "--config",
                path.to_str().unwrap(),
                "websocket",
                "cloud.tencent.com",
                "--timeout",
                &timeout_secs,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill somewhere between start-up and the end of the save.
        std::thread::sleep(Duration::from_micros(u64::from(round * 37 % 4000)));
        if child.kill().is_ok() {
            kills += 1;
        }
        let _ = child.wait();
        let after = std::fs::read_to_string(&path).unwrap();
        let parsed =
            ecdn_console::config::Config::parse(&after, &path).expect("the file always parses");
        if after != before {
            let t = parsed
                .domain("cloud.tencent.com")
                .unwrap()
                .websocket
                .timeout;
            assert_eq!(
                t.to_string(),
                timeout_secs,
                "a changed file holds exactly the new value"
            );
            // Only that one line changed: nothing half-written, nothing lost.
            let changed: Vec<_> = before
                .lines()
                .zip(after.lines())
                .filter(|(a, b)| a != b)
                .collect();
            assert_eq!(before.lines().count(), after.lines().count());
            assert_eq!(changed.len(), 1, "{changed:?}");
            assert!(
                changed[0]
                    .1
                    .contains(&format!("timeout = {timeout_secs} }}")),
                "{changed:?}"
            );
        }
    }
    assert!(kills > 50, "only {kills} kills landed");
}

#[test]
fn a_full_disk_during_a_save_leaves_the_previous_file() {
    use ecdn_console::config::{ConfigFile, Edit};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, ecdn_console::config::DEFAULT_CONFIG).unwrap();
    let mut file = ConfigFile::load(&path).unwrap();
    let edit = Edit::SetWebSocket {
        domain: "cloud.tencent.com".into(),
        switch: None,
        timeout: Some(30),
    };
    // ENOSPC as the disk fills just before the rename.
    let error = file
        .apply_with(&edit, |_| Err(std::io::Error::from_raw_os_error(28)))
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot save"), "{error}");
    assert!(error.contains("No space left on device"), "{error}");
    assert!(error.contains("previous file is unchanged"), "{error}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        ecdn_console::config::DEFAULT_CONFIG
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no temporary file left behind: {leftovers:?}"
    );
    // The edit is still possible once there is room again.
    assert_eq!(
        file.apply(&edit)
            .unwrap()
            .domain("cloud.tencent.com")
            .unwrap()
            .websocket
            .timeout,
        30
    );
}
