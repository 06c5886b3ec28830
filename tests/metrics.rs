//! The admin listener of a real `serve` process: `/metrics` after known
//! traffic, parsed by a Prometheus text parser that is not ours
//! (`prometheus-parse`); `/healthz`, `/readyz`; 404 and 405; reloads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod serve_process;

use std::time::Duration;

use common::*;
use ecdn_console::origin::OriginOptions;
use futures_util::{SinkExt, StreamExt};
use prometheus_parse::{Sample, Scrape, Value};
use serve_process::ServeProcess;
use tokio_tungstenite::tungstenite::Message;

fn config_text(origin: std::net::SocketAddr) -> String {
    format!(
        "[relay]\nlisten = \"127.0.0.1:0\"\n\n\
         [[domain]]\nname = \"app.test\"\nacceleration = \"full-site\"\norigins = [\"{origin}\"]\n\
         websocket = {{ switch = \"on\", timeout = 1 }}\n\n\
         [[domain]]\nname = \"forever.test\"\nacceleration = \"full-site\"\norigins = [\"{origin}\"]\n\
         websocket = {{ switch = \"on\", timeout = 0 }}\n\n\
         [[domain]]\nname = \"off.test\"\nacceleration = \"full-site\"\norigins = [\"{origin}\"]\n"
    )
}

async fn scrape(serve: &ServeProcess) -> Vec<Sample> {
    let (status, body) = serve.admin_request("GET", "/metrics").await;
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .unwrap()
        .samples
}

/// The value of the one sample of `metric` whose labels include `labels`.
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{metric} {labels:?}: {found:?}");
    match &found[0].value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{metric}: not a single value: {other:?}"),
    }
}

#[tokio::test]
async fn metrics_follow_sessions_frames_idle_cuts_refusals_and_reloads() {
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, config_text(origin)).unwrap();
    let mut serve = ServeProcess::start(&path, &["--admin", "127.0.0.1:0"], &[]).await;

    // Before any traffic: every configured domain has its series at 0 and
    // its effective idle limit (+Inf for timeout 0, 15 s with the switch off).
    let samples = scrape(&serve).await;
    let active = |s: &[Sample], d: &str| value(s, "ecdn_relay_sessions_active", &[("domain", d)]);
    assert_eq!(active(&samples, "app.test"), 0.0);
    let limit = |s: &[Sample], d: &str| value(s, "ecdn_relay_idle_limit_seconds", &[("domain", d)]);
    assert_eq!(limit(&samples, "app.test"), 1.0);
    assert_eq!(limit(&samples, "forever.test"), f64::INFINITY);
    assert_eq!(limit(&samples, "off.test"), 15.0);
    // Both reload results too, so that `increase()` sees the first refusal.
    for result in ["applied", "refused"] {
        let reloads = value(
            &samples,
            "ecdn_relay_config_reloads_total",
            &[("result", result)],
        );
        assert_eq!(reloads, 0.0, "reloads {result}");
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(&samples, "ecdn_relay_build_info", &[("version", version)]),
        1.0
    );

    // Known traffic: three 5-byte messages each way on app.test, which is
    // then cut for idleness; one session on forever.test stays open; a Host
    // that matches no domain is refused 404.
    let mut cut = connect(serve.addr, "app.test").await;
    for _ in 0..3 {
        cut.send(Message::text("hello")).await.unwrap();
        let echo = cut.next().await.unwrap().unwrap();
        assert_eq!(echo, Message::text("hello"));
    }
    let mut kept = connect(serve.addr, "forever.test").await;
    kept.send(Message::binary(vec![7u8; 100])).await.unwrap();
    let _ = kept.next().await.unwrap().unwrap();
    assert!(
        try_connect(serve.addr, "attacker-chosen.example", None)
            .await
            .is_err()
    );
    serve.line_with("status=404").await;
    let close = next_close(&mut cut).await.expect("an idle close frame");
    assert_eq!(u16::from(close.code), 1001);
    serve.line_with("idle timeout").await;

    let s = scrape(&serve).await;
    assert_eq!(active(&s, "app.test"), 0.0);
    assert_eq!(active(&s, "forever.test"), 1.0);
    let app = ("domain", "app.test");
    assert_eq!(value(&s, "ecdn_relay_sessions_opened_total", &[app]), 1.0);
    // Bytes are frame payload bytes, control frames included: toward the
    // client also the relay's own close frame (code + reason).
    let close_payload = 2 + close.reason.len();
    for (direction, bytes) in [
        ("client_to_origin", 15),
        ("origin_to_client", 15 + close_payload),
    ] {
        let labels = [app, ("direction", direction)];
        assert_eq!(
            value(&s, "ecdn_relay_messages_total", &labels),
            3.0,
            "{direction}"
        );
        assert_eq!(
            value(&s, "ecdn_relay_bytes_total", &labels),
            bytes as f64,
            "{direction}"
        );
    }
    let forever = [
        ("domain", "forever.test"),
        ("direction", "client_to_origin"),
    ];
    assert_eq!(value(&s, "ecdn_relay_bytes_total", &forever), 100.0);
    assert_eq!(
        value(
            &s,
            "ecdn_relay_sessions_closed_total",
            &[app, ("cause", "idle_timeout")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "ecdn_relay_handshakes_refused_total",
            &[("domain", ""), ("status", "404")]
        ),
        1.0
    );
    // The peer's Host never becomes a label value.
    assert!(
        s.iter()
            .all(|x| x.labels.values().all(|v| !v.contains("attacker"))),
        "a peer-chosen Host reached a label"
    );
    let durations: Vec<&Sample> = s
        .iter()
        .filter(|x| {
            x.metric == "ecdn_relay_session_duration_seconds"
                && x.labels.get("domain") == Some("app.test")
        })
        .collect();
    match durations.first().map(|x| &x.value) {
        Some(Value::Histogram(buckets)) => {
            // Lasted about a second: not in the 1 s bucket's complement, in the 5 s one.
            let five = buckets.iter().find(|b| b.less_than == 5.0).unwrap();
            assert_eq!(five.count, 1.0, "{buckets:?}");
        }
        other => panic!("no duration histogram for app.test: {other:?}"),
    }

    // Reloads: one applied (app.test's limit goes to 30 s), one refused.
    std::fs::write(
        &path,
        config_text(origin).replacen("timeout = 1 ", "timeout = 30 ", 1),
    )
    .unwrap();
    serve.signal("HUP");
    serve.line_with("reloaded (SIGHUP)").await;
    std::fs::write(&path, "[relay]\nlisten = 5\n").unwrap();
    serve.signal("HUP");
    serve.line_with("rejected").await;
    let s = scrape(&serve).await;
    assert_eq!(
        value(
            &s,
            "ecdn_relay_config_reloads_total",
            &[("result", "applied")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "ecdn_relay_config_reloads_total",
            &[("result", "refused")]
        ),
        1.0
    );
    assert_eq!(limit(&s, "app.test"), 30.0);
    drop(kept);
    serve.signal("TERM");
    assert_eq!(serve.exit_code(Duration::from_secs(5)).await, Some(0));
}

#[tokio::test]
async fn the_admin_listener_is_read_only() {
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, config_text(origin)).unwrap();
    let mut serve = ServeProcess::start(&path, &["--admin", "127.0.0.1:0"], &[]).await;

    assert_eq!(serve.admin_request("GET", "/healthz").await.0, 200);
    assert_eq!(
        serve.admin_request("GET", "/readyz").await,
        (200, "ready\n".to_string())
    );
    let (status, body) = serve.admin_request("GET", "/admin/close-all").await;
    assert_eq!(status, 404);
    assert!(body.contains("/metrics"), "{body}");
    for method in ["POST", "PUT", "DELETE"] {
        for path in ["/metrics", "/readyz", "/healthz"] {
            assert_eq!(
                serve.admin_request(method, path).await.0,
                405,
                "{method} {path}"
            );
        }
    }
    // A live session is untouched by all of that.
    let mut client = connect(serve.addr, "forever.test").await;
    let _ = serve.admin_request("DELETE", "/metrics").await;
    client.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        Message::text("still here")
    );
    serve.signal("TERM");
    assert_eq!(serve.exit_code(Duration::from_secs(5)).await, Some(0));
}

/// Whoever holds every admin connection (half a request each, or requests
/// whose answers they never read) cannot keep a probe from its answer: a
/// kubelet's 1 s `/healthz` would otherwise fail and restart the relay.
#[tokio::test]
async fn held_admin_connections_do_not_lock_probes_out() {
    use tokio::io::AsyncWriteExt;
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, config_text(origin)).unwrap();
    let mut serve = ServeProcess::start(&path, &["--admin", "127.0.0.1:0"], &[]).await;
    let admin = serve.admin.unwrap();

    let mut held = Vec::new();
    for i in 0..128 {
        let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
        if i % 2 == 0 {
            // Slowloris: a request line and no end of the head.
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: a")
                .await
                .unwrap();
        } else {
            // A reader that never reads: pipelined scrapes.
            let many = b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n".repeat(64);
            let _ = stream.write_all(&many).await;
        }
        held.push(stream);
    }
    for _ in 0..5 {
        let answered = tokio::time::timeout(
            Duration::from_secs(1),
            serve.admin_request("GET", "/healthz"),
        )
        .await;
        assert_eq!(
            answered.map(|(status, _)| status).ok(),
            Some(200),
            "/healthz unanswered within 1 s while 128 connections are held"
        );
    }
    drop(held);
    serve.signal("TERM");
    assert_eq!(serve.exit_code(Duration::from_secs(5)).await, Some(0));
}

/// An edit made over the control socket (an attached console's) moves the
/// idle-limit gauge as a reload does.
#[tokio::test]
async fn an_edit_over_the_control_socket_updates_the_idle_limit_metric() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    let socket = dir.path().join("control.sock");
    let text = config_text(origin).replacen(
        "[relay]\n",
        &format!("[relay]\ncontrol-socket = \"{}\"\n", socket.display()),
        1,
    );
    std::fs::write(&path, text).unwrap();
    let serve = ServeProcess::start(&path, &["--admin", "127.0.0.1:0"], &[]).await;
    let limit = |samples: &[Sample]| {
        value(
            samples,
            "ecdn_relay_idle_limit_seconds",
            &[("domain", "app.test")],
        )
    };
    assert_eq!(limit(&scrape(&serve).await), 1.0);

    let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let _hello = lines.next_line().await.unwrap().unwrap();
    let mut ask = async |line: String| -> serde_json::Value {
        write.write_all(line.as_bytes()).await.unwrap();
        let answer = lines.next_line().await.unwrap().unwrap();
        serde_json::from_str(&answer).unwrap()
    };
    let config = ask("{\"request\":\"config-get\"}\n".into()).await;
    let edit = format!(
        "{{\"request\":\"config-edit\",\"version\":{},\"edit\":{{\"edit\":\"set-websocket\",\"domain\":\"app.test\",\"switch\":\"on\",\"timeout\":30}}}}\n",
        config["version"]
    );
    let answer = ask(edit).await;
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(limit(&scrape(&serve).await), 30.0);
}
