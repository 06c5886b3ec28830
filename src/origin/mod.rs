//! The embedded origin: a WebSocket echo server with an optional ticker, for
//! demos, tests and newcomers (`ecdn-console origin`).
//!
//! It echoes text and binary messages, answers pings (tungstenite does that
//! while the stream is polled), optionally pushes `tick N` every few seconds,
//! and picks its subprotocol when a client offers it. Two text commands help
//! troubleshooting: `/headers` answers with the upgrade request's headers as
//! the origin saw them, and `/close CODE [REASON]` makes the origin close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the origin behaves.
#[derive(Debug, Clone, Default)]
pub struct OriginOptions {
    /// Push `tick N` to every client this often.
    pub tick: Option<Duration>,
    /// The subprotocol to select when a client offers it.
    pub protocol: Option<String>,
}

/// Serves WebSocket clients on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, options: OriginOptions, shutdown: CancellationToken) {
    let options = Arc::new(options);
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                let options = options.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        () = serve_client(stream, &options) => {}
                        () = shutdown.cancelled() => {}
                    }
                });
            }
            // Out of descriptors and the like: wait a little rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
}

/// Binds `addr` and serves on a background task; returns the bound address.
pub async fn spawn(
    addr: SocketAddr,
    options: OriginOptions,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = bind(addr)?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener, options, shutdown));
    Ok(local)
}

/// A listener with a deep backlog: demos and benchmarks connect hundreds of
/// clients at once, and `TcpListener::bind`'s default (1024) drops SYNs,
/// which costs each dropped client a 1 s retransmission.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

fn websocket_config() -> WebSocketConfig {
    // Small buffers: an echo origin holds many idle sessions in benchmarks.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

async fn serve_client(stream: TcpStream, options: &OriginOptions) {
    let _ = stream.set_nodelay(true);
    let mut seen_headers = String::new();
    // The callback's error type is tungstenite's (large) HTTP response; it
    // never fails here, so the size does not matter.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, mut response: Response| {
        for (name, value) in request.headers() {
            seen_headers.push_str(&format!(
                "{name}: {}\n",
                value.to_str().unwrap_or("<binary>")
            ));
        }
        if let Some(wanted) = &options.protocol {
            let offered = request
                .headers()
                .get_all("sec-websocket-protocol")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|p| p.trim() == wanted);
            if let (true, Ok(v)) = (offered, HeaderValue::from_str(wanted)) {
                response.headers_mut().insert("sec-websocket-protocol", v);
            }
        }
        Ok(response)
    };
    let Ok(ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(websocket_config()))
            .await
    else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let mut ticks = options.tick.map(|period| {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut tick_count = 0u64;
    loop {
        let next_tick = async {
            match ticks.as_mut() {
                Some(i) => {
                    i.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = source.next() => {
                let reply = match message {
                    Some(Ok(Message::Text(text))) => match command(&text, &seen_headers) {
                        Some(Command::Reply(r)) => Message::text(r),
                        Some(Command::Close(frame)) => Message::Close(Some(frame)),
                        None => Message::Text(text),
                    },
                    Some(Ok(Message::Binary(data))) => Message::Binary(data),
                    // Pings are answered by tungstenite; a close is echoed by it too.
                    Some(Ok(_)) => continue,
                    // A broken message gets a close frame that says why, as
                    // RFC 6455 asks, instead of a silently dropped connection.
                    Some(Err(e)) => match failure_close(&e) {
                        Some(frame) => Message::Close(Some(frame)),
                        None => break,
                    },
                    None => break,
                };
                if sink.send(reply).await.is_err() {
                    break;
                }
            }
            () = next_tick => {
                tick_count += 1;
                if sink.send(Message::text(format!("tick {tick_count}"))).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// The close frame owed to a client whose message broke a rule.
fn failure_close(error: &tokio_tungstenite::tungstenite::Error) -> Option<CloseFrame> {
    use tokio_tungstenite::tungstenite::Error;
    let (code, reason) = match error {
        Error::Utf8(_) => (CloseCode::Invalid, "invalid UTF-8 in a text message"),
        Error::Protocol(_) => (CloseCode::Protocol, "protocol error"),
        Error::Capacity(_) => (CloseCode::Size, "message too big"),
        _ => return None,
    };
    Some(CloseFrame {
        code,
        reason: reason.into(),
    })
}

enum Command {
    Reply(String),
    Close(CloseFrame),
}

fn command(text: &str, headers: &str) -> Option<Command> {
    if text == "/headers" {
        return Some(Command::Reply(headers.to_string()));
    }
    let rest = text.strip_prefix("/close ")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let code: u16 = code.parse().ok()?;
    Some(Command::Close(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    }))
}
