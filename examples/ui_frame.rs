//! UI cost of issue 6: the time to build and render one Live Sessions frame
//! with many sessions, as the console does it each frame — `App::refresh`
//! (sample the registry, sort closest-to-deadline first) plus drawing into
//! ratatui's `TestBackend` — reported as p50 / p99 / max over many frames.
//!
//!   cargo run --release --example ui_frame -- [SESSIONS] [FRAMES]
//!
//! Defaults: 9,000 sessions, 300 frames, at 80×24 and at 120×40.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ecdn_console::app::{Action, App, Clock, Command, Screen, Settings, update};
use ecdn_console::config::{Config, DEFAULT_CONFIG};
use ecdn_console::relay::{Direction, FrameKind, NewSession, Registry, SeenFrame};
use ecdn_console::ui::{Theme, render};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn main() {
    let mut args = std::env::args().skip(1);
    let sessions: usize = args.next().map_or(9_000, |a| a.parse().expect("SESSIONS"));
    let frames: usize = args.next().map_or(300, |a| a.parse().expect("FRAMES"));
    // `Instant`s of the registry are tokio's; outside a runtime they are std's.
    // The built-in default: www.example.com (switch off, 15 s) and
    // cloud.tencent.com (on, 100 s).
    let config =
        Arc::new(Config::parse(DEFAULT_CONFIG, Path::new("default.toml")).expect("config"));
    let registry = Arc::new(Registry::new());
    let guards: Vec<_> = (0..sessions)
        .map(|i| {
            let domain = if i % 3 == 0 {
                "www.example.com"
            } else {
                "cloud.tencent.com"
            };
            let g = registry.register(NewSession {
                domain: domain.into(),
                client: format!("127.0.0.{}:{}", 1 + i / 50_000, 10_000 + i % 50_000)
                    .parse()
                    .unwrap(),
                origin: "127.0.0.1:9001".into(),
                path: "/chat".into(),
                timeout: Some(Duration::from_secs(if i % 3 == 0 { 15 } else { 100 })),
            });
            // Some traffic, so the counters and gauges have something to show.
            if i % 2 == 0 {
                let now = tokio::time::Instant::now();
                g.stats().record_frame(
                    now,
                    Direction::ClientToOrigin,
                    SeenFrame {
                        kind: FrameKind::Text,
                        fin: true,
                        payload_len: 40,
                    },
                    true,
                );
                g.stats().record_frame(
                    now,
                    Direction::OriginToClient,
                    SeenFrame {
                        kind: FrameKind::Text,
                        fin: true,
                        payload_len: 40,
                    },
                    true,
                );
            }
            g
        })
        .collect();
    println!("{sessions} live sessions, {frames} frames each");
    for (w, h) in [(80, 24), (120, 40)] {
        let mut app = App::new(config.clone(), registry.clone(), Settings::default());
        update(&mut app, Action::Cmd(Command::Goto(Screen::Sessions)));
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        let theme = Theme::color();
        let mut refresh = Vec::with_capacity(frames);
        let mut draw = Vec::with_capacity(frames);
        let mut total = Vec::with_capacity(frames);
        for _ in 0..frames {
            let t0 = Instant::now();
            app.refresh(Clock::now());
            let t1 = Instant::now();
            terminal.draw(|f| render(f, &app, &theme)).unwrap();
            let t2 = Instant::now();
            refresh.push(t1 - t0);
            draw.push(t2 - t1);
            total.push(t2 - t0);
        }
        println!("{w}×{h}: frame {}", stats(&mut total));
        println!("        refresh (sample + sort) {}", stats(&mut refresh));
        println!("        render + diff           {}", stats(&mut draw));
    }
    drop(guards);
}

fn stats(v: &mut [Duration]) -> String {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(v[v.len() - 1])
    )
}
