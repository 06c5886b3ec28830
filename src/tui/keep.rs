//! Keeping an in-process console's live sessions when it goes (DESIGN §7):
//! `k` in the quit dialog, or SIGHUP (the SSH connection dropped). A
//! detached `serve --takeover` starts, takes the listeners and sessions
//! over through the console's control socket, and goes on alone, logging
//! to a file; `ecdn-console attach` gets the console back on it.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::control::{Control, HandoverNotice};
use crate::handover::GiveReport;

/// How long the console waits for the background relay to take over.
pub const KEEP_TIMEOUT: Duration = Duration::from_secs(15);

/// A background relay on its way to taking the sessions over.
#[derive(Debug)]
pub struct Background {
    pub child: Child,
    /// Where it logs (its stdout and stderr).
    pub log: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    /// Past this, the console gives up waiting and keeps the sessions itself.
    deadline: tokio::time::Instant,
}

/// Where the background relay of `socket` logs: beside the console's own
/// logs (`$XDG_STATE_HOME`, else the cache dir).
pub fn log_path(socket: &Path) -> PathBuf {
    let dir = dirs::state_dir()
        .or_else(dirs::cache_dir)
        .unwrap_or_else(std::env::temp_dir)
        .join("ecdn-console");
    let name = socket
        .file_stem()
        .map_or_else(|| "relay".into(), |s| s.to_string_lossy().into_owned());
    dir.join(format!("{name}.log"))
}

/// Starts `ecdn-console serve --config CONFIG --takeover --socket SOCKET`
/// in a process group of its own (the terminal's hang-up does not reach
/// it), stdin closed, output to [`log_path`].
pub fn spawn(control: &Control, config: &Path, socket: &Path) -> std::io::Result<Background> {
    // A notice left from an earlier hand-over is not this one's.
    control.handover.send_replace(None);
    let config = std::path::absolute(config)?;
    let log = log_path(socket);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = OpenOptions::new().create(true).append(true).open(&log)?;
    let err = out.try_clone()?;
    let child = crate::serve::takeover_command(&config, socket)?
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()?;
    Ok(Background {
        child,
        log,
        config,
        socket: socket.to_path_buf(),
        deadline: tokio::time::Instant::now() + KEEP_TIMEOUT,
    })
}

impl Background {
    /// The command that brings a console back on the background relay.
    pub fn attach_command(&self) -> String {
        format!("ecdn-console attach --socket {}", self.socket.display())
    }

    /// Whether the background relay has already exited (it failed).
    pub fn failed(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "the background relay exited ({status}) before taking the sessions; see {}",
                self.log.display()
            )),
            _ => None,
        }
    }
}

/// Waits until the hand-over asked for on `control` ends: `Ok` once the
/// background relay has the sessions; `Err` (nothing changed) otherwise.
pub async fn outcome(control: &Control, background: &mut Background) -> Result<GiveReport, String> {
    let mut notices = control.handover.subscribe();
    let deadline = background.deadline;
    loop {
        if let Some(notice) = notices.borrow_and_update().clone() {
            return match notice {
                HandoverNotice::Committed(report) => Ok(report),
                HandoverNotice::Refused(why) => Err(why),
            };
        }
        if let Some(why) = background.failed() {
            return Err(why);
        }
        tokio::select! {
            changed = notices.changed() => if changed.is_err() { return Err("the control socket stopped".into()) },
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = tokio::time::sleep_until(deadline) => {
                let _ = background.child.kill();
                return Err(format!("the background relay did not take over within {} s; see {}", KEEP_TIMEOUT.as_secs(), background.log.display()));
            }
        }
    }
}
