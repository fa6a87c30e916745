//! The identity provider's published keys (a JSON Web Key Set at `auth.jwks_url`): fetched on
//! first use, cached, and fetched again when they may have changed. A provider rotates keys by
//! publishing the new key beside the old one, signing with the new one, and withdrawing the old
//! one later; so a token naming an unknown key id asks for a fresh set, and the set is fetched
//! again every `auth.jwks_refresh_secs` so that a withdrawn key stops being accepted. Fetches
//! are rate-limited (`auth.jwks_min_refresh_secs`) and shared by the requests waiting for them.
//! When the provider cannot be reached, the last set stays in use.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tracing::Instrument as _;

/// A larger answer is no key set: stop reading rather than hold it in memory.
const MAX_KEY_SET_BYTES: usize = 1 << 20;

/// Connecting and reading one answer; a request waiting for keys waits at most this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How the set is kept fresh.
#[derive(Clone, Debug)]
pub struct JwksSettings {
    /// The set is fetched again at the latest this long after a fetch.
    pub refresh_every: Duration,
    /// At most one fetch per this interval, whatever asks for it.
    pub min_refresh_interval: Duration,
}

/// One published signing key and the algorithms it may verify.
pub struct PublishedKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

/// The keys of one fetch.
pub struct KeySet {
    pub keys: Vec<PublishedKey>,
    /// When the set should be fetched again.
    refresh_after: Instant,
}

impl KeySet {
    fn find(&self, kid: &str) -> Option<&PublishedKey> {
        self.keys.iter().find(|key| key.kid.as_deref() == Some(kid))
    }
}

/// The keys a token may be checked against.
pub type Candidates = Vec<(DecodingKey, Vec<Algorithm>)>;

/// The key set of one identity provider.
pub struct Jwks {
    url: reqwest::Url,
    http: reqwest::Client,
    settings: JwksSettings,
    current: RwLock<Option<Arc<KeySet>>>,
    /// Held while fetching: requests that need a fetch meanwhile wait for this one.
    fetching: tokio::sync::Mutex<FetchHistory>,
    /// A background refresh of a stale set is under way or queued.
    refresh_scheduled: AtomicBool,
}

#[derive(Default)]
struct FetchHistory {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

impl Jwks {
    /// Checks the URL; fetches nothing yet.
    pub fn new(url: &str, settings: JwksSettings) -> anyhow::Result<Jwks> {
        let url = reqwest::Url::parse(url.trim()).map_err(|e| anyhow::anyhow!("auth.jwks_url {url:?}: {e}"))?;
        anyhow::ensure!(matches!(url.scheme(), "https" | "http"), "auth.jwks_url {url}: not an http(s) URL");
        let http = reqwest::Client::builder()
            // The key set's address is configured; a redirect could point the services at any
            // address (SSRF) or swap the keys they trust.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .build()?;
        Ok(Jwks {
            url,
            http,
            settings,
            current: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(FetchHistory::default()),
            refresh_scheduled: AtomicBool::new(false),
        })
    }

    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The keys that may have signed a token with `kid` and `algorithm`: the key of that id, or
    /// every key for that algorithm when the token names none. Fetches the set when there is
    /// none yet or the id is unknown; refreshes a stale set in the background. The error says
    /// why no key can be offered.
    pub async fn candidates(self: &Arc<Self>, kid: Option<&str>, algorithm: Algorithm) -> Result<Candidates, String> {
        let set = match self.current() {
            Some(set) => {
                if Instant::now() >= set.refresh_after {
                    self.refresh_in_background();
                }
                set
            }
            None => self.refresh().await?,
        };
        let Some(kid) = kid else {
            return Ok(matching(set.keys.iter(), algorithm));
        };
        if let Some(key) = set.find(kid) {
            return Ok(matching(std::iter::once(key), algorithm));
        }
        // A key published since the last fetch, or a forged id: the rate limit keeps the latter
        // from reaching the provider more than once per interval.
        let set = self.refresh().await?;
        match set.find(kid) {
            Some(key) => Ok(matching(std::iter::once(key), algorithm)),
            None => Err(format!("key id {kid:?} is not among the identity provider's keys")),
        }
    }

    /// Fetches the set now, unless a fetch happened within the minimum interval (a concurrent
    /// caller's included): then the set that fetch left. Errs only when there is no set at all.
    pub async fn refresh(&self) -> Result<Arc<KeySet>, String> {
        let mut history = self.fetching.lock().await;
        let recent = history.last_attempt.is_some_and(|at| at.elapsed() < self.settings.min_refresh_interval);
        if !recent {
            history.last_attempt = Some(Instant::now());
            match self.fetch().await {
                Ok(set) => {
                    tracing::info!(url = %self.url, keys = set.keys.len(), "identity provider keys fetched");
                    history.last_error = None;
                    *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(set));
                }
                Err(error) => {
                    let kept = self.current().is_some();
                    tracing::warn!(url = %self.url, %error, kept_previous_keys = kept, "identity provider keys not fetched");
                    history.last_error = Some(error);
                }
            }
        }
        self.current().ok_or_else(|| {
            format!(
                "the identity provider's keys are unavailable ({})",
                history.last_error.as_deref().unwrap_or("not fetched yet")
            )
        })
    }

    /// Refreshes a stale set without holding up the request that noticed it.
    fn refresh_in_background(self: &Arc<Self>) {
        if self.refresh_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let jwks = self.clone();
        // A task of its own, not part of the request's trace.
        tokio::spawn(
            async move {
                let _ = jwks.refresh().await;
                jwks.refresh_scheduled.store(false, Ordering::Release);
            }
            .instrument(tracing::info_span!(parent: None, "jwks_refresh")),
        );
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let mut response = self
            .http
            .get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let max_age =
            response.headers().get(http::header::CACHE_CONTROL).and_then(|value| value.to_str().ok()).and_then(max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
            if body.len() + chunk.len() > MAX_KEY_SET_BYTES {
                return Err(format!("answer larger than {MAX_KEY_SET_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let keys = parse_key_set(&body)?;
        // A provider's max-age may be hours; a withdrawn key should stop working sooner. Never
        // sooner than the rate limit allows a fetch anyway.
        let lifetime = max_age
            .map_or(self.settings.refresh_every, |age| age.min(self.settings.refresh_every))
            .max(self.settings.min_refresh_interval);
        Ok(KeySet { keys, refresh_after: Instant::now() + lifetime })
    }
}

fn matching<'a>(keys: impl Iterator<Item = &'a PublishedKey>, algorithm: Algorithm) -> Candidates {
    keys.filter(|key| key.algorithms.contains(&algorithm))
        .map(|key| (key.key.clone(), key.algorithms.clone()))
        .collect()
}

/// The signing keys of a JWKS document. Keys this verifier cannot use (encryption keys, other
/// curves, symmetric keys) are skipped one by one, so that one odd key does not hide the rest;
/// a set with no usable key at all is an error, and the previous set stays.
pub fn parse_key_set(body: &[u8]) -> Result<Vec<PublishedKey>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(body).map_err(|e| format!("not a JSON Web Key Set: {e}"))?;
    let mut keys = Vec::new();
    for value in document.keys {
        let kid = value.get("kid").and_then(|kid| kid.as_str()).unwrap_or_default().to_owned();
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(error) => {
                tracing::debug!(%kid, %error, "identity provider key skipped: not understood");
                continue;
            }
        };
        let Some(algorithms) = signing_algorithms(&jwk) else {
            tracing::debug!(%kid, "identity provider key skipped: not a signing key this verifier uses");
            continue;
        };
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => keys.push(PublishedKey { kid: jwk.common.key_id.clone(), key, algorithms }),
            Err(error) => tracing::warn!(%kid, %error, "identity provider key skipped: invalid"),
        }
    }
    if keys.is_empty() {
        return Err("the key set holds no signing key (RS*, PS*, ES256, ES384 or EdDSA)".into());
    }
    Ok(keys)
}

/// What a published key may verify: the algorithm it names, if its type fits, or every
/// algorithm of its type. Symmetric keys never come from a public set: accepting one would let
/// anyone who read the set sign tokens.
fn signing_algorithms(jwk: &Jwk) -> Option<Vec<Algorithm>> {
    use Algorithm::*;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let of_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => vec![EdDSA],
        AlgorithmParameters::OctetKeyPair(_) | AlgorithmParameters::OctetKey(_) => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(of_type),
        // `KeyAlgorithm` prints as the JOSE name for signing algorithms; encryption ones do not
        // parse as an `Algorithm`.
        Some(named) => {
            let named = Algorithm::from_str(&named.to_string()).ok()?;
            of_type.contains(&named).then(|| vec![named])
        }
    }
}

/// `max-age` of a Cache-Control header.
fn max_age(header: &str) -> Option<Duration> {
    header
        .split(',')
        .find_map(|directive| {
            let (name, value) = directive.trim().split_once('=')?;
            name.trim().eq_ignore_ascii_case("max-age").then(|| value.trim().trim_matches('"').parse().ok()).flatten()
        })
        .map(Duration::from_secs)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(max_age("public, max-age=300, must-revalidate"), Some(Duration::from_secs(300)));
        assert_eq!(max_age("Max-Age=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn only_asymmetric_signing_keys_are_taken() {
        let set = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "shared", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AQAB", "y": "AQAB"},
            {"kty": "unknown", "kid": "odd"},
            {"kty": "RSA", "kid": "rs", "alg": "RS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "any-rsa", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "mislabelled", "alg": "ES256", "n": "AQAB", "e": "AQAB"}
        ]});
        let keys = parse_key_set(set.to_string().as_bytes()).unwrap();
        let taken: Vec<(&str, usize)> = keys.iter().map(|k| (k.kid.as_deref().unwrap(), k.algorithms.len())).collect();
        assert_eq!(taken, [("rs", 1), ("any-rsa", 6)]);
        assert!(parse_key_set(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).is_err());
        assert!(parse_key_set(b"<html>").is_err());
    }
}
