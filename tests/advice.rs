//! Advice from evidence (DESIGN §10) over real sockets, under paused time:
//! a domain whose clients beat every 5 s (one of them once late) gets a
//! recommendation with room for a late beat, never below a gap it saw.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use ecdn_console::app::advice;
use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, sleep};
use tokio_tungstenite::tungstenite::Message;

/// A tungstenite client through the relay: a message every `every`, but
/// `late` once (after the third beat); each echo read.
async fn beating(relay: std::net::SocketAddr, every: Duration, late: Option<Duration>) {
    let mut client = connect(relay, "app.test").await;
    for i in 0..100u32 {
        let pause = if i == 3 { late.unwrap_or(every) } else { every };
        sleep(pause).await;
        if client
            .send(Message::text(format!("beat {i}")))
            .await
            .is_err()
        {
            return;
        }
        match client.next().await {
            Some(Ok(_)) => {}
            _ => return,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn five_second_beats_get_room_for_a_late_beat() {
    let (relay, _events) = relay_to_echo("{ switch = \"on\", timeout = 20 }").await;
    let addr = relay.local_addr();
    let five = Duration::from_secs(5);
    for late in [None, None, Some(Duration::from_millis(8200))] {
        tokio::spawn(beating(addr, five, late));
    }
    sleep(Duration::from_secs(60)).await;

    let registry = relay.registry();
    let now = Instant::now();
    let evidence = registry.evidence(&"app.test".into(), now);
    assert_eq!(evidence.sessions.len(), 3, "{evidence:#?}");
    let longest = evidence
        .sessions
        .iter()
        .map(|s| s.longest_gap)
        .max()
        .unwrap();
    assert!(longest >= Duration::from_millis(8200), "{evidence:#?}");

    let rec = advice::recommend_for(registry, &relay.config(), "app.test", now).unwrap();
    assert_eq!(rec.current_limit_secs, Some(20));
    assert_eq!(rec.sessions_seen, 3);
    assert_eq!(rec.heartbeat_secs, Some(5.0));
    assert_eq!(rec.cut_while_alive, 0);
    // Never below a gap seen, and room for a late beat: 8.2 s × 1.5 → 15 s.
    let recommended = Duration::from_secs(rec.recommended_timeout_secs.into());
    assert!(recommended > longest, "{rec:#?}");
    assert_eq!(rec.recommended_timeout_secs, 15, "{rec:#?}");
    assert!(
        rec.reason.ends_with("15 s leaves room for a late beat."),
        "{rec:#?}"
    );
    assert!(rec.reason.contains("~5 s on 3 of 3 sessions"), "{rec:#?}");
    assert!(rec.reason.contains("longest gap 8.2 s"), "{rec:#?}");
    assert!(rec.would_cut_now.is_empty(), "{rec:#?}");

    // Nothing in this domain's history would be cut at the recommendation;
    // at 8 s the late beat would have been.
    let at = |secs: u64| advice::what_if(&evidence, Some(Duration::from_secs(secs)));
    assert_eq!(at(15).would_have_cut, 0);
    assert_eq!(at(8).would_have_cut, 1);
    assert!(matches!(
        advice::recommend_for(registry, &relay.config(), "nope.test", now),
        Err(advice::AdviceError::UnknownDomain(_))
    ));
    relay.shutdown();
}
