//! Advice from evidence (README has the operator's view): the timeout to recommend for a
//! domain, the one sentence saying why, and what a draft timeout would
//! have done to the last 10 minutes of sessions.
//!
//! Pure functions over the relay's evidence ([`DomainEvidence`]) and the
//! limit in force ([`effective_timeout`], the one source of truth). The
//! rules, in order of strength:
//! - never a value that the last 10 minutes show would cut a live client:
//!   never at or below a limit that cut clients while alive, never at or
//!   below a gap seen;
//! - a client cut before its first beat has an unknown rhythm: say so, and
//!   suggest raising the limit (to 60 s, the documented value when the
//!   heartbeat is unknown) so the console can measure it;
//! - room for a late beat: one and a half times the longest gap, at least
//!   5 s more, rounded up to 5 s;
//! - no evidence at all: 60 s.
//!
//! Used by the console's Advanced card and edit dialog, and by the control
//! socket's `recommend` (it depends on `relay` and `config` only).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::{
    Config, Domain, MAX_TIMEOUT_SECS, RECOMMENDED_TIMEOUT_SECS, TimeoutSource, effective_timeout,
};
use crate::relay::history::{DomainEvidence, SessionEvidence};
use crate::relay::{Registry, SessionId};

/// A domain's recommendation. The fields and their names are the contract
/// of `ecdn-console recommend --json` (README, "Advice from evidence").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub domain: String,
    /// The limit in force; `None` (null) = no idle limit.
    pub current_limit_secs: Option<u64>,
    /// 0 = no idle limit (only when even the maximum would cut clients).
    pub recommended_timeout_secs: u16,
    /// One sentence, with the numbers it used.
    pub reason: String,
    /// Sessions of the last 10 minutes the advice is based on (live ones
    /// included).
    pub sessions_seen: usize,
    /// The slowest heartbeat seen (median gap), seconds; `None` when none.
    pub heartbeat_secs: Option<f64>,
    /// Sessions cut for idleness whose client came back within 10 s.
    pub cut_while_alive: usize,
    /// Live sessions the recommended value would cut now.
    pub would_cut_now: Vec<SessionId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdviceError {
    #[error("no domain \"{0}\" in the configuration")]
    UnknownDomain(String),
}

/// The recommendation for `domain` from a relay's registry and the
/// configuration in force.
pub fn recommend_for(
    registry: &Registry,
    config: &Config,
    domain: &str,
    now: Instant,
) -> Result<Recommendation, AdviceError> {
    let d = config
        .domain(domain)
        .ok_or_else(|| AdviceError::UnknownDomain(domain.to_string()))?;
    Ok(recommend_on(registry.evidence(&d.name, now), d))
}

/// The recommendation for domain `d` from its evidence, saying so when the
/// domain's timeout is not what is in force: advice to set a value that
/// would change nothing is advice the relay knew to be wrong.
pub fn recommend_on(mut evidence: DomainEvidence, d: &Domain) -> Recommendation {
    evidence.domain = d.name.clone();
    let t = effective_timeout(d);
    let mut r = recommend(&evidence, t.limit);
    let fixed = t.secs().unwrap_or_default();
    match t.source {
        TimeoutSource::SwitchOff => r.reason.push_str(&format!(
            " The switch is off, so the fixed {fixed} s is in force: turn it on with this timeout for it to apply."
        )),
        TimeoutSource::NotFullSite => r.reason.push_str(&format!(
            " This is not a full-site domain: the fixed {fixed} s is in force and cannot be configured; \
             the value would apply with full-site acceleration."
        )),
        TimeoutSource::Configured | TimeoutSource::NoLimit => {}
    }
    r
}

/// What the evidence adds up to.
struct Facts<'a> {
    seen: usize,
    /// Sessions whose own heartbeat was seen.
    beats: usize,
    slowest_median: Option<Duration>,
    /// The longest quiet spell of a client known to be alive: gaps between
    /// activity, heartbeat gaps, and the limits that cut clients while alive.
    worst: Duration,
    /// The longest gap seen (activity and heartbeats, without the cuts).
    gap_seen: Duration,
    cut: Vec<&'a SessionEvidence>,
    /// Cut while alive with no heartbeat seen for that client.
    unknown: Vec<&'a SessionEvidence>,
    /// The highest limit that cut a client while alive.
    cut_limit: Option<Duration>,
    unknown_limit: Option<Duration>,
}

fn facts(e: &DomainEvidence) -> Facts<'_> {
    let beats: Vec<_> = e.sessions.iter().filter_map(|s| s.heartbeat).collect();
    let cut: Vec<&SessionEvidence> = e.sessions.iter().filter(|s| s.cut_while_alive).collect();
    let unknown: Vec<&SessionEvidence> = cut
        .iter()
        .copied()
        .filter(|s| e.client_heartbeat(&s.client).is_none())
        .collect();
    let cut_limit = cut.iter().filter_map(|s| s.idle_cut).max();
    let gaps = e.sessions.iter().map(|s| s.longest_gap);
    let beat_gaps = beats.iter().map(|h| h.max);
    let gap_seen = gaps.chain(beat_gaps).max().unwrap_or_default();
    let worst = gap_seen.max(cut_limit.unwrap_or_default());
    Facts {
        seen: e.sessions.len(),
        beats: beats.len(),
        slowest_median: beats.iter().map(|h| h.median).max(),
        worst,
        gap_seen,
        unknown_limit: unknown.iter().filter_map(|s| s.idle_cut).max(),
        cut,
        unknown,
        cut_limit,
    }
}

/// Room for a late beat after `worst`: ×1.5, at least +5 s, up to 5 s.
fn room_for(worst: Duration) -> u64 {
    let w = worst.as_secs_f64();
    round_up_5(w * 1.5).max(round_up_5(w + 5.0))
}

fn round_up_5(secs: f64) -> u64 {
    ((secs / 5.0).ceil() * 5.0) as u64
}

/// Where to go from a limit that cut clients whose rhythm is unknown: the
/// documented 60 s, or double a limit already at or above it.
fn raise_from(limit: Duration) -> u64 {
    let l = limit.as_secs();
    if l < u64::from(RECOMMENDED_TIMEOUT_SECS) {
        u64::from(RECOMMENDED_TIMEOUT_SECS)
    } else {
        round_up_5((2 * l) as f64)
    }
}

/// The recommendation from a domain's evidence and the limit in force.
pub fn recommend(e: &DomainEvidence, current: Option<Duration>) -> Recommendation {
    let f = facts(e);
    let max = u64::from(MAX_TIMEOUT_SECS);
    let need = if f.worst.is_zero() {
        0
    } else {
        room_for(f.worst)
    };
    let (mut secs, mut reason) = if f.seen == 0 {
        (
            u64::from(RECOMMENDED_TIMEOUT_SECS),
            format!(
                "No session on this domain in the last 10 minutes to learn from: \
                 {RECOMMENDED_TIMEOUT_SECS} s is the recommendation when the heartbeat is unknown."
            ),
        )
    } else if let Some(limit) = f.unknown_limit {
        let secs = raise_from(limit).max(need);
        let mut reason = format!(
            "{} cut while alive at {} s before {} first beat, so {} heartbeat is unknown: \
             raise the limit to {secs} s and let the console measure it",
            clients(f.unknown.len()),
            fmt_secs(limit),
            if f.unknown.len() == 1 { "its" } else { "their" },
            if f.unknown.len() == 1 { "its" } else { "their" },
        );
        if let Some(m) = f.slowest_median {
            reason.push_str(&format!(
                " (heartbeat ~{} s on {} of {}, longest gap {} s)",
                fmt_secs(m),
                f.beats,
                sessions(f.seen),
                fmt_secs(f.gap_seen)
            ));
        }
        reason.push('.');
        (secs, reason)
    } else if let Some(m) = f.slowest_median {
        let mut reason = String::new();
        if let Some(limit) = f.cut_limit {
            reason.push_str(&format!(
                "{} cut while alive at {} s; ",
                clients(f.cut.len()),
                fmt_secs(limit)
            ));
        }
        let text = format!(
            "heartbeat every ~{} s on {} of {}, longest gap {} s: {need} s leaves room for a late beat.",
            fmt_secs(m),
            f.beats,
            sessions(f.seen),
            fmt_secs(f.worst),
        );
        reason.push_str(&text);
        (need, capitalized(&reason))
    } else if need > u64::from(RECOMMENDED_TIMEOUT_SECS) {
        (
            need,
            format!(
                "No heartbeat seen on {} in the last 10 minutes, but a gap of {} s: \
                 {need} s leaves room for it.",
                sessions(f.seen),
                fmt_secs(f.worst)
            ),
        )
    } else {
        (
            u64::from(RECOMMENDED_TIMEOUT_SECS),
            format!(
                "No heartbeat seen on {} in the last 10 minutes: {RECOMMENDED_TIMEOUT_SECS} s \
                 is the recommendation when the application sends none.",
                sessions(f.seen)
            ),
        )
    };
    if f.worst.as_secs() >= max || f.cut_limit.is_some_and(|l| l.as_secs() >= max) {
        // Even the maximum cuts (or would cut) a client known to be alive.
        secs = 0;
        reason = format!(
            "Clients stay quiet for {} s, at or beyond the {max} s maximum: only no idle limit (0) \
             keeps them, and dead peers are then never dropped; better, send heartbeats more often.",
            fmt_secs(f.worst)
        );
    } else if secs > max {
        secs = max;
        reason = format!(
            "Gaps up to {} s call for more than the {max} s maximum: {max} s still keeps them, \
             with less room for a late beat; send heartbeats more often.",
            fmt_secs(f.worst)
        );
    }
    let recommended = u16::try_from(secs).unwrap_or(MAX_TIMEOUT_SECS);
    let limit = (recommended > 0).then(|| Duration::from_secs(u64::from(recommended)));
    Recommendation {
        domain: e.domain.to_string(),
        current_limit_secs: current.map(|d| d.as_secs()),
        recommended_timeout_secs: recommended,
        reason,
        sessions_seen: f.seen,
        heartbeat_secs: f
            .slowest_median
            .map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
        cut_while_alive: f.cut.len(),
        would_cut_now: e
            .sessions
            .iter()
            .filter(|s| s.live && limit.is_some_and(|l| s.idle >= l))
            .map(|s| s.id)
            .collect(),
    }
}

/// What a draft limit would have done to the last 10 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WhatIf {
    /// Sessions of the window, live ones included.
    pub seen: usize,
    /// Of those, the ones the draft would have cut: a gap between activity
    /// reached it, or (ended sessions) the idle time they ended with did.
    pub would_have_cut: usize,
    /// Idle cuts of the window.
    pub cuts: usize,
    /// Cuts of clients that were alive (they came back within 10 s) that
    /// the draft would have spared: their heartbeat is known and fits.
    pub saved: usize,
    /// Cuts of live clients whose heartbeat is unknown, under a draft above
    /// the limit that cut them: nobody can tell.
    pub unknowable: usize,
}

/// The draft `limit` (`None`: no idle limit) against the evidence.
pub fn what_if(e: &DomainEvidence, limit: Option<Duration>) -> WhatIf {
    let mut w = WhatIf {
        seen: e.sessions.len(),
        ..WhatIf::default()
    };
    for s in &e.sessions {
        let outcome = outcome(e, s, limit);
        w.would_have_cut += usize::from(outcome == Outcome::Cut);
        if s.idle_cut.is_some() {
            w.cuts += 1;
            if s.cut_while_alive {
                w.saved += usize::from(outcome == Outcome::Kept);
                w.unknowable += usize::from(outcome == Outcome::Unknown);
            }
        }
    }
    w
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Cut,
    Kept,
    /// A live client cut before its rhythm showed, under a higher draft.
    Unknown,
}

/// What the draft would have done to one session of the window.
fn outcome(e: &DomainEvidence, s: &SessionEvidence, limit: Option<Duration>) -> Outcome {
    let Some(l) = limit else {
        return Outcome::Kept;
    };
    let reached = |gap: Duration| {
        if gap >= l {
            Outcome::Cut
        } else {
            Outcome::Kept
        }
    };
    match s.idle_cut {
        Some(at) if s.cut_while_alive => {
            if l <= at {
                return Outcome::Cut;
            }
            match e.client_heartbeat(&s.client) {
                Some(h) => reached(h.max.max(s.longest_gap)),
                None => Outcome::Unknown,
            }
        }
        // A client that did not come back was gone: cut at any limit.
        Some(_) => Outcome::Cut,
        // A live session's open gap is the "cut now" line, not history.
        None if s.live => reached(s.longest_gap),
        None => reached(s.longest_gap.max(s.idle)),
    }
}

fn clients(n: usize) -> String {
    if n == 1 {
        "1 client was".to_string()
    } else {
        format!("{n} clients were")
    }
}

fn sessions(n: usize) -> String {
    if n == 1 {
        "1 session".to_string()
    } else {
        format!("{n} sessions")
    }
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// Seconds as a reader wants them: `25`, `4.5`.
pub fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 || s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::relay::heartbeat::Heartbeat;
    use crate::relay::history::ClientKey;

    fn s(id: u64) -> Duration {
        Duration::from_secs(id)
    }

    fn session(id: u64, path: &str) -> SessionEvidence {
        SessionEvidence {
            id,
            client: ClientKey::new("127.0.0.1".parse().unwrap(), path),
            live: true,
            longest_gap: Duration::ZERO,
            idle: Duration::ZERO,
            heartbeat: None,
            idle_cut: None,
            cut_while_alive: false,
        }
    }

    fn beating(id: u64, path: &str, every: u64) -> SessionEvidence {
        SessionEvidence {
            longest_gap: s(every),
            heartbeat: Some(Heartbeat {
                median: s(every),
                max: s(every),
            }),
            ..session(id, path)
        }
    }

    fn cut(id: u64, path: &str, at: u64, alive: bool) -> SessionEvidence {
        SessionEvidence {
            live: false,
            idle: s(at),
            idle_cut: Some(s(at)),
            cut_while_alive: alive,
            ..session(id, path)
        }
    }

    fn evidence(sessions: Vec<SessionEvidence>) -> DomainEvidence {
        DomainEvidence {
            domain: "a.test".into(),
            sessions,
        }
    }

    #[test]
    fn advice_on_a_domain_whose_timeout_is_not_in_force_says_so() {
        let config = crate::app::tests::config();
        let advise = |name: &str| recommend_on(evidence(vec![]), config.domain(name).unwrap());
        let on = advise("cloud.tencent.com");
        assert_eq!(
            (on.domain.as_str(), on.current_limit_secs),
            ("cloud.tencent.com", Some(100))
        );
        assert!(!on.reason.contains("in force"), "{}", on.reason);
        let off = advise("www.example.com");
        assert_eq!(off.current_limit_secs, Some(15));
        assert!(off.reason.contains("The switch is off"), "{}", off.reason);
        let dynamic = advise("api.example.com");
        assert_eq!(dynamic.current_limit_secs, Some(15));
        assert!(
            dynamic.reason.contains("not a full-site domain"),
            "{}",
            dynamic.reason
        );
    }

    #[test]
    fn no_evidence_means_sixty_seconds() {
        let r = recommend(&evidence(vec![]), Some(s(20)));
        assert_eq!(r.recommended_timeout_secs, 60);
        assert_eq!(r.current_limit_secs, Some(20));
        assert_eq!(r.sessions_seen, 0);
        assert_eq!(r.heartbeat_secs, None);
        assert!(r.reason.contains("No session"), "{}", r.reason);
    }

    #[test]
    fn clients_cut_before_their_first_beat_mean_raise_and_measure() {
        // The demo's chat domain: a 5 s client, a 25 s one cut at 20 s twice.
        let e = evidence(vec![
            cut(2, "/slow", 20, true),
            cut(4, "/slow", 20, true),
            beating(1, "/fast", 5),
            session(5, "/slow"),
        ]);
        let r = recommend(&e, Some(s(20)));
        assert_eq!(r.recommended_timeout_secs, 60);
        assert_eq!(r.cut_while_alive, 2);
        assert_eq!(r.heartbeat_secs, Some(5.0));
        assert_eq!(
            r.reason,
            "2 clients were cut while alive at 20 s before their first beat, so their \
             heartbeat is unknown: raise the limit to 60 s and let the console measure it \
             (heartbeat ~5 s on 1 of 4 sessions, longest gap 5 s)."
        );
        // Already at 60 s and still cut: double it.
        let e = evidence(vec![cut(2, "/slow", 60, true)]);
        assert_eq!(recommend(&e, Some(s(60))).recommended_timeout_secs, 120);
    }

    #[test]
    fn a_rhythm_learnt_later_explains_the_earlier_cuts() {
        // Cut at 20 s, then (limit raised) its 25 s rhythm shows.
        let e = evidence(vec![cut(2, "/slow", 20, true), beating(3, "/slow", 25)]);
        let r = recommend(&e, Some(s(60)));
        // 25 × 1.5 = 37.5 → 40.
        assert_eq!(r.recommended_timeout_secs, 40);
        assert!(
            r.reason
                .starts_with("1 client was cut while alive at 20 s; heartbeat every ~25 s"),
            "{}",
            r.reason
        );
        let w = what_if(&e, Some(s(30)));
        assert_eq!((w.cuts, w.saved, w.unknowable), (1, 1, 0));
        let w = what_if(&e, Some(s(20)));
        assert_eq!((w.saved, w.would_have_cut), (0, 2));
    }

    #[test]
    fn room_for_a_late_beat_and_never_below_a_gap_seen() {
        let mut late = beating(2, "/b", 5);
        late.longest_gap = Duration::from_millis(8200);
        let e = evidence(vec![beating(1, "/a", 5), late]);
        let r = recommend(&e, Some(s(100)));
        // 8.2 s × 1.5 = 12.3 → 15.
        assert_eq!(r.recommended_timeout_secs, 15);
        assert!(
            r.reason.ends_with("15 s leaves room for a late beat."),
            "{}",
            r.reason
        );
        assert!(r.reason.contains("longest gap 8.2 s"), "{}", r.reason);
    }

    #[test]
    fn a_silent_client_that_never_came_back_is_not_evidence_of_life() {
        let e = evidence(vec![cut(1, "/silent", 20, false), session(2, "/x")]);
        let r = recommend(&e, Some(s(20)));
        assert_eq!(r.cut_while_alive, 0);
        assert_eq!(r.recommended_timeout_secs, 60);
        assert!(
            r.reason.starts_with("No heartbeat seen on 2 sessions"),
            "{}",
            r.reason
        );
        // Any limit would have cut it (it was gone).
        assert_eq!(what_if(&e, Some(s(120))).would_have_cut, 1);
        assert_eq!(what_if(&e, None).would_have_cut, 0);
    }

    #[test]
    fn gaps_beyond_the_maximum_call_for_no_limit() {
        let mut quiet = session(1, "/q");
        quiet.longest_gap = s(400);
        let r = recommend(&evidence(vec![quiet]), None);
        assert_eq!(r.recommended_timeout_secs, 0);
        assert_eq!(r.current_limit_secs, None);
        let r = recommend(&evidence(vec![beating(1, "/b", 250)]), Some(s(300)));
        assert_eq!(r.recommended_timeout_secs, 300);
        assert!(r.reason.contains("more often"), "{}", r.reason);
    }

    #[test]
    fn would_cut_now_lists_live_sessions_idle_past_the_value() {
        let mut idle = session(7, "/idle");
        idle.idle = s(70);
        let r = recommend(&evidence(vec![idle, session(8, "/x")]), Some(s(100)));
        assert_eq!(r.recommended_timeout_secs, 60);
        assert_eq!(r.would_cut_now, vec![7]);
    }

    #[test]
    fn the_json_has_exactly_the_contract_fields() {
        let r = recommend(&evidence(vec![beating(1, "/a", 5)]), None);
        let v = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "current_limit_secs",
                "cut_while_alive",
                "domain",
                "heartbeat_secs",
                "reason",
                "recommended_timeout_secs",
                "sessions_seen",
                "would_cut_now"
            ]
        );
        assert!(v["current_limit_secs"].is_null());
        assert_eq!(v["heartbeat_secs"], 5.0);
    }
}
