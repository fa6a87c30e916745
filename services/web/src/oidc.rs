//! The identity provider, by OpenID Connect: discovery, the provider's keys, the authorization
//! code flow with PKCE, and the ID token's checks (signature, issuer, audience, expiry, nonce).
//!
//! Nothing here talks to the services or knows the cabinet's roles: it answers "who is this
//! person, according to the provider", with the ID token's claims. The cabinet turns that into
//! a session and a platform token (`cabinet::provider`).
//!
//! The provider's metadata is fetched on the first sign-in and kept; a failed fetch is retried
//! on the next one, so the cabinet starts even while the provider is away. The keys are fetched
//! again when an ID token names a key (`kid`) the cabinet does not have: the provider has
//! rotated its keys.

use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClientAuthMethod, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::url::Url;
use openidconnect::{
    AdditionalClaims, AuthType, AuthorizationCode, ClaimsVerificationError, Client, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdToken, IdTokenClaims, IdTokenFields,
    IssuerUrl, LogoutRequest, Nonce, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, RequestTokenError, Scope, SignatureVerificationError,
    StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::OidcConfig;

/// The ID token's claims beyond the standard ones (roles, organization, whatever the provider
/// adds), kept as they came: which of them matter is configured.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct OtherClaims(pub serde_json::Map<String, serde_json::Value>);

impl AdditionalClaims for OtherClaims {}

type Fields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<Fields, CoreTokenType>;
type ProviderIdToken =
    IdToken<OtherClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;
type OidcClient = Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What the cabinet keeps on its side between sending the person to the provider and their
/// return: the secrets that tie the answer to this sign-in.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct PendingSignIn {
    /// Comes back with the answer (`state`): the answer belongs to this sign-in.
    pub state: String,
    /// Comes back inside the ID token: the token was issued for this sign-in.
    pub nonce: String,
    /// Proves to the token endpoint that whoever redeems the code started the sign-in (PKCE).
    pub verifier: String,
}

/// The person, as the provider vouched for them.
#[derive(Clone, Debug)]
pub struct Identity {
    pub subject: String,
    /// The name claim (`name_claim`), else given and family names, else the user name.
    pub name: Option<String>,
    pub email: Option<String>,
    pub claims: OtherClaims,
    /// The ID token as received, for signing out at the provider (`id_token_hint`).
    pub id_token: String,
}

/// Why a sign-in through the provider failed. Each is logged in English and shown in Russian.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    #[error("the answer's state does not match the sign-in's")]
    StateMismatch,
    #[error("the identity provider refused the sign-in: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused { error: String, description: Option<String> },
    #[error("the token endpoint refused the code: {0}")]
    CodeRefused(String),
    #[error("the token endpoint answered without an ID token")]
    NoIdToken,
    #[error("the ID token was rejected: {0}")]
    IdToken(#[from] ClaimsVerificationError),
}

/// What the provider said about itself, and its keys.
struct Discovered {
    metadata: ProviderMetadataWithLogout,
}

/// The identity provider of `OidcConfig`.
pub struct Provider {
    config: OidcConfig,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    post_logout: PostLogoutRedirectUrl,
    http: reqwest::Client,
    discovered: Mutex<Option<Arc<Discovered>>>,
    /// Where the cabinet's own forms may lead the browser: the sign-out form ends at the
    /// provider's end-session endpoint (the page's CSP `form-action` holds these).
    origins: std::sync::RwLock<Vec<String>>,
}

impl Provider {
    /// Checks the configuration; talks to nobody yet.
    pub fn new(config: &OidcConfig) -> anyhow::Result<Provider> {
        anyhow::ensure!(!config.client_id.trim().is_empty(), "web.oidc.client_id is required with web.oidc.issuer_url");
        let issuer = IssuerUrl::new(config.issuer_url.trim().to_owned())
            .map_err(|e| anyhow::anyhow!("web.oidc.issuer_url: {e}"))?;
        let redirect = RedirectUrl::new(config.redirect_url.trim().to_owned())
            .map_err(|e| anyhow::anyhow!("web.oidc.redirect_url: {e}"))?;
        let post_logout = match &config.post_logout_redirect_url {
            Some(url) => url.trim().to_owned(),
            None => redirect.url().join("/cabinet/sign-in?signed_out=1")?.to_string(),
        };
        let post_logout = PostLogoutRedirectUrl::new(post_logout)
            .map_err(|e| anyhow::anyhow!("web.oidc.post_logout_redirect_url: {e}"))?;
        let http = reqwest::Client::builder()
            // Following a redirect from the provider's endpoints would let it point the cabinet
            // at any address (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.http_timeout_secs.max(1)))
            .build()?;
        let origins = std::sync::RwLock::new(vec![issuer.url().origin().ascii_serialization()]);
        Ok(Provider {
            config: config.clone(),
            issuer,
            redirect,
            post_logout,
            http,
            discovered: Mutex::new(None),
            origins,
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The provider's origins the cabinet's forms may lead to, for the CSP's `form-action`.
    pub fn form_action_origins(&self) -> Vec<String> {
        self.origins.read().map(|origins| origins.clone()).unwrap_or_default()
    }

    /// The provider's metadata and keys, fetched once.
    async fn discovered(&self) -> Result<Arc<Discovered>, SignInError> {
        let mut slot = self.discovered.lock().await;
        if let Some(discovered) = slot.as_ref() {
            return Ok(discovered.clone());
        }
        let metadata =
            ProviderMetadataWithLogout::discover_async(self.issuer.clone(), &self.http).await.map_err(|e| {
                SignInError::Unavailable(format!("discovery of {}: {}", self.issuer.as_str(), error_chain(&e)))
            })?;
        tracing::info!(
            issuer = %self.issuer.as_str(),
            keys = metadata.jwks().keys().len(),
            end_session = metadata.additional_metadata().end_session_endpoint.is_some(),
            "identity provider discovered"
        );
        if let Some(endpoint) = &metadata.additional_metadata().end_session_endpoint
            && let Ok(mut origins) = self.origins.write()
        {
            let origin = endpoint.url().origin().ascii_serialization();
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        let discovered = Arc::new(Discovered { metadata });
        *slot = Some(discovered.clone());
        Ok(discovered)
    }

    /// Fetches the provider's keys again (it has rotated them); the metadata stays.
    async fn refresh_keys(&self, stale: &Discovered) -> Result<Arc<Discovered>, SignInError> {
        let jwks = CoreJsonWebKeySet::fetch_async(stale.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| SignInError::Unavailable(format!("keys of {}: {}", self.issuer.as_str(), error_chain(&e))))?;
        tracing::info!(issuer = %self.issuer.as_str(), keys = jwks.keys().len(), "identity provider keys fetched again");
        let discovered = Arc::new(Discovered { metadata: stale.metadata.clone().set_jwks(jwks) });
        *self.discovered.lock().await = Some(discovered.clone());
        Ok(discovered)
    }

    fn client(&self, discovered: &Discovered) -> OidcClient {
        let client = OidcClient::from_provider_metadata(
            discovered.metadata.clone(),
            ClientId::new(self.config.client_id.trim().to_owned()),
            self.config.client_secret.as_ref().map(|secret| ClientSecret::new(secret.expose().to_owned())),
        )
        .set_redirect_uri(self.redirect.clone());
        // HTTP Basic is the default; a provider that lists only client_secret_post gets the
        // secret in the form.
        let methods = discovered.metadata.token_endpoint_auth_methods_supported();
        let post_only = methods.is_some_and(|methods| {
            methods.contains(&CoreClientAuthMethod::ClientSecretPost)
                && !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
        });
        if post_only { client.set_auth_type(AuthType::RequestBody) } else { client }
    }

    /// Where to send the person to sign in, and what to keep until they come back.
    pub async fn authorize(&self) -> Result<(Url, PendingSignIn), SignInError> {
        let discovered = self.discovered().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = self
            .client(&discovered)
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scopes(self.config.scopes.iter().filter(|s| *s != "openid").map(|s| Scope::new(s.clone())))
            .set_pkce_challenge(challenge)
            .url();
        let pending = PendingSignIn {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        };
        Ok((url, pending))
    }

    /// Completes the sign-in the provider answered with `code` and `state`: redeems the code with
    /// the PKCE verifier and checks the ID token.
    pub async fn finish(&self, pending: &PendingSignIn, state: &str, code: &str) -> Result<Identity, SignInError> {
        if !crate::session::same_secret(&pending.state, state) {
            return Err(SignInError::StateMismatch);
        }
        let discovered = self.discovered().await?;
        let client = self.client(&discovered);
        let request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SignInError::Unavailable(format!("the provider has no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()));
        let tokens = request.request_async(&self.http).await.map_err(|error| match error {
            RequestTokenError::ServerResponse(response) => SignInError::CodeRefused(format!(
                "{}{}",
                response.error().as_ref(),
                response.error_description().map(|d| format!(" ({d})")).unwrap_or_default()
            )),
            other => SignInError::Unavailable(format!("token endpoint: {}", error_chain(&other))),
        })?;
        let id_token = tokens.id_token().ok_or(SignInError::NoIdToken)?;
        let nonce = Nonce::new(pending.nonce.clone());
        let claims = match self.verify(&discovered, id_token, &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                let discovered = self.refresh_keys(&discovered).await?;
                self.verify(&discovered, id_token, &nonce)?
            }
            other => other?,
        };
        let name = claims
            .additional_claims()
            .0
            .get(&self.config.name_claim)
            .and_then(|value| value.as_str())
            .map(str::to_owned)
            .or_else(|| claims.name().and_then(|name| name.get(None)).map(|name| name.as_str().to_owned()))
            .or_else(|| {
                let given = claims.given_name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned());
                let family = claims.family_name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned());
                match (family, given) {
                    (Some(family), Some(given)) => Some(format!("{family} {given}")),
                    (family, given) => family.or(given),
                }
            })
            .or_else(|| claims.preferred_username().map(|n| n.as_str().to_owned()))
            .filter(|name| !name.trim().is_empty());
        Ok(Identity {
            subject: claims.subject().as_str().to_owned(),
            name,
            email: claims.email().map(|e| e.as_str().to_owned()),
            claims: claims.additional_claims().clone(),
            id_token: id_token.to_string(),
        })
    }

    fn verify(
        &self,
        discovered: &Discovered,
        id_token: &ProviderIdToken,
        nonce: &Nonce,
    ) -> Result<IdTokenClaims<OtherClaims, CoreGenderClaim>, ClaimsVerificationError> {
        let client = self.client(discovered);
        id_token.clone().into_claims(&client.id_token_verifier(), nonce)
    }

    /// Where to send a person who signs out, to sign out at the provider too: its
    /// `end_session_endpoint`, when it has one.
    pub async fn end_session_url(&self, id_token: Option<&str>) -> Option<Url> {
        let discovered = self.discovered().await.ok()?;
        let endpoint = discovered.metadata.additional_metadata().end_session_endpoint.clone()?;
        let mut request = LogoutRequest::from(endpoint)
            .set_client_id(ClientId::new(self.config.client_id.trim().to_owned()))
            .set_post_logout_redirect_uri(self.post_logout.clone());
        if let Some(hint) = id_token.and_then(|token| token.parse::<ProviderIdToken>().ok()) {
            request = request.set_id_token_hint(&hint);
        }
        Some(request.http_get_url())
    }
}

/// An error with its causes, on one line (a cause already in the text is not repeated).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
