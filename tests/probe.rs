//! `ecdn-console probe` as a real process against the real relay and
//! origins on loopback: what it reports and how it exits, per outcome.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use ecdn_console::origin::OriginOptions;
use futures_util::SinkExt;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// Runs `ecdn-console probe ARGS`; returns its exit code and stdout.
async fn probe(args: Vec<String>) -> (i32, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        Command::new(env!("CARGO_BIN_EXE_ecdn-console"))
            .arg("probe")
            .args(&args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the probe ends by itself")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code().expect("exited, not killed");
    eprintln!("probe {args:?} → {code}\n{stdout}{stderr}");
    (code, stdout)
}

/// Runs the probe with `--json`: exit code, every step, and the summary.
async fn probe_json(mut args: Vec<String>) -> (i32, Vec<Value>, Value) {
    args.push("--json".into());
    let (code, stdout) = probe(args).await;
    let mut lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let summary = lines.pop().expect("a summary line");
    assert_eq!(summary["step"], "summary");
    assert!(
        lines
            .iter()
            .all(|l| l["step"].is_string() && l["t"].is_number())
    );
    assert_eq!(summary["exit_code"], code);
    (code, lines, summary)
}

/// Every needle is in `text`.
fn assert_contains(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A relay for `app.test` with the given websocket table and `[relay]` lines.
async fn relay_for(
    websocket: &str,
    relay_extra: &str,
    origin: SocketAddr,
) -> ecdn_console::relay::RelayHandle {
    start_relay(config(relay_extra, &one_domain(websocket), origin))
        .await
        .0
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/chat")
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test]
async fn silent_probe_sees_the_idle_close_frame_after_the_timeout() {
    let origin = echo_origin(OriginOptions::default()).await;
    let relay = relay_for("{ switch = \"on\", timeout = 2 }", "", origin).await;
    let base = args(&[&url(relay.local_addr()), "--host", "app.test", "--silent"]);
    let ((code, steps, summary), (human_code, human)) =
        tokio::join!(probe_json(base.clone()), probe(base));

    assert_eq!(code, 3);
    assert_eq!(summary["outcome"], "server-closed");
    assert_eq!(summary["closed_by"], "server");
    let close = &summary["close"];
    assert_eq!(close["code"], 1001);
    assert_eq!(close["reason"], "idle timeout (2 s)");
    assert_eq!(close["meaning"], "going away");
    assert_eq!(close["frame"], true);
    for key in ["idle_received_s", "idle_sent_s", "connected_s"] {
        let secs = f64_of(&summary[key]);
        assert!((1.8..3.0).contains(&secs), "{key} = {secs}");
    }
    assert!(
        summary["diagnosis"]
            .as_str()
            .unwrap()
            .contains("the path has a 2 s idle timeout"),
        "{summary}"
    );
    let kinds: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["start", "connected", "handshake"]);
    assert_eq!(steps[2]["status"], 101);

    assert_eq!(human_code, 3);
    assert_contains(
        &human,
        &[
            "101 Switching Protocols",
            "closed      by the server: close frame 1001 \"idle timeout (2 s)\" (going away)",
            "idle        nothing received for ",
            "diagnosis   closed after 2.0 s idle with 1001 \"idle timeout (2 s)\": the path has a 2 s idle timeout",
            "exit        3: the server closed",
        ],
    );
}

#[tokio::test]
async fn with_idle_close_abort_the_probe_sees_1006_without_a_close_frame() {
    let origin = echo_origin(OriginOptions::default()).await;
    let relay = relay_for(
        "{ switch = \"on\", timeout = 2 }",
        "idle-close = \"abort\"",
        origin,
    )
    .await;
    let base = args(&[&url(relay.local_addr()), "--host", "app.test"]);
    let ((code, _, summary), (human_code, human)) =
        tokio::join!(probe_json(base.clone()), probe(base));

    assert_eq!((code, human_code), (4, 4));
    assert_eq!(summary["outcome"], "dropped");
    assert_eq!(summary["close"]["code"], 1006);
    assert_eq!(summary["close"]["frame"], false);
    let idle = f64_of(&summary["idle_received_s"]);
    assert!((1.8..3.0).contains(&idle), "{idle}");
    assert!(human.contains("without a close frame: "), "{human}");
    assert!(
        human.contains("(reported as 1006, abnormal closure: no close frame)"),
        "{human}"
    );
    assert!(
        human.contains("dropped without a close frame after 2.0 s idle"),
        "{human}"
    );
}

#[tokio::test]
async fn heartbeats_keep_the_connection_past_the_timeout_and_end_with_1000() {
    let origin = echo_origin(OriginOptions {
        tick: None,
        protocol: Some("chat".into()),
    })
    .await;
    let relay = relay_for("{ switch = \"on\", timeout = 2 }", "", origin).await;
    let target = url(relay.local_addr());
    let text = args(&[
        &target,
        "--host",
        "app.test",
        "--heartbeat",
        "1",
        "--duration",
        "3",
        "--protocol",
        "v2.chat,chat",
    ]);
    let ping = args(&[
        &target,
        "--host",
        "app.test",
        "--heartbeat",
        "1",
        "--ping",
        "--count",
        "3",
    ]);
    let ((code, steps, summary), (ping_code, ping_out)) =
        tokio::join!(probe_json(text), probe(ping));

    assert_eq!(code, 0);
    assert_eq!(summary["outcome"], "finished");
    assert_eq!(summary["closed_by"], "probe");
    assert_eq!(summary["close"]["code"], 1000);
    assert_eq!(summary["close"]["answer"]["code"], 1000);
    assert!(f64_of(&summary["connected_s"]) >= 3.0, "{summary}");
    let beats = &summary["heartbeats"];
    assert!(beats["sent"].as_u64().unwrap() >= 2, "{beats}");
    assert_eq!(beats["sent"], beats["answered"]);
    let handshake = steps.iter().find(|s| s["step"] == "handshake").unwrap();
    assert_eq!(handshake["subprotocol"], "chat");
    let trips = steps.iter().filter(|s| s["step"] == "round-trip").count();
    assert!(trips >= 2, "{steps:?}");

    assert_eq!(ping_code, 0);
    assert_contains(
        &ping_out,
        &[
            "#3 ping → pong in ",
            "--count 3 reached: sending close 1000",
            "heartbeats  3 sent, 3 answered; round trip min ",
            "the server answered 1000",
        ],
    );
}

/// A plain WebSocket server that closes every session after 300 ms.
async fn closing_server(code: u16, reason: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
                let frame = CloseFrame {
                    code: code.into(),
                    reason: reason.into(),
                };
                let _ = ws.send(Message::Close(Some(frame))).await;
                let _ = ws.flush().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_custom_close_code_and_reason_are_reported() {
    let server = closing_server(4000, "bye").await;
    let base = args(&[&format!("ws://{server}/"), "--heartbeat", "5"]);
    let ((code, _, summary), (_, human)) = tokio::join!(probe_json(base.clone()), probe(base));
    assert_eq!(code, 3);
    assert_eq!(summary["close"]["code"], 4000);
    assert_eq!(summary["close"]["reason"], "bye");
    assert_eq!(summary["close"]["meaning"], "application-defined");
    assert!(
        human.contains("close frame 4000 \"bye\" (application-defined)"),
        "{human}"
    );
}

#[tokio::test]
async fn an_origin_that_vanishes_behind_the_relay_is_seen_as_a_dropped_connection() {
    let (origin, mut seen, send) = recording_origin().await;
    let relay = relay_for("{ switch = \"on\", timeout = 60 }", "", origin).await;
    let run = tokio::spawn(probe_json(args(&[
        &url(relay.local_addr()),
        "--host",
        "app.test",
        "--header",
        "X-Probe: yes",
    ])));
    // The extra header reached the origin; then the origin vanishes.
    match seen.recv().await.unwrap() {
        Seen::Headers(headers) => assert!(
            headers.iter().any(|(k, v)| k == "x-probe" && v == "yes"),
            "{headers:?}"
        ),
        other => panic!("{other:?}"),
    }
    drop(send);
    let (code, _, summary) = run.await.unwrap();
    assert_eq!(code, 4, "exit 4: dropped without a close frame");
    // The relay mirrors the origin: no close frame, as if connected directly.
    assert_eq!(summary["close"]["frame"], false, "{summary}");
    assert_eq!(summary["close"]["code"], 1006);
    assert!(
        summary["diagnosis"]
            .as_str()
            .unwrap()
            .contains("without a close frame"),
        "{summary}"
    );
}

#[tokio::test]
async fn connection_failures_have_their_own_exit_codes() {
    let free = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let origin = echo_origin(OriginOptions::default()).await;
    let relay = relay_for("{ switch = \"on\", timeout = 60 }", "", origin).await;
    let (refused, unknown_host, tls_to_plain, dns) = tokio::join!(
        probe(args(&[&url(free)])),
        probe(args(&[&url(relay.local_addr()), "--host", "nope.test"])),
        probe(args(&[&format!("wss://{origin}/")])),
        probe(args(&[
            "ws://no-such-host.invalid/",
            "--connect-timeout",
            "3"
        ])),
    );
    assert_eq!(refused.0, 6);
    assert!(refused.1.contains("connection refused by"), "{}", refused.1);
    assert_eq!(unknown_host.0, 5);
    assert_contains(
        &unknown_host.1,
        &[
            "404 Not Found",
            "body: 404 Not Found: no domain \"nope.test\" is configured on this relay",
            "diagnosis   the upgrade was refused with 404",
        ],
    );
    assert_eq!(tls_to_plain.0, 7);
    assert!(
        tls_to_plain.1.contains("TLS handshake with"),
        "{}",
        tls_to_plain.1
    );
    assert_eq!(dns.0, 6);
    assert!(
        dns.1.contains("no-such-host.invalid"),
        "DNS failure names the host: {}",
        dns.1
    );
}

#[tokio::test]
async fn wss_with_a_private_ca_and_an_untrusted_certificate() {
    let (origin, ca_pem) = tls_origin().await;
    let (_dir, ca_file) = temp_file("ca.pem", &ca_pem);
    let target = format!("wss://{origin}/");
    let ca = ca_file.display().to_string();
    let (trusted, untrusted) = tokio::join!(
        probe(args(&[
            &target,
            "--host",
            "app.test",
            "--ca-file",
            &ca,
            "--heartbeat",
            "0.2",
            "--count",
            "2",
        ])),
        probe(args(&[&target, "--host", "app.test"])),
    );
    assert_eq!(trusted.0, 0);
    assert!(trusted.1.contains(" with app.test in "), "{}", trusted.1);
    assert!(trusted.1.contains("#2 text → echo"), "{}", trusted.1);
    assert_eq!(untrusted.0, 7);
    assert!(untrusted.1.contains("--ca-file"), "{}", untrusted.1);
}

#[tokio::test]
async fn bad_arguments_exit_2_and_help_lists_the_exit_codes() {
    for bad in [
        args(&["ftp://x/"]),
        args(&["ws://x/", "--silent", "--heartbeat", "1"]),
        args(&["ws://x/", "--count", "3"]),
        args(&["ws://x/", "--header", "Host: y"]),
        args(&["ws://x/", "--heartbeat", "0"]),
    ] {
        assert_eq!(probe(bad.clone()).await.0, 2, "{bad:?}");
    }
    let (code, help) = probe(args(&["--help"])).await;
    assert_eq!(code, 0);
    assert_contains(
        &help,
        &[
            "0  ended as asked",
            "3  the server closed",
            "4  the connection was dropped without a close frame (1006)",
            "5  the upgrade was refused",
            "6  could not connect",
            "7  the TLS handshake failed",
            "8  the server sent a malformed frame",
        ],
    );
}

/// A hand-made server: a valid 101 with a text frame in the same packet,
/// then a masked frame, which servers must never send.
async fn masking_server() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            tcp.read_exact(&mut byte).await.unwrap();
            request.push(byte[0]);
        }
        let request = String::from_utf8(request).unwrap();
        let key = request
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let accept =
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
        let mut answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nServer: hand-made\r\n\r\n"
        )
        .into_bytes();
        answer.extend_from_slice(b"\x81\x05hello");
        tcp.write_all(&answer).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        tcp.write_all(&[0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1])
            .await
            .unwrap();
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
    });
    addr
}

#[tokio::test]
async fn a_server_that_breaks_the_protocol_exits_8_after_a_close_1002() {
    let server = masking_server().await;
    let (code, out) = probe(args(&[&format!("ws://{server}/")])).await;
    assert_eq!(code, 8);
    assert_contains(
        &out,
        &[
            "server: hand-made",
            "received   text \"hello\"",
            "by the probe: close 1002 \"a masked frame (servers must not mask)\"",
            "exit        8: ",
        ],
    );
}

#[tokio::test]
async fn ctrl_c_closes_with_1000_and_exits_0() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let origin = echo_origin(OriginOptions::default()).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ecdn-console"))
        .args(["probe", &url(origin), "--silent"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("handshake") {
        assert!(stdout.read_line(&mut seen).await.unwrap() > 0, "{seen}");
    }
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    stdout.read_to_string(&mut seen).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{seen}");
    assert!(
        seen.contains("stopped (Ctrl-C): sending close 1000"),
        "{seen}"
    );
    assert!(seen.contains("the server answered 1000"), "{seen}");
}
