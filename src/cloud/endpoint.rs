//! The API endpoint: `https://cdn.tencentcloudapi.com` unless `--endpoint`
//! names another (the international one, a test server). Plain `http://`
//! would send the signed requests — and a session token — in the clear, so
//! it is refused unless the host is a loopback address, and refused before
//! any connection is made.

use std::net::IpAddr;

use hyper::Uri;

/// The mainland endpoint of the CDN API (README, "Tencent Cloud").
pub const DEFAULT_ENDPOINT: &str = "https://cdn.tencentcloudapi.com";

/// A checked endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `https://host[:port]/`, where every request is POSTed.
    pub uri: Uri,
    /// The `Host` header (and the signature's host): the URL's authority.
    pub host: String,
    /// As the operator wrote it, for messages.
    pub shown: String,
}

/// Why an `--endpoint` is refused; each says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("--endpoint {0:?} is not a URL: write it as https://HOST[:PORT]")]
    NotAUrl(String),
    #[error(
        "--endpoint {0:?}: plain http:// is only allowed to a loopback address \
         (127.0.0.1, ::1, localhost); use https://"
    )]
    PlainHttpNotLoopback(String),
    #[error("--endpoint {0:?}: the scheme must be https:// (or http:// to a loopback address)")]
    BadScheme(String),
    #[error("--endpoint {0:?}: the API has no paths or queries; write only https://HOST[:PORT]")]
    HasPath(String),
}

impl Endpoint {
    pub fn parse(text: &str) -> Result<Self, EndpointError> {
        let shown = text.to_string();
        let uri: Uri = text
            .trim()
            .parse()
            .map_err(|_| EndpointError::NotAUrl(shown.clone()))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(EndpointError::NotAUrl(shown));
        };
        if authority.as_str().contains('@') {
            return Err(EndpointError::NotAUrl(shown));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(EndpointError::HasPath(shown));
        }
        match scheme.to_ascii_lowercase().as_str() {
            "https" => {}
            "http" if is_loopback(authority.host()) => {}
            "http" => return Err(EndpointError::PlainHttpNotLoopback(shown)),
            _ => return Err(EndpointError::BadScheme(shown)),
        }
        let host = authority.as_str().to_ascii_lowercase();
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(host.as_str())
            .path_and_query("/")
            .build()
            .map_err(|_| EndpointError::NotAUrl(shown.clone()))?;
        Ok(Self { uri, host, shown })
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn https_anywhere_and_http_only_to_loopback() {
        let e = Endpoint::parse(DEFAULT_ENDPOINT).unwrap();
        assert_eq!(e.host, "cdn.tencentcloudapi.com");
        assert_eq!(e.uri.to_string(), "https://cdn.tencentcloudapi.com/");
        for ok in [
            "http://127.0.0.1:9000",
            "http://127.8.0.1",
            "http://[::1]:80/",
            "http://localhost:1",
        ] {
            assert!(Endpoint::parse(ok).is_ok(), "{ok}");
        }
        for (bad, want) in [
            ("http://10.0.0.1:80", "loopback"),
            ("http://cdn.tencentcloudapi.com", "loopback"),
            ("http://127.0.0.1.example.com", "loopback"),
            ("ftp://127.0.0.1", "scheme"),
            ("cdn.tencentcloudapi.com", "not a URL"),
            ("https://cdn.tencentcloudapi.com/v3?x=1", "no paths"),
            ("https://user:pw@cdn.tencentcloudapi.com", "not a URL"),
        ] {
            let e = Endpoint::parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
