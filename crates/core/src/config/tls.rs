//! The `[tls]` section: CA, client certificate and key for `rediss://` nodes. Reading the
//! files and building clients is the node layer's (`quorumd_node::pool::tls`).

use serde::{Deserialize, Serialize};

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
