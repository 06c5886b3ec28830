//! The relay's Prometheus metrics (docs/OPERATIONS.md). Counters and gauges kept
//! true as sessions open and close and frames pass, so a scrape only reads
//! them — it never walks the live sessions.
//!
//! Per-domain handles are looked up once per session (when it is
//! registered) and held by the session. A frame adds to its worker's own
//! cells of the domain's message and byte counters (relaxed atomics on a
//! cache line no other worker writes), and a scrape sums the workers' cells:
//! with counters shared by every worker, two cores relaying one domain
//! passed the same cache lines back and forth on every frame. Label values come only
//! from the config (a domain's `name`) or from fixed vocabularies, never
//! from a peer: a Host that matches no domain is counted under `domain=""`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::event::{CloseCause, RelayEvent};
use crate::config::{Config, DomainName, effective_timeout};

type Labels1 = [(&'static str, String); 1];
type Labels2 = [(&'static str, String); 2];
type HistogramFamily = Family<Labels1, Histogram, fn() -> Histogram>;

/// Upper bounds of `ecdn_relay_session_duration_seconds`: from a
/// reconnect storm (seconds) to sessions that live for hours.
const DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0, 86400.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The `direction` label values, indexed as [`super::Direction`].
const DIRECTIONS: [&str; 2] = ["client_to_origin", "origin_to_client"];

/// One worker's share of a domain's per-frame counters (indexed by
/// direction), alone on its cache line: 128 bytes, as x86 fetches lines in
/// pairs. Only that worker's sessions write it.
#[derive(Debug, Default)]
#[repr(align(128))]
struct WorkerFlows {
    messages: [AtomicU64; 2],
    bytes: [AtomicU64; 2],
}

/// One domain's hot-path counters, held by each of its sessions.
#[derive(Debug)]
pub struct DomainMetrics {
    active: Gauge,
    opened: Counter,
    /// One block per relay worker (at least one).
    flows: Box<[WorkerFlows]>,
}

impl DomainMetrics {
    /// A frame header seen on the wire by `worker`'s session (payload
    /// bytes; a message is a data frame with FIN, as the session table
    /// counts them).
    #[inline]
    pub fn record_frame(
        &self,
        worker: usize,
        direction: usize,
        payload_len: u64,
        ends_message: bool,
    ) {
        // A worker beyond the blocks made (a table with more workers than
        // the metrics were sized for) shares the first: still counted.
        let Some(cells) = self.flows.get(worker).or_else(|| self.flows.first()) else {
            return;
        };
        if let Some(bytes) = cells.bytes.get(direction) {
            bytes.fetch_add(payload_len, Relaxed);
        }
        if ends_message && let Some(messages) = cells.messages.get(direction) {
            messages.fetch_add(1, Relaxed);
        }
    }

    /// The sum over the workers (wrapping, as one shared counter would).
    fn total(&self, pick: fn(&WorkerFlows) -> &[AtomicU64; 2], direction: usize) -> u64 {
        self.flows
            .iter()
            .map(|w| pick(w)[direction].load(Relaxed))
            .fold(0, u64::wrapping_add)
    }

    pub(super) fn session_opened(&self) {
        self.opened.inc();
        self.active.inc();
    }

    /// A session handed over from another process: live, not new.
    pub(super) fn session_restored(&self) {
        self.active.inc();
    }

    pub(super) fn session_closed(&self) {
        self.active.dec();
    }
}

/// Every metric of the relay, shared by all its workers.
pub struct Metrics {
    registry: prometheus_client::registry::Registry,
    active: Family<Labels1, Gauge>,
    opened: Family<Labels1, Counter>,
    closed: Family<Labels2, Counter>,
    refused: Family<Labels2, Counter>,
    duration: HistogramFamily,
    idle_limit: Family<Labels1, Gauge<f64, AtomicU64>>,
    reloads: Family<Labels1, Counter>,
    drain_ended: Counter,
    draining: AtomicBool,
    domains: Domains,
    /// Per-frame counter blocks per domain (the relay's worker count).
    workers: usize,
}

/// Every domain's handles, by name; shared with the two flow families,
/// which read them when encoded.
type Domains = Arc<RwLock<HashMap<DomainName, Arc<DomainMetrics>>>>;

/// `ecdn_relay_messages_total` or `ecdn_relay_bytes_total`: one counter per
/// domain and direction, summed over the workers' blocks when scraped, and
/// encoded as a `Family` of `Counter`s would be.
#[derive(Debug)]
struct FlowFamily {
    domains: Domains,
    pick: fn(&WorkerFlows) -> &[AtomicU64; 2],
}

impl TypedMetric for FlowFamily {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for FlowFamily {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let domains = self.domains.read().unwrap_or_else(|p| p.into_inner());
        for (name, domain) in domains.iter() {
            for (index, direction) in DIRECTIONS.iter().enumerate() {
                let labels: Labels2 = [
                    ("domain", name.to_string()),
                    ("direction", (*direction).to_string()),
                ];
                let value = domain.total(self.pick, index);
                encoder
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }

    fn is_empty(&self) -> bool {
        self.domains
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn domain_label(domain: &str) -> Labels1 {
    [("domain", domain.to_string())]
}

impl Metrics {
    /// Metrics for a relay with the default number of workers.
    pub fn new() -> Self {
        Self::with_workers(crate::config::default_workers())
    }

    /// Metrics whose per-frame counters have one block per worker.
    pub fn with_workers(workers: usize) -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        let active = Family::<Labels1, Gauge>::default();
        let opened = Family::<Labels1, Counter>::default();
        let closed = Family::<Labels2, Counter>::default();
        let refused = Family::<Labels2, Counter>::default();
        let domains = Domains::default();
        let messages = FlowFamily {
            domains: domains.clone(),
            pick: |w| &w.messages,
        };
        let bytes = FlowFamily {
            domains: domains.clone(),
            pick: |w| &w.bytes,
        };
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let idle_limit = Family::<Labels1, Gauge<f64, AtomicU64>>::default();
        let reloads = Family::<Labels1, Counter>::default();
        // Both results exist from the start at 0: `increase()` of a series
        // born at 1 is 0, and the documented alert on refused reloads would
        // miss the first one after every start.
        for result in ["applied", "refused"] {
            let _ = reloads.get_or_create(&[("result", result.to_string())]);
        }
        let build_info = Family::<Labels1, Gauge>::default();
        let drain_ended = Counter::default();
        build_info
            .get_or_create(&[("version", env!("CARGO_PKG_VERSION").to_string())])
            .set(1);
        // Counter names get their `_total` suffix from the encoder.
        registry.register(
            "ecdn_relay_sessions_active",
            "Live WebSocket sessions",
            active.clone(),
        );
        registry.register(
            "ecdn_relay_sessions_opened",
            "Sessions whose handshakes both succeeded",
            opened.clone(),
        );
        registry.register(
            "ecdn_relay_sessions_closed",
            "Sessions ended, by cause",
            closed.clone(),
        );
        registry.register(
            "ecdn_relay_handshakes_refused",
            "Upgrade requests refused (domain=\"\" when no domain matched; status=\"dropped\" when the connection was dropped without an answer)",
            refused.clone(),
        );
        registry.register(
            "ecdn_relay_messages",
            "Complete data messages relayed",
            messages,
        );
        registry.register("ecdn_relay_bytes", "Frame payload bytes relayed", bytes);
        registry.register(
            "ecdn_relay_session_duration_seconds",
            "How long sessions lasted",
            duration.clone(),
        );
        registry.register(
            "ecdn_relay_idle_limit_seconds",
            "The effective idle limit (+Inf: no limit)",
            idle_limit.clone(),
        );
        registry.register(
            "ecdn_relay_config_reloads",
            "Config reloads (SIGHUP or a file change), applied or refused",
            reloads.clone(),
        );
        registry.register("ecdn_relay_build_info", "The relay's version", build_info);
        registry.register(
            "ecdn_relay_sessions_ended_during_drain",
            "Sessions that ended by themselves while the relay was draining",
            drain_ended.clone(),
        );
        Self {
            registry,
            active,
            opened,
            closed,
            refused,
            duration,
            idle_limit,
            reloads,
            drain_ended,
            draining: AtomicBool::new(false),
            domains,
            workers: workers.max(1),
        }
    }

    /// The handles of a configured domain (created on first use).
    pub fn domain(&self, name: &DomainName) -> Arc<DomainMetrics> {
        let existing = self
            .domains
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        if let Some(found) = existing {
            return found;
        }
        let mut domains = self.domains.write().unwrap_or_else(|p| p.into_inner());
        domains
            .entry(name.clone())
            .or_insert_with(|| Arc::new(self.new_domain(name)))
            .clone()
    }

    fn new_domain(&self, name: &str) -> DomainMetrics {
        DomainMetrics {
            active: self.active.get_or_create(&domain_label(name)).clone(),
            opened: self.opened.get_or_create(&domain_label(name)).clone(),
            flows: (0..self.workers).map(|_| WorkerFlows::default()).collect(),
        }
    }

    /// Puts a config in force: each domain's handles exist (so its series
    /// read 0 before the first session) and its idle limit is current; a
    /// domain no longer configured loses its idle limit series.
    pub fn apply_config(&self, config: &Config) {
        for domain in &config.domains {
            self.domain(&domain.name);
            let limit = effective_timeout(domain)
                .limit
                .map_or(f64::INFINITY, |t| t.as_secs_f64());
            self.idle_limit
                .get_or_create(&domain_label(&domain.name))
                .set(limit);
        }
        let stale: Vec<DomainName> = self
            .domains
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|name| config.domains.iter().all(|d| d.name != **name))
            .cloned()
            .collect();
        for name in stale {
            self.idle_limit.remove(&domain_label(&name));
        }
    }

    /// Counts what an event says: closes by cause (and the duration),
    /// refusals by status. Opens and the active gauge are counted by the
    /// registry itself, so they stay true even when events are dropped.
    pub fn observe(&self, event: &RelayEvent) {
        match event {
            RelayEvent::Closed {
                domain,
                cause,
                duration,
                ..
            } => {
                self.closed
                    .get_or_create(&[
                        ("domain", domain.to_string()),
                        ("cause", cause_label(cause).to_string()),
                    ])
                    .inc();
                self.duration
                    .get_or_create(&domain_label(domain))
                    .observe(duration.as_secs_f64());
                if self.draining.load(Relaxed) && *cause != CloseCause::Shutdown {
                    self.drain_ended.inc();
                }
            }
            RelayEvent::Refused { domain, status, .. } => {
                // `domain` is set only from a configured domain's name.
                let domain = domain
                    .as_ref()
                    .map(DomainName::to_string)
                    .unwrap_or_default();
                let status = status.map_or_else(|| "dropped".to_string(), |s| s.to_string());
                self.refused
                    .get_or_create(&[("domain", domain), ("status", status)])
                    .inc();
            }
            _ => {}
        }
    }

    /// A config reload was applied (`true`) or refused.
    pub fn config_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        self.reloads
            .get_or_create(&[("result", result.to_string())])
            .inc();
    }

    /// From now on, sessions that end other than by the relay's shutdown
    /// close are counted as ended by themselves during the drain.
    pub fn start_drain(&self) {
        self.draining.store(true, Relaxed);
    }

    pub fn ended_during_drain(&self) -> u64 {
        self.drain_ended.get()
    }

    /// The `Content-Type` of [`encode`](Self::encode)'s text.
    pub const CONTENT_TYPE: &'static str =
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

    /// The Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// The `cause` label of `ecdn_relay_sessions_closed_total`.
pub fn cause_label(cause: &CloseCause) -> &'static str {
    match cause {
        CloseCause::IdleTimeout { .. } => "idle_timeout",
        CloseCause::ClientClosed => "client_close",
        CloseCause::OriginClosed => "origin_close",
        CloseCause::ClientVanished => "client_gone",
        CloseCause::OriginVanished => "origin_gone",
        CloseCause::ProtocolError { .. } => "protocol_error",
        CloseCause::MessageTooBig { .. } => "message_too_big",
        CloseCause::Operator => "operator",
        CloseCause::DomainOffline | CloseCause::DomainRemoved => "config_change",
        CloseCause::Shutdown => "shutdown",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The lines of `family` (HELP, TYPE and samples) in `text`, sorted.
    fn family_lines(text: &str, family: &str) -> Vec<String> {
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| {
                let name = format!("{family}_total");
                l.split(' ').nth(2) == Some(name.as_str()) || l.starts_with(&format!("{name}{{"))
            })
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    }

    /// Frames counted by different workers add up, and the text is exactly
    /// what a `Family` of shared `Counter`s said before the counters were
    /// split per worker (the metric names and values are a contract).
    #[test]
    fn per_worker_counters_scrape_as_one_counter_family() {
        let metrics = Metrics::with_workers(2);
        let a = metrics.domain(&"a.test".into());
        metrics.domain(&"b.test".into());
        a.record_frame(0, 0, 10, true);
        a.record_frame(1, 0, 20, false);
        a.record_frame(1, 0, 5, true);
        a.record_frame(1, 1, 7, true);
        // A worker the metrics were not sized for still counts.
        a.record_frame(5, 1, 1, true);

        let mut reference = prometheus_client::registry::Registry::default();
        let messages = Family::<Labels2, Counter>::default();
        let bytes = Family::<Labels2, Counter>::default();
        reference.register(
            "ecdn_relay_messages",
            "Complete data messages relayed",
            messages.clone(),
        );
        reference.register(
            "ecdn_relay_bytes",
            "Frame payload bytes relayed",
            bytes.clone(),
        );
        let labels =
            |d: &str, dir: &str| [("domain", d.to_string()), ("direction", dir.to_string())];
        for (domain, dir, m, b) in [
            ("a.test", "client_to_origin", 2, 35),
            ("a.test", "origin_to_client", 2, 8),
            ("b.test", "client_to_origin", 0, 0),
            ("b.test", "origin_to_client", 0, 0),
        ] {
            messages.get_or_create(&labels(domain, dir)).inc_by(m);
            bytes.get_or_create(&labels(domain, dir)).inc_by(b);
        }
        let mut expected = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut expected, &reference).unwrap();

        let text = metrics.encode();
        for family in ["ecdn_relay_messages", "ecdn_relay_bytes"] {
            assert_eq!(family_lines(&text, family), family_lines(&expected, family));
            assert_eq!(family_lines(&text, family).len(), 6, "{text}");
        }
    }
}
