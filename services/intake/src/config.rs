//! Intake's own configuration section (`[intake]` in the file, `POS_INTAKE__…` in the
//! environment), validated at start-up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pos_platform::config::{ConfigError, Secret};
use serde::{Deserialize, Serialize};

use crate::attachments::FileKind;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct IntakeConfig {
    /// Where attachment bytes go: a local folder (a path or `file:///…`), or an S3-compatible
    /// bucket (`s3://bucket/prefix`, see [`S3Config`]). Unset: `<data_dir>/attachments`.
    pub attachment_store_url: Option<String>,
    pub s3: S3Config,
    /// The largest attachment accepted, in bytes.
    pub max_attachment_bytes: u64,
    /// Attachment bytes one caller (one token subject) may upload per UTC day, counted in
    /// intake's database; `0` for no cap. Callers with the role `system` are not capped: each
    /// speaks for many people.
    pub max_upload_bytes_per_day: u64,
    /// How many attachments one appeal may carry.
    pub max_attachments: usize,
    /// The longest appeal text accepted, in characters (not bytes).
    pub max_text_chars: usize,
    /// Deprecated: one routing endpoint, used only when `[peers] routing` (`POS_PEERS__ROUTING`)
    /// lists none. Routing's replicas belong in the platform's `[peers]` section.
    pub routing_url: Option<String>,
    /// How often the classifier snapshot is reloaded from routing.
    pub classifier_refresh_secs: u64,
    /// How long an organization looked up in routing is trusted.
    pub organization_cache_secs: u64,
    /// Attachments never attached to an appeal are deleted after this many hours.
    pub orphan_attachment_hours: u64,
    /// What applicants, operators and systems may upload, told by content (`pdf`, `jpeg`, …):
    /// DOMAIN.md's list unless set.
    pub applicant_file_types: Vec<FileKind>,
    /// What staff may upload for answers and incidents: the citizens' list and `png`
    /// (screenshots) unless set.
    pub staff_file_types: Vec<FileKind>,
}

/// An S3-compatible object store (MinIO, Ceph, Yandex Object Storage …). Anything unset is
/// taken from the usual `AWS_*` environment variables.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:9000` for a local MinIO.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// Plain HTTP to the endpoint (local development only).
    pub allow_http: bool,
    /// Path-style requests (`endpoint/bucket/key`), which most self-hosted stores need.
    pub path_style: bool,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            attachment_store_url: None,
            s3: S3Config::default(),
            max_attachment_bytes: 10 * 1024 * 1024,
            max_upload_bytes_per_day: 200 * 1024 * 1024,
            max_attachments: 10,
            max_text_chars: 10_000,
            routing_url: None,
            classifier_refresh_secs: 30,
            organization_cache_secs: 300,
            orphan_attachment_hours: 24,
            applicant_file_types: FileKind::CITIZEN.to_vec(),
            staff_file_types: FileKind::STAFF.to_vec(),
        }
    }
}

impl IntakeConfig {
    /// Reads `[intake]` over the defaults and validates it.
    pub fn load(file: Option<&Path>) -> Result<IntakeConfig, ConfigError> {
        let config: IntakeConfig = pos_platform::config::section(file, "intake")?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attachment_bytes == 0 {
            return Err(ConfigError::invalid("intake.max_attachment_bytes", "must be at least 1"));
        }
        if self.max_text_chars == 0 {
            return Err(ConfigError::invalid("intake.max_text_chars", "must be at least 1"));
        }
        if self.applicant_file_types.is_empty() {
            return Err(ConfigError::invalid("intake.applicant_file_types", "must list at least one type"));
        }
        if self.staff_file_types.is_empty() {
            return Err(ConfigError::invalid("intake.staff_file_types", "must list at least one type"));
        }
        if self.classifier_refresh_secs == 0 {
            return Err(ConfigError::invalid("intake.classifier_refresh_secs", "must be at least 1"));
        }
        if let Some(url) = &self.attachment_store_url {
            if url.trim().is_empty() {
                return Err(ConfigError::invalid("intake.attachment_store_url", "must not be empty when set"));
            }
            if let Some((scheme, _)) = url.split_once("://")
                && !matches!(scheme, "file" | "s3" | "s3a")
            {
                return Err(ConfigError::invalid(
                    "intake.attachment_store_url",
                    format!("unsupported scheme {scheme:?}: use a folder, file:// or s3://"),
                ));
            }
        }
        Ok(())
    }

    /// Where attachments go when nothing is configured.
    pub fn attachment_location(&self, data_dir: &Path) -> String {
        self.attachment_store_url.clone().unwrap_or_else(|| data_dir.join("attachments").display().to_string())
    }

    pub fn classifier_refresh(&self) -> Duration {
        Duration::from_secs(self.classifier_refresh_secs)
    }

    pub fn organization_ttl(&self) -> Duration {
        Duration::from_secs(self.organization_cache_secs.max(1))
    }

    pub fn orphan_ttl(&self) -> Duration {
        Duration::from_secs(self.orphan_attachment_hours.max(1) * 3600)
    }
}

/// A local folder from a `file://` URL or a plain path.
pub fn local_folder(location: &str) -> Option<PathBuf> {
    match location.split_once("://") {
        Some(("file", path)) => Some(PathBuf::from(path)),
        Some(_) => None,
        None => Some(PathBuf::from(location)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_local() {
        let config = IntakeConfig::default();
        config.validate().unwrap();
        assert_eq!(config.attachment_location(Path::new("/var/pos")), "/var/pos/attachments");
        assert_eq!(local_folder("/var/pos/attachments"), Some(PathBuf::from("/var/pos/attachments")));
        assert_eq!(local_folder("file:///srv/att"), Some(PathBuf::from("/srv/att")));
        assert_eq!(local_folder("s3://bucket/prefix"), None);
    }

    #[test]
    fn rejects_unknown_schemes_and_zero_limits() {
        let config = IntakeConfig { attachment_store_url: Some("ftp://x/y".into()), ..IntakeConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("attachment_store_url"));
        let config = IntakeConfig { max_attachment_bytes: 0, ..IntakeConfig::default() };
        assert!(config.validate().is_err());
        let config = IntakeConfig { staff_file_types: Vec::new(), ..IntakeConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("staff_file_types"));
    }

    #[test]
    fn citizens_keep_the_domain_list_and_staff_add_screenshots() {
        let config = IntakeConfig::default();
        assert!(!config.applicant_file_types.contains(&FileKind::Png));
        assert!(config.applicant_file_types.contains(&FileKind::Jpeg));
        assert!(config.staff_file_types.contains(&FileKind::Png));
        let parsed: IntakeConfig = serde_json::from_str(r#"{"staff_file_types": ["pdf", "png"]}"#).unwrap();
        assert_eq!(parsed.staff_file_types, vec![FileKind::Pdf, FileKind::Png]);
    }
}
