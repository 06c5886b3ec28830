//! `ecdn-console recommend DOMAIN [--json]` against a real `serve` process
//! over its control socket (DESIGN §10), after a short scenario on a 4 s
//! limit: two tokio-tungstenite clients beating every 1 s, one beating
//! every 6 s that is cut before its first beat and reconnects, and a silent
//! one that is cut and never comes back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod serve_process;
mod tmux;

use std::time::Duration;

use common::*;
use ecdn_console::app::advice;
use ecdn_console::config::ConfigFile;
use ecdn_console::control::protocol::{EvidenceReply, RecentInfo};
use ecdn_console::control::{ClientError, ControlClient, ErrorCode, Request};
use ecdn_console::origin::OriginOptions;
use futures_util::{SinkExt, StreamExt};
use serve_process::{ServeProcess, run_cli};
use tmux::{Tmux, shell_quote, tmux_available};
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A client on `path` sending a message on connect and every `every`
/// (none with `None`), reading whatever comes, until the session ends;
/// then again after 200 ms if `reconnect`.
async fn client(relay: std::net::SocketAddr, path: &str, every: Option<Duration>, reconnect: bool) {
    loop {
        let mut request = format!("ws://{relay}{path}").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("host", "beat.test".parse().unwrap());
        let stream = tokio::net::TcpStream::connect(relay).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .unwrap();
        if every.is_some() {
            ws.send(Message::text("hello")).await.unwrap();
        }
        let mut tick = every.map(|e| tokio::time::interval_at(tokio::time::Instant::now() + e, e));
        loop {
            let beat = async {
                match tick.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                m = ws.next() => match m {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                _ = beat => {
                    if ws.send(Message::text("beat")).await.is_err() {
                        break;
                    }
                }
            }
        }
        if !reconnect {
            return;
        }
        sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn recommend_after_clients_are_cut_while_alive() {
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[relay]\nlisten = \"127.0.0.1:0\"\ncontrol-socket = \"run/relay.sock\"\n\n\
             [[domain]]\nname = \"beat.test\"\nacceleration = \"full-site\"\n\
             origins = [\"{origin}\"]\nwebsocket = {{ switch = \"on\", timeout = 4 }}\n"
        ),
    )
    .unwrap();
    let xdg = dir.path().join("xdg");
    let mut serve =
        ServeProcess::start(&config, &[], &[("XDG_RUNTIME_DIR", xdg.to_str().unwrap())]).await;
    let relay = serve.addr;
    let socket = serve.control.to_str().unwrap().to_string();

    let second = Duration::from_secs(1);
    tokio::spawn(client(relay, "/beat-1s", Some(second), false));
    tokio::spawn(client(relay, "/beat-1s", Some(second), false));
    tokio::spawn(client(relay, "/beat-6s", Some(6 * second), true));
    tokio::spawn(client(relay, "/silent", None, false));
    // Until the 6 s client's third session opens: it was cut twice (at
    // 4 s, before its first beat) and came back twice.
    let mut six = 0;
    timeout(Duration::from_secs(30), async {
        while six < 3 {
            let line = serve
                .line_within("path=/beat-6s", Duration::from_secs(30))
                .await;
            if line.contains(" opened  #") {
                six += 1;
            }
        }
    })
    .await
    .expect("the 6 s client reconnected twice");

    let out = run_cli(&["recommend", "beat.test", "--json", "--socket", &socket]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "current_limit_secs",
            "cut_while_alive",
            "domain",
            "heartbeat_secs",
            "reason",
            "recommended_timeout_secs",
            "sessions_seen",
            "would_cut_now"
        ],
        "{v:#}"
    );
    assert_eq!(v["domain"], "beat.test", "{v:#}");
    assert_eq!(v["current_limit_secs"], 4, "{v:#}");
    // Cut before its first beat: its rhythm is unknown, so raise to 60 s
    // and measure; never 4 s or lower.
    assert_eq!(v["recommended_timeout_secs"], 60, "{v:#}");
    // The 6 s client twice; the silent one never came back, so not counted.
    assert_eq!(v["cut_while_alive"], 2, "{v:#}");
    // Two 1 s clients, the silent one, three sessions of the 6 s client.
    assert_eq!(v["sessions_seen"], 6, "{v:#}");
    let beat = v["heartbeat_secs"].as_f64().unwrap();
    assert!((0.9..=1.3).contains(&beat), "{v:#}");
    assert_eq!(v["would_cut_now"], serde_json::json!([]), "{v:#}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "2 clients were cut while alive at 4 s before their first beat, so their heartbeat \
             is unknown: raise the limit to 60 s"
        ),
        "{reason}"
    );
    assert!(reason.contains("on 2 of 6 sessions"), "{reason}");

    // The same, for a person; the domain is case-insensitive.
    let out = run_cli(&["recommend", "BEAT.test", "--socket", &socket]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("beat.test: recommended timeout 60 s\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("2 cut while alive"), "{}", out.stdout);

    // What an attached console advises from: the relay's own evidence, so
    // the same advice as `recommend` (it used to see no history at all and
    // advise "no session in the last 10 minutes").
    let mut control = ControlClient::connect(&serve.control).await.unwrap();
    let reply: EvidenceReply = control
        .request(&Request::Evidence {
            domain: Some("beat.test".into()),
        })
        .await
        .unwrap();
    assert_eq!(
        reply.recent,
        [RecentInfo {
            domain: "beat.test".into(),
            ended: 3,
            idle_cuts: 3,
            cut_while_alive: 2
        }],
        "the silent client's cut and the 6 s client's two"
    );
    assert_eq!(reply.cut_while_alive.len(), 2, "{reply:?}");
    let evidence = reply.evidence.expect("the domain's sessions").evidence();
    assert_eq!(evidence.sessions.len(), 6, "{evidence:?}");
    let file = ConfigFile::load(&config).unwrap();
    let domain = file.config().domain("beat.test").unwrap();
    let attached = advice::recommend_on(evidence, domain);
    assert_eq!(
        (
            attached.recommended_timeout_secs,
            attached.cut_while_alive,
            attached.sessions_seen
        ),
        (60, 2, 6)
    );
    assert_eq!(
        attached.reason, reason,
        "the attached console's advice is the relay's"
    );
    let unknown: Result<EvidenceReply, _> = control
        .request(&Request::Evidence {
            domain: Some("nope.test".into()),
        })
        .await;
    assert!(
        matches!(&unknown, Err(ClientError::Refused(e)) if e.error == ErrorCode::UnknownDomain),
        "{unknown:?}"
    );
    attached_console_shows_the_relays_advice(&socket);

    // A restart by hand-over keeps the evidence: the new process advises
    // from the same 10 minutes, not as if nothing had been seen.
    let mut taker = ServeProcess::start(
        &config,
        &["--takeover"],
        &[("XDG_RUNTIME_DIR", xdg.to_str().unwrap())],
    )
    .await;
    let old = timeout(Duration::from_secs(10), serve.child.wait())
        .await
        .expect("the old relay exits once it has handed everything over")
        .unwrap();
    assert!(old.success(), "{old:?}");
    let out = run_cli(&["recommend", "beat.test", "--json", "--socket", &socket]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["recommended_timeout_secs"], 60, "{v:#}");
    // At least the two cuts of the old process (a third may have come since).
    assert!(v["cut_while_alive"].as_u64().unwrap() >= 2, "{v:#}");
    assert!(v["sessions_seen"].as_u64().unwrap() >= 6, "{v:#}");

    // A domain the relay does not have: bad input.
    let out = run_cli(&["recommend", "nope.test", "--json", "--socket", &socket]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("no domain \"nope.test\""),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    taker.child.kill().await.unwrap();
}

/// The Advanced card of a console attached to the relay at `socket`: the
/// advice and the evidence of the relay's history.
fn attached_console_shows_the_relays_advice(socket: &str) {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the attached console's advice");
        return;
    }
    let command = format!(
        "{} attach --socket {}",
        shell_quote(env!("CARGO_BIN_EXE_ecdn-console")),
        shell_quote(socket)
    );
    let tmux = Tmux::start(format!("ecdn-advice-{}", std::process::id()), &command);
    // Wide enough for the card's lines not to wrap.
    tmux.cmd(&["resize-window", "-t", "console", "-x", "140", "-y", "40"]);
    tmux.wait_for("attached to relay 127.0.0.1:");
    // Domain Management, the (only) domain's page, its Advanced tab.
    tmux.keys(&["2", "Enter", "Right", "Right"]);
    let screen = tmux.wait_for("2 cut while alive");
    assert!(screen.contains("Recommended   60 s"), "{screen}");
    assert!(screen.contains("6 sessions in 10 min"), "{screen}");
    assert!(
        screen.contains("2 clients were cut while alive at 4 s"),
        "{screen}"
    );
    tmux.keys(&["C-c"]);
    tmux.wait_until_gone();
}

#[tokio::test]
async fn recommend_without_a_relay_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let socket = socket.to_str().unwrap();
    let out = run_cli(&["recommend", "beat.test", "--json", "--socket", socket]).await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains(socket), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}
