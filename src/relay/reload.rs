//! Putting a config file's change in force on a running relay — `serve`'s
//! and the in-process console's alike, so a file change means the same
//! whichever of them holds the relay.

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{Config, ConfigFile, FileFollower, Reload};

use super::{RelayEvent, RelayHandle};

/// What a reload did: the event that says so, and the file now in force
/// (none when it was refused).
pub struct Reloaded {
    pub event: RelayEvent,
    pub in_force: Option<ConfigFile>,
    /// What the new file asks that only a restart does (also in the event).
    pub after_restart: Vec<String>,
}

/// Puts `reload` in force on `relay`, or says why not; counts it in the
/// reload metric either way. `workers` is a command line's `--workers`,
/// which a file does not override. `trigger` says what asked (`SIGHUP`,
/// `file changed`).
pub fn put_in_force(
    relay: &RelayHandle,
    follower: &mut FileFollower,
    reload: Reload,
    workers: Option<usize>,
    trigger: &str,
) -> Reloaded {
    let reloaded = match reload {
        Reload::Apply(file) => {
            // Taken, even if the relay refuses it below: the same text is
            // not tried (and reported) again until the file changes.
            follower.in_force(&file);
            let new = with_workers(file.config().clone(), workers);
            let after_restart = after_restart(relay, &new);
            let mut detail = format!(
                "{} reloaded ({trigger}): {} domain(s)",
                follower.path().display(),
                new.domains.len()
            );
            for note in &after_restart {
                detail.push_str("; ");
                detail.push_str(note);
            }
            Reloaded {
                after_restart,
                ..take(relay, *file, new, detail)
            }
        }
        Reload::Refused(error) => Reloaded {
            event: RelayEvent::ConfigRejected {
                at: SystemTime::now(),
                error,
            },
            in_force: None,
            after_restart: Vec::new(),
        },
    };
    relay
        .metrics()
        .config_reload(matches!(reloaded.event, RelayEvent::ConfigApplied { .. }));
    reloaded
}

/// What `new` changes that a reload cannot: each takes effect after a
/// restart (or a takeover).
fn after_restart(relay: &RelayHandle, new: &Config) -> Vec<String> {
    let old = relay.config();
    let mut notes = Vec::new();
    if new.relay.listen != old.relay.listen {
        notes.push(format!(
            "listen {} takes effect after a restart (still on {})",
            new.relay.listen,
            relay.local_addr()
        ));
    }
    if new.relay.workers != relay.workers() {
        notes.push(format!(
            "workers = {} takes effect after a restart (still {})",
            new.relay.workers,
            relay.workers()
        ));
    }
    if new.admin.listen != old.admin.listen {
        notes.push("[admin] listen takes effect after a restart".into());
    }
    if new.relay.tls_listen != old.relay.tls_listen {
        notes.push("tls-listen takes effect after a restart".into());
    }
    notes
}

/// A certificate that cannot be served refuses the whole reload: the old
/// certificates and config stay in force.
fn take(relay: &RelayHandle, file: ConfigFile, new: Config, detail: String) -> Reloaded {
    let at = SystemTime::now();
    match relay.try_apply_config(Arc::new(new)) {
        Ok(()) => Reloaded {
            event: RelayEvent::ConfigApplied { at, detail },
            in_force: Some(file),
            after_restart: Vec::new(),
        },
        Err(error) => Reloaded {
            event: RelayEvent::ConfigRejected {
                at,
                error: format!("certificate {error}"),
            },
            in_force: None,
            after_restart: Vec::new(),
        },
    }
}

/// `config` with a command line's `--workers`, which the file does not
/// override.
pub fn with_workers(mut config: Config, workers: Option<usize>) -> Config {
    if let Some(n) = workers {
        config.relay.workers = n;
    }
    config
}
