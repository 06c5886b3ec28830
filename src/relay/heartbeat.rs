//! Heartbeat inference: from the gaps observed between messages, each
//! session's rhythm, and whether the current timeout is going to cut it
//! between beats. (What to recommend, and how to say it, is the console's:
//! `app::advice`.)

use std::time::Duration;

use super::registry::{Direction, MessageGaps, SessionStats};

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use tokio::time::{Instant, advance};

    use super::*;
    use crate::relay::registry::{NewSession, Registry};
    use crate::ws::FrameKind;
    use crate::ws::frame::SeenFrame;

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
            guard.stats().record_frame(
                Instant::now(),
                direction,
                SeenFrame {
                    kind: FrameKind::Text,
                    fin: true,
                    payload_len: 4,
                },
                true,
            );
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
}
