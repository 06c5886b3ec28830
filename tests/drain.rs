//! `[relay] drain-timeout` and sd_notify, with the real binary: SIGTERM
//! makes `/readyz` 503 and closes the listener at once, live sessions keep
//! echoing until the timeout and then get 1001, exit 0; a second SIGTERM
//! ends the drain at once; systemd hears READY, RELOADING and STOPPING;
//! SIGUSR2 upgrades in place and tells systemd the new MAINPID.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod serve_process;

use std::time::{Duration, Instant};

use common::*;
use ecdn_console::origin::OriginOptions;
use futures_util::{SinkExt, StreamExt};
use serve_process::ServeProcess;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn config_text(origin: std::net::SocketAddr, drain_secs: u64) -> String {
    format!(
        "[relay]\nlisten = \"127.0.0.1:0\"\ndrain-timeout = {drain_secs}\n\n\
         [[domain]]\nname = \"app.test\"\nacceleration = \"full-site\"\norigins = [\"{origin}\"]\n\
         websocket = {{ switch = \"on\", timeout = 0 }}\n"
    )
}

async fn serve_with_drain(drain_secs: u64) -> (ServeProcess, tempfile::TempDir) {
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, config_text(origin, drain_secs)).unwrap();
    let serve = ServeProcess::start(&path, &["--admin", "127.0.0.1:0"], &[]).await;
    (serve, dir)
}

async fn echo(client: &mut Client, text: &str) {
    client.send(Message::text(text)).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(2), client.next())
        .await
        .expect("an echo during the drain")
        .unwrap()
        .unwrap();
    assert_eq!(answer, Message::text(text));
}

#[tokio::test]
async fn a_drain_keeps_sessions_until_the_timeout_then_closes_them_with_1001() {
    let (mut serve, _dir) = serve_with_drain(2).await;
    let mut stays = connect(serve.addr, "app.test").await;
    let mut leaves = connect(serve.addr, "app.test").await;
    echo(&mut stays, "before").await;
    assert_eq!(serve.admin_request("GET", "/readyz").await.0, 200);

    // Taken before the signal: the relay's drain clock starts after it.
    let sent = Instant::now();
    serve.signal("TERM");
    serve.line_with("draining").await;
    // At once: not ready, and the listener is closed.
    assert_eq!(
        serve.admin_request("GET", "/readyz").await,
        (503, "draining\n".to_string())
    );
    assert!(
        TcpStream::connect(serve.addr).await.is_err(),
        "the listener is still open"
    );
    assert_eq!(serve.admin_request("GET", "/healthz").await.0, 200);

    // One session ends by itself during the drain and is counted so.
    leaves.close(None).await.unwrap();
    serve.line_with("client closed").await;
    let (_, metrics) = serve.admin_request("GET", "/metrics").await;
    assert!(
        metrics.contains("ecdn_relay_sessions_ended_during_drain_total 1"),
        "{metrics}"
    );

    // The other keeps echoing for the whole timeout.
    while sent.elapsed() < Duration::from_millis(1700) {
        echo(&mut stays, "during").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let close = next_close(&mut stays)
        .await
        .expect("a close frame at the end of the drain");
    assert_eq!(u16::from(close.code), 1001);
    assert_eq!(close.reason.as_str(), "relay shutting down");
    assert!(
        sent.elapsed() >= Duration::from_secs(2),
        "closed early: {:?}",
        sent.elapsed()
    );
    // Reading on sends the client's answer to the close (as a browser does).
    tokio::spawn(async move { while stays.next().await.is_some() {} });
    let over = serve.line_with("drain over").await;
    assert!(
        over.contains("drain-timeout passed") && over.contains("1 session(s) ended by themselves"),
        "{over}"
    );
    assert_eq!(serve.exit_code(Duration::from_secs(3)).await, Some(0));
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "exit took {:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn a_second_sigterm_ends_the_drain_at_once() {
    let (mut serve, _dir) = serve_with_drain(60).await;
    let mut client = connect(serve.addr, "app.test").await;
    echo(&mut client, "before").await;
    serve.signal("TERM");
    serve.line_with("draining").await;
    echo(&mut client, "during").await;
    let second = Instant::now();
    serve.signal("TERM");
    let close = next_close(&mut client).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    let over = serve.line_with("drain over").await;
    assert!(over.contains("second signal"), "{over}");
    assert_eq!(serve.exit_code(Duration::from_secs(5)).await, Some(0));
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "took {:?}",
        second.elapsed()
    );
}

/// `ecdn-console stop` drains as SIGTERM does; a second one, as a second
/// SIGTERM, ends the drain at once.
#[tokio::test]
async fn a_second_stop_ends_the_drain_at_once() {
    let (mut serve, _dir) = serve_with_drain(60).await;
    let socket = serve.control.to_str().unwrap().to_string();
    let mut client = connect(serve.addr, "app.test").await;
    echo(&mut client, "before").await;
    assert_eq!(
        serve_process::run_cli(&["stop", "--socket", &socket])
            .await
            .code,
        0
    );
    serve.line_with("draining").await;
    echo(&mut client, "during").await;
    let second = Instant::now();
    assert_eq!(
        serve_process::run_cli(&["stop", "--socket", &socket])
            .await
            .code,
        0
    );
    let close = next_close(&mut client).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    let over = serve.line_with("drain over").await;
    assert!(over.contains("second stop"), "{over}");
    assert_eq!(serve.exit_code(Duration::from_secs(5)).await, Some(0));
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "took {:?}",
        second.elapsed()
    );
}

/// SIGUSR1 (logrotate's "reopen your logs" to nginx) must not kill the
/// relay: its default action would cut every session without a close.
#[tokio::test]
async fn sigusr1_is_ignored_and_sessions_go_on() {
    let (mut serve, _dir) = serve_with_drain(0).await;
    let mut client = connect(serve.addr, "app.test").await;
    echo(&mut client, "before").await;
    serve.signal("USR1");
    let line = serve.line_with("SIGUSR1").await;
    assert!(line.contains("ignored"), "{line}");
    echo(&mut client, "after").await;
    serve.signal("TERM");
    assert_eq!(serve.exit_code(Duration::from_secs(5)).await, Some(0));
}

#[tokio::test]
async fn without_a_drain_timeout_sessions_get_1001_at_once() {
    let (mut serve, _dir) = serve_with_drain(0).await;
    let mut client = connect(serve.addr, "app.test").await;
    echo(&mut client, "before").await;
    let sent = Instant::now();
    serve.signal("TERM");
    let close = next_close(&mut client).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "took {:?}",
        sent.elapsed()
    );
    assert_eq!(serve.exit_code(Duration::from_secs(5)).await, Some(0));
}

/// systemd's side of sd_notify: a datagram socket named by NOTIFY_SOCKET.
#[tokio::test]
async fn serve_tells_systemd_ready_reloading_and_stopping() {
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, config_text(origin, 0)).unwrap();
    let socket_path = dir.path().join("notify.sock");
    let systemd = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let socket = socket_path.to_str().unwrap();
    let mut serve = ServeProcess::start(&path, &[], &[("NOTIFY_SOCKET", socket)]).await;
    let next = || async {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), systemd.recv(&mut buf))
            .await
            .expect("a notification")
            .unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    };
    assert_eq!(next().await, "READY=1\n");
    serve.signal("HUP");
    let reloading = next().await;
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    assert_eq!(next().await, "READY=1\n");
    serve.line_with("reloaded").await;
    serve.signal("TERM");
    assert_eq!(next().await, "STOPPING=1\n");
    assert_eq!(serve.exit_code(Duration::from_secs(5)).await, Some(0));
}

/// Kills a process the test did not start itself (the relay an upgrade
/// started) when the test ends, whatever happens.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.0.to_string())
            .status();
        // Gone before the test's end closes the output it shares.
        let proc = format!("/proc/{}", self.0);
        for _ in 0..50 {
            if !std::path::Path::new(&proc).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// SIGUSR2 under systemd: a new relay from the binary's path takes every
/// session over in the same unit and becomes its main process; the old
/// one exits without telling systemd it stops, and no session notices.
#[tokio::test]
async fn sigusr2_upgrades_in_place_and_tells_systemd_the_new_main_pid() {
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    let text = config_text(origin, 0).replacen(
        "[relay]\n",
        "[relay]\ncontrol-socket = \"run/relay.sock\"\n",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let socket_path = dir.path().join("notify.sock");
    let systemd = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let socket = socket_path.to_str().unwrap();
    let mut serve = ServeProcess::start(&path, &[], &[("NOTIFY_SOCKET", socket)]).await;
    let old_pid = serve.child.id().unwrap();
    let next = |limit: Duration| {
        let systemd = &systemd;
        async move {
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(limit, systemd.recv(&mut buf))
                .await
                .ok()?
                .unwrap();
            Some(String::from_utf8(buf[..n].to_vec()).unwrap())
        }
    };
    assert_eq!(next(Duration::from_secs(5)).await.unwrap(), "READY=1\n");
    let mut client = connect(serve.addr, "app.test").await;
    echo(&mut client, "before").await;

    serve.signal("USR2");
    serve.line_with("SIGUSR2: started").await;
    let taken = next(Duration::from_secs(10))
        .await
        .expect("the new relay's notice");
    let new_pid: u32 = taken
        .strip_prefix("MAINPID=")
        .and_then(|rest| rest.strip_suffix("\nREADY=1\n"))
        .unwrap_or_else(|| panic!("{taken:?}"))
        .parse()
        .unwrap();
    let _new = KillOnDrop(new_pid);
    assert_ne!(new_pid, old_pid);
    assert_eq!(serve.exit_code(Duration::from_secs(10)).await, Some(0));
    assert_eq!(
        next(Duration::from_millis(300)).await,
        None,
        "the old relay must not say STOPPING: the service goes on"
    );
    // The same connection, now served by the new process; and a new one.
    echo(&mut client, "after").await;
    let mut fresh = connect(serve.addr, "app.test").await;
    echo(&mut fresh, "new").await;
}
