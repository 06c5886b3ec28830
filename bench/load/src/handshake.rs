//! `handshake` mode: the reconnect storm after an edge restart. `K` loops,
//! each opening a session, exchanging one message and closing it, again and
//! again until the window ends; the rate is completed sessions per second.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

use super::Target;
use super::report::Recorder;
use super::session::{ECHO_LIMIT, close, connect, next_data};

/// Runs `concurrency` loops until `end`; returns the sessions completed.
pub async fn run(
    target: Arc<Target>,
    recorder: Arc<Recorder>,
    concurrency: usize,
    size: usize,
    end: Instant,
) {
    let payload = Bytes::from(vec![b'x'; size]);
    let loops: Vec<_> = (0..concurrency)
        .map(|_| {
            tokio::spawn(one_loop(
                target.clone(),
                recorder.clone(),
                payload.clone(),
                end,
            ))
        })
        .collect();
    for l in loops {
        if let Err(e) = l.await {
            recorder.error(format!("handshake loop failed: {e}"));
        }
    }
}

async fn one_loop(target: Arc<Target>, recorder: Arc<Recorder>, payload: Bytes, end: Instant) {
    while Instant::now() < end {
        let started = Instant::now();
        match one_session(&target, &recorder, payload.clone(), started).await {
            // Only whole sessions inside the window count toward the rate.
            Ok(()) if Instant::now() <= end => recorder.round_trip(started.elapsed()),
            Ok(()) => {}
            Err(e) => {
                recorder.error(e);
                // A refusing target must not turn this into a busy loop.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Open, one message and its echo, close (and wait for the close reply).
async fn one_session(
    target: &Target,
    recorder: &Recorder,
    payload: Bytes,
    started: Instant,
) -> Result<(), String> {
    let len = payload.len();
    let mut ws = connect(target).await?;
    recorder.handshake(started.elapsed());
    ws.send(Message::Binary(payload))
        .await
        .map_err(|e| format!("send: {e}"))?;
    match timeout(ECHO_LIMIT, next_data(&mut ws)).await {
        Ok(Ok(n)) if n == len => {}
        Ok(Ok(n)) => return Err(format!("echo of {n} bytes for a {len} byte message")),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(format!("no echo within {} s", ECHO_LIMIT.as_secs())),
    }
    close(&mut ws).await;
    Ok(())
}
