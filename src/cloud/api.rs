//! The request and response shapes of the two CDN API actions we call, as
//! documented for version 2018-06-06 (DescribeDomainsConfig, DetailDomain,
//! Origin, WebSocket; UpdateDomainConfig). Only the fields the console
//! shows are read; the rest of a DetailDomain is ignored.

use serde::{Deserialize, Serialize};

pub const SERVICE: &str = "cdn";
pub const VERSION: &str = "2018-06-06";
pub const DESCRIBE_DOMAINS_CONFIG: &str = "DescribeDomainsConfig";
pub const UPDATE_DOMAIN_CONFIG: &str = "UpdateDomainConfig";
/// Domains per DescribeDomainsConfig page (README, "Tencent Cloud"; the API's default).
pub const PAGE_SIZE: usize = 100;

/// `{"Offset", "Limit", "Filters"}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDomainsConfigRequest {
    pub offset: usize,
    pub limit: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<DomainFilter>,
}

/// `{"Name": "domain", "Value": ["a.example.com"]}`: an exact match.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DomainFilter {
    pub name: String,
    pub value: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDomainsConfigResponse {
    #[serde(default)]
    pub domains: Option<Vec<DetailDomain>>,
    #[serde(default)]
    pub total_number: usize,
}

/// One domain's configuration, the fields the console uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DetailDomain {
    pub domain: String,
    pub cname: Option<String>,
    /// `rejected`, `processing`, `online`, `offline`, `closing`, ...
    pub status: Option<String>,
    /// `web`, `download`, `media`, `hybrid`, `dynamic`.
    pub service_type: Option<String>,
    /// `mainland`, `overseas`, `global`.
    pub area: Option<String>,
    pub origin: Option<Origin>,
    pub web_socket: Option<WebSocket>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Origin {
    pub origins: Option<Vec<String>>,
    pub origin_type: Option<String>,
    pub server_name: Option<String>,
    /// `http`, `https`, `follow`.
    pub origin_pull_protocol: Option<String>,
}

/// `{"Switch": "on"|"off", "Timeout": N}`. Both are always sent: a field
/// left out of an update resets to its default on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WebSocket {
    pub switch: SwitchValue,
    #[serde(default)]
    pub timeout: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwitchValue {
    On,
    Off,
}

/// UpdateDomainConfig with only the WebSocket object.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateWebSocketRequest<'a> {
    pub domain: &'a str,
    pub web_socket: UpdateWebSocket,
}

/// The update's WebSocket object: `Timeout` is not optional here.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateWebSocket {
    pub switch: SwitchValue,
    pub timeout: u16,
}

/// `{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApiErrorBody {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn an_update_always_carries_both_websocket_fields() {
        let body = serde_json::to_value(UpdateWebSocketRequest {
            domain: "a.example.com",
            web_socket: UpdateWebSocket {
                switch: SwitchValue::On,
                timeout: 0,
            },
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"Domain": "a.example.com", "WebSocket": {"Switch": "on", "Timeout": 0}})
        );
    }

    #[test]
    fn a_detail_domain_reads_the_documented_fields() {
        let d: DetailDomain = serde_json::from_value(serde_json::json!({
            "Domain": "a.example.com", "Cname": "a.example.com.cdn.dnsv1.com",
            "Status": "online", "ServiceType": "dynamic", "Area": "global",
            "Origin": {"Origins": ["1.2.3.4:8080"], "OriginType": "ip",
                       "ServerName": "origin.example.com", "OriginPullProtocol": "https"},
            "WebSocket": {"Switch": "on", "Timeout": 100},
            "Https": null, "ProjectId": 0
        }))
        .unwrap();
        assert_eq!(d.service_type.as_deref(), Some("dynamic"));
        assert_eq!(
            d.web_socket,
            Some(WebSocket {
                switch: SwitchValue::On,
                timeout: Some(100)
            })
        );
        assert_eq!(
            d.origin.unwrap().server_name.as_deref(),
            Some("origin.example.com")
        );
    }
}
