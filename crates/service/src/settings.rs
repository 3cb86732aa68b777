//! Loading the configuration: built-in defaults, then the TOML file, then `QUORUMD_*`
//! environment variables (nested keys joined by `__`), then every check, including the ones
//! that read files (the tokens file, TLS certificates), which the pure core cannot do.

use crate::auth::{AuthError, Tokens};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use quorumd_core::config::{Config, ConfigError, DEFAULT_CONFIG_PATH, Validated, invalid};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    #[error("configuration file {0} is a directory: give the path of the TOML file")]
    Directory(String),
    #[error("invalid configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error(
        "invalid configuration: environment variable {0} names no setting (QUORUMD_ then the \
         key, nested keys joined by __, e.g. QUORUMD_HTTP__LISTEN)"
    )]
    EmptyEnvKey(String),
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Loads defaults, then `path` (or the default path if it exists), then the environment.
pub fn load(path: Option<&Path>) -> Result<Config, SettingsError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    match path {
        Some(p) if !p.exists() => {
            return Err(SettingsError::MissingFile(p.display().to_string()));
        }
        Some(p) if p.is_dir() => return Err(SettingsError::Directory(p.display().to_string())),
        Some(p) => figment = figment.merge(Toml::file_exact(p)),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
            figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_PATH))
        }
        None => {}
    }
    // Figment drops a variable whose key is empty (or has an empty part) without a word: a
    // typo there would be ignored where every other unknown key is refused.
    if let Some(name) = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .find(|k| names_no_setting(k))
    {
        return Err(SettingsError::EmptyEnvKey(name));
    }
    figment = figment.merge(Env::prefixed("QUORUMD_").split("__"));
    figment
        .extract()
        .map_err(|e| SettingsError::Parse(Box::new(e)))
}

/// Whether `name` is a `QUORUMD_` variable whose key is empty or has an empty part.
fn names_no_setting(name: &str) -> bool {
    name.strip_prefix("QUORUMD_")
        .is_some_and(|key| key.split("__").any(str::is_empty))
}

/// Every rule: the core's checks, then the files the configuration names.
pub fn validate(config: Config) -> Result<Validated, ConfigError> {
    let validated = config.validate()?;
    check_schedule(&validated.config)?;
    check_files(&validated.config)?;
    Ok(validated)
}

/// `load`, then `validate`.
pub fn load_validated(path: Option<&Path>) -> Result<Validated, SettingsError> {
    Ok(validate(load(path)?)?)
}

/// The full-sweep schedule, parsed by the scheduler that will run it, so what passes here also
/// runs there.
fn check_schedule(config: &Config) -> Result<(), ConfigError> {
    let cron = &config.sync.full_sweep_cron;
    if cron.trim().is_empty() {
        return Ok(());
    }
    tokio_cron_scheduler::Job::new_async(cron.as_str(), |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|e| {
            invalid(
                "sync.full_sweep_cron",
                format!(
                    "{cron:?} is not a valid cron schedule (sec min hour day month weekday): {e}"
                ),
            )
        })
}

/// The checks that read files: the tokens (inline and the tokens file) and the TLS PEM files.
pub fn check_files(config: &Config) -> Result<(), ConfigError> {
    Tokens::from_config(&config.auth).map_err(|e| match e {
        AuthError::Invalid { field, message } => invalid(field, message),
        other => invalid("auth.tokens_file", other.to_string()),
    })?;
    quorumd_node::pool::tls::check(&config.tls).map_err(|e| invalid("tls", e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_with_an_empty_key_part_are_caught() {
        for bad in [
            "QUORUMD_",
            "QUORUMD_LOCKS__",
            "QUORUMD___X",
            "QUORUMD_A____B",
        ] {
            assert!(names_no_setting(bad), "{bad}");
        }
        for fine in ["QUORUMD_NODES", "QUORUMD_HTTP__LISTEN", "PATH", "QUORUMDX"] {
            assert!(!names_no_setting(fine), "{fine}");
        }
    }

    #[test]
    fn minimal_file_parses() {
        let toml = r#"
nodes = ["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"]

[http]
listen = "127.0.0.1:8379"

[resp]
listen = "127.0.0.1:7379"
"#;
        let cfg: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .unwrap();
        let v = cfg.validate().unwrap();
        assert_eq!((v.quorum.read, v.quorum.write), (2, 2));
        assert_eq!(v.config.timeouts.node_ms, 500);
    }

    #[test]
    fn unknown_field_is_named() {
        let err = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(
                "[http]\nlisten = \"127.0.0.1:1\"\nlisten_typo = 3\n",
            ))
            .extract::<Config>()
            .unwrap_err();
        assert!(err.to_string().contains("listen_typo"), "{err}");
    }

    fn one_node() -> Config {
        Config {
            nodes: vec!["redis://a:1".into()],
            ..Config::default()
        }
    }

    #[test]
    fn auth_errors_name_their_field() {
        let mut c = one_node();
        c.auth.enabled = true;
        assert_eq!(validate(c.clone()).unwrap_err().field(), "auth.tokens");
        c.auth.tokens_file = "/nonexistent/quorumd-tokens.toml".into();
        assert_eq!(validate(c).unwrap_err().field(), "auth.tokens_file");
    }

    #[test]
    fn a_bad_cron_schedule_is_named() {
        let mut c = one_node();
        c.sync.full_sweep_cron = "every sunday".into();
        assert_eq!(
            validate(c.clone()).unwrap_err().field(),
            "sync.full_sweep_cron"
        );
        c.sync.full_sweep_cron = String::new();
        assert!(
            validate(c).is_ok(),
            "an empty schedule turns the full sweep off"
        );
    }
}
