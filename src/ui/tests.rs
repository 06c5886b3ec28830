//! Snapshots of every screen and dialog at 80×24 and 120×40 (fixed clock,
//! ports and ids masked), and styled-cell checks where colour carries
//! meaning — snapshots do not record colour.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use tokio::time::{Instant, advance};
use tui_input::InputRequest;

use super::{Theme, render};
use crate::app::tests::{TEST_CONFIG, config, session};
use crate::app::{Action, App, Clock, Command, SaveError, SaveErrorKind, Screen, Settings, update};
use crate::relay::{
    CloseCause, CloseInfo, Direction, FrameKind, NewSession, Registry, RelayEvent, SessionGuard,
};

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

fn wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

struct Fixture {
    app: App,
    _guards: Vec<SessionGuard>,
}

fn frame(g: &SessionGuard, dir: Direction, kind: FrameKind, len: u64) {
    g.stats().record_frame(
        Instant::now(),
        dir,
        crate::ws::SeenFrame {
            kind,
            fin: true,
            payload_len: len,
        },
        true,
    );
}

fn register(registry: &Arc<Registry>, domain: &str, port: u16, timeout: u64) -> SessionGuard {
    registry.register(NewSession {
        domain: domain.into(),
        client: format!("127.0.0.1:{port}").parse().unwrap(),
        origin: "127.0.0.1:9001".into(),
        path: "/chat".into(),
        timeout: Some(Duration::from_secs(timeout)),
    })
}

/// Four live sessions at known idle times, a few events, some history.
async fn fixture() -> Fixture {
    let registry = Arc::new(Registry::new());
    let g1 = register(&registry, "cloud.tencent.com", 50001, 100);
    let g2 = register(&registry, "www.example.com", 50002, 15);
    advance(Duration::from_secs(10)).await;
    frame(&g1, Direction::ClientToOrigin, FrameKind::Text, 12);
    frame(&g1, Direction::OriginToClient, FrameKind::Text, 12);
    advance(Duration::from_secs(10)).await;
    let g3 = register(&registry, "cloud.tencent.com", 50003, 100);
    advance(Duration::from_secs(10)).await;
    let g4 = register(&registry, "www.example.com", 50004, 15);
    advance(Duration::from_secs(5)).await;
    frame(&g2, Direction::OriginToClient, FrameKind::Ping, 0);
    advance(Duration::from_secs(1)).await;
    frame(&g4, Direction::ClientToOrigin, FrameKind::Text, 5);
    advance(Duration::from_secs(4)).await;
    frame(&g3, Direction::ClientToOrigin, FrameKind::Binary, 2048);
    advance(Duration::from_secs(7)).await;

    let settings = Settings {
        config_path: "/home/op/.config/ecdn-console/config.toml".into(),
        relay_addr: Some("127.0.0.1:8080".parse().unwrap()),
        banner: None,
        sessions_stay: None,
    };
    let mut app = App::new(config(), registry, settings);
    let client = "127.0.0.1:40000".parse().unwrap();
    let at = |s: u64| wall() - Duration::from_secs(s);
    for m in (1..8u64).rev() {
        app.log.sample_active(at(60 * m), (8 - m as usize) % 4 + 1);
    }
    let events = [
        RelayEvent::Opened {
            id: 7,
            at: at(200),
            domain: "www.example.com".into(),
            client,
            origin: "127.0.0.1:9001".into(),
            path: "/live".into(),
            subprotocol: Some("chat".into()),
        },
        RelayEvent::Closed {
            id: 7,
            at: at(185),
            domain: "www.example.com".into(),
            client,
            origin: "127.0.0.1:9001".into(),
            cause: CloseCause::IdleTimeout { timeout_secs: 15 },
            to_client: Some(CloseInfo::new(1001, "idle timeout (15 s)")),
            to_origin: Some(CloseInfo::new(1001, "idle timeout (15 s)")),
            idle: Duration::from_secs(15),
            duration: Duration::from_secs(15),
        },
        RelayEvent::Closed {
            id: 8,
            at: at(120),
            domain: "cloud.tencent.com".into(),
            client,
            origin: "127.0.0.1:9001".into(),
            cause: CloseCause::ClientClosed,
            to_client: None,
            to_origin: Some(CloseInfo::new(1000, "bye")),
            idle: Duration::from_millis(2500),
            duration: Duration::from_secs(64),
        },
        RelayEvent::Refused {
            at: at(90),
            client,
            domain: None,
            status: Some(404),
            reason: "no domain for Host \"nope.test\"".into(),
        },
        RelayEvent::ConfigApplied {
            at: at(60),
            detail: "cloud.tencent.com: WebSocket timeout 100 s".into(),
        },
    ];
    for e in events {
        update(&mut app, Action::Relay(e));
    }
    app.refresh(Clock {
        mono: Instant::now(),
        wall: wall(),
    });
    Fixture {
        app,
        _guards: vec![g1, g2, g3, g4],
    }
}

fn draw(app: &App, theme: &Theme, w: u16, h: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| render(f, app, theme)).unwrap();
    terminal.backend().buffer().clone()
}

/// Replaces the digits of `127.0.0.1:PORT` and `#ID` with `N`, keeping widths.
fn mask(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let prefix = ["127.0.0.1:", "#"].into_iter().find(|p| {
            rest.starts_with(p) && rest[p.len()..].starts_with(|c: char| c.is_ascii_digit())
        });
        if let Some(p) = prefix {
            out.push_str(p);
            rest = &rest[p.len()..];
            while let Some(d) = rest.chars().next().filter(char::is_ascii_digit) {
                out.push('N');
                rest = &rest[d.len_utf8()..];
            }
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

fn text(app: &App, w: u16, h: u16) -> String {
    let buffer = draw(app, &Theme::color(), w, h);
    let mut lines = Vec::new();
    for y in 0..h {
        let line: String = (0..w)
            .map(|x| buffer[(x, y)].symbol().to_string())
            .collect();
        lines.push(line.trim_end().to_string());
    }
    mask(&lines.join("\n"))
}

fn check(name: &str, app: &App) {
    for (w, h) in SIZES {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), text(app, w, h));
    }
}

/// Carries out commands, then samples as the runner does before a draw
/// (at the fixture's own clock).
fn cmds(app: &mut App, list: &[Command]) {
    for c in list {
        update(app, Action::Cmd(*c));
    }
    app.refresh(app.clock);
}

fn typed(app: &mut App, s: &str) {
    for c in s.chars() {
        update(app, Action::Input(InputRequest::InsertChar(c)));
    }
}

/// Menu → Domain Management → cloud.tencent.com (Manage), on `tab` tabs on.
fn manage(app: &mut App, tabs: usize) {
    manage_row(app, 1, tabs);
}

/// Manage the domain list's `row`th domain (www.example.com, whose switch
/// is off, is the first), `tabs` tabs on.
fn manage_row(app: &mut App, row: usize, tabs: usize) {
    update(app, Action::Cmd(Command::Goto(Screen::Domains)));
    for _ in 0..row {
        update(app, Action::Cmd(Command::Down));
    }
    update(app, Action::Cmd(Command::Open));
    for _ in 0..tabs {
        update(app, Action::Cmd(Command::NextTab));
    }
}

#[tokio::test(start_paused = true)]
async fn screens() {
    let mut f = fixture().await;
    check("overview", &f.app);
    cmds(&mut f.app, &[Command::Goto(Screen::Domains)]);
    check("domains", &f.app);
    cmds(&mut f.app, &[Command::Filter]);
    typed(&mut f.app, "example");
    check("domains_filter", &f.app);

    let mut f = fixture().await;
    manage(&mut f.app, 0);
    check("manage_basic", &f.app);
    update(&mut f.app, Action::Cmd(Command::NextTab));
    check("manage_origin", &f.app);
    update(&mut f.app, Action::Cmd(Command::NextTab));
    check("manage_advanced", &f.app);
    update(&mut f.app, Action::Cmd(Command::NextTab));
    check("manage_sessions", &f.app);

    let mut f = fixture().await;
    cmds(
        &mut f.app,
        &[
            Command::Goto(Screen::Domains),
            Command::End,
            Command::Open,
            Command::NextTab,
            Command::NextTab,
        ],
    );
    check("manage_advanced_dynamic", &f.app);

    let mut f = fixture().await;
    cmds(&mut f.app, &[Command::Goto(Screen::Sessions)]);
    check("sessions", &f.app);
    cmds(&mut f.app, &[Command::Down, Command::Open]);
    check("session_detail", &f.app);

    let mut f = fixture().await;
    cmds(&mut f.app, &[Command::Goto(Screen::Events)]);
    check("events", &f.app);
    cmds(&mut f.app, &[Command::Help]);
    check("help_events", &f.app);
}

#[tokio::test(start_paused = true)]
async fn dialogs() {
    let mut f = fixture().await;
    manage(&mut f.app, 2);
    update(&mut f.app, Action::Cmd(Command::Edit));
    check("edit_dialog", &f.app);
    typed(&mut f.app, "20");
    check("edit_dialog_draft_cuts", &f.app);
    update(&mut f.app, Action::Cmd(Command::Adjust(-20)));
    check("edit_dialog_no_limit", &f.app);
    typed(&mut f.app, "999");
    check("edit_dialog_invalid", &f.app);
    update(&mut f.app, Action::Cmd(Command::Adjust(-1)));
    update(&mut f.app, Action::Cmd(Command::Open));
    update(
        &mut f.app,
        Action::SaveFailed(SaveError {
            kind: SaveErrorKind::Conflict,
            message: "/home/op/.config/ecdn-console/config.toml changed on disk since it was \
                      loaded; not overwriting someone else's edit. Reload it (in the console: `r`) \
                      and apply your change again"
                .into(),
        }),
    );
    check("edit_dialog_conflict", &f.app);

    let mut f = fixture().await;
    manage(&mut f.app, 2);
    update(&mut f.app, Action::Cmd(Command::Edit));
    typed(&mut f.app, "20");
    let mut changed = (*f.app.config).clone();
    let domain = f.app.domains.manage.as_ref().map(|m| m.domain.clone());
    if let Some(d) = changed
        .domains
        .iter_mut()
        .find(|d| Some(&d.name) == domain.as_ref())
    {
        d.websocket.timeout = 42;
    }
    update(
        &mut f.app,
        Action::ConfigChanged(std::sync::Arc::new(changed)),
    );
    check("edit_dialog_changed_elsewhere", &f.app);

    let mut f = fixture().await;
    cmds(
        &mut f.app,
        &[Command::Goto(Screen::Domains), Command::AddDomain],
    );
    typed(&mut f.app, "bad_name");
    update(&mut f.app, Action::Cmd(Command::Open));
    check("add_domain_invalid", &f.app);

    let mut f = fixture().await;
    manage(&mut f.app, 1);
    update(&mut f.app, Action::Cmd(Command::Edit));
    check("origin_form", &f.app);

    let mut f = fixture().await;
    cmds(
        &mut f.app,
        &[
            Command::Goto(Screen::Domains),
            Command::Down,
            Command::DeleteDomain,
        ],
    );
    check("confirm_delete", &f.app);

    let mut f = fixture().await;
    cmds(
        &mut f.app,
        &[Command::Goto(Screen::Sessions), Command::CloseSession],
    );
    check("confirm_close_session", &f.app);

    let mut f = fixture().await;
    update(&mut f.app, Action::Cmd(Command::Quit));
    check("confirm_quit", &f.app);

    let mut f = fixture().await;
    cmds(
        &mut f.app,
        &[Command::Goto(Screen::Domains), Command::ToggleOnline],
    );
    check("confirm_offline", &f.app);
    update(&mut f.app, Action::Cmd(Command::Open));
    update(
        &mut f.app,
        Action::SaveFailed(SaveError {
            kind: SaveErrorKind::Io,
            message: "cannot save /home/op/.config/ecdn-console/config.toml: Read-only file \
                      system (os error 30). The previous file is unchanged; check that the \
                      directory is writable and the disk is not full"
                .into(),
        }),
    );
    check("message_write_failed", &f.app);

    let mut f = fixture().await;
    cmds(
        &mut f.app,
        &[Command::Goto(Screen::Domains), Command::End, Command::Edit],
    );
    check("message_limitation", &f.app);
}

#[tokio::test(start_paused = true)]
async fn a_small_terminal_gets_a_message_not_a_panic() {
    let f = fixture().await;
    for (w, h) in [(0, 0), (1, 1), (20, 5), (59, 30), (80, 15)] {
        let buffer = draw(&f.app, &Theme::color(), w, h);
        if w >= 20 {
            let row: String = (0..w)
                .map(|x| buffer[(x, 0)].symbol().to_string())
                .collect();
            assert!(row.contains("Terminal too small"), "{row}");
        }
    }
}

/// The cells of row `y` whose symbol is the gauge's filled block.
fn gauge_colors(buffer: &Buffer, y: u16) -> Vec<Color> {
    (0..buffer.area.width)
        .map(|x| &buffer[(x, y)])
        .filter(|c| c.symbol() == "█")
        .map(|c| c.fg)
        .collect()
}

fn row_of(buffer: &Buffer, needle: &str) -> u16 {
    (0..buffer.area.height)
        .find(|&y| {
            let row: String = (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol().to_string())
                .collect();
            row.contains(needle)
        })
        .unwrap_or_else(|| panic!("no row contains {needle}"))
}

#[tokio::test(start_paused = true)]
async fn gauges_turn_warning_coloured_near_the_deadline() {
    let registry = Arc::new(Registry::new());
    let near = register(&registry, "cloud.tencent.com", 50001, 100);
    advance(Duration::from_secs(30)).await;
    let half = register(&registry, "cloud.tencent.com", 50002, 100);
    advance(Duration::from_secs(30)).await;
    let calm = register(&registry, "cloud.tencent.com", 50003, 100);
    advance(Duration::from_secs(30)).await;
    let mut app = App::new(config(), registry, Settings::default());
    app.refresh(Clock::now());
    // (The selected row is drawn in the selection colours, so each gauge
    // is checked while another row is selected.)
    cmds(&mut app, &[Command::Goto(Screen::Sessions), Command::End]);
    let buffer = draw(&app, &Theme::color(), 120, 40);
    let colors = |buffer: &Buffer, idle: &str| {
        let c = gauge_colors(buffer, row_of(buffer, idle));
        assert!(!c.is_empty());
        c
    };
    assert!(
        colors(&buffer, "60 s / 100 s")
            .iter()
            .all(|c| *c == Color::Yellow)
    );
    assert!(
        colors(&buffer, "90 s / 100 s")
            .iter()
            .all(|c| *c == Color::Red)
    );
    // Near the deadline the row is also marked for eyes that miss colour.
    let y = row_of(&buffer, "90 s / 100 s");
    let row: String = (0..120)
        .map(|x| buffer[(x, y)].symbol().to_string())
        .collect();
    assert!(row.contains("!90 s / 100 s"), "{row}");
    cmds(&mut app, &[Command::Home]);
    let buffer = draw(&app, &Theme::color(), 120, 40);
    assert!(
        colors(&buffer, "30 s / 100 s")
            .iter()
            .all(|c| *c == Color::Green)
    );
    drop((near, half, calm));
}

#[tokio::test(start_paused = true)]
async fn monochrome_uses_no_colour_and_reverse_video_for_selection() {
    let mut f = fixture().await;
    cmds(&mut f.app, &[Command::Goto(Screen::Sessions)]);
    let buffer = draw(&f.app, &Theme::mono(), 120, 40);
    for cell in buffer.content() {
        assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
    }
    // The selected session row (closest to its deadline comes first).
    let y = row_of(&buffer, "12 s / 15 s");
    let selected = &buffer[(30, y)];
    assert!(
        selected.modifier.contains(Modifier::REVERSED),
        "{selected:?}"
    );
    // And in colour the same row is highlighted with a background.
    let buffer = draw(&f.app, &Theme::color(), 120, 40);
    assert_eq!(buffer[(30, y)].bg, Color::Blue);
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_sessions_build_only_visible_rows() {
    let registry = Arc::new(Registry::new());
    let guards: Vec<_> = (0..10_000)
        .map(|i| session(&registry, "cloud.tencent.com", Some(60 + i % 200)))
        .collect();
    let mut app = App::new(config(), registry, Settings::default());
    update(&mut app, Action::Cmd(Command::Goto(Screen::Sessions)));
    update(&mut app, Action::Cmd(Command::End));
    let started = std::time::Instant::now();
    for _ in 0..10 {
        app.refresh(Clock::now());
        draw(&app, &Theme::color(), 120, 40);
    }
    // Generous for a debug build on a shared machine; the point is "not
    // proportional to drawing 10,000 rows".
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let buffer = draw(&app, &Theme::color(), 120, 40);
    assert!(row_of(&buffer, "Live Sessions · 10000") < 3);
    drop(guards);
    let _ = TEST_CONFIG;
}

/// Two sessions with a steady heartbeat: a message every 20 s on a domain
/// cut at 15 s (kept alive by pings between), every 5 s on one cut at 100 s.
async fn heartbeat_fixture() -> Fixture {
    let registry = Arc::new(Registry::new());
    let slow = register(&registry, "www.example.com", 50001, 15);
    let fast = register(&registry, "cloud.tencent.com", 50002, 100);
    for second in 1..=80 {
        advance(Duration::from_secs(1)).await;
        if second % 20 == 0 {
            frame(&slow, Direction::ClientToOrigin, FrameKind::Text, 9);
        } else if second % 10 == 0 {
            frame(&slow, Direction::ClientToOrigin, FrameKind::Ping, 0);
        }
        if second % 5 == 0 {
            frame(&fast, Direction::ClientToOrigin, FrameKind::Text, 9);
        }
    }
    advance(Duration::from_secs(2)).await;
    let mut app = App::new(config(), registry, Settings::default());
    app.refresh(Clock {
        mono: Instant::now(),
        wall: wall(),
    });
    Fixture {
        app,
        _guards: vec![slow, fast],
    }
}

/// Asserts that the screen's line with `needle` also has `expected`.
fn assert_line(screen: &str, needle: &str, expected: &str) {
    assert!(
        line_with(screen, needle).contains(expected),
        "{needle:?} line without {expected:?}:\n{screen}"
    );
}

fn line_with(screen: &str, needle: &str) -> String {
    screen
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}:\n{screen}"))
        .to_string()
}

#[tokio::test(start_paused = true)]
async fn sessions_whose_heartbeat_exceeds_the_limit_are_flagged() {
    let mut f = heartbeat_fixture().await;
    cmds(&mut f.app, &[Command::Goto(Screen::Sessions)]);
    check("sessions_heartbeat", &f.app);
    let screen = text(&f.app, 80, 24);
    // The 20 s heartbeat against the 15 s limit: flagged.
    assert_line(&screen, "www.example.com", "20 s!");
    // The 5 s heartbeat under 100 s: shown, not flagged.
    let fast = line_with(&screen, "cloud.tencent.com");
    assert!(
        fast.contains("5.0 s") && !fast.contains("5.0 s!"),
        "{screen}"
    );

    // The flag carries its colour too (snapshots record none). The selected
    // row is drawn in the selection colours, so select the other one.
    cmds(&mut f.app, &[Command::End]);
    let buffer = draw(&f.app, &Theme::color(), 80, 24);
    let y = row_of(&buffer, "20 s!");
    let x = (0..80)
        .find(|x| buffer[(*x, y)].symbol() == "!")
        .expect("the flag");
    assert_eq!(buffer[(x, y)].fg, Color::Yellow);

    // The session's page says what the flag means, with the gaps each way.
    cmds(&mut f.app, &[Command::Home, Command::Open]);
    check("session_detail_heartbeat", &f.app);
    let screen = text(&f.app, 80, 24);
    assert_line(&screen, "Heartbeat", "~20 s (max 20 s)!");
    assert_line(&screen, "Heartbeat", "≥ 15 s limit: cut between beats");
    assert_line(&screen, "4 msgs", "gaps median 20 s, max 20 s (3 samples)");
}

#[tokio::test(start_paused = true)]
async fn the_advanced_tab_recommends_a_timeout_from_the_heartbeats() {
    let mut f = heartbeat_fixture().await;
    manage(&mut f.app, 2);
    check("manage_advanced_heartbeat", &f.app);
    let screen = text(&f.app, 80, 24);
    // A 5 s heartbeat: 5 s more than the slowest gap, rounded up to 5 s.
    assert_line(&screen, "Recommended", "10 s");
    assert!(
        screen.contains("Heartbeat every ~5 s on 1 of 1 session, longest gap 5 s"),
        "{screen}"
    );

    // The switched-off domain: its 20 s heartbeat calls for 30 s.
    let mut f = heartbeat_fixture().await;
    manage_row(&mut f.app, 0, 2);
    let screen = text(&f.app, 80, 24);
    assert_line(&screen, "Recommended", "30 s");

    // No heartbeat on any session: the console's 60 s, and why.
    let mut f = fixture().await;
    manage(&mut f.app, 2);
    let screen = text(&f.app, 80, 24);
    assert_line(&screen, "Recommended", "60 s");
    assert!(
        screen.contains("No heartbeat seen on 2 sessions"),
        "{screen}"
    );
}

/// cloud.tencent.com (100 s) over the last minutes: a client cut at 100 s
/// that came back 2 s later (cut while alive, rhythm unknown), a client cut
/// that never came back, and a client beating every 5 s.
async fn cut_alive_fixture() -> Fixture {
    let registry = Arc::new(Registry::new());
    let domain = "cloud.tencent.com";
    let open = |port: u16, path: &str| {
        registry.register(NewSession {
            domain: domain.into(),
            client: format!("127.0.0.1:{port}").parse().unwrap(),
            origin: "127.0.0.1:9001".into(),
            path: path.into(),
            timeout: Some(Duration::from_secs(100)),
        })
    };
    let cut_alive = open(50001, "/chat?token=1");
    let gone = open(50002, "/gone");
    let fast = open(50003, "/fast");
    for _ in 0..20 {
        advance(Duration::from_secs(5)).await;
        frame(&fast, Direction::ClientToOrigin, FrameKind::Text, 9);
    }
    let cause = CloseCause::IdleTimeout { timeout_secs: 100 };
    let mut events = Vec::new();
    for g in [cut_alive, gone] {
        let st = g.stats().clone();
        registry.record_close(&st, &cause, Duration::from_secs(100));
        events.push(RelayEvent::Closed {
            id: st.id,
            at: wall() - Duration::from_secs(3),
            domain: domain.into(),
            client: st.client,
            origin: "127.0.0.1:9001".into(),
            cause: cause.clone(),
            to_client: Some(CloseInfo::new(1001, "idle timeout (100 s)")),
            to_origin: Some(CloseInfo::new(1001, "idle timeout (100 s)")),
            idle: Duration::from_secs(100),
            duration: Duration::from_secs(100),
        });
    }
    advance(Duration::from_secs(2)).await;
    frame(&fast, Direction::ClientToOrigin, FrameKind::Text, 9);
    // Same address, same path, a new token: the same client, back.
    let back = open(50004, "/chat?token=2");
    advance(Duration::from_secs(1)).await;
    let mut app = App::new(config(), registry.clone(), Settings::default());
    for e in events {
        update(&mut app, Action::Relay(e));
    }
    app.refresh(Clock {
        mono: Instant::now(),
        wall: wall(),
    });
    Fixture {
        app,
        _guards: vec![fast, back],
    }
}

/// The card recommends above the limit that cut a live client and says
/// why; the dialog's what-if counts the history; the Overview, Basic,
/// Sessions and Event Log show the cut.
#[tokio::test(start_paused = true)]
async fn clients_cut_while_alive_shape_the_advice() {
    let mut f = cut_alive_fixture().await;
    manage(&mut f.app, 2);
    check("manage_advanced_cut_alive", &f.app);
    let screen = text(&f.app, 120, 40);
    assert_line(&screen, "Recommended", "200 s");
    assert_line(&screen, "Recommended", "above the 100 s in force");
    assert!(
        screen.contains("1 client was cut while alive at 100 s before its first beat"),
        "{screen}"
    );
    assert_line(&screen, "Evidence", "1 cut while alive");

    update(&mut f.app, Action::Cmd(Command::Edit));
    typed(&mut f.app, "150");
    check("edit_dialog_history", &f.app);
    let screen = text(&f.app, 120, 40);
    // The client that never came back would have been cut at any limit.
    assert_line(&screen, "Last 10 min", "would have cut 1 of 4 sessions");
    assert_line(
        &screen,
        "Of 2 idle cuts",
        "would have saved 0 live client(s); 1 cannot be known",
    );
    update(&mut f.app, Action::Cmd(Command::Cancel));
    update(&mut f.app, Action::Cmd(Command::Edit));
    typed(&mut f.app, "50");
    let screen = text(&f.app, 120, 40);
    assert_line(&screen, "Last 10 min", "would have cut 2 of 4 sessions");

    let mut f = cut_alive_fixture().await;
    let screen = text(&f.app, 80, 24);
    assert_line(&screen, "cloud.tencent.com", "2         1");
    manage(&mut f.app, 0);
    let screen = text(&f.app, 80, 24);
    assert_line(
        &screen,
        "Last 10 min",
        "2 ended, 2 idle cuts, 1 cut while alive",
    );
    cmds(
        &mut f.app,
        &[Command::NextTab, Command::NextTab, Command::NextTab],
    );
    assert_line(&text(&f.app, 80, 24), "Last 10 min", "1 cut while alive");

    let mut f = cut_alive_fixture().await;
    cmds(&mut f.app, &[Command::Goto(Screen::Events)]);
    check("events_cut_alive", &f.app);
    let screen = text(&f.app, 120, 40);
    assert_eq!(
        screen.matches("cut while alive: idle").count(),
        1,
        "{screen}"
    );
    assert_line(&screen, "↳ cut while alive (10m)", "1");
}

/// The footer drops whole hints from the right as the terminal narrows,
/// never cutting one, and keeps `? help` at the right edge.
#[tokio::test(start_paused = true)]
async fn the_footer_drops_whole_hints_and_keeps_help() {
    let mut f = fixture().await;
    cmds(&mut f.app, &[Command::Goto(Screen::Domains)]);
    // The footer's hints at width `w`, and whether `? help` ends it.
    let footer = |w: u16| {
        let buffer = draw(&f.app, &Theme::color(), w, 24);
        let line: String = (0..w)
            .map(|x| buffer[(x, 23)].symbol().to_string())
            .collect();
        let hints: Vec<String> = line
            .trim()
            .trim_end_matches("? help")
            .split("  ")
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect();
        (hints, line.trim_end().ends_with("? help"))
    };
    let (all, _) = footer(200);
    assert!(all.len() >= 6, "{all:?}");
    for w in 60..=120 {
        let (shown, help) = footer(w);
        assert!(help, "{w}: {shown:?}");
        assert!(!shown.is_empty(), "{w}");
        assert_eq!(shown, all[..shown.len()], "{w}");
    }
}

/// A long status message (a save's error: a path, then what to do) takes
/// the lines it needs above the footer instead of being cut at the edge.
#[tokio::test(start_paused = true)]
async fn a_long_status_wraps_instead_of_being_cut() {
    let mut f = fixture().await;
    let end = "chmod u+w the file or save elsewhere";
    f.app.status = Some(crate::app::Status {
        text: format!(
            "Not saved: /etc/ecdn-console/a/rather/long/path/to/the/configuration/file/ecdn.toml \
             is read-only; {end}."
        ),
        error: true,
    });
    let screen = text(&f.app, 80, 24);
    let lines: Vec<&str> = screen.lines().collect();
    assert!(screen.contains("chmod u+w the file"), "{screen}");
    let status: Vec<&str> = lines[20..23].iter().map(|l| l.trim()).collect();
    assert_eq!(
        status.join(" "),
        format!(
            "Not saved: /etc/ecdn-console/a/rather/long/path/to/the/configuration/file/ecdn.toml \
             is read-only; {end}."
        ),
        "{screen}"
    );
    assert!(lines[23].contains("? help"), "the footer stays: {screen}");
    // A short one keeps to one line.
    f.app.status = Some(crate::app::Status {
        text: "Saved.".into(),
        error: false,
    });
    let screen = text(&f.app, 80, 24);
    assert_eq!(screen.lines().nth(22), Some(" Saved."), "{screen}");
}

/// The switch reads without colour: `[ ON ]` filled (reverse video in
/// monochrome), `[ off ]` plain.
#[tokio::test(start_paused = true)]
async fn the_switch_reads_in_colour_and_in_monochrome() {
    let mut f = fixture().await;
    manage(&mut f.app, 2);
    let on_cell = |buffer: &Buffer| {
        let y = row_of(buffer, "[ ON ]");
        let x = (0..80)
            .find(|x| buffer[(*x, y)].symbol() == "O")
            .expect("ON");
        buffer[(x, y)].clone()
    };
    let mono = on_cell(&draw(&f.app, &Theme::mono(), 80, 24));
    assert!(mono.modifier.contains(Modifier::REVERSED), "{mono:?}");
    let color = on_cell(&draw(&f.app, &Theme::color(), 80, 24));
    assert_eq!((color.fg, color.bg), (Color::Black, Color::Green));
    // www.example.com has its switch off.
    let mut f = fixture().await;
    manage_row(&mut f.app, 0, 2);
    assert!(text(&f.app, 80, 24).contains("Switch        [ off ]"));
}

#[tokio::test(start_paused = true)]
async fn the_quit_question_shows_its_three_answers_from_the_keymap() {
    let mut f = fixture().await;
    update(&mut f.app, Action::Cmd(Command::Quit));
    let screen = text(&f.app, 120, 30);
    let buttons = line_with(&screen, "Close them");
    for answer in [
        "k  Keep them running in a background relay",
        "y  Close them",
        "n  Cancel",
    ] {
        assert!(
            buttons.contains(answer),
            "{answer:?} missing from {buttons:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_demos_quit_question_shows_two_answers_and_says_why() {
    let mut f = fixture().await;
    f.app.settings.sessions_stay = Some("the demo's clients and origins run in this process");
    update(&mut f.app, Action::Cmd(Command::Quit));
    let screen = text(&f.app, 120, 30);
    let buttons = line_with(&screen, "Close them");
    assert!(
        buttons.contains("y  Close them") && buttons.contains("n  Cancel"),
        "{buttons:?}"
    );
    assert!(!screen.contains("Keep them"), "{screen}");
    assert!(
        !screen.contains("k keep"),
        "the hint line offers k: {screen}"
    );
    assert!(
        screen.contains("origins run in this process, so no background relay can"),
        "{screen}"
    );
}

/// A self-signed certificate for `name` (CN) valid for `days` more days
/// (and an hour, so the count does not tick down during the test).
fn certificate(dir: &std::path::Path, name: &str, days: u64) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.not_after = (SystemTime::now() + Duration::from_secs(days * 86_400 + 3600)).into();
    let cert = params.self_signed(&key).unwrap();
    let (cert_file, key_file) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    format!("certificate = {{ cert-file = {cert_file:?}, key-file = {key_file:?} }}\n")
}

/// The test config served on `tls-listen`: www.example.com's certificate
/// expires in 9 days, cloud.tencent.com's in 90, api.example.com has none
/// (and there is no default).
fn tls_app(dir: &std::path::Path) -> App {
    let mut text = TEST_CONFIG.replace(
        "listen = \"127.0.0.1:0\"\n",
        "listen = \"127.0.0.1:0\"\ntls-listen = \"127.0.0.1:0\"\n",
    );
    for (name, days) in [("www.example.com", 9), ("cloud.tencent.com", 90)] {
        let line = format!("name = \"{name}\"\n");
        text = text.replace(&line, &format!("{line}{}", certificate(dir, name, days)));
    }
    let config = crate::config::Config::parse(&text, &dir.join("c.toml")).unwrap();
    let set = crate::relay::tls::CertificateSet::load(&config).unwrap();
    let mut app = App::new(
        Arc::new(config),
        Arc::new(Registry::new()),
        Settings::default(),
    );
    app.certificates = crate::app::Certificates::of_set(Some(&set));
    app.refresh(Clock::now());
    app
}

fn row_text(buffer: &Buffer, y: u16) -> String {
    (0..buffer.area.width)
        .map(|x| buffer[(x, y)].symbol().to_string())
        .collect()
}

/// The cells of row `y` that spell `needle`.
fn cells_of<'b>(buffer: &'b Buffer, y: u16, needle: &str) -> Vec<&'b ratatui::buffer::Cell> {
    let row = row_text(buffer, y);
    let start = row
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {row}"));
    let x = u16::try_from(row[..start].chars().count()).unwrap();
    let len = u16::try_from(needle.chars().count()).unwrap();
    (x..x + len).map(|x| &buffer[(x, y)]).collect()
}

#[tokio::test]
async fn certificates_show_subject_and_expiry_warning_coloured_near_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = tls_app(dir.path());
    // The last row selected, so the others are drawn in their own colours.
    cmds(&mut app, &[Command::Goto(Screen::Domains), Command::End]);

    // 80 columns: the expiry where Origin would be.
    let buffer = draw(&app, &Theme::color(), 80, 24);
    let header = row_text(&buffer, row_of(&buffer, "Status"));
    assert!(
        header.contains("Certificate") && !header.contains("Origin"),
        "{header}"
    );
    let www = row_of(&buffer, "www.example.com");
    assert!(
        cells_of(&buffer, www, "!9 d left")
            .iter()
            .all(|c| c.fg == Color::Yellow)
    );
    let cloud = row_of(&buffer, "cloud.tencent.com");
    assert!(
        cells_of(&buffer, cloud, "90 d left")
            .iter()
            .all(|c| c.fg == Color::Reset)
    );
    let api = row_text(&buffer, row_of(&buffer, "api.example.com"));
    assert!(api.contains("none"), "{api}");

    // Wide: the subject too.
    let buffer = draw(&app, &Theme::color(), 170, 30);
    let row = row_text(&buffer, row_of(&buffer, "www.example.com "));
    assert!(row.contains("!9 d left · CN=www.example.com"), "{row}");

    // Monochrome still marks it.
    let buffer = draw(&app, &Theme::mono(), 80, 24);
    assert!(row_text(&buffer, row_of(&buffer, "www.example.com")).contains("!9 d left"));

    // Basic Information: subject, expiry date, time left in the warning colour.
    cmds(&mut app, &[Command::Home, Command::Open]);
    let buffer = draw(&app, &Theme::color(), 80, 24);
    let y = row_of(&buffer, "Certificate");
    let line = row_text(&buffer, y);
    assert!(line.contains("Certificate"), "{line}");
    let info = app.certificate(&"www.example.com".into()).info().unwrap();
    let expires = humantime::format_rfc3339_seconds(info.not_after);
    assert!(line.contains("CN=www.example.com"), "{line}");
    let next = row_text(&buffer, y + 1);
    assert!(
        next.contains(&format!("expires {expires} (!9 d left)")),
        "{next}"
    );
    assert!(
        cells_of(&buffer, y + 1, "!9 d left")
            .iter()
            .all(|c| c.fg == Color::Yellow)
    );

    // Once past the date: EXPIRED, in the error colour.
    let later = SystemTime::now() + Duration::from_secs(100 * 86_400);
    app.refresh(Clock {
        mono: Instant::now(),
        wall: later,
    });
    cmds(&mut app, &[Command::Back, Command::End]);
    let buffer = draw(&app, &Theme::color(), 80, 24);
    let cloud = row_of(&buffer, "cloud.tencent.com");
    assert!(
        cells_of(&buffer, cloud, "EXPIRED")
            .iter()
            .all(|c| c.fg == Color::Red)
    );
}

#[tokio::test(start_paused = true)]
async fn without_tls_listen_the_certificate_says_so() {
    let mut f = fixture().await;
    f.app.certificates = crate::app::Certificates::NoTls;
    manage(&mut f.app, 0);
    let screen = text(&f.app, 80, 24);
    assert_line(
        &screen,
        "Certificate",
        "— no wss:// here: [relay] tls-listen is not set",
    );
    // The list has no column for it in 80 columns, and one in the widest.
    cmds(&mut f.app, &[Command::Back]);
    let screen = text(&f.app, 80, 24);
    assert!(!screen.contains("Certificate"), "{screen}");
    let screen = text(&f.app, 170, 30);
    assert!(
        line_with(&screen, "cloud.tencent.com ").contains("no TLS"),
        "{screen}"
    );
}
