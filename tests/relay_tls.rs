//! `origin-protocol = "https"`: the relay speaks TLS to the origin (a
//! private CA trusted through `origin-ca-file`) and plain WebSocket to clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use ecdn_console::config::Config;
use ecdn_console::relay::RelayEvent;
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_tungstenite::tungstenite::Message;

fn tls_config(origin: std::net::SocketAddr, ca_file: &std::path::Path) -> Arc<Config> {
    let domain = one_domain("{ switch = \"on\", timeout = 60 }")
        .replace("acceleration", "origin-protocol = \"https\"\nacceleration");
    config(
        &format!("origin-ca-file = {:?}", ca_file.display().to_string()),
        &domain,
        origin,
    )
}

#[tokio::test]
async fn wss_origin_behind_a_private_ca() {
    let (origin, ca_pem) = tls_origin().await;
    let (_dir, ca_file) = temp_file("ca.pem", &ca_pem);
    let (relay, _events) = start_relay(tls_config(origin, &ca_file)).await;
    let mut client = connect(relay.local_addr(), "app.test").await;
    for size in [5, 100_000] {
        let payload = vec![7u8; size];
        client.send(Message::binary(payload.clone())).await.unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap().into_data().as_ref(),
            payload.as_slice()
        );
    }
}

#[tokio::test]
async fn an_untrusted_origin_certificate_is_502() {
    let (origin, _ca_pem) = tls_origin().await;
    // Trust some other CA: the origin's certificate must be refused.
    let other = CertifiedIssuer::self_signed(
        {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p
        },
        KeyPair::generate().unwrap(),
    )
    .unwrap();
    let (_dir, ca_file) = temp_file("other.pem", &other.pem());
    let (relay, mut events) = start_relay(tls_config(origin, &ca_file)).await;
    assert_eq!(
        raw_status(relay.local_addr(), &upgrade_request("app.test")).await,
        Some(502)
    );
    let RelayEvent::Refused { reason, .. } =
        wait_event(&mut events, |e| matches!(e, RelayEvent::Refused { .. })).await
    else {
        unreachable!()
    };
    assert!(reason.contains("TLS"), "{reason}");
}
