//! The effective idle-timeout rule — the single source of truth.
//!
//! The relay arms its deadlines with it, the UI labels domains and gauges
//! with it, and the CLI prints it. Nothing else decides how long a session
//! may stay idle.

use std::fmt;
use std::time::Duration;

use super::Acceleration;
use super::model::{Domain, Switch, WebSocketSettings};

/// Highest timeout the console accepts, in seconds.
pub const MAX_TIMEOUT_SECS: u16 = 300;
/// What the console recommends when the application sends no heartbeat.
pub const RECOMMENDED_TIMEOUT_SECS: u16 = 60;
/// The fixed idle limit with the switch off, and on domains that cannot
/// configure WebSocket at all.
pub const SWITCH_OFF_TIMEOUT_SECS: u16 = 15;

/// The console's wording for domains that cannot configure the feature.
pub const LIMITATION_TEXT: &str = "WebSocket timeout can only be configured for full-site acceleration \
domains. WebSockets on this domain still pass, but are disconnected after 15 s without a message.";

/// The console's recommendation, shown next to the timeout.
pub const RECOMMENDATION_TEXT: &str = "Set the timeout longer than your application's heartbeat \
interval. If the application sends no heartbeat, 60 s is recommended.";

/// A domain's WebSocket settings until the operator sets them: the switch
/// off, the recommended timeout ready for when it is turned on.
impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            switch: Switch::Off,
            timeout: RECOMMENDED_TIMEOUT_SECS,
            ping_resets_idle: true,
        }
    }
}

/// Why a session gets the idle limit it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutSource {
    /// Switch on: the domain's configured timeout.
    Configured,
    /// Switch on with timeout 0: never cut for idleness.
    NoLimit,
    /// Switch off: the fixed 15 s.
    SwitchOff,
    /// The domain's acceleration type cannot configure WebSocket: 15 s.
    NotFullSite,
}

/// How long a session on a domain may stay idle, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveTimeout {
    /// `None`: no idle limit.
    pub limit: Option<Duration>,
    pub source: TimeoutSource,
}

impl EffectiveTimeout {
    pub fn secs(&self) -> Option<u64> {
        self.limit.map(|d| d.as_secs())
    }

    /// The domain list's WebSocket column: `On · 100 s`, `On · no limit`,
    /// `Off · 15 s`, `n/a`.
    pub fn column_label(&self) -> String {
        match self.source {
            TimeoutSource::Configured => format!("On · {} s", self.secs().unwrap_or(0)),
            TimeoutSource::NoLimit => "On · no limit".to_string(),
            TimeoutSource::SwitchOff => format!("Off · {SWITCH_OFF_TIMEOUT_SECS} s"),
            TimeoutSource::NotFullSite => "n/a".to_string(),
        }
    }

    /// One line saying what happens to an idle session and why.
    pub fn explanation(&self) -> String {
        match self.source {
            TimeoutSource::Configured => format!(
                "sessions idle for {} s are closed",
                self.secs().unwrap_or(0)
            ),
            TimeoutSource::NoLimit => {
                "no idle limit: idle sessions are never closed (dead peers are never dropped)"
                    .to_string()
            }
            TimeoutSource::SwitchOff => {
                format!("switch off: sessions idle for {SWITCH_OFF_TIMEOUT_SECS} s are closed")
            }
            TimeoutSource::NotFullSite => format!(
                "not a full-site domain: sessions idle for {SWITCH_OFF_TIMEOUT_SECS} s are closed"
            ),
        }
    }
}

impl fmt::Display for EffectiveTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.secs() {
            Some(s) => write!(f, "{s} s"),
            None => f.write_str("no limit"),
        }
    }
}

/// The rule: on+T → T s, on+0 → no idle limit, off → 15 s, non-full-site → 15 s.
pub fn effective_timeout(domain: &Domain) -> EffectiveTimeout {
    effective_timeout_for(domain.acceleration, &domain.websocket)
}

/// The same rule for settings not (yet) applied to a domain — the edit
/// dialog's draft, for instance.
pub fn effective_timeout_for(
    acceleration: Acceleration,
    websocket: &WebSocketSettings,
) -> EffectiveTimeout {
    let fixed = |source| EffectiveTimeout {
        limit: Some(Duration::from_secs(SWITCH_OFF_TIMEOUT_SECS.into())),
        source,
    };
    if !acceleration.supports_websocket_config() {
        return fixed(TimeoutSource::NotFullSite);
    }
    if !websocket.switch.is_on() {
        return fixed(TimeoutSource::SwitchOff);
    }
    match websocket.timeout {
        0 => EffectiveTimeout {
            limit: None,
            source: TimeoutSource::NoLimit,
        },
        t => EffectiveTimeout {
            limit: Some(Duration::from_secs(t.into())),
            source: TimeoutSource::Configured,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Switch;

    fn ws(switch: Switch, timeout: u16) -> WebSocketSettings {
        WebSocketSettings {
            switch,
            timeout,
            ping_resets_idle: true,
        }
    }

    #[test]
    fn switch_on_uses_the_configured_timeout() {
        let t = effective_timeout_for(Acceleration::FullSite, &ws(Switch::On, 100));
        assert_eq!(t.limit, Some(Duration::from_secs(100)));
        assert_eq!(t.column_label(), "On · 100 s");
    }

    #[test]
    fn switch_on_with_zero_means_no_idle_limit() {
        let t = effective_timeout_for(Acceleration::FullSite, &ws(Switch::On, 0));
        assert_eq!(t.limit, None);
        assert_eq!(t.source, TimeoutSource::NoLimit);
        assert!(t.explanation().contains("never"));
    }

    #[test]
    fn switch_off_means_fifteen_seconds_whatever_the_timeout() {
        for timeout in [0, 60, 300] {
            let t = effective_timeout_for(Acceleration::FullSite, &ws(Switch::Off, timeout));
            assert_eq!(t.limit, Some(Duration::from_secs(15)));
            assert_eq!(t.column_label(), "Off · 15 s");
        }
    }

    #[test]
    fn domains_that_cannot_configure_websocket_get_fifteen_seconds() {
        for acc in [Acceleration::Dynamic, Acceleration::DynamicStatic] {
            let t = effective_timeout_for(acc, &ws(Switch::On, 100));
            assert_eq!(t.limit, Some(Duration::from_secs(15)));
            assert_eq!(t.source, TimeoutSource::NotFullSite);
            assert_eq!(t.column_label(), "n/a");
        }
    }
}
