//! The certificate authorities that verify the servers a process connects to over TLS
//! (`servers_ca_file`): PostgreSQL (`sslmode=verify-full`), RabbitMQ (`amqps://`), Redis
//! (`rediss://`), and notify's SMTP relay unless it names its own. Read once, at start, so that a
//! missing or empty file stops the process with the setting's name instead of failing each
//! connection later.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::{ConfigError, PlatformConfig};

/// A PEM bundle of CA certificates and where it was read from.
#[derive(Clone)]
pub struct ServersCa {
    path: PathBuf,
    pem: String,
    certificates: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for ServersCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServersCa").field("path", &self.path).field("certificates", &self.certificates.len()).finish()
    }
}

impl ServersCa {
    /// The bundle at `path`, named `setting` in errors (e.g. `servers_ca_file`,
    /// `notify.smtp_ca_file`). It must hold at least one PEM certificate.
    pub fn load(setting: &str, path: &Path) -> Result<ServersCa, ConfigError> {
        let problem = |problem: String| ConfigError::invalid(setting, format!("{}: {problem}", path.display()));
        let bytes = std::fs::read(path).map_err(|e| problem(format!("cannot be read: {e}")))?;
        let pem = String::from_utf8(bytes).map_err(|_| problem("is not a PEM file".to_owned()))?;
        let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| problem(format!("is not a PEM certificate bundle: {e}")))?;
        if certificates.is_empty() {
            return Err(problem("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned()));
        }
        Ok(ServersCa { path: path.to_path_buf(), pem, certificates })
    }

    /// The platform's `servers_ca_file`, when set.
    pub fn from_config(config: &PlatformConfig) -> Result<Option<ServersCa>, ConfigError> {
        config.servers_ca_file.as_deref().map(|path| ServersCa::load("servers_ca_file", path)).transpose()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bundle as read, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Each certificate of the bundle, DER.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// Appended to a connection error, so that a refused certificate points at the bundle.
    pub fn describe(&self) -> String {
        format!("server certificates verified against {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_by_name() {
        let dir = crate::testing::TempDir::new();
        let empty = dir.0.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = ServersCa::load("servers_ca_file", &empty).unwrap_err().to_string();
        assert!(error.contains("servers_ca_file") && error.contains("empty.pem"), "{error}");
        let error = ServersCa::load("servers_ca_file", &dir.0.join("missing.pem")).unwrap_err().to_string();
        assert!(error.contains("servers_ca_file") && error.contains("cannot be read"), "{error}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn the_bundle_is_named_by_pos_servers_ca_file() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("POS_AUTH__HS256_SECRET", "dev");
            let config = PlatformConfig::load(None).map_err(|e| e.to_string())?;
            assert!(ServersCa::from_config(&config).map_err(|e| e.to_string())?.is_none());
            jail.create_file("ca.pem", "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n")?;
            jail.set_env("POS_SERVERS_CA_FILE", "ca.pem");
            let config = PlatformConfig::load(None).map_err(|e| e.to_string())?;
            let ca = ServersCa::from_config(&config).map_err(|e| e.to_string())?.expect("the bundle");
            assert_eq!((ca.path(), ca.certificates().len()), (Path::new("ca.pem"), 1));
            Ok(())
        });
    }
}
