//! The demo's cast: which synthetic clients run on which domain, with which
//! rhythm, and what the relay is expected to do to each of them. Every
//! interval is a field of [`Scenario`], so a test can run the same cast with
//! timeouts of a second or two instead of twenty.

use std::time::Duration;

/// Domains of `assets/demo.toml` the clients use.
pub const CHAT: &str = "chat.demo.test";
pub const TICKER: &str = "ticker.demo.test";
pub const LEGACY: &str = "legacy.demo.test";
pub const STREAM: &str = "stream.demo.test";
pub const API: &str = "api.demo.test";

/// The timings of a demo run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// `chat.demo.test`'s timeout, seconds.
    pub chat_timeout: u16,
    /// `ticker.demo.test`'s timeout, seconds.
    pub ticker_timeout: u16,
    /// The chat client that stays: well under `chat_timeout`.
    pub fast_heartbeat: Duration,
    /// The chat client that is cut every cycle: just over `chat_timeout`.
    pub slow_heartbeat: Duration,
    /// The chat client kept alive by WebSocket pings alone: its application
    /// messages are further apart than the timeout, its pings are not.
    pub ping_app_message: Duration,
    pub ping_every: Duration,
    /// The ticking origin's push interval (under `ticker_timeout`).
    pub tick: Duration,
    /// Wait before reconnecting after a session ended; doubled after each
    /// failed connect, up to `max_backoff`.
    pub reconnect: Duration,
    pub max_backoff: Duration,
}

impl Scenario {
    /// What `ecdn-console demo` runs: every effect shows within a minute.
    /// The timeouts are `assets/demo.toml`'s (a test keeps them in step).
    pub fn shipped() -> Self {
        Self {
            chat_timeout: 20,
            ticker_timeout: 12,
            fast_heartbeat: Duration::from_secs(5),
            slow_heartbeat: Duration::from_secs(25),
            ping_app_message: Duration::from_secs(25),
            ping_every: Duration::from_secs(8),
            tick: Duration::from_secs(8),
            reconnect: Duration::from_secs(2),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// The same cast, with every interval of the chat and ticker domains
    /// divided by ten (for tests; the 15 s of `legacy` and `api` are fixed
    /// by the CDN's rules and do not scale).
    pub fn scaled_down() -> Self {
        Self {
            chat_timeout: 2,
            ticker_timeout: 2,
            fast_heartbeat: Duration::from_millis(500),
            slow_heartbeat: Duration::from_millis(2500),
            ping_app_message: Duration::from_millis(2500),
            ping_every: Duration::from_millis(800),
            tick: Duration::from_millis(800),
            reconnect: Duration::from_millis(200),
            max_backoff: Duration::from_secs(3),
        }
    }

    /// The synthetic clients, one task each.
    pub fn clients(&self) -> Vec<ClientSpec> {
        let secs = |d: Duration| {
            let s = d.as_secs_f64();
            if s.fract() == 0.0 {
                format!("{s:.0}s")
            } else {
                format!("{s}s")
            }
        };
        vec![
            ClientSpec {
                domain: CHAT,
                path: format!("/heartbeat-{}", secs(self.fast_heartbeat)),
                behaviour: Behaviour::Heartbeat(self.fast_heartbeat),
                fate: Fate::Stays,
            },
            ClientSpec {
                domain: CHAT,
                path: format!("/heartbeat-{}", secs(self.slow_heartbeat)),
                behaviour: Behaviour::Heartbeat(self.slow_heartbeat),
                fate: Fate::CutAfter(self.chat_timeout),
            },
            ClientSpec {
                domain: CHAT,
                path: "/silent-never-back".into(),
                behaviour: Behaviour::Silent,
                fate: Fate::CutOnceAfter(self.chat_timeout),
            },
            ClientSpec {
                domain: CHAT,
                path: format!(
                    "/messages-{}-pings-{}",
                    secs(self.ping_app_message),
                    secs(self.ping_every)
                ),
                behaviour: Behaviour::PingKept {
                    message: self.ping_app_message,
                    ping: self.ping_every,
                },
                fate: Fate::Stays,
            },
            ClientSpec {
                domain: TICKER,
                path: "/silent-origin-ticks".into(),
                behaviour: Behaviour::Silent,
                fate: Fate::Stays,
            },
            ClientSpec {
                domain: LEGACY,
                path: "/silent".into(),
                behaviour: Behaviour::Silent,
                fate: Fate::CutAfter(crate::config::SWITCH_OFF_TIMEOUT_SECS),
            },
            ClientSpec {
                domain: API,
                path: "/silent".into(),
                behaviour: Behaviour::Silent,
                fate: Fate::CutAfter(crate::config::SWITCH_OFF_TIMEOUT_SECS),
            },
            ClientSpec {
                domain: STREAM,
                path: "/silent".into(),
                behaviour: Behaviour::Silent,
                fate: Fate::Stays,
            },
        ]
    }
}

/// One synthetic client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    /// Its Host header.
    pub domain: &'static str,
    /// Its request path, which says what it does (shown in the Event Log
    /// and a session's page).
    pub path: String,
    pub behaviour: Behaviour,
    /// What the relay should do to it under the demo config as shipped.
    pub fate: Fate,
}

/// What a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Nothing at all.
    Silent,
    /// A text message on connect and then every interval (the echo origin
    /// answers each).
    Heartbeat(Duration),
    /// A text message on connect and every `message`, and a WebSocket ping
    /// every `ping`: only the pings keep it alive.
    PingKept { message: Duration, ping: Duration },
}

/// The expected outcome of a client's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Never cut for idleness.
    Stays,
    /// Cut for idleness after this many seconds, every cycle.
    CutAfter(u16),
    /// Cut for idleness after this many seconds, once: a dead client that
    /// never reconnects (so the console does not count it as cut while
    /// alive).
    CutOnceAfter(u16),
}

impl Fate {
    /// Whether the client connects again after its session ends.
    pub fn reconnects(self) -> bool {
        !matches!(self, Fate::CutOnceAfter(_))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::config::{Config, DEMO_CONFIG, effective_timeout};

    /// The comments of `assets/demo.toml` and the shipped scenario describe
    /// the same show.
    #[test]
    fn the_shipped_scenario_matches_the_demo_config() {
        let config = Config::parse(DEMO_CONFIG, std::path::Path::new("demo.toml")).unwrap();
        let s = Scenario::shipped();
        let limit = |name: &str| effective_timeout(config.domain(name).unwrap()).secs();
        assert_eq!(limit(CHAT), Some(u64::from(s.chat_timeout)));
        assert_eq!(limit(TICKER), Some(u64::from(s.ticker_timeout)));
        assert_eq!(limit(LEGACY), Some(15));
        assert_eq!(limit(API), Some(15));
        assert_eq!(limit(STREAM), None);
        for scenario in [Scenario::shipped(), Scenario::scaled_down()] {
            let timeout = Duration::from_secs(scenario.chat_timeout.into());
            assert!(scenario.fast_heartbeat * 2 <= timeout);
            assert!(scenario.slow_heartbeat > timeout);
            assert!(scenario.ping_app_message > timeout && scenario.ping_every < timeout);
            assert!(scenario.tick < Duration::from_secs(scenario.ticker_timeout.into()));
        }
    }

    #[test]
    fn paths_say_what_each_client_does() {
        let paths: Vec<String> = Scenario::shipped()
            .clients()
            .into_iter()
            .map(|c| format!("{}{}", c.domain, c.path))
            .collect();
        assert!(paths.contains(&"chat.demo.test/heartbeat-5s".to_string()));
        assert!(paths.contains(&"chat.demo.test/heartbeat-25s".to_string()));
        assert!(paths.contains(&"chat.demo.test/messages-25s-pings-8s".to_string()));
        let scaled = Scenario::scaled_down().clients();
        assert!(scaled.iter().any(|c| c.path == "/heartbeat-0.5s"));
    }
}
