//! The trust roots for `wss://` origins (and the probe's `wss://` targets):
//! the public web PKI, plus the operator's own CA certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why the roots cannot be set up; names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("cannot read origin-ca-file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("origin-ca-file {}: {source}", path.display())]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("origin-ca-file {}: {source}", path.display())]
    Certificate {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("origin-ca-file {} holds no PEM certificate", path.display())]
    Empty { path: PathBuf },
    #[error("{0}")]
    Protocols(rustls::Error),
}

/// A client config trusting the public web PKI, plus the CA certificates in
/// `extra_ca_file` (`origin-ca-file`, the probe's `--ca-file`) if any.
pub fn tls_client_config(
    extra_ca_file: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, RootsError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_ca_file {
        add_ca_file(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(RootsError::Protocols)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn add_ca_file(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), RootsError> {
    let path_buf = || path.to_path_buf();
    let certs = CertificateDer::pem_file_iter(path).map_err(|source| RootsError::Read {
        path: path_buf(),
        source,
    })?;
    let mut added = 0;
    for cert in certs {
        let cert = cert.map_err(|source| RootsError::Pem {
            path: path_buf(),
            source,
        })?;
        roots.add(cert).map_err(|source| RootsError::Certificate {
            path: path_buf(),
            source,
        })?;
        added += 1;
    }
    if added == 0 {
        return Err(RootsError::Empty { path: path_buf() });
    }
    Ok(())
}
