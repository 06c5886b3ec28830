//! The Tencent Cloud API as a source of domains (README, "Tencent Cloud"): list an
//! account's domains and set a domain's WebSocket switch and timeout
//! through the CDN API v3 (`2018-06-06`).
//!
//! Imports only `config/` of ours (for the rules and the timeout wording).

pub mod api;
mod client;
pub mod credentials;
mod domain;
mod endpoint;
pub mod sign;

pub use client::{CONTENT_TYPE, Client, CloudError, MAX_REQUESTS_PER_SEC, REQUEST_TIMEOUT};
pub use credentials::{Credentials, CredentialsError};
pub use domain::{CloudDomain, CloudWebSocket, acceleration_of, service_type_label, switch_value};
pub use endpoint::{DEFAULT_ENDPOINT, Endpoint, EndpointError};

use api::{
    DescribeDomainsConfigRequest, DescribeDomainsConfigResponse, DomainFilter, PAGE_SIZE,
    UpdateWebSocket, UpdateWebSocketRequest,
};

use crate::config::{DomainName, Switch};

/// Pages loaded so far and domains seen, for a progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub loaded: usize,
    pub total: usize,
}

impl Client {
    /// Every domain of the account, 100 a page, in the API's order.
    /// `progress` hears after each page.
    pub async fn describe_domains(
        &self,
        mut progress: impl FnMut(Progress),
    ) -> Result<Vec<CloudDomain>, CloudError> {
        let mut domains = Vec::new();
        loop {
            let page = self.page(domains.len(), Vec::new()).await?;
            let got = page.domains.unwrap_or_default();
            let empty = got.is_empty();
            domains.extend(got.iter().map(CloudDomain::from_api));
            // The total can grow while paging; the loop ends on a short page
            // (or at the total), never on a count alone.
            let total = page.total_number.max(domains.len());
            progress(Progress {
                loaded: domains.len(),
                total,
            });
            if empty || got.len() < PAGE_SIZE || domains.len() >= page.total_number {
                return Ok(domains);
            }
        }
    }

    /// One domain by name (exact, case-insensitive), or `None`.
    pub async fn describe_domain(&self, name: &str) -> Result<Option<CloudDomain>, CloudError> {
        let filter = DomainFilter {
            name: "domain".into(),
            value: vec![name.to_ascii_lowercase()],
        };
        let page = self.page(0, vec![filter]).await?;
        let wanted = DomainName::from(name);
        Ok(page
            .domains
            .unwrap_or_default()
            .iter()
            .find(|d| wanted == d.domain)
            .map(CloudDomain::from_api))
    }

    async fn page(
        &self,
        offset: usize,
        filters: Vec<DomainFilter>,
    ) -> Result<DescribeDomainsConfigResponse, CloudError> {
        let request = DescribeDomainsConfigRequest {
            offset,
            limit: PAGE_SIZE,
            filters,
        };
        let (page, _) = self.call(api::DESCRIBE_DOMAINS_CONFIG, &request).await?;
        Ok(page)
    }

    /// UpdateDomainConfig with the whole WebSocket object; the RequestId.
    /// `timeout` must already have passed the console's 0–300 rule.
    pub async fn update_websocket(
        &self,
        domain: &str,
        switch: Switch,
        timeout: u16,
    ) -> Result<String, CloudError> {
        let request = UpdateWebSocketRequest {
            domain,
            web_socket: UpdateWebSocket {
                switch: switch_value(switch),
                timeout,
            },
        };
        let (_, request_id): (serde_json::Value, String) =
            self.call(api::UPDATE_DOMAIN_CONFIG, &request).await?;
        Ok(request_id)
    }
}

/// The note shown after a change: a CDN takes its time.
pub const PROPAGATION_NOTE: &str = "CDN configuration changes can take a few minutes to reach \
every edge; probe again if the measured timeout still differs.";
