//! One load session: connect (under the handshake gate), then echo, paced or
//! idle, then close.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until, timeout, timeout_at};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::report::Recorder;
use super::{Mode, Target};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A handshake that takes longer than this counts as failed.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(30);
/// An echo that does not come back within this is an error.
pub(super) const ECHO_LIMIT: Duration = Duration::from_secs(10);
/// How long the generator waits for the peer's reply to its own close.
const CLOSE_LIMIT: Duration = Duration::from_secs(1);

/// The measured window, announced once every session has opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    pub start: Instant,
    pub end: Instant,
}

/// How a session ended.
pub enum Outcome {
    /// Ran its load and closed itself.
    Done,
    /// Never opened.
    Failed,
    /// Idle: nobody closed it before the hold ended.
    StillOpen,
    /// Idle: the peer closed it; `lateness` is close time minus deadline in µs.
    Closed {
        label: String,
        lateness: Option<i64>,
    },
}

pub struct SessionTask {
    pub index: usize,
    pub sessions: usize,
    pub target: Arc<Target>,
    pub mode: Mode,
    pub size: usize,
    pub expect_timeout: Option<Duration>,
    pub recorder: Arc<Recorder>,
    pub gate: Arc<Semaphore>,
    pub opened: mpsc::Sender<bool>,
    pub phase: watch::Receiver<Option<Phase>>,
    /// Fan-out: the push origin's clock origin for the stamps.
    pub epoch: Instant,
}

impl SessionTask {
    pub async fn run(mut self) -> Outcome {
        let permit: Option<OwnedSemaphorePermit> = self.gate.clone().acquire_owned().await.ok();
        let started = Instant::now();
        let connected = connect(&self.target).await;
        drop(permit);
        let ws = match connected {
            Ok(ws) => {
                self.recorder.handshake(started.elapsed());
                let _ = self.opened.send(true).await;
                ws
            }
            Err(e) => {
                self.recorder.error(e);
                let _ = self.opened.send(false).await;
                return Outcome::Failed;
            }
        };
        let opened_at = Instant::now();
        match self.mode.clone() {
            Mode::Idle => self.idle(ws, opened_at).await,
            Mode::Echo => {
                let Some(phase) = wait_phase(&mut self.phase).await else {
                    return Outcome::Done;
                };
                self.echo(ws, phase, None).await
            }
            Mode::Paced { interval } => {
                let Some(phase) = wait_phase(&mut self.phase).await else {
                    return Outcome::Done;
                };
                self.echo(ws, phase, Some(interval)).await
            }
            Mode::Fanout { .. } => {
                let Some(phase) = wait_phase(&mut self.phase).await else {
                    return Outcome::Done;
                };
                self.receive(ws, phase).await
            }
            // Run by `handshake.rs`, never as a session task.
            Mode::Handshake => Outcome::Done,
        }
    }

    /// Fan-out: records each pushed message's delivery time until the window ends.
    async fn receive(&self, mut ws: Ws, phase: Phase) -> Outcome {
        loop {
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Message::Binary(b))) => {
                        let now = Instant::now();
                        match super::fanout::delivery(self.epoch, &b, now) {
                            Some(took) if now <= phase.end => self.recorder.round_trip(took),
                            Some(_) => {}
                            None => self.recorder.error("a pushed message without a stamp".into()),
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        self.recorder.error(format!("closed by peer: {}", close_label(frame.as_ref())));
                        return Outcome::Done;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        self.recorder.error(format!("receive: {e}"));
                        return Outcome::Done;
                    }
                    None => {
                        self.recorder.error("connection ended without a close frame".into());
                        return Outcome::Done;
                    }
                },
                () = sleep_until(phase.end) => break,
            }
        }
        close(&mut ws).await;
        Outcome::Done
    }

    /// Closed loop (`interval` None) or paced: send, await the echo, record.
    async fn echo(&self, mut ws: Ws, phase: Phase, interval: Option<Duration>) -> Outcome {
        let payload = Bytes::from(vec![b'x'; self.size]);
        let mut ticker = interval.map(|every| {
            // Spread the sessions evenly over one interval, so the relay sees
            // a steady rate rather than bursts of every session at once.
            let offset = every.mul_f64(self.index as f64 / self.sessions as f64);
            let mut t = interval_at(phase.start + offset, every);
            // A round trip slower than the interval skips ticks rather than
            // bursting to catch up.
            t.set_missed_tick_behavior(MissedTickBehavior::Skip);
            t
        });
        loop {
            if let Some(t) = ticker.as_mut() {
                tokio::select! {
                    _ = t.tick() => {}
                    () = sleep_until(phase.end) => break,
                }
            }
            let sent = Instant::now();
            if sent >= phase.end {
                break;
            }
            if let Err(e) = ws.send(Message::Binary(payload.clone())).await {
                self.recorder.error(format!("send: {e}"));
                return Outcome::Done;
            }
            match timeout(ECHO_LIMIT, next_data(&mut ws)).await {
                Ok(Ok(len)) if len == self.size => {
                    let now = Instant::now();
                    if now <= phase.end {
                        self.recorder.round_trip(now - sent);
                    }
                }
                Ok(Ok(len)) => {
                    self.recorder.error(format!(
                        "echo of {len} bytes for a {} byte message",
                        self.size
                    ));
                }
                Ok(Err(e)) => {
                    self.recorder.error(e);
                    return Outcome::Done;
                }
                Err(_) => {
                    self.recorder
                        .error(format!("no echo within {} s", ECHO_LIMIT.as_secs()));
                    return Outcome::Done;
                }
            }
        }
        close(&mut ws).await;
        Outcome::Done
    }

    /// Stays silent until the peer closes or the hold ends.
    async fn idle(mut self, mut ws: Ws, opened_at: Instant) -> Outcome {
        let deadline = self.expect_timeout.map(|t| opened_at + t);
        let hold_end = async {
            // No phase means the run was abandoned: stop holding at once.
            if let Some(phase) = wait_phase(&mut self.phase).await {
                sleep_until(phase.end).await;
            }
        };
        tokio::pin!(hold_end);
        loop {
            tokio::select! {
                message = ws.next() => {
                    let label = match message {
                        Some(Ok(Message::Close(frame))) => close_label(frame.as_ref()),
                        // Pings are answered by tungstenite; data is unexpected.
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(_)) => {
                            self.recorder.error("idle session received a data message".into());
                            continue;
                        }
                        Some(Err(e)) => error_label(&e),
                        None => "1006 no close frame".to_string(),
                    };
                    let closed_at = Instant::now();
                    // Answer the close handshake (tungstenite does it while polled).
                    let _ = timeout(CLOSE_LIMIT, async { while ws.next().await.is_some() {} }).await;
                    let lateness = deadline.map(|d| signed_micros(closed_at, d));
                    return Outcome::Closed { label, lateness };
                }
                () = &mut hold_end => {
                    close(&mut ws).await;
                    return Outcome::StillOpen;
                }
            }
        }
    }
}

async fn wait_phase(rx: &mut watch::Receiver<Option<Phase>>) -> Option<Phase> {
    rx.wait_for(Option::is_some).await.ok().and_then(|p| *p)
}

pub(super) async fn connect(target: &Target) -> Result<Ws, String> {
    let stream = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect to {}: {e}", target.addr))?;
    // Latency is the point of the measurement: no Nagle delays.
    let _ = stream.set_nodelay(true);
    let stream = match &target.tls {
        None => MaybeTlsStream::Plain(stream),
        Some((connector, name)) => {
            match timeout(HANDSHAKE_LIMIT, connector.connect(name.clone(), stream)).await {
                Ok(Ok(tls)) => MaybeTlsStream::Rustls(tls),
                Ok(Err(e)) => return Err(format!("TLS handshake: {e}")),
                Err(_) => {
                    return Err(format!(
                        "TLS handshake: no answer within {} s",
                        HANDSHAKE_LIMIT.as_secs()
                    ));
                }
            }
        }
    };
    let mut request = target
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("request: {e}"))?;
    if let Some(host) = &target.host {
        request.headers_mut().insert("host", host.clone());
    }
    let handshake =
        tokio_tungstenite::client_async_with_config(request, stream, Some(target.config));
    match timeout(HANDSHAKE_LIMIT, handshake).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(WsError::Http(response))) => Err(format!(
            "handshake refused: HTTP {}",
            response.status().as_u16()
        )),
        Ok(Err(e)) => Err(format!("handshake: {e}")),
        Err(_) => Err(format!(
            "handshake: no answer within {} s",
            HANDSHAKE_LIMIT.as_secs()
        )),
    }
}

/// The length of the next data message; pings and pongs are skipped.
pub(super) async fn next_data(ws: &mut Ws) -> Result<usize, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => return Ok(b.len()),
            Some(Ok(Message::Text(t))) => return Ok(t.len()),
            Some(Ok(Message::Close(frame))) => {
                return Err(format!("closed by peer: {}", close_label(frame.as_ref())));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("receive: {e}")),
            None => return Err("connection ended without a close frame".into()),
        }
    }
}

/// Closes with 1000 and waits briefly for the peer's reply.
pub(super) async fn close(ws: &mut Ws) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "load done".into(),
    };
    let _ = timeout_at(Instant::now() + CLOSE_LIMIT, async {
        if ws.close(Some(frame)).await.is_ok() {
            while ws.next().await.is_some() {}
        }
    })
    .await;
}

fn close_label(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) => u16::from(f.code).to_string(),
        None => "1005 no status".to_string(),
    }
}

fn error_label(e: &WsError) -> String {
    match e {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            "1006 no close frame".to_string()
        }
        WsError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionReset => {
            "1006 connection reset".to_string()
        }
        other => format!("error: {other}"),
    }
}

fn signed_micros(at: Instant, deadline: Instant) -> i64 {
    let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    if at >= deadline {
        micros(at - deadline)
    } else {
        -micros(deadline - at)
    }
}
