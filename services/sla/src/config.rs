//! The SLA service's own configuration section (`[sla]` in the file, `POS_SLA__…` in the
//! environment), validated at start-up.

use std::path::Path;

use pos_platform::config::ConfigError;
use serde::{Deserialize, Serialize};

/// The most organizations a ranking may list: each is a series on every scrape.
pub const MAX_TOP_ORGANIZATIONS: usize = 200;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct SlaConfig {
    /// How many organizations `pos_sla_organization_deadlines` ranks, by overdue and by at-risk
    /// deadlines (each ranking this long at most; 0: none). Bounded, because every organization
    /// listed is a series of its own.
    pub top_organizations: usize,
}

impl Default for SlaConfig {
    fn default() -> Self {
        SlaConfig { top_organizations: 20 }
    }
}

impl SlaConfig {
    /// Reads `[sla]` over the defaults and validates it.
    pub fn load(file: Option<&Path>) -> Result<SlaConfig, ConfigError> {
        let config: SlaConfig = pos_platform::config::section(file, "sla")?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.top_organizations > MAX_TOP_ORGANIZATIONS {
            return Err(ConfigError::invalid(
                "sla.top_organizations",
                format!("must be at most {MAX_TOP_ORGANIZATIONS}: each organization listed is a series"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_rank_twenty_and_a_long_ranking_is_refused() {
        assert_eq!(SlaConfig::default().top_organizations, 20);
        SlaConfig::default().validate().unwrap();
        SlaConfig { top_organizations: 0 }.validate().unwrap();
        let error = SlaConfig { top_organizations: 1000 }.validate().unwrap_err().to_string();
        assert!(error.contains("sla.top_organizations"), "{error}");
    }
}
