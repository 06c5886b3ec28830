//! What a load run measured, and how it is printed (text or JSON).

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{LoadOptions, Mode, Ready};

/// Error messages kept as examples (the count is always exact).
const ERROR_SAMPLES: usize = 5;
/// Histogram range: 1 µs to 60 s, 3 significant digits.
const HIST_MAX_US: u64 = 60_000_000;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Summary {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// Close time minus deadline, in milliseconds (negative: closed early).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Lateness {
    pub count: usize,
    pub min: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// How many idle sessions ended with a given close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloseCount {
    /// `1001`, `1006 no close frame`, …
    pub close: String,
    pub sessions: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleReport {
    pub expect_timeout_s: Option<f64>,
    /// Only sessions that were closed while the generator waited.
    pub lateness_ms: Option<Lateness>,
    pub closes: Vec<CloseCount>,
    /// Sessions nobody closed before the hold ended (the generator closed them).
    pub still_open: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub target: String,
    pub host: Option<String>,
    pub mode: String,
    pub interval_ms: Option<u64>,
    pub size: usize,
    pub sessions: usize,
    pub opened: usize,
    pub failed: usize,
    pub handshake_ms: Summary,
    /// Length of the measured window.
    pub duration_s: f64,
    /// Round trips completed in the window (one message each way).
    pub messages: u64,
    pub messages_per_s: f64,
    /// Payload megabytes (10^6) per second, one way: messages/s × size.
    pub mb_per_s: f64,
    pub rtt_ms: Summary,
    pub errors: u64,
    pub error_samples: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleReport>,
}

/// Shared by every session task. Locks are held for one `record` only and
/// never across an `.await`, so a std `Mutex` is the cheap choice.
pub struct Recorder {
    rtt: Mutex<Histogram<u64>>,
    handshake: Mutex<Histogram<u64>>,
    messages: AtomicU64,
    errors: AtomicU64,
    samples: Mutex<Vec<String>>,
    log_slow: Option<Duration>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere cannot leave a histogram half-updated in a way that
    // matters for a report: keep going.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl Recorder {
    pub fn new(log_slow: Option<Duration>) -> Result<Self, hdrhistogram::CreationError> {
        Ok(Self {
            rtt: Mutex::new(Histogram::new_with_bounds(1, HIST_MAX_US, 3)?),
            handshake: Mutex::new(Histogram::new_with_bounds(1, HIST_MAX_US, 3)?),
            messages: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
            log_slow,
        })
    }

    pub fn handshake(&self, took: Duration) {
        locked(&self.handshake).saturating_record(micros(took));
    }

    pub fn round_trip(&self, took: Duration) {
        if self.log_slow.is_some_and(|slow| took >= slow) {
            eprintln!(
                "slow: {:.1} ms, ended {}",
                took.as_secs_f64() * 1000.0,
                humantime::format_rfc3339_millis(std::time::SystemTime::now())
            );
        }
        self.messages.fetch_add(1, Relaxed);
        locked(&self.rtt).saturating_record(micros(took));
    }

    /// Round trips (or sessions, or deliveries) recorded so far.
    pub fn messages(&self) -> u64 {
        self.messages.load(Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Relaxed)
    }

    pub fn error(&self, message: String) {
        self.errors.fetch_add(1, Relaxed);
        let mut samples = locked(&self.samples);
        if samples.len() < ERROR_SAMPLES && !samples.contains(&message) {
            samples.push(message);
        }
    }

    pub fn report(
        &self,
        options: &LoadOptions,
        ready: Ready,
        elapsed: Duration,
        idle: Option<IdleReport>,
    ) -> Report {
        let messages = self.messages.load(Relaxed);
        let secs = elapsed.as_secs_f64();
        let per_s = if secs > 0.0 {
            messages as f64 / secs
        } else {
            0.0
        };
        Report {
            target: options.url.clone(),
            host: options.host.clone(),
            mode: options.mode.name().to_string(),
            interval_ms: match options.mode {
                Mode::Paced { interval } | Mode::Fanout { interval } => {
                    Some(interval.as_millis() as u64)
                }
                _ => None,
            },
            size: options.size,
            sessions: options.sessions,
            opened: ready.opened,
            failed: ready.failed,
            handshake_ms: Summary::of(&locked(&self.handshake)),
            duration_s: secs,
            messages,
            messages_per_s: per_s,
            mb_per_s: per_s * options.size as f64 / 1e6,
            rtt_ms: Summary::of(&locked(&self.rtt)),
            errors: self.errors.load(Relaxed),
            error_samples: locked(&self.samples).clone(),
            idle,
        }
    }
}

/// Exact percentiles of close lateness (µs in, ms out). A few thousand
/// values sort in well under a millisecond, and negative values (a close
/// before the deadline) need no offset trick.
pub fn lateness_summary(values: &mut [i64]) -> Option<Lateness> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let at = |q: f64| {
        let i = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
        values[i] as f64 / 1000.0
    };
    Some(Lateness {
        count: values.len(),
        min: values[0] as f64 / 1000.0,
        p50: at(0.50),
        p99: at(0.99),
        max: values[values.len() - 1] as f64 / 1000.0,
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let interval = self
            .interval_ms
            .map(|ms| format!(" every {ms} ms"))
            .unwrap_or_default();
        writeln!(
            f,
            "target    {}{}",
            self.target,
            self.host
                .as_ref()
                .map(|h| format!(" (Host: {h})"))
                .unwrap_or_default()
        )?;
        writeln!(
            f,
            "load      {}{interval}, {} B messages, {} sessions",
            self.mode, self.size, self.sessions
        )?;
        writeln!(
            f,
            "sessions  {} opened, {} failed; handshake p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.opened,
            self.failed,
            self.handshake_ms.p50,
            self.handshake_ms.p99,
            self.handshake_ms.max
        )?;
        if self.idle.is_none() {
            writeln!(
                f,
                "traffic   {} round trips in {:.1} s: {:.0} msgs/s, {:.2} MB/s (payload, one way)",
                self.messages, self.duration_s, self.messages_per_s, self.mb_per_s
            )?;
            let r = &self.rtt_ms;
            writeln!(
                f,
                "rtt ms    p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
                r.p50, r.p90, r.p99, r.p999, r.max, r.mean
            )?;
        }
        if let Some(idle) = &self.idle {
            match (&idle.lateness_ms, idle.expect_timeout_s) {
                (Some(l), Some(t)) => writeln!(
                    f,
                    "lateness  vs {t} s deadline, {} closes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, min {:.1} ms",
                    l.count, l.p50, l.p99, l.max, l.min
                )?,
                _ => writeln!(f, "lateness  not measured (no --expect-timeout)")?,
            }
            let closes: Vec<String> = idle
                .closes
                .iter()
                .map(|c| format!("{} × {}", c.sessions, c.close))
                .collect();
            writeln!(
                f,
                "closes    {}; still open at the end: {}",
                if closes.is_empty() {
                    "none".to_string()
                } else {
                    closes.join(", ")
                },
                idle.still_open
            )?;
        }
        write!(f, "errors    {}", self.errors)?;
        for sample in &self.error_samples {
            write!(f, "\n          {sample}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_percentiles_are_exact_and_allow_early_closes() {
        let mut v: Vec<i64> = (1..=100).map(|i| i * 1000).collect();
        v.push(-2000);
        let l = lateness_summary(&mut v).unwrap_or_default();
        assert_eq!(l.count, 101);
        assert_eq!(l.min, -2.0);
        assert_eq!(l.max, 100.0);
        assert_eq!(l.p50, 50.0);
        assert_eq!(l.p99, 99.0);
        assert_eq!(lateness_summary(&mut []), None);
    }
}
