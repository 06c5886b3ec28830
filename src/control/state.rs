//! What the control server shares with the relay's owner (`serve` or the
//! console): the versioned configuration file and the ring of recent events.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, watch};

use crate::config::{Config, ConfigError, ConfigFile, Edit};
use crate::relay::RelayEvent;

use super::protocol::{ConfigReply, ErrorCode, ErrorReply};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoned only if a holder panicked; the data is still whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The configuration file in force and its version, which moves on every
/// applied change (an edit over the socket, a reload, a console's save).
/// An edit names the version it was made on: an older one is a conflict.
#[derive(Debug)]
pub struct ConfigCell {
    // A std Mutex: held only for a save, never across an `.await`.
    state: Mutex<(ConfigFile, u64)>,
    version: watch::Sender<u64>,
}

impl ConfigCell {
    pub fn new(file: ConfigFile) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new((file, 1)),
            version: watch::channel(1).0,
        })
    }

    pub fn version(&self) -> u64 {
        lock(&self.state).1
    }

    /// Notified with the new version after every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The file and its version.
    pub fn file(&self) -> (ConfigFile, u64) {
        let s = lock(&self.state);
        (s.0.clone(), s.1)
    }

    pub fn get(&self) -> ConfigReply {
        let s = lock(&self.state);
        ConfigReply {
            version: s.1,
            path: s.0.path().to_path_buf(),
            text: s.0.text().to_string(),
            tls: None,
        }
    }

    /// Puts a file loaded (or saved) by the owner in force; a new version
    /// unless its text is the one already held.
    pub fn replace(&self, file: ConfigFile) -> u64 {
        let mut s = lock(&self.state);
        if s.0.text() != file.text() || s.0.path() != file.path() {
            s.0 = file;
            s.1 += 1;
            self.version.send_replace(s.1);
        }
        s.1
    }

    /// Applies `edit`, made on `version`, saving the file the same way the
    /// console does (comments kept, atomic, never over a change on disk).
    pub fn edit(&self, version: u64, edit: &Edit) -> Result<(Arc<Config>, u64), ErrorReply> {
        let mut s = lock(&self.state);
        if version != s.1 {
            return Err(ErrorReply {
                error: ErrorCode::Conflict,
                message: format!(
                    "the relay's configuration is at version {} (another edit or a reload came \
                     first), this edit was made on version {version}; get it again with \
                     config-get and redo the edit",
                    s.1
                ),
            });
        }
        let config = match s.0.apply(edit) {
            Ok(config) => Arc::new(config.clone()),
            Err(e) => {
                let error = match e {
                    ConfigError::Conflict { .. } => ErrorCode::Conflict,
                    ConfigError::Invalid(_) | ConfigError::Rule(_) => ErrorCode::Invalid,
                    ConfigError::Read { .. } | ConfigError::Write { .. } => ErrorCode::Failed,
                };
                return Err(ErrorReply {
                    error,
                    message: e.to_string().trim_end().to_string(),
                });
            }
        };
        s.1 += 1;
        self.version.send_replace(s.1);
        Ok((config, s.1))
    }
}

/// How many recent events a relay keeps for `events` and a new `attach`.
pub const EVENT_RING: usize = 1000;
/// How far a follower may fall behind before it is dropped.
const FOLLOW_BUFFER: usize = 4096;

/// The recent events, and a broadcast of new ones to followers.
#[derive(Debug)]
pub struct EventRing {
    ring: Mutex<VecDeque<RelayEvent>>,
    live: broadcast::Sender<RelayEvent>,
}

impl Default for EventRing {
    fn default() -> Self {
        Self {
            ring: Mutex::new(VecDeque::with_capacity(EVENT_RING)),
            live: broadcast::channel(FOLLOW_BUFFER).0,
        }
    }
}

impl EventRing {
    /// Records an event (the owner calls this for each one it reads).
    pub fn publish(&self, event: &RelayEvent) {
        self.publish_owned(event.clone());
    }

    /// [`publish`](Self::publish) of an event the caller is done with: kept
    /// without a copy, and copied for followers only when there are any
    /// (`serve` publishes two events per session: docs/BENCHMARKS.md, finding 24).
    pub fn publish_owned(&self, event: RelayEvent) {
        let mut ring = lock(&self.ring);
        if ring.len() == EVENT_RING {
            ring.pop_front();
        }
        // Sent under the lock, so a new follower gets each event exactly
        // once: in its snapshot or from the channel (followers subscribe
        // under this lock too, so the count cannot change in between).
        if self.live.receiver_count() > 0 {
            let _ = self.live.send(event.clone());
        }
        ring.push_back(event);
    }

    /// The recent events, and (when asked) a receiver of every later one.
    /// Puts the events of the relay this one took over before its own,
    /// oldest first, as many as the ring holds.
    pub fn carry_over(&self, earlier: Vec<RelayEvent>) {
        let mut ring = lock(&self.ring);
        let mine = std::mem::take(&mut *ring);
        let all: Vec<RelayEvent> = earlier.into_iter().chain(mine).collect();
        let excess = all.len().saturating_sub(EVENT_RING);
        ring.extend(all.into_iter().skip(excess));
    }

    pub fn recent(
        &self,
        follow: bool,
    ) -> (Vec<RelayEvent>, Option<broadcast::Receiver<RelayEvent>>) {
        let ring = lock(&self.ring);
        let rx = follow.then(|| self.live.subscribe());
        (ring.iter().cloned().collect(), rx)
    }
}
