//! TLS at the edge (DESIGN §8): `[relay] tls-listen` serves `wss://`, the
//! certificate chosen by SNI among the domains' own (`certificate = {
//! cert-file, key-file }`) with `[relay] tls-certificate` as the default.
//!
//! Certificates are read when the relay starts and on every reload; a set
//! that fails to load is refused as a whole and the one in force keeps
//! serving. Errors name the file and what is wrong with it.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::handshake::Refusal;
use super::listener::{ConnectionSlot, Shared, handle_connection, refused};
use crate::config::{CertificateFiles, Config, DomainName};

/// A certificate that could not be put in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", file.display())]
pub struct CertificateError {
    pub file: PathBuf,
    pub problem: String,
}

fn problem(file: &Path, problem: impl Into<String>) -> CertificateError {
    CertificateError {
        file: file.to_path_buf(),
        problem: problem.into(),
    }
}

/// What the console shows of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub subject: String,
    pub not_after: SystemTime,
}

impl CertificateInfo {
    /// Time left before it expires (zero once expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or_default()
    }
}

impl fmt::Display for CertificateInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, expires {}",
            self.subject,
            humantime::format_rfc3339_seconds(self.not_after)
        )
    }
}

struct Loaded {
    key: Arc<CertifiedKey>,
    info: CertificateInfo,
}

/// Every certificate of one config, loaded and checked.
#[derive(Default)]
pub struct CertificateSet {
    default: Option<Arc<CertifiedKey>>,
    /// Domain name (any case) → its certificate.
    by_name: HashMap<DomainName, Arc<CertifiedKey>>,
    /// Domain name → what the console shows of its own certificate.
    info: HashMap<DomainName, CertificateInfo>,
    /// What the console shows of the default (`[relay] tls-certificate`).
    default_info: Option<CertificateInfo>,
}

impl fmt::Debug for CertificateSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateSet")
            .field("default", &self.default.is_some())
            .field("domains", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CertificateSet {
    /// Reads every certificate the config names. Files named twice are read once.
    pub fn load(config: &Config) -> Result<Self, CertificateError> {
        let provider = rustls::crypto::ring::default_provider();
        let mut cache: HashMap<CertificateFiles, Arc<Loaded>> = HashMap::new();
        let mut get = |files: &CertificateFiles| -> Result<Arc<Loaded>, CertificateError> {
            if let Some(found) = cache.get(files) {
                return Ok(found.clone());
            }
            let loaded = Arc::new(load_pair(files, &provider, SystemTime::now())?);
            cache.insert(files.clone(), loaded.clone());
            Ok(loaded)
        };
        let mut set = CertificateSet::default();
        let default = match &config.relay.tls_certificate {
            Some(files) => Some(get(files)?),
            None => None,
        };
        set.default = default.as_ref().map(|l| l.key.clone());
        set.default_info = default.as_ref().map(|l| l.info.clone());
        for domain in &config.domains {
            if let Some(files) = &domain.certificate {
                let loaded = get(files)?;
                set.by_name.insert(domain.name.clone(), loaded.key.clone());
                set.info.insert(domain.name.clone(), loaded.info.clone());
            }
        }
        Ok(set)
    }

    /// The certificate served to a client that asked for `name` (SNI).
    fn pick(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        name.and_then(|n| self.by_name.get(&DomainName::from(n)))
            .or(self.default.as_ref())
            .cloned()
    }

    /// The certificate a TLS client of `domain` is served, if any: its
    /// own, else the default (also for a domain added since the set was
    /// loaded, as [`pick`](Self::pick) serves it).
    pub fn info(&self, domain: &DomainName) -> Option<&CertificateInfo> {
        self.own_info(domain).or(self.default_info.as_ref())
    }

    /// The certificate of `domain`'s own `certificate = {...}`, if it has one.
    pub fn own_info(&self, domain: &DomainName) -> Option<&CertificateInfo> {
        self.info.get(domain)
    }

    /// The default certificate (`[relay] tls-certificate`), if set.
    pub fn default_info(&self) -> Option<&CertificateInfo> {
        self.default_info.as_ref()
    }

    /// Every domain with a certificate of its own (names as configured).
    pub fn own_infos(&self) -> impl Iterator<Item = (&DomainName, &CertificateInfo)> {
        self.info.iter()
    }
}

/// Reads one certificate chain and key and checks them together.
fn load_pair(
    files: &CertificateFiles,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Loaded, CertificateError> {
    let cert_pem = read(&files.cert_file)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| problem(&files.cert_file, format!("not a valid PEM file: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(problem(
            &files.cert_file,
            "not PEM: no \"-----BEGIN CERTIFICATE-----\" block in the file",
        ));
    };
    let info = certificate_info(leaf).map_err(|e| problem(&files.cert_file, e))?;
    if info.not_after <= now {
        return Err(problem(
            &files.cert_file,
            format!(
                "the certificate expired on {} ({}); renew it",
                humantime::format_rfc3339_seconds(info.not_after),
                info.subject
            ),
        ));
    }
    let key_pem = read(&files.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        problem(
            &files.key_file,
            match e {
                rustls::pki_types::pem::Error::NoItemsFound => {
                    "not PEM: no \"-----BEGIN PRIVATE KEY-----\" (PKCS#8, RSA or EC) block in the file"
                        .to_string()
                }
                other => format!("not a valid PEM file: {other}"),
            },
        )
    })?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => problem(
            &files.key_file,
            format!(
                "the key does not match the certificate in {}",
                files.cert_file.display()
            ),
        ),
        other => problem(&files.key_file, format!("unusable private key: {other}")),
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        info,
    })
}

/// The most a PEM file of a certificate chain or a key may hold.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

fn read(path: &Path) -> Result<Vec<u8>, CertificateError> {
    crate::config::read_regular_file(path, MAX_PEM_BYTES).map_err(|e| {
        let what = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => format!("cannot read it: {e}"),
        };
        problem(path, what)
    })
}

fn certificate_info(der: &CertificateDer<'_>) -> Result<CertificateInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let seconds = cert.validity().not_after.timestamp();
    let not_after = u64::try_from(seconds)
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .unwrap_or(UNIX_EPOCH);
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        not_after,
    })
}

/// Picks the certificate by SNI; swapped whole on reload.
#[derive(Debug, Default)]
pub struct SniResolver {
    set: RwLock<Arc<CertificateSet>>,
}

impl SniResolver {
    pub fn new(set: CertificateSet) -> Self {
        Self {
            set: RwLock::new(Arc::new(set)),
        }
    }

    pub fn replace(&self, set: CertificateSet) {
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
    }

    pub fn current(&self) -> Arc<CertificateSet> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current().pick(hello.server_name())
    }
}

/// The rustls server side of `tls-listen`: HTTP/1.1 only (a WebSocket
/// upgrade is an HTTP/1.1 request).
pub fn server_config(resolver: Arc<SniResolver>) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_or_else(
        |_| rustls::ServerConfig::builder().with_no_client_auth(),
        |b| b.with_no_client_auth(),
    )
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// `[relay] tls-listen` of a running relay: the certificates in force and
/// the acceptor every worker's TLS listener uses.
#[derive(Clone)]
pub struct Edge {
    pub resolver: Arc<SniResolver>,
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub local_addr: std::net::SocketAddr,
}

impl fmt::Debug for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Edge")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Edge {
    pub fn new(certificates: CertificateSet, local_addr: std::net::SocketAddr) -> Self {
        let resolver = Arc::new(SniResolver::new(certificates));
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(resolver.clone()));
        Self {
            resolver,
            acceptor,
            local_addr,
        }
    }
}

/// Accepts `wss://` clients until the listeners close (drain or shutdown).
pub(super) async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    let mut generation = shared.interrupts.session_parent();
    loop {
        let accepted = tokio::select! {
            () = shared.accepting.cancelled() => break,
            // A hand-over takes the listener (TLS sessions stay; new
            // clients go to the next process).
            () = generation.cancelled() => {
                let kind = super::handover::ListenerKind::Tls;
                if super::handover::offer_listener(&shared, &listener, kind).await.is_err() {
                    break;
                }
                generation = shared.interrupts.session_parent();
                continue;
            }
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let slot = ConnectionSlot::take(&shared);
                shared.tracker.spawn(tls_connection(
                    slot,
                    shared.clone(),
                    stream,
                    peer,
                    acceptor.clone(),
                ));
            }
            // Out of descriptors and the like: the plain listener reports
            // them; never spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The TLS handshake, bounded by `handshake-timeout` like the HTTP
/// request that follows; then the connection is bridged to a socket pair
/// (a TLS stream cannot be polled for raw readiness, as for TLS origins)
/// and goes the plain path with `X-Forwarded-Proto: https`.
async fn tls_connection(
    slot: ConnectionSlot,
    shared: Arc<Shared>,
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    let _ = tcp.set_nodelay(true);
    let limit = shared.config.borrow().relay.handshake_timeout;
    let accepted = tokio::select! {
        r = tokio::time::timeout(limit, acceptor.accept(tcp)) => r,
        () = shared.shutdown.cancelled() => return,
    };
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            refused(
                &shared,
                peer,
                Refusal::drop(format!("TLS handshake failed: {e}")),
            );
            return;
        }
        Err(_) => {
            refused(
                &shared,
                peer,
                Refusal::drop(format!(
                    "handshake timeout: the client did not finish its TLS handshake within {} s",
                    limit.as_secs()
                )),
            );
            return;
        }
    };
    match tokio::net::UnixStream::pair() {
        Ok((mut near, far)) => {
            let mut stream = stream;
            shared.tracker.spawn(async move {
                let _ = tokio::io::copy_bidirectional(&mut stream, &mut near).await;
            });
            handle_connection(slot, far, peer, true).await;
        }
        Err(e) => refused(
            &shared,
            peer,
            Refusal::drop(format!("cannot bridge the TLS client: {e}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn pair(dir: &Path, name: &str, params: rcgen::CertificateParams) -> CertificateFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let files = CertificateFiles {
            cert_file: dir.join(format!("{name}.pem")),
            key_file: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert_file, cert.pem()).unwrap();
        std::fs::write(&files.key_file, key.serialize_pem()).unwrap();
        files
    }

    fn load(files: &CertificateFiles) -> Result<Loaded, CertificateError> {
        load_pair(
            files,
            &rustls::crypto::ring::default_provider(),
            SystemTime::now(),
        )
    }

    fn params(name: &str) -> rcgen::CertificateParams {
        rcgen::CertificateParams::new(vec![name.to_string()]).unwrap()
    }

    #[test]
    fn a_good_pair_loads_with_its_subject_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = params("a.test");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "a.test");
        let loaded = load(&pair(dir.path(), "a", p)).unwrap();
        assert!(
            loaded.info.subject.contains("a.test"),
            "{}",
            loaded.info.subject
        );
        assert!(loaded.info.not_after > SystemTime::now());
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let good = pair(dir.path(), "a", params("a.test"));
        let other = pair(dir.path(), "b", params("b.test"));

        let missing = CertificateFiles {
            cert_file: dir.path().join("nope.pem"),
            key_file: good.key_file.clone(),
        };
        let e = load(&missing).err().unwrap();
        assert_eq!(e.file, missing.cert_file);
        assert_eq!(e.problem, "no such file");

        std::fs::write(dir.path().join("junk.pem"), "hello\n").unwrap();
        let junk = CertificateFiles {
            cert_file: dir.path().join("junk.pem"),
            key_file: good.key_file.clone(),
        };
        let e = load(&junk).err().unwrap();
        assert!(
            e.to_string().contains("junk.pem") && e.problem.contains("not PEM"),
            "{e}"
        );

        let key_as_cert = CertificateFiles {
            cert_file: good.cert_file.clone(),
            key_file: good.cert_file.clone(),
        };
        let e = load(&key_as_cert).err().unwrap();
        assert!(e.problem.contains("not PEM"), "{e}");

        let mismatched = CertificateFiles {
            cert_file: good.cert_file.clone(),
            key_file: other.key_file.clone(),
        };
        let e = load(&mismatched).err().unwrap();
        assert_eq!(e.file, other.key_file);
        assert!(e.problem.contains("does not match the certificate"), "{e}");

        let mut old = params("old.test");
        old.not_before = rcgen::date_time_ymd(2020, 1, 1);
        old.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let expired = pair(dir.path(), "old", old);
        let e = load(&expired).err().unwrap();
        assert!(e.problem.contains("expired on 2021-01-01"), "{e}");
    }

    #[test]
    fn sni_picks_the_domains_certificate_else_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let a = pair(dir.path(), "a", params("a.test"));
        let d = pair(dir.path(), "d", params("default.test"));
        let text = format!(
            "[relay]\ntls-listen = \"127.0.0.1:0\"\ntls-certificate = {{ cert-file = {:?}, key-file = {:?} }}\n\
             [[domain]]\nname = \"A.test\"\nacceleration = \"full-site\"\norigins = [\"127.0.0.1:1\"]\n\
             certificate = {{ cert-file = {:?}, key-file = {:?} }}\n",
            d.cert_file, d.key_file, a.cert_file, a.key_file
        );
        let config = Config::parse(&text, &dir.path().join("c.toml")).unwrap();
        let set = CertificateSet::load(&config).unwrap();
        let a_key = set.pick(Some("a.TEST")).unwrap();
        let d_key = set.pick(Some("other.test")).unwrap();
        assert!(!Arc::ptr_eq(&a_key, &d_key));
        assert!(Arc::ptr_eq(&set.pick(None).unwrap(), &d_key));
        assert!(set.own_info(&"A.test".into()).is_some());
        // A name without its own is shown the default, as it is served it.
        assert!(set.default_info().is_some());
        assert_eq!(set.info(&"other.test".into()), set.default_info());
        assert!(set.own_info(&"other.test".into()).is_none());
    }
}
