//! `fanout` mode: an origin pushing to many clients. The generator is the
//! origin too (listening on `--push-listen`, where the target forwards
//! sessions): every interval it sends one message to every session it
//! accepted, stamped with the time of the tick; each client records how long
//! the message took to arrive. Origin and clients share the process, so the
//! stamp and the arrival are read on one clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::report::Recorder;

/// Ticks buffered per session before a slow one starts losing them (counted).
const TICKS_BUFFERED: usize = 64;

/// The pushing origin.
pub struct PushOrigin {
    ticks: broadcast::Sender<Bytes>,
    stop: CancellationToken,
    epoch: Instant,
}

impl PushOrigin {
    /// Listens on `addr`; each session it accepts gets every tick.
    pub async fn listen(addr: SocketAddr, recorder: Arc<Recorder>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let (ticks, _) = broadcast::channel(TICKS_BUFFERED);
        let stop = CancellationToken::new();
        let origin = Self {
            ticks: ticks.clone(),
            stop: stop.clone(),
            epoch: Instant::now(),
        };
        tokio::spawn(accept(listener, ticks, stop, recorder));
        Ok(origin)
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Pushes a `size` byte message every `every` from `start` until `end`.
    pub async fn push(&self, start: Instant, end: Instant, every: Duration, size: usize) {
        let mut ticker = interval_at(start, every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            let at = ticker.tick().await;
            if at >= end {
                break;
            }
            let _ = self.ticks.send(stamped(self.epoch, at, size));
        }
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// A `size` byte payload whose first 8 bytes are the tick time, in
/// nanoseconds since `epoch`.
fn stamped(epoch: Instant, at: Instant, size: usize) -> Bytes {
    let nanos = u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX);
    let mut payload = vec![b'x'; size.max(8)];
    payload[..8].copy_from_slice(&nanos.to_be_bytes());
    Bytes::from(payload)
}

/// The delivery time of a stamped payload received at `now`.
pub fn delivery(epoch: Instant, payload: &[u8], now: Instant) -> Option<Duration> {
    let stamp: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    let sent = epoch + Duration::from_nanos(u64::from_be_bytes(stamp));
    Some(now.saturating_duration_since(sent))
}

async fn accept(
    listener: TcpListener,
    ticks: broadcast::Sender<Bytes>,
    stop: CancellationToken,
    recorder: Arc<Recorder>,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(serve(
                    stream,
                    ticks.subscribe(),
                    stop.clone(),
                    recorder.clone(),
                ));
            }
            Err(e) => recorder.error(format!("push origin accept: {e}")),
        }
    }
}

/// One origin-side session: forward ticks until the peer closes.
async fn serve(
    stream: TcpStream,
    mut ticks: broadcast::Receiver<Bytes>,
    stop: CancellationToken,
    recorder: Arc<Recorder>,
) {
    let _ = stream.set_nodelay(true);
    let mut ws = match tokio_tungstenite::accept_async(stream).await {
        Ok(ws) => ws,
        Err(e) => {
            recorder.error(format!("push origin handshake: {e}"));
            return;
        }
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            tick = ticks.recv() => match tick {
                Ok(payload) => {
                    if ws.send(Message::Binary(payload)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    recorder.error(format!("push origin: a session fell {n} ticks behind"));
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            // The client's close ends the session (tungstenite queues the
            // reply; `close` flushes it).
            message = ws.next() => match message {
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    let _ = ws.close(None).await;
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}
