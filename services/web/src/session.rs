//! Sessions and CSRF protection.
//!
//! A session lives on the server, in the platform's cache (Redis in production, so that any
//! replica of the cabinet finds it; a map in the embedded mode); the browser holds only a random
//! id in an `HttpOnly`, `SameSite=Lax` cookie, `Secure` wherever there is TLS. The cache key is
//! the id's SHA-256, so whoever reads the cache cannot take a session over. The session keeps
//! the person's bearer token: every call to the services carries it, and the services decide.
//! A sign-in through the identity provider keeps, until the person comes back, its pending
//! secrets (state, nonce, PKCE verifier) the same way, under a cookie of its own.
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
    /// Present when the person signed in through the identity provider.
    #[serde(default)]
    pub provider: Option<ProviderSession>,
}

/// What a session signed in through the identity provider keeps besides the token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProviderSession {
    /// The provider's ID token, for signing out there (`id_token_hint`).
    pub id_token: String,
    /// When `Session::token` runs out (Unix seconds): a short-lived token is minted again from
    /// the session while the session lasts.
    pub token_expires_at: i64,
    /// The roles came from the staff directory (the ID token had no roles claim): they are
    /// read again with each new token.
    #[serde(default)]
    pub roles_from_directory: bool,
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

    /// The pending sign-in at the identity provider. `SameSite=Lax` lets it come back with the
    /// provider's redirect, a top-level GET.
    pub fn pending_name(self) -> &'static str {
        if self.secure { "__Host-pos_pending" } else { "pos_pending" }
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

    fn pending_key(id: &str) -> String {
        format!("web.pending.{}", hex::encode(Sha256::digest(id.as_bytes())))
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

    /// Stores `session` again under its id (a new token), for the rest of its life.
    pub async fn update(&self, id: &str, session: &Session) -> anyhow::Result<()> {
        let left = session.expires_at - chrono::Utc::now().timestamp();
        anyhow::ensure!(left > 0, "the session has ended");
        self.cache.set(&Sessions::key(id), &serde_json::to_vec(session)?, Duration::from_secs(left as u64)).await?;
        Ok(())
    }

    /// Keeps a pending sign-in at the identity provider for `ttl`; returns the id for its cookie.
    pub async fn put_pending(&self, pending: &crate::oidc::PendingSignIn, ttl: Duration) -> anyhow::Result<String> {
        let id = random_token();
        self.cache.set(&Sessions::pending_key(&id), &serde_json::to_vec(pending)?, ttl).await?;
        Ok(id)
    }

    /// The pending sign-in of `id`, once: an answer from the provider is used at most once.
    pub async fn take_pending(&self, id: &str) -> Option<crate::oidc::PendingSignIn> {
        let key = Sessions::pending_key(id);
        let bytes = match self.cache.get(&key).await {
            Ok(bytes) => bytes?,
            Err(error) => {
                tracing::warn!(%error, "session store unavailable");
                return None;
            }
        };
        if let Err(error) = self.cache.delete(&key).await {
            tracing::warn!(%error, "pending sign-in could not be removed");
        }
        serde_json::from_slice(&bytes).ok()
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
            provider: None,
        };
        let id = sessions.create(&session).await.unwrap();
        assert_eq!(sessions.get(&id).await.unwrap().subject, "s");
        assert!(sessions.get("another").await.is_none());
        sessions.remove(&id).await;
        assert!(sessions.get(&id).await.is_none());
        session.expires_at = chrono::Utc::now().timestamp() - 1;
        let id = sessions.create(&session).await.unwrap();
        assert!(sessions.get(&id).await.is_none(), "an expired session is no session");
        assert!(sessions.update(&id, &session).await.is_err(), "an ended session is not stored again");
    }

    #[tokio::test]
    async fn a_pending_sign_in_is_taken_once() {
        let sessions = Sessions::new(Arc::new(pos_platform::cache::MemoryCache::new()), Duration::from_secs(60));
        let pending = crate::oidc::PendingSignIn { state: "s".into(), nonce: "n".into(), verifier: "v".into() };
        let id = sessions.put_pending(&pending, Duration::from_secs(60)).await.unwrap();
        assert_eq!(sessions.take_pending(&id).await.unwrap().verifier, "v");
        assert!(sessions.take_pending(&id).await.is_none());
        assert!(sessions.take_pending("unknown").await.is_none());
    }
}
