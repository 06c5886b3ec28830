//! `update(&mut App, Action) -> Vec<Effect>`: the only place state changes.

use tui_input::InputRequest;

use crate::config::{DomainName, Edit, LIMITATION_TEXT, Status as DomainStatus};
use crate::relay::{CloseCause, RelayEvent};

use super::action::{Action, Command, Effect, SaveError, SaveErrorKind};
use super::dialog::{Confirm, Dialog, Form, FormKind, Message, WsDraft};
use super::{App, Context, Focus, ManageState, ManageTab, Screen, SessionDetail};

const PAGE: isize = 10;

pub fn update(app: &mut App, action: Action) -> Vec<Effect> {
    match action {
        Action::Cmd(cmd) => command(app, cmd),
        Action::Input(req) => input(app, req),
        Action::Relay(event) => {
            relay_event(app, event);
            Vec::new()
        }
        Action::Saved { config, edit } => saved(app, config, &edit),
        Action::SaveFailed(error) => {
            save_failed(app, error);
            Vec::new()
        }
        Action::Reloaded(result) => reloaded(app, result),
        Action::ConfigChanged(config) => {
            config_changed(app, config);
            Vec::new()
        }
        Action::Cloud(event) => super::cloud::event(app, event),
    }
}

fn command(app: &mut App, cmd: Command) -> Vec<Effect> {
    // Ctrl-C works from anywhere; a second Ctrl-C at the question quits.
    if cmd == Command::Quit {
        return match app.dialog {
            Some(Dialog::Confirm(Confirm::Quit { .. })) => vec![Effect::Quit],
            _ => request_quit(app),
        };
    }
    if cmd == Command::Help && app.help.is_none() {
        app.help = Some(Default::default());
        return Vec::new();
    }
    let context = app.context();
    if !matches!(context, Context::EditWebSocket | Context::Form) {
        app.status = None;
    }
    match context {
        Context::Help => {
            help(app, cmd);
            Vec::new()
        }
        Context::EditWebSocket => edit_dialog(app, cmd),
        Context::Form => form(app, cmd),
        Context::Confirm | Context::ConfirmQuit | Context::ConfirmQuitClosing => confirm(app, cmd),
        Context::Message => message(app, cmd),
        Context::Menu => menu(app, cmd),
        Context::Overview => overview(app, cmd),
        Context::Domains | Context::CloudDomains => domain_list(app, cmd),
        Context::Filter => {
            filter(app, cmd);
            Vec::new()
        }
        Context::Manage(_) | Context::CloudManage(_) => manage(app, cmd),
        Context::CloudNoSessions => {
            if matches!(cmd, Command::Back | Command::FocusOther) {
                app.focus = Focus::Menu;
            }
            Vec::new()
        }
        Context::Sessions => sessions(app, cmd),
        Context::SessionDetail => session_detail(app, cmd),
        Context::Events => {
            events(app, cmd);
            Vec::new()
        }
    }
}

fn request_quit(app: &mut App) -> Vec<Effect> {
    let live = app.relay.len();
    // Attached: quitting detaches and the relay keeps every session.
    if live == 0 || app.relay.remote().is_some() {
        vec![Effect::Quit]
    } else {
        app.help = None;
        app.dialog = Some(Dialog::Confirm(Confirm::Quit {
            live,
            sessions_stay: app.settings.sessions_stay,
        }));
        Vec::new()
    }
}

fn help(app: &mut App, cmd: Command) {
    // The help scrolls by at most its own length (its keys, the global
    // ones, headings and legend), so ↑ answers at once after a long ↓.
    let lines = app.context_behind_help().table().len() + super::keymap::GLOBAL.len() + 10;
    let Some(cursor) = app.help.as_mut() else {
        return;
    };
    match cmd {
        Command::Up => cursor.move_by(-1, lines),
        Command::Down => cursor.move_by(1, lines),
        Command::Back | Command::Help | Command::Cancel => app.help = None,
        _ => {}
    }
}

fn menu(app: &mut App, cmd: Command) -> Vec<Effect> {
    match cmd {
        Command::Up => app.screen = app.screen.step(-1),
        Command::Down => app.screen = app.screen.step(1),
        Command::Open | Command::FocusOther => app.focus = Focus::Content,
        Command::Goto(screen) => {
            app.screen = screen;
            app.focus = Focus::Content;
        }
        Command::Back => return request_quit(app),
        _ => {}
    }
    Vec::new()
}

/// Moves a cursor for the usual movement commands; false for other commands.
fn movement(cursor: &mut super::ListCursor, cmd: Command, len: usize) -> bool {
    match cmd {
        Command::Up => cursor.move_by(-1, len),
        Command::Down => cursor.move_by(1, len),
        Command::PageUp => cursor.move_by(-PAGE, len),
        Command::PageDown => cursor.move_by(PAGE, len),
        Command::Home => cursor.first(),
        Command::End => cursor.last(len),
        _ => return false,
    }
    true
}

fn overview(app: &mut App, cmd: Command) -> Vec<Effect> {
    let len = app.config.domains.len();
    if movement(&mut app.overview, cmd, len) {
        return Vec::new();
    }
    match cmd {
        Command::Open => {
            if let Some(d) = app.config.domains.get(app.overview.index) {
                let name = d.name.clone();
                app.screen = Screen::Domains;
                app.domains.filter.reset();
                app.domains.cursor.index = app.overview.index;
                open_manage(app, name);
            }
        }
        Command::Back | Command::FocusOther => app.focus = Focus::Menu,
        Command::Goto(s) => goto(app, s),
        _ => {}
    }
    Vec::new()
}

fn goto(app: &mut App, screen: Screen) {
    app.screen = screen;
    app.focus = Focus::Content;
}

fn open_manage(app: &mut App, domain: DomainName) {
    app.domains.manage = Some(ManageState {
        domain,
        tab: ManageTab::Basic,
        cursor: Default::default(),
        detail: None,
    });
    app.focus = Focus::Content;
}

fn domain_list(app: &mut App, cmd: Command) -> Vec<Effect> {
    let len = app.visible_domains().len();
    if movement(&mut app.domains.cursor, cmd, len) {
        return Vec::new();
    }
    let selected = app.selected_domain().map(|d| d.name.clone());
    match cmd {
        Command::Open => {
            if let Some(name) = selected {
                open_manage(app, name);
            }
        }
        Command::Filter => app.domains.filtering = true,
        Command::Edit => {
            if let Some(name) = selected {
                open_ws_dialog(app, &name, false);
            }
        }
        Command::AddDomain => app.dialog = Some(Dialog::Form(Form::add_domain())),
        Command::DeleteDomain => {
            if let Some(domain) = selected {
                let live = app.live_on(&domain);
                app.dialog = Some(Dialog::Confirm(Confirm::DeleteDomain {
                    domain: domain.into_string(),
                    live,
                }));
            }
        }
        Command::ToggleOnline => {
            if let Some(name) = selected {
                return toggle_online(app, &name);
            }
        }
        Command::Reload => return vec![super::cloud::reload(app)],
        Command::Back if !app.domains.filter.value().is_empty() => {
            app.domains.filter.reset();
            app.domains.cursor.first();
        }
        Command::Back | Command::FocusOther => app.focus = Focus::Menu,
        _ => {}
    }
    Vec::new()
}

fn toggle_online(app: &mut App, name: &str) -> Vec<Effect> {
    let Some(domain) = app.config.domain(name) else {
        return Vec::new();
    };
    let domain_name = domain.name.to_string();
    let live = app.live_on(&domain.name);
    match domain.status {
        DomainStatus::Online if live > 0 => {
            app.dialog = Some(Dialog::Confirm(Confirm::Offline {
                domain: domain_name,
                live,
            }));
            Vec::new()
        }
        status => {
            let status = match status {
                DomainStatus::Online => DomainStatus::Offline,
                DomainStatus::Offline => DomainStatus::Online,
            };
            vec![Effect::Save(Edit::SetStatus {
                domain: domain_name,
                status,
            })]
        }
    }
}

/// Opens the edit dialog, or explains why the domain cannot configure it.
fn open_ws_dialog(app: &mut App, name: &str, toggled: bool) {
    let Some(domain) = app.config.domain(name) else {
        return;
    };
    if !domain.can_configure_websocket() {
        app.dialog = Some(Dialog::Message(Message {
            title: format!("WebSocket timeout · {}", domain.name),
            body: format!(
                "{} is a {} domain. {LIMITATION_TEXT}",
                domain.name,
                domain.acceleration.label().to_lowercase()
            ),
            error: None,
        }));
        return;
    }
    let mut draft = WsDraft::new(domain);
    if toggled {
        draft.toggle();
    }
    app.dialog = Some(Dialog::EditWebSocket(draft));
}

fn filter(app: &mut App, cmd: Command) {
    let (input, editing, cursor) = match app.screen {
        Screen::Events => (&mut app.log.text, &mut app.log.editing, &mut app.log.cursor),
        _ => (
            &mut app.domains.filter,
            &mut app.domains.filtering,
            &mut app.domains.cursor,
        ),
    };
    match cmd {
        Command::Open => *editing = false,
        Command::Cancel | Command::Back => {
            input.reset();
            *editing = false;
            cursor.first();
        }
        _ => {}
    }
    // The list as filtered now (a reset filter shows more rows).
    let len = match app.screen {
        Screen::Events => app.log.filtered().len(),
        _ => app.visible_domains().len(),
    };
    let cursor = match app.screen {
        Screen::Events => &mut app.log.cursor,
        _ => &mut app.domains.cursor,
    };
    match cmd {
        Command::Up => cursor.move_by(-1, len),
        Command::Down => cursor.move_by(1, len),
        // The list may have shrunk under the cursor.
        _ => cursor.clamp(len),
    }
}

fn manage(app: &mut App, cmd: Command) -> Vec<Effect> {
    let Some(m) = app.domains.manage.as_ref() else {
        return Vec::new();
    };
    let (name, tab) = (m.domain.clone(), m.tab);
    let Some(domain) = app.config.domain(&name) else {
        // Deleted under our feet (a reload): back to the list.
        app.domains.manage = None;
        return Vec::new();
    };
    let session_ids: Vec<_> = app.sessions_of(&domain.name).iter().map(|s| s.id).collect();
    let origins_form = Form::origins(domain);
    let Some(m) = app.domains.manage.as_mut() else {
        return Vec::new();
    };
    match cmd {
        Command::NextTab => m.tab = tab.step(1),
        Command::PrevTab => m.tab = tab.step(-1),
        Command::Back => app.domains.manage = None,
        Command::Edit => match tab {
            ManageTab::Advanced | ManageTab::Basic => open_ws_dialog(app, &name, false),
            ManageTab::Origin => app.dialog = Some(Dialog::Form(origins_form)),
            ManageTab::Sessions => {}
        },
        Command::Toggle if tab == ManageTab::Advanced => open_ws_dialog(app, &name, true),
        Command::ToggleOnline => return toggle_online(app, &name),
        Command::Reload => return vec![super::cloud::reload(app)],
        Command::Probe => return super::cloud::probe(app, &name),
        _ if tab == ManageTab::Sessions => {
            if movement(&mut m.cursor, cmd, session_ids.len()) {
                return Vec::new();
            }
            let selected = session_ids.get(m.cursor.index).copied();
            match (cmd, selected) {
                (Command::Open, Some(id)) => {
                    m.detail = Some(SessionDetail {
                        id,
                        cursor: Default::default(),
                    });
                }
                (Command::CloseSession, Some(id)) => confirm_close(app, id),
                _ => {}
            }
        }
        _ => {}
    }
    Vec::new()
}

fn confirm_close(app: &mut App, id: crate::relay::SessionId) {
    if let Some(s) = app.live.iter().find(|s| s.id == id) {
        app.dialog = Some(Dialog::Confirm(Confirm::CloseSession {
            id,
            domain: s.domain.to_string(),
            client: s.client.to_string(),
        }));
    }
}

fn sessions(app: &mut App, cmd: Command) -> Vec<Effect> {
    let len = app.live.len();
    if movement(&mut app.sessions.cursor, cmd, len) {
        app.sessions.selected = app.live.get(app.sessions.cursor.index).map(|s| s.id);
        return Vec::new();
    }
    let selected = app.sessions.selected;
    match cmd {
        Command::Open => {
            if let Some(id) = selected {
                app.sessions.detail = Some(SessionDetail {
                    id,
                    cursor: Default::default(),
                });
            }
        }
        Command::CloseSession => {
            if let Some(id) = selected {
                confirm_close(app, id);
            }
        }
        Command::CycleSort => {
            app.sessions.sort = app.sessions.sort.next();
            app.sessions.sort.sort(&mut app.live);
            app.follow_selected_session();
            app.set_status(format!("Sorted by {}", app.sessions.sort.label()));
        }
        Command::Back | Command::FocusOther => app.focus = Focus::Menu,
        _ => {}
    }
    Vec::new()
}

fn session_detail(app: &mut App, cmd: Command) -> Vec<Effect> {
    let detail = match app.screen {
        Screen::Sessions => app.sessions.detail.as_mut(),
        _ => app.domains.manage.as_mut().and_then(|m| m.detail.as_mut()),
    };
    let Some(detail) = detail else {
        return Vec::new();
    };
    let id = detail.id;
    let frames = crate::relay::registry::RECENT_FRAMES;
    match cmd {
        Command::Back => match app.screen {
            Screen::Sessions => app.sessions.detail = None,
            _ => {
                if let Some(m) = app.domains.manage.as_mut() {
                    m.detail = None;
                }
            }
        },
        Command::CloseSession => confirm_close(app, id),
        other => {
            movement(&mut detail.cursor, other, frames);
        }
    }
    Vec::new()
}

fn events(app: &mut App, cmd: Command) {
    let len = app.log.filtered().len();
    if movement(&mut app.log.cursor, cmd, len) {
        return;
    }
    match cmd {
        Command::Filter => app.log.editing = true,
        Command::CycleKind => {
            app.log.kind = app.log.kind.next();
            app.log.cursor.first();
        }
        Command::CycleDomain => {
            let names: Vec<DomainName> =
                app.config.domains.iter().map(|d| d.name.clone()).collect();
            app.log.domain = match &app.log.domain {
                None => names.first().cloned(),
                Some(current) => names
                    .iter()
                    .position(|n| n == current)
                    .and_then(|i| names.get(i + 1).cloned()),
            };
            app.log.cursor.first();
        }
        Command::ClearFilters => {
            app.log.kind = Default::default();
            app.log.domain = None;
            app.log.text.reset();
            app.log.cursor.first();
        }
        Command::Back | Command::FocusOther => app.focus = Focus::Menu,
        _ => {}
    }
}

fn edit_dialog(app: &mut App, cmd: Command) -> Vec<Effect> {
    let Some(Dialog::EditWebSocket(draft)) = app.dialog.as_mut() else {
        return Vec::new();
    };
    if draft.saving {
        return Vec::new();
    }
    match cmd {
        Command::Toggle => draft.toggle(),
        Command::Adjust(delta) => draft.adjust(delta),
        Command::NextTab | Command::PrevTab => draft.ok_focused = !draft.ok_focused,
        Command::Cancel => cancel_dialog(app),
        Command::Open if !draft.ok_focused => cancel_dialog(app),
        Command::Open => {
            if draft.field_error.is_some() {
                // The field shows why; nothing to save until it is fixed.
                return Vec::new();
            }
            if !draft.differs() {
                app.dialog = None;
                app.set_status("No change: the WebSocket settings are as they were.");
                return Vec::new();
            }
            draft.saving = true;
            draft.error = None;
            return vec![Effect::Save(draft.edit())];
        }
        Command::Reload if is_conflict(draft.error.as_ref()) => return vec![Effect::Reload],
        _ => {}
    }
    Vec::new()
}

fn is_conflict(e: Option<&SaveError>) -> bool {
    e.is_some_and(|e| e.kind == SaveErrorKind::Conflict)
}

fn cancel_dialog(app: &mut App) {
    app.dialog = None;
    app.set_status("Cancelled: nothing was changed.");
}

fn form(app: &mut App, cmd: Command) -> Vec<Effect> {
    let config = app.config.clone();
    let Some(Dialog::Form(form)) = app.dialog.as_mut() else {
        return Vec::new();
    };
    if form.saving {
        return Vec::new();
    }
    match cmd {
        Command::NextTab | Command::Down => form.move_focus(1),
        Command::PrevTab | Command::Up => form.move_focus(-1),
        Command::Adjust(delta) => form.adjust(delta, false),
        Command::Toggle => form.adjust(1, true),
        Command::Cancel => cancel_dialog(app),
        Command::Open => {
            if let Some(edit) = form.validate(&config) {
                form.saving = true;
                form.error = None;
                return vec![Effect::Save(edit)];
            }
        }
        Command::Reload if is_conflict(form.error.as_ref()) => return vec![Effect::Reload],
        _ => {}
    }
    Vec::new()
}

fn confirm(app: &mut App, cmd: Command) -> Vec<Effect> {
    let Some(Dialog::Confirm(question)) = app.dialog.as_ref() else {
        return Vec::new();
    };
    let question = question.clone();
    match cmd {
        Command::Open => {
            app.dialog = None;
            match question {
                Confirm::DeleteDomain { domain, .. } => {
                    vec![Effect::Save(Edit::RemoveDomain { domain })]
                }
                Confirm::Offline { domain, .. } => vec![Effect::Save(Edit::SetStatus {
                    domain,
                    status: DomainStatus::Offline,
                })],
                Confirm::CloseSession { id, .. } => {
                    let how = CloseCause::Operator
                        .relay_close()
                        .map(|f| format!(" ({} {})", f.code, f.reason))
                        .unwrap_or_default();
                    app.set_status(format!("Closing session #{id}{how}"));
                    vec![Effect::CloseSession(id)]
                }
                Confirm::Quit { .. } => vec![Effect::Quit],
            }
        }
        Command::KeepSessions
            if matches!(
                question,
                Confirm::Quit {
                    sessions_stay: None,
                    ..
                }
            ) =>
        {
            app.dialog = None;
            app.set_status("Handing the live sessions to a background relay…".to_string());
            vec![Effect::KeepSessions]
        }
        Command::Cancel | Command::Back => {
            app.dialog = None;
            Vec::new()
        }
        _ => Vec::new(),
    }
}

fn message(app: &mut App, cmd: Command) -> Vec<Effect> {
    let conflict = matches!(&app.dialog, Some(Dialog::Message(m)) if is_conflict(m.error.as_ref()));
    match cmd {
        Command::Reload if conflict => {
            app.dialog = None;
            vec![Effect::Reload]
        }
        Command::Cancel | Command::Back | Command::Open => {
            app.dialog = None;
            Vec::new()
        }
        _ => Vec::new(),
    }
}

fn input(app: &mut App, req: InputRequest) -> Vec<Effect> {
    match app.context() {
        Context::EditWebSocket => {
            if let Some(Dialog::EditWebSocket(d)) = app.dialog.as_mut()
                && !d.saving
            {
                d.type_key(req);
            }
        }
        Context::Form => {
            if let Some(Dialog::Form(f)) = app.dialog.as_mut()
                && !f.saving
            {
                f.type_key(req);
            }
        }
        Context::Filter => match app.screen {
            Screen::Events => {
                app.log.text.handle(req);
                app.log.cursor.first();
            }
            _ => {
                app.domains.filter.handle(req);
                app.domains.cursor.first();
            }
        },
        _ => {}
    }
    Vec::new()
}

fn relay_event(app: &mut App, event: RelayEvent) {
    match &event {
        RelayEvent::ConfigRejected { error, .. } => {
            app.set_error_status(format!("The relay refused the configuration: {error}"));
        }
        RelayEvent::Closed { id, .. } => app.relay.session_closed(*id),
        _ => {}
    }
    app.log.push(event);
}

fn saved(app: &mut App, config: std::sync::Arc<crate::config::Config>, edit: &Edit) -> Vec<Effect> {
    app.config = config.clone();
    if matches!(
        app.dialog,
        Some(Dialog::EditWebSocket(_) | Dialog::Form(_) | Dialog::Confirm(_))
    ) {
        app.dialog = None;
    }
    match edit {
        Edit::RemoveDomain { domain }
            if app
                .domains
                .manage
                .as_ref()
                .is_some_and(|m| m.domain == *domain) =>
        {
            app.domains.manage = None;
        }
        Edit::AddDomain(new) => {
            // Select the new domain so the operator sees it.
            app.domains.filter.reset();
            if let Some(i) = app
                .visible_domains()
                .iter()
                .position(|d| d.name == new.name)
            {
                app.domains.cursor.index = i;
            }
        }
        _ => {}
    }
    let len = app.visible_domains().len();
    app.domains.cursor.clamp(len);
    app.overview.clamp(app.config.domains.len());
    // Short enough for 80 columns: the status line does not wrap.
    if app.is_cloud() {
        app.set_status(format!(
            "Tencent Cloud accepted: {}. Edges may take minutes.",
            edit.describe()
        ));
    } else {
        app.set_status(format!("Saved and applied: {}.", edit.describe()));
    }
    vec![Effect::ApplyToRelay(config)]
}

fn save_failed(app: &mut App, error: SaveError) {
    match app.dialog.as_mut() {
        // The draft stays as typed: the operator fixes the cause and tries again.
        Some(Dialog::EditWebSocket(d)) => {
            d.saving = false;
            d.error = Some(error);
        }
        Some(Dialog::Form(f)) => {
            f.saving = false;
            f.error = Some(error);
        }
        _ => {
            app.dialog = Some(Dialog::Message(Message {
                title: "Could not save".to_string(),
                body: error.message.clone(),
                error: Some(error),
            }));
        }
    }
}

fn reloaded(
    app: &mut App,
    result: Result<std::sync::Arc<crate::config::Config>, SaveError>,
) -> Vec<Effect> {
    let config = match result {
        Ok(config) => config,
        Err(error) => {
            let text = format!("Reload failed: {}", error.message);
            match app.dialog.as_mut() {
                Some(Dialog::EditWebSocket(d)) => d.error = Some(error),
                Some(Dialog::Form(f)) => f.error = Some(error),
                _ => app.set_error_status(text),
            }
            return Vec::new();
        }
    };
    app.config = config.clone();
    match app.dialog.as_mut() {
        // The draft is kept; only what it is compared with changes.
        Some(Dialog::EditWebSocket(d)) => {
            if let Some(domain) = config.domain(&d.domain) {
                d.live = domain.websocket;
            }
            d.error = None;
        }
        Some(Dialog::Form(f)) => f.error = None,
        _ => {}
    }
    follow_domains(app, &config);
    app.set_status("Reloaded the file from disk; the relay uses it now.");
    vec![Effect::ApplyToRelay(config)]
}

fn config_changed(app: &mut App, config: std::sync::Arc<crate::config::Config>) {
    let before = std::mem::replace(&mut app.config, config.clone());
    match app.dialog.as_mut() {
        // The draft is kept and compared with what is in force now; the
        // dialog says the domain changed, so OK never overwrites a change
        // the operator has not seen.
        Some(Dialog::EditWebSocket(d)) => {
            if let Some(domain) = config.domain(&d.domain)
                && domain.websocket != d.live
            {
                d.changed_elsewhere.get_or_insert(d.live);
                d.live = domain.websocket;
            }
        }
        Some(Dialog::Form(f)) => {
            if let FormKind::Origins { domain } = &f.kind {
                let origins_of = |c: &crate::config::Config| {
                    c.domains
                        .iter()
                        .find(|d| d.name.as_str() == domain)
                        .map(|d| (d.origins.clone(), d.server_name.clone(), d.origin_protocol))
                };
                if origins_of(&before) != origins_of(&config) {
                    f.changed_elsewhere = true;
                }
            }
        }
        _ => {}
    }
    follow_domains(app, &config);
    app.set_status("The configuration changed outside this console and is in force now.");
}

/// After the config in force changed: a dialog on a domain that is gone
/// says so, and the lists keep their cursors in range.
fn follow_domains(app: &mut App, config: &crate::config::Config) {
    let gone = match &app.dialog {
        Some(Dialog::EditWebSocket(d)) if config.domain(&d.domain).is_none() => {
            Some(d.domain.to_string())
        }
        Some(Dialog::Form(Form {
            kind: FormKind::Origins { domain },
            ..
        })) if !config.domains.iter().any(|d| d.name.as_str() == domain) => Some(domain.clone()),
        _ => None,
    };
    if let Some(domain) = gone {
        app.dialog = Some(Dialog::Message(Message {
            title: "Domain removed".to_string(),
            body: format!(
                "{domain} is no longer in the file (someone removed it); the edit was not applied."
            ),
            error: None,
        }));
    }
    if app
        .domains
        .manage
        .as_ref()
        .is_some_and(|m| config.domain(&m.domain).is_none())
    {
        app.domains.manage = None;
    }
    let len = app.visible_domains().len();
    app.domains.cursor.clamp(len);
    app.overview.clamp(config.domains.len());
}
