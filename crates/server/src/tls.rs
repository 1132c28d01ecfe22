//! Serving HTTPS without a proxy: a certificate and key from PEM files, reloaded while serving.
//!
//! Certificates are short lived in practice (ACME renews every 60-90 days, private CAs often
//! daily), so the files are watched: a SIGHUP, or a change of either file's modification time
//! or size (checked every [`POLL`]), reloads them. A reload that fails (a half-written file,
//! a key that does not match) is logged and the certificate in use is kept; new connections get
//! the new certificate, existing ones keep theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::crypto::ring;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How often the files are looked at for a change.
pub const POLL: Duration = Duration::from_secs(2);

/// The certificate chain and private key files of one listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The certificate served now; swapped whole on reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

/// A TLS acceptor whose certificate follows its files.
#[derive(Clone)]
pub struct Tls {
    files: TlsFiles,
    current: Arc<Current>,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl Tls {
    /// Loads the files now: a listener never starts with a certificate it cannot serve.
    pub fn load(files: TlsFiles) -> Result<Self, String> {
        let key = certified_key(&files)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(key))));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Ok(Self { files, current, acceptor })
    }

    pub fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }

    /// Reads the files again; on success new connections get the new certificate.
    pub fn reload(&self) -> Result<(), String> {
        let key = certified_key(&self.files)?;
        *self.current.0.write() = Arc::new(key);
        Ok(())
    }

    /// Reloads on SIGHUP and whenever either file changes, for as long as the process runs.
    pub fn spawn_reloader(&self) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut seen = stamps(&tls.files);
            loop {
                #[cfg(unix)]
                let why = match hup.as_mut() {
                    Some(hup) => tokio::select! {
                        _ = hup.recv() => "SIGHUP",
                        () = tokio::time::sleep(POLL) => "",
                    },
                    None => {
                        tokio::time::sleep(POLL).await;
                        ""
                    }
                };
                #[cfg(not(unix))]
                let why = {
                    tokio::time::sleep(POLL).await;
                    ""
                };
                let now = stamps(&tls.files);
                let why = if why.is_empty() && now != seen { "the files changed" } else { why };
                if why.is_empty() {
                    continue;
                }
                seen = now;
                match tls.reload() {
                    Ok(()) => tracing::info!(cert = %tls.files.cert.display(), why, "TLS certificate reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, why, "TLS certificate not reloaded: still serving the previous one")
                    }
                }
            }
        })
    }
}

/// Modification time and size of both files (None where unreadable).
fn stamps(files: &TlsFiles) -> [Option<(SystemTime, u64)>; 2] {
    let stamp = |p: &Path| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
    [stamp(&files.cert), stamp(&files.key)]
}

fn certified_key(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let cert_pem = std::fs::read(&files.cert).map_err(|e| format!("reading {}: {e}", files.cert.display()))?;
    let key_pem = std::fs::read(&files.key).map_err(|e| format!("reading {}: {e}", files.key.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not a PEM certificate chain: {e}", files.cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate (`BEGIN CERTIFICATE`)", files.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{} is not a PEM private key: {e}", files.key.display()))?;
    let provider = ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: unsupported private key: {e}", files.key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!("{} does not match the certificate in {}: {e}", files.key.display(), files.cert.display())
    })?;
    Ok(certified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsFiles {
        let made = rcgen::generate_simple_self_signed(vec![name.into()]).expect("certificate");
        let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        std::fs::write(&files.cert, made.cert.pem()).expect("write");
        std::fs::write(&files.key, made.key_pair.serialize_pem()).expect("write");
        files
    }

    fn served_name(tls: &Tls) -> Vec<u8> {
        tls.current.0.read().end_entity_cert().expect("leaf").to_vec()
    }

    #[test]
    fn loads_reloads_and_keeps_the_old_certificate_on_a_bad_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_pair(dir.path(), "first.test");
        let tls = Tls::load(files.clone()).expect("load");
        let first = served_name(&tls);

        write_pair(dir.path(), "second.test");
        tls.reload().expect("reload");
        let second = served_name(&tls);
        assert_ne!(first, second, "the new certificate is served");

        // A key that does not match the certificate: refused, the previous pair kept.
        let other = rcgen::KeyPair::generate().expect("key");
        std::fs::write(&files.key, other.serialize_pem()).expect("write");
        let err = tls.reload().expect_err("mismatched key refused");
        assert!(err.contains("does not match"), "{err}");
        assert_eq!(served_name(&tls), second);

        std::fs::write(&files.cert, "garbage").expect("write");
        let err = tls.reload().expect_err("garbage refused");
        assert!(err.contains("cert.pem"), "{err}");
        assert_eq!(served_name(&tls), second);
        assert!(Tls::load(files).is_err(), "a listener never starts without a usable certificate");
    }
}
