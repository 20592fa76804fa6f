//! TLS termination with rustls: ALPN `h2` and `http/1.1`, and a certificate that can be
//! swapped on SIGHUP without touching open connections (each handshake asks the resolver for
//! the current key).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use super::ktls::layout::KernelSuite;

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no certificate found")]
    NoCert(PathBuf),
    #[error("{0}: no private key found")]
    NoKey(PathBuf),
    #[error("unsupported private key: {0}")]
    Key(rustls::Error),
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// The current certificate, replaceable at run time.
#[derive(Debug)]
pub struct ReloadableCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// Loads the pair once.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(load_pair(cert, key)?)),
            cert: cert.to_owned(),
            key: key.to_owned(),
        }))
    }

    /// Re-reads both files; on error the old certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(load_pair(&self.cert, &self.key)?);
        match self.current.write() {
            Ok(mut guard) => *guard = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    /// An acceptor whose handshakes always use the current certificate, for connections
    /// rustls carries to the end.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        Ok(TlsAcceptor::from(Arc::new(self.config(false)?)))
    }

    /// The configuration of connections handed to the kernel after their handshake: secrets
    /// extractable, and only the cipher suites the kernel implements (all of ring's today).
    pub fn kernel_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        Ok(Arc::new(self.config(true)?))
    }

    fn config(self: &Arc<Self>, kernel: bool) -> Result<rustls::ServerConfig, TlsError> {
        let mut provider = rustls::crypto::ring::default_provider();
        if kernel {
            provider.cipher_suites.retain(|s| {
                let version = match s {
                    rustls::SupportedCipherSuite::Tls13(_) => rustls::ProtocolVersion::TLSv1_3,
                    rustls::SupportedCipherSuite::Tls12(_) => rustls::ProtocolVersion::TLSv1_2,
                };
                KernelSuite::of(version, s.suite()).is_some()
            });
        }
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.enable_secret_extraction = kernel;
        Ok(config)
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let guard = match self.current.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        Some(guard.clone())
    }
}

fn open(path: &Path) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
}

fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Read { path, source }
    };
    let certs = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err(cert))?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(cert.to_owned()));
    }
    let key_der = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(read_err(key))?
        .ok_or_else(|| TlsError::NoKey(key.to_owned()))?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(TlsError::Key)?;
    Ok(CertifiedKey::new(certs, signing))
}
