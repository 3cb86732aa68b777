//! TLS to the nodes: the `[tls]` section (CA, client certificate and key for mutual TLS) and
//! turning it into the `redis` crate's client. Applies to `rediss://` nodes only.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// TLS settings for every `rediss://` node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file of the CA(s) that signed the nodes' certificates. Default: empty, meaning the
    /// bundled public roots (webpki) and the system's.
    pub ca_file: String,
    /// PEM client certificate, for nodes that require mutual TLS (`tls-auth-clients yes`).
    /// Default: empty (no client certificate). Needs `key_file`.
    pub cert_file: String,
    /// PEM private key of `cert_file`. Default: empty.
    pub key_file: String,
    /// Accept any server certificate (no chain or hostname check). Default false. Only for
    /// tests: it gives up the protection TLS exists for.
    pub insecure_skip_verify: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("`tls.{field}`: cannot read {path}: {source}")]
    Read {
        field: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("`tls.{field}`: {path} holds no PEM block")]
    NotPem { field: &'static str, path: String },
    #[error("`tls.cert_file` and `tls.key_file` must be given together")]
    HalfPair,
}

fn read_pem(field: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(Path::new(path)).map_err(|source| TlsError::Read {
        field,
        path: path.to_string(),
        source,
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(TlsError::NotPem {
            field,
            path: path.to_string(),
        });
    }
    Ok(bytes)
}

impl TlsConfig {
    /// Checks that the named files exist and hold PEM, and that cert and key come together.
    pub fn check(&self) -> Result<(), TlsError> {
        self.certificates().map(|_| ())
    }

    /// The certificates to hand to the `redis` crate, or `None` to use its defaults.
    pub fn certificates(&self) -> Result<Option<redis::TlsCertificates>, TlsError> {
        if self.cert_file.is_empty() != self.key_file.is_empty() {
            return Err(TlsError::HalfPair);
        }
        let root_cert = (!self.ca_file.is_empty())
            .then(|| read_pem("ca_file", &self.ca_file))
            .transpose()?;
        let client_tls = if self.cert_file.is_empty() {
            None
        } else {
            Some(redis::ClientTlsConfig {
                client_cert: read_pem("cert_file", &self.cert_file)?,
                client_key: read_pem("key_file", &self.key_file)?,
            })
        };
        if root_cert.is_none() && client_tls.is_none() {
            return Ok(None);
        }
        Ok(Some(redis::TlsCertificates {
            client_tls,
            root_cert,
        }))
    }

    /// A client for `url`: with the configured certificates when the node uses TLS.
    pub fn client(&self, url: &str) -> Result<redis::Client, String> {
        if !url.starts_with("rediss://") {
            return redis::Client::open(url).map_err(|e| e.to_string());
        }
        let url = if self.insecure_skip_verify && !url.contains('#') {
            format!("{url}#insecure")
        } else {
            url.to_string()
        };
        match self.certificates().map_err(|e| e.to_string())? {
            Some(certs) => {
                redis::Client::build_with_tls(url.as_str(), certs).map_err(|e| e.to_string())
            }
            None => redis::Client::open(url.as_str()).map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_and_key_come_together_and_files_must_be_pem() {
        let half = TlsConfig {
            cert_file: "/x.pem".into(),
            ..TlsConfig::default()
        };
        assert!(matches!(half.check(), Err(TlsError::HalfPair)));
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let bad = TlsConfig {
            ca_file: junk.to_string_lossy().into(),
            ..TlsConfig::default()
        };
        let err = bad.check().unwrap_err().to_string();
        assert!(err.contains("tls.ca_file"), "{err}");
        let missing = TlsConfig {
            ca_file: "/nonexistent/ca.pem".into(),
            ..TlsConfig::default()
        };
        assert!(
            missing
                .check()
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/ca.pem")
        );
        assert!(TlsConfig::default().certificates().unwrap().is_none());
    }
}
