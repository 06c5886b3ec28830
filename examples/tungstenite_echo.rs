//! A WebSocket echo origin that is not ours: plain tokio-tungstenite with its
//! default configuration, as an application would write it. Used by
//! `reliability/autobahn.sh` to check that the relay behaves like no relay
//! with an origin whose error handling differs from the embedded origin's:
//! on invalid UTF-8 tokio-tungstenite returns an error and this loop drops
//! TCP without a close frame (the embedded origin closes with 1007).
//!
//! Usage: cargo run --release --example tungstenite_echo -- 127.0.0.1:PORT

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".to_string());
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    println!("tungstenite echo listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(echo(stream));
    }
}

/// Echoes text and binary messages until the client closes or an error;
/// tungstenite answers pings and close frames itself while it is polled.
async fn echo(stream: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            return;
        }
    }
}
