//! A synthetic client: connects through the relay with its domain as Host
//! header, sends what its [`Behaviour`] says, and when the session ends
//! (cut for idleness, most of the time) reconnects after a pause, so the
//! show goes on for as long as the demo runs.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, interval_at, sleep, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::scenario::{Behaviour, ClientSpec};

/// Bound on connecting and on the relay's answer to the upgrade.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client waits for the close handshake to finish.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Runs `spec` against the relay at `relay` until `stop` is cancelled.
pub async fn run(spec: ClientSpec, relay: SocketAddr, pause: Backoff, stop: CancellationToken) {
    let mut wait = pause.first;
    loop {
        let connected = tokio::select! {
            () = stop.cancelled() => return,
            r = connect(relay, &spec) => r,
        };
        match connected {
            Ok(ws) => {
                tracing::debug!(domain = spec.domain, path = %spec.path, "demo client connected");
                if session(ws, spec.behaviour, &stop).await == Ended::Stopped
                    || !spec.fate.reconnects()
                {
                    return;
                }
                wait = pause.first;
            }
            Err(e) => {
                // The domain may be offline or deleted from the console:
                // retry, less and less often.
                tracing::debug!(domain = spec.domain, "demo client cannot connect: {e}");
                wait = (wait * 2).min(pause.max);
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = sleep(wait) => {}
        }
    }
}

/// Reconnect pauses: `first` after a session ended, doubling after each
/// failed connect up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

async fn connect(
    relay: SocketAddr,
    spec: &ClientSpec,
) -> Result<WebSocketStream<TcpStream>, String> {
    let mut request = format!("ws://{relay}{}", spec.path)
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let host = HeaderValue::from_str(spec.domain).map_err(|e| e.to_string())?;
    request.headers_mut().insert("host", host);
    let attempt = async {
        let stream = TcpStream::connect(relay).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        tokio_tungstenite::client_async(request, stream)
            .await
            .map(|(ws, _)| ws)
            .map_err(|e| e.to_string())
    };
    timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| "the relay did not answer in time".to_string())?
}

#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The session ended (usually cut by the relay): reconnect.
    Closed,
    /// The demo is stopping.
    Stopped,
}

/// One session: send on the behaviour's schedule, read everything (echoes,
/// ticks, pongs), until either side closes.
async fn session(
    ws: WebSocketStream<TcpStream>,
    behaviour: Behaviour,
    stop: &CancellationToken,
) -> Ended {
    let (message_every, ping_every) = match behaviour {
        Behaviour::Silent => (None, None),
        Behaviour::Heartbeat(every) => (Some(every), None),
        Behaviour::PingKept { message, ping } => (Some(message), Some(ping)),
    };
    // A message on connect (the application's hello), then one per interval.
    let mut messages = message_every.map(|every| interval_at(Instant::now(), every));
    let mut pings = ping_every.map(|every| interval_at(Instant::now() + every, every));
    let (mut sink, mut source) = ws.split();
    let mut sent = 0u64;
    loop {
        let next_message = async {
            match messages.as_mut() {
                Some(i) => i.tick().await,
                None => std::future::pending().await,
            }
        };
        let next_ping = async {
            match pings.as_mut() {
                Some(i) => i.tick().await,
                None => std::future::pending().await,
            }
        };
        let outgoing = tokio::select! {
            // Quitting the demo: say goodbye properly.
            () = stop.cancelled() => {
                let bye = CloseFrame { code: CloseCode::Away, reason: "demo stopping".into() };
                let _ = timeout(CLOSE_WAIT, sink.send(Message::Close(Some(bye)))).await;
                return Ended::Stopped;
            }
            // Echoes, ticks and pongs are read and dropped; a close or the
            // end of the stream ends the session.
            incoming = source.next() => match incoming {
                Some(Ok(Message::Close(_))) => {
                    // Keep polling so tungstenite answers the close.
                    let _ = timeout(CLOSE_WAIT, async {
                        while let Some(Ok(_)) = source.next().await {}
                    })
                    .await;
                    return Ended::Closed;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ended::Closed,
            },
            _ = next_message => {
                sent += 1;
                Message::text(format!("heartbeat {sent}"))
            }
            _ = next_ping => Message::Ping(Vec::from(*b"demo").into()),
        };
        if sink.send(outgoing).await.is_err() {
            return Ended::Closed;
        }
    }
}
