//! Keys as data: one table per context of `(keys, command, hint)`. The same
//! tables handle key presses, fill the footer and the `?` help, so what the
//! screen says and what the keys do never drift apart.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tui_input::backend::crossterm::to_input_request;

use super::action::{Action, Command};
use super::{ManageTab, Screen};

/// A key (or class of keys) a binding answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPat {
    /// A key without modifiers (Shift allowed for characters).
    Key(KeyCode),
    Char(char),
    Ctrl(char),
    Shift(KeyCode),
    /// `0`–`9`.
    Digits,
    /// Anything a text field accepts (letters, Backspace, Home, …).
    Text,
}

impl KeyPat {
    fn matches(self, key: &KeyEvent) -> bool {
        let m = key.modifiers;
        let plain = m.difference(KeyModifiers::SHIFT).is_empty();
        match self {
            KeyPat::Key(code) => {
                key.code == code && (m.is_empty() || matches!(code, KeyCode::BackTab) && plain)
            }
            KeyPat::Char(c) => key.code == KeyCode::Char(c) && plain,
            KeyPat::Ctrl(c) => key.code == KeyCode::Char(c) && m == KeyModifiers::CONTROL,
            KeyPat::Shift(code) => key.code == code && m == KeyModifiers::SHIFT,
            KeyPat::Digits => {
                matches!(key.code, KeyCode::Char(c) if c.is_ascii_digit()) && m.is_empty()
            }
            KeyPat::Text => to_input_request(&Event::Key(*key)).is_some(),
        }
    }

    /// How the key is written in the footer and help.
    pub fn label(self) -> String {
        match self {
            KeyPat::Key(code) | KeyPat::Shift(code) => {
                let name = match code {
                    KeyCode::Up => "↑".to_string(),
                    KeyCode::Down => "↓".to_string(),
                    KeyCode::Left => "←".to_string(),
                    KeyCode::Right => "→".to_string(),
                    KeyCode::Enter => "Enter".to_string(),
                    KeyCode::Esc => "Esc".to_string(),
                    KeyCode::Tab => "Tab".to_string(),
                    KeyCode::BackTab => "Shift-Tab".to_string(),
                    KeyCode::PageUp => "PgUp".to_string(),
                    KeyCode::PageDown => "PgDn".to_string(),
                    KeyCode::Home => "Home".to_string(),
                    KeyCode::End => "End".to_string(),
                    KeyCode::Backspace => "Bksp".to_string(),
                    KeyCode::Char(' ') => "Space".to_string(),
                    KeyCode::Char(c) => c.to_string(),
                    other => format!("{other:?}"),
                };
                if matches!(self, KeyPat::Shift(_)) {
                    format!("Shift-{name}")
                } else {
                    name
                }
            }
            KeyPat::Char(' ') => "Space".to_string(),
            KeyPat::Char(c) => c.to_string(),
            KeyPat::Ctrl(c) => format!("Ctrl-{}", c.to_ascii_uppercase()),
            KeyPat::Digits => "0-9".to_string(),
            KeyPat::Text => "type".to_string(),
        }
    }
}

/// What a binding does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Cmd(Command),
    /// Forward the key to the focused text field.
    Type,
}

#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub keys: &'static [KeyPat],
    pub bound: Bound,
    pub hint: &'static str,
    /// Shown in the footer (everything is shown in the help).
    pub footer: bool,
}

impl Binding {
    /// `↑/k` style label of all the keys.
    pub fn keys_label(&self) -> String {
        let labels: Vec<String> = self.keys.iter().map(|k| k.label()).collect();
        labels.join("/")
    }
}

const fn cmd(keys: &'static [KeyPat], c: Command, hint: &'static str) -> Binding {
    Binding {
        keys,
        bound: Bound::Cmd(c),
        hint,
        footer: true,
    }
}

/// Shown only in the `?` help, not in the footer.
const fn more(keys: &'static [KeyPat], c: Command, hint: &'static str) -> Binding {
    Binding {
        keys,
        bound: Bound::Cmd(c),
        hint,
        footer: false,
    }
}

use KeyCode as K;
use KeyPat::{Char, Ctrl, Key, Shift};

const UP: &[KeyPat] = &[Key(K::Up), Char('k')];
const DOWN: &[KeyPat] = &[Key(K::Down), Char('j')];
const BACK: &[KeyPat] = &[Key(K::Esc), Char('q')];
const ENTER: &[KeyPat] = &[Key(K::Enter)];

const FOCUS_MENU: Binding = more(
    &[Key(K::Tab), Key(K::BackTab)],
    Command::FocusOther,
    "focus menu",
);
const BACK_BINDING: Binding = cmd(BACK, Command::Back, "back");

/// A list screen's table: the movement keys, its own, then Tab (to the
/// menu) and Esc/q (back).
macro_rules! list_screen {
    ($($binding:expr),* $(,)?) => {
        &[
            MOVE[0], MOVE[1], MOVE[2], MOVE[3], MOVE[4], MOVE[5],
            $($binding,)*
            FOCUS_MENU,
            BACK_BINDING,
        ]
    };
}

const MOVE: [Binding; 6] = [
    cmd(UP, Command::Up, "up"),
    cmd(DOWN, Command::Down, "down"),
    more(&[Key(K::PageUp)], Command::PageUp, "page up"),
    more(&[Key(K::PageDown)], Command::PageDown, "page down"),
    more(&[Key(K::Home), Char('g')], Command::Home, "first"),
    more(&[Key(K::End), Char('G')], Command::End, "last"),
];

/// Work everywhere (except that `?` types into text fields).
pub const GLOBAL: &[Binding] = &[
    cmd(&[Ctrl('c')], Command::Quit, "quit"),
    cmd(&[Char('?')], Command::Help, "help"),
];

pub const MENU: &[Binding] = &[
    MOVE[0],
    MOVE[1],
    cmd(&[Key(K::Enter), Key(K::Right)], Command::Open, "open"),
    more(&[Char('l')], Command::Open, "open"),
    more(
        &[Key(K::Tab), Key(K::BackTab)],
        Command::FocusOther,
        "focus content",
    ),
    more(&[Char('1')], Command::Goto(Screen::Overview), "Overview"),
    more(
        &[Char('2')],
        Command::Goto(Screen::Domains),
        "Domain Management",
    ),
    more(
        &[Char('3')],
        Command::Goto(Screen::Sessions),
        "Live Sessions",
    ),
    more(&[Char('4')], Command::Goto(Screen::Events), "Event Log"),
    cmd(BACK, Command::Back, "quit"),
];

pub const OVERVIEW: &[Binding] = &[
    MOVE[0],
    MOVE[1],
    cmd(ENTER, Command::Open, "manage domain"),
    more(
        &[Key(K::Tab), Key(K::BackTab)],
        Command::FocusOther,
        "focus menu",
    ),
    cmd(BACK, Command::Back, "menu"),
];

pub const DOMAINS: &[Binding] = list_screen![
    cmd(ENTER, Command::Open, "manage"),
    cmd(&[Char('e')], Command::Edit, "timeout"),
    cmd(&[Char('/')], Command::Filter, "filter"),
    cmd(&[Char('a')], Command::AddDomain, "add"),
    cmd(&[Char('d')], Command::DeleteDomain, "delete"),
    cmd(&[Char('o')], Command::ToggleOnline, "on/offline"),
    more(&[Char('r')], Command::Reload, "reload the file"),
];

/// While typing a filter.
pub const FILTER: &[Binding] = &[
    cmd(ENTER, Command::Open, "keep filter"),
    cmd(&[Key(K::Esc)], Command::Cancel, "clear filter"),
    more(&[Key(K::Up)], Command::Up, "up"),
    more(&[Key(K::Down)], Command::Down, "down"),
    Binding {
        keys: &[KeyPat::Text],
        bound: Bound::Type,
        hint: "to filter",
        footer: true,
    },
];

/// A Manage tab's table: switching tabs, the tab's own keys, then reload
/// and back. One table per tab, so the footer never offers a key that does
/// nothing on the tab in view.
macro_rules! manage_tab {
    ($($binding:expr),* $(,)?) => {
        &[
            cmd(&[Key(K::Tab)], Command::NextTab, "tabs"),
            more(&[Key(K::BackTab)], Command::PrevTab, "previous tab"),
            more(&[Key(K::Right), Char('l')], Command::NextTab, "next tab"),
            more(&[Key(K::Left), Char('h')], Command::PrevTab, "previous tab"),
            $($binding,)*
            more(&[Char('r')], Command::Reload, "reload the file"),
            BACK_BINDING,
        ]
    };
}

const ON_OFFLINE: Binding = cmd(&[Char('o')], Command::ToggleOnline, "on/offline");

pub const MANAGE_BASIC: &[Binding] =
    manage_tab![cmd(&[Char('e')], Command::Edit, "edit timeout"), ON_OFFLINE,];

pub const MANAGE_ORIGIN: &[Binding] =
    manage_tab![cmd(&[Char('e')], Command::Edit, "edit origins"), ON_OFFLINE,];

pub const MANAGE_ADVANCED: &[Binding] = manage_tab![
    cmd(&[Char('e')], Command::Edit, "edit"),
    cmd(&[Char(' ')], Command::Toggle, "switch"),
    ON_OFFLINE,
];

pub const MANAGE_SESSIONS: &[Binding] = manage_tab![
    MOVE[0],
    MOVE[1],
    cmd(ENTER, Command::Open, "frames"),
    cmd(&[Char('x')], Command::CloseSession, "close session"),
];

/// The domain list of a Tencent Cloud account: no add, delete or
/// online/offline (the account's own console does those).
pub const CLOUD_DOMAINS: &[Binding] = list_screen![
    cmd(ENTER, Command::Open, "manage"),
    cmd(&[Char('e')], Command::Edit, "timeout"),
    cmd(&[Char('/')], Command::Filter, "filter"),
    cmd(&[Char('r')], Command::Reload, "reload from Tencent Cloud"),
];

/// A Tencent Cloud domain's Manage tab: `p` probes its edge on every tab.
macro_rules! cloud_manage_tab {
    ($($binding:expr),* $(,)?) => {
        &[
            cmd(&[Key(K::Tab)], Command::NextTab, "tabs"),
            more(&[Key(K::BackTab)], Command::PrevTab, "previous tab"),
            more(&[Key(K::Right), Char('l')], Command::NextTab, "next tab"),
            more(&[Key(K::Left), Char('h')], Command::PrevTab, "previous tab"),
            $($binding,)*
            cmd(&[Char('p')], Command::Probe, "probe the edge"),
            more(&[Char('r')], Command::Reload, "reload from Tencent Cloud"),
            BACK_BINDING,
        ]
    };
}

pub const CLOUD_MANAGE_BASIC: &[Binding] =
    cloud_manage_tab![cmd(&[Char('e')], Command::Edit, "edit timeout")];

pub const CLOUD_MANAGE_ORIGIN: &[Binding] = cloud_manage_tab![];

pub const CLOUD_MANAGE_ADVANCED: &[Binding] = cloud_manage_tab![
    cmd(&[Char('e')], Command::Edit, "edit"),
    cmd(&[Char(' ')], Command::Toggle, "switch"),
];

pub const CLOUD_MANAGE_SESSIONS: &[Binding] = cloud_manage_tab![];

/// Live Sessions and the Event Log on an account: nothing to act on.
pub const CLOUD_NO_SESSIONS: &[Binding] = &[FOCUS_MENU, BACK_BINDING];

pub const SESSIONS: &[Binding] = list_screen![
    cmd(ENTER, Command::Open, "frames"),
    cmd(&[Char('x')], Command::CloseSession, "close"),
    cmd(&[Char('s')], Command::CycleSort, "sort"),
];

pub const SESSION_DETAIL: &[Binding] = &[
    MOVE[0],
    MOVE[1],
    cmd(&[Char('x')], Command::CloseSession, "close session"),
    cmd(BACK, Command::Back, "back"),
];

pub const EVENTS: &[Binding] = list_screen![
    cmd(&[Char('/')], Command::Filter, "filter"),
    cmd(&[Char('f')], Command::CycleKind, "kind"),
    cmd(&[Char('d')], Command::CycleDomain, "domain"),
    cmd(&[Char('c')], Command::ClearFilters, "clear"),
];

pub const EDIT_WEBSOCKET: &[Binding] = &[
    cmd(&[Char(' ')], Command::Toggle, "switch"),
    cmd(&[Key(K::Left), Key(K::Right)], Command::Adjust(0), "1 s"),
    cmd(
        &[Key(K::PageUp), Key(K::PageDown)],
        Command::Adjust(0),
        "10 s",
    ),
    more(
        &[Shift(K::Left), Shift(K::Right)],
        Command::Adjust(0),
        "±10 s",
    ),
    Binding {
        keys: &[KeyPat::Digits, Key(K::Backspace)],
        bound: Bound::Type,
        hint: "seconds",
        footer: true,
    },
    more(
        &[Key(K::Tab), Key(K::BackTab)],
        Command::NextTab,
        "OK / Cancel",
    ),
    cmd(ENTER, Command::Open, "OK"),
    cmd(&[Key(K::Esc)], Command::Cancel, "cancel"),
    more(
        &[Char('r')],
        Command::Reload,
        "reload the file after a conflict",
    ),
];

pub const FORM: &[Binding] = &[
    cmd(&[Key(K::Tab), Key(K::Down)], Command::NextTab, "next field"),
    more(
        &[Key(K::BackTab), Key(K::Up)],
        Command::PrevTab,
        "previous field",
    ),
    cmd(&[Key(K::Left), Key(K::Right)], Command::Adjust(0), "choose"),
    cmd(ENTER, Command::Open, "save"),
    cmd(&[Key(K::Esc)], Command::Cancel, "cancel"),
    more(
        &[Ctrl('r')],
        Command::Reload,
        "reload the file after a conflict",
    ),
    Binding {
        keys: &[KeyPat::Text],
        bound: Bound::Type,
        hint: "type",
        footer: false,
    },
];

pub const CONFIRM: &[Binding] = &[
    cmd(&[Char('y'), Key(K::Enter)], Command::Open, "yes"),
    cmd(&[Char('n'), Key(K::Esc), Char('q')], Command::Cancel, "no"),
];

/// The quit question of a console whose sessions cannot be kept (the demo):
/// no `k` to offer and then refuse.
pub const CONFIRM_QUIT_CLOSING: &[Binding] = &[
    cmd(&[Char('y'), Key(K::Enter)], Command::Open, "close them"),
    cmd(
        &[Char('n'), Key(K::Esc), Char('q')],
        Command::Cancel,
        "cancel",
    ),
];

/// The quit question while sessions are live (DESIGN §7).
pub const CONFIRM_QUIT: &[Binding] = &[
    cmd(
        &[Char('k')],
        Command::KeepSessions,
        "keep them running in a background relay",
    ),
    cmd(&[Char('y'), Key(K::Enter)], Command::Open, "close them"),
    cmd(
        &[Char('n'), Key(K::Esc), Char('q')],
        Command::Cancel,
        "cancel",
    ),
];

pub const MESSAGE: &[Binding] = &[
    cmd(
        &[Key(K::Enter), Key(K::Esc), Char('q')],
        Command::Cancel,
        "close",
    ),
    more(&[Char('r')], Command::Reload, "reload the file"),
];

pub const HELP: &[Binding] = &[
    MOVE[0],
    MOVE[1],
    cmd(
        &[Key(K::Esc), Char('q'), Char('?')],
        Command::Back,
        "close help",
    ),
];

/// Which table is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Menu,
    Overview,
    Domains,
    Filter,
    Manage(ManageTab),
    /// The domain list and Manage tabs on a Tencent Cloud account.
    CloudDomains,
    CloudManage(ManageTab),
    /// Live Sessions and the Event Log on a Tencent Cloud account.
    CloudNoSessions,
    Sessions,
    SessionDetail,
    Events,
    EditWebSocket,
    Form,
    Confirm,
    ConfirmQuit,
    /// The quit question when no background relay can keep the sessions.
    ConfirmQuitClosing,
    Message,
    Help,
}

impl Context {
    pub fn table(self) -> &'static [Binding] {
        match self {
            Context::Menu => MENU,
            Context::Overview => OVERVIEW,
            Context::Domains => DOMAINS,
            Context::Filter => FILTER,
            Context::Manage(ManageTab::Basic) => MANAGE_BASIC,
            Context::Manage(ManageTab::Origin) => MANAGE_ORIGIN,
            Context::Manage(ManageTab::Advanced) => MANAGE_ADVANCED,
            Context::Manage(ManageTab::Sessions) => MANAGE_SESSIONS,
            Context::CloudDomains => CLOUD_DOMAINS,
            Context::CloudManage(ManageTab::Basic) => CLOUD_MANAGE_BASIC,
            Context::CloudManage(ManageTab::Origin) => CLOUD_MANAGE_ORIGIN,
            Context::CloudManage(ManageTab::Advanced) => CLOUD_MANAGE_ADVANCED,
            Context::CloudManage(ManageTab::Sessions) => CLOUD_MANAGE_SESSIONS,
            Context::CloudNoSessions => CLOUD_NO_SESSIONS,
            Context::Sessions => SESSIONS,
            Context::SessionDetail => SESSION_DETAIL,
            Context::Events => EVENTS,
            Context::EditWebSocket => EDIT_WEBSOCKET,
            Context::Form => FORM,
            Context::Confirm => CONFIRM,
            Context::ConfirmQuit => CONFIRM_QUIT,
            Context::ConfirmQuitClosing => CONFIRM_QUIT_CLOSING,
            Context::Message => MESSAGE,
            Context::Help => HELP,
        }
    }

    /// Whether printable keys type text here (so `?` is not help).
    pub fn types_text(self) -> bool {
        matches!(self, Context::Filter | Context::Form)
    }

    pub fn title(self) -> &'static str {
        match self {
            Context::Menu => "Menu",
            Context::Overview => "Overview",
            Context::Domains => "Domain list",
            Context::Filter => "Filter",
            Context::Manage(_) => "Manage domain",
            Context::CloudDomains => "Domain list (Tencent Cloud)",
            Context::CloudManage(_) => "Manage domain (Tencent Cloud)",
            Context::CloudNoSessions => "Sessions (Tencent Cloud)",
            Context::Sessions => "Live Sessions",
            Context::SessionDetail => "Session",
            Context::Events => "Event Log",
            Context::EditWebSocket => "Edit WebSocket timeout",
            Context::Form => "Form",
            Context::Confirm => "Confirmation",
            Context::ConfirmQuit | Context::ConfirmQuitClosing => "Quit",
            Context::Message => "Message",
            Context::Help => "Help",
        }
    }
}

/// The action a key press means in `context`, or `None` if it means nothing.
pub fn action_for(context: Context, key: &KeyEvent) -> Option<Action> {
    // Terminals with the kitty protocol (and Windows) also report releases;
    // acting on them would fire every toggle twice.
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let global = GLOBAL
        .iter()
        .filter(|b| !(context.types_text() && b.keys.contains(&Char('?'))));
    let binding = context
        .table()
        .iter()
        .chain(global)
        .find(|b| b.keys.iter().any(|k| k.matches(key)))?;
    match binding.bound {
        Bound::Cmd(Command::Adjust(_)) => Some(Action::Cmd(Command::Adjust(adjust_step(key)))),
        Bound::Cmd(c) => Some(Action::Cmd(c)),
        Bound::Type => to_input_request(&Event::Key(*key)).map(Action::Input),
    }
}

/// ←/→ move 1, Shift-←/→ and PgUp/PgDn move 10.
fn adjust_step(key: &KeyEvent) -> i16 {
    let big = key.modifiers.contains(KeyModifiers::SHIFT)
        || matches!(key.code, KeyCode::PageUp | KeyCode::PageDown);
    let sign = if matches!(key.code, KeyCode::Left | KeyCode::PageDown) {
        -1
    } else {
        1
    };
    if big { sign * 10 } else { sign }
}

/// How the keys bound to `command` in `context` are written (`e`,
/// `Space`), for hints inside a screen: from the same table, so they
/// never drift from what the keys do.
pub fn keys_for(context: Context, command: Command) -> Option<String> {
    context
        .table()
        .iter()
        .find(|b| b.bound == Bound::Cmd(command))
        .map(Binding::keys_label)
}

/// The footer's bindings for a context: its own, then the global ones.
pub fn footer(context: Context) -> impl Iterator<Item = &'static Binding> {
    let global = GLOBAL
        .iter()
        .filter(move |b| !(context.types_text() && b.keys.contains(&Char('?'))));
    context.table().iter().filter(|b| b.footer).chain(global)
}

/// The bindings of `context` that run `command`, for hints drawn outside
/// the footer (a card's buttons, a dialog's notes): what they say is then
/// what the keys do. `Adjust` matches every step size.
pub fn bindings_for(context: Context, command: Command) -> impl Iterator<Item = &'static Binding> {
    context
        .table()
        .iter()
        .filter(move |b| match (b.bound, command) {
            (Bound::Cmd(Command::Adjust(_)), Command::Adjust(_)) => true,
            (Bound::Cmd(c), _) => c == command,
            (Bound::Type, _) => false,
        })
}

/// The binding of `context` that types into its field.
pub fn typing_binding(context: Context) -> Option<&'static Binding> {
    context.table().iter().find(|b| b.bound == Bound::Type)
}
