//! TLS to the nodes: the `[tls]` section (CA, client certificate and key for mutual TLS) and
//! turning it into the `redis` crate's client. Applies to `rediss://` nodes only.

pub use quorumd_core::config::TlsConfig;
use std::path::Path;

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

/// Checks that the named files exist and hold PEM, and that cert and key come together.
pub fn check(cfg: &TlsConfig) -> Result<(), TlsError> {
    certificates(cfg).map(|_| ())
}

/// The certificates to hand to the `redis` crate, or `None` to use its defaults.
pub fn certificates(cfg: &TlsConfig) -> Result<Option<redis::TlsCertificates>, TlsError> {
    if cfg.cert_file.is_empty() != cfg.key_file.is_empty() {
        return Err(TlsError::HalfPair);
    }
    let root_cert = (!cfg.ca_file.is_empty())
        .then(|| read_pem("ca_file", &cfg.ca_file))
        .transpose()?;
    let client_tls = if cfg.cert_file.is_empty() {
        None
    } else {
        Some(redis::ClientTlsConfig {
            client_cert: read_pem("cert_file", &cfg.cert_file)?,
            client_key: read_pem("key_file", &cfg.key_file)?,
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
pub fn client(cfg: &TlsConfig, url: &str) -> Result<redis::Client, String> {
    if !url.starts_with("rediss://") {
        return redis::Client::open(url).map_err(|e| e.to_string());
    }
    let url = if cfg.insecure_skip_verify && !url.contains('#') {
        format!("{url}#insecure")
    } else {
        url.to_string()
    };
    match certificates(cfg).map_err(|e| e.to_string())? {
        Some(certs) => {
            redis::Client::build_with_tls(url.as_str(), certs).map_err(|e| e.to_string())
        }
        None => redis::Client::open(url.as_str()).map_err(|e| e.to_string()),
    }
}

/// A client for a Redis Cluster given by its seeds: TLS (with the configured certificates)
/// when the seeds are `rediss://`; credentials come from the seed URLs. Timeouts apply to each
/// master's connection, as to a server's.
pub fn cluster_client(
    cfg: &TlsConfig,
    seeds: &[String],
    timeouts: &quorumd_core::config::TimeoutConfig,
) -> Result<redis::cluster::ClusterClient, String> {
    let mut builder = redis::cluster::ClusterClientBuilder::new(seeds.iter().map(String::as_str))
        .connection_timeout(timeouts.connect())
        .response_timeout(timeouts.node())
        // Enough to follow a MOVED and an ASK; a master that is down is not retried into the
        // node timeout (quorumd's probe marks its shard down and requests skip it).
        .retries(2)
        .max_connection_attempts(std::num::NonZeroUsize::MIN);
    if seeds.iter().any(|s| s.starts_with("rediss://")) {
        builder = builder.tls(if cfg.insecure_skip_verify {
            redis::TlsMode::Insecure
        } else {
            redis::TlsMode::Secure
        });
        if let Some(certs) = certificates(cfg).map_err(|e| e.to_string())? {
            builder = builder.certs(certs);
        }
    }
    builder.build().map_err(|e| e.to_string())
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
        assert!(matches!(check(&half), Err(TlsError::HalfPair)));
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let bad = TlsConfig {
            ca_file: junk.to_string_lossy().into(),
            ..TlsConfig::default()
        };
        let err = check(&bad).unwrap_err().to_string();
        assert!(err.contains("tls.ca_file"), "{err}");
        let missing = TlsConfig {
            ca_file: "/nonexistent/ca.pem".into(),
            ..TlsConfig::default()
        };
        assert!(
            check(&missing)
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/ca.pem")
        );
        assert!(certificates(&TlsConfig::default()).unwrap().is_none());
    }
}
