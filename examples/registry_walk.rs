//! What a console's walk of the session table costs a worker (issue 12:
//! "nothing the control socket does delays a frame"): a registry of
//! SESSIONS sessions on two workers, a reader thread walking it as
//! `sessions-changed` does (every id, and whether each changed) WALKS times
//! a second, and a worker thread opening and closing a session every
//! 100 µs (10,000 handshakes a second), as a worker does at every handshake
//! and close. Reports how long one open + close took — p50 / p99 / max —,
//! how long in all, and how long one walk took. While the worker waits on a
//! lock the reader holds, every session of that worker waits with it.
//!
//!   cargo run --release --example registry_walk -- [SESSIONS] [SECONDS] [WALKS]
//!
//! Defaults: 100,000 sessions, 5 s, 20 walks a second (ten consoles'
//! worth at two requests a second each).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ecdn_console::relay::{NewSession, Registry};
use tokio_util::sync::CancellationToken;

fn session(i: usize) -> NewSession {
    NewSession {
        domain: "bench.test".into(),
        client: std::net::SocketAddr::from(([127, 0, 0, 1], (i % 60_000) as u16 + 1024)),
        origin: "127.0.0.1:9001".into(),
        path: "/".into(),
        timeout: None,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let sessions: usize = args
        .next()
        .map_or(100_000, |a| a.parse().expect("SESSIONS"));
    let seconds: u64 = args.next().map_or(5, |a| a.parse().expect("SECONDS"));
    let walks: u32 = args.next().map_or(20, |a| a.parse().expect("WALKS"));
    let registry = Arc::new(Registry::with_workers(2));
    let parent = CancellationToken::new();
    let _held: Vec<_> = (0..sessions)
        .map(|i| registry.register_on(i % 2, session(i), &parent))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));

    let reader = {
        let (registry, stop) = (registry.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut took = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let since = registry.clock_ms(tokio::time::Instant::now());
                let mut ids = Vec::with_capacity(sessions);
                let mut changed = 0usize;
                registry.for_each_session(|s| {
                    ids.push(s.id);
                    changed += usize::from(s.changed_since(since));
                });
                std::hint::black_box((ids, changed));
                took.push(started.elapsed());
                std::thread::sleep(Duration::from_secs(1) / walks);
            }
            took
        })
    };

    let until = Instant::now() + Duration::from_secs(seconds);
    let mut waits = Vec::new();
    let mut i = sessions;
    let mut next = Instant::now();
    while next < until {
        // A worker between handshakes runs its sessions' frames: here it
        // spins, so that its thread stays on a CPU as a busy worker's does.
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        let started = Instant::now();
        drop(registry.register_on(0, session(i), &parent));
        waits.push(started.elapsed());
        i += 1;
        next += Duration::from_micros(100);
    }
    stop.store(true, Ordering::Relaxed);
    let walks = reader.join().unwrap();

    println!(
        "{sessions} sessions on 2 workers; one worker opening and closing {} sessions, one every 100 µs, while a reader walked the table {} times",
        waits.len(),
        walks.len()
    );
    let total: Duration = waits.iter().sum();
    println!(
        "open + close: {}; {:.1} ms in all",
        summary(&mut waits),
        total.as_secs_f64() * 1e3
    );
    println!("one walk:     {}", summary(&mut walks.clone()));
}

fn summary(times: &mut [Duration]) -> String {
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q) as usize];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    format!(
        "p50 {:.1} µs, p99 {:.1} µs, p99.99 {:.1} µs, max {:.1} µs",
        us(at(0.5)),
        us(at(0.99)),
        us(at(0.9999)),
        us(times[times.len() - 1])
    )
}
