//! Layered configuration: defaults, then a TOML file, then `POS_*` environment variables
//! (`__` separates sections: `POS_INTAKE__MAX_ATTACHMENT_BYTES`). Validated at start-up;
//! secrets never print.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A value that must never reach a log: its Debug and Display print `***`.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What every service reads: where the servers are, where to listen, how to authenticate.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct PlatformConfig {
    /// Where embedded mode keeps its SQLite files, bus journal, attachments and mailbox.
    pub data_dir: PathBuf,
    /// PostgreSQL; unset: a SQLite file per service in `data_dir`.
    pub database_url: Option<Secret>,
    /// Prepended to each service's PostgreSQL schema name, so that several deployments (or
    /// test runs) can share one database.
    pub schema_prefix: String,
    /// RabbitMQ; unset: the in-process bus, journaled in `data_dir`. The nodes of a cluster as
    /// a comma-separated list (`POS_AMQP_URL=amqp://a:5672/%2f,amqp://b:5672/%2f`) or a TOML
    /// list: the bus connects to the first that answers and moves to another when it is lost.
    #[serde(deserialize_with = "url_list")]
    pub amqp_url: Option<Secret>,
    /// Redis; unset: an in-process cache.
    pub redis_url: Option<Secret>,
    /// A PEM bundle of the CAs that sign the servers' certificates (`POS_SERVERS_CA_FILE`),
    /// trusted by TLS connections to PostgreSQL (`sslmode=verify-full`, unless the URL names its
    /// own `sslrootcert`), RabbitMQ (`amqps://`), Redis (`rediss://`) and notify's SMTP relay
    /// (unless `notify.smtp_ca_file` is set). Unset: the public web PKI roots only.
    pub servers_ca_file: Option<PathBuf>,
    pub grpc_addr: SocketAddr,
    /// Prometheus `/metrics`; unset: not served.
    pub metrics_addr: Option<SocketAddr>,
    /// OTLP/gRPC collector; unset: traces are not exported.
    pub otlp_endpoint: Option<String>,
    pub log_filter: Option<String>,
    pub json_logs: bool,
    /// The topic exchange all events go through.
    pub exchange: String,
    /// This deployment's name on the broker (`POS_DEPLOYMENT`): every consumer queue is
    /// `<exchange>.<deployment>.<consumer>`, so deployments sharing a broker and an exchange
    /// never share a queue. Unset: derived from `schema_prefix` (see
    /// [`PlatformConfig::deployment`]).
    pub deployment: Option<String>,
    /// Prefix of every cache key, so deployments can share a Redis.
    pub cache_prefix: String,
    /// Regions whose events this deployment consumes: `*` for all, or codes such as `41`
    /// (`POS_REGIONS=41,77` or `POS_REGIONS=[41, 77]`).
    #[serde(deserialize_with = "region_list")]
    pub regions: Vec<String>,
    pub db_max_connections: u32,
    /// Seconds in-flight work gets to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    pub auth: AuthConfig,
    /// Where the services this process does not host are served (`[peers]`,
    /// `POS_PEERS__ROUTING=http://a:50051,http://b:50051`): its own calls to them are balanced
    /// over those endpoints, and calls it receives for them are forwarded there.
    pub peers: crate::peers::PeersConfig,
    /// TLS of the gRPC server and of calls to peers (`[tls]`, `POS_TLS__CERT_FILE`, …).
    pub tls: crate::tls::TlsConfig,
    /// The gRPC server's rate limits, deadlines and message sizes (`[limits]`).
    pub limits: crate::limits::LimitsConfig,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        PlatformConfig {
            data_dir: PathBuf::from(".pos"),
            database_url: None,
            schema_prefix: String::new(),
            amqp_url: None,
            redis_url: None,
            servers_ca_file: None,
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_addr: None,
            otlp_endpoint: None,
            log_filter: None,
            json_logs: false,
            exchange: "pos.events".into(),
            deployment: None,
            cache_prefix: "pos".into(),
            regions: vec!["*".into()],
            db_max_connections: 10,
            shutdown_grace_secs: 20,
            auth: AuthConfig::default(),
            peers: crate::peers::PeersConfig::default(),
            tls: crate::tls::TlsConfig::default(),
            limits: crate::limits::LimitsConfig::default(),
        }
    }
}

/// Region codes from a list or a comma-separated string; numbers keep two digits (`2` → `02`).
fn region_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Code {
        Text(String),
        Number(u32),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Codes {
        List(Vec<Code>),
        One(Code),
    }
    let codes = match Codes::deserialize(deserializer)? {
        Codes::List(list) => list,
        Codes::One(one) => vec![one],
    };
    Ok(codes
        .into_iter()
        .flat_map(|code| match code {
            Code::Text(text) => text.split(',').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect(),
            Code::Number(n) => vec![format!("{n:02}")],
        })
        .collect())
}

/// One URL, or several as a list or a comma-separated string, kept as that string.
fn url_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Secret>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Urls {
        List(Vec<String>),
        One(String),
    }
    Ok(match Option::<Urls>::deserialize(deserializer)? {
        None => None,
        Some(Urls::One(url)) => Some(Secret::new(url)),
        Some(Urls::List(urls)) => Some(Secret::new(urls.join(","))),
    })
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Shared secret for HS256 tokens (development). Refused by a process with servers
    /// configured unless `allow_development_secret` says it is a development stack.
    pub hs256_secret: Option<Secret>,
    /// Accept `hs256_secret` in a process with PostgreSQL, RabbitMQ or Redis configured
    /// (compose, tests): anyone who learns the one shared secret can mint any role.
    pub allow_development_secret: bool,
    /// PEM public keys (RS256/ES256) accepted in production, one file each.
    pub public_key_files: Vec<PathBuf>,
    /// The identity provider's JSON Web Key Set (`POS_AUTH__JWKS_URL`): tokens it signs are
    /// verified with the keys it publishes there, fetched again as it rotates them.
    pub jwks_url: Option<String>,
    /// The key set is fetched again at the latest this long after the last fetch (sooner when
    /// the provider's `Cache-Control: max-age` says so), so that a withdrawn key stops working.
    pub jwks_refresh_secs: u64,
    /// At most one fetch in this many seconds: a token with an unknown key id asks for one, and
    /// a flood of forged key ids must not become a flood of requests to the provider.
    pub jwks_min_refresh_secs: u64,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    pub issuer: String,
    pub audience: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            hs256_secret: None,
            allow_development_secret: false,
            public_key_files: Vec::new(),
            jwks_url: None,
            jwks_refresh_secs: 600,
            jwks_min_refresh_secs: 30,
            leeway_secs: 30,
            issuer: "pos".into(),
            audience: "pos".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Read(#[from] Box<figment::Error>),
    #[error("invalid configuration: {field}: {problem}")]
    Invalid { field: String, problem: String },
}

impl ConfigError {
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { field: field.into(), problem: problem.into() }
    }
}

/// The sources, in order of precedence (last wins).
pub fn figment(file: Option<&Path>) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(PlatformConfig::default()));
    let file = file.map(Path::to_path_buf).or_else(|| std::env::var_os("POS_CONFIG").map(PathBuf::from));
    if let Some(file) = file {
        figment = figment.merge(Toml::file(file));
    }
    figment.merge(Env::prefixed("POS_").split("__").ignore(&["config"]))
}

/// Longest deployment name: it goes into every queue name, which AMQP limits to 255 bytes.
const MAX_DEPLOYMENT_NAME: usize = 48;

impl PlatformConfig {
    /// Whether nothing external is configured: the embedded mode, where the development secret
    /// may mint tokens.
    pub fn is_embedded(&self) -> bool {
        self.database_url.is_none() && self.amqp_url.is_none() && self.redis_url.is_none()
    }

    /// The deployment's name on the broker: `deployment` when set, else the schema prefix without
    /// its trailing separators (`kamchatka_` → `kamchatka`). The schema prefix is already what
    /// keeps two deployments' data apart, and it does not change when the regions do: so a queue
    /// stays with the inbox it feeds, and a deployment whose regions change keeps its queues.
    /// Empty (no prefix, nothing set): the exchange's one unnamed deployment, whose queues keep
    /// the short names `<exchange>.<consumer>`.
    pub fn deployment(&self) -> String {
        match &self.deployment {
            Some(name) => name.trim().to_owned(),
            None => self.schema_prefix.trim_end_matches(['_', '.', '-']).to_owned(),
        }
    }

    /// The queue of `consumer` (e.g. `routing.appeal-received`) in this deployment: the exchange
    /// first (test runs and environments on one broker use their own), then the deployment.
    pub fn queue_name(&self, consumer: &str) -> String {
        match self.deployment().as_str() {
            "" => format!("{}.{consumer}", self.exchange),
            deployment => format!("{}.{deployment}.{consumer}", self.exchange),
        }
    }

    pub fn load(file: Option<&Path>) -> Result<PlatformConfig, ConfigError> {
        let config: PlatformConfig = figment(file).extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, url, schemes) in [
            ("database_url", &self.database_url, &["postgres://", "postgresql://", "sqlite:"][..]),
            ("amqp_url", &self.amqp_url, &["amqp://", "amqps://"][..]),
            ("redis_url", &self.redis_url, &["redis://", "rediss://"][..]),
        ] {
            if let Some(url) = url
                && !schemes.iter().any(|s| url.expose().starts_with(s))
            {
                return Err(ConfigError::invalid(field, format!("must start with one of {schemes:?}")));
            }
        }
        // Each node of the list; the message names the position, never the URL (it holds a password).
        if let Some(urls) = &self.amqp_url {
            let nodes = crate::bus::amqp::node_urls(urls.expose());
            if nodes.is_empty() {
                return Err(ConfigError::invalid("amqp_url", "names no node"));
            }
            if let Some(position) =
                nodes.iter().position(|url| !url.starts_with("amqp://") && !url.starts_with("amqps://"))
            {
                return Err(ConfigError::invalid(
                    "amqp_url",
                    format!("node {} of {} must start with \"amqp://\" or \"amqps://\"", position + 1, nodes.len()),
                ));
            }
        }
        if self.exchange.trim().is_empty() {
            return Err(ConfigError::invalid("exchange", "must not be empty"));
        }
        let deployment = self.deployment();
        if deployment.len() > MAX_DEPLOYMENT_NAME
            || !deployment.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            let problem = format!(
                "{deployment:?} is not a broker name: up to {MAX_DEPLOYMENT_NAME} letters, digits, `_` or `-`{}",
                if self.deployment.is_none() { " (derived from schema_prefix; set POS_DEPLOYMENT)" } else { "" }
            );
            return Err(ConfigError::invalid("deployment", problem));
        }
        if self.regions.is_empty() {
            return Err(ConfigError::invalid("regions", "list `*` or at least one region code"));
        }
        self.peers.validate()?;
        self.tls.validate()?;
        self.limits.validate()?;
        if self.db_max_connections == 0 {
            return Err(ConfigError::invalid("db_max_connections", "must be at least 1"));
        }
        if self.auth.hs256_secret.is_none() && self.auth.public_key_files.is_empty() && self.auth.jwks_url.is_none() {
            return Err(ConfigError::invalid(
                "auth",
                "set auth.jwks_url or auth.public_key_files (production), or auth.hs256_secret (development)",
            ));
        }
        Ok(())
    }
}

/// Reads a service's own section (e.g. `[intake]`, `POS_INTAKE__…`), falling back to defaults.
pub fn section<T: DeserializeOwned + Serialize + Default>(file: Option<&Path>, name: &str) -> Result<T, ConfigError> {
    let figment = Figment::from(Serialized::defaults(T::default())).merge(figment(file).focus(name));
    Ok(figment.extract().map_err(Box::new)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let config =
            PlatformConfig { database_url: Some(Secret::new("postgres://u:p@h/d")), ..PlatformConfig::default() };
        assert!(!format!("{config:?}").contains("u:p"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn environment_overrides_defaults_and_is_validated() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("POS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
            jail.set_env("POS_AUTH__HS256_SECRET", "dev");
            jail.set_env("POS_REGIONS", "[41, 77]");
            let config = PlatformConfig::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.amqp_url.unwrap().expose(), "amqp://guest:guest@127.0.0.1:5672/%2f");
            assert_eq!(config.regions, vec!["41", "77"]);
            jail.set_env("POS_REGIONS", "02,16");
            assert_eq!(PlatformConfig::load(None).map_err(|e| e.to_string())?.regions, vec!["02", "16"]);
            jail.set_env("POS_REDIS_URL", "http://nope");
            let error = PlatformConfig::load(None).unwrap_err().to_string();
            assert!(error.contains("redis_url"), "{error}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn amqp_url_names_the_nodes_of_a_cluster() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("POS_AUTH__HS256_SECRET", "dev");
            let nodes = "amqp://pos:s3cret@mq-0:5672/%2f,amqp://pos:s3cret@mq-1:5672/%2f";
            jail.set_env("POS_AMQP_URL", nodes);
            let config = PlatformConfig::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.amqp_url.as_ref().unwrap().expose(), nodes);
            assert!(!format!("{config:?}").contains("s3cret"));

            // A list in the file means the same.
            jail.clear_env();
            jail.set_env("POS_AUTH__HS256_SECRET", "dev");
            jail.create_file(
                "pos.toml",
                r#"amqp_url = ["amqp://pos:s3cret@mq-0:5672/%2f", "amqp://pos:s3cret@mq-1:5672/%2f"]"#,
            )?;
            let config = PlatformConfig::load(Some(Path::new("pos.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.amqp_url.as_ref().unwrap().expose(), nodes);

            // A bad node is named by its place, and no password is printed.
            jail.set_env("POS_AMQP_URL", "amqp://pos:s3cret@mq-0:5672/%2f, http://pos:s3cret@mq-1");
            let error = PlatformConfig::load(None).unwrap_err().to_string();
            assert!(error.contains("amqp_url") && error.contains("node 2 of 2"), "{error}");
            assert!(!error.contains("s3cret"), "{error}");
            jail.set_env("POS_AMQP_URL", " , ");
            let error = PlatformConfig::load(None).unwrap_err().to_string();
            assert!(error.contains("amqp_url"), "{error}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn queues_carry_the_deployment_not_the_regions() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("POS_AUTH__HS256_SECRET", "dev");
            jail.set_env("POS_EXCHANGE", "pos.events");
            let unnamed = PlatformConfig::load(None).map_err(|e| e.to_string())?;
            assert_eq!(unnamed.queue_name("routing.appeal-received"), "pos.events.routing.appeal-received");

            // The issue's two deployments: one broker and exchange, their own regions and prefixes.
            jail.set_env("POS_SCHEMA_PREFIX", "kamchatka_");
            jail.set_env("POS_REGIONS", "41");
            let kamchatka = PlatformConfig::load(None).map_err(|e| e.to_string())?;
            jail.set_env("POS_SCHEMA_PREFIX", "tatarstan_");
            jail.set_env("POS_REGIONS", "16");
            let tatarstan = PlatformConfig::load(None).map_err(|e| e.to_string())?;
            assert_eq!(kamchatka.queue_name("sla.appeal-routed"), "pos.events.kamchatka.sla.appeal-routed");
            assert_ne!(kamchatka.queue_name("sla.appeal-routed"), tatarstan.queue_name("sla.appeal-routed"));

            // New regions, same deployment, same queue.
            jail.set_env("POS_REGIONS", "16,02");
            let widened = PlatformConfig::load(None).map_err(|e| e.to_string())?;
            assert_eq!(widened.queue_name("sla.appeal-routed"), tatarstan.queue_name("sla.appeal-routed"));

            jail.set_env("POS_DEPLOYMENT", "volga");
            let named = PlatformConfig::load(None).map_err(|e| e.to_string())?;
            assert_eq!(named.queue_name("sla.appeal-routed"), "pos.events.volga.sla.appeal-routed");
            jail.set_env("POS_DEPLOYMENT", "volga.east");
            let error = PlatformConfig::load(None).unwrap_err().to_string();
            assert!(error.contains("deployment"), "{error}");
            Ok(())
        });
    }
}
