//! A stand-in for the Tencent Cloud CDN API on loopback, for tests: the
//! documented request shape (a signed JSON POST to `/` with `X-TC-*`
//! headers) and response shapes (`{"Response": {..., "RequestId"}}` and
//! `{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`).
//!
//! It checks every request's TC3-HMAC-SHA256 signature with its own
//! implementation (not the product's), so a signing bug fails the tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const SECRET_ID: &str = "AKIDtestonlyNOTAREALKEY0000000000000";
pub const SECRET_KEY: &str = "TeStSeCrEtKeY-never-shown-4f9a2c7e";
pub const SESSION_TOKEN: &str = "TeStSeSsIoNtOkEn-never-shown-8b1d";

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub action: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub at: Instant,
}

#[derive(Debug, Default)]
pub struct State {
    /// DetailDomain objects, in the API's order.
    pub domains: Vec<Value>,
    pub requests: Vec<Seen>,
    /// Error codes answered to the next requests, before anything else.
    pub fail_next: VecDeque<(String, String)>,
    /// Domains whose WebSocket updates are refused, with the message.
    pub refuse_websocket: HashMap<String, String>,
    /// Session tokens accepted; when non-empty a request must carry one.
    pub tokens: HashSet<String>,
    pub connections: usize,
    next_id: u64,
}

#[derive(Clone)]
pub struct FakeApi {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

impl FakeApi {
    /// Listens on 127.0.0.1:0 on a runtime of its own thread, so tests can
    /// run the real binary with `std::process::Command`.
    pub fn start(domains: Vec<Value>) -> Self {
        let state = Arc::new(Mutex::new(State {
            domains,
            ..State::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let served = state.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve(listener, served));
        });
        Self { addr, state }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn updates(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.action == "UpdateDomainConfig")
            .map(|r| r.body)
            .collect()
    }

    pub fn domain(&self, name: &str) -> Value {
        let state = self.state.lock().unwrap();
        state
            .domains
            .iter()
            .find(|d| d["Domain"] == name)
            .cloned()
            .unwrap()
    }
}

/// A DetailDomain as DescribeDomainsConfig documents it (a subset of its
/// many fields, plus a few the console ignores).
pub fn detail_domain(name: &str, service_type: &str, websocket: Option<(&str, i64)>) -> Value {
    let mut d = json!({
        "ResourceId": format!("cdn-{name}"),
        "AppId": 1250000000,
        "Domain": name,
        "Cname": format!("{name}.cdn.dnsv1.com"),
        "Status": "online",
        "ProjectId": 0,
        "ServiceType": service_type,
        "CreateTime": "2024-01-01 00:00:00",
        "UpdateTime": "2024-01-01 00:00:00",
        "Origin": {
            "Origins": ["203.0.113.10:8080"],
            "OriginType": "ip",
            "ServerName": format!("origin.{name}"),
            "OriginPullProtocol": "http",
            "BackupOrigins": []
        },
        "Area": "mainland",
        "Readonly": "normal",
        "Disable": "normal",
    });
    if let Some((switch, timeout)) = websocket {
        d["WebSocket"] = json!({"Switch": switch, "Timeout": timeout});
    }
    d
}

async fn serve(listener: std::net::TcpListener, state: Arc<Mutex<State>>) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        state.lock().unwrap().connections += 1;
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(req, &state).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

async fn handle(req: Request<Incoming>, state: &Mutex<State>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let raw = req.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let action = headers.get("x-tc-action").cloned().unwrap_or_default();
    let mut state = state.lock().unwrap();
    state.next_id += 1;
    let request_id = format!("req-{:04}-{}", state.next_id, action);
    state.requests.push(Seen {
        action: action.clone(),
        headers: headers.clone(),
        body: body.clone(),
        at: Instant::now(),
    });
    let answer = if method != hyper::Method::POST || path != "/" {
        Err((
            "InvalidAction".into(),
            format!("{method} {path} is not an API call"),
        ))
    } else {
        check(&headers, &raw, &state.tokens)
            .and_then(|()| match state.fail_next.pop_front() {
                Some(failure) => Err(failure),
                None => Ok(()),
            })
            .and_then(|()| dispatch(&mut state, &action, &body))
    };
    let mut response = match answer {
        Ok(value) => value,
        Err((code, message)) => json!({"Error": {"Code": code, "Message": message}}),
    };
    response["RequestId"] = json!(request_id);
    let text = serde_json::to_vec(&json!({ "Response": response })).unwrap();
    Response::builder()
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

type Answer = Result<Value, (String, String)>;

fn fail(code: &str, message: &str) -> (String, String) {
    (code.to_string(), message.to_string())
}

/// The checks the real API makes before it looks at the action.
fn check(
    headers: &HashMap<String, String>,
    body: &[u8],
    tokens: &HashSet<String>,
) -> Result<(), (String, String)> {
    let header = |name: &str| headers.get(name).map(String::as_str).unwrap_or("");
    if header("x-tc-version") != "2018-06-06" {
        return Err(fail(
            "InvalidParameterValue",
            "X-TC-Version must be 2018-06-06",
        ));
    }
    if header("content-type") != "application/json; charset=utf-8" {
        return Err(fail("InvalidParameter", "unexpected Content-Type"));
    }
    let auth = header("authorization");
    let Some(rest) = auth.strip_prefix("TC3-HMAC-SHA256 Credential=") else {
        return Err(fail(
            "AuthFailure.InvalidAuthorization",
            "Authorization is not TC3-HMAC-SHA256",
        ));
    };
    let (credential, rest) = rest.split_once(", SignedHeaders=").unwrap_or(("", ""));
    let (signed_headers, signature) = rest.split_once(", Signature=").unwrap_or(("", ""));
    let mut scope = credential.splitn(2, '/');
    let (id, scope) = (scope.next().unwrap_or(""), scope.next().unwrap_or(""));
    if id != SECRET_ID {
        return Err(fail(
            "AuthFailure.SecretIdNotFound",
            "The SecretId is not found.",
        ));
    }
    let timestamp: u64 = header("x-tc-timestamp").parse().unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(timestamp) > 300 {
        return Err(fail(
            "AuthFailure.SignatureExpire",
            "The signature has expired.",
        ));
    }
    let date = scope.split('/').next().unwrap_or("");
    let canonical_headers: String = signed_headers
        .split(';')
        .map(|h| {
            format!(
                "{h}:{}\n",
                header(h).trim().to_ascii_lowercase_if(h == "host")
            )
        })
        .collect();
    let canonical = format!(
        "POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex::encode(Sha256::digest(body))
    );
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mac = |key: &[u8], data: &str| {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(data.as_bytes());
        m.finalize().into_bytes().to_vec()
    };
    let k = mac(format!("TC3{SECRET_KEY}").as_bytes(), date);
    let k = mac(&k, "cdn");
    let k = mac(&k, "tc3_request");
    let expected = hex::encode(mac(&k, &to_sign));
    if scope != format!("{date}/cdn/tc3_request")
        || !signed_headers.contains("host")
        || signature != expected
    {
        return Err(fail(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is correct.",
        ));
    }
    if !tokens.is_empty() && !tokens.contains(header("x-tc-token")) {
        return Err(fail("AuthFailure.TokenFailure", "The token is invalid."));
    }
    Ok(())
}

trait LowerIf {
    fn to_ascii_lowercase_if(&self, yes: bool) -> String;
}

impl LowerIf for str {
    fn to_ascii_lowercase_if(&self, yes: bool) -> String {
        if yes {
            self.to_ascii_lowercase()
        } else {
            self.to_string()
        }
    }
}

fn dispatch(state: &mut State, action: &str, body: &Value) -> Answer {
    match action {
        "DescribeDomainsConfig" => describe(state, body),
        "UpdateDomainConfig" => update(state, body),
        other => Err(fail("InvalidAction", &format!("unknown action {other}"))),
    }
}

fn describe(state: &State, body: &Value) -> Answer {
    let offset = body["Offset"].as_u64().unwrap_or(0) as usize;
    let limit = body["Limit"].as_u64().unwrap_or(100) as usize;
    if limit > 1000 {
        return Err(fail(
            "InvalidParameter.CdnParamError",
            "Limit is at most 1000",
        ));
    }
    let wanted: Option<Vec<String>> = body["Filters"].as_array().map(|filters| {
        filters
            .iter()
            .filter(|f| f["Name"] == "domain")
            .flat_map(|f| f["Value"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    });
    let matching: Vec<&Value> = state
        .domains
        .iter()
        .filter(|d| {
            wanted
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| d["Domain"] == n.as_str()))
        })
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|d| (*d).clone())
        .collect();
    Ok(json!({"Domains": page, "TotalNumber": matching.len()}))
}

fn update(state: &mut State, body: &Value) -> Answer {
    let name = body["Domain"].as_str().unwrap_or("").to_string();
    if let Some(message) = state.refuse_websocket.get(&name)
        && body.get("WebSocket").is_some()
    {
        return Err(fail("UnauthorizedOperation.OpNoAuth", message));
    }
    let Some(domain) = state
        .domains
        .iter_mut()
        .find(|d| d["Domain"] == name.as_str())
    else {
        return Err(fail(
            "ResourceNotFound.CdnHostNotExists",
            "The domain does not exist.",
        ));
    };
    if let Some(ws) = body.get("WebSocket") {
        let switch = ws["Switch"].as_str().unwrap_or("");
        if switch != "on" && switch != "off" {
            return Err(fail(
                "InvalidParameter.CdnConfigInvalidWebSocket",
                "WebSocket.Switch must be on or off",
            ));
        }
        // A field left out resets to its default, as on the real API.
        let timeout = ws["Timeout"].as_i64().unwrap_or(15);
        if !(0..=300).contains(&timeout) {
            return Err(fail(
                "InvalidParameter.CdnConfigInvalidWebSocket",
                "WebSocket.Timeout must be 0-300",
            ));
        }
        domain["WebSocket"] = json!({"Switch": switch, "Timeout": timeout});
    }
    Ok(json!({}))
}

/// Waits up to `secs` for `pred` on the fake's state.
pub fn wait_for(api: &FakeApi, secs: u64, pred: impl Fn(&State) -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if pred(&api.state.lock().unwrap()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
