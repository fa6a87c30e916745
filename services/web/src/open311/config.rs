//! Open311's and the JSON API's settings (`[web.open311]`): the partner systems and their keys.
//!
//! ```toml
//! [web.open311]
//! default_jurisdiction = "41"
//! per_minute = 600
//! burst = 300
//!
//! [[web.open311.partners]]
//! name = "fixmystreet"
//! # sha256sum of the key handed to the partner; the key itself is never stored.
//! key_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! source = "external_system"
//! ```

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct Open311Config {
    /// The systems that may post requests (Open311 `api_key`, the JSON API's `X-Api-Key`).
    pub partners: Vec<PartnerConfig>,
    /// The region a request goes to when it names no `jurisdiction_id` (a deployment for one
    /// region). Empty: `jurisdiction_id` is required.
    pub default_jurisdiction: String,
    /// What discovery.json gives as the contact for the integration.
    pub contact: String,
    /// Requests a minute from one client (IP) to each door, Open311 and the JSON API.
    pub per_minute: u32,
    /// Of them at once.
    pub burst: u32,
}

impl Default for Open311Config {
    fn default() -> Self {
        Open311Config {
            partners: Vec::new(),
            default_jurisdiction: String::new(),
            contact: String::new(),
            per_minute: 600,
            burst: 300,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PartnerConfig {
    /// Short and stable: the appeals it submits belong to the account `partner-<name>`, so a
    /// partner renamed no longer reads its earlier requests.
    pub name: String,
    /// SHA-256 of the partner's key, hex (`printf %s "$KEY" | sha256sum`).
    pub key_sha256: String,
    /// The channel its appeals are recorded under (`Source` without the prefix, lowercase):
    /// `external_system` (the default), `mobile_app`, `social_network`, `epgu`, ...
    pub source: String,
}
