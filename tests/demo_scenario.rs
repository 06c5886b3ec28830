//! The demo's synthetic clients against the real relay and origins: who is
//! cut for idleness, who stays, and that changing a timeout changes it.
//! The shipped timings run under paused time (a minute of demo in a blink);
//! the scaled-down cast runs in a few seconds of real time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ecdn_console::app::advice;
use ecdn_console::config::{ConfigFile, Edit};
use ecdn_console::demo::{self, Fate, Scenario};
use ecdn_console::relay::heartbeat::Rhythm;
use ecdn_console::relay::{self, CloseCause, RelayEvent, RelayHandle};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A running demo without the console.
struct Show {
    _dir: tempfile::TempDir,
    file: ConfigFile,
    relay: RelayHandle,
    events: mpsc::Receiver<RelayEvent>,
    stop: CancellationToken,
    started: Instant,
    /// Session id → its client's key, from the Opened events.
    paths: HashMap<u64, String>,
}

async fn start(scenario: &Scenario) -> Show {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let origins = demo::start_origins(scenario, &stop).await.unwrap();
    let file = demo::write_config(dir.path(), scenario, &origins).unwrap();
    let (relay, events) = relay::start(Arc::new(file.config().clone())).await.unwrap();
    let started = Instant::now();
    demo::spawn_clients(scenario, relay.local_addr(), &stop).unwrap();
    Show {
        _dir: dir,
        file,
        relay,
        events,
        stop,
        started,
        paths: HashMap::new(),
    }
}

/// What happened to one client (by domain and path) in a stretch of time.
#[derive(Debug, Default)]
struct Record {
    opened: usize,
    /// (seconds since the start, timeout of the cut, idle at the cut)
    idle_cuts: Vec<(f64, u64, Duration)>,
    other_closes: Vec<CloseCause>,
}

impl Show {
    /// Collects relay events until `until` (since the start), per client.
    async fn watch(&mut self, until: Duration, records: &mut HashMap<String, Record>) {
        let deadline = self.started + until;
        loop {
            let event = tokio::select! {
                e = self.events.recv() => e.expect("relay running"),
                () = tokio::time::sleep_until(deadline) => return,
            };
            let at = self.started.elapsed().as_secs_f64();
            match event {
                RelayEvent::Opened {
                    id, domain, path, ..
                } => {
                    let key = format!("{domain}{path}");
                    records.entry(key.clone()).or_default().opened += 1;
                    self.paths.insert(id, key);
                }
                RelayEvent::Closed {
                    id, cause, idle, ..
                } => {
                    let key = self
                        .paths
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| format!("#{id}"));
                    let record = records.entry(key).or_default();
                    match cause {
                        CloseCause::IdleTimeout { timeout_secs } => {
                            record.idle_cuts.push((at, timeout_secs, idle));
                        }
                        other => record.other_closes.push(other),
                    }
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
    }

    fn set_chat_timeout(&mut self, secs: u16) {
        let config = self
            .file
            .apply(&Edit::SetWebSocket {
                domain: demo::scenario::CHAT.into(),
                switch: None,
                timeout: Some(secs),
            })
            .unwrap()
            .clone();
        self.relay.apply_config(Arc::new(config));
    }
}

fn key(spec: &demo::ClientSpec) -> String {
    format!("{}{}", spec.domain, spec.path)
}

/// Every client opened a session; those meant to stay were never cut;
/// those cut after `t` s were cut at about `t` s of idleness, `cycles`
/// times or more (within the watched time).
fn check(scenario: &Scenario, records: &HashMap<String, Record>, watched: Duration) {
    for spec in scenario.clients() {
        let r = records
            .get(&key(&spec))
            .unwrap_or_else(|| panic!("{} never connected: {records:#?}", key(&spec)));
        assert!(r.opened >= 1, "{}: {r:?}", key(&spec));
        assert!(r.other_closes.is_empty(), "{}: {r:?}", key(&spec));
        let expected_cycles = match spec.fate {
            Fate::Stays => 0,
            Fate::CutAfter(t) => {
                let cycle = f64::from(t) + scenario.reconnect.as_secs_f64();
                (watched.as_secs_f64() / cycle).floor() as usize
            }
            Fate::CutOnceAfter(_) => 1,
        };
        match spec.fate {
            Fate::Stays => assert!(r.idle_cuts.is_empty(), "{} was cut: {r:?}", key(&spec)),
            Fate::CutOnceAfter(t) => {
                // Never back: one session, one cut.
                assert_eq!(r.opened, 1, "{}: {r:?}", key(&spec));
                assert_eq!(r.idle_cuts.len(), 1, "{}: {r:?}", key(&spec));
                assert_eq!(r.idle_cuts[0].1, u64::from(t), "{}: {r:?}", key(&spec));
            }
            Fate::CutAfter(t) => {
                assert!(
                    r.idle_cuts.len() >= expected_cycles,
                    "{}: expected {expected_cycles} cuts at {t} s: {r:?}",
                    key(&spec)
                );
                for (_, timeout, idle) in &r.idle_cuts {
                    assert_eq!(*timeout, u64::from(t), "{}: {r:?}", key(&spec));
                    let idle = idle.as_secs_f64();
                    let t = f64::from(t);
                    assert!(idle >= t * 0.95 && idle < t + 0.5, "{}: {r:?}", key(&spec));
                }
            }
        }
    }
}

/// The demo as shipped, under paused time: by 60 s the silent,
/// slow-heartbeat, switch-off and dynamic-acceleration clients have been cut
/// at their limits (and reconnected); the fast heartbeat, the ping-kept
/// client, the ticker and the no-limit client are still there. By 80 s the
/// ping-kept client's slow messages show as a heartbeat over the timeout.
#[tokio::test(start_paused = true)]
async fn the_shipped_demo_cuts_the_right_clients_within_a_minute() {
    let scenario = Scenario::shipped();
    let mut show = start(&scenario).await;
    let mut records = HashMap::new();
    let minute = Duration::from_secs(60);
    show.watch(minute, &mut records).await;
    check(&scenario, &records, minute);
    let registry = show.relay.registry().clone();
    let rhythm = |path: &str| {
        let s = registry
            .snapshot(Instant::now())
            .into_iter()
            .find(|s| s.domain.as_ref() == "chat.demo.test" && s.path.as_ref() == path)
            .unwrap_or_else(|| panic!("no live session on {path}"));
        Rhythm::of(&registry.get(s.id).unwrap())
    };
    let twenty = Some(Duration::from_secs(20));
    // The 5 s heartbeat is seen, and fits the timeout.
    let fast = rhythm("/heartbeat-5s");
    assert_eq!(fast.heartbeat().unwrap().median, Duration::from_secs(5));
    assert!(!fast.exceeds(twenty));
    // The client kept alive by pings has messages 25 s apart: by its fourth
    // message (75 s) the console flags that heartbeat as too slow.
    assert!(rhythm("/messages-25s-pings-8s").heartbeat().is_none());
    show.watch(Duration::from_secs(80), &mut records).await;
    let kept = rhythm("/messages-25s-pings-8s");
    assert_eq!(kept.heartbeat().unwrap().median, Duration::from_secs(25));
    assert!(kept.exceeds(twenty));
    check(&scenario, &records, Duration::from_secs(80));
    advice_on_chat(&show, 3);
    // Who was cut first, and when: the 15 s rule, then the chat timeout.
    let first_cut = |k: &str| records[k].idle_cuts.first().map(|c| c.0.round() as u64);
    assert_eq!(first_cut("legacy.demo.test/silent"), Some(15));
    assert_eq!(first_cut("api.demo.test/silent"), Some(15));
    assert_eq!(first_cut("chat.demo.test/silent-never-back"), Some(20));
    assert_eq!(first_cut("chat.demo.test/heartbeat-25s"), Some(20));
    show.stop.cancel();
    show.relay.shutdown();
}

/// DESIGN §10 on the demo's chat domain (20 s): the 25 s client, cut
/// every cycle and back 2 s later, is counted as cut while alive — at
/// least `cuts` times; the silent client that never came back is not; the
/// recommendation is above the limit and says why.
fn advice_on_chat(show: &Show, cuts: usize) {
    let now = Instant::now();
    let registry = show.relay.registry();
    let evidence = registry.evidence(&demo::scenario::CHAT.into(), now);
    let cut: Vec<_> = evidence
        .sessions
        .iter()
        .filter(|s| s.cut_while_alive)
        .collect();
    assert!(cut.len() >= cuts, "{evidence:#?}");
    for s in &cut {
        assert_eq!(s.client.path.as_ref(), "/heartbeat-25s", "{evidence:#?}");
    }
    let silent: Vec<_> = evidence
        .sessions
        .iter()
        .filter(|s| s.client.path.as_ref() == "/silent-never-back")
        .collect();
    assert_eq!(silent.len(), 1, "{evidence:#?}");
    assert!(silent[0].idle_cut.is_some() && !silent[0].cut_while_alive);

    let config = show.relay.config();
    let rec = advice::recommend_for(registry, &config, "CHAT.demo.test", now).unwrap();
    assert_eq!(rec.domain, "chat.demo.test");
    assert_eq!(rec.current_limit_secs, Some(20));
    assert_eq!(rec.cut_while_alive, cut.len());
    assert!(rec.recommended_timeout_secs > 20, "{rec:#?}");
    assert_eq!(rec.recommended_timeout_secs, 60, "{rec:#?}");
    assert!(
        rec.reason.starts_with(&format!(
            "{} clients were cut while alive at 20 s before their first beat",
            cut.len()
        )),
        "{rec:#?}"
    );
    assert!(rec.reason.contains("raise the limit to 60 s"), "{rec:#?}");
    assert!(rec.would_cut_now.is_empty(), "{rec:#?}");
}

/// The cast with timeouts of 2 s, in real time; then chat's timeout is
/// raised to 3 s as an operator would: the 2.5 s heartbeat client is no
/// longer cut, the silent one is cut at 3 s.
#[tokio::test]
async fn scaled_down_demo_and_a_changed_timeout() {
    let scenario = Scenario::scaled_down();
    let mut show = start(&scenario).await;
    let mut records = HashMap::new();
    let first = Duration::from_millis(4600);
    show.watch(first, &mut records).await;
    check(&scenario, &records, first);

    show.set_chat_timeout(3);
    let changed_at = show.started.elapsed();
    let mut after = HashMap::new();
    show.watch(changed_at + Duration::from_millis(4500), &mut after)
        .await;
    let slow = "chat.demo.test/heartbeat-2.5s";
    assert!(
        after.get(slow).is_none_or(|r| r.idle_cuts.is_empty()),
        "{slow} was cut after the timeout went above its heartbeat: {after:#?}"
    );
    // The silent chat client was a dead peer: cut once, never back.
    assert!(
        after
            .get("chat.demo.test/silent-never-back")
            .is_none_or(|r| r.opened == 0 && r.idle_cuts.is_empty()),
        "{after:#?}"
    );
    for stays in [
        "chat.demo.test/heartbeat-0.5s",
        "ticker.demo.test/silent-origin-ticks",
        "stream.demo.test/silent",
    ] {
        assert!(
            after.get(stays).is_none_or(|r| r.idle_cuts.is_empty()),
            "{stays}: {after:#?}"
        );
    }
    show.stop.cancel();
    show.relay.shutdown();
}
