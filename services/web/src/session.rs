//! Sessions and CSRF protection.
//!
//! A session lives on the server, in the platform's cache (Redis in production, so that any
//! replica of the cabinet finds it; a map in the embedded mode); the browser holds only a random
//! id in an `HttpOnly`, `SameSite=Lax` cookie, `Secure` wherever there is TLS. The cache key is
//! the id's SHA-256, so whoever reads the cache cannot take a session over. The session keeps
//! the person's bearer token: every call to the services carries it, and the services decide.
//!
//! Every POST carries a CSRF token: the session's own, or, before signing in, the one of a
//! short-lived cookie (double submit). Without it the request is refused with 403.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use http::header::COOKIE;
use pos_platform::auth::Role;
use pos_platform::cache::Cache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who is signed in, and the token the services receive on their behalf.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    pub token: String,
    pub subject: String,
    pub display_name: String,
    pub organization_id: String,
    pub organization_name: String,
    pub region_code: String,
    pub roles: Vec<Role>,
    pub csrf: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl Session {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has(*r))
    }

    /// The organization's zone, for every time the cabinet shows.
    pub fn time_zone(&self) -> chrono_tz::Tz {
        pos_regions::zone(&self.region_code).unwrap_or(chrono_tz::Europe::Moscow)
    }
}

/// A random token, hex-encoded (256 bits).
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Names and attributes of the cabinet's cookies.
#[derive(Clone, Copy, Debug)]
pub struct Cookies {
    pub secure: bool,
}

impl Cookies {
    /// The session cookie; with `Secure`, the `__Host-` prefix also pins it to this host and path.
    pub fn session_name(self) -> &'static str {
        if self.secure { "__Host-pos_session" } else { "pos_session" }
    }

    /// The sign-in form's CSRF cookie, before there is a session.
    pub fn sign_in_name(self) -> &'static str {
        if self.secure { "__Host-pos_sign_in" } else { "pos_sign_in" }
    }

    pub fn set(self, name: &str, value: &str, max_age: Duration) -> String {
        format!(
            "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            max_age.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    pub fn clear(self, name: &str) -> String {
        format!("{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}", if self.secure { "; Secure" } else { "" })
    }
}

/// The session store over the platform's cache.
#[derive(Clone)]
pub struct Sessions {
    cache: Arc<dyn Cache>,
    ttl: Duration,
}

impl Sessions {
    pub fn new(cache: Arc<dyn Cache>, ttl: Duration) -> Sessions {
        Sessions { cache, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn key(id: &str) -> String {
        format!("web.session.{}", hex::encode(Sha256::digest(id.as_bytes())))
    }

    /// Stores a new session; returns the id for the cookie.
    pub async fn create(&self, session: &Session) -> anyhow::Result<String> {
        let id = random_token();
        self.cache.set(&Sessions::key(&id), &serde_json::to_vec(session)?, self.ttl).await?;
        Ok(id)
    }

    /// The live session of `id`; none when unknown, expired or unreadable (sign in again).
    pub async fn get(&self, id: &str) -> Option<Session> {
        let bytes = match self.cache.get(&Sessions::key(id)).await {
            Ok(bytes) => bytes?,
            Err(error) => {
                tracing::warn!(%error, "session store unavailable");
                return None;
            }
        };
        let session: Session = serde_json::from_slice(&bytes).ok()?;
        (session.expires_at > chrono::Utc::now().timestamp()).then_some(session)
    }

    pub async fn remove(&self, id: &str) {
        if let Err(error) = self.cache.delete(&Sessions::key(id)).await {
            tracing::warn!(%error, "session could not be removed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "a=1; pos_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, "pos_session"), Some("abc"));
        assert_eq!(cookie(&headers, "pos"), None);
    }

    #[test]
    fn cookie_attributes_follow_the_transport() {
        let plain = Cookies { secure: false };
        let set = plain.set(plain.session_name(), "x", Duration::from_secs(60));
        assert_eq!(set, "pos_session=x; Path=/; HttpOnly; SameSite=Lax; Max-Age=60");
        let secure = Cookies { secure: true };
        let set = secure.set(secure.session_name(), "x", Duration::from_secs(60));
        assert!(set.starts_with("__Host-pos_session=x;") && set.ends_with("; Secure"), "{set}");
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd") && !same_secret("abc", "ab"));
    }

    #[tokio::test]
    async fn sessions_expire_and_are_removed() {
        let sessions = Sessions::new(Arc::new(pos_platform::cache::MemoryCache::new()), Duration::from_secs(60));
        let mut session = Session {
            token: "t".into(),
            subject: "s".into(),
            display_name: "S".into(),
            organization_id: "o".into(),
            organization_name: "O".into(),
            region_code: "41".into(),
            roles: vec![Role::Coordinator],
            csrf: random_token(),
            expires_at: chrono::Utc::now().timestamp() + 60,
        };
        let id = sessions.create(&session).await.unwrap();
        assert_eq!(sessions.get(&id).await.unwrap().subject, "s");
        assert!(sessions.get("another").await.is_none());
        sessions.remove(&id).await;
        assert!(sessions.get(&id).await.is_none());
        session.expires_at = chrono::Utc::now().timestamp() - 1;
        let id = sessions.create(&session).await.unwrap();
        assert!(sessions.get(&id).await.is_none(), "an expired session is no session");
    }
}
