//! The web service's own section of the configuration (`[web]`, `POS_WEB__*`).

use std::net::SocketAddr;
use std::path::PathBuf;

use pos_platform::config::Secret;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct WebConfig {
    /// Where the cabinet listens (`POS_WEB__ADDR`).
    pub addr: SocketAddr,
    /// The platform's gRPC endpoint: any process of it, or a load balancer (every process is a
    /// front door). `https://…` is called over TLS, verified with `tls.ca_file`
    /// (`POS_TLS__CA_FILE`), presenting `tls.client_cert_file` when the platform requires one.
    pub grpc_endpoint: String,
    /// The development sign-in: pick a development user, whose token is minted with
    /// `auth.hs256_secret`. Never on in production, where people sign in through the identity
    /// provider; off whenever `oidc` is configured.
    pub dev_sign_in: bool,
    /// Sign-in through the identity provider (`[web.oidc]`, `POS_WEB__OIDC__*`); on when its
    /// issuer is set.
    pub oidc: OidcConfig,
    /// How long a session lasts without signing in again, in minutes.
    pub session_minutes: u64,
    /// Cookies marked `Secure`. Unset: secure unless the cabinet listens on loopback, where a
    /// browser has no TLS to talk to in development.
    pub secure_cookies: Option<bool>,
    /// How often an open list asks for new messages, in seconds.
    pub live_poll_secs: u64,
    /// The cabinet's address as the public reaches it (`https://pos.example.ru`), for what it
    /// hands out to put on other sites: the appeal form's embed snippet. Empty: `http://<addr>`.
    pub public_url: String,
    /// The citizen side: the widget's keys and abuse limits, the appeal links' key
    /// (`[web.citizen]`, `POS_WEB__CITIZEN__*`).
    pub citizen: crate::citizen::CitizenConfig,
    /// Open311 and the JSON API: the partner systems' keys (`[web.open311]`).
    pub open311: crate::open311::Open311Config,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            addr: pos_platform::appeal_link::DEFAULT_WEB_ADDR,
            grpc_endpoint: "http://127.0.0.1:50051".into(),
            dev_sign_in: false,
            session_minutes: 8 * 60,
            secure_cookies: None,
            live_poll_secs: 15,
            public_url: String::new(),
            citizen: crate::citizen::CitizenConfig::default(),
            open311: crate::open311::Open311Config::default(),
            oidc: OidcConfig::default(),
        }
    }
}

/// The identity provider (OpenID Connect, authorization code flow with PKCE). After it vouches
/// for a person, the cabinet mints the platform token the services check (see
/// `docs/adr/0012-cabinet-sign-in-mints-platform-tokens.md`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct OidcConfig {
    /// The provider's issuer URL; its discovery document is
    /// `<issuer>/.well-known/openid-configuration`. Empty: no sign-in through a provider.
    pub issuer_url: String,
    /// The cabinet's client id at the provider.
    pub client_id: String,
    /// The client's secret; unset for a public client (PKCE alone).
    pub client_secret: Option<Secret>,
    /// Where the provider sends the person back: this cabinet's `/cabinet/sign-in/callback`, as
    /// registered at the provider (`https://cabinet.example.ru/cabinet/sign-in/callback`).
    pub redirect_url: String,
    /// Where the provider sends the person after signing out at its end; unset: the cabinet's
    /// `/cabinet/sign-in?signed_out=1` next to `redirect_url`.
    pub post_logout_redirect_url: Option<String>,
    /// Scopes asked for besides `openid` (a list, or names separated by spaces or commas).
    #[serde(deserialize_with = "name_list")]
    pub scopes: Vec<String>,
    /// The ID token claim with the person's cabinet roles (names as in platform tokens:
    /// `coordinator`, `executor`, …; a list or a string separated by spaces or commas). A dotted
    /// name reaches into an object (`realm_access.roles`). Without the claim, the roles come
    /// from the organization's staff directory.
    pub roles_claim: String,
    /// The ID token claim with the organization id (as in the directory, `41-kcioko`). Without
    /// the claim, the organization is the one whose staff directory lists the person.
    pub organization_claim: String,
    /// The ID token claim with the person's name for the cabinet's header, when the staff
    /// directory has none.
    pub name_claim: String,
    /// PEM private key (RSA for RS256, EC P-256 for ES256) the cabinet signs platform tokens
    /// with; its public key goes into every service's `auth.public_key_files`. Unset: the
    /// platform's `auth.hs256_secret` (development only).
    pub token_key_file: Option<PathBuf>,
    /// How long a platform token minted for a signed-in person lives, in minutes; the cabinet
    /// mints the next one as it runs out, while the session lasts.
    pub token_minutes: u64,
    /// How long a sign-in may take at the provider, in minutes.
    pub sign_in_minutes: u64,
    /// How long the cabinet waits for the provider's answers (discovery, keys, tokens), in
    /// seconds.
    pub http_timeout_secs: u64,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            issuer_url: String::new(),
            client_id: String::new(),
            client_secret: None,
            redirect_url: String::new(),
            post_logout_redirect_url: None,
            scopes: vec!["profile".into(), "email".into()],
            roles_claim: "roles".into(),
            organization_claim: "org".into(),
            name_claim: "name".into(),
            token_key_file: None,
            token_minutes: 15,
            sign_in_minutes: 10,
            http_timeout_secs: 10,
        }
    }
}

impl OidcConfig {
    /// Whether sign-in goes through the identity provider.
    pub fn is_configured(&self) -> bool {
        !self.issuer_url.trim().is_empty()
    }
}

/// Names from a list or from one string separated by spaces or commas.
fn name_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        List(Vec<String>),
        One(String),
    }
    let names = match Names::deserialize(deserializer)? {
        Names::List(list) => list,
        Names::One(one) => vec![one],
    };
    Ok(names
        .iter()
        .flat_map(|name| name.split([' ', ',']))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect())
}

impl WebConfig {
    /// The public base URL, without a trailing slash.
    pub fn public_base(&self) -> String {
        pos_platform::appeal_link::public_base(&self.public_url, self.addr)
    }

    /// Whether cookies carry `Secure` for a cabinet listening on `addr`.
    pub fn secure_cookies_for(&self, addr: SocketAddr) -> bool {
        self.secure_cookies.unwrap_or(!addr.ip().is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_secure_except_on_loopback_unless_configured() {
        let config = WebConfig::default();
        assert!(!config.secure_cookies_for("127.0.0.1:8080".parse().unwrap()));
        assert!(config.secure_cookies_for("0.0.0.0:8080".parse().unwrap()));
        let forced = WebConfig { secure_cookies: Some(true), ..WebConfig::default() };
        assert!(forced.secure_cookies_for("127.0.0.1:8080".parse().unwrap()));
    }

    #[test]
    fn scopes_are_a_list_or_one_string() {
        let config: OidcConfig = serde_json::from_str(r#"{"scopes": "profile email,org"}"#).unwrap();
        assert_eq!(config.scopes, ["profile", "email", "org"]);
        let config: OidcConfig = serde_json::from_str(r#"{"scopes": ["profile", "email"]}"#).unwrap();
        assert_eq!(config.scopes, ["profile", "email"]);
        assert!(!config.is_configured() && config.client_secret.is_none());
    }
}
