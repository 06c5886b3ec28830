//! Carries out the [`Effect`]s that `update` asks for: saving the file,
//! reloading it, handing the configuration to the relay, closing sessions.
//! Results go back into `update` as actions, so the UI always shows them.

use std::sync::Arc;

use crate::app::{Action, App, Certificates, Effect, SaveError, update};
use crate::config::{Config, ConfigFile};
use crate::relay::{Registry, RelayHandle, SessionId};

/// What the runner needs of a relay (a fake in tests).
pub trait RelayControl {
    fn apply_config(&self, config: Arc<Config>);
    fn close_session(&self, id: SessionId) -> bool;
    /// The certificates its `tls-listen` serves.
    fn certificates(&self) -> Certificates {
        Certificates::Unknown
    }
}

impl RelayControl for RelayHandle {
    fn apply_config(&self, config: Arc<Config>) {
        if let Err(e) = self.link().apply_edit(config) {
            tracing::warn!("certificate {e}; the old certificate keeps being served");
        }
    }

    fn close_session(&self, id: SessionId) -> bool {
        self.registry().close(id)
    }

    fn certificates(&self) -> Certificates {
        Certificates::of_set(RelayHandle::certificates(self).as_deref())
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
                app.certificates = relay.certificates();
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
            // The console's loop starts the hand-over itself (it needs the
            // control socket and watches the outcome).
            Effect::KeepSessions => Vec::new(),
            // Only a console on a Tencent Cloud account asks for these, and
            // its own runner (tui::cloud) carries them out.
            Effect::LoadCloud | Effect::Probe(_) => Vec::new(),
        };
        queue.extend(follow_up);
    }
    quit
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::app::tests::TEST_CONFIG;
    use crate::app::{Command, Dialog, SaveErrorKind, Settings};
    use tui_input::InputRequest;

    fn send(app: &mut App, file: &mut ConfigFile, relay: &Arc<Registry>, action: Action) -> bool {
        let effects = update(app, action);
        perform(app, file, relay, effects)
    }

    #[test]
    fn a_conflicting_save_keeps_the_draft_and_saves_after_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, format!("# operator's note\n{TEST_CONFIG}")).unwrap();
        let mut file = ConfigFile::load(&path).unwrap();
        let relay = Arc::new(Registry::new());
        let mut app = App::new(
            Arc::new(file.config().clone()),
            relay.clone(),
            Settings::default(),
        );
        let go = |app: &mut App, file: &mut ConfigFile, a: Action| send(app, file, &relay, a);
        for c in [
            Command::Down,
            Command::Open,
            Command::Down,
            Command::Open,
            Command::NextTab,
            Command::NextTab,
            Command::Edit,
        ] {
            go(&mut app, &mut file, Action::Cmd(c));
        }
        for c in "45".chars() {
            go(
                &mut app,
                &mut file,
                Action::Input(InputRequest::InsertChar(c)),
            );
        }
        // Someone else edits the file meanwhile.
        let theirs = format!(
            "{}# their change\n",
            std::fs::read_to_string(&path).unwrap()
        );
        std::fs::write(&path, &theirs).unwrap();
        assert!(!go(&mut app, &mut file, Action::Cmd(Command::Open)));
        let Some(Dialog::EditWebSocket(d)) = &app.dialog else {
            panic!("the dialog closed")
        };
        assert_eq!(
            d.error.as_ref().map(|e| e.kind),
            Some(SaveErrorKind::Conflict)
        );
        assert_eq!(d.timeout, 45);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), theirs);

        go(&mut app, &mut file, Action::Cmd(Command::Reload));
        go(&mut app, &mut file, Action::Cmd(Command::Open));
        assert!(app.dialog.is_none(), "{:?}", app.dialog);
        let saved = std::fs::read_to_string(&path).unwrap();
        assert!(saved.contains("timeout = 45"), "{saved}");
        assert!(saved.contains("# their change") && saved.contains("# operator's note"));
        assert_eq!(app.config.domains[1].websocket.timeout, 45);
    }
}
