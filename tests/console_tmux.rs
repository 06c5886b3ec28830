//! End to end: the real binary in a real terminal (tmux, 80×24). Walks the
//! console's steps to change a domain's WebSocket timeout, then checks the
//! file on disk and that a session through the relay is cut at the new
//! timeout. Skips with a note when tmux is not installed (CI installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod tmux;

use tmux::{Tmux, shell_quote, tmux_available};

use std::path::Path;
use std::time::{Duration, Instant};

/// A tmux server of our own (its own socket), killed on drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_the_timeout_from_the_console_and_watch_it_cut_a_session() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end console test");
        return;
    }
    let origin = common::echo_origin(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("console.toml");
    let original = format!(
        "# e2e: this comment must survive the save\n\
         [relay]\n\
         listen = \"127.0.0.1:0\"   # any free loopback port\n\
         \n\
         [[domain]]\n\
         name = \"e2e.test\"   # the domain under test\n\
         acceleration = \"full-site\"\n\
         origins = [\"{origin}\"]\n\
         websocket = {{ switch = \"on\", timeout = 100 }}   # the console sets 2\n"
    );
    std::fs::write(&config_path, &original).unwrap();

    let command = console_command(
        dir.path(),
        &["--config", &config_path.display().to_string()],
    );
    let tmux = Tmux::start(format!("ecdn-e2e-{}", std::process::id()), &command);

    // The header shows where the relay listens (the config asked for :0).
    let screen = tmux.wait_for("Overview");
    let relay = relay_addr(&screen);

    // Menu → Domain Management → the domain → Manage → Advanced → edit.
    tmux.keys(&["j"]);
    tmux.wait_for("▸Domain Management");
    tmux.keys(&["Enter"]);
    tmux.wait_for("e2e.test");
    tmux.keys(&["Enter"]);
    tmux.wait_for("Basic");
    tmux.keys(&["Tab", "Tab"]);
    tmux.wait_for("WebSocket timeout");
    tmux.wait_for("100 s");
    tmux.keys(&["e"]);
    tmux.wait_for("Draft");
    // The first digit replaces the shown value; the slider follows.
    tmux.keys(&["2"]);
    tmux.wait_for("Draft  On · 2 s");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("Saved");
    assert!(screen.contains("timeout 2 s"), "{screen}");

    // The file has the new value, and every comment is still there.
    let saved = std::fs::read_to_string(&config_path).unwrap();
    assert!(saved.contains("timeout = 2 }"), "{saved}");
    for comment in [
        "# e2e: this comment must survive the save",
        "# any free loopback port",
        "# the domain under test",
        "# the console sets 2",
    ] {
        assert!(saved.contains(comment), "lost {comment:?}:\n{saved}");
    }

    // A silent session through the relay is cut after 2 s, not 100 s.
    let started = Instant::now();
    let mut client = common::connect(relay, "e2e.test").await;
    let close = tokio::time::timeout(Duration::from_secs(10), common::next_close(&mut client))
        .await
        .expect("the relay closes an idle session at the new timeout");
    let waited = started.elapsed();
    let frame = close.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1001);
    assert!(
        frame.reason.contains("idle timeout (2 s)"),
        "{}",
        frame.reason
    );
    assert!(
        waited >= Duration::from_millis(1800) && waited < Duration::from_secs(5),
        "cut after {waited:?}"
    );

    // The Event Log shows it; then quit (nothing live: no question).
    drop(client);
    tmux.keys(&["Escape", "Escape", "4"]);
    tmux.wait_for("idle timeout (2 s)");
    tmux.keys(&["C-c"]);
    tmux.wait_until_gone();
    assert!(Path::new(&config_path).exists());
}

/// `ecdn-console demo` at 80×24: the banner, the synthetic clients' live
/// sessions, and within 25 s (the demo's first cut is at 15 s) an idle
/// timeout in the Event Log; quitting removes the temporary config.
#[test]
fn the_demo_shows_its_banner_sessions_and_a_timeout_within_seconds() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end demo test");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // TMPDIR: the demo's temporary directory lands where the test can see it.
    let command = format!(
        "TMPDIR={} {} demo",
        shell_quote(&tmp.path().display().to_string()),
        shell_quote(env!("CARGO_BIN_EXE_ecdn-console")),
    );
    let tmux = Tmux::start(format!("ecdn-e2e-demo-{}", std::process::id()), &command);
    let screen = tmux.wait_for("DEMO · synthetic clients");
    assert!(screen.contains("temporary config copy"), "{screen}");
    let demo_dirs = || {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("ecdn-console-demo-")
            })
            .count()
    };
    assert_eq!(
        demo_dirs(),
        1,
        "the demo config lives in a temporary directory"
    );

    // Live Sessions: all eight synthetic clients.
    tmux.keys(&["3"]);
    tmux.wait_for("8 live");
    let screen = tmux.wait_for("stream.demo.test");
    assert!(screen.contains("chat.demo.test"), "{screen}");

    // Event Log: the switch-off and dynamic domains' clients are cut at 15 s.
    tmux.keys(&["Escape"]);
    tmux.wait_for("▸Live Sessions");
    tmux.keys(&["4"]);
    tmux.wait_for_within("idle timeout (15 s)", Duration::from_secs(25));

    tmux.keys(&["C-c"]);
    // The demo's clients and origins live in its own process: the question
    // says so and offers only to close them.
    let question = tmux.wait_for("Quit with");
    assert!(
        !question.contains("Keep them running") && !question.contains("k keep"),
        "the demo offers to keep its sessions:\n{question}"
    );
    tmux.keys(&["k"]);
    let still = tmux.wait_for("Quit with");
    assert!(!still.contains("Could not keep"), "{still}");
    tmux.keys(&["y"]);
    tmux.wait_until_gone();
    assert_eq!(demo_dirs(), 0, "the temporary config is removed on quit");
}

/// `attach` on a running `serve`: Live Sessions shows its session, quitting
/// detaches without a question and the session lives on; plain
/// `ecdn-console --config F` attaches too when F's relay runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_shows_live_sessions_and_detaching_leaves_them_alive() {
    use futures_util::{SinkExt, StreamExt};
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end attach test");
        return;
    }
    let origin = common::echo_origin(Default::default()).await;
    let (dir, config_path, socket) = common::relay_dir("attach.test", origin);
    let (mut serve, relay) = serve(&config_path).await;
    let mut client = common::connect(relay, "attach.test").await;
    client
        .send(tungstenite::Message::Text("hello".into()))
        .await
        .unwrap();
    client.next().await.unwrap().unwrap();

    for (name, args) in [
        (
            "attach",
            format!(
                "attach --socket {}",
                shell_quote(&socket.display().to_string())
            ),
        ),
        (
            "plain",
            format!(
                "--config {}",
                shell_quote(&config_path.display().to_string())
            ),
        ),
    ] {
        let command = format!(
            "ECDN_CONSOLE_LOG={} {} {args}",
            shell_quote(&dir.path().join("console.log").display().to_string()),
            shell_quote(env!("CARGO_BIN_EXE_ecdn-console")),
        );
        let tmux = Tmux::start(format!("ecdn-e2e-{name}-{}", std::process::id()), &command);
        tmux.wait_for("attached to relay 127.0.0.1:");
        tmux.keys(&["3"]);
        tmux.wait_for("1 live");
        let screen = tmux.wait_for("attach.test");
        assert!(screen.contains("300 s"), "{screen}");
        // Messages after the first fetch: the relay sends only what moved
        // (a brief row), and the row's counters follow.
        let before = messages_on(&screen);
        for _ in 0..3 {
            client
                .send(tungstenite::Message::Text("more".into()))
                .await
                .unwrap();
            client.next().await.unwrap().unwrap();
        }
        let moved = format!("{}/{}", before + 3, before + 3);
        tmux.wait_for(&moved);
        // Quitting detaches at once: no question about closing sessions.
        tmux.keys(&["C-c"]);
        tmux.wait_until_gone();

        // The session is still relayed.
        client
            .send(tungstenite::Message::Text(name.into()))
            .await
            .unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("the session outlives the attached console")
            .unwrap()
            .unwrap();
        assert_eq!(echo, tungstenite::Message::Text(name.into()));
    }
    assert!(
        serve.try_wait().unwrap().is_none(),
        "the relay keeps running"
    );
}

/// The messages each way on the one session row of `screen` (`msgs ↑/↓`).
fn messages_on(screen: &str) -> u64 {
    let row = screen
        .lines()
        .find(|l| l.contains("#1 "))
        .unwrap_or_else(|| panic!("a row for session #1: {screen}"));
    let pair = row
        .split_whitespace()
        .find_map(|w| {
            let (up, down) = w.split_once('/')?;
            Some((up.parse::<u64>().ok()?, down.parse::<u64>().ok()?))
        })
        .unwrap_or_else(|| panic!("a msgs ↑/↓ cell in {row:?}"));
    assert_eq!(pair.0, pair.1, "an echo: as many each way, {row:?}");
    pair.0
}

/// `ecdn-console serve` of `config_path`, its output drained; its address.
async fn serve(config_path: &Path) -> (tokio::process::Child, std::net::SocketAddr) {
    serve_under(&[], config_path).await
}

/// `serve` run by `wrapper` (`taskset -c 0`, …), as [`serve`].
async fn serve_under(
    wrapper: &[String],
    config_path: &Path,
) -> (tokio::process::Child, std::net::SocketAddr) {
    use tokio::io::AsyncBufReadExt;
    let bin = env!("CARGO_BIN_EXE_ecdn-console").to_string();
    let (program, args) = match wrapper {
        [program, args @ ..] => (program.clone(), [args, &[bin]].concat()),
        [] => (bin, Vec::new()),
    };
    let mut serve = tokio::process::Command::new(program)
        .args(args)
        .arg("--config")
        .arg(config_path)
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(serve.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let relay = first
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap();
    // Keep reading serve's output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (serve, relay)
}

/// A relay pinned to a CPU (`taskset`, as systemd's `CPUAffinity=` would)
/// leaves the others to an attached console: it moves off the CPU of the
/// relay's workers, every thread of it, so its drawing never competes with
/// their frames; after a takeover by a relay pinned to the console's CPU
/// it moves again. Needs `taskset` (util-linux) and two CPUs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_console_keeps_off_the_cpus_of_a_pinned_relay() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end attach test");
        return;
    }
    let mine = cpus_allowed(Path::new("/proc/self/status"));
    if mine.len() < 2
        || std::process::Command::new("taskset")
            .arg("-V")
            .output()
            .is_err()
    {
        eprintln!("note: needs two CPUs and taskset (util-linux); skipping the CPU test");
        return;
    }
    let relay_cpu = mine[0];
    let origin = common::echo_origin(Default::default()).await;
    let (dir, config_path, socket) = common::relay_dir("pinned.test", origin);
    let taskset = ["taskset", "-c", &relay_cpu.to_string()].map(String::from);
    let (mut serve, _relay) = serve_under(&taskset, &config_path).await;
    let command = console_command(
        dir.path(),
        &["attach", "--socket", &socket.display().to_string()],
    );
    let tmux = Tmux::start(format!("ecdn-e2e-cpus-{}", std::process::id()), &command);
    tmux.wait_for("attached to relay 127.0.0.1:");
    let console = pid_of_attach(&socket).expect("the attached console's process");
    let threads = thread_cpus(console);
    assert!(threads.len() > 1, "a console has more than one thread");
    // Every thread, on the rest of the machine.
    for (tid, cpus) in &threads {
        assert_eq!(
            cpus,
            &mine[1..],
            "console thread {tid:?}: its CPUs, with the relay on CPU {relay_cpu}"
        );
    }
    // A takeover by a relay pinned to another CPU (the console's, now):
    // the console follows it and chooses again from the CPUs it started
    // on, rather than staying beside the new relay's workers.
    let new_cpu = *mine.last().unwrap();
    let mut new = tokio::process::Command::new("taskset")
        .args([
            "-c",
            &new_cpu.to_string(),
            env!("CARGO_BIN_EXE_ecdn-console"),
        ])
        .arg("--config")
        .arg(&config_path)
        .args(["serve", "--takeover"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(15), serve.wait())
        .await
        .expect("the old relay exits after the hand-over")
        .unwrap();
    tmux.wait_for("Attached again");
    let expected: Vec<_> = mine.iter().copied().filter(|&c| c != new_cpu).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let threads = thread_cpus(console);
        if threads.iter().all(|(_, cpus)| cpus == &expected) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after a takeover by a relay on CPU {new_cpu}, the console's threads: {threads:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tmux.keys(&["C-c"]);
    tmux.wait_until_gone();
    let _ = new.start_kill();
}

/// Every thread of process `pid` with the CPUs it may run on.
fn thread_cpus(pid: u32) -> Vec<(std::ffi::OsString, Vec<usize>)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| (t.file_name(), cpus_allowed(&t.path().join("status"))))
        .collect()
}

/// The CPUs a `/proc/…/status` file allows (`Cpus_allowed_list: 0-2,5`).
fn cpus_allowed(status: &Path) -> Vec<usize> {
    let text = std::fs::read_to_string(status).unwrap_or_default();
    let Some(list) = text
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
    else {
        return Vec::new();
    };
    list.trim()
        .split(',')
        .filter_map(|range| {
            let (start, end) = range.split_once('-').unwrap_or((range, range));
            Some(start.parse::<usize>().ok()?..=end.parse::<usize>().ok()?)
        })
        .flatten()
        .collect()
}

/// The process running `attach --socket SOCKET`.
fn pid_of_attach(socket: &Path) -> Option<u32> {
    let socket = socket.display().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|p| {
        let pid: u32 = p.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let ours = args.iter().any(|a| *a == b"attach")
            && args.contains(&socket.as_bytes())
            && args.first().is_some_and(|a| a.ends_with(b"ecdn-console"));
        ours.then_some(pid)
    })
}

/// An attached console's first fetch comes in pages, one a frame: on a
/// relay with more sessions than a page (250) Live Sessions counts them in
/// and ends with every one; then sessions that end leave the table and new
/// ones join it, without a full fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_loads_a_large_table_in_pages_and_keeps_it_current() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    const SESSIONS: usize = 1_100;
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end attach test");
        return;
    }
    // Clients and origin here, two descriptors a session in the relay (a
    // child: it inherits the limit).
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if hard < 4 * SESSIONS as u64 {
        eprintln!("note: the open-files hard limit ({hard}) is too low; skipping");
        return;
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let origin = common::echo_origin(Default::default()).await;
    let (_dir, config_path, socket) = common::relay_dir("pages.test", origin);
    let (_serve, relay) = serve(&config_path).await;
    let mut clients = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        clients.push(common::connect(relay, "pages.test").await);
    }
    let command = format!(
        "{} attach --socket {}",
        shell_quote(env!("CARGO_BIN_EXE_ecdn-console")),
        shell_quote(&socket.display().to_string()),
    );
    let tmux = Tmux::start(format!("ecdn-e2e-pages-{}", std::process::id()), &command);
    tmux.wait_for("attached to relay 127.0.0.1:");
    tmux.keys(&["3"]);
    tmux.wait_for(&format!("Live Sessions · {SESSIONS} ·"));
    // Ten sessions end; five new ones start.
    clients.truncate(SESSIONS - 10);
    tmux.wait_for(&format!("Live Sessions · {} ·", SESSIONS - 10));
    for _ in 0..5 {
        clients.push(common::connect(relay, "pages.test").await);
    }
    let screen = tmux.wait_for(&format!("Live Sessions · {} ·", SESSIONS - 5));
    assert!(screen.contains("pages.test"), "{screen}");
    tmux.keys(&["C-c"]);
    tmux.wait_until_gone();
}

fn relay_addr(screen: &str) -> std::net::SocketAddr {
    let start = screen
        .find("relay 127.0.0.1:")
        .expect("relay address in the header")
        + 6;
    let addr: String = screen[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse().unwrap()
}

/// The console's in-process relay raises a shell's low open-files soft
/// limit to the hard limit, as `serve` does, and logs it.
#[test]
fn the_console_raises_a_low_open_files_soft_limit_to_the_hard_limit() {
    use nix::sys::resource::{Resource, getrlimit};
    const LOW: u64 = 256;
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the console open-files test");
        return;
    }
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if hard <= LOW {
        eprintln!("note: the open-files hard limit ({hard}) is not above {LOW}; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("console.toml");
    std::fs::write(
        &config_path,
        "[relay]\nlisten = \"127.0.0.1:0\"\n\n[[domain]]\nname = \"limits.test\"\n\
         acceleration = \"full-site\"\norigins = [\"127.0.0.1:9\"]\n\
         websocket = { switch = \"on\", timeout = 60 }\n",
    )
    .unwrap();
    let log = dir.path().join("console.log");
    // `exec`: the pane's process is the console itself.
    let command = format!(
        "ulimit -Sn {LOW}; ECDN_CONSOLE_LOG={} exec {} --config {}",
        shell_quote(&log.display().to_string()),
        shell_quote(env!("CARGO_BIN_EXE_ecdn-console")),
        shell_quote(&config_path.display().to_string()),
    );
    let tmux = Tmux::start(format!("ecdn-nofile-{}", std::process::id()), &command);
    tmux.wait_for("Overview");
    let pane = tmux.cmd(&["display-message", "-p", "-t", "console", "#{pane_pid}"]);
    let pid = String::from_utf8_lossy(&pane.stdout).trim().to_string();
    assert_eq!(
        common::open_files_limit(pid.parse().unwrap()),
        [hard.to_string(), hard.to_string()],
        "soft, hard"
    );
    tmux.keys(&["C-c"]);
    tmux.wait_until_gone();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&format!("open files limit raised to {hard} (was {LOW})")),
        "{logged}"
    );
}

/// The shell command for the console with `args`, logging into `dir`.
fn console_command(dir: &Path, args: &[&str]) -> String {
    let mut command = format!(
        "ECDN_CONSOLE_LOG={} {}",
        shell_quote(&dir.join("console.log").display().to_string()),
        shell_quote(env!("CARGO_BIN_EXE_ecdn-console")),
    );
    for arg in args {
        command.push(' ');
        command.push_str(&shell_quote(arg));
    }
    command
}

/// `ecdn-console websocket DOMAIN --timeout N` from another shell.
fn set_timeout_from_the_shell(config_path: &Path, domain: &str, secs: u16) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ecdn-console"))
        .arg("websocket")
        .arg("--config")
        .arg(config_path)
        .args([domain, "--timeout", &secs.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "websocket --timeout: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The console's own relay follows its file as `serve` does: a change an
/// editor saves is in force (a silent session is cut at the new timeout)
/// and on screen, in the Event Log and over the control socket; a broken
/// file is refused and the config in force stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_puts_a_change_of_its_file_in_force_as_serve_does() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the console file-change test");
        return;
    }
    let origin = common::echo_origin(Default::default()).await;
    let (dir, config_path, socket) = common::relay_dir("follow.test", origin);
    let command = console_command(
        dir.path(),
        &["--config", &config_path.display().to_string()],
    );
    let tmux = Tmux::start(format!("ecdn-follow-{}", std::process::id()), &command);
    let screen = tmux.wait_for("On · 300 s");
    let relay = relay_addr(&screen);

    // As an editor saves: a new file renamed over the old one.
    let text = std::fs::read_to_string(&config_path).unwrap();
    let edited = dir.path().join(".relay.toml.swp");
    std::fs::write(&edited, text.replace("timeout = 300", "timeout = 2")).unwrap();
    std::fs::rename(&edited, &config_path).unwrap();
    let screen = tmux.wait_for("On · 2 s");
    assert!(
        screen.contains("The file changed and is in force"),
        "{screen}"
    );

    let started = Instant::now();
    let mut client = common::connect(relay, "follow.test").await;
    let close = tokio::time::timeout(Duration::from_secs(10), common::next_close(&mut client))
        .await
        .expect("the relay cuts an idle session at the file's new timeout")
        .expect("a close frame");
    assert!(
        close.reason.contains("idle timeout (2 s)"),
        "{}",
        close.reason
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(client);

    let events = std::process::Command::new(env!("CARGO_BIN_EXE_ecdn-console"))
        .args(["events", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(events.contains("reloaded (file changed)"), "{events}");

    // What only a restart can change is said where the operator looks.
    let text = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, text.replace("127.0.0.1:0", "127.0.0.1:1")).unwrap();
    tmux.wait_for("listen 127.0.0.1:1 takes effect after a");

    // Broken: refused, said so, and 2 s stays in force.
    let text = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, text.replace("timeout = 2", "timeout = 999")).unwrap();
    let screen = tmux.wait_for("refused the configuration");
    assert!(screen.contains("On · 2 s"), "{screen}");
    tmux.keys(&["C-c"]);
    tmux.wait_until_gone();
}

/// An attached console with the timeout dialog open when the domain is
/// changed elsewhere: the dialog shows what is in force now and what it
/// opened with, keeps the draft, and OK saves the draft (not a conflict).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_dialog_shows_a_change_made_elsewhere_and_keeps_its_draft() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the changed-elsewhere dialog test");
        return;
    }
    let origin = common::echo_origin(Default::default()).await;
    let (dir, config_path, socket) = common::relay_dir("draft.test", origin);
    let (_serve, _relay) = serve(&config_path).await;
    let command = console_command(
        dir.path(),
        &["attach", "--socket", &socket.display().to_string()],
    );
    let tmux = Tmux::start(format!("ecdn-draft-{}", std::process::id()), &command);
    tmux.wait_for("attached to relay 127.0.0.1:");
    tmux.keys(&["j"]);
    tmux.wait_for("▸Domain Management");
    tmux.keys(&["Enter"]);
    tmux.wait_for("draft.test");
    tmux.keys(&["Enter"]);
    tmux.wait_for("Basic");
    tmux.keys(&["Tab", "Tab"]);
    tmux.wait_for("WebSocket timeout");
    tmux.keys(&["e"]);
    tmux.wait_for("Draft");
    tmux.keys(&["7"]);
    tmux.wait_for("Draft  On · 7 s");

    set_timeout_from_the_shell(&config_path, "draft.test", 42);
    let screen = tmux.wait_for("Changed elsewhere");
    assert!(screen.contains("In force  On · 42 s"), "{screen}");
    assert!(screen.contains("it was On · 300 s"), "{screen}");
    assert!(
        screen.contains("Draft  On · 7 s"),
        "the draft is kept: {screen}"
    );

    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("Saved");
    assert!(!screen.contains("conflict"), "{screen}");
    let saved = std::fs::read_to_string(&config_path).unwrap();
    assert!(saved.contains("timeout = 7 }"), "{saved}");
    tmux.keys(&["C-c"]);
    tmux.wait_until_gone();
}
