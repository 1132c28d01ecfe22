//! How every outgoing HTTP client of Deconflict trusts servers, and how its errors read.
//!
//! Real F3548 ecosystems are HTTPS between USSs and to the DSS. A client built here trusts
//! Mozilla's roots (compiled in, so a machine without a CA bundle still works), the system's
//! roots where it has them, and the private CAs an organization names with `--ca-cert`
//! (test ecosystems, a pool's internal CA). Nothing here turns verification off.

use std::path::{Path, PathBuf};

/// The certificate authorities a process trusts beyond the public roots.
#[derive(Clone, Default)]
pub struct Trust {
    extra: Vec<reqwest::Certificate>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Trust(public roots + {} private CA certificates)", self.extra.len())
    }
}

impl Trust {
    /// Reads PEM files (each may hold several certificates); an unreadable file or one without a
    /// certificate is an error naming it.
    pub fn from_pem_files(paths: &[PathBuf]) -> Result<Self, String> {
        let mut extra = Vec::new();
        for path in paths {
            extra.extend(read_pem(path)?);
        }
        Ok(Self { extra })
    }

    /// How many private CAs were added.
    pub fn extra_count(&self) -> usize {
        self.extra.len()
    }

    /// A client builder with this trust: public roots plus the private CAs. Callers add their
    /// own timeouts and limits.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(true);
        for cert in &self.extra {
            builder = builder.add_root_certificate(cert.clone());
        }
        builder
    }
}

fn read_pem(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading the CA certificate {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&bytes)
        .map_err(|e| format!("{} is not a PEM certificate bundle: {}", path.display(), error_chain(&e)))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate (`BEGIN CERTIFICATE`)", path.display()));
    }
    Ok(certs)
}

/// An error and every cause under it, `outer: cause: root cause`, each said once. reqwest's
/// own text is only "error sending request for url (...)": the reason (a refused connection,
/// an unknown certificate issuer, a name mismatch) is in its sources.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_names_each_cause_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("invalid peer certificate: UnknownIssuer"));
        assert_eq!(error_chain(&e), "error sending request: invalid peer certificate: UnknownIssuer");
    }

    #[test]
    fn ca_files_are_read_or_refused_with_their_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = Trust::from_pem_files(std::slice::from_ref(&empty)).expect_err("refused");
        assert!(err.contains("empty.pem") && err.contains("no PEM certificate"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = Trust::from_pem_files(&[missing]).expect_err("refused");
        assert!(err.contains("missing.pem"), "{err}");

        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.cert.pem()).expect("write");
        let trust = Trust::from_pem_files(&[good]).expect("read");
        assert_eq!(trust.extra_count(), 1);
        trust.client_builder().build().expect("client");
    }
}
