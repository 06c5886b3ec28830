//! The real binary in a real terminal: a tmux server of the test's own.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A detached 80×24 session named `console` running `command`.
    pub fn start(socket: String, command: &str) -> Self {
        let tmux = Tmux { socket };
        let out = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            "console",
            "-x",
            "80",
            "-y",
            "24",
            command,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        tmux
    }

    /// Waits (10 s at most) for the program in the session to exit.
    pub fn wait_until_gone(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cmd(&["has-session", "-t", "console"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "the console did not quit:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "console"]).stdout)
            .into_owned()
    }

    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            let out = self.cmd(&["send-keys", "-t", "console", k]);
            assert!(out.status.success(), "send-keys {k}");
            // One key per frame, as a person would; the console coalesces
            // redraws, so this only paces the script.
            std::thread::sleep(Duration::from_millis(80));
        }
    }

    /// Waits until the screen shows `needle`; returns the screen.
    pub fn wait_for(&self, needle: &str) -> String {
        self.wait_for_within(needle, Duration::from_secs(10))
    }

    pub fn wait_for_within(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("the console never showed {needle:?}; screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

pub fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
