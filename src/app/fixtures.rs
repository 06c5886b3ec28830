//! What the console's tests and the `keys` fuzz target (`fuzz_targets.rs`)
//! build their consoles from: one config, one cloud account's listing.
//! Only in test builds and with the `fuzzing` feature.

use super::{Action, App, CloudEvent, CloudView, DomainSource, update};
use crate::cloud::CloudDomain;
use crate::cloud::api::DetailDomain;

/// Three domains: full-site with the switch off, full-site with it on,
/// and a dynamic one (no WebSocket setting).
pub const TEST_CONFIG: &str = r#"
[relay]
listen = "127.0.0.1:0"

[[domain]]
name = "www.example.com"
acceleration = "full-site"
origins = ["127.0.0.1:9001"]
websocket = { switch = "off", timeout = 60 }

[[domain]]
name = "cloud.tencent.com"
acceleration = "full-site"
origins = ["127.0.0.1:9001"]
websocket = { switch = "on", timeout = 100 }

[[domain]]
name = "api.example.com"
acceleration = "dynamic"
origins = ["127.0.0.1:9001"]
"#;

/// `app` turned into a console on a Tencent Cloud account that listed
/// `domains` (name, service type), each online.
pub fn on_cloud(mut app: App, domains: &[(&str, &str)]) -> App {
    app.source = DomainSource::Cloud(CloudView::new("https://x".into()));
    let listed: Vec<CloudDomain> = domains
        .iter()
        .map(|(name, service)| {
            CloudDomain::from_api(&DetailDomain {
                domain: name.to_string(),
                status: Some("online".into()),
                service_type: Some(service.to_string()),
                ..DetailDomain::default()
            })
        })
        .collect();
    update(&mut app, Action::Cloud(CloudEvent::Loaded(listed)));
    app
}
