//! Carries out the [`Effect`]s that `update` asks for: saving the file,
//! reloading it, handing the configuration to the relay, closing sessions.
//! Results go back into `update` as actions, so the UI always shows them.

use std::sync::Arc;

use crate::app::{Action, App, Effect, SaveError, update};
use crate::config::{Config, ConfigFile};
use crate::relay::{Registry, RelayHandle, SessionId};

/// What the runner needs of a relay (a fake in tests).
pub trait RelayControl {
    fn apply_config(&self, config: Arc<Config>);
    fn close_session(&self, id: SessionId) -> bool;
}

impl RelayControl for RelayHandle {
    fn apply_config(&self, config: Arc<Config>) {
        RelayHandle::apply_config(self, config);
    }

    fn close_session(&self, id: SessionId) -> bool {
        self.registry().close(id)
    }
}

/// A registry without a relay: closes go to the registry, configs nowhere.
impl RelayControl for Arc<Registry> {
    fn apply_config(&self, _config: Arc<Config>) {}

    fn close_session(&self, id: SessionId) -> bool {
        self.close(id)
    }
}

/// Runs `effects` and every effect their results lead to. Returns whether
/// the console should quit.
pub fn perform(
    app: &mut App,
    file: &mut ConfigFile,
    relay: &dyn RelayControl,
    effects: Vec<Effect>,
) -> bool {
    let mut queue = std::collections::VecDeque::from(effects);
    let mut quit = false;
    while let Some(effect) = queue.pop_front() {
        let follow_up = match effect {
            Effect::Save(edit) => {
                let action = match file.apply(&edit).map(|c| Arc::new(c.clone())) {
                    Ok(config) => {
                        tracing::info!(edit = %edit.describe(), "saved {}", file.path().display());
                        Action::Saved { config, edit }
                    }
                    Err(e) => {
                        tracing::warn!(edit = %edit.describe(), "save failed: {e}");
                        Action::SaveFailed(SaveError::from(&e))
                    }
                };
                update(app, action)
            }
            Effect::Reload => {
                let result = file
                    .reload()
                    .map(|c| Arc::new(c.clone()))
                    .map_err(|e| SaveError::from(&e));
                tracing::info!(ok = result.is_ok(), "reloaded {}", file.path().display());
                update(app, Action::Reloaded(result))
            }
            Effect::ApplyToRelay(config) => {
                relay.apply_config(config);
                Vec::new()
            }
            Effect::CloseSession(id) => {
                if !relay.close_session(id) {
                    tracing::info!(id, "session already gone");
                }
                Vec::new()
            }
            Effect::Quit => {
                quit = true;
                Vec::new()
            }
        };
        queue.extend(follow_up);
    }
    quit
}
