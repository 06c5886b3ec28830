//! The load generator against the in-process relay and echo origin: a few
//! sessions for about a second, so the benchmark tool keeps working.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ecdn_console::config::Config;
use ecdn_console::origin::OriginOptions;
use ecdn_console::relay::{self, RelayEvent, RelayHandle};
use ecdn_load::{self as load, LoadError, LoadOptions, Mode};
use tokio::sync::mpsc;

/// A relay config on an ephemeral loopback port with `app.test` → `origin`.
fn config(websocket: &str, origin: SocketAddr) -> Arc<Config> {
    let text = format!(
        "[relay]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n[[domain]]\nname = \"app.test\"\n\
         acceleration = \"full-site\"\norigins = [\"{origin}\"]\nwebsocket = {websocket}\n"
    );
    Arc::new(Config::parse(&text, std::path::Path::new("test.toml")).unwrap())
}

async fn start_relay(config: Arc<Config>) -> (RelayHandle, mpsc::Receiver<RelayEvent>) {
    relay::start(config).await.unwrap()
}

async fn echo_origin(options: OriginOptions) -> SocketAddr {
    ecdn_console::origin::spawn(
        "127.0.0.1:0".parse().unwrap(),
        options,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap()
}

/// The in-process relay with domain `app.test` (idle timeout `secs`) in
/// front of the embedded echo origin.
async fn relay_and_origin(secs: u64) -> (RelayHandle, mpsc::Receiver<RelayEvent>) {
    let origin = echo_origin(OriginOptions::default()).await;
    let websocket = format!("{{ switch = \"on\", timeout = {secs} }}");
    start_relay(config(&websocket, origin)).await
}

fn options(relay: std::net::SocketAddr, mode: Mode) -> LoadOptions {
    LoadOptions {
        url: format!("ws://{relay}/bench"),
        host: Some("app.test".into()),
        sessions: 4,
        concurrency: 2,
        mode,
        size: 64,
        duration: Some(Duration::from_secs(1)),
        expect_timeout: None,
        allow_remote: false,
        push_listen: None,
        ca_file: None,
        log_slow: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_mode_measures_round_trips_through_the_relay() {
    let (relay, _events) = relay_and_origin(60).await;
    let mut ready = None;
    let report = load::run(&options(relay.local_addr(), Mode::Echo), |r| {
        ready = Some(r)
    })
    .await
    .unwrap();
    assert_eq!(ready.map(|r| (r.opened, r.failed)), Some((4, 0)));
    assert_eq!(report.opened, 4);
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert!(report.messages > 0);
    assert_eq!(report.rtt_ms.count, report.messages);
    assert!(report.messages_per_s > 0.0 && report.mb_per_s > 0.0);
    assert!(report.rtt_ms.p50 > 0.0 && report.rtt_ms.p50 <= report.rtt_ms.max);
    assert!(report.handshake_ms.count == 4 && report.handshake_ms.max > 0.0);
    assert!(
        (0.9..1.5).contains(&report.duration_s),
        "{}",
        report.duration_s
    );
    // The generator closed its sessions when done.
    tokio::time::timeout(Duration::from_secs(3), async {
        while !relay.registry().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_mode_over_wss_trusts_the_ca_file_and_sends_the_host_as_sni() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["app.test".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let (ca_file, cert_file, key_file) = (
        dir.path().join("ca.pem"),
        dir.path().join("app.pem"),
        dir.path().join("app.key"),
    );
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let origin = echo_origin(OriginOptions::default()).await;
    let text = format!(
        "[relay]\nlisten = \"127.0.0.1:0\"\ntls-listen = \"127.0.0.1:0\"\nworkers = 1\n\
         [[domain]]\nname = \"app.test\"\nacceleration = \"full-site\"\norigins = [\"{origin}\"]\n\
         certificate = {{ cert-file = {cert_file:?}, key-file = {key_file:?} }}\n"
    );
    let config = Arc::new(Config::parse(&text, &dir.path().join("c.toml")).unwrap());
    let (relay, _events) = start_relay(config).await;
    let tls = relay.tls_local_addr().unwrap();
    let wss = LoadOptions {
        url: format!("wss://{tls}/bench"),
        ca_file: Some(ca_file),
        ..options(tls, Mode::Echo)
    };
    let report = load::run(&wss, |_| {}).await.unwrap();
    assert_eq!(report.opened, 4, "{:?}", report.error_samples);
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert!(report.messages > 0);

    // Without the CA file it says what is missing; with the wrong name
    // (SNI and certificate check) no session opens.
    let err = load::run(
        &LoadOptions {
            ca_file: None,
            ..wss.clone()
        },
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("--ca-file"), "{err}");
    let wrong = LoadOptions {
        host: Some("other.test".into()),
        ..wss
    };
    let report = load::run(&wrong, |_| {}).await.unwrap();
    assert_eq!(report.opened, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_mode_sends_at_the_interval() {
    let (relay, _events) = relay_and_origin(60).await;
    let interval = Duration::from_millis(100);
    let report = load::run(
        &options(relay.local_addr(), Mode::Paced { interval }),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    // 4 sessions × 10 per second × 1 s, give or take the edges of the window.
    assert!((30..=44).contains(&report.messages), "{}", report.messages);
    assert_eq!(report.interval_ms, Some(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_mode_times_the_relays_idle_close() {
    let (relay, _events) = relay_and_origin(1).await;
    let mut opts = options(relay.local_addr(), Mode::Idle);
    opts.expect_timeout = Some(Duration::from_secs(1));
    opts.duration = Some(Duration::from_secs(3));
    let report = load::run(&opts, |_| {}).await.unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    let idle = report.idle.expect("idle section");
    assert_eq!(idle.still_open, 0);
    assert_eq!(idle.closes.len(), 1, "{:?}", idle.closes);
    assert_eq!(idle.closes[0].close, "1001");
    assert_eq!(idle.closes[0].sessions, 4);
    let lateness = idle.lateness_ms.expect("lateness measured");
    assert_eq!(lateness.count, 4);
    // The relay arms the deadline just before the client sees the 101, so a
    // close can come a hair early; it must not come late by much.
    assert!(lateness.min > -50.0, "{lateness:?}");
    assert!(lateness.max < 500.0, "{lateness:?}");
    assert_eq!(report.messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshakes_are_counted_as_errors() {
    let (relay, _events) = relay_and_origin(60).await;
    let mut opts = options(relay.local_addr(), Mode::Echo);
    opts.host = Some("unknown.test".into());
    let report = load::run(&opts, |_| {}).await.unwrap();
    assert_eq!((report.opened, report.failed), (0, 4));
    assert_eq!(report.errors, 4);
    assert_eq!(report.error_samples, ["handshake refused: HTTP 404"]);
}

#[tokio::test]
async fn targets_outside_loopback_need_allow_remote() {
    let opts = LoadOptions {
        url: "ws://192.0.2.1:80/".into(),
        ..LoadOptions::default()
    };
    let err = load::run(&opts, |_| {}).await.unwrap_err();
    assert!(matches!(err, LoadError::NotLoopback { .. }), "{err}");
    let opts = LoadOptions {
        url: "http://127.0.0.1:80/".into(),
        ..LoadOptions::default()
    };
    assert!(matches!(
        load::run(&opts, |_| {}).await,
        Err(LoadError::BadUrl { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_mode_counts_whole_sessions_per_second() {
    let (relay, mut events) = relay_and_origin(60).await;
    let report = load::run(&options(relay.local_addr(), Mode::Handshake), |_| {})
        .await
        .unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert!(report.messages > 2, "{}", report.messages);
    assert!(report.messages_per_s > 0.0);
    // Every session was opened and closed by the client, through the relay.
    let mut client_closed = 0;
    while client_closed < report.messages {
        let event = tokio::time::timeout(Duration::from_secs(3), events.recv())
            .await
            .expect("a closed event per session")
            .unwrap();
        if let RelayEvent::Closed { cause, .. } = event {
            assert_eq!(cause, ecdn_console::relay::CloseCause::ClientClosed);
            client_closed += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_mode_times_pushed_messages_through_the_relay() {
    // The generator is the origin: the relay forwards app.test to it.
    let push = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let push_addr = push.local_addr().unwrap();
    drop(push);
    let config = config("{ switch = \"on\", timeout = 60 }", push_addr);
    let (relay, _events) = start_relay(config).await;
    let mut opts = options(
        relay.local_addr(),
        Mode::Fanout {
            interval: Duration::from_millis(100),
        },
    );
    opts.size = 256;
    opts.push_listen = Some(push_addr);
    let report = load::run(&opts, |_| {}).await.unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    // 4 sessions × 10 pushes in 1 s, give or take the edges of the window.
    assert!((32..=44).contains(&report.messages), "{}", report.messages);
    assert_eq!(report.rtt_ms.count, report.messages);
    assert!(report.rtt_ms.p50 > 0.0, "{:?}", report.rtt_ms);
}
