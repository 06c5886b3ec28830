//! A real browser as the client: headless Chromium (Debian's `chromium`)
//! loads a page whose WebSockets go through the relay to the embedded
//! origin, and the page posts back each close event it saw (code, reason,
//! wasClean). Skips, saying so, when /usr/bin/chromium is absent
//! (`apt-get install -y chromium`; .ci/run installs it). A second page
//! streams sequence-numbered messages through a `serve` process while
//! `serve --takeover` replaces it (DESIGN §7), and says whether anything
//! was lost, duplicated, reordered or closed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod logged_serve;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ecdn_console::origin::OriginOptions;
use ecdn_console::relay::{CloseCause, RelayEvent, RelayHandle};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium's cold start on a loaded 2-core machine plus a 1 s idle timeout.
const REPORT_DEADLINE: Duration = Duration::from_secs(15);

/// Opens one WebSocket per case whose relay port is in the query string and
/// posts what its close event said to /report.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>relay close events</title>
<script>
const query = new URLSearchParams(location.search);
function report(body) {
  fetch('/report', { method: 'POST', body: JSON.stringify(body) });
}
window.onerror = (message) => report({ name: 'page-error', reason: String(message) });
function watch(name, onOpen) {
  const port = query.get(name);
  if (!port) return;
  // Host is localhost:PORT: the relay routes it to the domain `localhost`.
  const ws = new WebSocket('ws://localhost:' + port + '/browser');
  let openedAt = null;
  ws.onopen = () => {
    openedAt = performance.now();
    if (onOpen) onOpen(ws);
  };
  ws.onclose = (event) => report({
    name,
    opened: openedAt !== null,
    openMs: openedAt === null ? 0 : performance.now() - openedAt,
    code: event.code,
    reason: event.reason,
    wasClean: event.wasClean,
  });
}
watch('idle');
watch('abort');
// The embedded origin closes with the code and reason it is asked for.
watch('passthrough', (ws) => ws.send('/close 4321 bye'));
// The vanishing origin drops TCP after one message, without a close frame.
watch('vanish', (ws) => ws.send('goodbye'));

// Hand-over: messages go out on a timer, without waiting for their echo, so
// some are always in flight; every 25th is 256 KiB so that one may be
// mid-frame. Each echo must be the next in sequence, whole.
function bodyOf(seq) {
  const head = seq + ':';
  return seq % 25 === 24 ? head + 'x'.repeat(262144) : head + 'small';
}
function stream() {
  const port = query.get('handover');
  if (!port) return;
  const ws = new WebSocket('ws://localhost:' + port + '/browser');
  let sent = 0, received = 0, expected = 0;
  const problems = [];
  ws.onopen = () => setInterval(() => {
    for (let i = 0; i < 4 && sent - received < 64; i++) ws.send(bodyOf(sent++));
  }, 2);
  ws.onmessage = (event) => {
    const text = String(event.data);
    const seq = parseInt(text.slice(0, text.indexOf(':')), 10);
    if (seq !== expected) problems.push('got ' + seq + ' when ' + expected + ' was next');
    else if (text !== bodyOf(seq)) problems.push('message ' + seq + ' arrived altered');
    expected = seq + 1;
    received++;
  };
  ws.onerror = () => report({ name: 'error' });
  ws.onclose = (event) => report({ name: 'close', code: event.code, reason: event.reason });
  setInterval(() => report({ name: 'progress', sent, received, problems: problems.slice(0, 5) }), 50);
}
stream();
</script>
"#;

/// What the page reported for one WebSocket.
#[derive(Debug)]
struct Seen {
    opened: bool,
    open_ms: f64,
    code: u64,
    reason: String,
    was_clean: bool,
}

impl Seen {
    fn from_json(v: &Value) -> Self {
        Seen {
            opened: v["opened"].as_bool().unwrap_or(false),
            open_ms: v["openMs"].as_f64().unwrap_or(0.0),
            code: v["code"].as_u64().unwrap_or(0),
            reason: v["reason"].as_str().unwrap_or("").to_string(),
            was_clean: v["wasClean"].as_bool().unwrap_or(false),
        }
    }
}

/// Serves the page and collects the reports on a thread of its own.
struct PageServer {
    server: Arc<tiny_http::Server>,
    port: u16,
}

impl PageServer {
    fn start(reports: mpsc::UnboundedSender<Value>) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let serving = server.clone();
        std::thread::spawn(move || {
            for mut request in serving.incoming_requests() {
                let path = request.url().split('?').next().unwrap_or("").to_string();
                let response = match (request.method(), path.as_str()) {
                    (tiny_http::Method::Get, "/") => {
                        let html: tiny_http::Header =
                            "Content-Type: text/html; charset=utf-8".parse().unwrap();
                        tiny_http::Response::from_string(PAGE).with_header(html)
                    }
                    (tiny_http::Method::Post, "/report") => {
                        let mut body = String::new();
                        let _ = request.as_reader().read_to_string(&mut body);
                        if let Ok(report) = serde_json::from_str(&body) {
                            let _ = reports.send(report);
                        }
                        tiny_http::Response::from_string("").with_status_code(204)
                    }
                    _ => tiny_http::Response::from_string("not found").with_status_code(404),
                };
                let _ = request.respond(response);
            }
        });
        PageServer { server, port }
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// Headless Chromium on a fresh profile, in a process group of its own so
/// that its helper processes end with it.
struct Browser {
    child: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    fn open(url: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(profile.path().join("chromium.log")).unwrap();
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        Browser { child, profile }
    }

    /// The end of Chromium's output, for a failure message.
    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// One relay with the single domain `localhost` (the browser's Host) in
/// front of the embedded echo origin.
async fn relay_for_localhost(
    relay_extra: &str,
    websocket: &str,
) -> (RelayHandle, mpsc::Receiver<RelayEvent>) {
    let origin = echo_origin(OriginOptions::default()).await;
    relay_to(origin, relay_extra, websocket).await
}

async fn relay_to(
    origin: SocketAddr,
    relay_extra: &str,
    websocket: &str,
) -> (RelayHandle, mpsc::Receiver<RelayEvent>) {
    let domain = format!(
        "[[domain]]\nname = \"localhost\"\nacceleration = \"full-site\"\norigins = [\"{{origin}}\"]\nwebsocket = {websocket}\n"
    );
    start_relay(config(relay_extra, &domain, origin)).await
}

/// A tokio-tungstenite origin that reads one message, then vanishes: its
/// TCP connection ends without a close frame.
async fn vanishing_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                    let _ = ws.next().await;
                }
            });
        }
    });
    addr
}

/// Waits for a report from each of `names`; a page error ends the wait.
async fn collect(
    reports: &mut mpsc::UnboundedReceiver<Value>,
    names: &[&str],
    browser: &Browser,
) -> HashMap<String, Seen> {
    let mut seen = HashMap::new();
    let waited = tokio::time::timeout(REPORT_DEADLINE, async {
        while seen.len() < names.len() {
            let Some(report) = reports.recv().await else {
                break;
            };
            let name = report["name"].as_str().unwrap_or("").to_string();
            assert_ne!(name, "page-error", "the page failed: {report}");
            seen.insert(name, Seen::from_json(&report));
        }
    })
    .await;
    if waited.is_err() {
        panic!(
            "only {:?} of {names:?} reported within {REPORT_DEADLINE:?}; chromium said:\n{}",
            seen.keys().collect::<Vec<_>>(),
            browser.log_tail()
        );
    }
    seen
}

#[tokio::test]
async fn chromium_sees_idle_close_abort_passed_through_codes_and_a_mirrored_vanish() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("SKIPPED: {CHROMIUM} is absent (apt-get install -y chromium)");
        return;
    }
    let timeout_1s = "{ switch = \"on\", timeout = 1 }";
    let (idle, _idle_events) = relay_for_localhost("", timeout_1s).await;
    let (abort, mut abort_events) = relay_for_localhost("idle-close = \"abort\"", timeout_1s).await;
    let timeout_60s = "{ switch = \"on\", timeout = 60 }";
    let (passthrough, _pass_events) = relay_for_localhost("", timeout_60s).await;
    let (vanish, mut vanish_events) = relay_to(vanishing_origin().await, "", timeout_60s).await;

    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let page = PageServer::start(reports_tx);
    let url = format!(
        "http://localhost:{}/?idle={}&abort={}&passthrough={}&vanish={}",
        page.port,
        idle.local_addr().port(),
        abort.local_addr().port(),
        passthrough.local_addr().port(),
        vanish.local_addr().port()
    );
    let browser = Browser::open(&url);
    let names = ["idle", "abort", "passthrough", "vanish"];
    let seen = collect(&mut reports, &names, &browser).await;
    drop(browser);

    // Idle close: a real close frame, 1001 with the reason, after ~1 s.
    let s = &seen["idle"];
    assert!(s.opened, "{s:?}");
    assert_eq!(
        (s.code, s.reason.as_str(), s.was_clean),
        (1001, "idle timeout (1 s)", true),
        "{s:?}"
    );
    assert!(
        s.open_ms >= 900.0,
        "cut after {} ms, before the timeout",
        s.open_ms
    );

    // Abort mode: TCP dropped without a close frame, which a browser reports as 1006.
    let s = &seen["abort"];
    assert!(s.opened, "{s:?}");
    assert_eq!(
        (s.code, s.reason.as_str(), s.was_clean),
        (1006, "", false),
        "{s:?}"
    );
    assert!(
        s.open_ms >= 900.0,
        "cut after {} ms, before the timeout",
        s.open_ms
    );
    let closed = wait_event(&mut abort_events, |e| {
        matches!(e, RelayEvent::Closed { .. })
    })
    .await;
    let RelayEvent::Closed { cause, .. } = closed else {
        unreachable!()
    };
    assert_eq!(cause, CloseCause::IdleTimeout { timeout_secs: 1 });

    // The origin's own close code and reason reach the page unchanged.
    let s = &seen["passthrough"];
    assert!(s.opened, "{s:?}");
    assert_eq!(
        (s.code, s.reason.as_str(), s.was_clean),
        (4321, "bye", true),
        "{s:?}"
    );

    // A vanished origin is mirrored: the relay invents no close frame, so the
    // page sees 1006 as it would connected directly (DESIGN §1).
    let s = &seen["vanish"];
    assert!(s.opened, "{s:?}");
    assert_eq!(
        (s.code, s.reason.as_str(), s.was_clean),
        (1006, "", false),
        "{s:?}"
    );
    let closed = wait_event(&mut vanish_events, |e| {
        matches!(e, RelayEvent::Closed { .. })
    })
    .await;
    let RelayEvent::Closed {
        cause, to_client, ..
    } = closed
    else {
        unreachable!()
    };
    assert_eq!((cause, to_client), (CloseCause::OriginVanished, None));
}

// ---------------------------------------------------------------------------
// A browser's WebSocket survives `serve --takeover`.

/// How long a `serve` line may take to come.
const SERVE_LINE: Duration = Duration::from_secs(15);

/// A tokio-tungstenite origin echoing every data message.
async fn tungstenite_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let (mut to_client, from_client) = ws.split();
                let data = from_client.filter(|m| {
                    std::future::ready(m.as_ref().is_ok_and(|m| m.is_text() || m.is_binary()))
                });
                let _ = to_client.send_all(&mut data.boxed()).await;
            });
        }
    });
    addr
}

/// What the hand-over page last said: messages sent and echoed, and any
/// loss, duplicate or reordering it saw.
struct Progress {
    sent: u64,
    received: u64,
}

/// Waits for a progress report with at least `at_least` messages echoed;
/// a close, an error or a problem the page saw fails the test.
async fn progress_past(
    reports: &mut mpsc::UnboundedReceiver<Value>,
    at_least: u64,
    browser: &Browser,
) -> Progress {
    let waited = tokio::time::timeout(REPORT_DEADLINE, async {
        loop {
            let report = reports.recv().await.expect("the page server runs");
            match report["name"].as_str() {
                Some("progress") => {
                    let problems = report["problems"].as_array().unwrap();
                    assert!(problems.is_empty(), "the page saw {problems:?}");
                    let progress = Progress {
                        sent: report["sent"].as_u64().unwrap(),
                        received: report["received"].as_u64().unwrap(),
                    };
                    if progress.received >= at_least {
                        return progress;
                    }
                }
                _ => panic!("the page reported {report}"),
            }
        }
    })
    .await;
    waited.unwrap_or_else(|_| {
        panic!(
            "fewer than {at_least} messages echoed within {REPORT_DEADLINE:?}; chromium said:\n{}",
            browser.log_tail()
        )
    })
}

/// `sessions --json`: each session's client address and id.
async fn ids(socket: &Path) -> HashMap<SocketAddr, u64> {
    let sessions = sessions_by_client(socket).await;
    sessions
        .into_iter()
        .map(|(client, s)| (client, s["id"].as_u64().unwrap()))
        .collect()
}

#[tokio::test]
async fn chromium_keeps_its_websocket_whole_across_a_takeover() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("SKIPPED: {CHROMIUM} is absent (apt-get install -y chromium)");
        return;
    }
    let (_dir, config, socket) = relay_dir("localhost", tungstenite_echo().await);
    let mut old = logged_serve::Serve::spawn(&config, &[], &[]);
    let listening = old.line_with("listening on", SERVE_LINE).await;
    let relay: SocketAddr = listening
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no address in {listening:?}"));
    old.line_with("control socket at", SERVE_LINE).await;

    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let page = PageServer::start(reports_tx);
    let browser = Browser::open(&format!(
        "http://localhost:{}/?handover={}",
        page.port,
        relay.port()
    ));
    progress_past(&mut reports, 100, &browser).await;
    let before = ids(&socket).await;
    assert_eq!(before.len(), 1, "the page's one session: {before:?}");

    let mut new = logged_serve::Serve::spawn(&config, &["--takeover"], &[]);
    let took = new.line_with("took over", SERVE_LINE).await;
    assert!(took.contains("took over 1 session(s)"), "{took}");
    let exit = tokio::time::timeout(Duration::from_secs(10), old.child.wait())
        .await
        .expect("the old relay exits by itself once it handed its session over");
    assert_eq!(exit.unwrap().code(), Some(0));

    // Whatever was in flight when the old process left must arrive, in
    // order, and the stream carry on through the new process alone.
    let mut at_exit = 0;
    while let Ok(report) = reports.try_recv() {
        assert_eq!(report["name"], "progress", "the page reported {report}");
        at_exit = at_exit.max(report["sent"].as_u64().unwrap());
    }
    let after = progress_past(&mut reports, at_exit + 200, &browser).await;
    assert!(after.sent > at_exit, "the page kept sending");
    assert_eq!(
        ids(&socket).await,
        before,
        "the same session, same id, from the new process"
    );
    drop(browser);
}
