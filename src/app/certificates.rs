//! What the console shows of the certificates `[relay] tls-listen` serves
//! (DESIGN §8): a copy taken from the relay by the runner — the in-process
//! relay's certificate set, or an attached relay's `config-get` answer — so
//! that drawing never asks the relay anything.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::config::DomainName;
use crate::relay::tls::{CertificateInfo, CertificateSet};

/// A certificate this close to its expiry is shown in the warning colour.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// The certificates a relay serves, as last taken from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Certificates {
    /// Nobody said: no relay (a Tencent Cloud account), or an attached
    /// relay too old to report its certificates.
    #[default]
    Unknown,
    /// The relay has no `[relay] tls-listen`: it serves no `wss://`.
    NoTls,
    /// What `tls-listen` serves.
    Served(Served),
}

/// The certificates of a relay's `tls-listen`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served {
    /// `[relay] tls-certificate`: served to every name without its own.
    pub default: Option<CertificateInfo>,
    /// Domain name → its own `certificate = {...}`.
    pub domains: HashMap<DomainName, CertificateInfo>,
}

impl Certificates {
    /// What an in-process relay serves (`None`: it has no `tls-listen`).
    pub fn of_set(set: Option<&CertificateSet>) -> Self {
        match set {
            None => Self::NoTls,
            Some(set) => Self::Served(Served {
                default: set.default_info().cloned(),
                domains: set
                    .own_infos()
                    .map(|(name, info)| (name.clone(), info.clone()))
                    .collect(),
            }),
        }
    }

    /// What a TLS client of `domain` is served, judged at `now`.
    pub fn of_domain(&self, domain: &DomainName, now: SystemTime) -> DomainCertificate<'_> {
        let served = match self {
            Self::Unknown => return DomainCertificate::Unknown,
            Self::NoTls => return DomainCertificate::NoTls,
            Self::Served(served) => served,
        };
        let own = served.domains.get(domain);
        let (info, default) = match (own, &served.default) {
            (Some(info), _) => (info, false),
            (None, Some(info)) => (info, true),
            (None, None) => return DomainCertificate::Missing,
        };
        DomainCertificate::Served {
            info,
            default,
            expiry: Expiry::at(info, now),
        }
    }
}

/// One domain's certificate, as the console shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainCertificate<'a> {
    /// Not known (see [`Certificates::Unknown`]).
    Unknown,
    /// The relay serves no `wss://`.
    NoTls,
    /// `tls-listen` is set but neither the domain nor the relay has a
    /// certificate: its TLS clients fail the handshake.
    Missing,
    Served {
        info: &'a CertificateInfo,
        /// The relay's default, not one of the domain's own.
        default: bool,
        expiry: Expiry,
    },
}

impl<'a> DomainCertificate<'a> {
    /// The certificate served, if there is one.
    pub fn info(&self) -> Option<&'a CertificateInfo> {
        match self {
            Self::Served { info, .. } => Some(info),
            _ => None,
        }
    }
}

/// How a certificate stands against its expiry date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// More than [`EXPIRY_WARNING`] left.
    Valid(Duration),
    /// Within [`EXPIRY_WARNING`] of its expiry: renew it.
    Soon(Duration),
    /// Past its expiry date (clients refuse it).
    Expired,
}

impl Expiry {
    pub fn at(info: &CertificateInfo, now: SystemTime) -> Self {
        if info.not_after <= now {
            return Self::Expired;
        }
        let left = info.remaining(now);
        if left <= EXPIRY_WARNING {
            Self::Soon(left)
        } else {
            Self::Valid(left)
        }
    }

    /// `89 d left`, `!9 d left`, `!5 h left`, `EXPIRED` — the `!` marks
    /// what the warning colour marks, for monochrome terminals.
    pub fn label(self) -> String {
        match self {
            Self::Valid(left) => format!("{} left", short_duration(left)),
            Self::Soon(left) => format!("!{} left", short_duration(left)),
            Self::Expired => "EXPIRED".to_string(),
        }
    }
}

/// Days when there are two or more, else hours, else minutes.
fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s >= 2 * 86_400 => format!("{} d", s / 86_400),
        s if s >= 3600 => format!("{} h", s / 3600),
        s => format!("{} min", s / 60),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::time::UNIX_EPOCH;

    fn info(days: u64) -> CertificateInfo {
        CertificateInfo {
            subject: "CN=a.test".into(),
            not_after: UNIX_EPOCH + Duration::from_secs(days * 86_400),
        }
    }

    #[test]
    fn expiry_is_judged_against_the_fourteen_day_warning() {
        let now = UNIX_EPOCH + Duration::from_secs(100 * 86_400);
        assert_eq!(Expiry::at(&info(200), now).label(), "100 d left");
        assert!(matches!(Expiry::at(&info(114), now), Expiry::Soon(_)));
        assert_eq!(Expiry::at(&info(109), now).label(), "!9 d left");
        assert!(matches!(Expiry::at(&info(115), now), Expiry::Valid(_)));
        assert_eq!(Expiry::at(&info(100), now), Expiry::Expired);
        let hours = CertificateInfo {
            not_after: now + Duration::from_secs(5 * 3600 + 10),
            ..info(0)
        };
        assert_eq!(Expiry::at(&hours, now).label(), "!5 h left");
    }

    #[test]
    fn a_domain_gets_its_own_certificate_else_the_default() {
        let now = UNIX_EPOCH;
        let served = Served {
            default: Some(info(300)),
            domains: HashMap::from([("a.test".into(), info(30))]),
        };
        let certs = Certificates::Served(served.clone());
        assert!(matches!(
            certs.of_domain(&"A.test".into(), now),
            DomainCertificate::Served { default: false, .. }
        ));
        assert!(matches!(
            certs.of_domain(&"b.test".into(), now),
            DomainCertificate::Served { default: true, .. }
        ));
        let no_default = Certificates::Served(Served {
            default: None,
            ..served
        });
        assert_eq!(
            no_default.of_domain(&"b.test".into(), now),
            DomainCertificate::Missing
        );
        assert_eq!(
            Certificates::NoTls.of_domain(&"a.test".into(), now),
            DomainCertificate::NoTls
        );
    }
}
