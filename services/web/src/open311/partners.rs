//! Partner systems' keys, and the platform tokens Open311 and the JSON API call the services with.
//!
//! A partner acts as an applicant whose account is `partner-<name>`: the services then let it
//! read exactly the appeals it submitted (intake and ticketing compare the account with the
//! token's subject), and its request ids are its own (intake keys idempotency by the caller). A
//! system role would read every appeal, and this door would have to filter for the services.

use std::sync::Arc;
use std::time::Duration;

use pos_platform::auth::{Authenticator, Role};
use pos_proto::v1 as pb;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::Open311Config;

/// How long a token minted for one HTTP request lives: the calls it makes, no more.
pub const CALL_TOKEN_TTL: Duration = Duration::from_secs(120);

/// The account public reads (classifier, directory, regions) are made under.
const PUBLIC_READER: &str = "api-public-reader";

/// A partner system as configured.
#[derive(Clone, Debug)]
pub struct Partner {
    pub name: String,
    key_sha256: [u8; 32],
    pub source: pb::Source,
}

impl Partner {
    /// The applicant account its appeals are submitted under.
    pub fn subject(&self) -> String {
        format!("partner-{}", self.name)
    }
}

/// The configured partners. A partner whose entry cannot work (no name, a hash that is not 64
/// hex digits, an unknown source) is left out, with the reason in the log.
#[derive(Clone, Debug, Default)]
pub struct Partners(Vec<Partner>);

impl Partners {
    pub fn from_config(config: &Open311Config) -> Partners {
        let mut partners = Vec::new();
        for entry in &config.partners {
            let name = entry.name.trim();
            let valid_name = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            let hash = hex::decode(entry.key_sha256.trim()).ok().and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
            let source = match entry.source.trim() {
                "" => Some(pb::Source::ExternalSystem),
                source => pb::Source::from_str_name(&format!("SOURCE_{}", source.to_ascii_uppercase()))
                    .filter(|s| *s != pb::Source::Unspecified),
            };
            match (valid_name, hash, source) {
                (true, Some(key_sha256), Some(source)) => {
                    partners.push(Partner { name: name.to_owned(), key_sha256, source })
                }
                _ => tracing::error!(
                    partner = %entry.name,
                    "open311 partner left out: it needs a name (letters, digits, - _ .), key_sha256 (64 hex digits) and a known source"
                ),
            }
        }
        Partners(partners)
    }

    /// The partner holding `key`. Every configured hash is compared, in constant time, so the
    /// time taken tells nothing about which or how much of a key matched.
    pub fn find(&self, key: &str) -> Option<&Partner> {
        if key.is_empty() {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for partner in &self.0 {
            if bool::from(partner.key_sha256.ct_eq(&digest)) {
                found = Some(partner);
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A platform token for `subject` as an applicant (a partner, an applicant by link, the public
/// reader), minted with the web's citizen minter (`App::citizen_minter`, shared with the widget).
pub fn applicant_token(minter: Option<&Arc<Authenticator>>, subject: &str, region_code: &str) -> Option<String> {
    let minter = minter?;
    match minter.mint(subject, "", region_code, &[Role::Applicant], CALL_TOKEN_TTL) {
        Ok(token) => Some(token),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "open311/api token not minted");
            None
        }
    }
}

/// A token for the public reads: the classifier, the directory, the regions.
pub fn public_token(minter: Option<&Arc<Authenticator>>) -> Option<String> {
    applicant_token(minter, PUBLIC_READER, "")
}

/// The request id intake receives: the partner's own token for the request when it sent one,
/// else a digest of what it sent, so that a retry of the same request registers one appeal. It
/// needs no partner prefix: intake keeps request ids per submitting account.
pub fn request_id(client_token: Option<&str>, canonical: &[(String, String)]) -> String {
    match client_token.map(str::trim).filter(|t| !t.is_empty()) {
        Some(token) => format!("client:{token}"),
        None => {
            let mut hasher = Sha256::new();
            for (key, value) in canonical {
                hasher.update((key.len() as u64).to_be_bytes());
                hasher.update(key.as_bytes());
                hasher.update((value.len() as u64).to_be_bytes());
                hasher.update(value.as_bytes());
            }
            format!("digest:{}", hex::encode(hasher.finalize()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::open311::config::PartnerConfig;

    fn config(entries: &[(&str, &str, &str)]) -> Open311Config {
        Open311Config {
            partners: entries
                .iter()
                .map(|(name, key, source)| PartnerConfig {
                    name: (*name).into(),
                    key_sha256: hex::encode(Sha256::digest(key.as_bytes())),
                    source: (*source).into(),
                })
                .collect(),
            ..Open311Config::default()
        }
    }

    #[test]
    fn keys_are_matched_by_their_hash_and_bad_entries_left_out() {
        let mut config = config(&[("fms", "key-one", ""), ("app", "key-two", "mobile_app"), ("bad", "k", "nonsense")]);
        config.partners.push(PartnerConfig { name: "short".into(), key_sha256: "abcd".into(), source: String::new() });
        let partners = Partners::from_config(&config);
        assert_eq!(partners.0.len(), 2);
        let fms = partners.find("key-one").unwrap();
        assert_eq!((fms.name.as_str(), fms.source), ("fms", pb::Source::ExternalSystem));
        assert_eq!(fms.subject(), "partner-fms");
        assert_eq!(partners.find("key-two").unwrap().source, pb::Source::MobileApp);
        assert!(partners.find("key-three").is_none());
        assert!(partners.find("").is_none());
    }

    #[test]
    fn a_retry_has_the_same_request_id_and_a_client_token_wins() {
        let fields = vec![("service_code".to_owned(), "a".to_owned()), ("description".to_owned(), "b".to_owned())];
        assert_eq!(request_id(None, &fields), request_id(None, &fields));
        let moved = vec![("service_code".to_owned(), "ab".to_owned()), ("description".to_owned(), String::new())];
        assert_ne!(request_id(None, &fields), request_id(None, &moved));
        assert_eq!(request_id(Some(" 42 "), &fields), "client:42");
        assert!(request_id(None, &fields).len() <= 128);
    }
}
