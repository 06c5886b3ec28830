//! Reaching an origin: the order to try a domain's origins in (weights,
//! then the weight-0 backups as failover), the TCP connect under the
//! connect timeout, and TLS for `origin-protocol = "https"`.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::handshake::Refusal;
use crate::config::{Domain, Origin};

/// Origins in the order to try them: a weighted random draw without
/// replacement among weighted origins, then the weight-0 backups in order.
pub fn origin_order(origins: &[Origin]) -> Vec<&Origin> {
    let mut pool: Vec<&Origin> = origins.iter().filter(|o| o.weight > 0).collect();
    let mut order = Vec::with_capacity(origins.len());
    let mut rng = rand::rng();
    while !pool.is_empty() {
        let total: u32 = pool.iter().map(|o| u32::from(o.weight)).sum();
        let mut pick = rng.random_range(0..total);
        let index = pool
            .iter()
            .position(|o| {
                let w = u32::from(o.weight);
                if pick < w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .unwrap_or(0);
        order.push(pool.remove(index));
    }
    order.extend(origins.iter().filter(|o| o.weight == 0));
    order
}

/// Connects to the first origin that accepts TCP, in weighted order.
pub async fn connect_origin(
    domain: &Domain,
    connect_timeout: Duration,
) -> Result<(TcpStream, String), Refusal> {
    let mut timed_out = false;
    let mut failures = Vec::new();
    for origin in origin_order(&domain.origins) {
        let authority = origin.authority();
        match timeout(connect_timeout, TcpStream::connect(&authority)).await {
            Ok(Ok(stream)) => {
                // Frames are small and latency-sensitive: never wait to coalesce.
                let _ = stream.set_nodelay(true);
                return Ok((stream, authority));
            }
            Ok(Err(e)) => failures.push(format!("{authority}: {e}")),
            Err(_) => {
                timed_out = true;
                failures.push(format!(
                    "{authority}: no answer in {} s",
                    connect_timeout.as_secs()
                ));
            }
        }
    }
    let (status, what) = if timed_out {
        (504, "origin did not answer in time")
    } else {
        (502, "no origin reachable")
    };
    Err(
        Refusal::status(status, format!("{what} ({})", failures.join("; ")))
            .for_domain(&domain.name),
    )
}

/// A TLS connection to an origin (`origin-protocol = "https"`).
pub async fn tls_connect(
    stream: TcpStream,
    domain: &Domain,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Refusal> {
    let name = domain.origin_host_header().to_string();
    let server_name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
        Refusal::status(
            502,
            format!("cannot use \"{name}\" as a TLS server name: {e}"),
        )
    })?;
    tokio_rustls::TlsConnector::from(tls.clone())
        .connect(server_name, stream)
        .await
        .map_err(|e| {
            Refusal::status(502, format!("TLS handshake with the origin failed: {e}"))
                .for_domain(&domain.name)
        })
}
