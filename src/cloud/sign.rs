//! TC3-HMAC-SHA256, Tencent Cloud's API signature v3: a canonical request
//! is hashed, wrapped in a string to sign scoped to a day and a service, and
//! signed with a key derived from the secret key through that scope.
//!
//! The unit test checks the worked example of Tencent Cloud's "Signature v3"
//! document byte for byte, so a change here cannot go unnoticed.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "TC3-HMAC-SHA256";
/// The headers the signature covers. The content type and the host are the
/// two the API requires; the others (`X-TC-Action`, ...) are sent unsigned,
/// as the official SDKs do.
pub const SIGNED_HEADERS: &str = "content-type;host";

/// What a request is made of, as far as the signature is concerned.
#[derive(Debug, Clone, Copy)]
pub struct SigningInput<'a> {
    /// The `Host` header exactly as sent (`cdn.tencentcloudapi.com`,
    /// `127.0.0.1:8080`).
    pub host: &'a str,
    /// `cdn`, `cvm`: the scope's service name.
    pub service: &'a str,
    pub content_type: &'a str,
    /// Seconds since the Unix epoch; also sent as `X-TC-Timestamp`.
    pub timestamp: u64,
    /// The request body, byte for byte as sent.
    pub payload: &'a [u8],
}

/// The signature and everything the `Authorization` header is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub payload_hash: String,
    pub credential_scope: String,
    pub signature: String,
}

impl Signed {
    /// `TC3-HMAC-SHA256 Credential=ID/SCOPE, SignedHeaders=..., Signature=...`
    pub fn authorization(&self, secret_id: &str) -> String {
        format!(
            "{ALGORITHM} Credential={secret_id}/{}, SignedHeaders={SIGNED_HEADERS}, Signature={}",
            self.credential_scope, self.signature
        )
    }
}

/// Signs a `POST /` request (the only kind the client sends).
pub fn sign(input: &SigningInput<'_>, secret_key: &str) -> Signed {
    let payload_hash = sha256_hex(input.payload);
    let canonical_request = format!(
        "POST\n/\n\ncontent-type:{}\nhost:{}\n\n{SIGNED_HEADERS}\n{payload_hash}",
        input.content_type.trim(),
        input.host.trim().to_ascii_lowercase(),
    );
    let date = utc_date(input.timestamp);
    let credential_scope = format!("{date}/{}/tc3_request", input.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{credential_scope}\n{}",
        input.timestamp,
        sha256_hex(canonical_request.as_bytes())
    );
    let secret_date = hmac(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let secret_service = hmac(&secret_date, input.service.as_bytes());
    let secret_signing = hmac(&secret_service, b"tc3_request");
    let signature = hex::encode(hmac(&secret_signing, string_to_sign.as_bytes()));
    Signed {
        payload_hash,
        credential_scope,
        signature,
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `YYYY-MM-DD` of a Unix timestamp, in UTC: the scope's date.
pub fn utc_date(timestamp: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(timestamp);
    let text = humantime::format_rfc3339_seconds(time).to_string();
    text.get(..10).unwrap_or(&text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of Tencent Cloud's "Signature v3" document.
    #[test]
    fn signs_the_documented_example() {
        let payload = r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let signed = sign(
            &SigningInput {
                host: "cvm.tencentcloudapi.com",
                service: "cvm",
                content_type: "application/json; charset=utf-8",
                timestamp: 1551113065,
                payload: payload.as_bytes(),
            },
            "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        );
        assert_eq!(
            signed.payload_hash,
            "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(signed.credential_scope, "2019-02-25/cvm/tc3_request");
        assert_eq!(
            signed.signature,
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
        assert_eq!(
            signed.authorization("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, \
             SignedHeaders=content-type;host, \
             Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    #[test]
    fn the_scope_date_is_the_utc_day() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1551113065), "2019-02-25");
        assert_eq!(utc_date(86_399), "1970-01-01");
        assert_eq!(utc_date(86_400), "1970-01-02");
    }
}
