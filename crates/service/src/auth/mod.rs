//! Bearer-token authentication shared by the surfaces (HTTP now, the RESP front end's AUTH
//! next): a token store loaded from the configuration and an optional tokens file, reloadable
//! at run time, with constant-time lookups. No I/O except reading the tokens file.

mod tokens;

pub use quorumd_core::config::{AuthConfig, Scope, TokenEntry};
pub use tokens::{AuthError, Tokens};
