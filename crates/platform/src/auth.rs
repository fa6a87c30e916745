//! Authentication and authorization: a bearer JWT in gRPC metadata carries subject,
//! organization, region and roles. A tower layer verifies it and puts the [`Caller`] (or the
//! reason there is none) into the request; each method states the roles it allows with
//! [`authorize`], and checks every object against the caller's organization.
//!
//! Tokens are verified with the identity provider's published keys (`auth.jwks_url`, see
//! [`crate::jwks`]), PEM public keys (`auth.public_key_files`), or in development a shared HS256
//! secret.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;
use crate::error::ApiError;
use crate::jwks::{Jwks, JwksSettings};

/// What a caller may do; the stored and wire name is snake case (`org_admin`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::VariantArray,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case", parse_err_ty = String, parse_err_fn = unknown_role)]
pub enum Role {
    Applicant,
    Operator,
    Coordinator,
    Executor,
    Head,
    Curator,
    OrgAdmin,
    Approver,
    /// Another system or service acting on its own behalf (integrations, admin tooling).
    System,
}

fn unknown_role(name: &str) -> String {
    format!("unknown role {name:?}")
}

impl Role {
    pub const ALL: &'static [Role] = <Role as strum::VariantArray>::VARIANTS;

    /// Roles that work inside an organization's cabinet.
    pub const STAFF: [Role; 6] =
        [Role::Coordinator, Role::Executor, Role::Head, Role::Curator, Role::OrgAdmin, Role::Approver];

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` honours width and alignment, for tables.
        f.pad(self.as_str())
    }
}

/// The token's claims.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// Organization id; empty for applicants and systems without one.
    #[serde(default)]
    pub org: String,
    /// Region code; empty for federal and system callers.
    #[serde(default)]
    pub region: String,
    pub roles: Vec<Role>,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    /// Not valid before; tokens minted here carry none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// What verification reads from a token beyond what [`Validation`] checks (issuer, audience,
/// expiry, not-before): an identity provider's `aud` may be a list, which [`Claims`] does not
/// take.
#[derive(Deserialize)]
struct CallerClaims {
    sub: String,
    #[serde(default)]
    org: String,
    #[serde(default)]
    region: String,
    roles: Vec<Role>,
}

/// Who is calling, as verified.
#[derive(Clone, Debug)]
pub struct Caller {
    pub subject: String,
    pub organization_id: String,
    pub region_code: String,
    pub roles: HashSet<Role>,
}

impl Caller {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.roles.contains(r))
    }

    /// Whether the caller may see or act on an object of `organization_id`: staff of that
    /// organization, or a system caller.
    pub fn may_access_organization(&self, organization_id: &str) -> bool {
        self.has(Role::System) || (!self.organization_id.is_empty() && self.organization_id == organization_id)
    }

    /// Checks the organization and logs a security event when it does not match.
    pub fn require_organization(&self, organization_id: &str, method: &str) -> Result<(), ApiError> {
        if self.may_access_organization(organization_id) {
            Ok(())
        } else {
            tracing::warn!(
                target: "security",
                subject = %self.subject,
                caller_organization = %self.organization_id,
                organization = %organization_id,
                %method,
                "access denied to another organization's object"
            );
            Err(ApiError::denied("OTHER_ORGANIZATION", "the object belongs to another organization"))
        }
    }
}

/// Why a request carries no caller.
#[derive(Clone, Debug)]
pub enum AuthFailure {
    Missing,
    Invalid(String),
}

/// The outcome of verification, placed in every request's extensions by [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct Authenticated(pub Result<Caller, AuthFailure>);

/// Verifies and mints tokens.
#[derive(Clone)]
pub struct Authenticator {
    keys: Vec<(DecodingKey, Algorithm)>,
    /// The identity provider's key set, shared by clones.
    jwks: Option<Arc<Jwks>>,
    /// The key tokens are minted with: the HS256 secret, or a private key (RS256/ES256) given
    /// with [`Authenticator::with_signing_key`].
    encoding: Option<(EncodingKey, Algorithm)>,
    issuer: String,
    audience: String,
    leeway_secs: u64,
}

impl Authenticator {
    /// The authenticator of a process. `embedded`: nothing external is configured, so the
    /// process is a development one. Elsewhere the shared HS256 secret is refused unless
    /// `auth.allow_development_secret` says the stack is a development one all the same: whoever
    /// learns that secret mints tokens of any role.
    pub fn for_process(config: &AuthConfig, embedded: bool) -> anyhow::Result<Authenticator> {
        if config.hs256_secret.is_some() && !embedded {
            anyhow::ensure!(
                config.allow_development_secret,
                "auth.hs256_secret is for development: with servers configured, verify tokens with \
                 auth.jwks_url or auth.public_key_files, or set auth.allow_development_secret = true \
                 on a development stack"
            );
            tracing::warn!(
                target: "security",
                "auth.hs256_secret accepted with servers configured (auth.allow_development_secret): \
                 anyone holding the secret can mint any role; never in production"
            );
        }
        let authenticator = Authenticator::from_config(config)?;
        if let Some(jwks) = &authenticator.jwks {
            tracing::info!(url = %jwks.url(), "tokens verified with the identity provider's keys");
        }
        Ok(authenticator)
    }

    /// Builds the verifier; fetches nothing yet (the identity provider's keys come on first use,
    /// or with [`Authenticator::fetch_keys`]).
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<Authenticator> {
        let mut keys = Vec::new();
        let mut encoding = None;
        if let Some(secret) = &config.hs256_secret {
            keys.push((DecodingKey::from_secret(secret.expose().as_bytes()), Algorithm::HS256));
            encoding = Some((EncodingKey::from_secret(secret.expose().as_bytes()), Algorithm::HS256));
        }
        for file in &config.public_key_files {
            let pem = std::fs::read(file).map_err(|e| anyhow::anyhow!("auth key {}: {e}", file.display()))?;
            if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                keys.push((key, Algorithm::RS256));
            } else {
                keys.push((DecodingKey::from_ec_pem(&pem)?, Algorithm::ES256));
            }
        }
        let jwks = match config.jwks_url.as_deref().map(str::trim).filter(|url| !url.is_empty()) {
            Some(url) => Some(Arc::new(Jwks::new(
                url,
                JwksSettings {
                    refresh_every: Duration::from_secs(config.jwks_refresh_secs.max(1)),
                    min_refresh_interval: Duration::from_secs(config.jwks_min_refresh_secs),
                },
            )?)),
            None => None,
        };
        anyhow::ensure!(!keys.is_empty() || jwks.is_some(), "no authentication key configured");
        Ok(Authenticator {
            keys,
            jwks,
            encoding,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway_secs: config.leeway_secs,
        })
    }

    /// Fetches the identity provider's keys now (at start-up, so that a wrong `auth.jwks_url`
    /// shows in the log at once). A failure is logged, not fatal: the provider may come up
    /// later, and requests fetch again.
    pub async fn fetch_keys(&self) {
        if let Some(jwks) = &self.jwks {
            let _ = jwks.refresh().await;
        }
    }

    /// The same verifier, minting with a private key (PEM, RSA for RS256 or EC P-256 for ES256)
    /// instead of the HS256 secret: for a component that vouches for people it verified itself
    /// (the web cabinet after an OpenID Connect sign-in), whose public key the services hold in
    /// `auth.public_key_files`.
    pub fn with_signing_key(mut self, pem: &[u8]) -> anyhow::Result<Authenticator> {
        let key = match EncodingKey::from_rsa_pem(pem) {
            Ok(key) => (key, Algorithm::RS256),
            Err(_) => (
                EncodingKey::from_ec_pem(pem)
                    .map_err(|e| anyhow::anyhow!("signing key is neither an RSA nor an EC private key: {e}"))?,
                Algorithm::ES256,
            ),
        };
        self.encoding = Some(key);
        Ok(self)
    }

    /// Verifies a token: signature, issuer, audience, expiry and not-before. Fetches the
    /// identity provider's keys when the token names a key not seen yet.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthFailure> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthFailure::Invalid(format!("malformed token: {e}")))?;
        let mut failure = None;
        for (key, algorithm) in self.keys.iter().filter(|(_, algorithm)| *algorithm == header.alg) {
            match self.decode(token, key, &[*algorithm]) {
                Ok(caller) => return Ok(caller),
                Err(error) if not_this_key(&error) => failure = Some(error.to_string()),
                // The signature held: the claims are what is wrong, whatever other keys say.
                Err(error) => return Err(AuthFailure::Invalid(error.to_string())),
            }
        }
        if let Some(jwks) = &self.jwks
            && !matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
        {
            let candidates = jwks.candidates(header.kid.as_deref(), header.alg).await.map_err(AuthFailure::Invalid)?;
            for (key, algorithms) in &candidates {
                match self.decode(token, key, algorithms) {
                    Ok(caller) => return Ok(caller),
                    Err(error) if not_this_key(&error) => failure = Some(error.to_string()),
                    Err(error) => return Err(AuthFailure::Invalid(error.to_string())),
                }
            }
        }
        Err(AuthFailure::Invalid(failure.unwrap_or_else(|| format!("no key verifies {:?} tokens", header.alg))))
    }

    fn decode(&self, token: &str, key: &DecodingKey, algorithms: &[Algorithm]) -> Result<Caller, JwtError> {
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms.to_vec();
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway_secs;
        let claims = jsonwebtoken::decode::<CallerClaims>(token, key, &validation)?.claims;
        Ok(Caller {
            subject: claims.sub,
            organization_id: claims.org,
            region_code: claims.region,
            roles: claims.roles.into_iter().collect(),
        })
    }

    /// Mints a token: HS256 with the development secret, or signed with the key given to
    /// [`Authenticator::with_signing_key`].
    pub fn mint(
        &self,
        subject: &str,
        organization_id: &str,
        region_code: &str,
        roles: &[Role],
        ttl: std::time::Duration,
    ) -> anyhow::Result<String> {
        let (key, algorithm) = self
            .encoding
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("minting needs auth.hs256_secret or a signing key"))?;
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            org: organization_id.to_owned(),
            region: region_code.to_owned(),
            roles: roles.to_vec(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now + ttl.as_secs() as i64,
            iat: now,
            nbf: None,
        };
        Ok(jsonwebtoken::encode(&Header::new(*algorithm), &claims, key)?)
    }
}

/// Whether verification failed because the key does not fit the token (another key may),
/// rather than because the token's claims are wrong.
fn not_this_key(error: &JwtError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::InvalidSignature
            | ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
    )
}

/// Returns the caller if it holds one of `allowed` roles; logs denials as security events.
pub fn authorize<T>(request: &tonic::Request<T>, method: &str, allowed: &[Role]) -> Result<Caller, ApiError> {
    let outcome = request.extensions().get::<Authenticated>().map(|a| a.0.clone());
    match outcome {
        Some(Ok(caller)) if caller.has_any(allowed) => Ok(caller),
        Some(Ok(caller)) => {
            tracing::warn!(target: "security", subject = %caller.subject, roles = ?caller.roles, %method, "role not allowed");
            Err(ApiError::denied(
                "ROLE_NOT_ALLOWED",
                format!(
                    "{method} needs one of the roles {}",
                    allowed.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ))
        }
        Some(Err(AuthFailure::Invalid(reason))) => {
            tracing::warn!(target: "security", %method, %reason, "invalid token refused");
            Err(ApiError::Unauthenticated("invalid or expired token"))
        }
        Some(Err(AuthFailure::Missing)) | None => {
            tracing::warn!(target: "security", %method, "request without a token refused");
            Err(ApiError::Unauthenticated("missing bearer token"))
        }
    }
}

/// Tower layer verifying `authorization: Bearer …` on every request.
#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(authenticator: Arc<Authenticator>) -> AuthLayer {
        AuthLayer { authenticator }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService { inner, authenticator: self.authenticator.clone() }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The service polled ready is the one to call; a fresh clone takes its place here.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authenticator = self.authenticator.clone();
        Box::pin(async move {
            let token = match request.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
                None => Err(AuthFailure::Missing),
                Some(value) => match value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
                    Some(token) => Ok(token.trim().to_owned()),
                    None => Err(AuthFailure::Invalid("not a bearer token".into())),
                },
            };
            let outcome = match token {
                Ok(token) => authenticator.verify(&token).await,
                Err(failure) => Err(failure),
            };
            request.extensions_mut().insert(Authenticated(outcome));
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn authenticator(secret: &str) -> Authenticator {
        Authenticator::from_config(&AuthConfig { hs256_secret: Some(Secret::new(secret)), ..AuthConfig::default() })
            .unwrap()
    }

    #[tokio::test]
    async fn minted_tokens_verify_and_carry_claims() {
        let auth = authenticator("s3cret");
        let token = auth.mint("u1", "org-1", "41", &[Role::Coordinator], std::time::Duration::from_secs(60)).unwrap();
        let caller = auth.verify(&token).await.unwrap();
        assert_eq!(caller.organization_id, "org-1");
        assert!(caller.has(Role::Coordinator) && !caller.has(Role::Head));
        assert!(caller.may_access_organization("org-1") && !caller.may_access_organization("org-2"));
    }

    /// A P-256 key pair made for this test only.
    const TEST_EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8N+88GK890iF/LEu
sAkiPp8eMyyr8K1ew5khcIWZEzihRANCAAR0SSe14Nzri9Z5Sk0PbKX629jg29p1
mJ9NF3f7UKD2B/krG0hVwGqnJuiTNSnIjSLwltc02KU41hcSmgdLWNa+
-----END PRIVATE KEY-----
";
    const TEST_EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEdEknteDc64vWeUpND2yl+tvY4Nva
dZifTRd3+1Cg9gf5KxtIVcBqpybokzUpyI0i8JbXNNilONYXEpoHS1jWvg==
-----END PUBLIC KEY-----
";

    #[tokio::test]
    async fn tokens_minted_with_a_private_key_verify_with_its_public_key_only() {
        let dir = std::env::temp_dir().join(format!("pos-auth-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let public = dir.join("web.pem");
        std::fs::write(&public, TEST_EC_PUBLIC).unwrap();
        let services =
            Authenticator::from_config(&AuthConfig { public_key_files: vec![public.clone()], ..AuthConfig::default() })
                .unwrap();
        assert!(services.mint("u", "o", "41", &[Role::Head], std::time::Duration::from_secs(60)).is_err());
        let web = services.clone().with_signing_key(TEST_EC_PRIVATE.as_bytes()).unwrap();
        let token = web.mint("u1", "org-1", "41", &[Role::Executor], std::time::Duration::from_secs(60)).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        let caller = services.verify(&token).await.unwrap();
        assert_eq!((caller.subject.as_str(), caller.organization_id.as_str()), ("u1", "org-1"));
        assert!(caller.has(Role::Executor));
        // Another deployment's development secret cannot stand in for the key.
        let forged =
            authenticator("s3cret").mint("u1", "org-1", "41", &[Role::System], std::time::Duration::from_secs(60));
        assert!(matches!(services.verify(&forged.unwrap()).await, Err(AuthFailure::Invalid(_))));
        assert!(services.clone().with_signing_key(b"not a key").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn bad_signature_and_expired_tokens_are_refused() {
        let token =
            authenticator("other").mint("u1", "o", "41", &[Role::Head], std::time::Duration::from_secs(60)).unwrap();
        assert!(matches!(authenticator("s3cret").verify(&token).await, Err(AuthFailure::Invalid(_))));
        let auth = authenticator("s3cret");
        let key = EncodingKey::from_secret(b"s3cret");
        let claims = Claims {
            sub: "u".into(),
            org: String::new(),
            region: String::new(),
            roles: vec![Role::System],
            iss: "pos".into(),
            aud: "pos".into(),
            exp: chrono::Utc::now().timestamp() - 3600,
            iat: chrono::Utc::now().timestamp() - 7200,
            nbf: None,
        };
        let expired = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
        assert!(matches!(auth.verify(&expired).await, Err(AuthFailure::Invalid(_))));
    }

    #[test]
    fn the_development_secret_is_refused_with_servers_unless_allowed() {
        let development = AuthConfig { hs256_secret: Some(Secret::new("dev")), ..AuthConfig::default() };
        assert!(Authenticator::for_process(&development, true).is_ok(), "embedded: a development process");
        let refused = Authenticator::for_process(&development, false).err().expect("refused with servers");
        assert!(refused.to_string().contains("allow_development_secret"), "{refused}");
        let allowed = AuthConfig { allow_development_secret: true, ..development };
        assert!(Authenticator::for_process(&allowed, false).is_ok());
        let without_secret =
            AuthConfig { jwks_url: Some("https://idp.example/jwks.json".into()), ..AuthConfig::default() };
        assert!(Authenticator::for_process(&without_secret, false).is_ok(), "production keys need no flag");
    }
}
