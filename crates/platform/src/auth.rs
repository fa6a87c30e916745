//! Authentication and authorization: a bearer JWT in gRPC metadata carries subject,
//! organization, region and roles. A tower layer verifies it and puts the [`Caller`] (or the
//! reason there is none) into the request; each method states the roles it allows with
//! [`authorize`], and checks every object against the caller's organization.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;
use crate::error::ApiError;

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
    /// The key tokens are minted with: the HS256 secret, or a private key (RS256/ES256) given
    /// with [`Authenticator::with_signing_key`].
    encoding: Option<(EncodingKey, Algorithm)>,
    issuer: String,
    audience: String,
}

impl Authenticator {
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
        anyhow::ensure!(!keys.is_empty(), "no authentication key configured");
        Ok(Authenticator { keys, encoding, issuer: config.issuer.clone(), audience: config.audience.clone() })
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

    pub fn verify(&self, token: &str) -> Result<Caller, AuthFailure> {
        let mut last = AuthFailure::Invalid("no key accepted the token".into());
        for (key, algorithm) in &self.keys {
            let mut validation = Validation::new(*algorithm);
            validation.set_issuer(&[&self.issuer]);
            validation.set_audience(&[&self.audience]);
            validation.leeway = 30;
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    let claims = data.claims;
                    return Ok(Caller {
                        subject: claims.sub,
                        organization_id: claims.org,
                        region_code: claims.region,
                        roles: claims.roles.into_iter().collect(),
                    });
                }
                Err(error) => last = AuthFailure::Invalid(error.to_string()),
            }
        }
        Err(last)
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
        };
        Ok(jsonwebtoken::encode(&Header::new(*algorithm), &claims, key)?)
    }
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
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let outcome = match request.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
            None => Err(AuthFailure::Missing),
            Some(value) => match value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
                Some(token) => self.authenticator.verify(token.trim()),
                None => Err(AuthFailure::Invalid("not a bearer token".into())),
            },
        };
        request.extensions_mut().insert(Authenticated(outcome));
        self.inner.call(request)
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

    #[test]
    fn minted_tokens_verify_and_carry_claims() {
        let auth = authenticator("s3cret");
        let token = auth.mint("u1", "org-1", "41", &[Role::Coordinator], std::time::Duration::from_secs(60)).unwrap();
        let caller = auth.verify(&token).unwrap();
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

    #[test]
    fn tokens_minted_with_a_private_key_verify_with_its_public_key_only() {
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
        let caller = services.verify(&token).unwrap();
        assert_eq!((caller.subject.as_str(), caller.organization_id.as_str()), ("u1", "org-1"));
        assert!(caller.has(Role::Executor));
        // Another deployment's development secret cannot stand in for the key.
        let forged =
            authenticator("s3cret").mint("u1", "org-1", "41", &[Role::System], std::time::Duration::from_secs(60));
        assert!(matches!(services.verify(&forged.unwrap()), Err(AuthFailure::Invalid(_))));
        assert!(services.clone().with_signing_key(b"not a key").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_signature_and_expired_tokens_are_refused() {
        let token =
            authenticator("other").mint("u1", "o", "41", &[Role::Head], std::time::Duration::from_secs(60)).unwrap();
        assert!(matches!(authenticator("s3cret").verify(&token), Err(AuthFailure::Invalid(_))));
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
        };
        let expired = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
        assert!(matches!(auth.verify(&expired), Err(AuthFailure::Invalid(_))));
    }
}
