//! A test CA, server certificates signed by it, and a verifying TLS client.
//!
//! Certificates are issued by a CA the client trusts, so the tests verify the chain and the
//! name (`127.0.0.1` / `localhost`) for real instead of disabling verification.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::http::{ReadTimeout, ResponseReader, IO_TIMEOUT};

/// A certificate authority for one test.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
}

/// A server certificate and its key, PEM-encoded, plus the DER to compare with what a peer
/// presents.
#[derive(Clone)]
pub struct ServerCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

impl TestCa {
    /// A fresh CA with its own key.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "e2e test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("generate CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        Self { cert, key }
    }

    /// The CA certificate in PEM, for `curl --cacert`.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// Issues a certificate for `localhost` and `127.0.0.1` with `common_name` and `serial`,
    /// so two issues are distinguishable.
    pub fn issue(&self, common_name: &str, serial: u64) -> ServerCert {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut params = CertificateParams::new(names).expect("server cert params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.serial_number = Some(serial.into());
        let key = KeyPair::generate().expect("generate server key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign server cert");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A client configuration trusting only this CA and offering `alpn` protocols.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.cert.der().to_vec()))
            .expect("trust the test CA");
        // The provider is explicit so the test never depends on a process-wide default.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|proto| proto.to_vec()).collect();
        Arc::new(config)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// Paths of a certificate / key pair on disk.
pub struct CertFiles {
    /// `--tls-cert`.
    pub cert: PathBuf,
    /// `--tls-key`.
    pub key: PathBuf,
}

impl CertFiles {
    /// Names the pair `server.crt` / `server.key` inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        }
    }

    /// Writes `cert` over the pair, each file atomically (temp file + rename) so a reload
    /// never reads half a PEM.
    pub fn install(&self, cert: &ServerCert) {
        for (path, contents) in [(&self.cert, &cert.cert_pem), (&self.key, &cert.key_pem)] {
            let staging = path.with_extension("staging");
            fs::write(&staging, contents).expect("write PEM");
            fs::rename(&staging, path).expect("rename PEM into place");
        }
    }
}

/// A client TLS stream over TCP.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

impl ReadTimeout for TlsStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }
}

/// Connects to `addr`, verifying the server as `127.0.0.1`, and completes the handshake.
pub fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> io::Result<ResponseReader<TlsStream>> {
    let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let name = ServerName::IpAddress(addr.ip().into());
    let connection = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(ResponseReader::new(stream))
}

/// The leaf certificate the server presented on `stream`.
pub fn peer_leaf(stream: &TlsStream) -> Option<Vec<u8>> {
    stream
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.to_vec())
}

/// The ALPN protocol the server selected.
pub fn alpn(stream: &TlsStream) -> Option<Vec<u8>> {
    stream.conn.alpn_protocol().map(<[u8]>::to_vec)
}
