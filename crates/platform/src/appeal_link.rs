//! The applicant's secret link to their appeal's page (`{public_url}/appeal/<token>`), sent in
//! the registration e-mail by notify and opened by the web service. Both sign and check it here,
//! so the two cannot drift.
//!
//! The token is `v1.<payload>.<mac>`, both parts base64url without padding: the payload is the
//! appeal id, the applicant's subject (the account the appeal was submitted under) and the
//! expiry in Unix seconds, separated by line feeds; the MAC is HMAC-SHA256 over `v1.<payload>`
//! with the link key. Whoever holds the link acts as that applicant on that appeal until the
//! expiry, which is why the web turns it into a session at once and drops it from the address.
//!
//! The key is its own secret (`appeal_link_key` in notify's and the web's sections). Where it is
//! not set, it is derived from `auth.hs256_secret` (development: one secret to configure), never
//! the JWT secret itself, so a link MAC can never pass for a token signature.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{AuthConfig, Secret};

type HmacSha256 = Hmac<Sha256>;

const VERSION: &str = "v1";
/// Separates the payload's fields; neither an appeal id nor a subject contains it.
const SEPARATOR: char = '\n';
/// What the development key is derived with, so that it differs from the JWT secret.
const DERIVATION_LABEL: &[u8] = b"pos appeal link v1";

/// What a link grants: `subject` acts as the applicant of `appeal_id` until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppealLink {
    pub appeal_id: String,
    pub subject: String,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("not an appeal link")]
    Malformed,
    #[error("the appeal link's signature does not match")]
    BadSignature,
    #[error("the appeal link has expired")]
    Expired,
}

/// The HMAC key of appeal links. Its Debug prints `***`.
#[derive(Clone)]
pub struct LinkKey(Vec<u8>);

impl fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkKey(***)")
    }
}

impl LinkKey {
    pub fn new(secret: &[u8]) -> LinkKey {
        LinkKey(secret.to_vec())
    }

    /// The configured key, or one derived from `auth.hs256_secret`; none when neither is set
    /// (then no link is sent and none is accepted).
    pub fn from_config(key: Option<&Secret>, auth: &AuthConfig) -> Option<LinkKey> {
        if let Some(key) = key.filter(|k| !k.expose().is_empty()) {
            return Some(LinkKey::new(key.expose().as_bytes()));
        }
        let secret = auth.hs256_secret.as_ref().filter(|s| !s.expose().is_empty())?;
        let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes()).ok()?;
        mac.update(DERIVATION_LABEL);
        Some(LinkKey(mac.finalize().into_bytes().to_vec()))
    }

    fn mac(&self, signed: &str) -> HmacSha256 {
        // HMAC takes a key of any length.
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("hmac accepts any key length");
        mac.update(signed.as_bytes());
        mac
    }

    pub fn sign(&self, link: &AppealLink) -> String {
        let payload = format!("{}{SEPARATOR}{}{SEPARATOR}{}", link.appeal_id, link.subject, link.expires_at);
        let signed = format!("{VERSION}.{}", URL_SAFE_NO_PAD.encode(payload));
        let tag = URL_SAFE_NO_PAD.encode(self.mac(&signed).finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    /// The link `token` grants at `now` (Unix seconds). The MAC is checked in constant time
    /// before anything of the payload is believed.
    pub fn verify(&self, token: &str, now: i64) -> Result<AppealLink, LinkError> {
        let (signed, tag) = token.rsplit_once('.').ok_or(LinkError::Malformed)?;
        let (version, payload) = signed.split_once('.').ok_or(LinkError::Malformed)?;
        if version != VERSION {
            return Err(LinkError::Malformed);
        }
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| LinkError::Malformed)?;
        self.mac(signed).verify_slice(&tag).map_err(|_| LinkError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| LinkError::Malformed)?;
        let payload = String::from_utf8(payload).map_err(|_| LinkError::Malformed)?;
        let mut fields = payload.split(SEPARATOR);
        let (Some(appeal_id), Some(subject), Some(expires_at), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(LinkError::Malformed);
        };
        let expires_at: i64 = expires_at.parse().map_err(|_| LinkError::Malformed)?;
        if appeal_id.is_empty() || subject.is_empty() {
            return Err(LinkError::Malformed);
        }
        if expires_at <= now {
            return Err(LinkError::Expired);
        }
        Ok(AppealLink { appeal_id: appeal_id.to_owned(), subject: subject.to_owned(), expires_at })
    }
}

/// The page's address under the web service's public URL.
pub fn url(public_url: &str, token: &str) -> String {
    format!("{}/appeal/{token}", public_url.trim_end_matches('/'))
}

/// Where the web service listens when `[web] addr` is not set.
pub const DEFAULT_WEB_ADDR: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

/// The web service's address as people and other sites reach it, without a trailing slash:
/// `[web] public_url`, else `http://<web.addr>`. The web names its snippets by it and notify its
/// links, so the two always agree.
pub fn public_base(public_url: &str, addr: std::net::SocketAddr) -> String {
    match public_url.trim().trim_end_matches('/') {
        "" => format!("http://{addr}"),
        url => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> AppealLink {
        AppealLink {
            appeal_id: "0193a3b0-0000-7000-8000-000000000001".into(),
            subject: "widget-4f2a".into(),
            expires_at: 2_000_000_000,
        }
    }

    #[test]
    fn appeal_link_round_trips_until_it_expires() {
        let key = LinkKey::new(b"k");
        let token = key.sign(&link());
        assert!(token.starts_with("v1.") && !token.contains(['/', '+', '=']), "{token}");
        assert_eq!(key.verify(&token, 1_999_999_999), Ok(link()));
        assert_eq!(key.verify(&token, 2_000_000_000), Err(LinkError::Expired));
        assert_eq!(url("https://pos.example.ru/", &token), format!("https://pos.example.ru/appeal/{token}"));
    }

    #[test]
    fn appeal_link_refuses_another_key_or_an_edited_payload() {
        let token = LinkKey::new(b"k").sign(&link());
        assert_eq!(LinkKey::new(b"other").verify(&token, 0), Err(LinkError::BadSignature));
        let (signed, tag) = token.rsplit_once('.').unwrap();
        let mut edited = link();
        edited.subject = "someone-else".into();
        let forged_payload = LinkKey::new(b"x").sign(&edited);
        let forged = format!("{}.{tag}", forged_payload.rsplit_once('.').unwrap().0);
        assert_eq!(LinkKey::new(b"k").verify(&forged, 0), Err(LinkError::BadSignature));
        assert_eq!(LinkKey::new(b"k").verify(signed, 0), Err(LinkError::Malformed));
        for junk in ["", "v1", "v2.a.b", "v1..", "v1.%%%.AAAA"] {
            assert!(LinkKey::new(b"k").verify(junk, 0).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn appeal_link_key_is_configured_or_derived_never_the_jwt_secret() {
        let auth = AuthConfig { hs256_secret: Some(Secret::new("jwt")), ..AuthConfig::default() };
        let derived = LinkKey::from_config(None, &auth).expect("derived in development");
        assert_ne!(derived.0, b"jwt");
        let configured = LinkKey::from_config(Some(&Secret::new("own")), &auth).unwrap();
        assert_eq!(configured.0, b"own");
        assert!(LinkKey::from_config(None, &AuthConfig::default()).is_none());
        assert_eq!(format!("{derived:?}"), "LinkKey(***)");
        // Notify and the web derive the same key from the same secret.
        let token = derived.sign(&link());
        assert!(LinkKey::from_config(None, &auth).unwrap().verify(&token, 0).is_ok());
    }
}
