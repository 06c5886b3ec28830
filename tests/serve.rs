//! `ecdn-console serve` as a real process: reloads and signals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use ecdn_console::origin::OriginOptions;
use futures_util::SinkExt;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;

fn config_text(origin: std::net::SocketAddr, timeout_secs: u32) -> String {
    format!(
        "# operator's comment\n[relay]\nlisten = \"127.0.0.1:0\"\n\n[[domain]]\nname = \"app.test\"\n\
         acceleration = \"full-site\"\norigins = [\"{origin}\"]\nwebsocket = {{ switch = \"on\", timeout = {timeout_secs} }}\n"
    )
}

struct Serve {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    addr: std::net::SocketAddr,
}

impl Serve {
    async fn start(path: &std::path::Path, extra: &[&str]) -> Serve {
        Serve::spawn(&mut Self::command(path, extra)).await
    }

    fn command(path: &std::path::Path, extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ecdn-console"));
        command
            .arg("--config")
            .arg(path)
            .arg("serve")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        command
    }

    /// Runs `command`, waiting for its first line (where it listens).
    async fn spawn(command: &mut Command) -> Serve {
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().expect("a first line");
        let addr = first
            .split_whitespace()
            .chain(first.split('"'))
            .find_map(|w| w.trim_end_matches(',').parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        Serve { child, lines, addr }
    }

    /// The next line containing `needle`, within 5 s.
    async fn line_with(&mut self, needle: &str) -> String {
        timeout(Duration::from_secs(5), async {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("serve is still running");
                if line.contains(needle) {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no line with {needle:?}"))
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// The echo origin, a config file with a `timeout_secs` domain, and `serve`
/// running on it. Keep the returned directory alive for the test's length.
async fn serve_echo(
    timeout_secs: u32,
    extra: &[&str],
) -> (
    std::net::SocketAddr,
    tempfile::TempDir,
    std::path::PathBuf,
    Serve,
) {
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, config_text(origin, timeout_secs)).unwrap();
    let serve = Serve::start(&path, extra).await;
    (origin, dir, path, serve)
}

#[tokio::test]
async fn sighup_reload_changes_a_live_sessions_deadline() {
    let (origin, _dir, path, mut serve) = serve_echo(60, &[]).await;
    let mut client = connect(serve.addr, "app.test").await;
    serve.line_with("opened").await;

    // Write the new file where the watcher cannot tell (same size), then SIGHUP.
    std::fs::write(
        &path,
        config_text(origin, 1).replace("timeout = 1 }", "timeout = 1  }"),
    )
    .unwrap();
    serve.signal("HUP");
    serve.line_with("reloaded").await;
    let close = timeout(Duration::from_secs(3), next_close(&mut client))
        .await
        .unwrap();
    assert_eq!(reason(&close), "idle timeout (1 s)");
    let closed = serve.line_with("closed").await;
    assert!(closed.contains("idle timeout (1 s)"), "{closed}");
}

#[tokio::test]
async fn a_broken_file_on_reload_keeps_the_old_config() {
    let (origin, _dir, path, mut serve) = serve_echo(1, &[]).await;
    std::fs::write(&path, config_text(origin, 301)).unwrap();
    serve.signal("HUP");
    let rejected = serve.line_with("rejected").await;
    assert!(rejected.contains("301"), "{rejected}");
    // The old 1 s timeout is still in force for new sessions.
    let mut client = connect(serve.addr, "app.test").await;
    let close = timeout(Duration::from_secs(3), next_close(&mut client))
        .await
        .unwrap();
    assert_eq!(reason(&close), "idle timeout (1 s)");
    // The broken file is left as the operator wrote it.
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("timeout = 301")
    );
}

#[tokio::test]
async fn a_changed_file_is_reloaded_without_a_signal() {
    let (origin, _dir, path, mut serve) = serve_echo(60, &["--log-format", "json"]).await;
    let mut client = connect(serve.addr, "app.test").await;
    std::fs::write(&path, config_text(origin, 2)).unwrap();
    let applied = serve.line_with("config-applied").await;
    let json: serde_json::Value = serde_json::from_str(&applied).unwrap();
    assert!(json["detail"].as_str().unwrap().contains("file changed"));
    let close = timeout(Duration::from_secs(4), next_close(&mut client))
        .await
        .unwrap();
    assert_eq!(reason(&close), "idle timeout (2 s)");
    let closed: serde_json::Value =
        serde_json::from_str(&serve.line_with("\"closed\"").await).unwrap();
    assert_eq!(closed["cause"]["kind"], "idle-timeout");
    assert_eq!(closed["to_client"]["code"], 1001);
}

/// Read system calls the process has made so far (`/proc/PID/io`).
fn reads_of(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("syscr: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no syscr in {io}"))
}

/// An idle relay does not read its config again and again to find out
/// whether it changed (it used to, ten times a second): the kernel tells it
/// (inotify). A change is still taken within the quiet period and a poll.
#[tokio::test]
async fn an_idle_relay_reads_nothing_until_its_file_changes() {
    let (origin, dir, path, mut serve) = serve_echo(60, &[]).await;
    let pid = serve.child.id().unwrap();
    // A log kept open beside the config, as `serve > serve.log` would.
    let mut log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = reads_of(pid);
    for _ in 0..10 {
        std::io::Write::write_all(&mut log, b"a line of the relay's log\n").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reads = reads_of(pid) - before;
    assert!(
        reads <= 2,
        "an idle relay made {reads} read calls in a second (its config polled?)"
    );

    let written = std::time::Instant::now();
    std::fs::write(&path, config_text(origin, 2)).unwrap();
    serve.line_with("reloaded").await;
    assert!(
        written.elapsed() < Duration::from_secs(2),
        "the change was taken {:?} after it was written",
        written.elapsed()
    );
}

#[tokio::test]
async fn sigterm_closes_sessions_with_1001_and_exits_zero() {
    let (_origin, _dir, _path, mut serve) = serve_echo(60, &[]).await;
    let mut client = connect(serve.addr, "app.test").await;
    serve.line_with("opened").await;
    serve.signal("TERM");
    let close = timeout(Duration::from_secs(3), next_close(&mut client))
        .await
        .unwrap();
    assert_eq!(code(&close), Some(1001));
    assert_eq!(reason(&close), "relay shutting down");
    serve.line_with("relay stopped").await;
    let status = timeout(Duration::from_secs(5), serve.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_file_truncated_then_written_a_second_later_never_drops_live_sessions() {
    // What `open(f, 'w')` followed by a slow write does: for a second the
    // file is empty. A relay that loaded it would close every session.
    let (origin, _dir, path, mut serve) = serve_echo(60, &[]).await;
    let mut client = connect(serve.addr, "app.test").await;
    serve.line_with("opened").await;
    std::fs::File::create(&path).unwrap(); // truncates
    let refused = serve.line_with("rejected").await;
    assert!(refused.contains("is empty"), "{refused}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    std::fs::write(&path, config_text(origin, 50)).unwrap();
    serve.line_with("reloaded").await;
    // The session lived through it, and new clients are still routed.
    client
        .send(tokio_tungstenite::tungstenite::Message::text("still here"))
        .await
        .unwrap();
    assert_eq!(
        futures_util::StreamExt::next(&mut client)
            .await
            .unwrap()
            .unwrap(),
        tokio_tungstenite::tungstenite::Message::text("still here")
    );
    let _second = connect(serve.addr, "app.test").await;
}

#[tokio::test]
async fn sigterm_with_two_workers_closes_every_workers_sessions() {
    let (_origin, _dir, _path, mut serve) = serve_echo(60, &["--workers", "2"]).await;
    // 16 sessions: the kernel spreads them over both workers' listeners
    // (all on one: 2 in 65,536).
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(connect(serve.addr, "app.test").await);
        serve.line_with("opened").await;
    }
    serve.signal("TERM");
    for client in clients.iter_mut() {
        let close = timeout(Duration::from_secs(3), next_close(client))
            .await
            .unwrap();
        assert_eq!(code(&close), Some(1001));
        assert_eq!(reason(&close), "relay shutting down");
    }
    serve.line_with("relay stopped").await;
    let status = timeout(Duration::from_secs(5), serve.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn workers_out_of_range_is_refused_with_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, config_text("127.0.0.1:9".parse().unwrap(), 60)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ecdn-console"))
        .arg("--config")
        .arg(&path)
        .args(["serve", "--workers", "0"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("workers = 0 is out of range"), "{stderr}");
    assert!(stderr.contains("1 to 1024"), "{stderr}");
}

#[tokio::test]
async fn a_low_open_files_soft_limit_is_raised_to_the_hard_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // What a shell usually gives (1024) would do as well; lower is clearer.
    const LOW: u64 = 256;
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if hard <= LOW {
        eprintln!("note: the open-files hard limit ({hard}) is not above {LOW}; skipping");
        return;
    }
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, config_text(origin, 60)).unwrap();
    let mut command = Serve::command(&path, &[]);
    // SAFETY: setrlimit is async-signal-safe, and the closure allocates nothing.
    unsafe {
        command.pre_exec(move || {
            setrlimit(Resource::RLIMIT_NOFILE, LOW, hard).map_err(std::io::Error::from)
        });
    }
    let mut serve = Serve::spawn(&mut command).await;
    let said = serve.line_with("open files limit").await;
    assert!(
        said.ends_with(&format!("open files limit raised to {hard} (was {LOW})")),
        "{said}"
    );

    let pid = serve.child.id().unwrap();
    let hard = hard.to_string();
    assert_eq!(
        common::open_files_limit(pid),
        [hard.clone(), hard],
        "soft, hard"
    );
}

/// A second `serve` of a file whose relay already runs is told so, with
/// the relay's pid and the two ways on (takeover, attach) — not only that
/// the address is in use.
#[tokio::test]
async fn a_second_serve_of_the_same_file_names_the_running_relay() {
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    // A fixed port, as in production: that is what the second one cannot bind.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = config_text(origin, 100).replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&path, text).unwrap();
    let first = Serve::start(&path, &[]).await;
    let second = Serve::command(&path, &[])
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    let pid = first.child.id().unwrap();
    for needle in [
        "already runs on 127.0.0.1:".to_string(),
        format!("pid {pid}, ecdn-console serve"),
        "serve --takeover".to_string(),
        "ecdn-console attach".to_string(),
    ] {
        assert!(stderr.contains(&needle), "{needle:?} in {stderr}");
    }
}

/// `serve | grep -m1 listening`, `serve | tee log` with tee killed: the
/// reader of its event lines goes away. The relay carries on — its
/// sessions are not cut over a log — says so once on stderr, and keeps its
/// events on the control socket.
#[tokio::test]
async fn a_closed_stdout_stops_the_event_lines_not_the_relay() {
    use futures_util::StreamExt;
    use tokio::io::AsyncReadExt;
    let origin = echo_origin(OriginOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, config_text(origin, 100)).unwrap();
    let mut command = Serve::command(&path, &[]);
    command
        .stderr(Stdio::piped())
        .env("XDG_RUNTIME_DIR", dir.path());
    let mut serve = Serve::spawn(&mut command).await;
    let control = serve.line_with("control socket at ").await;
    let socket = control
        .split("control socket at ")
        .nth(1)
        .unwrap()
        .to_string();
    let mut stderr = serve.child.stderr.take().unwrap();
    // The reader goes: the next event line meets a broken pipe.
    let Serve {
        mut child,
        lines,
        addr,
    } = serve;
    drop(lines);

    for round in 0..2 {
        let mut client = connect(addr, "app.test").await;
        client
            .send(tungstenite::Message::Text(format!("round {round}").into()))
            .await
            .unwrap();
        let echo = timeout(Duration::from_secs(5), client.next())
            .await
            .expect("the relay still relays")
            .unwrap()
            .unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), format!("round {round}"));
    }
    let mut said = Vec::new();
    let note = "stopped printing events: stdout failed";
    timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&said).contains(note) {
            let n = stderr.read(&mut buf).await.unwrap();
            assert!(n > 0, "stderr ended: {}", String::from_utf8_lossy(&said));
            said.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no note on stderr: {}", String::from_utf8_lossy(&said)));
    assert!(
        child.try_wait().unwrap().is_none(),
        "serve is still running"
    );
    // The events are still there for whoever asks.
    let events = std::process::Command::new(env!("CARGO_BIN_EXE_ecdn-console"))
        .args(["events", "--socket", &socket])
        .output()
        .unwrap();
    let events = String::from_utf8_lossy(&events.stdout);
    assert_eq!(events.matches(" opened  #").count(), 2, "{events}");

    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = timeout(Duration::from_secs(5), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&said).matches(note).count() + rest.matches(note).count(),
        1,
        "said once"
    );
}
