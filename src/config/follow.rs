//! A running relay following its config file: [`Nudges`] say when to look,
//! [`ConfigWatch`] decides what a look means. `serve` and the in-process
//! console both run one, so a file changed by an editor, by config
//! management or by a ConfigMap is put in force the same way whichever of
//! them holds the relay.

use std::path::Path;
use std::pin::Pin;

use tokio::time::{Instant, Sleep, sleep};

use super::ConfigFile;
use super::nudges::Nudges;
use super::watch::{ConfigWatch, POLL_INTERVAL, Reload};

/// Reads the config file when it may have changed, and says when a change
/// is ready to be put in force.
pub struct FileFollower {
    watch: ConfigWatch,
    nudges: Nudges,
    /// When to read the file next: soon after a nudge, every
    /// [`POLL_INTERVAL`] while a change settles, otherwise only as a recheck.
    read_again: Pin<Box<Sleep>>,
    last_read: Instant,
}

impl FileFollower {
    /// Follows `path`, whose text `in_force` is in force. The second value
    /// is a line to log when the kernel cannot watch the file (it is then
    /// read every [`POLL_INTERVAL`]).
    ///
    /// The watch starts here, so create the follower before telling anyone
    /// the relay is up: a change made once they know is then always seen.
    /// The first read is at once: a change made between loading the file
    /// and watching it sent no nudge.
    pub fn new(path: &Path, in_force: &str) -> (Self, Option<String>) {
        let (nudges, cannot_watch) = Nudges::new(path);
        let follower = Self {
            watch: ConfigWatch::new(path, in_force),
            nudges,
            read_again: Box::pin(sleep(std::time::Duration::ZERO)),
            last_read: Instant::now(),
        };
        (follower, cannot_watch)
    }

    pub fn path(&self) -> &Path {
        self.watch.path()
    }

    /// The next change to put in force, or to refuse. Cancel-safe: whatever
    /// it learnt before being dropped is kept for the next call.
    pub async fn changed(&mut self) -> Reload {
        loop {
            tokio::select! {
                () = self.nudges.changed() => {
                    // However busy the directory, at most one read per poll interval.
                    let at = (self.last_read + POLL_INTERVAL).max(Instant::now());
                    if at < self.read_again.deadline() {
                        self.read_again.as_mut().reset(at);
                    }
                }
                () = &mut self.read_again => {
                    self.nudges.follow_now();
                    self.last_read = Instant::now();
                    let decided = self.watch.poll(self.last_read.into_std());
                    let wait = if self.watch.settling() {
                        POLL_INTERVAL
                    } else {
                        self.nudges.recheck_every()
                    };
                    self.read_again.as_mut().reset(self.last_read + wait);
                    if let Some(reload) = decided {
                        return reload;
                    }
                }
            }
        }
    }

    /// Reads and decides at once (SIGHUP: the operator says the file is ready).
    pub fn reload_now(&mut self) -> Reload {
        self.watch.reload_now()
    }

    /// The text of `file` is in force now: a reload just taken, or a save
    /// made by the relay's owner (a console's edit), which is not a change
    /// to reload.
    pub fn in_force(&mut self, file: &ConfigFile) {
        self.watch.applied(file);
    }
}
