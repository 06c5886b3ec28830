//! A domain as the console shows it, mapped from the API's DetailDomain.
//! The mapping, and why, is in README.md ("Tencent Cloud").

use serde::Serialize;

use super::api::{self, DetailDomain, SwitchValue};
use crate::config::{
    Acceleration, EffectiveTimeout, RECOMMENDED_TIMEOUT_SECS, Switch, WebSocketSettings,
    effective_timeout_for,
};

/// One of the account's domains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloudDomain {
    pub name: String,
    /// The CNAME the API assigned (not derived, unlike a file's domain).
    pub cname: String,
    /// The API's `Status` as it is (`online`, `offline`, `processing`, ...).
    pub status: String,
    /// The API's `ServiceType` as it is.
    pub service_type: String,
    /// The console's acceleration type where the API's documentation maps
    /// it to one (`hybrid`, `dynamic`); `None` for the static types.
    pub acceleration: Option<Acceleration>,
    pub area: String,
    /// `Origin.Origins`, as the API writes them (`host[:port][:weight]`).
    pub origins: Vec<String>,
    pub origin_type: Option<String>,
    pub server_name: Option<String>,
    pub origin_protocol: Option<String>,
    pub websocket: CloudWebSocket,
}

/// The domain's WebSocket object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CloudWebSocket {
    pub switch: Switch,
    /// Seconds; the API's value, which the console's rule (0–300) checks
    /// only when it is about to send one.
    pub timeout: u16,
    /// Whether the API returned a WebSocket object at all. Without one the
    /// server's defaults apply: switch off.
    pub reported: bool,
}

impl CloudWebSocket {
    /// As the file's settings, so the file's rules and wording apply.
    pub fn settings(&self) -> WebSocketSettings {
        WebSocketSettings {
            switch: self.switch,
            timeout: self.timeout,
            ..WebSocketSettings::default()
        }
    }
}

impl CloudDomain {
    pub fn from_api(detail: &DetailDomain) -> Self {
        let origin = detail.origin.clone().unwrap_or_default();
        let service_type = detail.service_type.clone().unwrap_or_default();
        Self {
            name: detail.domain.clone(),
            cname: detail.cname.clone().unwrap_or_default(),
            status: detail.status.clone().unwrap_or_default(),
            acceleration: acceleration_of(&service_type),
            service_type,
            area: detail.area.clone().unwrap_or_default(),
            origins: origin.origins.unwrap_or_default(),
            origin_type: origin.origin_type,
            server_name: origin.server_name.filter(|s| !s.is_empty()),
            origin_protocol: origin.origin_pull_protocol,
            websocket: websocket_of(detail.web_socket),
        }
    }

    /// The file's effective-timeout rule on the API's values. Whether the
    /// switch applies to this domain at all the API's fields cannot tell
    /// (ECDN full-site domains moved to the CDN API have no ServiceType of
    /// their own), so the switch is taken as reported and the API's answer
    /// to an update decides — its refusal is shown as it comes.
    pub fn effective_timeout(&self) -> EffectiveTimeout {
        effective_timeout_for(Acceleration::FullSite, &self.websocket.settings())
    }

    /// The domain list's Acceleration column: the console's name where the
    /// API maps to one, else the API's ServiceType.
    pub fn acceleration_column(&self) -> String {
        match self.acceleration {
            Some(a) => a.as_str().to_string(),
            None => self.service_type.clone(),
        }
    }

    /// The Manage page's type line.
    pub fn acceleration_label(&self) -> String {
        service_type_label(&self.service_type)
    }
}

/// ServiceType → the console's types (README "Tencent Cloud"): `hybrid` is
/// documented as dynamic and static acceleration, `dynamic` as dynamic
/// acceleration; `web`, `download`, `media` are static types the console
/// has no name for.
pub fn acceleration_of(service_type: &str) -> Option<Acceleration> {
    match service_type {
        "hybrid" => Some(Acceleration::DynamicStatic),
        "dynamic" => Some(Acceleration::Dynamic),
        _ => None,
    }
}

/// A readable name for any ServiceType.
pub fn service_type_label(service_type: &str) -> String {
    match service_type {
        "web" => "Static acceleration (web)".into(),
        "download" => "Download acceleration".into(),
        "media" => "Streaming VOD acceleration".into(),
        other => match acceleration_of(other) {
            Some(a) => a.label().into(),
            None if other.is_empty() => "unknown".into(),
            None => other.into(),
        },
    }
}

fn websocket_of(ws: Option<api::WebSocket>) -> CloudWebSocket {
    let Some(ws) = ws else {
        return CloudWebSocket {
            switch: Switch::Off,
            timeout: RECOMMENDED_TIMEOUT_SECS,
            reported: false,
        };
    };
    CloudWebSocket {
        switch: match ws.switch {
            SwitchValue::On => Switch::On,
            SwitchValue::Off => Switch::Off,
        },
        timeout: ws.timeout.map_or(RECOMMENDED_TIMEOUT_SECS, |t| {
            u16::try_from(t.max(0)).unwrap_or(u16::MAX)
        }),
        reported: true,
    }
}

/// The console's switch as the API writes it.
pub fn switch_value(switch: Switch) -> SwitchValue {
    match switch {
        Switch::On => SwitchValue::On,
        Switch::Off => SwitchValue::Off,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn maps_the_documented_fields_and_the_timeout_rule() {
        let d: DetailDomain = serde_json::from_value(serde_json::json!({
            "Domain": "a.example.com", "Cname": "a.example.com.cdn.dnsv1.com",
            "Status": "online", "ServiceType": "hybrid", "Area": "mainland",
            "Origin": {"Origins": ["1.2.3.4:80"], "OriginType": "ip", "ServerName": "",
                       "OriginPullProtocol": "follow"},
            "WebSocket": {"Switch": "on", "Timeout": 100}
        }))
        .unwrap();
        let c = CloudDomain::from_api(&d);
        assert_eq!(c.acceleration, Some(Acceleration::DynamicStatic));
        assert_eq!(c.acceleration_column(), "dynamic-static");
        assert_eq!(c.server_name, None);
        assert_eq!(c.effective_timeout().column_label(), "On · 100 s");
    }

    #[test]
    fn no_websocket_object_is_the_servers_default_switch_off() {
        let c = CloudDomain::from_api(&DetailDomain {
            domain: "b.example.com".into(),
            service_type: Some("web".into()),
            ..DetailDomain::default()
        });
        assert_eq!(c.effective_timeout().column_label(), "Off · 15 s");
        assert_eq!(c.acceleration_column(), "web");
        assert_eq!(c.acceleration_label(), "Static acceleration (web)");
    }
}
