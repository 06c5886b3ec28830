//! The real binary as a subprocess: output, stderr text and exit codes
//! (0 ok, 2 bad input, 1 runtime failure). Every run gets its own working
//! directory and config home, so no test can touch the user's files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ecdn_console::config::{DEFAULT_CONFIG, DEMO_CONFIG, LIMITATION_TEXT};
use tempfile::TempDir;

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A sandbox: a working directory that is also `HOME` and the config home.
struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A sandbox whose `c.toml` holds `text`.
    fn with_config(text: &str) -> Self {
        let sandbox = Self::new();
        fs::write(sandbox.config(), text).unwrap();
        sandbox
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> PathBuf {
        self.path("c.toml")
    }

    fn config_text(&self) -> String {
        fs::read_to_string(self.config()).unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_ecdn-console"))
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.path("xdg"))
            .output()
            .unwrap();
        Output {
            code: out.status.code().expect("killed by a signal"),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    /// Runs with `--config c.toml`.
    fn run_on_config(&self, args: &[&str]) -> Output {
        let config = self.config();
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        self.run(&all)
    }
}

#[track_caller]
fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.code, code,
        "exit code\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
}

#[track_caller]
fn assert_contains(text: &str, fragment: &str) {
    assert!(text.contains(fragment), "{fragment:?} not in:\n{text}");
}

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(path)
}

// ---- config check -------------------------------------------------------

#[test]
fn config_check_accepts_a_valid_file_and_summarises_it() {
    let sandbox = Sandbox::with_config(DEFAULT_CONFIG);
    let out = sandbox.run(&["config", "check", sandbox.config().to_str().unwrap()]);
    assert_code(&out, 0);
    assert_contains(
        &out.stdout,
        "is valid (2 domains; relay listens on 127.0.0.1:8080)",
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("cloud.tencent.com"))
        .unwrap();
    assert_contains(line, "On · 100 s");
    assert_contains(line, "sessions idle for 100 s are closed");
    assert_eq!(out.stderr, "");
}

#[test]
fn config_check_refuses_an_invalid_file_with_its_position_and_value() {
    let file = fixture("invalid/timeout_301.toml");
    let out = Sandbox::new().run(&["config", "check", file.to_str().unwrap()]);
    assert_code(&out, 2);
    assert_contains(&out.stderr, &format!("{}:7:40:", file.display()));
    assert_contains(&out.stderr, "websocket timeout 301 is out of range");
    assert_contains(&out.stderr, "fix: use 0 to 300 seconds");
    assert_eq!(out.stdout, "");
}

#[test]
fn config_check_lists_every_problem_of_a_file() {
    let sandbox = Sandbox::with_config(
        "[relay]\nlisten = \"nowhere\"\n\n[[domain]]\nname = \"a.example\"\n\
         acceleration = \"dynamic\"\norigins = [\"127.0.0.1:0\"]\n\
         websocket = { switch = \"on\" }\n",
    );
    let out = sandbox.run(&["config", "check", "c.toml"]);
    assert_code(&out, 2);
    assert_contains(&out.stderr, "(3 problems)");
    assert_contains(&out.stderr, "c.toml:2:10: listen address \"nowhere\"");
    assert_contains(&out.stderr, "c.toml:7:12: origin \"127.0.0.1:0\"");
    assert_contains(&out.stderr, "c.toml:8:24: domain \"a.example\" is dynamic");
}

#[test]
fn config_check_never_creates_the_file_it_is_given() {
    let sandbox = Sandbox::new();
    let missing = sandbox.path("missing.toml");
    let out = sandbox.run(&["config", "check", missing.to_str().unwrap()]);
    assert_code(&out, 1);
    assert_contains(&out.stderr, "cannot read");
    assert_contains(&out.stderr, "missing.toml");
    assert!(!missing.exists());
}

#[test]
fn config_check_without_a_file_checks_the_config_option() {
    let sandbox = Sandbox::with_config(DEMO_CONFIG);
    let out = sandbox.run_on_config(&["config", "check"]);
    assert_code(&out, 0);
    assert_contains(&out.stdout, "(6 domains;");
}

// ---- default config -------------------------------------------------------

#[test]
fn a_missing_config_is_created_from_the_default_with_a_note() {
    let sandbox = Sandbox::new();
    let out = sandbox.run_on_config(&["domains"]);
    assert_code(&out, 0);
    assert_contains(&out.stderr, "note:");
    assert_contains(&out.stderr, &sandbox.config().display().to_string());
    assert_contains(&out.stderr, "created it from the built-in default");
    assert_eq!(sandbox.config_text(), DEFAULT_CONFIG);
    assert_contains(&out.stdout, "cloud.tencent.com");

    let again = sandbox.run_on_config(&["domains"]);
    assert_eq!(again.stderr, "", "only the first run creates it");
}

#[test]
fn without_the_config_option_the_local_file_wins_then_the_config_dir() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["domains"]);
    assert_code(&out, 0);
    let created = sandbox.path("xdg/ecdn-console/config.toml");
    assert_eq!(fs::read_to_string(&created).unwrap(), DEFAULT_CONFIG);
    assert_contains(&out.stderr, &created.display().to_string());

    fs::write(sandbox.path("ecdn-console.toml"), DEMO_CONFIG).unwrap();
    let out = sandbox.run(&["domains"]);
    assert_code(&out, 0);
    assert_contains(&out.stdout, "chat.demo.test");
}

// ---- domains --------------------------------------------------------------

#[test]
fn domains_prints_an_aligned_table() {
    let out = Sandbox::with_config(DEMO_CONFIG).run_on_config(&["domains"]);
    assert_code(&out, 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let header = lines[0];
    for column in [
        "Domain",
        "Status",
        "CNAME",
        "Acceleration",
        "Area",
        "Origin",
        "WebSocket",
    ] {
        assert_contains(header, column);
    }
    assert_eq!(lines.len(), 7, "a header and six domains");

    // Every value of the WebSocket column starts under its header.
    let column = header.find("WebSocket").unwrap();
    let cell = |domain: &str| -> String {
        let line = lines.iter().find(|l| l.starts_with(domain)).unwrap();
        line.chars().skip(column).collect()
    };
    assert_eq!(cell("chat.demo.test"), "On · 20 s");
    assert_eq!(cell("stream.demo.test"), "On · no limit");
    assert_eq!(cell("legacy.demo.test"), "Off · 15 s");
    assert_eq!(cell("api.demo.test"), "n/a");

    let api = lines
        .iter()
        .find(|l| l.starts_with("api.demo.test"))
        .unwrap();
    for value in [
        "online",
        "api.demo.test.dsa.dnsv1.com",
        "dynamic",
        "mainland",
        "127.0.0.1:9001",
    ] {
        assert_contains(api, value);
    }
    assert_contains(
        lines
            .iter()
            .find(|l| l.starts_with("static.demo.test"))
            .unwrap(),
        "offline",
    );
}

#[test]
fn domains_json_gives_every_setting_and_the_effective_timeout() {
    let sandbox = Sandbox::with_config(DEMO_CONFIG);
    let out = sandbox.run_on_config(&["domains", "--json"]);
    assert_code(&out, 0);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["config"], sandbox.config().display().to_string());
    let domains = json["domains"].as_array().unwrap();
    assert_eq!(domains.len(), 6);
    let domain = |name: &str| domains.iter().find(|d| d["name"] == name).unwrap();

    let chat = domain("chat.demo.test");
    assert_eq!(chat["effective_timeout_secs"], 20);
    assert_eq!(chat["websocket"]["switch"], "on");
    assert_eq!(chat["websocket"]["timeout"], 20);
    assert_eq!(chat["acceleration"], "full-site");
    assert_eq!(chat["area"], "global");
    assert_eq!(chat["cname"], "chat.demo.test.dsa.dnsv1.com");
    assert_eq!(chat["origins"][0]["port"], 9001);

    assert!(domain("stream.demo.test")["effective_timeout_secs"].is_null());
    assert_eq!(domain("legacy.demo.test")["effective_timeout_secs"], 15);
    assert_eq!(domain("api.demo.test")["effective_timeout_secs"], 15);
    assert_eq!(domain("api.demo.test")["websocket_label"], "n/a");
}

// ---- websocket: show ------------------------------------------------------

#[test]
fn websocket_shows_the_setting_and_what_it_means() {
    let out =
        Sandbox::with_config(DEFAULT_CONFIG).run_on_config(&["websocket", "Cloud.Tencent.com"]);
    assert_code(&out, 0);
    for fragment in [
        "cloud.tencent.com  (Full-site acceleration, online)",
        "Switch             on",
        "Timeout            100 s",
        "Effective timeout  100 s — sessions idle for 100 s are closed",
        "60 s is recommended",
    ] {
        assert_contains(&out.stdout, fragment);
    }
}

#[test]
fn websocket_shows_the_limitation_for_a_domain_that_cannot_configure_it() {
    let out = Sandbox::with_config(DEMO_CONFIG).run_on_config(&["websocket", "api.demo.test"]);
    assert_code(&out, 0);
    assert_contains(
        &out.stdout,
        "Effective timeout  15 s — not a full-site domain",
    );
    assert_contains(&out.stdout, LIMITATION_TEXT);
}

#[test]
fn websocket_warns_that_timeout_zero_never_drops_dead_peers() {
    let out = Sandbox::with_config(DEMO_CONFIG).run_on_config(&["websocket", "stream.demo.test"]);
    assert_code(&out, 0);
    assert_contains(&out.stdout, "Effective timeout  no limit");
    assert_contains(&out.stdout, "dead peers are never dropped");
}

// ---- websocket: change ----------------------------------------------------

#[test]
fn websocket_on_with_a_timeout_saves_only_that_line() {
    let sandbox = Sandbox::with_config(DEFAULT_CONFIG);
    let out = sandbox.run_on_config(&["websocket", "www.example.com", "--on", "--timeout", "30"]);
    assert_code(&out, 0);
    assert_contains(
        &out.stdout,
        &format!(
            "www.example.com: WebSocket off → on, timeout 60 s → 30 s (saved to {})",
            sandbox.config().display()
        ),
    );
    assert_contains(&out.stdout, "effective idle timeout: 30 s");
    assert_eq!(
        sandbox.config_text(),
        DEFAULT_CONFIG.replacen(
            "websocket = { switch = \"off\", timeout = 60 }",
            "websocket = { switch = \"on\", timeout = 30 }",
            1
        )
    );
}

#[test]
fn websocket_timeout_alone_keeps_the_switch_and_the_trailing_comment() {
    let sandbox = Sandbox::with_config(DEFAULT_CONFIG);
    let out = sandbox.run_on_config(&["websocket", "cloud.tencent.com", "--timeout", "0"]);
    assert_code(&out, 0);
    assert_contains(
        &out.stdout,
        "cloud.tencent.com: WebSocket on, timeout 100 s → 0 s",
    );
    assert_contains(&out.stdout, "dead peers are never dropped");
    assert_contains(
        &sandbox.config_text(),
        "websocket = { switch = \"on\", timeout = 0 }   # timeout 0..=300, 0 = no idle limit\n",
    );
}

#[test]
fn websocket_off_then_unchanged_does_not_rewrite_the_file() {
    let sandbox = Sandbox::with_config(DEFAULT_CONFIG);
    let out = sandbox.run_on_config(&["websocket", "cloud.tencent.com", "--off"]);
    assert_code(&out, 0);
    assert_contains(&out.stdout, "WebSocket on → off, timeout 100 s (saved to");
    assert_contains(&out.stdout, "effective idle timeout: 15 s");

    let again = sandbox.run_on_config(&["websocket", "cloud.tencent.com", "--off"]);
    assert_code(&again, 0);
    assert_contains(&again.stdout, "(unchanged;");
    // A script that "sets" 100 s on a switched-off domain learns it is not in force.
    assert_contains(
        &again.stdout,
        "effective idle timeout: 15 s — switch off: sessions idle for 15 s are closed",
    );
    let on = sandbox.run_on_config(&["websocket", "cloud.tencent.com", "--on"]);
    let same = sandbox.run_on_config(&["websocket", "cloud.tencent.com", "--timeout", "100"]);
    assert_code(&on, 0);
    assert_contains(&same.stdout, "(unchanged;");
    assert!(
        !same.stdout.contains("effective idle timeout"),
        "with the switch on the timeout is what is in force: {}",
        same.stdout
    );
}

#[test]
fn websocket_timeout_out_of_range_gets_the_config_rule_message() {
    let sandbox = Sandbox::with_config(DEFAULT_CONFIG);
    for value in ["301", "-1"] {
        let out = sandbox.run_on_config(&["websocket", "cloud.tencent.com", "--timeout", value]);
        assert_code(&out, 2);
        assert_contains(
            &out.stderr,
            &format!("websocket timeout {value} is out of range; use 0 to 300 seconds"),
        );
        assert_eq!(out.stdout, "");
        assert_eq!(sandbox.config_text(), DEFAULT_CONFIG);
    }
}

#[test]
fn websocket_on_a_dynamic_domain_is_refused_with_the_limitation() {
    let sandbox = Sandbox::with_config(DEMO_CONFIG);
    for flags in [&["--on"][..], &["--timeout", "30"][..]] {
        let mut args = vec!["websocket", "api.demo.test"];
        args.extend_from_slice(flags);
        let out = sandbox.run_on_config(&args);
        assert_code(&out, 2);
        assert_contains(&out.stderr, "domain \"api.demo.test\" is dynamic");
        assert_contains(
            &out.stderr,
            "can only be configured for full-site acceleration domains",
        );
        assert_eq!(sandbox.config_text(), DEMO_CONFIG);
    }
}

#[test]
fn websocket_unknown_domain_lists_the_known_ones() {
    let sandbox = Sandbox::with_config(DEFAULT_CONFIG);
    for args in [
        &["websocket", "nope.example"][..],
        &["websocket", "nope.example", "--on"][..],
    ] {
        let out = sandbox.run_on_config(args);
        assert_code(&out, 2);
        assert_contains(
            &out.stderr,
            "no domain named \"nope.example\"; known domains: www.example.com, cloud.tencent.com",
        );
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    let sandbox = Sandbox::with_config(DEFAULT_CONFIG);
    let out = sandbox.run_on_config(&["websocket", "cloud.tencent.com", "--on", "--off"]);
    assert_code(&out, 2);
    assert_contains(&out.stderr, "'--on' cannot be used with '--off'");
    let out = sandbox.run_on_config(&["websocket", "cloud.tencent.com", "--timeout", "soon"]);
    assert_code(&out, 2);
    assert_contains(&out.stderr, "invalid value 'soon'");
    assert_eq!(sandbox.config_text(), DEFAULT_CONFIG);
}

#[test]
fn no_command_without_a_terminal_prints_the_help() {
    // Without a command the console opens; with no terminal (a pipe) there
    // is nothing to draw on, so the help says what to do instead.
    let out = Sandbox::new().run(&[]);
    assert_code(&out, 2);
    assert_contains(&out.stderr, "Usage: ecdn-console");
    assert_contains(&out.stderr, "websocket");
    assert_contains(&out.stderr, "needs a terminal");
}

#[test]
fn the_demo_needs_a_terminal_and_never_takes_a_config() {
    let sandbox = Sandbox::with_config(DEFAULT_CONFIG);
    let out = sandbox.run(&["demo"]);
    assert_code(&out, 2);
    assert_contains(&out.stderr, "the demo needs a terminal");
    // --config would suggest the demo uses that file: it never does.
    let out = sandbox.run(&["--config", "c.toml", "demo"]);
    assert_code(&out, 2);
    assert_contains(&out.stderr, "temporary copy of its own config");
    assert_eq!(sandbox.config_text(), DEFAULT_CONFIG);
    let entries: Vec<_> = fs::read_dir(sandbox.dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "the demo wrote nothing here");
}

// ---- runtime failures -----------------------------------------------------

#[test]
fn a_config_that_cannot_be_read_is_a_runtime_failure() {
    let sandbox = Sandbox::new();
    fs::create_dir(sandbox.config()).unwrap();
    let out = sandbox.run_on_config(&["domains"]);
    assert_code(&out, 1);
    assert_contains(&out.stderr, "cannot read");
    assert_contains(&out.stderr, "it is a directory, not a regular file");
}

/// A FIFO at the config path is refused at once instead of waiting for a
/// writer that never comes.
#[test]
fn a_fifo_given_as_the_config_is_refused_at_once() {
    let sandbox = Sandbox::new();
    nix::unistd::mkfifo(&sandbox.config(), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let started = std::time::Instant::now();
    let out = sandbox.run(&["config", "check", "c.toml"]);
    assert_code(&out, 1);
    assert_contains(&out.stderr, "a FIFO, socket or device, not a regular file");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn a_config_that_cannot_be_created_is_a_runtime_failure() {
    let sandbox = Sandbox::new();
    fs::write(sandbox.path("file"), "").unwrap();
    let out = sandbox.run(&["--config", "file/c.toml", "domains"]);
    assert_code(&out, 1);
    assert_contains(&out.stderr, "cannot save file/c.toml");
}

/// Makes a directory unwritable for as long as it lives. Root ignores mode
/// bits, so for root the directory is also made immutable (`chattr +i`).
#[cfg(unix)]
struct ReadOnlyDir<'a> {
    dir: &'a Path,
    immutable: bool,
}

#[cfg(unix)]
impl<'a> ReadOnlyDir<'a> {
    /// `None` when this machine offers no way to stop this user writing.
    fn new(dir: &'a Path) -> Option<Self> {
        use std::os::unix::fs::PermissionsExt;

        fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
        let mut guard = Self {
            dir,
            immutable: false,
        };
        if guard.writable() {
            guard.immutable = Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
        }
        (!guard.writable()).then_some(guard)
    }

    fn writable(&self) -> bool {
        let probe = self.dir.join("probe");
        let ok = fs::write(&probe, "").is_ok();
        let _ = fs::remove_file(probe);
        ok
    }
}

#[cfg(unix)]
impl Drop for ReadOnlyDir<'_> {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;

        if self.immutable {
            let _ = Command::new("chattr").arg("-i").arg(self.dir).status();
        }
        let _ = fs::set_permissions(self.dir, fs::Permissions::from_mode(0o755));
    }
}

#[cfg(unix)]
#[test]
fn a_save_into_a_read_only_directory_fails_and_leaves_the_file() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path("ro");
    fs::create_dir(&dir).unwrap();
    let config = dir.join("c.toml");
    fs::write(&config, DEFAULT_CONFIG).unwrap();
    let Some(read_only) = ReadOnlyDir::new(&dir) else {
        eprintln!("skipped: no way to make a directory read-only for this user");
        return;
    };
    let out = sandbox.run(&[
        "--config",
        config.to_str().unwrap(),
        "websocket",
        "cloud.tencent.com",
        "--timeout",
        "30",
    ]);
    drop(read_only);
    assert_code(&out, 1);
    assert_contains(&out.stderr, "cannot save");
    assert_contains(&out.stderr, "The previous file is unchanged");
    assert_eq!(fs::read_to_string(&config).unwrap(), DEFAULT_CONFIG);
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        1,
        "a temp file was left"
    );
}

/// `ecdn-console domains | head -1`: the reader leaves early. The command
/// ends quietly with 0, as `ls | head` does — not `error: Broken pipe`.
#[test]
fn a_reader_that_leaves_early_ends_the_command_quietly() {
    let mut text = String::new();
    for i in 0..1500 {
        text.push_str(&format!(
            "[[domain]]\nname = \"d{i}.example.com\"\nacceleration = \"full-site\"\n\
             origins = [\"127.0.0.1:9001\"]\n\n"
        ));
    }
    let sandbox = Sandbox::with_config(&text);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ecdn-console"))
        .args(["--config", sandbox.config().to_str().unwrap(), "domains"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // More than a pipe holds (64 KiB): the command meets the closed end.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(String::from_utf8_lossy(&first).starts_with("Domain"));
}
