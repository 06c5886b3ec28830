//! Heartbeat inference: from the gaps observed between messages, what
//! timeout would keep a domain's sessions alive, and which sessions the
//! current timeout is going to cut.

use std::time::Duration;

use super::registry::{Direction, MessageGaps, SessionStats};
use crate::config::{MAX_TIMEOUT_SECS, RECOMMENDED_TIMEOUT_SECS};

/// Gaps needed before a direction's rhythm is trusted as a heartbeat.
pub const MIN_SAMPLES: usize = 3;

/// A session's observed rhythm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rhythm {
    pub client_to_origin: MessageGaps,
    pub origin_to_client: MessageGaps,
}

impl Rhythm {
    pub fn of(stats: &SessionStats) -> Self {
        Self {
            client_to_origin: stats.message_gaps(Direction::ClientToOrigin),
            origin_to_client: stats.message_gaps(Direction::OriginToClient),
        }
    }

    /// The session's heartbeat: the steadier (shorter median) of the
    /// directions with enough samples — activity either way keeps it alive.
    pub fn heartbeat(&self) -> Option<Heartbeat> {
        [self.client_to_origin, self.origin_to_client]
            .into_iter()
            .filter(|g| g.samples >= MIN_SAMPLES)
            .filter_map(|g| {
                Some(Heartbeat {
                    median: g.median?,
                    max: g.max?,
                })
            })
            .min_by_key(|h| h.median)
    }

    /// Whether the session's heartbeat is slower than `timeout`, so it will
    /// be cut between beats.
    pub fn exceeds(&self, timeout: Option<Duration>) -> bool {
        match (self.heartbeat(), timeout) {
            (Some(h), Some(t)) => h.median >= t,
            _ => false,
        }
    }
}

/// A direction's typical and worst gap between messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub median: Duration,
    pub max: Duration,
}

/// A timeout recommended for a domain, and why, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    pub timeout_secs: u16,
    pub reasoning: String,
}

/// Recommends a timeout from the rhythms of a domain's sessions: room for
/// one and a half of the slowest heartbeat's worst gap (at least 5 s more
/// than it), rounded up to 5 s; the console's 60 s when no heartbeat is seen.
pub fn recommend(rhythms: &[Rhythm]) -> Recommendation {
    let beats: Vec<Heartbeat> = rhythms.iter().filter_map(Rhythm::heartbeat).collect();
    let Some(slowest) = beats.iter().max_by_key(|h| h.max) else {
        let seen = if rhythms.is_empty() {
            "no live sessions to observe".to_string()
        } else {
            format!("no heartbeat seen on {} session(s)", rhythms.len())
        };
        return Recommendation {
            timeout_secs: RECOMMENDED_TIMEOUT_SECS,
            reasoning: format!(
                "{seen}: {RECOMMENDED_TIMEOUT_SECS} s is the console's recommendation when the application sends none"
            ),
        };
    };
    let worst = slowest.max.as_secs_f64();
    let wanted = (worst * 1.5).max(worst + 5.0);
    let rounded = ((wanted / 5.0).ceil() * 5.0) as u64;
    let timeout_secs = u16::try_from(rounded)
        .unwrap_or(u16::MAX)
        .min(MAX_TIMEOUT_SECS);
    let mut reasoning = format!(
        "heartbeat every ~{} s on {} of {} session(s), slowest gap {} s: {timeout_secs} s leaves room for a late beat",
        secs(slowest.median),
        beats.len(),
        rhythms.len(),
        secs(slowest.max),
    );
    if u64::from(timeout_secs) < rounded {
        reasoning = format!(
            "heartbeat gaps up to {} s need more than the {MAX_TIMEOUT_SECS} s maximum: send heartbeats more often",
            secs(slowest.max)
        );
    }
    Recommendation {
        timeout_secs,
        reasoning,
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use tokio::time::{Instant, advance};

    use super::*;
    use crate::relay::registry::{FrameKind, NewSession, Registry};

    /// A scripted session: `beats` messages from the client every `every`.
    async fn scripted(
        registry: &Arc<Registry>,
        every: Duration,
        beats: u32,
        direction: Direction,
    ) -> Rhythm {
        let guard = registry.register(NewSession {
            domain: "a.test".into(),
            client: "127.0.0.1:1".parse().unwrap(),
            origin: "127.0.0.1:2".into(),
            path: "/".into(),
            timeout: Some(Duration::from_secs(60)),
        });
        for _ in 0..beats {
            advance(every).await;
            guard
                .stats()
                .record_frame(Instant::now(), direction, FrameKind::Text, true, 4, true);
        }
        Rhythm::of(guard.stats())
    }

    #[tokio::test(start_paused = true)]
    async fn gaps_of_a_scripted_session() {
        let registry = Arc::new(Registry::new());
        let r = scripted(
            &registry,
            Duration::from_secs(25),
            5,
            Direction::ClientToOrigin,
        )
        .await;
        // Five messages: four gaps between them.
        assert_eq!(r.client_to_origin.samples, 4);
        assert_eq!(r.client_to_origin.median, Some(Duration::from_secs(25)));
        assert_eq!(r.origin_to_client.samples, 0);
        let beat = r.heartbeat().unwrap();
        assert_eq!(beat.median, Duration::from_secs(25));
        assert!(r.exceeds(Some(Duration::from_secs(20))));
        assert!(!r.exceeds(Some(Duration::from_secs(30))));
        assert!(!r.exceeds(None));
    }

    #[tokio::test(start_paused = true)]
    async fn recommendation_covers_the_slowest_heartbeat() {
        let registry = Arc::new(Registry::new());
        let fast = scripted(
            &registry,
            Duration::from_secs(5),
            5,
            Direction::ClientToOrigin,
        )
        .await;
        let slow = scripted(
            &registry,
            Duration::from_secs(25),
            5,
            Direction::OriginToClient,
        )
        .await;
        let silent = scripted(
            &registry,
            Duration::from_secs(1),
            0,
            Direction::ClientToOrigin,
        )
        .await;
        let rec = recommend(&[fast, slow, silent]);
        // 25 s × 1.5 = 37.5 → 40 s.
        assert_eq!(rec.timeout_secs, 40);
        assert!(rec.reasoning.contains("2 of 3"), "{}", rec.reasoning);
    }

    #[tokio::test(start_paused = true)]
    async fn no_heartbeat_means_the_consoles_sixty_seconds() {
        let registry = Arc::new(Registry::new());
        let two = scripted(
            &registry,
            Duration::from_secs(5),
            2,
            Direction::ClientToOrigin,
        )
        .await;
        let rec = recommend(&[two]);
        assert_eq!(rec.timeout_secs, 60);
        assert!(rec.reasoning.contains("no heartbeat"), "{}", rec.reasoning);
        assert_eq!(recommend(&[]).timeout_secs, 60);
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_too_slow_for_the_maximum_say_so() {
        let registry = Arc::new(Registry::new());
        let slow = scripted(
            &registry,
            Duration::from_secs(250),
            4,
            Direction::ClientToOrigin,
        )
        .await;
        let rec = recommend(&[slow]);
        assert_eq!(rec.timeout_secs, 300);
        assert!(rec.reasoning.contains("more often"), "{}", rec.reasoning);
    }
}
