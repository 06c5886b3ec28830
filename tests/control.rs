//! The control socket and the shell commands over it, against a real
//! `serve` process: `sessions`, `close-session`, `events`, `stop`, their
//! failures (no relay → 3, unknown id → 2), permissions, a peer of another
//! uid, malformed input, a stale and a live socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod serve_process;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use ecdn_console::origin::OriginOptions;
use futures_util::SinkExt;
use serve_process::{ServeProcess, run_cli};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::UnixStream;
use tokio::process::Command;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_ecdn-console");

/// `serve` in a fresh directory it keeps (its config and run/ live there).
struct Serve {
    process: ServeProcess,
    addr: std::net::SocketAddr,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

/// `serve` on a config in a fresh directory, its control socket at
/// `run/relay.sock` unless `relay_extra` says otherwise.
async fn serve(relay_extra: &str) -> Serve {
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), origin, relay_extra);
    let xdg = dir.path().join("xdg");
    let process = ServeProcess::start(&path, &[], &[("XDG_RUNTIME_DIR", s(&xdg))]).await;
    Serve {
        addr: process.addr,
        socket: process.control.clone(),
        process,
        dir,
    }
}

/// `c.toml` in `dir`: two domains on `origin`, `relay_extra` in `[relay]`.
fn write_config(dir: &Path, origin: std::net::SocketAddr, relay_extra: &str) -> PathBuf {
    let extra = if relay_extra.is_empty() {
        "control-socket = \"run/relay.sock\"".to_string()
    } else {
        relay_extra.to_string()
    };
    let text = format!(
        "# comment kept\n[relay]\nlisten = \"127.0.0.1:0\"\n{extra}\n\n[[domain]]\nname = \"app.test\"\n\
         acceleration = \"full-site\"\norigins = [\"{origin}\"]\nwebsocket = {{ switch = \"on\", timeout = 100 }}\n\n\
         [[domain]]\nname = \"other.test\"\nacceleration = \"full-site\"\norigins = [\"{origin}\"]\n"
    );
    let path = dir.join("c.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl Serve {
    async fn line_with(&mut self, needle: &str) -> String {
        self.process.line_with(needle).await
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("c.toml")
    }

    /// `serve --takeover` of this relay, once it answers.
    async fn take_over(&self) -> ServeProcess {
        let xdg = self.dir.path().join("xdg");
        ServeProcess::start(
            &self.config(),
            &["--takeover"],
            &[("XDG_RUNTIME_DIR", s(&xdg))],
        )
        .await
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn sessions_json(socket: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["sessions", "--json", "--socket", s(socket)];
    args.extend_from_slice(extra);
    let out = run_cli(&args).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn sessions_lists_live_sessions_with_a_domain_filter() {
    let mut relay = serve("").await;
    let _a = connect(relay.addr, "app.test").await;
    let _b = connect(relay.addr, "other.test").await;
    relay.line_with("opened  #2").await;

    let all = sessions_json(&relay.socket, &[]).await;
    assert_eq!(all.len(), 2);
    // Ids are given as sessions register, after their 101: with two
    // workers either client may be #1.
    let of = |domain: &str| all.iter().find(|s| s["domain"] == domain).unwrap();
    assert_eq!(of("app.test")["timeout_secs"], 100.0);
    assert_eq!(of("other.test")["timeout_secs"], 15.0);
    assert!(
        all[0]["id"].as_u64() < all[1]["id"].as_u64(),
        "sorted by id"
    );

    let only = sessions_json(&relay.socket, &["--domain", "APP.test"]).await;
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["id"], of("app.test")["id"]);
    // A domain the relay does not have is a mistake, not "no sessions".
    let typo = run_cli(&[
        "sessions",
        "--domain",
        "ap.test",
        "--socket",
        s(&relay.socket),
    ])
    .await;
    assert_eq!(typo.code, 2, "{}", typo.stdout);
    assert!(
        typo.stderr
            .contains("no domain \"ap.test\" in the relay's configuration"),
        "{}",
        typo.stderr
    );

    // The socket implied by --config (its control-socket key) works too.
    let out = run_cli(&["--config", s(&relay.config()), "sessions"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("Id  "), "{}", out.stdout);
    assert!(out.stdout.contains("app.test") && out.stdout.contains("other.test"));
    assert!(out.stdout.contains("/ 100 s"), "{}", out.stdout);
}

#[tokio::test]
async fn close_session_sends_the_close_asked_for_and_unknown_ids_are_bad_input() {
    let mut relay = serve("").await;
    // Ids are given as sessions register (after their 101): wait for a's
    // before b connects, so a is #1 whichever worker each lands on.
    let mut a = connect(relay.addr, "app.test").await;
    relay.line_with("opened  #1").await;
    let mut b = connect(relay.addr, "app.test").await;
    relay.line_with("opened  #2").await;

    let out = run_cli(&[
        "close-session",
        "1",
        "--code",
        "4000",
        "--reason",
        "maintenance",
        "--socket",
        s(&relay.socket),
    ])
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("closing session #1 with 4000"),
        "{}",
        out.stdout
    );
    let frame = timeout(Duration::from_secs(5), next_close(&mut a))
        .await
        .unwrap();
    assert_eq!(code(&frame), Some(4000));
    assert_eq!(reason(&frame), "maintenance");

    let out = run_cli(&["close-session", "2", "--socket", s(&relay.socket)]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let frame = timeout(Duration::from_secs(5), next_close(&mut b))
        .await
        .unwrap();
    assert_eq!(code(&frame), Some(1001));
    assert_eq!(reason(&frame), "closed by operator");

    let out = run_cli(&["close-session", "99", "--socket", s(&relay.socket)]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no live session #99"), "{}", out.stderr);

    let out = run_cli(&[
        "close-session",
        "1",
        "--code",
        "1006",
        "--socket",
        s(&relay.socket),
    ])
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("close code 1006 may not be sent"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn events_show_the_recent_ring_and_follow_new_ones() {
    let mut relay = serve("").await;
    let mut a = connect(relay.addr, "app.test").await;
    relay.line_with("opened  #1").await;
    // The ring fills from the owner's reading of the event stream.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let out = run_cli(&["events", "--socket", s(&relay.socket)]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("opened  #1 app.test"), "{}", out.stdout);

    let mut follower = Command::new(BIN)
        .args(["events", "--follow", "--json", "--socket", s(&relay.socket)])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    let first: serde_json::Value =
        serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(first["event"], "opened");
    a.send(Message::Close(None)).await.unwrap();
    let closed = timeout(Duration::from_secs(5), async {
        loop {
            let line = lines.next_line().await.unwrap().unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["event"] == "closed" {
                return v;
            }
        }
    })
    .await
    .expect("the close is followed");
    assert_eq!(closed["id"], 1);
    assert_eq!(closed["cause"]["kind"], "client-closed");
}

#[tokio::test]
async fn a_burst_of_sessions_is_followed_once_each() {
    // The relay writes a burst of events in batches: none may be lost,
    // repeated or cut in the middle of a line. (Not in id order: two
    // workers open sessions at once.)
    const BURST: usize = 300;
    let relay = serve("").await;
    let (mut raw, _) = Raw::connect(&relay.socket).await;
    let answer = raw
        .ask(b"{\"request\":\"events\",\"follow\":true}\n")
        .await
        .unwrap();
    assert_eq!(answer["following"], true, "{answer}");
    let clients =
        futures_util::future::join_all((0..BURST).map(|_| connect(relay.addr, "app.test"))).await;
    let mut opened = Vec::new();
    while opened.len() < BURST {
        let line = raw.read().await.expect("every opened event is followed");
        let event = &line["event"];
        assert_eq!(event["event"], "opened", "only opens happened: {line}");
        opened.push(event["id"].as_u64().unwrap());
    }
    opened.sort_unstable();
    let expected: Vec<u64> = (1..=BURST as u64).collect();
    assert_eq!(opened, expected, "each session once");
    drop(clients);
}

#[tokio::test]
async fn a_takeover_carries_the_event_log_over() {
    let mut relay = serve("").await;
    let mut a = connect(relay.addr, "app.test").await;
    relay.line_with("opened  #1").await;
    a.send(Message::Close(None)).await.unwrap();
    relay.line_with("closed  #1").await;
    let _b = connect(relay.addr, "app.test").await;
    relay.line_with("opened  #2").await;

    let taker = relay.take_over().await;
    let out = run_cli(&["events", "--json", "--socket", s(&taker.control)]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen: Vec<(String, u64)> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["id"].is_u64())
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["id"].as_u64().unwrap(),
            )
        })
        .collect();
    // The old process's events first, as they happened there.
    assert_eq!(
        seen[..3],
        [
            ("opened".to_string(), 1),
            ("closed".to_string(), 1),
            ("opened".to_string(), 2)
        ],
        "{}",
        out.stdout
    );
}

/// `events --follow` carries on through a takeover: the new relay's events
/// come after the old one's, none twice (the new relay resends the ring it
/// carried over), and a note on stderr says which pid took over.
#[tokio::test]
async fn events_follow_carries_on_through_a_takeover() {
    let mut relay = serve("").await;
    let mut follow = Command::new(BIN)
        .args(["events", "--follow", "--json", "--socket", s(&relay.socket)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let _a = connect(relay.addr, "app.test").await;
    relay.line_with("opened  #1").await;
    let taker = relay.take_over().await;
    let _b = connect(taker.addr, "app.test").await;
    let mut opened = Vec::new();
    timeout(Duration::from_secs(5), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let event: serde_json::Value = serde_json::from_str(&line).unwrap();
            if event["event"] == "opened" {
                opened.push(event["id"].as_u64().unwrap());
                if opened.contains(&2) {
                    return;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event of the new relay: opened so far {opened:?}"));
    assert_eq!(opened, [1, 2], "each once, in order");
    follow.start_kill().unwrap();
    let out = follow.wait_with_output().await.unwrap();
    let notes = String::from_utf8_lossy(&out.stderr);
    let new_pid = taker.child.id().unwrap();
    assert!(
        notes.contains(&format!("handed over to pid {new_pid}")),
        "{notes}"
    );
}

#[tokio::test]
async fn stop_stops_the_relay_and_then_no_relay_answers() {
    let mut relay = serve("").await;
    let out = run_cli(&["stop", "--socket", s(&relay.socket)]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("is stopping"), "{}", out.stdout);
    let status = timeout(Duration::from_secs(5), relay.process.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(!relay.socket.exists(), "the socket file is removed on exit");

    for args in [
        vec!["sessions"],
        vec!["events"],
        vec!["stop"],
        vec!["close-session", "1"],
    ] {
        let mut args = args.clone();
        args.extend(["--socket", s(&relay.socket)]);
        let out = run_cli(&args).await;
        assert_eq!(out.code, 3, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("no relay answers on") && out.stderr.contains(s(&relay.socket)),
            "{}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn the_default_socket_is_0600_in_a_0700_directory() {
    let relay = serve("# default socket").await;
    let dir = relay.dir.path().join("xdg").join("ecdn-console");
    let expected = dir.join(format!("relay-127.0.0.1-{}.sock", relay.addr.port()));
    assert_eq!(relay.socket, expected);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&relay.socket), 0o600);
    assert_eq!(sessions_json(&relay.socket, &[]).await.len(), 0);
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let relay = serve("").await;
    // A second relay on the same control socket: refused, the first unharmed.
    let out = Command::new(BIN)
        .args(["--config", s(&relay.config()), "serve"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another relay already answers on the control socket"),
        "{stderr}"
    );
    assert_eq!(sessions_json(&relay.socket, &[]).await.len(), 0);

    // A socket file nobody listens on (a relay killed with SIGKILL).
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let text = std::fs::read_to_string(relay.config())
        .unwrap()
        .replace("run/relay.sock", s(&stale));
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let second = ServeProcess::start(&path, &[], &[]).await;
    let control = second.control.display().to_string();
    assert!(control.contains("stale.sock"), "{control}");
    assert_eq!(sessions_json(&stale, &[]).await.len(), 0);
}

/// A raw client: the hello, then one answer per line sent.
struct Raw {
    lines: Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    write: tokio::net::unix::OwnedWriteHalf,
}

impl Raw {
    async fn connect(path: &Path) -> (Raw, serde_json::Value) {
        let (read, write) = UnixStream::connect(path).await.unwrap().into_split();
        let mut raw = Raw {
            lines: BufReader::new(read).lines(),
            write,
        };
        let hello = raw.read().await.expect("a hello");
        (raw, hello)
    }

    async fn read(&mut self) -> Option<serde_json::Value> {
        let line = timeout(Duration::from_secs(5), self.lines.next_line())
            .await
            .unwrap()
            .ok()??;
        Some(serde_json::from_str(&line).unwrap())
    }

    async fn ask(&mut self, line: &[u8]) -> Option<serde_json::Value> {
        self.write.write_all(line).await.ok()?;
        self.read().await
    }
}

#[tokio::test]
async fn malformed_input_gets_clear_answers_and_disturbs_nobody() {
    let mut relay = serve("").await;
    let mut ws = connect(relay.addr, "app.test").await;
    relay.line_with("opened  #1").await;

    let (mut raw, hello) = Raw::connect(&relay.socket).await;
    assert_eq!(hello["hello"], "ecdn-console-control");
    assert_eq!(hello["version"], 1);
    assert_eq!(hello["mode"], "serve");

    let a = raw.ask(b"this is not json\n").await.unwrap();
    assert_eq!(
        (a["ok"].clone(), a["error"].clone()),
        (false.into(), "bad-json".into())
    );
    let a = raw.ask(b"{\"request\":\"explode\"}\n").await.unwrap();
    assert_eq!(a["error"], "bad-request");
    assert!(a["message"].as_str().unwrap().contains("sessions"), "{a}");
    let a = raw
        .ask(b"{\"request\":\"session\",\"id\":\"one\"}\n")
        .await
        .unwrap();
    assert_eq!(a["error"], "bad-request");
    // The same connection still serves good requests.
    let a = raw.ask(b"\n{\"request\":\"sessions\"}\n").await.unwrap();
    assert_eq!(a["ok"], true);
    assert_eq!(a["sessions"].as_array().unwrap().len(), 1);

    // An endless line: answered and dropped.
    let (mut long, _) = Raw::connect(&relay.socket).await;
    let a = long.ask(&vec![b'x'; 100 * 1024]).await.unwrap();
    assert_eq!(a["error"], "too-long");
    assert!(long.read().await.is_none(), "dropped after a too-long line");

    // A client that asks and never reads its answers.
    let (mut deaf, _) = Raw::connect(&relay.socket).await;
    for _ in 0..2000 {
        if deaf
            .write
            .write_all(b"{\"request\":\"sessions\"}\n")
            .await
            .is_err()
        {
            break;
        }
    }
    // Meanwhile other clients and the session itself are served.
    let a = raw.ask(b"{\"request\":\"config-get\"}\n").await.unwrap();
    assert!(a["text"].as_str().unwrap().contains("# comment kept"));
    assert_echoes(&mut ws, "still here").await;
}

/// `ws` sends `text` and gets it back from the echo origin within 5 s.
async fn assert_echoes(ws: &mut Client, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
    let echo = timeout(Duration::from_secs(5), futures_util::StreamExt::next(ws))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echo, Message::Text(text.into()));
}

#[tokio::test]
async fn config_edits_carry_a_version_and_a_stale_one_is_a_conflict() {
    let mut relay = serve("").await;
    let (mut raw, hello) = Raw::connect(&relay.socket).await;
    let version = hello["config_version"].as_u64().unwrap();
    let edit = |v: u64, t: u16| {
        format!(
            "{{\"request\":\"config-edit\",\"version\":{v},\"edit\":{{\"edit\":\"set-websocket\",\"domain\":\"app.test\",\"timeout\":{t}}}}}\n"
        )
    };
    let a = raw.ask(edit(version, 45).as_bytes()).await.unwrap();
    assert_eq!(a["ok"], true, "{a}");
    assert_eq!(a["version"], version + 1);
    relay.line_with("over the control socket").await;
    let saved = std::fs::read_to_string(relay.config()).unwrap();
    assert!(
        saved.contains("timeout = 45") && saved.contains("# comment kept"),
        "{saved}"
    );

    // An edit made on the old version is refused and changes nothing.
    let a = raw.ask(edit(version, 30).as_bytes()).await.unwrap();
    assert_eq!(a["error"], "conflict", "{a}");
    let why = a["message"].as_str().unwrap();
    assert!(
        why.contains(&format!("at version {}", version + 1))
            && why.contains(&format!("made on version {version}"))
            && why.contains("config-get"),
        "the conflict says which versions and what to do: {why}"
    );
    assert_eq!(std::fs::read_to_string(relay.config()).unwrap(), saved);
    // A rule violation is refused with the rule's words.
    let a = raw.ask(edit(version + 1, 301).as_bytes()).await.unwrap();
    assert_eq!(a["error"], "invalid", "{a}");
    assert!(a["message"].as_str().unwrap().contains("301"), "{a}");
}

/// `ecdn-console websocket` on the file of a running relay hands the edit
/// to the relay, which saves it and has it in force at once (no file
/// change to wait for): a silent session is cut at the new timeout.
#[tokio::test]
async fn websocket_on_a_running_relays_file_goes_through_the_relay() {
    let mut relay = serve("").await;
    let mut client = connect(relay.addr, "app.test").await;
    let config = relay.config();
    let set_timeout = |secs: &'static str| {
        let config = config.clone();
        async move {
            run_cli(&[
                "websocket",
                "--config",
                s(&config),
                "app.test",
                "--timeout",
                secs,
            ])
            .await
        }
    };
    let out = set_timeout("1").await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("by the running relay, pid") && out.stdout.contains("in force now"),
        "{}",
        out.stdout
    );
    relay
        .line_with("timeout 1 s (over the control socket)")
        .await;
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(
        saved.contains("timeout = 1 }") && saved.contains("# comment kept"),
        "{saved}"
    );
    let close = timeout(Duration::from_secs(5), next_close(&mut client))
        .await
        .expect("cut at the new timeout")
        .expect("a close frame");
    assert!(
        close.reason.contains("idle timeout (1 s)"),
        "{}",
        close.reason
    );
    // A value the rules refuse is refused before anything is sent.
    let out = set_timeout("301").await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stderr.contains("301"), "{}", out.stderr);
}

/// A relay that cannot write its file (read-only, as systemd's
/// `ProtectSystem=strict` mounts `/etc`) refuses the edit `websocket`
/// hands it; the command then saves the file itself, says so, and the
/// relay takes the change as a file change. Needs `unshare` and `mount`
/// (root) for the read-only mount the relay alone sees; skips otherwise.
#[tokio::test]
async fn websocket_saves_the_file_itself_when_the_relay_cannot() {
    let allowed = std::process::Command::new("unshare")
        .args(["--mount", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        eprintln!("note: cannot make a mount namespace (unshare, root); skipping");
        return;
    }
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    std::fs::create_dir(&cfg).unwrap();
    let socket = dir.path().join("relay.sock");
    let path = write_config(
        &cfg,
        origin,
        &format!("control-socket = \"{}\"", socket.display()),
    );
    let read_only = format!(
        "mount --bind {d} {d} && mount -o remount,ro,bind {d} && exec {BIN} --config {p} serve",
        d = cfg.display(),
        p = path.display()
    );
    let mut relay = Command::new("unshare")
        .args(["--mount", "sh", "-c", &read_only])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(relay.stdout.take().unwrap()).lines();
    line_containing(&mut lines, "control socket at").await;
    let out = run_cli(&[
        "websocket",
        "--config",
        s(&path),
        "app.test",
        "--timeout",
        "9",
    ])
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("could not save the file") && out.stderr.contains("Read-only"),
        "{}",
        out.stderr
    );
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("timeout = 9 }")
    );
    line_containing(&mut lines, "reloaded (file changed)").await;
}

/// Reads `lines` up to one containing `needle`, within 5 s.
async fn line_containing(
    lines: &mut Lines<BufReader<tokio::process::ChildStdout>>,
    needle: &str,
) -> String {
    timeout(Duration::from_secs(5), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("the process ended before a line with {needle:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no line with {needle:?}"))
}

/// A relay in a PID namespace of its own (a container) says pid 1 in its
/// hello; the client takes the pid the kernel gives for the peer, which is
/// the one `/proc` and `kill` here go by. Needs `unshare` and the right to
/// make a PID namespace (root); skips otherwise.
#[tokio::test]
async fn a_relay_in_another_pid_namespace_is_known_by_its_pid_here() {
    let allowed = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        eprintln!("note: cannot make a PID namespace (unshare, root); skipping");
        return;
    }
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), origin, "");
    let mut relay = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", BIN, "--config"])
        .arg(&path)
        .arg("serve")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(relay.stdout.take().unwrap()).lines();
    line_containing(&mut lines, "control socket at").await;
    let client = ecdn_console::control::ControlClient::connect(&dir.path().join("run/relay.sock"))
        .await
        .unwrap();
    let here = client.relay_pid().expect("this namespace sees the relay");
    assert_ne!(
        here, client.hello.pid,
        "the relay's own pid is its namespace's"
    );
    let cmdline = std::fs::read(format!("/proc/{here}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("serve"),
        "/proc/{here} is the relay: {}",
        String::from_utf8_lossy(&cmdline)
    );
    let out = run_cli(&["stop", "--socket", s(&dir.path().join("run/relay.sock"))]).await;
    assert!(
        out.stdout.contains(&format!("(pid {here})")),
        "{}",
        out.stdout
    );
    timeout(Duration::from_secs(5), relay.wait())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_peer_of_another_uid_is_refused_and_the_refusal_is_an_event() {
    if std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: setpriv is not installed (util-linux); cannot run a client as nobody");
        return;
    }
    if !nix_is_root() {
        eprintln!("SKIP: setpriv needs root to run a client as nobody");
        return;
    }
    let mut relay = serve("").await;
    // Open the way through the file permissions so that only the peer
    // credential check stands between nobody and the relay.
    for dir in [relay.dir.path(), relay.socket.parent().unwrap()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&relay.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            BIN,
        ])
        .args(["sessions", "--socket", s(&relay.socket)])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not the relay's uid"), "{stderr}");
    relay.line_with("control refused uid=65534").await;
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// `sessions-changed` (what an attached console asks every second): every
/// live id each time, but a session's counters only when it started or
/// passed a frame since the previous answer.
#[tokio::test]
async fn sessions_changed_sends_only_what_moved_since_the_last_answer() {
    let mut relay = serve("").await;
    let mut busy = connect(relay.addr, "app.test").await;
    let _idle = connect(relay.addr, "other.test").await;
    relay.line_with("opened  #2").await;
    let (mut raw, _) = Raw::connect(&relay.socket).await;
    // The clock counts milliseconds and an answer's `clock` is rounded
    // down: what happened in the same millisecond shows again (by design).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let first = raw
        .ask(b"{\"request\":\"sessions-changed\"}\n")
        .await
        .unwrap();
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["ids"].as_array().unwrap().len(), 2);
    assert_eq!(first["changed"].as_array().unwrap().len(), 2, "{first}");
    // Nothing moved yet (the clock is in milliseconds: let one pass).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let ask = |clock: &serde_json::Value| {
        format!("{{\"request\":\"sessions-changed\",\"since\":{clock}}}\n")
    };
    let quiet = raw.ask(ask(&first["clock"]).as_bytes()).await.unwrap();
    assert_eq!(quiet["ids"].as_array().unwrap().len(), 2);
    assert!(quiet["changed"].as_array().unwrap().is_empty(), "{quiet}");
    // One message through the first session: only it comes back.
    tokio::time::sleep(Duration::from_millis(5)).await;
    busy.send(Message::text("hello")).await.unwrap();
    let _echo = futures_util::StreamExt::next(&mut busy).await;
    let moved = raw.ask(ask(&quiet["clock"]).as_bytes()).await.unwrap();
    let changed = moved["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{moved}");
    assert_eq!(changed[0]["domain"], "app.test");
    assert_eq!(changed[0]["to_origin"]["messages"], 1);
    // A client that knows the same sessions (count and id sum) gets no ids.
    let same = format!(
        "{{\"request\":\"sessions-changed\",\"since\":{},\"known\":{{\"count\":2,\"sum\":3}}}}\n",
        moved["clock"]
    );
    let short = raw.ask(same.as_bytes()).await.unwrap();
    assert!(short.get("ids").is_none(), "{short}");
    let stale = same.replace("\"sum\":3", "\"sum\":2");
    let full = raw.ask(stale.as_bytes()).await.unwrap();
    assert_eq!(full["ids"].as_array().unwrap().len(), 2, "{full}");
}

/// `sessions-changed` with `brief` (what `attach` asks): a session the
/// client was told of comes back as a brief row in `moved` — the same
/// counters as its full description, in an array — and one new since the
/// last answer comes in full.
#[tokio::test]
async fn sessions_changed_brief_rows_for_sessions_already_described() {
    let mut relay = serve("").await;
    let mut busy = connect(relay.addr, "app.test").await;
    relay.line_with("opened  #1").await;
    let (mut raw, _) = Raw::connect(&relay.socket).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let ask = |since: Option<&serde_json::Value>| match since {
        Some(clock) => {
            format!("{{\"request\":\"sessions-changed\",\"brief\":true,\"since\":{clock}}}\n")
        }
        None => "{\"request\":\"sessions-changed\",\"brief\":true}\n".to_string(),
    };
    let first = raw.ask(ask(None).as_bytes()).await.unwrap();
    assert_eq!(first["changed"].as_array().unwrap().len(), 1, "{first}");
    assert!(
        first.get("moved").is_none(),
        "nothing was described before: {first}"
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    busy.send(Message::text("hello")).await.unwrap();
    let _echo = futures_util::StreamExt::next(&mut busy).await;
    let _newcomer = connect(relay.addr, "other.test").await;
    relay.line_with("opened  #2").await;
    let next = raw
        .ask(ask(Some(&first["clock"])).as_bytes())
        .await
        .unwrap();
    let changed = next["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{next}");
    assert_eq!(changed[0]["id"], 2, "the new session in full: {next}");
    assert_eq!(changed[0]["domain"], "other.test");
    let moved = next["moved"].as_array().unwrap();
    assert_eq!(moved.len(), 1, "{next}");
    let row = moved[0].as_array().unwrap();
    assert_eq!(row[0], 1, "{next}");
    // The same counters as the full description (`sessions --json`).
    let full = raw.ask(b"{\"request\":\"sessions\"}\n").await.unwrap();
    let described = &full["sessions"][0];
    let flow = |f: &serde_json::Value| {
        (
            f["frames"].clone(),
            f["messages"].clone(),
            f["bytes"].clone(),
        )
    };
    let brief_flow = |f: &serde_json::Value| (f[0].clone(), f[1].clone(), f[2].clone());
    assert_eq!(
        brief_flow(&row[3]),
        flow(&described["to_origin"]),
        "{next} / {full}"
    );
    assert_eq!(
        brief_flow(&row[4]),
        flow(&described["to_client"]),
        "{next} / {full}"
    );
    assert_eq!(row[3][1], 1, "one message to the origin: {next}");
    assert_eq!(
        row[5],
        serde_json::json!(["origin-to-client", "text"]),
        "{next}"
    );
    let idle_ms = row[1].as_u64().unwrap();
    assert!(idle_ms < 5_000, "idle just reset: {next}");
    let remaining_ms = row[2].as_u64().unwrap();
    // app.test's limit is 100 s; both are rounded to the millisecond.
    assert!(
        remaining_ms > 95_000 && remaining_ms + idle_ms <= 100_001,
        "{next}"
    );
    // Without `brief`, the same question describes both in full.
    let again = raw
        .ask(
            format!(
                "{{\"request\":\"sessions-changed\",\"since\":{}}}\n",
                first["clock"]
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(again["changed"].as_array().unwrap().len(), 2, "{again}");
    assert!(again.get("moved").is_none(), "{again}");
}

/// A full `sessions-changed` in pages (an attached console's first fetch):
/// `limit` sessions a page, lowest ids first, `more` until the last; the
/// ids of every live session come with the first page only.
#[tokio::test]
async fn sessions_changed_pages_a_full_answer() {
    let mut relay = serve("").await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(relay.addr, "app.test").await);
    }
    relay.line_with("opened  #3").await;
    let (mut raw, _) = Raw::connect(&relay.socket).await;
    let ids = |answer: &serde_json::Value| -> Vec<u64> {
        answer["changed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_u64().unwrap())
            .collect()
    };
    let first = raw
        .ask(b"{\"request\":\"sessions-changed\",\"limit\":2}\n")
        .await
        .unwrap();
    assert_eq!(ids(&first), [1, 2], "{first}");
    assert_eq!(first["more"], true, "{first}");
    assert_eq!(first["ids"].as_array().unwrap().len(), 3, "{first}");
    let next = raw
        .ask(b"{\"request\":\"sessions-changed\",\"limit\":2,\"after\":2}\n")
        .await
        .unwrap();
    assert_eq!(ids(&next), [3], "{next}");
    assert!(next.get("more").is_none(), "the last page: {next}");
    assert!(next.get("ids").is_none(), "{next}");
    drop(clients);
}

/// What the relay's threads report beside its events reaches `serve`'s
/// stderr: here a peer that offers a late hand-over and then sends
/// nothing a hand-over is made of. The relay goes on serving.
#[tokio::test]
async fn a_failed_late_hand_over_is_a_warning_on_stderr() {
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), origin, "");
    let mut child = common::serve_command(&path, &[], &[])
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut addr, mut socket) = (None, None);
    while addr.is_none() || socket.is_none() {
        let line = timeout(Duration::from_secs(5), out.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("serve's start lines");
        if let Some(at) = line.split("listening on ").nth(1) {
            addr = at.split_whitespace().next().and_then(|a| a.parse().ok());
        }
        if let Some(at) = line.split("control socket at ").nth(1) {
            socket = Some(PathBuf::from(at.trim()));
        }
    }
    let (mut raw, _) = Raw::connect(&socket.unwrap()).await;
    let version = ecdn_console::handover::HANDOVER_VERSION;
    let answer = raw
        .ask(format!("{{\"request\":\"give\",\"version\":{version}}}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    raw.write.write_all(b"not a hand-over\n").await.unwrap();
    drop(raw);
    let warning = timeout(Duration::from_secs(5), async {
        loop {
            let line = err.next_line().await.unwrap().expect("a warning on stderr");
            if line.contains("a late hand-over failed") {
                return line;
            }
        }
    })
    .await
    .expect("the warning within 5 s");
    assert!(warning.contains("WARN"), "{warning}");
    let mut ws = connect(addr.unwrap(), "app.test").await;
    assert_echoes(&mut ws, "after").await;
}
