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
    /// TLS sessions to resume, shared by every configuration built from this certificate.
    sessions: Arc<dyn rustls::server::StoresServerSessions>,
}

impl ReloadableCert {
    /// Loads the pair once.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(load_pair(cert, key)?)),
            cert: cert.to_owned(),
            key: key.to_owned(),
            // An edge sees many clients: rustls' default of 256 would resume few of them.
            sessions: rustls::server::ServerSessionMemoryCache::new(16 * 1024),
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
        Ok(TlsAcceptor::from(Arc::new(self.config(None)?)))
    }

    /// The configuration of connections handed to the kernel after their handshake: secrets
    /// extractable, and only the cipher suites the kernel `takes`.
    pub fn kernel_config(
        self: &Arc<Self>,
        takes: impl Fn(KernelSuite) -> bool,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        Ok(Arc::new(self.config(Some(&takes))?))
    }

    /// `kernel`: the suites a connection handed to the kernel may use.
    fn config(
        self: &Arc<Self>,
        kernel: Option<&dyn Fn(KernelSuite) -> bool>,
    ) -> Result<rustls::ServerConfig, TlsError> {
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(takes) = kernel {
            provider.cipher_suites.retain(|s| {
                let version = match s {
                    rustls::SupportedCipherSuite::Tls13(_) => rustls::ProtocolVersion::TLSv1_3,
                    rustls::SupportedCipherSuite::Tls12(_) => rustls::ProtocolVersion::TLSv1_2,
                };
                KernelSuite::of(version, s.suite()).is_some_and(takes)
            });
        }
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.enable_secret_extraction = kernel.is_some();
        // One session cache for both kinds of connection: a client resumes wherever it lands.
        config.session_storage = self.sessions.clone();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_for_the_kernel_offer_only_the_suites_it_takes() {
        let dir = std::env::temp_dir().join(format!("edge-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).expect("cert");
        std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("key");
        let loaded = ReloadableCert::load(&cert_path, &key_path).expect("load");
        let only = KernelSuite::ALL[0];
        let config = loaded
            .kernel_config(|suite| suite == only)
            .expect("kernel config");
        let suites: Vec<_> = config
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(suites, [rustls::CipherSuite::TLS13_AES_128_GCM_SHA256]);
        assert!(config.enable_secret_extraction);
        let user = loaded.config(None).expect("userspace config");
        assert!(user.crypto_provider().cipher_suites.len() > 1);
        assert!(!user.enable_secret_extraction);
        std::fs::remove_dir_all(&dir).ok();
    }
}
