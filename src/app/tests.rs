//! The console's behaviour, driven by actions and key presses — no
//! terminal, no runtime (except the paused clock for session fixtures).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tui_input::InputRequest;

use super::*;
use crate::config::{Config, Edit, NewDomain, Status as DomainStatus, Switch};
use crate::relay::{NewSession, Registry, SessionGuard};

pub use super::fixtures::TEST_CONFIG;

pub fn config() -> Arc<Config> {
    Arc::new(Config::parse(TEST_CONFIG, Path::new("test.toml")).unwrap())
}

pub fn app() -> App {
    App::new(config(), Arc::new(Registry::new()), Settings::default())
}

fn run(app: &mut App, cmds: &[Command]) -> Vec<Effect> {
    cmds.iter()
        .flat_map(|c| update(app, Action::Cmd(*c)))
        .collect()
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        update(app, Action::Input(InputRequest::InsertChar(c)));
    }
}

fn draft(app: &App) -> &WsDraft {
    match &app.dialog {
        Some(Dialog::EditWebSocket(d)) => d,
        other => panic!("expected the edit dialog, got {other:?}"),
    }
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// Menu → Domain Management → cloud.tencent.com → Manage → Advanced.
fn to_advanced(app: &mut App) {
    use Command::*;
    run(app, &[Down, Open, Down, Open, NextTab, NextTab]);
    assert_eq!(app.context(), Context::Manage(ManageTab::Advanced));
    let m = app.domains.manage.as_ref().unwrap();
    assert_eq!(
        (m.domain.as_str(), m.tab),
        ("cloud.tencent.com", ManageTab::Advanced)
    );
}

pub fn session(registry: &Arc<Registry>, domain: &str, timeout: Option<u64>) -> SessionGuard {
    registry.register(NewSession {
        domain: domain.into(),
        client: "127.0.0.1:50000".parse().unwrap(),
        origin: "127.0.0.1:9001".into(),
        path: "/".into(),
        timeout: timeout.map(Duration::from_secs),
    })
}

#[test]
fn navigation_follows_the_console_steps_and_back() {
    let mut app = app();
    assert_eq!(app.context(), Context::Menu);
    to_advanced(&mut app);
    update(&mut app, Command::PrevTab.into());
    assert_eq!(app.domains.manage.as_ref().unwrap().tab, ManageTab::Origin);
    // Tab wraps around the four tabs.
    run(
        &mut app,
        &[Command::NextTab, Command::NextTab, Command::NextTab],
    );
    assert_eq!(app.domains.manage.as_ref().unwrap().tab, ManageTab::Basic);
    // Esc: Manage → list → menu; q on the menu quits (nothing live).
    update(&mut app, Command::Back.into());
    assert_eq!(app.context(), Context::Domains);
    update(&mut app, Command::Back.into());
    assert_eq!(app.context(), Context::Menu);
    assert_eq!(update(&mut app, Command::Back.into()), vec![Effect::Quit]);
}

#[test]
fn the_menu_moves_through_every_screen_and_wraps() {
    let mut app = app();
    let mut seen = vec![app.screen];
    for _ in 0..4 {
        update(&mut app, Command::Down.into());
        seen.push(app.screen);
    }
    assert_eq!(
        seen,
        [
            Screen::Overview,
            Screen::Domains,
            Screen::Sessions,
            Screen::Events,
            Screen::Overview
        ]
    );
    update(&mut app, Command::Goto(Screen::Events).into());
    assert_eq!(
        (app.context(), app.focus),
        (Context::Events, Focus::Content)
    );
    update(&mut app, Command::FocusOther.into());
    assert_eq!(app.context(), Context::Menu);
}

#[test]
fn keys_map_to_actions_per_screen() {
    let mut app = app();
    let press = |app: &App, k: KeyEvent| app.action_for_key(&k);
    assert!(matches!(
        press(&app, key(KeyCode::Char('q'))),
        Some(Action::Cmd(Command::Back))
    ));
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert!(matches!(
        press(&app, ctrl_c),
        Some(Action::Cmd(Command::Quit))
    ));
    // Releases (kitty protocol) never act.
    let mut release = key(KeyCode::Enter);
    release.kind = KeyEventKind::Release;
    assert!(press(&app, release).is_none());

    to_advanced(&mut app);
    update(&mut app, Command::Edit.into());
    assert_eq!(app.context(), Context::EditWebSocket);
    assert!(matches!(
        press(&app, key(KeyCode::Char('7'))),
        Some(Action::Input(InputRequest::InsertChar('7')))
    ));
    assert!(press(&app, key(KeyCode::Char('x'))).is_none());
    assert!(matches!(
        press(&app, key(KeyCode::PageDown)),
        Some(Action::Cmd(Command::Adjust(-10)))
    ));
    assert!(matches!(
        press(&app, KeyEvent::new(KeyCode::Right, KeyModifiers::SHIFT)),
        Some(Action::Cmd(Command::Adjust(10)))
    ));
    assert!(matches!(
        press(&app, key(KeyCode::Left)),
        Some(Action::Cmd(Command::Adjust(-1)))
    ));
    assert!(matches!(
        press(&app, key(KeyCode::Char(' '))),
        Some(Action::Cmd(Command::Toggle))
    ));

    // In a filter, `?` and `q` are text, not help and back.
    let mut app = super::tests::app();
    run(&mut app, &[Command::Down, Command::Open, Command::Filter]);
    assert_eq!(app.context(), Context::Filter);
    assert!(matches!(
        press(&app, key(KeyCode::Char('q'))),
        Some(Action::Input(InputRequest::InsertChar('q')))
    ));
    assert!(matches!(
        press(&app, key(KeyCode::Char('?'))),
        Some(Action::Input(InputRequest::InsertChar('?')))
    ));
}

#[test]
fn the_footer_and_help_come_from_the_key_tables() {
    for context in [
        Context::Menu,
        Context::Domains,
        Context::Manage(ManageTab::Basic),
        Context::Manage(ManageTab::Origin),
        Context::Manage(ManageTab::Advanced),
        Context::Manage(ManageTab::Sessions),
        Context::Sessions,
        Context::EditWebSocket,
    ] {
        for b in keymap::footer(context) {
            let same = |t: &keymap::Binding| t.hint == b.hint && t.keys == b.keys;
            assert!(
                context.table().iter().any(same) || keymap::GLOBAL.iter().any(same),
                "{context:?}: {} is not from its table",
                b.hint
            );
        }
    }
}

#[test]
fn editing_the_timeout_saves_and_applies_it() {
    let mut app = app();
    to_advanced(&mut app);
    update(&mut app, Command::Edit.into());
    assert_eq!(draft(&app).timeout, 100);
    // The first digit replaces the value shown, like a selected field.
    type_text(&mut app, "20");
    assert_eq!((draft(&app).timeout, draft(&app).field.value()), (20, "20"));
    // The slider and the field stay in sync both ways.
    update(&mut app, Command::Adjust(1).into());
    assert_eq!((draft(&app).timeout, draft(&app).field.value()), (21, "21"));
    update(&mut app, Command::Adjust(-10).into());
    assert_eq!((draft(&app).timeout, draft(&app).field.value()), (11, "11"));
    update(&mut app, Command::Adjust(-100).into());
    assert_eq!(draft(&app).timeout, 0);
    update(&mut app, Command::Adjust(400).into());
    assert_eq!(draft(&app).timeout, 300);
    type_text(&mut app, "2");
    assert_eq!(draft(&app).timeout, 2);

    let effects = update(&mut app, Command::Open.into());
    let edit = Edit::SetWebSocket {
        domain: "cloud.tencent.com".into(),
        switch: Some(Switch::On),
        timeout: Some(2),
    };
    assert_eq!(effects, vec![Effect::Save(edit.clone())]);
    assert!(draft(&app).saving);

    // The runner saved it: the dialog closes and the relay gets the config.
    let mut saved = (*app.config).clone();
    saved.domains[1].websocket.timeout = 2;
    let saved = Arc::new(saved);
    let effects = update(
        &mut app,
        Action::Saved {
            config: saved.clone(),
            edit,
        },
    );
    assert_eq!(effects, vec![Effect::ApplyToRelay(saved)]);
    assert!(app.dialog.is_none());
    assert_eq!(app.config.domains[1].websocket.timeout, 2);
    assert!(app.status.as_ref().unwrap().text.contains("timeout 2 s"));
}

#[test]
fn cancel_discards_the_draft() {
    let mut app = app();
    to_advanced(&mut app);
    run(
        &mut app,
        &[Command::Edit, Command::Toggle, Command::Adjust(10)],
    );
    assert!(draft(&app).differs());
    assert!(update(&mut app, Command::Cancel.into()).is_empty());
    assert!(app.dialog.is_none());
    assert_eq!(app.config.domains[1].websocket.timeout, 100);
    // Tab to Cancel, then Enter, cancels too.
    run(
        &mut app,
        &[Command::Edit, Command::Adjust(5), Command::NextTab],
    );
    assert!(update(&mut app, Command::Open.into()).is_empty());
    assert!(app.dialog.is_none());
}

#[test]
fn ok_without_a_change_saves_nothing() {
    let mut app = app();
    to_advanced(&mut app);
    run(
        &mut app,
        &[Command::Edit, Command::Adjust(1), Command::Adjust(-1)],
    );
    assert!(update(&mut app, Command::Open.into()).is_empty());
    assert!(app.dialog.is_none());
    assert!(app.status.as_ref().unwrap().text.contains("No change"));
}

#[test]
fn invalid_input_is_explained_and_never_saved() {
    let mut app = app();
    to_advanced(&mut app);
    update(&mut app, Command::Edit.into());
    type_text(&mut app, "301");
    let err = draft(&app).field_error.clone().unwrap();
    assert!(err.contains("301") && err.contains("0 to 300"), "{err}");
    // The slider keeps the last valid value; OK does nothing until fixed.
    assert_eq!(draft(&app).timeout, 30);
    assert!(update(&mut app, Command::Open.into()).is_empty());
    assert!(app.dialog.is_some());
    // Emptying the field is invalid too.
    for _ in 0..3 {
        update(&mut app, Action::Input(InputRequest::DeletePrevChar));
    }
    assert!(
        draft(&app)
            .field_error
            .as_ref()
            .unwrap()
            .contains("type a timeout")
    );
    assert!(update(&mut app, Command::Open.into()).is_empty());
    // The slider recovers from an invalid field.
    // ("3" was the last valid text.)
    update(&mut app, Command::Adjust(1).into());
    assert_eq!(draft(&app).field_error, None);
    assert_eq!(draft(&app).timeout, 4);
    // Letters never reach the numeric field.
    update(&mut app, Action::Input(InputRequest::InsertChar('a')));
    assert_eq!(draft(&app).field.value(), "4");
}

#[test]
fn zero_means_no_idle_limit() {
    let mut app = app();
    to_advanced(&mut app);
    update(&mut app, Command::Edit.into());
    type_text(&mut app, "0");
    let d = draft(&app);
    assert_eq!(d.effective().limit, None);
    assert_eq!(d.effective().column_label(), "On · no limit");
}

#[test]
fn a_conflict_keeps_the_draft_and_r_reloads() {
    let mut app = app();
    to_advanced(&mut app);
    update(&mut app, Command::Edit.into());
    type_text(&mut app, "45");
    assert!(matches!(
        update(&mut app, Command::Open.into()).as_slice(),
        [Effect::Save(_)]
    ));
    let conflict = SaveError {
        kind: SaveErrorKind::Conflict,
        message: "test.toml changed on disk since it was loaded".into(),
    };
    assert!(update(&mut app, Action::SaveFailed(conflict.clone())).is_empty());
    let d = draft(&app);
    assert_eq!((d.timeout, d.saving), (45, false));
    assert_eq!(d.error.as_ref(), Some(&conflict));
    assert!(conflict.advice().contains("r to reload"));

    assert_eq!(
        update(&mut app, Command::Reload.into()),
        vec![Effect::Reload]
    );
    // Someone set it to 90 on disk; the draft (45) is kept, the comparison
    // base follows the file.
    let mut on_disk = (*app.config).clone();
    on_disk.domains[1].websocket.timeout = 90;
    let on_disk = Arc::new(on_disk);
    let effects = update(&mut app, Action::Reloaded(Ok(on_disk.clone())));
    assert_eq!(effects, vec![Effect::ApplyToRelay(on_disk)]);
    let d = draft(&app);
    assert_eq!(
        (d.timeout, d.live.timeout, d.error.is_none()),
        (45, 90, true)
    );
    assert!(matches!(
        update(&mut app, Command::Open.into()).as_slice(),
        [Effect::Save(Edit::SetWebSocket {
            timeout: Some(45),
            ..
        })]
    ));
}

/// The config with cloud.tencent.com's timeout set to `secs` elsewhere.
fn changed_elsewhere(app: &App, secs: u16) -> Arc<Config> {
    let mut changed = (*app.config).clone();
    changed.domains[1].websocket.timeout = secs;
    Arc::new(changed)
}

#[test]
fn a_change_made_elsewhere_is_shown_in_an_open_dialog_and_the_draft_kept() {
    let mut app = app();
    to_advanced(&mut app);
    update(&mut app, Command::Edit.into());
    type_text(&mut app, "45");
    let changed = changed_elsewhere(&app, 90);
    // Already in force: nothing for the runner to do.
    assert!(update(&mut app, Action::ConfigChanged(changed.clone())).is_empty());
    assert_eq!(app.config, changed);
    let d = draft(&app);
    assert_eq!((d.timeout, d.live.timeout), (45, 90));
    assert_eq!(
        d.opened_effective().map(|e| e.column_label()),
        Some("On · 100 s".to_string()),
        "the dialog says what it opened with"
    );
    // A second change keeps what it opened with.
    let again = changed_elsewhere(&app, 80);
    update(&mut app, Action::ConfigChanged(again));
    assert_eq!(draft(&app).changed_elsewhere.map(|w| w.timeout), Some(100));
    assert!(matches!(
        update(&mut app, Command::Open.into()).as_slice(),
        [Effect::Save(Edit::SetWebSocket {
            timeout: Some(45),
            ..
        })]
    ));
}

#[test]
fn a_change_to_another_domain_leaves_an_open_dialog_quiet() {
    let mut app = app();
    to_advanced(&mut app);
    update(&mut app, Command::Edit.into());
    let mut changed = (*app.config).clone();
    changed.domains[0].websocket.timeout = 5;
    update(&mut app, Action::ConfigChanged(Arc::new(changed)));
    let d = draft(&app);
    assert_eq!((d.live.timeout, d.changed_elsewhere), (100, None));
}

#[test]
fn a_domain_removed_elsewhere_closes_its_dialog_with_a_message() {
    let mut app = app();
    to_advanced(&mut app);
    update(&mut app, Command::Edit.into());
    let mut changed = (*app.config).clone();
    changed.domains.remove(1);
    update(&mut app, Action::ConfigChanged(Arc::new(changed)));
    match &app.dialog {
        Some(Dialog::Message(m)) => {
            assert_eq!(m.title, "Domain removed");
            assert!(m.body.contains("cloud.tencent.com"), "{}", m.body);
        }
        other => panic!("expected the removed message, got {other:?}"),
    }
    assert!(app.domains.manage.is_none());
}

#[test]
fn the_origins_form_says_when_its_origins_changed_elsewhere() {
    let mut app = app();
    to_advanced(&mut app);
    update(&mut app, Command::PrevTab.into());
    update(&mut app, Command::Edit.into());
    let form = |app: &App| match &app.dialog {
        Some(Dialog::Form(f)) => f.changed_elsewhere,
        other => panic!("expected the origins form, got {other:?}"),
    };
    // The timeout is not what the form edits.
    let timeout_only = changed_elsewhere(&app, 90);
    update(&mut app, Action::ConfigChanged(timeout_only));
    assert!(!form(&app));
    let mut changed = (*app.config).clone();
    let first = changed.domains[1].origins[0].clone();
    changed.domains[1].origins.push(first);
    update(&mut app, Action::ConfigChanged(Arc::new(changed)));
    assert!(form(&app));
}

#[test]
fn a_failed_write_is_shown_and_r_does_not_reload() {
    let mut app = app();
    to_advanced(&mut app);
    run(
        &mut app,
        &[Command::Edit, Command::Adjust(1), Command::Open],
    );
    let io = SaveError {
        kind: SaveErrorKind::Io,
        message: "cannot save test.toml: disk full".into(),
    };
    update(&mut app, Action::SaveFailed(io));
    assert!(update(&mut app, Command::Reload.into()).is_empty());
    assert_eq!(draft(&app).timeout, 101);
    assert!(
        draft(&app)
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("disk full")
    );
}

#[test]
fn domains_that_cannot_configure_websocket_explain_why() {
    let mut app = app();
    run(
        &mut app,
        &[Command::Down, Command::Open, Command::End, Command::Edit],
    );
    match &app.dialog {
        Some(Dialog::Message(m)) => {
            assert!(
                m.body.contains("can only be configured for full-site"),
                "{}",
                m.body
            )
        }
        other => panic!("expected the limitation message, got {other:?}"),
    }
    update(&mut app, Command::Cancel.into());
    assert!(app.dialog.is_none());
}

#[test]
fn the_filter_narrows_the_domain_list_and_esc_clears_it() {
    let mut app = app();
    run(&mut app, &[Command::Down, Command::Open, Command::Filter]);
    type_text(&mut app, "tencent");
    let names: Vec<_> = app
        .visible_domains()
        .iter()
        .map(|d| d.name.clone())
        .collect();
    assert_eq!(names, ["cloud.tencent.com"]);
    update(&mut app, Command::Open.into());
    assert_eq!(app.context(), Context::Domains);
    assert_eq!(app.selected_domain().unwrap().name, "cloud.tencent.com");
    // Esc first clears the filter, then goes back to the menu.
    update(&mut app, Command::Back.into());
    assert_eq!(app.visible_domains().len(), 3);
    assert_eq!(app.context(), Context::Domains);
}

/// ↑/↓ while typing a filter move through the matches (they panicked: the
/// cursor was moved against a length of usize::MAX).
#[test]
fn arrows_while_filtering_move_through_the_matches() {
    let mut app = app();
    run(&mut app, &[Command::Down, Command::Open, Command::Filter]);
    type_text(&mut app, "example");
    assert_eq!(app.visible_domains().len(), 2);
    run(&mut app, &[Command::Down, Command::Down, Command::Down]);
    assert_eq!(app.context(), Context::Filter, "still typing");
    assert_eq!(app.selected_domain().unwrap().name, "api.example.com");
    run(&mut app, &[Command::Up, Command::Up]);
    assert_eq!(app.selected_domain().unwrap().name, "www.example.com");
    // The Event Log's filter too.
    run(&mut app, &[Command::Open, Command::Back, Command::Back]);
    app.screen = Screen::Events;
    app.focus = Focus::Content;
    run(&mut app, &[Command::Filter]);
    assert_eq!(app.context(), Context::Filter);
    run(&mut app, &[Command::Down, Command::Up, Command::Up]);
    assert_eq!(app.log.cursor.index, 0);
}

#[test]
fn add_domain_validates_every_field() {
    let mut app = app();
    run(
        &mut app,
        &[Command::Down, Command::Open, Command::AddDomain],
    );
    type_text(&mut app, "bad_name");
    assert!(update(&mut app, Command::Open.into()).is_empty());
    let Some(Dialog::Form(form)) = &app.dialog else {
        panic!("form closed")
    };
    assert!(form.fields[0].error.as_ref().unwrap().contains("bad_name"));
    assert_eq!(form.focus, 0);

    for _ in 0.."bad_name".len() {
        update(&mut app, Action::Input(InputRequest::DeletePrevChar));
    }
    type_text(&mut app, "new.example.com");
    // Acceleration: → cycles to dynamic-static.
    run(&mut app, &[Command::NextTab, Command::Adjust(1)]);
    let effects = update(&mut app, Command::Open.into());
    assert_eq!(
        effects,
        vec![Effect::Save(Edit::AddDomain(NewDomain {
            name: "new.example.com".into(),
            acceleration: crate::config::Acceleration::DynamicStatic,
            area: crate::config::Area::Mainland,
            origins: vec!["127.0.0.1:9001".into()],
            server_name: None,
            origin_protocol: crate::config::OriginProtocol::Http,
        }))]
    );
}

#[test]
fn delete_and_offline_ask_first() {
    let mut app = app();
    run(
        &mut app,
        &[Command::Down, Command::Open, Command::DeleteDomain],
    );
    assert!(matches!(
        &app.dialog,
        Some(Dialog::Confirm(Confirm::DeleteDomain { domain, live: 0 })) if domain == "www.example.com"
    ));
    assert!(update(&mut app, Command::Cancel.into()).is_empty());
    assert!(app.dialog.is_none());
    update(&mut app, Command::DeleteDomain.into());
    assert_eq!(
        update(&mut app, Command::Open.into()),
        vec![Effect::Save(Edit::RemoveDomain {
            domain: "www.example.com".into()
        })]
    );
    // Offline without live sessions needs no question.
    assert_eq!(
        update(&mut app, Command::ToggleOnline.into()),
        vec![Effect::Save(Edit::SetStatus {
            domain: "www.example.com".into(),
            status: DomainStatus::Offline
        })]
    );
}

/// The console with one live session (so quitting asks first).
fn app_with_a_live_session() -> (App, SessionGuard) {
    let mut app = app();
    let live = session(
        &app.relay.local().unwrap().clone(),
        "cloud.tencent.com",
        Some(100),
    );
    app.refresh(Clock::now());
    (app, live)
}

#[tokio::test(start_paused = true)]
async fn quitting_asks_while_sessions_are_live() {
    let (mut app, _s) = app_with_a_live_session();
    assert!(update(&mut app, Command::Back.into()).is_empty());
    assert!(matches!(
        app.dialog,
        Some(Dialog::Confirm(Confirm::Quit { live: 1, .. }))
    ));
    update(&mut app, Command::Cancel.into());
    assert!(app.dialog.is_none());
    // Ctrl-C asks too, and a second Ctrl-C quits.
    assert!(update(&mut app, Command::Quit.into()).is_empty());
    assert_eq!(update(&mut app, Command::Quit.into()), vec![Effect::Quit]);
}

#[tokio::test(start_paused = true)]
async fn the_quit_question_offers_to_keep_the_sessions() {
    let (mut app, _s) = app_with_a_live_session();
    update(&mut app, Command::Back.into());
    // `k`, `y` and `n` as the dialog's own keymap says.
    let keep = KeyEvent::new(KeyCode::Char('k'), KeyModifiers::NONE);
    assert!(matches!(
        app.action_for_key(&keep),
        Some(Action::Cmd(Command::KeepSessions))
    ));
    assert_eq!(
        update(&mut app, Command::KeepSessions.into()),
        vec![Effect::KeepSessions]
    );
    assert!(app.dialog.is_none());
    // Outside the quit question `k` keeps nothing.
    assert!(update(&mut app, Command::KeepSessions.into()).is_empty());
}

/// The quit question counts the sessions as they end; once none is left
/// it offers no `k` (nothing to keep) and still waits for an answer.
#[tokio::test(start_paused = true)]
async fn the_quit_question_follows_the_sessions_as_they_end() {
    let (mut app, live) = app_with_a_live_session();
    update(&mut app, Command::Back.into());
    drop(live);
    app.refresh(Clock::now());
    let Some(Dialog::Confirm(question)) = &app.dialog else {
        panic!("the question stays open: {:?}", app.dialog);
    };
    assert!(
        question.question().contains("have ended"),
        "{}",
        question.question()
    );
    let keep = KeyEvent::new(KeyCode::Char('k'), KeyModifiers::NONE);
    assert!(
        !matches!(
            app.action_for_key(&keep),
            Some(Action::Cmd(Command::KeepSessions))
        ),
        "nothing to keep"
    );
    let yes = KeyEvent::new(KeyCode::Char('y'), KeyModifiers::NONE);
    let Some(Action::Cmd(quit)) = app.action_for_key(&yes) else {
        panic!("y answers nothing");
    };
    assert_eq!(update(&mut app, quit.into()), vec![Effect::Quit]);
}

/// The demo's sessions live in its own process: its quit question offers
/// only to close them, and `k` is not an answer there.
#[tokio::test(start_paused = true)]
async fn the_quit_question_of_a_console_whose_sessions_cannot_move_offers_only_to_close_them() {
    let (mut app, _s) = app_with_a_live_session();
    app.settings.sessions_stay = Some("the demo's clients and origins run in this process");
    update(&mut app, Command::Back.into());
    let Some(Dialog::Confirm(question)) = &app.dialog else {
        panic!("no quit question: {:?}", app.dialog);
    };
    let text = question.question();
    assert!(
        text.contains("closed with 1001 \"relay shutting down\"")
            && text.contains("the demo's clients and origins run in this process")
            && !text.contains("Keep them"),
        "{text}"
    );
    let keep = KeyEvent::new(KeyCode::Char('k'), KeyModifiers::NONE);
    assert!(
        !matches!(
            app.action_for_key(&keep),
            Some(Action::Cmd(Command::KeepSessions))
        ),
        "k is not an answer here"
    );
    assert!(update(&mut app, Command::KeepSessions.into()).is_empty());
    assert!(app.dialog.is_some(), "the question stays until y or n");
    let yes = KeyEvent::new(KeyCode::Char('y'), KeyModifiers::NONE);
    let Some(Action::Cmd(close)) = app.action_for_key(&yes) else {
        panic!("y answers nothing");
    };
    assert_eq!(update(&mut app, close.into()), vec![Effect::Quit]);
}

#[tokio::test(start_paused = true)]
async fn the_draft_shows_which_sessions_it_would_cut() {
    let mut app = app();
    let registry = app.relay.local().unwrap().clone();
    let old = session(&registry, "cloud.tencent.com", Some(100));
    tokio::time::advance(Duration::from_secs(30)).await;
    let newer = session(&registry, "cloud.tencent.com", Some(100));
    tokio::time::advance(Duration::from_secs(10)).await;
    let _other = session(&registry, "www.example.com", Some(15));
    app.refresh(Clock::now());
    to_advanced(&mut app);
    update(&mut app, Command::Edit.into());
    type_text(&mut app, "20");
    let impact = draft(&app).impact(&app.live);
    assert_eq!(impact.live, 2);
    assert_eq!(impact.cut, vec![(old.stats().id, Duration::from_secs(40))]);
    update(&mut app, Command::Adjust(-15).into());
    assert_eq!(draft(&app).timeout, 5);
    let impact = draft(&app).impact(&app.live);
    assert_eq!(
        impact.cut,
        vec![
            (old.stats().id, Duration::from_secs(40)),
            (newer.stats().id, Duration::from_secs(10))
        ]
    );
    // Switch off: 15 s applies whatever the timeout.
    update(&mut app, Command::Toggle.into());
    assert_eq!(draft(&app).impact(&app.live).cut.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn live_sessions_sort_closest_to_deadline_first_and_close_asks() {
    let mut app = app();
    let registry = app.relay.local().unwrap().clone();
    let a = session(&registry, "cloud.tencent.com", Some(100));
    let b = session(&registry, "www.example.com", Some(15));
    let c = session(&registry, "cloud.tencent.com", None);
    tokio::time::advance(Duration::from_secs(5)).await;
    app.refresh(Clock::now());
    let ids: Vec<_> = app.live.iter().map(|s| s.id).collect();
    assert_eq!(ids, [b.stats().id, a.stats().id, c.stats().id]);

    update(&mut app, Command::Goto(Screen::Sessions).into());
    update(&mut app, Command::Down.into());
    assert_eq!(app.sessions.selected, Some(a.stats().id));
    // The selection follows its session when the order changes.
    update(&mut app, Command::CycleSort.into());
    assert_eq!(app.sessions.sort, SortKey::Idle);
    assert_eq!(app.live[app.sessions.cursor.index].id, a.stats().id);

    update(&mut app, Command::Open.into());
    assert_eq!(app.context(), Context::SessionDetail);
    update(&mut app, Command::CloseSession.into());
    assert!(
        matches!(&app.dialog, Some(Dialog::Confirm(Confirm::CloseSession { id, .. })) if *id == a.stats().id)
    );
    assert_eq!(
        update(&mut app, Command::Open.into()),
        vec![Effect::CloseSession(a.stats().id)]
    );
    update(&mut app, Command::Back.into());
    assert_eq!(app.context(), Context::Sessions);
}

#[test]
fn events_a_console_already_has_are_not_logged_twice_after_a_takeover() {
    use crate::relay::RelayEvent;
    let mut app = app();
    let at = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let opened = |id, secs| RelayEvent::Opened {
        id,
        at: at + Duration::from_secs(secs),
        domain: "cloud.tencent.com".into(),
        client: "127.0.0.1:50000".parse().unwrap(),
        origin: "127.0.0.1:9001".into(),
        path: "/".into(),
        subprotocol: None,
    };
    for id in 1..=3 {
        update(&mut app, Action::Relay(opened(id, id)));
    }
    // The new relay's ring: the old one's last two, then its own.
    let backlog = vec![opened(2, 2), opened(3, 3), opened(4, 4)];
    let fresh = app.log.unseen(backlog, 1000);
    assert_eq!(fresh, vec![opened(4, 4)]);
    // The same id at another time is another event.
    assert_eq!(app.log.unseen(vec![opened(1, 9)], 1000).len(), 1);
}

#[test]
fn event_log_filters_by_kind_domain_and_text() {
    use crate::relay::{CloseCause, RelayEvent};
    let mut app = app();
    let at = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let client = "127.0.0.1:50000".parse().unwrap();
    update(
        &mut app,
        Action::Relay(RelayEvent::Opened {
            id: 1,
            at,
            domain: "cloud.tencent.com".into(),
            client,
            origin: "127.0.0.1:9001".into(),
            path: "/".into(),
            subprotocol: None,
        }),
    );
    update(
        &mut app,
        Action::Relay(RelayEvent::Closed {
            id: 1,
            at,
            domain: "cloud.tencent.com".into(),
            client,
            origin: "127.0.0.1:9001".into(),
            cause: CloseCause::IdleTimeout { timeout_secs: 100 },
            to_client: None,
            to_origin: None,
            idle: Duration::from_secs(100),
            duration: Duration::from_secs(130),
        }),
    );
    update(
        &mut app,
        Action::Relay(RelayEvent::Refused {
            at,
            client,
            domain: Some("www.example.com".into()),
            status: Some(503),
            reason: "domain offline".into(),
        }),
    );
    update(&mut app, Command::Goto(Screen::Events).into());
    assert_eq!(app.log.filtered().len(), 3);
    run(&mut app, &[Command::CycleKind, Command::CycleKind]);
    assert_eq!(app.log.kind, KindFilter::Closed);
    assert_eq!(app.log.filtered().len(), 1);
    run(&mut app, &[Command::ClearFilters, Command::CycleDomain]);
    assert_eq!(app.log.domain.as_deref(), Some("www.example.com"));
    assert_eq!(app.log.filtered().len(), 1);
    run(&mut app, &[Command::ClearFilters, Command::Filter]);
    type_text(&mut app, "idle");
    assert_eq!(app.log.filtered().len(), 1);
    let t = app.log.totals("cloud.tencent.com");
    assert_eq!((t.opened, t.closed, t.idle_closes), (1, 1, 1));
    assert_eq!(t.reasons.get("idle timeout"), Some(&1));
    assert_eq!(app.log.totals("www.example.com").refused, 1);
}

#[test]
fn an_attached_console_advises_from_the_relays_evidence_once_fetched() {
    use crate::relay::history::{ClientKey, DomainCounts, DomainEvidence, SessionEvidence};
    let mut app = App::with_view(
        config(),
        RelayView::Remote(Box::default()),
        Settings::default(),
    );
    assert_eq!(app.advice_domain(), None, "no advice on the Overview");
    to_advanced(&mut app);
    let name = app
        .advice_domain()
        .cloned()
        .expect("the Advanced tab's domain");
    assert_eq!(name.as_str(), "cloud.tencent.com");
    let domain = app.config.domain("cloud.tencent.com").unwrap().clone();
    assert_eq!(app.recommendation(&domain), None, "nothing fetched yet");

    // What the relay answered: a client cut while alive, twice, at 100 s.
    let cut = |id| SessionEvidence {
        id,
        client: ClientKey::new("127.0.0.1".parse().unwrap(), "/chat"),
        live: false,
        longest_gap: Duration::ZERO,
        idle: Duration::from_secs(100),
        heartbeat: None,
        idle_cut: Some(Duration::from_secs(100)),
        cut_while_alive: true,
    };
    let remote = app.relay.remote_mut().unwrap();
    remote.evidence = RemoteEvidence {
        recent: vec![(
            name.clone(),
            DomainCounts {
                ended: 2,
                idle_cuts: 2,
                cut_while_alive: 2,
            },
        )],
        cut_while_alive: vec![1, 2],
        domain: Some(DomainEvidence {
            domain: name.clone(),
            sessions: vec![cut(1), cut(2)],
        }),
        unavailable: false,
    };
    app.refresh(Clock::now());
    assert_eq!(app.recent_on(&name).cut_while_alive, 2);
    assert!(app.was_cut_while_alive(2));
    let advice = app
        .recommendation(&domain)
        .expect("advice from the evidence");
    assert_eq!(advice.cut_while_alive, 2);
    assert!(
        advice.recommended_timeout_secs > 100,
        "never the limit that cut live clients: {advice:?}"
    );
    // Another domain's page has no evidence until it is fetched.
    let other = app.config.domain("www.example.com").unwrap().clone();
    assert_eq!(app.recommendation(&other), None);
}
