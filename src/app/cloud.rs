//! The console on a Tencent Cloud account (README, "Tencent Cloud"): the domains come
//! from the CDN API instead of a file, edits go to `UpdateDomainConfig`,
//! and `p` measures a domain's idle timeout on the real edge with a silent
//! probe. The rest of the console (menu, list, Manage tabs, the edit
//! dialog) is the file's, fed with domains converted by [`config_of`].

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use crate::cloud::{CloudDomain, Progress};
use crate::config::DomainName;
use crate::config::{
    Acceleration, Area, Config, Domain, Origin, OriginProtocol, RelaySettings, Status,
};

use super::{App, Effect};

/// Where the console's domains come from.
#[derive(Debug, Default)]
pub enum DomainSource {
    /// A configuration file, with the relay in-process.
    #[default]
    File,
    /// A Tencent Cloud account, through the CDN API.
    Cloud(CloudView),
}

/// What the console knows of the account.
#[derive(Debug, Default)]
pub struct CloudView {
    /// The API endpoint, for the header.
    pub endpoint: String,
    pub load: LoadState,
    /// The API's own view of each domain (CNAME, status, service type,
    /// origins as written), by lower-case name.
    pub domains: HashMap<DomainName, CloudDomain>,
    /// The last probe of each domain, by lower-case name.
    pub probes: HashMap<DomainName, ProbeState>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LoadState {
    /// DescribeDomainsConfig pages are coming in.
    #[default]
    Starting,
    Loading(Progress),
    Loaded,
    /// The API's error, in its own words.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeState {
    Running { since: Instant },
    Done(ProbeResult),
}

/// What a silent probe of `wss://DOMAIN/` found.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// Idle seconds at the moment the edge cut the connection; `None` when
    /// the probe never got a connection or ended another way.
    pub cut_after_idle_secs: Option<f64>,
    /// One line: how it ended, or why it failed.
    pub text: String,
}

/// Results of the runner's background work.
#[derive(Debug, Clone)]
pub enum CloudEvent {
    Progress(Progress),
    Loaded(Vec<CloudDomain>),
    LoadFailed(String),
    Probed {
        domain: String,
        result: ProbeResult,
    },
    /// Tencent Cloud accepted an UpdateDomainConfig: the domain's
    /// WebSocket object is now this.
    Updated {
        domain: String,
        websocket: crate::cloud::CloudWebSocket,
    },
}

/// Shown wherever a relay would show sessions.
pub const NO_SESSIONS_TEXT: &str = "Sessions are visible only through a relay. On a Tencent \
Cloud account the console sees the configuration, not the traffic: measure what the edge does \
with a probe (p on a domain's page), or run a relay of your own (ecdn-console).";

/// Said beside every measurement.
pub const PROPAGATION_TEXT: &str = crate::cloud::PROPAGATION_NOTE;

impl CloudView {
    pub fn new(endpoint: String) -> Self {
        Self {
            endpoint,
            ..Self::default()
        }
    }

    pub fn domain(&self, name: &str) -> Option<&CloudDomain> {
        self.domains.get(&DomainName::from(name))
    }

    pub fn probe(&self, name: &str) -> Option<&ProbeState> {
        self.probes.get(&DomainName::from(name))
    }
}

impl App {
    /// The account's view, when the console is on one.
    pub fn cloud(&self) -> Option<&CloudView> {
        match &self.source {
            DomainSource::Cloud(view) => Some(view),
            DomainSource::File => None,
        }
    }

    pub fn is_cloud(&self) -> bool {
        self.cloud().is_some()
    }

    fn cloud_mut(&mut self) -> Option<&mut CloudView> {
        match &mut self.source {
            DomainSource::Cloud(view) => Some(view),
            DomainSource::File => None,
        }
    }
}

/// `r`: the file is re-read, the account's domains are listed again.
pub fn reload(app: &mut App) -> Effect {
    match app.cloud_mut() {
        Some(view) => {
            view.load = LoadState::Starting;
            Effect::LoadCloud
        }
        None => Effect::Reload,
    }
}

/// `p` on a domain's page: a silent probe of `wss://DOMAIN/`, unless one
/// is under way.
pub fn probe(app: &mut App, domain: &str) -> Vec<Effect> {
    let Some(view) = app.cloud_mut() else {
        return Vec::new();
    };
    let key = DomainName::from(domain);
    if matches!(view.probes.get(&key), Some(ProbeState::Running { .. })) {
        return Vec::new();
    }
    view.probes.insert(
        key,
        ProbeState::Running {
            since: Instant::now(),
        },
    );
    vec![Effect::Probe(domain.to_string())]
}

pub fn event(app: &mut App, event: CloudEvent) -> Vec<Effect> {
    let Some(view) = app.cloud_mut() else {
        return Vec::new();
    };
    match event {
        CloudEvent::Progress(p) => view.load = LoadState::Loading(p),
        CloudEvent::LoadFailed(message) => view.load = LoadState::Failed(message),
        CloudEvent::Loaded(domains) => {
            view.load = LoadState::Loaded;
            view.domains = domains
                .iter()
                .map(|d| (d.name.as_str().into(), d.clone()))
                .collect();
            app.config = Arc::new(config_of(&domains));
            let len = app.visible_domains().len();
            app.domains.cursor.clamp(len);
            app.overview.clamp(app.config.domains.len());
            if app
                .domains
                .manage
                .as_ref()
                .is_some_and(|m| app.config.domain(&m.domain).is_none())
            {
                app.domains.manage = None;
            }
        }
        CloudEvent::Updated { domain, websocket } => {
            if let Some(d) = view.domains.get_mut(&DomainName::from(domain.as_str())) {
                d.websocket = websocket;
            }
            let mut config = (*app.config).clone();
            if let Some(d) = config.domains.iter_mut().find(|d| d.name == domain) {
                d.websocket = websocket.settings();
            }
            app.config = Arc::new(config);
        }
        CloudEvent::Probed { domain, result } => {
            view.probes.insert(domain.into(), ProbeState::Done(result));
        }
    }
    Vec::new()
}

/// The account's domains as the console's model, so the list, the Manage
/// tabs and the edit dialog work on them unchanged. The switch is offered
/// on every domain (acceleration `full-site` here): the API's fields
/// cannot tell which domains may use it, so the API's answer to the update
/// decides. What the API says of the domain itself is kept in
/// [`CloudView::domains`] and shown from there.
pub fn config_of(domains: &[CloudDomain]) -> Config {
    Config {
        relay: RelaySettings::default(),
        admin: Default::default(),
        domains: domains.iter().map(domain_of).collect(),
    }
}

fn domain_of(d: &CloudDomain) -> Domain {
    Domain {
        name: d.name.as_str().into(),
        acceleration: Acceleration::FullSite,
        status: if d.status == "online" {
            Status::Online
        } else {
            Status::Offline
        },
        area: match d.area.as_str() {
            "overseas" => Area::Overseas,
            "global" => Area::Global,
            _ => Area::Mainland,
        },
        origins: d.origins.iter().filter_map(|o| origin_of(o)).collect(),
        server_name: d.server_name.clone(),
        origin_protocol: match d.origin_protocol.as_deref() {
            Some("https") => OriginProtocol::Https,
            Some("follow") => OriginProtocol::Follow,
            _ => OriginProtocol::Http,
        },
        websocket: d.websocket.settings(),
        // The edge's certificates are the account's business, not ours.
        certificate: None,
    }
}

/// `host`, `host:port`, `host:port:weight` as the API writes origins.
fn origin_of(text: &str) -> Option<Origin> {
    let mut parts = text.rsplitn(3, ':').collect::<Vec<_>>();
    parts.reverse();
    let (host, port, weight) = match parts.as_slice() {
        [host] => (*host, 80, Origin::DEFAULT_WEIGHT),
        [host, port] => (*host, port.parse().ok()?, Origin::DEFAULT_WEIGHT),
        [host, port, weight] => (*host, port.parse().ok()?, weight.parse().ok()?),
        _ => return None,
    };
    Some(Origin {
        host: host.to_string(),
        port,
        weight,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::app::{Action, Command, Dialog, Screen, Settings, update};
    use crate::config::{Edit, Switch};
    use crate::relay::Registry;

    fn cloud_app(domains: &[(&str, &str)]) -> App {
        let app = App::new(
            Arc::new(config_of(&[])),
            Arc::new(Registry::new()),
            Settings::default(),
        );
        crate::app::fixtures::on_cloud(app, domains)
    }

    #[test]
    fn every_account_domain_offers_the_switch_and_the_edit_sends_both_fields() {
        let mut app = cloud_app(&[("a.example.com", "web"), ("b.example.com", "dynamic")]);
        update(&mut app, Command::Goto(Screen::Domains).into());
        update(&mut app, Command::Down.into());
        update(&mut app, Command::Edit.into());
        assert!(
            matches!(app.dialog, Some(Dialog::EditWebSocket(_))),
            "{:?}",
            app.dialog
        );
        update(&mut app, Command::Toggle.into());
        let effects = update(&mut app, Command::Open.into());
        assert_eq!(
            effects,
            [Effect::Save(Edit::SetWebSocket {
                domain: "b.example.com".into(),
                switch: Some(Switch::On),
                timeout: Some(60),
            })]
        );
    }

    #[test]
    fn reload_lists_again_and_p_probes_once_at_a_time() {
        let mut app = cloud_app(&[("a.example.com", "web")]);
        update(&mut app, Command::Goto(Screen::Domains).into());
        assert_eq!(
            update(&mut app, Command::Reload.into()),
            [Effect::LoadCloud]
        );
        assert_eq!(app.cloud().unwrap().load, LoadState::Starting);
        update(&mut app, Command::Open.into());
        assert_eq!(
            update(&mut app, Command::Probe.into()),
            [Effect::Probe("a.example.com".into())]
        );
        assert!(update(&mut app, Command::Probe.into()).is_empty());
        let result = ProbeResult {
            cut_after_idle_secs: Some(15.2),
            text: "cut".into(),
        };
        update(
            &mut app,
            Action::Cloud(CloudEvent::Probed {
                domain: "a.example.com".into(),
                result: result.clone(),
            }),
        );
        assert_eq!(
            app.cloud().unwrap().probe("A.example.com"),
            Some(&ProbeState::Done(result))
        );
    }

    #[test]
    fn origins_are_read_as_the_api_writes_them() {
        assert_eq!(origin_of("1.2.3.4").unwrap().port, 80);
        assert_eq!(origin_of("o.example.com:8080").unwrap().port, 8080);
        assert_eq!(origin_of("o.example.com:8080:5").unwrap().weight, 5);
        assert!(origin_of("o.example.com:x").is_none());
    }
}
