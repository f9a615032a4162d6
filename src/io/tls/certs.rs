//! The server's TLS settings from PEM files, and their reload on SIGHUP.
//!
//! The certificate and key are served by [`Reloadable`], which rustls asks once per
//! handshake; a reload swaps the pair behind its lock, so new handshakes see the new
//! certificate while established sessions go on with the keys they agreed on.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

/// Where the server's certificate, key and (for client verification) CA live, and how
/// clients are verified: RabbitMQ's `ssl_options`.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
    /// Ask clients for a certificate and verify it against `ca` (`verify_peer`).
    pub verify_peer: bool,
    /// With `verify_peer`: refuse a client that presents none (`fail_if_no_peer_cert`).
    pub fail_if_no_peer_cert: bool,
}

/// The TLS configuration every shard's listener hands new connections, and the handle that
/// reloads its certificate.
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    current: Arc<Reloadable>,
    files: CertFiles,
}

impl ServerTls {
    /// Reads the files; TLS 1.2 and 1.3 only, with ring's cipher suites.
    pub fn load(files: CertFiles) -> io::Result<ServerTls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = certified_key(&files, &provider)?;
        let current = Arc::new(Reloadable {
            key: RwLock::new(Arc::new(key)),
            provider: provider.clone(),
        });
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(io::Error::other)?;
        let builder = match (&files.ca, files.verify_peer) {
            (Some(ca), true) => {
                let roots = Arc::new(roots(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = if files.fail_if_no_peer_cert {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                builder.with_client_cert_verifier(verifier.build().map_err(io::Error::other)?)
            }
            (None, true) => {
                return Err(io::Error::other(
                    "--tls-verify-peer needs --tls-ca FILE: the CA to verify client certificates against",
                ))
            }
            (_, false) => builder.with_no_client_auth(),
        };
        let config = builder.with_cert_resolver(current.clone());
        Ok(ServerTls {
            config: Arc::new(config),
            current,
            files,
        })
    }

    /// Reads the certificate and key files again; new handshakes use them, existing
    /// connections are not touched. On error the old pair stays in use.
    pub fn reload(&self) -> io::Result<()> {
        let key = certified_key(&self.files, &self.current.provider)?;
        let mut slot = self.current.key.write().unwrap_or_else(|e| e.into_inner());
        *slot = Arc::new(key);
        Ok(())
    }

    pub fn files(&self) -> &CertFiles {
        &self.files
    }
}

/// The current certificate and key, swapped by a reload.
struct Reloadable {
    key: RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for Reloadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reloadable")
    }
}

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

fn certified_key(files: &CertFiles, provider: &CryptoProvider) -> io::Result<CertifiedKey> {
    let chain = certificates(&files.cert)?;
    let key = private_key(&files.key)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        io::Error::other(format!(
            "TLS certificate {} and key {} do not go together: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })
}

fn read_pem(path: &Path, what: &str) -> io::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read TLS {what} {}: {e}", path.display()),
        )
    })
}

fn certificates(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let pem = read_pem(path, "certificate")?;
    let chain = rustls_pemfile::certs(&mut &pem[..])
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| bad_pem(path, e))?;
    if chain.is_empty() {
        return Err(bad_pem(path, "no CERTIFICATE block"));
    }
    Ok(chain)
}

fn private_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    let pem = read_pem(path, "key")?;
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| bad_pem(path, e))?
        .ok_or_else(|| bad_pem(path, "no PRIVATE KEY block"))
}

fn roots(path: &Path) -> io::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| bad_pem(path, e))?;
    }
    Ok(roots)
}

fn bad_pem(path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: not a usable PEM file: {e}", path.display()),
    )
}
