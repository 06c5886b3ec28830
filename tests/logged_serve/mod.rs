//! `serve` as a child process whose every output line is read at once (a
//! relay that logs hundreds of `opened` lines must never block on a full
//! pipe), kept for failure messages. For tests that follow a relay's log
//! line by line — hand-overs above all (tests/handover.rs, tests/browser.rs).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_ecdn-console");

pub struct Serve {
    pub child: Child,
    pub pid: u32,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every line read so far, for failure messages.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    pub fn spawn(config: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Serve {
        // Its runtime dir beside the config, unless the test gives its own.
        let mut child = crate::common::serve_command(config, extra, envs)
            .env("XDG_RUNTIME_DIR", config.parent().unwrap().join("xdg"))
            .envs(envs.iter().copied())
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, lines) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let keep = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                keep.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Serve {
            child,
            pid,
            lines,
            log,
        }
    }

    /// A plain `serve`; the address it listens on.
    pub async fn start(config: &Path) -> (Serve, SocketAddr) {
        let mut serve = Serve::spawn(config, &[], &[]);
        let line = serve
            .line_with("listening on", Duration::from_secs(10))
            .await;
        let addr = line
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        serve
            .line_with("control socket at", Duration::from_secs(5))
            .await;
        (serve, addr)
    }

    /// The next line containing `needle`.
    pub async fn line_with(&mut self, needle: &str, limit: Duration) -> String {
        match super::common::next_line_with(&mut self.lines, needle, limit).await {
            Ok(line) => line,
            Err(super::common::NoLine::Ended) => panic!(
                "serve (pid {}) ended before a line with {needle:?}; its log:\n{}",
                self.pid,
                self.log_text()
            ),
            Err(super::common::NoLine::TimedOut) => panic!(
                "no line with {needle:?} from serve (pid {}) within {limit:?}; its log:\n{}",
                self.pid,
                self.log_text()
            ),
        }
    }

    pub fn log_text(&self) -> String {
        let log = self.log.lock().unwrap();
        let skip = log.len().saturating_sub(40);
        log[skip..].join("\n")
    }

    /// Waits (at most `limit`) for the process to exit by itself.
    pub async fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        match timeout(limit, self.child.wait()).await {
            Ok(status) => status.unwrap().code(),
            Err(_) => panic!(
                "serve (pid {}) did not exit within {limit:?}; its log:\n{}",
                self.pid,
                self.log_text()
            ),
        }
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}
