//! The open connection: heartbeats out, frames in, and the end — whoever
//! causes it — measured from the same clocks.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{
    Instant, Interval, MissedTickBehavior, interval_at, sleep_until, timeout, timeout_at,
};
use tokio_util::sync::CancellationToken;

use super::connect::{Connected, Io};
use super::report::{Beat, CloseReport, HeartbeatStats, Reporter, Side, Step, Summary, ms, secs};
use super::wire::{self, FrameReader, Incoming, WireError};
use super::{Mode, Outcome, ProbeOptions};
use crate::ws::FrameKind;
use crate::ws::close::{self, CloseInfo};

/// How long the probe waits for the server to answer its close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long closing our side of TCP may take.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(500);
/// The reason in the probe's own close frame.
const FINISHED_REASON: &str = "probe finished";

/// A heartbeat waiting for its answer.
struct Pending {
    seq: u64,
    sent: Instant,
    payload: Vec<u8>,
}

/// Why the main loop woke up.
enum Wake {
    Read(io::Result<usize>),
    Beat,
    Stop(String),
}

/// How waiting for a close frame ended.
enum Wait {
    Close(Option<CloseInfo>),
    Ended(String),
    Violation(WireError),
    TimedOut,
}

struct Session<'r, 'w> {
    stream: Box<dyn Io>,
    buf: BytesMut,
    reader: FrameReader,
    rep: &'r mut Reporter<'w>,
    beat: Option<(Duration, Beat)>,
    opened_at: Instant,
    last_rx: Instant,
    last_tx: Instant,
    pending: VecDeque<Pending>,
    stats: HeartbeatStats,
    /// Messages and pings the server sent on its own.
    received: u64,
}

/// Runs the session until it ends, and sums it up.
pub async fn run(
    options: &ProbeOptions,
    connected: Connected,
    rep: &mut Reporter<'_>,
    stop: CancellationToken,
) -> Summary {
    let opened_at = connected.opened_at;
    let beat = match options.mode {
        Mode::Silent => None,
        Mode::Heartbeat { every, ping } => {
            Some((every, if ping { Beat::Ping } else { Beat::Text }))
        }
    };
    let mut session = Session {
        stream: connected.stream,
        buf: connected.leftover,
        reader: FrameReader::default(),
        rep,
        beat,
        opened_at,
        last_rx: opened_at,
        last_tx: opened_at,
        pending: VecDeque::new(),
        stats: HeartbeatStats::default(),
        received: 0,
    };
    let mut ticker: Option<Interval> = beat.map(|(every, _)| {
        let mut ticker = interval_at(opened_at + every, every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker
    });
    let stop_at = options.duration.map(|d| opened_at + d);
    // Set once the last of `--count` heartbeats is out: how long its answer may take.
    let mut last_answer_due: Option<Instant> = None;

    loop {
        // Frames that arrived with the 101, or in the last read.
        match session.drain().await {
            Ok(Some(close)) => return session.closed_by_server(close).await,
            Ok(None) => {}
            Err(violation) => return session.violation(violation).await,
        }
        let count_done = options.count.is_some_and(|n| session.stats.sent >= n);
        if count_done && session.pending.is_empty() {
            let why = format!("--count {} reached", session.stats.sent);
            return session.close_ourselves(why).await;
        }
        if count_done {
            ticker = None;
            if last_answer_due.is_none() {
                last_answer_due = beat.map(|(every, _)| Instant::now() + every);
            }
        }

        let wake = tokio::select! {
            // Reading first: a close frame that is already here explains
            // what happens next better than a timer does.
            biased;
            r = session.stream.read_buf(&mut session.buf) => Wake::Read(r),
            () = stop.cancelled() => Wake::Stop("stopped (Ctrl-C)".to_string()),
            () = sleep_opt(stop_at) => Wake::Stop(format!(
                "--duration {} s reached",
                options.duration.map_or(0.0, |d| d.as_secs_f64())
            )),
            () = sleep_opt(last_answer_due) => Wake::Stop(format!(
                "--count {} reached",
                session.stats.sent
            )),
            () = tick_opt(&mut ticker) => Wake::Beat,
        };
        match wake {
            Wake::Read(Ok(0)) => return session.dropped("the server closed TCP (EOF)".into()),
            Wake::Read(Ok(_)) => {}
            Wake::Read(Err(e)) => return session.dropped(ended(&e)),
            Wake::Beat => {
                if let Err(e) = session.heartbeat().await {
                    return session.after_write_error(&e).await;
                }
            }
            Wake::Stop(why) => {
                session.give_up_on_pending(Instant::now());
                return session.close_ourselves(why).await;
            }
        }
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick_opt(ticker: &mut Option<Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// How a connection that failed ended, in words.
fn ended(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionReset => "the connection was reset (TCP RST)".into(),
        io::ErrorKind::UnexpectedEof => {
            "the server closed TCP (EOF) without a TLS close_notify".into()
        }
        io::ErrorKind::BrokenPipe => "the connection is gone (broken pipe)".into(),
        _ => format!("the connection failed: {e}"),
    }
}

impl Session<'_, '_> {
    /// Handles every complete frame in the buffer; stops at a close frame.
    async fn drain(&mut self) -> Result<Option<Option<CloseInfo>>, WireError> {
        while let Some(incoming) = self.reader.next(&mut self.buf)? {
            if let Incoming::Close(close) = incoming {
                return Ok(Some(close));
            }
            self.handle(incoming).await;
        }
        Ok(None)
    }

    async fn handle(&mut self, incoming: Incoming) {
        let now = Instant::now();
        self.last_rx = now;
        let (kind, bytes, text) = match incoming {
            Incoming::Text(text) => {
                if self.answered(Beat::Text, text.as_bytes(), now) {
                    return;
                }
                ("text", text.len(), Some(text))
            }
            Incoming::Binary(len) => ("binary", len, None),
            Incoming::Ping(payload) => {
                // Every client must answer pings; a write error shows up on the next read.
                let _ = self.send(&wire::encode(FrameKind::Pong, &payload)).await;
                ("ping", payload.len(), None)
            }
            Incoming::Pong(payload) => {
                if self.answered(Beat::Ping, &payload, now) {
                    return;
                }
                ("pong", payload.len(), None)
            }
            Incoming::Close(_) => return,
        };
        if kind != "pong" {
            self.received += 1;
        }
        self.rep.step(Step::Received { kind, bytes, text });
    }

    /// Whether `payload` answers a pending heartbeat (reported if so).
    fn answered(&mut self, kind: Beat, payload: &[u8], now: Instant) -> bool {
        if self.beat.map(|(_, k)| k) != Some(kind) {
            return false;
        }
        let Some(index) = self.pending.iter().position(|p| p.payload == payload) else {
            return false;
        };
        let Some(pending) = self.pending.remove(index) else {
            return false;
        };
        let rtt_ms = ms(now - pending.sent);
        self.stats.answered(rtt_ms);
        self.rep.step(Step::RoundTrip {
            seq: pending.seq,
            kind,
            rtt_ms,
        });
        true
    }

    /// Heartbeats sent at least one interval before `now` and still
    /// unanswered are reported and forgotten.
    fn give_up_on_pending(&mut self, now: Instant) {
        let Some((every, kind)) = self.beat else {
            return;
        };
        while let Some(p) = self.pending.front() {
            if now.duration_since(p.sent) < every {
                break;
            }
            self.rep.step(Step::NoAnswer {
                seq: p.seq,
                kind,
                after_s: secs(now - p.sent),
            });
            self.pending.pop_front();
        }
    }

    async fn heartbeat(&mut self) -> io::Result<()> {
        let Some((_, kind)) = self.beat else {
            return Ok(());
        };
        self.give_up_on_pending(Instant::now());
        let seq = self.stats.sent + 1;
        let (opcode, payload) = match kind {
            Beat::Text => (
                FrameKind::Text,
                format!("probe heartbeat #{seq}").into_bytes(),
            ),
            Beat::Ping => (FrameKind::Ping, seq.to_string().into_bytes()),
        };
        let frame = wire::encode(opcode, &payload);
        self.stats.sent = seq;
        self.send(&frame).await?;
        self.pending.push_back(Pending {
            seq,
            sent: self.last_tx,
            payload,
        });
        self.rep.step(Step::Heartbeat { seq, kind });
        Ok(())
    }

    async fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.stream.write_all(frame).await?;
        self.stream.flush().await?;
        self.last_tx = Instant::now();
        Ok(())
    }

    /// Reads and handles frames until a close frame, the end of the
    /// connection, or `deadline`.
    async fn read_until_close(&mut self, deadline: Instant) -> Wait {
        loop {
            match self.drain().await {
                Ok(Some(close)) => return Wait::Close(close),
                Ok(None) => {}
                Err(violation) => return Wait::Violation(violation),
            }
            match timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Wait::TimedOut,
                Ok(Ok(0)) => return Wait::Ended("the server closed TCP (EOF)".into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Wait::Ended(ended(&e)),
            }
        }
    }

    /// A heartbeat could not be written. The reason may already be waiting
    /// to be read (a close frame before the reset), so look briefly.
    async fn after_write_error(mut self, error: &io::Error) -> Summary {
        let (idle_rx, idle_tx) = self.idle(Instant::now());
        match self
            .read_until_close(Instant::now() + Duration::from_millis(200))
            .await
        {
            Wait::Close(close) => self.closed_by_server(close).await,
            Wait::Violation(v) => self.violation(v).await,
            Wait::Ended(_) | Wait::TimedOut => {
                let close =
                    CloseReport::no_frame(format!("sending a heartbeat failed: {}", ended(error)));
                self.summary(Outcome::Dropped, Side::Server, close, (idle_rx, idle_tx))
            }
        }
    }

    /// Idle time in each direction at `now`: since the last frame received, and sent.
    fn idle(&self, now: Instant) -> (Duration, Duration) {
        (now - self.last_rx, now - self.last_tx)
    }

    async fn closed_by_server(mut self, close: Option<CloseInfo>) -> Summary {
        let idle = self.idle(Instant::now());
        // Echo the code (RFC 6455 §5.5.1) — the real one, 1014 included.
        let reply = close.as_ref().filter(|c| close::sendable(c.code));
        let _ = self
            .send(&wire::encode(FrameKind::Close, &wire::close_payload(reply)))
            .await;
        self.shutdown().await;
        self.summary(
            Outcome::ServerClosed,
            Side::Server,
            CloseReport::frame(close.as_ref()),
            idle,
        )
    }

    fn dropped(self, how: String) -> Summary {
        let idle = self.idle(Instant::now());
        self.summary(
            Outcome::Dropped,
            Side::Server,
            CloseReport::no_frame(how),
            idle,
        )
    }

    async fn violation(mut self, violation: WireError) -> Summary {
        let idle = self.idle(Instant::now());
        let ours = CloseInfo::new(violation.close_code(), violation.to_string());
        let _ = self
            .send(&wire::encode(
                FrameKind::Close,
                &wire::close_payload(Some(&ours)),
            ))
            .await;
        self.shutdown().await;
        let close = CloseReport {
            detail: Some(format!("the server sent {violation}")),
            ..CloseReport::frame(Some(&ours))
        };
        self.summary(Outcome::ProtocolError, Side::Probe, close, idle)
    }

    /// `--count`/`--duration` reached or stopped: close 1000, wait for the
    /// server's answer.
    async fn close_ourselves(mut self, why: String) -> Summary {
        let idle = self.idle(Instant::now());
        self.rep.step(Step::Closing {
            why: why.clone(),
            code: close::NORMAL,
            reason: FINISHED_REASON.to_string(),
        });
        let ours = CloseInfo::new(close::NORMAL, FINISHED_REASON);
        let sent = self
            .send(&wire::encode(
                FrameKind::Close,
                &wire::close_payload(Some(&ours)),
            ))
            .await;
        let wait = match sent {
            Ok(()) => self.read_until_close(Instant::now() + CLOSE_WAIT).await,
            Err(e) => Wait::Ended(ended(&e)),
        };
        let (answer, detail) = match wait {
            Wait::Close(answer) => (
                Some(answer.unwrap_or_else(|| CloseInfo::new(close::NO_STATUS, ""))),
                why,
            ),
            Wait::Ended(how) => (None, format!("{why}; no close frame came back: {how}")),
            Wait::Violation(v) => (None, format!("{why}; then the server sent {v}")),
            Wait::TimedOut => (
                None,
                format!(
                    "{why}; no close frame came back within {} s",
                    CLOSE_WAIT.as_secs()
                ),
            ),
        };
        self.shutdown().await;
        let close = CloseReport {
            detail: Some(detail),
            answer,
            ..CloseReport::frame(Some(&ours))
        };
        self.summary(Outcome::Finished, Side::Probe, close, idle)
    }

    /// Closes our side of TCP (and TLS), within bounds.
    async fn shutdown(&mut self) {
        let _ = timeout(SHUTDOWN_WAIT, self.stream.shutdown()).await;
    }

    fn summary(
        self,
        outcome: Outcome,
        by: Side,
        close: CloseReport,
        (idle_rx, idle_tx): (Duration, Duration),
    ) -> Summary {
        let closed_at = Instant::now();
        Summary {
            outcome,
            exit_code: outcome.exit_code(),
            failed_phase: None,
            status: Some(101),
            closed_by: Some(by),
            close: Some(close),
            idle_received_s: Some(secs(idle_rx)),
            idle_sent_s: Some(secs(idle_tx)),
            connected_s: Some(secs(closed_at - self.opened_at)),
            duration_s: secs(self.rep.elapsed()),
            received: self.received,
            heartbeats: self.stats,
            diagnosis: None,
        }
    }
}
