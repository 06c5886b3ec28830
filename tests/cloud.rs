//! `domains --cloud` and `websocket DOMAIN --cloud` through the real binary
//! against a stand-in for the Tencent Cloud API on loopback (tests/fake_api),
//! which checks each request's signature with its own implementation.
//! Every run also checks that no key or token reaches stdout or stderr.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fake_api;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fake_api::{FakeApi, SECRET_ID, SECRET_KEY, SESSION_TOKEN, detail_domain};
use serde_json::{Value, json};
use tempfile::TempDir;

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

enum Keys<'a> {
    /// TENCENTCLOUD_SECRET_ID / _KEY (and the token when given).
    Env {
        key: &'a str,
        token: Option<&'a str>,
    },
    /// No environment variables: HOME's tccli file decides.
    None,
}

fn run(home: &Path, keys: Keys<'_>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ecdn-console"));
    command
        .args(args)
        .current_dir(home)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("xdg"))
        .env_remove("TENCENTCLOUD_SECRET_ID")
        .env_remove("TENCENTCLOUD_SECRET_KEY")
        .env_remove("TENCENTCLOUD_SESSION_TOKEN");
    if let Keys::Env { key, token } = keys {
        command
            .env("TENCENTCLOUD_SECRET_ID", SECRET_ID)
            .env("TENCENTCLOUD_SECRET_KEY", key);
        if let Some(token) = token {
            command.env("TENCENTCLOUD_SESSION_TOKEN", token);
        }
    }
    let out = command.output().unwrap();
    let out = Output {
        code: out.status.code().expect("killed by a signal"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    for secret in [SECRET_KEY, SESSION_TOKEN, "wrong-key-also-secret"] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "a secret reached the output:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
    out
}

const ENV: Keys<'static> = Keys::Env {
    key: SECRET_KEY,
    token: None,
};

#[track_caller]
fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.code, code,
        "exit code\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
}

#[track_caller]
fn assert_contains(text: &str, fragment: &str) {
    assert!(text.contains(fragment), "{fragment:?} not in:\n{text}");
}

fn home() -> TempDir {
    tempfile::tempdir().unwrap()
}

fn many_domains(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let ws = if i % 2 == 0 {
                Some(("on", 100))
            } else {
                Some(("off", 60))
            };
            detail_domain(&format!("d{i:03}.example.com"), "dynamic", ws)
        })
        .collect()
}

#[test]
fn domains_lists_every_page_of_the_account() {
    let api = FakeApi::start(many_domains(250));
    let home = home();
    let out = run(
        home.path(),
        ENV,
        &["domains", "--cloud", "--endpoint", &api.endpoint()],
    );
    assert_code(&out, 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 251, "{}", out.stdout);
    for header in [
        "Domain",
        "Status",
        "CNAME",
        "Acceleration",
        "Area",
        "Origin",
        "WebSocket",
    ] {
        assert_contains(lines[0], header);
    }
    assert_contains(&out.stdout, "d000.example.com.cdn.dnsv1.com");
    assert_contains(&out.stdout, "d249.example.com");
    let d0 = lines.iter().find(|l| l.starts_with("d000.")).unwrap();
    let d1 = lines.iter().find(|l| l.starts_with("d001.")).unwrap();
    assert!(d0.ends_with("On · 100 s") && d0.contains("dynamic"), "{d0}");
    assert!(d1.ends_with("Off · 15 s"), "{d1}");
    let pages: Vec<(u64, u64)> = api
        .requests()
        .iter()
        .map(|r| {
            assert_eq!(r.action, "DescribeDomainsConfig");
            (
                r.body["Offset"].as_u64().unwrap(),
                r.body["Limit"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pages, [(0, 100), (100, 100), (200, 100)]);
}

#[test]
fn domains_json_uses_the_files_names_for_derived_fields() {
    let api = FakeApi::start(vec![
        detail_domain("a.example.com", "hybrid", Some(("on", 0))),
        detail_domain("b.example.com", "web", None),
    ]);
    let home = home();
    let out = run(
        home.path(),
        ENV,
        &[
            "domains",
            "--cloud",
            "--json",
            "--endpoint",
            &api.endpoint(),
        ],
    );
    assert_code(&out, 0);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    let a = &doc["domains"][0];
    assert_eq!(a["name"], "a.example.com");
    assert_eq!(a["cname"], "a.example.com.cdn.dnsv1.com");
    assert_eq!(a["service_type"], "hybrid");
    assert_eq!(a["acceleration"], "dynamic-static");
    assert_eq!(a["origins"], json!(["203.0.113.10:8080"]));
    assert_eq!(a["server_name"], "origin.a.example.com");
    assert_eq!(a["websocket"]["switch"], "on");
    assert_eq!(a["websocket_label"], "On · no limit");
    assert_eq!(a["effective_timeout_secs"], Value::Null);
    let b = &doc["domains"][1];
    assert_eq!(b["acceleration"], Value::Null);
    assert_eq!(b["websocket_label"], "Off · 15 s");
    assert_eq!(b["effective_timeout_secs"], 15);
}

#[test]
fn requests_are_paced_to_twenty_a_second() {
    // 21 pages: the 21st request must come a second after the first.
    let api = FakeApi::start(many_domains(2050));
    let home = home();
    let out = run(
        home.path(),
        ENV,
        &["domains", "--cloud", "--endpoint", &api.endpoint()],
    );
    assert_code(&out, 0);
    assert_eq!(out.stdout.lines().count(), 2051);
    let seen = api.requests();
    assert_eq!(seen.len(), 21);
    let span = seen[20].at.duration_since(seen[0].at);
    // Slack for a request that reached the fake late after leaving on time.
    assert!(
        span >= Duration::from_millis(950),
        "21 requests within {span:?}"
    );
}

#[test]
fn a_rate_limited_request_is_retried() {
    let api = FakeApi::start(many_domains(3));
    for _ in 0..2 {
        api.state.lock().unwrap().fail_next.push_back((
            "RequestLimitExceeded".into(),
            "Your current request times equals to `21` in a second".into(),
        ));
    }
    let home = home();
    let out = run(
        home.path(),
        ENV,
        &["domains", "--cloud", "--endpoint", &api.endpoint()],
    );
    assert_code(&out, 0);
    assert_eq!(out.stdout.lines().count(), 4, "{}", out.stdout);
    assert_eq!(api.requests().len(), 3);
}

#[test]
fn an_api_error_shows_code_message_and_request_id_and_exits_1() {
    let api = FakeApi::start(many_domains(3));
    api.state.lock().unwrap().fail_next.push_back((
        "InternalError.CdnQuerySystemError".into(),
        "System error.".into(),
    ));
    let home = home();
    let out = run(
        home.path(),
        ENV,
        &["domains", "--cloud", "--endpoint", &api.endpoint()],
    );
    assert_code(&out, 1);
    assert_contains(&out.stderr, "Code: InternalError.CdnQuerySystemError");
    assert_contains(&out.stderr, "Message: System error.");
    assert_contains(&out.stderr, "RequestId: req-0001-DescribeDomainsConfig");
    assert_eq!(
        api.requests().len(),
        1,
        "a non-retryable error is not retried"
    );
}

#[test]
fn an_update_carries_the_whole_websocket_object() {
    let api = FakeApi::start(vec![detail_domain(
        "a.example.com",
        "dynamic",
        Some(("off", 60)),
    )]);
    let home = home();
    let out = run(
        home.path(),
        ENV,
        &[
            "websocket",
            "a.example.com",
            "--cloud",
            "--on",
            "--timeout",
            "100",
            "--endpoint",
            &api.endpoint(),
        ],
    );
    assert_code(&out, 0);
    assert_eq!(
        api.updates(),
        [json!({"Domain": "a.example.com", "WebSocket": {"Switch": "on", "Timeout": 100}})]
    );
    assert_contains(
        &out.stdout,
        "a.example.com: WebSocket off → on, timeout 60 s → 100 s",
    );
    assert_contains(&out.stdout, "RequestId req-0002-UpdateDomainConfig");
    assert_contains(
        &out.stdout,
        "effective idle timeout: 100 s — sessions idle for 100 s are closed",
    );
    assert_contains(&out.stdout, "can take a few minutes");
    assert_contains(&out.stdout, "probe wss://a.example.com/ --silent");
    assert_eq!(
        api.domain("a.example.com")["WebSocket"],
        json!({"Switch": "on", "Timeout": 100})
    );
}

#[test]
fn timeout_alone_keeps_the_current_switch() {
    let api = FakeApi::start(vec![
        detail_domain("on.example.com", "dynamic", Some(("on", 100))),
        detail_domain("off.example.com", "dynamic", Some(("off", 60))),
    ]);
    let home = home();
    for name in ["on.example.com", "off.example.com"] {
        let out = run(
            home.path(),
            ENV,
            &[
                "websocket",
                name,
                "--cloud",
                "--timeout",
                "30",
                "--endpoint",
                &api.endpoint(),
            ],
        );
        assert_code(&out, 0);
    }
    assert_eq!(
        api.updates(),
        [
            json!({"Domain": "on.example.com", "WebSocket": {"Switch": "on", "Timeout": 30}}),
            json!({"Domain": "off.example.com", "WebSocket": {"Switch": "off", "Timeout": 30}}),
        ]
    );
}

#[test]
fn showing_a_domain_reads_it_and_sends_no_update() {
    let api = FakeApi::start(vec![detail_domain(
        "a.example.com",
        "hybrid",
        Some(("on", 100)),
    )]);
    let home = home();
    let out = run(
        home.path(),
        ENV,
        &[
            "websocket",
            "a.example.com",
            "--cloud",
            "--endpoint",
            &api.endpoint(),
        ],
    );
    assert_code(&out, 0);
    assert_contains(
        &out.stdout,
        "a.example.com  (Dynamic and static acceleration, online)",
    );
    assert_contains(
        &out.stdout,
        "Effective timeout  100 s — sessions idle for 100 s are closed",
    );
    assert!(api.updates().is_empty());
    let unchanged = run(
        home.path(),
        ENV,
        &[
            "websocket",
            "a.example.com",
            "--cloud",
            "--on",
            "--endpoint",
            &api.endpoint(),
        ],
    );
    assert_code(&unchanged, 0);
    assert_contains(&unchanged.stdout, "unchanged; nothing sent");
    assert!(api.updates().is_empty());
}

#[test]
fn invalid_input_sends_nothing() {
    let api = FakeApi::start(many_domains(1));
    let home = home();
    for args in [
        &[
            "websocket",
            "d000.example.com",
            "--cloud",
            "--timeout",
            "301",
        ][..],
        &[
            "websocket",
            "d000.example.com",
            "--cloud",
            "--timeout",
            "-1",
        ][..],
    ] {
        let mut args = args.to_vec();
        let endpoint = api.endpoint();
        args.extend(["--endpoint", &endpoint]);
        let out = run(home.path(), ENV, &args);
        assert_code(&out, 2);
        assert_contains(&out.stderr, "out of range");
        assert_contains(&out.stderr, "use 0 to 300 seconds");
    }
    let unknown = run(
        home.path(),
        ENV,
        &[
            "websocket",
            "nope.example.com",
            "--cloud",
            "--on",
            "--endpoint",
            &api.endpoint(),
        ],
    );
    assert_code(&unknown, 2);
    assert_contains(&unknown.stderr, "no domain named \"nope.example.com\"");
    assert_eq!(
        api.state.lock().unwrap().connections,
        1,
        "only the unknown domain's look-up"
    );
    assert!(api.updates().is_empty());
}

#[test]
fn the_apis_refusal_is_shown_as_it_came() {
    let api = FakeApi::start(vec![detail_domain("static.example.com", "web", None)]);
    api.state.lock().unwrap().refuse_websocket.insert(
        "static.example.com".into(),
        "WebSocket is not supported for this domain's service type.".into(),
    );
    let home = home();
    let out = run(
        home.path(),
        ENV,
        &[
            "websocket",
            "static.example.com",
            "--cloud",
            "--on",
            "--endpoint",
            &api.endpoint(),
        ],
    );
    assert_code(&out, 1);
    assert_contains(&out.stderr, "Tencent Cloud refused UpdateDomainConfig");
    assert_contains(&out.stderr, "Code: UnauthorizedOperation.OpNoAuth");
    assert_contains(
        &out.stderr,
        "Message: WebSocket is not supported for this domain's service type.",
    );
    assert_contains(&out.stderr, "RequestId: req-0002-UpdateDomainConfig");
}

#[test]
fn a_wrong_key_fails_the_signature_check() {
    let api = FakeApi::start(many_domains(1));
    let home = home();
    let out = run(
        home.path(),
        Keys::Env {
            key: "wrong-key-also-secret",
            token: None,
        },
        &["domains", "--cloud", "--endpoint", &api.endpoint()],
    );
    assert_code(&out, 1);
    assert_contains(&out.stderr, "Code: AuthFailure.SignatureFailure");
    assert_eq!(
        api.requests().len(),
        1,
        "a signature failure is not retried"
    );
}

#[test]
fn keys_come_from_the_tccli_file_of_the_profile() {
    let api = FakeApi::start(many_domains(1));
    let home = home();
    let tccli = home.path().join(".tccli");
    std::fs::create_dir_all(&tccli).unwrap();
    let file = json!({"secretId": SECRET_ID, "secretKey": SECRET_KEY, "region": "ap-guangzhou"});
    std::fs::write(tccli.join("work.credential"), file.to_string()).unwrap();
    let out = run(
        home.path(),
        Keys::None,
        &[
            "domains",
            "--cloud",
            "--profile",
            "work",
            "--endpoint",
            &api.endpoint(),
        ],
    );
    assert_code(&out, 0);
    assert_contains(&out.stdout, "d000.example.com");
    // The default profile has no file here.
    let missing = run(
        home.path(),
        Keys::None,
        &["domains", "--cloud", "--endpoint", &api.endpoint()],
    );
    assert_code(&missing, 2);
    assert_contains(&missing.stderr, ".tccli/default.credential");
}

#[test]
fn a_session_token_is_sent_as_x_tc_token() {
    let api = FakeApi::start(many_domains(1));
    api.state
        .lock()
        .unwrap()
        .tokens
        .insert(SESSION_TOKEN.into());
    let home = home();
    let without = run(
        home.path(),
        ENV,
        &["domains", "--cloud", "--endpoint", &api.endpoint()],
    );
    assert_code(&without, 1);
    assert_contains(&without.stderr, "AuthFailure.TokenFailure");
    let with = run(
        home.path(),
        Keys::Env {
            key: SECRET_KEY,
            token: Some(SESSION_TOKEN),
        },
        &["domains", "--cloud", "--endpoint", &api.endpoint()],
    );
    assert_code(&with, 0);
    let last = api.requests().pop().unwrap();
    assert_eq!(last.headers["x-tc-token"], SESSION_TOKEN);
}

#[test]
fn no_credentials_is_bad_input_naming_both_sources() {
    let api = FakeApi::start(many_domains(1));
    let home = home();
    let out = run(
        home.path(),
        Keys::None,
        &["domains", "--cloud", "--endpoint", &api.endpoint()],
    );
    assert_code(&out, 2);
    assert_contains(&out.stderr, "TENCENTCLOUD_SECRET_ID");
    assert_contains(&out.stderr, "TENCENTCLOUD_SECRET_KEY");
    assert_contains(
        &out.stderr,
        &format!("{}/.tccli/default.credential", home.path().display()),
    );
    assert_eq!(api.state.lock().unwrap().connections, 0);
}

#[test]
fn plain_http_to_anything_but_loopback_is_refused_before_connecting() {
    let api = FakeApi::start(many_domains(1));
    let home = home();
    // The IPv4-mapped form reaches the same loopback listener, but is not
    // 127.0.0.0/8 or ::1 as written: refused, and the fake sees nothing.
    let mapped = format!("http://[::ffff:127.0.0.1]:{}", api.addr.port());
    for endpoint in [mapped.as_str(), "http://cdn.tencentcloudapi.invalid"] {
        let out = run(
            home.path(),
            ENV,
            &["domains", "--cloud", "--endpoint", endpoint],
        );
        assert_code(&out, 2);
        assert_contains(
            &out.stderr,
            "plain http:// is only allowed to a loopback address",
        );
    }
    assert_eq!(api.state.lock().unwrap().connections, 0);
}

#[test]
fn endpoint_and_profile_need_cloud() {
    let home = home();
    let out = run(
        home.path(),
        ENV,
        &["domains", "--endpoint", "http://127.0.0.1:1"],
    );
    assert_code(&out, 2);
    assert_contains(&out.stderr, "--cloud");
}

/// HTTPS is verified against the web PKI roots: a loopback server with a
/// certificate of a private CA is refused during the TLS handshake, so no
/// signed request (and no token) ever reaches it.
#[test]
fn https_to_a_certificate_outside_the_web_pki_is_refused() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (connections, handshakes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, h) = (connections.clone(), handshakes.clone());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((tcp, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                if acceptor.accept(tcp).await.is_ok() {
                    h.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    });
    let home = home();
    let endpoint = format!("https://localhost:{port}");
    let out = run(
        home.path(),
        ENV,
        &["domains", "--cloud", "--endpoint", &endpoint],
    );
    assert_code(&out, 1);
    assert_contains(&out.stderr, "certificate");
    assert!(
        connections.load(Ordering::SeqCst) >= 1,
        "the client did connect"
    );
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        0,
        "no TLS session was established"
    );
}
