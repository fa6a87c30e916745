//! The `[routing]` configuration section (`POS_ROUTING__…` in the environment).

use std::path::PathBuf;

use pos_platform::config::ConfigError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct RoutingConfig {
    /// The standard review period, calendar days, for facts with `period_days = 0`.
    pub standard_period_days: i32,
    /// The fast-track review period, calendar days, for fast-track facts with `period_days = 0`.
    pub fast_track_period_days: i32,
    /// How long a classifier or directory snapshot stays in the cache. Versioned keys make
    /// changes visible at once, so this only bounds the memory old versions hold.
    pub cache_ttl_secs: u64,
    /// Who answers when even the applicant's region is unknown (or has no cabinet): a message
    /// is never lost, it lands where someone can redirect it.
    pub fallback_organization_id: String,
    /// The zone of deadlines when the addressee's region is unknown.
    pub fallback_time_zone: String,
    /// Load the seed data on start-up when the classifier and the directory are empty.
    pub seed_on_start: bool,
    /// A directory with `regions.toml`, `classifier.toml` and `organizations.toml` to seed
    /// from instead of the copies built into the binary.
    pub seed_dir: Option<PathBuf>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            standard_period_days: 30,
            fast_track_period_days: 10,
            cache_ttl_secs: 3600,
            fallback_organization_id: "mintsifry-sc".into(),
            fallback_time_zone: "Europe/Moscow".into(),
            seed_on_start: true,
            seed_dir: None,
        }
    }
}

impl RoutingConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, days) in [
            ("standard_period_days", self.standard_period_days),
            ("fast_track_period_days", self.fast_track_period_days),
        ] {
            if !(1..=365).contains(&days) {
                return Err(ConfigError::invalid(format!("routing.{field}"), "must be between 1 and 365 days"));
            }
        }
        if self.cache_ttl_secs == 0 {
            return Err(ConfigError::invalid("routing.cache_ttl_secs", "must be at least 1"));
        }
        if self.fallback_organization_id.trim().is_empty() {
            return Err(ConfigError::invalid("routing.fallback_organization_id", "must name an organization"));
        }
        if !self.fallback_time_zone.contains('/') {
            return Err(ConfigError::invalid(
                "routing.fallback_time_zone",
                "must be an IANA zone such as Europe/Moscow",
            ));
        }
        Ok(())
    }

    pub fn periods(&self) -> crate::resolve::Periods {
        crate::resolve::Periods {
            standard_days: self.standard_period_days,
            fast_track_days: self.fast_track_period_days,
        }
    }

    pub fn fallback(&self) -> crate::resolve::Fallback {
        crate::resolve::Fallback {
            organization_id: self.fallback_organization_id.clone(),
            time_zone: self.fallback_time_zone.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused() {
        RoutingConfig::default().validate().unwrap();
        let config = RoutingConfig { fast_track_period_days: 0, ..RoutingConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("fast_track_period_days"));
        let config = RoutingConfig { fallback_time_zone: "MSK".into(), ..RoutingConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("fallback_time_zone"));
    }
}
