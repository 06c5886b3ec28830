//! The process's open-files limit. A relay holds two descriptors per
//! session (four for `wss://`), so a shell's usual soft limit of 1024 turns
//! clients away at ~500 sessions while the hard limit allows far more. Like
//! Go's runtime and HAProxy, every relay raises its soft limit to the hard
//! one at start; a taking-over relay needs it before `recvmsg`, which drops
//! (and the kernel closes) descriptors that do not fit.

use std::fmt;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The soft limit before and after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub was: u64,
    pub now: u64,
}

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "open files limit raised to {} (was {})",
            self.now, self.was
        )
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; `None` when it
/// already was there.
pub fn raise_open_files_limit() -> nix::Result<Option<Raised>> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= hard {
        return Ok(None);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(Some(Raised {
        was: soft,
        now: hard,
    }))
}

/// [`raise_open_files_limit`] as one line for a log; `None` when there is
/// nothing to say.
pub fn raise_open_files_limit_line() -> Option<String> {
    match raise_open_files_limit() {
        Ok(raised) => raised.map(|r| r.to_string()),
        Err(e) => Some(format!(
            "open files limit not raised ({e}); set LimitNOFILE or `ulimit -n` for more sessions"
        )),
    }
}

/// [`raise_open_files_limit_line`] for a relay inside a console (the
/// console's own or the demo's): the line goes to the console's log.
pub fn raise_open_files_limit_logged() {
    if let Some(line) = raise_open_files_limit_line() {
        tracing::info!("{line}");
    }
}
