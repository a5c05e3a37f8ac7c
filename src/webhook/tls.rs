//! The webhook's serving certificate: read from PEM files and reloaded when their contents change
//! (a rewrite, or the kubelet's `..data` symlink swap), keeping the old pair on a bad new one.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use pki_types::pem::PemObject;
use pki_types::{CertificateDer, PrivateKeyDer};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

/// ring, not aws-lc-rs: it builds for the static musl binary with a plain C compiler.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the certificate file has no PEM certificate")]
    NoCertificate,
    #[error("the certificate file is not valid PEM: {0}")]
    CertificatePem(pki_types::pem::Error),
    #[error("the key file has no usable PEM private key: {0}")]
    KeyPem(pki_types::pem::Error),
    #[error("the certificate cannot be parsed: {0}")]
    Certificate(String),
    #[error("the key cannot be used with the certificate: {0}")]
    Key(rustls::Error),
}

/// A parsed certificate chain with its signing key.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// The leaf certificate's `notAfter`, in seconds since the Unix epoch.
    pub not_after: i64,
}

/// Parses a PEM certificate chain (leaf first) and its private key (PKCS#8, SEC1 or PKCS#1),
/// and checks that they belong together.
pub fn load_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Loaded, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::CertificatePem)?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate);
    };
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| TlsError::Certificate(e.to_string()))?
        .1
        .validity()
        .not_after
        .timestamp();
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(TlsError::KeyPem)?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(TlsError::Key)?;
    Ok(Loaded {
        key: Arc::new(key),
        not_after,
    })
}

/// The certificate and key files given to `serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a [`ServingCert::reload`] did.
#[derive(Debug)]
pub enum Reload {
    /// The files hold what was last seen (or are being swapped right now).
    Unchanged,
    /// A new pair is served from the next handshake on.
    Reloaded { not_after: i64 },
    /// The files changed but cannot be used; the previous pair is still served.
    Failed(TlsError),
}

/// What the files held at the last look, so one bad pair is reported once, not every poll.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Contents(Vec<u8>, Vec<u8>),
    Error(String),
}

/// The certificate rustls serves: it resolves every handshake to the current pair.
pub struct ServingCert {
    files: Option<CertFiles>,
    current: RwLock<Loaded>,
    seen: Mutex<Option<Seen>>,
}

impl fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCert")
            .field("files", &self.files)
            .field("not_after", &self.not_after())
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl ServingCert {
    /// Loads the pair from the files; [`ServingCert::reload`] looks at them again.
    pub fn from_files(files: CertFiles) -> Result<ServingCert, TlsError> {
        let (cert, key) = (read(&files.cert)?, read(&files.key)?);
        let loaded = load_pem(&cert, &key)?;
        Ok(ServingCert {
            files: Some(files),
            current: RwLock::new(loaded),
            seen: Mutex::new(Some(Seen::Contents(cert, key))),
        })
    }

    /// A fixed pair, never reloaded (`serve --dev`).
    pub fn fixed(cert_pem: &[u8], key_pem: &[u8]) -> Result<ServingCert, TlsError> {
        Ok(ServingCert {
            files: None,
            current: RwLock::new(load_pem(cert_pem, key_pem)?),
            seen: Mutex::new(None),
        })
    }

    pub fn files(&self) -> Option<&CertFiles> {
        self.files.as_ref()
    }

    pub fn current(&self) -> Loaded {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn not_after(&self) -> i64 {
        self.current().not_after
    }

    /// Reads the files and serves their pair if they changed and parse. Paths are opened anew
    /// each time, so a swapped `..data` symlink is followed to the new files.
    pub fn reload(&self) -> Reload {
        let Some(files) = &self.files else {
            return Reload::Unchanged;
        };
        let contents = read(&files.cert).and_then(|cert| {
            let key = read(&files.key)?;
            // The key may belong to a newer pair than the certificate read just before it:
            // leave a swap under way to the next poll rather than report a mismatch.
            Ok((read(&files.cert)? == cert).then_some((cert, key)))
        });
        let seen = match &contents {
            Ok(None) => return Reload::Unchanged,
            Ok(Some((cert, key))) => Seen::Contents(cert.clone(), key.clone()),
            Err(e) => Seen::Error(e.to_string()),
        };
        {
            let mut last = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if last.as_ref() == Some(&seen) {
                return Reload::Unchanged;
            }
            *last = Some(seen);
        }
        let loaded = contents.and_then(|pair| {
            let (cert, key) = pair.expect("checked above");
            load_pem(&cert, &key)
        });
        match loaded {
            Ok(loaded) => {
                let not_after = loaded.not_after;
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded;
                Reload::Reloaded { not_after }
            }
            Err(e) => Reload::Failed(e),
        }
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().key)
    }
}

/// The verifier of the apiserver's client certificate: any certificate for client
/// authentication issued by a CA of the PEM bundle at `path` (`--client-ca`).
pub fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let pem = read(path)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(TlsError::CertificatePem)?;
        roots
            .add(cert)
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Certificate(e.to_string()))
}

/// TLS 1.3 and 1.2, HTTP/2 and HTTP/1.1 by ALPN, the certificate from `cert` at each handshake;
/// with `clients`, only a client it verifies gets through the handshake.
pub fn server_config(
    cert: Arc<ServingCert>,
    clients: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match clients {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, RootCertStore};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::webhook::certs::{self, Bundle, Names};

    fn bundle() -> Bundle {
        certs::issue(&Names::default(), 10, None).unwrap()
    }

    fn leaf(bundle: &Bundle) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(bundle.cert.as_bytes()).unwrap()
    }

    fn served(cert: &ServingCert) -> CertificateDer<'static> {
        cert.current().key.cert[0].clone()
    }

    #[test]
    fn loads_a_pair_and_its_expiry() {
        let b = bundle();
        let loaded = load_pem(b.cert.as_bytes(), b.key.as_bytes()).unwrap();
        assert_eq!(loaded.key.cert[0], leaf(&b));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let days = (loaded.not_after - now) / 86400;
        assert!((9..=10).contains(&days), "{days}");
    }

    #[test]
    fn bad_pairs_are_errors() {
        let (a, b) = (bundle(), bundle());
        let cases: [(&[u8], &[u8], &str); 5] = [
            (
                b"",
                a.key.as_bytes(),
                "the certificate file has no PEM certificate",
            ),
            (
                b"not pem",
                a.key.as_bytes(),
                "the certificate file has no PEM",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                a.key.as_bytes(),
                "the certificate cannot be parsed",
            ),
            (
                a.cert.as_bytes(),
                b"garbage",
                "the key file has no usable PEM",
            ),
            (
                a.cert.as_bytes(),
                b.key.as_bytes(),
                "the key cannot be used with the certificate",
            ),
        ];
        for (cert, key, message) in cases {
            let err = load_pem(cert, key).unwrap_err().to_string();
            assert!(
                err.starts_with(message),
                "{err} does not start with {message}"
            );
        }
    }

    /// The layout a kubelet makes for a Secret volume: the files are symlinks through `..data`,
    /// which is swapped to a new timestamped directory by a rename.
    struct SecretVolume(tempfile::TempDir);

    impl SecretVolume {
        fn new(b: &Bundle) -> SecretVolume {
            let dir = tempfile::tempdir().unwrap();
            let volume = SecretVolume(dir);
            volume.write_version("..2026_01", b.cert.as_bytes(), b.key.as_bytes());
            symlink("..2026_01", volume.path("..data")).unwrap();
            symlink("..data/tls.crt", volume.path("tls.crt")).unwrap();
            symlink("..data/tls.key", volume.path("tls.key")).unwrap();
            volume
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.path().join(name)
        }

        fn files(&self) -> CertFiles {
            CertFiles {
                cert: self.path("tls.crt"),
                key: self.path("tls.key"),
            }
        }

        fn write_version(&self, version: &str, cert: &[u8], key: &[u8]) {
            fs::create_dir(self.path(version)).unwrap();
            fs::write(self.path(version).join("tls.crt"), cert).unwrap();
            fs::write(self.path(version).join("tls.key"), key).unwrap();
        }

        fn swap_to(&self, version: &str, cert: &[u8], key: &[u8]) {
            self.write_version(version, cert, key);
            symlink(version, self.path("..data_tmp")).unwrap();
            fs::rename(self.path("..data_tmp"), self.path("..data")).unwrap();
        }
    }

    #[test]
    fn a_symlink_swap_is_picked_up_and_a_corrupt_pair_keeps_the_old_one() {
        let (first, second) = (bundle(), bundle());
        let volume = SecretVolume::new(&first);
        let cert = ServingCert::from_files(volume.files()).unwrap();
        assert_eq!(served(&cert), leaf(&first));
        assert!(matches!(cert.reload(), Reload::Unchanged));

        volume.swap_to("..2026_02", second.cert.as_bytes(), second.key.as_bytes());
        assert!(matches!(cert.reload(), Reload::Reloaded { .. }));
        assert_eq!(served(&cert), leaf(&second));
        assert!(matches!(cert.reload(), Reload::Unchanged));

        // A certificate with the key of another pair, then plain garbage.
        volume.swap_to("..2026_03", first.cert.as_bytes(), second.key.as_bytes());
        assert!(matches!(cert.reload(), Reload::Failed(TlsError::Key(_))));
        assert_eq!(served(&cert), leaf(&second));
        assert!(matches!(cert.reload(), Reload::Unchanged), "reported once");
        volume.swap_to("..2026_04", b"garbage", b"garbage");
        assert!(matches!(cert.reload(), Reload::Failed(_)));
        assert_eq!(served(&cert), leaf(&second));

        volume.swap_to("..2026_05", first.cert.as_bytes(), first.key.as_bytes());
        assert!(matches!(cert.reload(), Reload::Reloaded { .. }));
        assert_eq!(served(&cert), leaf(&first));
    }

    #[test]
    fn plain_rewrites_and_missing_files() {
        let (first, second) = (bundle(), bundle());
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        fs::write(&files.cert, &first.cert).unwrap();
        fs::write(&files.key, &first.key).unwrap();
        let cert = ServingCert::from_files(files.clone()).unwrap();

        fs::remove_file(&files.key).unwrap();
        assert!(matches!(
            cert.reload(),
            Reload::Failed(TlsError::Read { .. })
        ));
        assert!(matches!(cert.reload(), Reload::Unchanged));
        assert_eq!(served(&cert), leaf(&first));

        fs::write(&files.cert, &second.cert).unwrap();
        fs::write(&files.key, &second.key).unwrap();
        assert!(matches!(cert.reload(), Reload::Reloaded { .. }));
        assert_eq!(served(&cert), leaf(&second));
    }

    #[test]
    fn a_fixed_pair_is_never_reloaded() {
        let b = bundle();
        let cert = ServingCert::fixed(b.cert.as_bytes(), b.key.as_bytes()).unwrap();
        assert!(cert.files().is_none());
        assert!(matches!(cert.reload(), Reload::Unchanged));
    }

    /// A real handshake in memory, with a client limited to one protocol version, presenting
    /// `identity` (a PEM certificate and key) if any, to a server that verifies clients with
    /// `clients` if any. What the server sent, or the handshake's error on either side.
    async fn exchange(
        version: &'static rustls::SupportedProtocolVersion,
        identity: Option<(String, String)>,
        clients: Option<Arc<dyn ClientCertVerifier>>,
    ) -> Result<Vec<u8>, String> {
        let b = bundle();
        let cert = Arc::new(ServingCert::fixed(b.cert.as_bytes(), b.key.as_bytes()).unwrap());
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(cert, clients).unwrap());
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(b.ca_cert.as_bytes()).unwrap())
            .unwrap();
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots);
        let client = match identity {
            Some((cert, key)) => client
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => client.with_no_client_auth(),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut stream = acceptor
                .accept(server_io)
                .await
                .map_err(|e| e.to_string())?;
            stream.write_all(b"hello").await.unwrap();
            stream.shutdown().await.unwrap();
            Ok::<(), String>(())
        });
        let name = ServerName::try_from("localhost").unwrap();
        let result = async {
            let mut stream = connector
                .connect(name, client_io)
                .await
                .map_err(|e| e.to_string())?;
            assert_eq!(stream.get_ref().1.protocol_version(), Some(version.version));
            let mut got = Vec::new();
            stream
                .read_to_end(&mut got)
                .await
                .map_err(|e| e.to_string())?;
            Ok(got)
        }
        .await;
        server.await.unwrap()?;
        result
    }

    async fn handshake(version: &'static rustls::SupportedProtocolVersion) -> Vec<u8> {
        exchange(version, None, None).await.unwrap()
    }

    #[tokio::test]
    async fn serves_tls_1_2_and_1_3() {
        assert_eq!(handshake(&rustls::version::TLS12).await, b"hello");
        assert_eq!(handshake(&rustls::version::TLS13).await, b"hello");
    }

    /// A CA, in PEM, and a client certificate it issued, with its key.
    fn client_ca() -> (String, (String, String)) {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let mut client = CertificateParams::new(vec!["kube-apiserver".to_string()]).unwrap();
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = client.signed_by(&key, &issuer).unwrap();
        (ca_pem, (cert.pem(), key.serialize_pem()))
    }

    #[tokio::test]
    async fn with_a_client_ca_only_its_clients_get_through() {
        let (ca, identity) = client_ca();
        let (_, stranger) = client_ca();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client-ca.crt");
        fs::write(&path, &ca).unwrap();
        let verifier = || Some(client_verifier(&path).unwrap());
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            assert_eq!(
                exchange(version, Some(identity.clone()), verifier()).await,
                Ok(b"hello".to_vec())
            );
            let anonymous = exchange(version, None, verifier()).await;
            assert!(anonymous.is_err(), "{anonymous:?}");
            let foreign = exchange(version, Some(stranger.clone()), verifier()).await;
            assert!(foreign.is_err(), "{foreign:?}");
        }
        // A serving certificate is no client certificate: its EKU says serverAuth.
        let b = bundle();
        let ca_path = dir.path().join("serving-ca.crt");
        fs::write(&ca_path, &b.ca_cert).unwrap();
        let serving = exchange(
            &rustls::version::TLS13,
            Some((b.cert.clone(), b.key.clone())),
            Some(client_verifier(&ca_path).unwrap()),
        )
        .await;
        assert!(serving.is_err(), "{serving:?}");
    }

    #[test]
    fn a_client_ca_file_without_certificates_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.crt");
        fs::write(&path, "").unwrap();
        assert!(matches!(
            client_verifier(&path),
            Err(TlsError::NoCertificate)
        ));
        let missing = dir.path().join("missing.crt");
        assert!(matches!(
            client_verifier(&missing),
            Err(TlsError::Read { .. })
        ));
    }
}
