//! `ecdn-console serve` as a real process, for the admin, metrics, drain,
//! control-socket and recommend tests: its event lines, its addresses and
//! control socket, signals, plain HTTP/1.1 requests to its admin listener,
//! and the shell commands run against it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;

pub struct ServeProcess {
    pub child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Where WebSocket clients connect.
    pub addr: SocketAddr,
    /// The admin listener, when `--admin` was given.
    pub admin: Option<SocketAddr>,
    /// `[relay] tls-listen`, when the config sets it.
    pub tls: Option<SocketAddr>,
    /// The control socket it reported.
    pub control: PathBuf,
}

/// The first `ip:port` in a line.
fn address_in(line: &str) -> Option<SocketAddr> {
    line.split(|c: char| c.is_whitespace() || c == '/' || c == '"')
        .find_map(|w| w.trim_end_matches(',').parse().ok())
}

impl ServeProcess {
    /// Starts `serve` on `path` with `args` and `envs`, waiting for its
    /// "listening" line (and its "admin" line when `--admin` is given).
    pub async fn start(path: &Path, args: &[&str], envs: &[(&str, &str)]) -> ServeProcess {
        let mut child = crate::common::serve_command(path, args, envs)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut process = ServeProcess {
            child,
            lines,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin: None,
            tls: None,
            control: PathBuf::new(),
        };
        let listening = process.line_with("listening on").await;
        process.addr =
            address_in(&listening).unwrap_or_else(|| panic!("no address in {listening:?}"));
        let control = process.line_with("control socket at ").await;
        process.control = control
            .split("control socket at ")
            .nth(1)
            .map(|p| PathBuf::from(p.trim_end_matches(['"', '}'])))
            .unwrap_or_else(|| panic!("no control socket in {control:?}"));
        if std::fs::read_to_string(path).is_ok_and(|c| c.contains("tls-listen")) {
            let tls = process.line_with("wss:// clients on").await;
            process.tls = address_in(&tls);
        }
        if args.contains(&"--admin") {
            let admin = process.line_with("admin endpoints on").await;
            process.admin = address_in(&admin);
            assert!(process.admin.is_some(), "no address in {admin:?}");
        }
        process
    }

    /// The next line containing `needle`, within 5 s.
    pub async fn line_with(&mut self, needle: &str) -> String {
        self.line_within(needle, Duration::from_secs(5)).await
    }

    pub async fn line_within(&mut self, needle: &str, limit: Duration) -> String {
        timeout(limit, async {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("serve ended before a line with {needle:?}"));
                if line.contains(needle) {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no line with {needle:?} within {limit:?}"))
    }

    pub fn signal(&self, name: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (at most `limit`) for the process to exit; its exit code.
    pub async fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("serve did not exit within {limit:?}"))
            .unwrap()
            .code()
    }

    /// `METHOD path` on the admin listener: status and body.
    pub async fn admin_request(&self, method: &str, path: &str) -> (u16, String) {
        http_request(self.admin.expect("started with --admin"), method, path).await
    }
}

/// What a finished `ecdn-console` command printed, and its exit code.
pub struct CliOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `ecdn-console ARGS` to the end.
pub async fn run_cli(args: &[&str]) -> CliOut {
    let out = Command::new(env!("CARGO_BIN_EXE_ecdn-console"))
        .args(args)
        .output()
        .await
        .unwrap();
    CliOut {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One HTTP/1.1 request written by hand (so the test depends on no HTTP
/// client of the relay's own); the status code and the body.
pub async fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("the admin listener answers")
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}
