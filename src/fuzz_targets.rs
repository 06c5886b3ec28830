//! Bodies of the `cargo fuzz` targets (`fuzz/`), kept in the library so the
//! corpus replay test (`tests/fuzz_corpus.rs`) runs exactly the same code.
//! Only with the `fuzzing` feature: not part of the console's API.
//! Each must return normally for every input: a panic is a bug.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::config::{Config, ConfigFile, Edit, Switch};
use crate::relay::handshake::origin_request;
use crate::relay::{FrameScanner, parse_request};

const ROUTES: &str = r#"
[[domain]]
name = "app.test"
acceleration = "full-site"
origins = ["127.0.0.1:9001"]
websocket = { switch = "on", timeout = 60 }

[[domain]]
name = "localhost"
acceleration = "dynamic"
status = "offline"
origins = ["127.0.0.1:9001"]
"#;

fn routes() -> Option<&'static Arc<Config>> {
    static CONFIG: OnceLock<Option<Arc<Config>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Config::parse(ROUTES, Path::new("fuzz.toml"))
                .ok()
                .map(Arc::new)
        })
        .as_ref()
}

/// A client's request head: parse, route by Host, build the origin request.
pub fn handshake(data: &[u8]) {
    let Ok(Some((request, end))) = parse_request(data) else {
        return;
    };
    assert!(end <= data.len());
    if let Some(domain) = routes().and_then(|c| c.route(&request.host)) {
        let head = origin_request(domain, &request, ([127, 0, 0, 1], 1).into());
        assert!(head.ends_with(b"\r\n\r\n"));
    }
}

/// A config file: parse and validate; when valid, an edit round trip must
/// produce a file that still loads.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    let Ok(file) = ConfigFile::from_text(Path::new("fuzz.toml"), text.to_string()) else {
        return;
    };
    if let Some(domain) = config.domains.first() {
        let edit = Edit::SetWebSocket {
            domain: domain.name.to_string(),
            switch: Some(Switch::Off),
            timeout: Some(30),
        };
        let mut doc = text.parse::<toml_edit::DocumentMut>().unwrap_or_default();
        if edit.apply(file.config(), &mut doc).is_ok() {
            let edited = doc.to_string();
            assert!(
                Config::parse(&edited, Path::new("fuzz.toml")).is_ok(),
                "an edit broke a valid file"
            );
        }
    }
}

/// Frame bytes in both directions, cut into chunks at the positions the
/// first bytes choose: forwarded ranges must stay in bounds and add up.
pub fn frames(data: &[u8]) {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    for from_client in [true, false] {
        let mut scanner = FrameScanner::new(from_client, 1 << 16, cut & 1 == 1);
        let mut buf = vec![0u8; crate::relay::MAX_HEADER + rest.len()];
        let step = usize::from(cut).max(1);
        for chunk in rest.chunks(step) {
            let carry = scanner.copy_carry(&mut buf);
            buf[carry..carry + chunk.len()].copy_from_slice(chunk);
            let scan = scanner.scan(&buf[..carry + chunk.len()], |_| {});
            assert!(scan.forward <= carry + chunk.len());
            if scan.violation.is_some() || scan.close.is_some() {
                break;
            }
        }
    }
}

/// Keys the console may be sent, as bytes pick them: every printable the
/// key tables use, and the named keys with their modifiers.
fn key_of(byte: u8) -> crossterm::event::KeyEvent {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    const NAMED: [KeyCode; 16] = [
        KeyCode::Enter,
        KeyCode::Esc,
        KeyCode::Tab,
        KeyCode::BackTab,
        KeyCode::Up,
        KeyCode::Down,
        KeyCode::Left,
        KeyCode::Right,
        KeyCode::PageUp,
        KeyCode::PageDown,
        KeyCode::Home,
        KeyCode::End,
        KeyCode::Backspace,
        KeyCode::Delete,
        KeyCode::F(1),
        KeyCode::Char(' '),
    ];
    let modifiers = match byte >> 6 {
        0 | 1 => KeyModifiers::NONE,
        2 => KeyModifiers::SHIFT,
        _ => KeyModifiers::CONTROL,
    };
    let low = byte & 0x3f;
    let code = match usize::from(low).checked_sub(NAMED.len()) {
        None => NAMED[usize::from(low)],
        // 48 printables: letters, digits and the symbols keys use.
        Some(i) => KeyCode::Char(char::from(
            b"abcdefghijklmnopqrstuvwxyz0123456789/?:-+.,[]{}\\"[i % 48],
        )),
    };
    KeyEvent::new(code, modifiers)
}

/// Added to the tests' config for the keys: an offline domain with
/// weighted origins, for the columns and forms that show them.
const KEYS_EXTRA_DOMAIN: &str = r#"
[[domain]]
name = "static.example.com"
acceleration = "dynamic"
status = "offline"
origins = ["127.0.0.1:9001", "127.0.0.1:9002:5"]
"#;

/// Sizes a byte picks for the next draw: the smallest the console draws
/// at, narrow, the usual, wide, and below the minimum.
const KEY_SIZES: [(u16, u16); 5] = [(80, 24), (60, 16), (120, 40), (200, 60), (30, 8)];

/// Key presses on the console, drawn after each: every key the tables
/// know, on every screen and dialog — in process with its effects carried
/// out on a real file (saves, reloads, closing sessions), or attached — no
/// key sequence may panic (the rule of the Standards: none is reachable from the keyboard).
/// The first byte picks the terminal size, and with its two high bits the
/// console (in process, attached, on a cloud account); every later byte is
/// a key, except that 0xFF picks a new size from the next byte.
pub fn keys(data: &[u8]) {
    use crate::app::{App, Clock, Settings, update};
    use crate::relay::Registry;
    use crate::tui::effects::perform;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join("keys.toml");
    let text = format!("{}{KEYS_EXTRA_DOMAIN}", crate::app::fixtures::TEST_CONFIG);
    if std::fs::write(&path, text).is_err() {
        return;
    }
    let Ok(mut file) = ConfigFile::load(&path) else {
        return;
    };
    let registry = Arc::new(Registry::new());
    let _sessions = live_sessions(&registry);
    let settings = Settings {
        config_path: path.clone(),
        relay_addr: Some(([127, 0, 0, 1], 8080).into()),
        banner: None,
        sessions_stay: None,
    };
    let Some((&first, keys)) = data.split_first() else {
        return;
    };
    let config = Arc::new(file.config().clone());
    // The first byte's two high bits: the in-process console, one attached
    // to another process's relay (its table as fetched), or one on a
    // Tencent Cloud account (its domains as listed). Only the first has
    // its effects carried out here.
    let mut app = match first >> 6 {
        0 | 1 => App::new(config, registry.clone(), settings),
        2 => attached(config, &registry, settings),
        _ => crate::app::fixtures::on_cloud(
            App::new(config, registry.clone(), settings),
            &[("web.example.com", "web"), ("dyn.example.com", "dynamic")],
        ),
    };
    let theme = crate::ui::Theme::color();
    let size = |b: u8| KEY_SIZES[usize::from(b) % KEY_SIZES.len()];
    let (w, h) = size(first & 0x3f);
    let Ok(mut terminal) = Terminal::new(TestBackend::new(w, h));
    let mut bytes = keys.iter();
    while let Some(&byte) = bytes.next() {
        if byte == 0xff {
            let (w, h) = size(bytes.next().copied().unwrap_or(0));
            terminal.backend_mut().resize(w, h);
            continue;
        }
        if let Some(action) = app.action_for_key(&key_of(byte)) {
            let effects = update(&mut app, action);
            // Quit ends a real console; here the keys go on.
            let in_process =
                app.relay.local().is_some() && matches!(app.source, crate::app::DomainSource::File);
            if in_process {
                perform(&mut app, &mut file, &registry, effects);
            }
        }
        app.refresh(Clock::now());
        let Ok(_) = terminal.draw(|f| crate::ui::render(f, &app, &theme));
    }
}

/// Three live sessions on two domains, for the tables and pages to show.
fn live_sessions(registry: &Arc<crate::relay::Registry>) -> Vec<crate::relay::SessionGuard> {
    ["www.example.com", "cloud.tencent.com", "cloud.tencent.com"]
        .into_iter()
        .zip(50_000u16..)
        .map(|(domain, port)| {
            registry.register(crate::relay::NewSession {
                domain: domain.into(),
                client: ([127, 0, 0, 1], port).into(),
                origin: "127.0.0.1:9001".into(),
                path: "/chat".into(),
                timeout: Some(std::time::Duration::from_secs(100)),
            })
        })
        .collect()
}

/// A console attached to a relay whose table holds `registry`'s sessions,
/// as `attach` would have fetched them, with the relay's evidence.
fn attached(
    config: Arc<Config>,
    registry: &crate::relay::Registry,
    settings: crate::app::Settings,
) -> crate::app::App {
    use crate::app::{App, RelayView, Remote};
    let now = tokio::time::Instant::now();
    let mut remote = Remote {
        pid: 4242,
        config_version: 1,
        ..Remote::default()
    };
    for snapshot in registry.snapshot(now) {
        remote.table.take(snapshot, Default::default(), now);
    }
    if let Some(d) = config.domains.get(1) {
        remote.evidence.domain = Some(registry.evidence(&d.name, now));
    }
    App::with_view(config, RelayView::Remote(Box::new(remote)), settings)
}
