//! Everything that can happen to the console, as data.

use std::sync::Arc;

use tui_input::InputRequest;

use crate::config::{Config, ConfigError, Edit};
use crate::relay::{RelayEvent, SessionId};

use super::Screen;
use super::keymap::{self, Context};

/// A key's meaning, independent of which key produced it. The keymap tables
/// turn key presses into these; tests send them directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    /// Enter: open the selection, or confirm a dialog.
    Open,
    /// Esc / q: one level back; quits from the top level.
    Back,
    /// Esc in a dialog, `n` in a confirmation.
    Cancel,
    /// Ctrl-C: quit from anywhere (asks first while sessions are live).
    Quit,
    NextTab,
    PrevTab,
    /// Move the slider (seconds) or cycle a choice field.
    Adjust(i16),
    /// Switch focus between the menu and the content.
    FocusOther,
    Edit,
    /// Space: toggle a switch / cycle a choice.
    Toggle,
    Filter,
    Help,
    AddDomain,
    DeleteDomain,
    ToggleOnline,
    CloseSession,
    CycleSort,
    CycleKind,
    CycleDomain,
    ClearFilters,
    /// Re-read the configuration file (after a conflict).
    Reload,
    /// Jump to a menu entry (mouse click, digit keys on the menu).
    Goto(Screen),
    /// Measure a Tencent Cloud domain's idle timeout on its edge.
    Probe,
    /// `k` in the quit dialog: quit, and keep the live sessions running in
    /// a background relay that takes them over.
    KeepSessions,
}

/// Input to [`update`](super::update).
#[derive(Debug, Clone)]
pub enum Action {
    Cmd(Command),
    /// An editing request for the focused text field.
    Input(InputRequest),
    /// A lifecycle event from the relay.
    Relay(RelayEvent),
    /// The runner saved an edit; this is the configuration now in force.
    Saved {
        config: Arc<Config>,
        edit: Edit,
    },
    /// The runner could not save an edit.
    SaveFailed(SaveError),
    /// The runner re-read the file.
    Reloaded(Result<Arc<Config>, SaveError>),
    /// The config in force changed outside this console: the relay took a
    /// change of its file (an editor, `ecdn-console websocket`, a
    /// ConfigMap), or another console saved an edit. Already in force.
    ConfigChanged(Arc<Config>),
    /// A result of the Tencent Cloud runner's background work.
    Cloud(super::cloud::CloudEvent),
}

impl From<Command> for Action {
    fn from(c: Command) -> Self {
        Action::Cmd(c)
    }
}

/// What the runner must do. `update` never does I/O itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Apply the edit to the file (comment-preserving, atomic, conflict
    /// checked), then answer with `Saved` or `SaveFailed`.
    Save(Edit),
    /// Re-read the file, then answer with `Reloaded`.
    Reload,
    /// Hand the configuration to the relay (every session re-arms).
    ApplyToRelay(Arc<Config>),
    /// Close one session with 1001 `closed by operator`.
    CloseSession(SessionId),
    Quit,
    /// Hand every live session to a background relay (a detached `serve
    /// --takeover`), then quit once it has them.
    KeepSessions,
    /// List the Tencent Cloud account's domains (again), answering with
    /// `Cloud(Progress)`s and then `Cloud(Loaded)` or `Cloud(LoadFailed)`.
    LoadCloud,
    /// A silent probe of `wss://DOMAIN/`, answering with `Cloud(Probed)`.
    Probe(String),
}

/// Why a save failed, in a form the UI can explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveErrorKind {
    /// The file changed on disk since it was loaded.
    Conflict,
    /// The value breaks a rule, or the result would not be a valid file.
    Invalid,
    /// Reading or writing the file failed.
    Io,
    /// Tencent Cloud refused the change, or could not be reached.
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveError {
    pub kind: SaveErrorKind,
    /// The error's own words (they say what to do).
    pub message: String,
}

impl SaveError {
    /// What the operator can do next, in one line, as the WebSocket
    /// dialog says it.
    pub fn advice(&self) -> String {
        self.advice_in(Context::EditWebSocket)
    }

    /// What the operator can do next where the error is shown: the reload
    /// key is that context's own (a form types `r` into its field).
    pub fn advice_in(&self, context: Context) -> String {
        match self.kind {
            SaveErrorKind::Conflict => {
                let keys = keymap::bindings_for(context, Command::Reload)
                    .next()
                    .map_or_else(|| "reload".to_string(), |b| b.keys_label());
                format!("Press {keys} to reload the file (your draft is kept), then OK again.")
            }
            SaveErrorKind::Invalid => "Correct the value; nothing was saved.".into(),
            SaveErrorKind::Io => {
                "Nothing was saved and the file is unchanged. Fix the cause, then OK again.".into()
            }
            SaveErrorKind::Refused => {
                "Nothing changed on the account. Fix the cause, then OK again.".into()
            }
        }
    }
}

impl From<&ConfigError> for SaveError {
    fn from(e: &ConfigError) -> Self {
        let kind = match e {
            ConfigError::Conflict { .. } => SaveErrorKind::Conflict,
            ConfigError::Invalid(_) | ConfigError::Rule(_) => SaveErrorKind::Invalid,
            ConfigError::Read { .. } | ConfigError::Write { .. } => SaveErrorKind::Io,
        };
        Self {
            kind,
            message: e.to_string().trim_end().to_string(),
        }
    }
}
