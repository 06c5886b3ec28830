//! End to end in a real terminal (tmux, 80×24): the relay outlives the
//! console (DESIGN §7). `attach` shows live sessions and detaching leaves
//! them alive; an in-process console quit with `k` (keep) hands its live
//! sessions to a background relay, where `attach` and `sessions --json`
//! find them; SIGHUP to an in-process console (a dropped SSH connection)
//! does the same. Through all of it the sessions keep echoing
//! sequence-numbered messages, none lost or reordered. Skips with a note
//! when tmux is not installed (CI installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod tmux;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tmux::{Tmux, shell_quote, tmux_available};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_ecdn-console");
const LIVE: usize = 4;

/// A config in a fresh directory: one domain to the echo origin, the
/// control socket at `relay.sock` beside it.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    socket: PathBuf,
}

async fn setup() -> Setup {
    let origin = common::echo_origin(Default::default()).await;
    let (dir, config, socket) = common::relay_dir("keep.test", origin);
    Setup {
        dir,
        config,
        socket,
    }
}

impl Setup {
    /// The shell command that runs the binary with `args`, its own log in
    /// the test's directory.
    fn command(&self, args: &str) -> String {
        format!(
            "ECDN_CONSOLE_LOG={} XDG_RUNTIME_DIR={} XDG_STATE_HOME={} {} {args}",
            shell_quote(&self.dir.path().join("console.log").display().to_string()),
            shell_quote(&self.dir.path().join("xdg").display().to_string()),
            // A background relay's log goes to the state directory: the test's own.
            shell_quote(&self.dir.path().join("state").display().to_string()),
            shell_quote(BIN),
        )
    }

    fn config_arg(&self) -> String {
        format!(
            "--config {}",
            shell_quote(&self.config.display().to_string())
        )
    }

    fn attach_arg(&self) -> String {
        format!(
            "attach --socket {}",
            shell_quote(&self.socket.display().to_string())
        )
    }
}

/// Stops whatever relay answers on the socket when the test ends (pass or
/// fail): the background relay a console leaves is not our child.
struct StopOnDrop(PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let pid = std::os::unix::net::UnixStream::connect(&self.0)
            .ok()
            .and_then(|s| {
                let mut line = String::new();
                std::io::BufRead::read_line(&mut std::io::BufReader::new(s), &mut line).ok()?;
                serde_json::from_str::<serde_json::Value>(&line).ok()?["pid"].as_u64()
            });
        let _ = std::process::Command::new(BIN)
            .args(["stop", "--socket"])
            .arg(&self.0)
            .output();
        if let Some(pid) = pid {
            std::thread::sleep(Duration::from_millis(500));
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .output();
        }
    }
}

/// The pid in the hello of the relay answering on `socket`, and its mode.
async fn hello(socket: &Path) -> (u64, String) {
    let stream = UnixStream::connect(socket).await.unwrap();
    let mut line = String::new();
    timeout(
        Duration::from_secs(5),
        BufReader::new(stream).read_line(&mut line),
    )
    .await
    .unwrap()
    .unwrap();
    let hello: serde_json::Value = serde_json::from_str(&line).unwrap();
    (
        hello["pid"].as_u64().unwrap(),
        hello["mode"].as_str().unwrap_or_default().to_string(),
    )
}

/// `sessions --json`: session ids by client address.
async fn session_ids(socket: &Path) -> HashMap<SocketAddr, u64> {
    common::sessions_by_client(socket)
        .await
        .into_iter()
        .map(|(client, s)| (client, s["id"].as_u64().unwrap()))
        .collect()
}

/// `LIVE` sessions echoing sequence-numbered messages every 50 ms; each
/// task fails on a wrong, missing or late echo, a close or an error.
struct Streams {
    stop: CancellationToken,
    checked: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    locals: Vec<SocketAddr>,
}

async fn streams(relay: SocketAddr) -> Streams {
    let stop = CancellationToken::new();
    let checked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut locals = Vec::new();
    for session in 0..LIVE {
        let mut ws = common::connect(relay, "keep.test").await;
        locals.push(ws.get_ref().local_addr().unwrap());
        let (stop, checked) = (stop.clone(), checked.clone());
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while !stop.is_cancelled() {
                let m = Message::text(format!("{session}:{seq}"));
                ws.send(m.clone())
                    .await
                    .unwrap_or_else(|e| panic!("session {session}: send #{seq}: {e}"));
                match timeout(Duration::from_secs(5), ws.next()).await {
                    Ok(Some(Ok(echo))) => {
                        assert_eq!(echo, m, "session {session}: lost or reordered")
                    }
                    other => panic!("session {session}: no echo of #{seq}: {other:?}"),
                }
                seq += 1;
                checked.fetch_add(1, Relaxed);
                sleep(Duration::from_millis(50)).await;
            }
            ws.close(None).await.unwrap();
        }));
    }
    Streams {
        stop,
        checked,
        tasks,
        locals,
    }
}

impl Streams {
    /// Every session echoed again within the next second.
    async fn assert_alive(&self, what: &str) {
        let before = self.checked.load(Relaxed);
        sleep(Duration::from_secs(1)).await;
        let after = self.checked.load(Relaxed);
        assert!(
            after >= before + LIVE as u64 * 4,
            "{what}: the sessions stopped echoing ({before} → {after})"
        );
        for t in &self.tasks {
            assert!(!t.is_finished(), "{what}: a session's client failed");
        }
    }

    /// `ids` lists exactly these sessions.
    fn assert_listed(&self, ids: &HashMap<SocketAddr, u64>) {
        assert_eq!(ids.len(), LIVE, "{ids:?}");
        for local in &self.locals {
            assert!(ids.contains_key(local), "{local} not in {ids:?}");
        }
    }

    async fn end(self) {
        self.stop.cancel();
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}

fn relay_addr(screen: &str) -> SocketAddr {
    let start = screen
        .find("relay 127.0.0.1:")
        .unwrap_or_else(|| panic!("relay address in the header:\n{screen}"))
        + 6;
    screen[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect::<String>()
        .parse()
        .unwrap()
}

/// Attaches in tmux, checks Live Sessions lists `LIVE` sessions of
/// `keep.test` from relay `pid`, then detaches with `q` (back to the
/// menu) and `q` (quit).
fn attach_and_detach(setup: &Setup, name: &str, pid: u64) {
    let tmux = Tmux::start(
        format!("ecdn-handover-{name}-{}", std::process::id()),
        &setup.command(&setup.attach_arg()),
    );
    let screen = tmux.wait_for("attached to relay 127.0.0.1:");
    assert!(screen.contains(&format!("pid {pid}")), "{screen}");
    tmux.keys(&["3"]);
    tmux.wait_for(&format!("{LIVE} live"));
    let screen = tmux.wait_for("keep.test");
    assert!(screen.contains("300 s"), "{screen}");
    tmux.keys(&["q", "q"]);
    tmux.wait_until_gone();
}

/// The in-process console in tmux, kept on screen after it exits (what it
/// prints on leaving is part of the contract); its relay address.
fn in_process_console(setup: &Setup, name: &str) -> (Tmux, SocketAddr) {
    let command = format!(
        "{}; echo \"console exited $?\"; sleep 60",
        setup.command(&setup.config_arg())
    );
    let tmux = Tmux::start(
        format!("ecdn-handover-{name}-{}", std::process::id()),
        &format!("sh -c {}", shell_quote(&command)),
    );
    let screen = tmux.wait_for("Overview");
    (tmux, relay_addr(&screen))
}

/// The console's pid, from the hello of its in-process relay.
async fn console_pid(setup: &Setup) -> u64 {
    let (pid, mode) = hello(&setup.socket).await;
    assert_eq!(
        mode, "console",
        "the in-process relay answers on the socket"
    );
    pid
}

/// After the console handed its sessions over: a background `serve` (not
/// the console) answers on the same socket with the same session ids.
async fn assert_kept_by_background_relay(
    setup: &Setup,
    console: u64,
    ids: &HashMap<SocketAddr, u64>,
) -> u64 {
    let (pid, mode) = timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(stream) = UnixStream::connect(&setup.socket).await {
                drop(stream);
                let (pid, mode) = hello(&setup.socket).await;
                if pid != console {
                    return (pid, mode);
                }
            }
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a background relay answers on the control socket");
    assert_eq!(mode, "serve", "the background relay is a `serve`");
    assert_eq!(
        &session_ids(&setup.socket).await,
        ids,
        "the same session ids"
    );
    pid
}

fn console_alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

async fn wait_console_gone(pid: u64) {
    timeout(Duration::from_secs(10), async {
        while console_alive(pid) {
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the console (pid {pid}) did not exit"));
}

/// `attach` on a running `serve` with streaming sessions: Live Sessions
/// lists them; `q`, `q` detaches and they keep echoing. After a
/// `serve --takeover` an attached console sees the same sessions on the
/// new process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_shows_live_sessions_and_detaching_with_q_leaves_them_alive() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end hand-over test");
        return;
    }
    let setup = setup().await;
    let _stop = StopOnDrop(setup.socket.clone());
    let serve = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&setup.config)
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut serve = serve;
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let relay: SocketAddr = first
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let streams = streams(relay).await;
    let ids = session_ids(&setup.socket).await;
    streams.assert_listed(&ids);

    attach_and_detach(&setup, "attach", u64::from(serve.id().unwrap()));
    streams.assert_alive("after detaching").await;
    assert!(
        serve.try_wait().unwrap().is_none(),
        "the relay keeps running"
    );

    // The relay restarted under the sessions: attach finds them on the new one.
    let mut new = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&setup.config)
        .args(["serve", "--takeover"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = timeout(Duration::from_secs(15), serve.wait())
        .await
        .expect("the old relay exits after the hand-over")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(session_ids(&setup.socket).await, ids);
    attach_and_detach(&setup, "attach-new", u64::from(new.id().unwrap()));
    streams
        .assert_alive("after the takeover and a second attach")
        .await;
    assert!(new.try_wait().unwrap().is_none());
    streams.end().await;
}

/// The in-process console with live sessions: `q` asks, the question
/// offers `k`; `k` hands the sessions to a detached `serve --takeover`
/// logging to a file, and says how to attach again. The sessions keep
/// echoing, `sessions --json` shows the same ids from the background relay,
/// and `attach` shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitting_with_k_keeps_the_sessions_in_a_background_relay() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end hand-over test");
        return;
    }
    let setup = setup().await;
    let _stop = StopOnDrop(setup.socket.clone());
    let (tmux, relay) = in_process_console(&setup, "keep");
    let streams = streams(relay).await;
    tmux.wait_for(&format!("{LIVE} live"));
    let console = console_pid(&setup).await;
    let ids = session_ids(&setup.socket).await;
    streams.assert_listed(&ids);

    tmux.keys(&["q"]);
    let question = tmux.wait_for("╔ Quit");
    assert!(
        question.contains("k ") && question.to_lowercase().contains("keep"),
        "the quit question offers k (keep):\n{question}"
    );
    tmux.keys(&["k"]);
    tmux.wait_for("console exited 0");
    // Joined: a long path the terminal wrapped is one word again.
    let after = String::from_utf8_lossy(
        &tmux
            .cmd(&["capture-pane", "-p", "-J", "-t", "console"])
            .stdout,
    )
    .into_owned();
    wait_console_gone(console).await;
    let background = assert_kept_by_background_relay(&setup, console, &ids).await;
    assert!(console_alive(background), "the background relay runs");

    // The console said where the background relay logs and how to come back.
    let told = format!("{question}\n{after}");
    assert!(
        told.contains("ecdn-console attach"),
        "no attach command shown:\n{told}"
    );
    let log = log_path_in(&told)
        .unwrap_or_else(|| panic!("no log path of the background relay shown:\n{told}"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("took over") && text.contains(&format!("from pid {console}")),
        "{}: {text}",
        log.display()
    );

    streams.assert_alive("after quitting with k").await;
    attach_and_detach(&setup, "keep-attach", background);
    streams
        .assert_alive("after attaching to the background relay")
        .await;
    drop(tmux);
    streams.end().await;
}

/// SIGHUP to an in-process console (its SSH connection dropped): the live
/// sessions move to a background relay, as with `k`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_to_an_in_process_console_keeps_its_sessions() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end hand-over test");
        return;
    }
    let setup = setup().await;
    let _stop = StopOnDrop(setup.socket.clone());
    let (tmux, relay) = in_process_console(&setup, "hup");
    let streams = streams(relay).await;
    tmux.wait_for(&format!("{LIVE} live"));
    let console = console_pid(&setup).await;
    let ids = session_ids(&setup.socket).await;
    streams.assert_listed(&ids);

    let status = std::process::Command::new("kill")
        .args(["-HUP", &console.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_console_gone(console).await;
    let background = assert_kept_by_background_relay(&setup, console, &ids).await;
    streams.assert_alive("after SIGHUP to the console").await;
    attach_and_detach(&setup, "hup-attach", background);
    drop(tmux);
    streams.end().await;
}

/// The first existing file named `*.log` among the words of `text`.
fn log_path_in(text: &str) -> Option<PathBuf> {
    text.split(|c: char| c.is_whitespace() || "`'\"()│║,;".contains(c))
        .map(|w| w.trim_end_matches(['.', ':']))
        .filter(|w| w.ends_with(".log") && w.starts_with('/') && !w.ends_with("/console.log"))
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// What keeps sessions is a choice: `y` at the quit question, and SIGTERM
/// to an in-process console, still close them (1001 `relay shutting down`)
/// and leave no relay behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitting_with_y_or_sigterm_closes_the_sessions_and_keeps_no_relay() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end hand-over test");
        return;
    }
    for how in ["y", "TERM"] {
        let setup = setup().await;
        let _stop = StopOnDrop(setup.socket.clone());
        let (tmux, relay) = in_process_console(&setup, &format!("close-{how}"));
        let mut clients = Vec::new();
        for _ in 0..2 {
            clients.push(common::connect(relay, "keep.test").await);
        }
        tmux.wait_for("2 live");
        let console = console_pid(&setup).await;
        if how == "y" {
            tmux.keys(&["q"]);
            tmux.wait_for("╔ Quit");
            tmux.keys(&["y"]);
        } else {
            let status = std::process::Command::new("kill")
                .args(["-TERM", &console.to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
        for client in &mut clients {
            let frame = timeout(Duration::from_secs(10), common::next_close(client))
                .await
                .unwrap_or_else(|_| panic!("{how}: no close within 10 s"));
            assert_eq!(common::code(&frame), Some(1001), "{how}");
            assert_eq!(common::reason(&frame), "relay shutting down", "{how}");
        }
        wait_console_gone(console).await;
        let out = tokio::process::Command::new(BIN)
            .args(["sessions", "--socket"])
            .arg(&setup.socket)
            .output()
            .await
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(3),
            "{how}: no relay is left behind: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        drop(tmux);
    }
}
