//! The CDN API client: signed JSON POSTs over HTTPS (rustls, ring, the web
//! PKI roots), paced to the API's 20 requests per second, each with a
//! timeout, retried only where the API says a retry is safe.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::api::{self, ApiErrorBody};
use super::credentials::Credentials;
use super::endpoint::Endpoint;
use super::sign::{self, SigningInput};

pub const CONTENT_TYPE: &str = "application/json; charset=utf-8";
/// The API's documented limit for both actions.
pub const MAX_REQUESTS_PER_SEC: u32 = 20;
/// How long one request may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts in all for a request that may be retried.
const MAX_ATTEMPTS: u32 = 4;
/// The first retry's delay; each next one doubles it.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// A page of 100 full domain configurations is large, but not this large.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What went wrong talking to the API. Nothing here quotes a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// The API's own refusal, as it came.
    #[error(
        "Tencent Cloud refused {action}: Code: {code}; Message: {message}; RequestId: {request_id}"
    )]
    Api {
        action: String,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("cannot reach the Tencent Cloud API at {endpoint}: {reason}")]
    Network { endpoint: String, reason: String },
    #[error("{action}: no answer from {endpoint} within {secs} s", secs = REQUEST_TIMEOUT.as_secs())]
    Timeout { action: String, endpoint: String },
    #[error("{action}: unexpected answer from {endpoint}: {reason}")]
    Protocol {
        action: String,
        endpoint: String,
        reason: String,
    },
}

impl CloudError {
    /// Whether the API documents this as safe to send again.
    fn retryable(&self) -> bool {
        match self {
            // Every variant of the code (`.UinLimitExceeded`, ...) is a
            // refusal before anything was done.
            Self::Api { code, .. } => {
                code == "RequestLimitExceeded" || code.starts_with("RequestLimitExceeded.")
            }
            // Only a failure to connect: once a request may have reached the
            // server, sending an update again is not known to be harmless.
            Self::Network { .. } => true,
            Self::Timeout { .. } | Self::Protocol { .. } => false,
        }
    }
}

/// Spaces requests at least 1/20 s apart. One lock and one instant: a token
/// bucket of burst 1, which is all the API's limit needs (a crate such as
/// `governor` would bring its own clock and state for the same effect).
#[derive(Debug)]
struct Pacer {
    next: Mutex<Instant>,
    interval: Duration,
}

impl Pacer {
    fn new(per_sec: u32) -> Self {
        Self {
            next: Mutex::new(Instant::now()),
            interval: Duration::from_secs(1) / per_sec.max(1),
        }
    }

    async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client for one endpoint and one set of credentials.
#[derive(Clone)]
pub struct Client {
    http: HyperClient<Https, Full<Bytes>>,
    endpoint: Endpoint,
    credentials: Credentials,
    pacer: Arc<Pacer>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint.shown)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl Client {
    pub fn new(endpoint: Endpoint, credentials: Credentials) -> Self {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = match rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
        {
            Ok(builder) => builder,
            // ring supports the default versions; the fallback keeps this
            // infallible without a panic path.
            Err(_) => rustls::ClientConfig::builder(),
        }
        .with_root_certificates(roots)
        .with_no_client_auth();
        // http:// is allowed by the connector only because Endpoint::parse
        // has already refused it for anything but loopback.
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Self {
            http: HyperClient::builder(TokioExecutor::new()).build(connector),
            endpoint,
            credentials,
            pacer: Arc::new(Pacer::new(MAX_REQUESTS_PER_SEC)),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// One action, with retries where safe. `T` is the `Response` object
    /// less `RequestId`, which is returned beside it.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        action: &str,
        body: &B,
    ) -> Result<(T, String), CloudError> {
        let payload = serde_json::to_vec(body).map_err(|e| self.protocol(action, e.to_string()))?;
        // A bounded loop rather than a retry crate: four attempts, doubling
        // delays, and a decision (`retryable`) that is the API's, not a
        // generic policy's.
        let mut delay = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.attempt(action, &payload).await {
                Err(e) if e.retryable() && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(action, attempt, error = %e, "retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        action: &str,
        payload: &[u8],
    ) -> Result<(T, String), CloudError> {
        self.pacer.wait().await;
        let request = self.request(action, payload)?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    CloudError::Network {
                        endpoint: self.endpoint.shown.clone(),
                        reason: error_chain(&e),
                    }
                } else {
                    // The request may have reached the server: not retried.
                    self.protocol(action, error_chain(&e))
                }
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| self.protocol(action, format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, CloudError>((status, body))
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| CloudError::Timeout {
                action: action.into(),
                endpoint: self.endpoint.shown.clone(),
            })??;
        self.parse(action, status, &body)
    }

    fn request(&self, action: &str, payload: &[u8]) -> Result<Request<Full<Bytes>>, CloudError> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let signed = sign::sign(
            &SigningInput {
                host: &self.endpoint.host,
                service: api::SERVICE,
                content_type: CONTENT_TYPE,
                timestamp,
                payload,
            },
            &self.credentials.secret_key,
        );
        let mut builder = Request::post(self.endpoint.uri.clone())
            .header("Host", &self.endpoint.host)
            .header("Content-Type", CONTENT_TYPE)
            .header(
                "Authorization",
                signed.authorization(&self.credentials.secret_id),
            )
            .header("X-TC-Action", action)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Version", api::VERSION);
        if let Some(token) = &self.credentials.token {
            builder = builder.header("X-TC-Token", token);
        }
        // The builder's error would only say a header value is invalid
        // (a key or token with a control character); it quotes no value.
        builder
            .body(Full::new(Bytes::copy_from_slice(payload)))
            .map_err(|_| {
                self.protocol(
                    action,
                    "the credentials hold characters an HTTP header cannot carry".into(),
                )
            })
    }

    fn parse<T: DeserializeOwned>(
        &self,
        action: &str,
        status: hyper::StatusCode,
        body: &[u8],
    ) -> Result<(T, String), CloudError> {
        let envelope: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
            self.protocol(action, format!("HTTP {status}, and the body is not JSON"))
        })?;
        let Some(response) = envelope.get("Response") else {
            return Err(self.protocol(action, format!("HTTP {status}, and no \"Response\" object")));
        };
        let request_id = response
            .get("RequestId")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        if let Some(error) = response.get("Error") {
            let error: ApiErrorBody = serde_json::from_value(error.clone())
                .map_err(|e| self.protocol(action, format!("malformed Error object: {e}")))?;
            return Err(CloudError::Api {
                action: action.into(),
                code: error.code,
                message: error.message,
                request_id,
            });
        }
        let value = serde_json::from_value(response.clone())
            .map_err(|e| self.protocol(action, format!("malformed Response object: {e}")))?;
        Ok((value, request_id))
    }

    fn protocol(&self, action: &str, reason: String) -> CloudError {
        CloudError::Protocol {
            action: action.into(),
            endpoint: self.endpoint.shown.clone(),
            reason,
        }
    }
}

/// An error and its sources on one line (hyper's own text is terse).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pacer_lets_twenty_requests_through_a_second() {
        let pacer = Pacer::new(MAX_REQUESTS_PER_SEC);
        let start = Instant::now();
        for _ in 0..41 {
            pacer.wait().await;
        }
        // 41 requests: the first at once, then one each 50 ms.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[test]
    fn only_rate_limits_and_connection_failures_are_retried() {
        let api = |code: &str| CloudError::Api {
            action: "A".into(),
            code: code.into(),
            message: String::new(),
            request_id: String::new(),
        };
        assert!(api("RequestLimitExceeded").retryable());
        assert!(api("RequestLimitExceeded.UinLimitExceeded").retryable());
        assert!(!api("InvalidParameter").retryable());
        assert!(!api("AuthFailure.SignatureFailure").retryable());
        let timeout = CloudError::Timeout {
            action: "A".into(),
            endpoint: "e".into(),
        };
        assert!(!timeout.retryable());
    }
}
