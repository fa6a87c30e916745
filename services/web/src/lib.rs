//! The web cabinet (личный кабинет организации): server-rendered pages for the organization's
//! staff, with htmx for partial updates.
//!
//! The service holds no data of its own and decides nothing the services decide: every page is
//! built from the services' gRPC APIs, called with the signed-in person's token, so the services
//! authorize each call exactly as they would a command-line or system call. The pages check the
//! session's roles and organization first only to show the right things and to refuse early.
//!
//! - `session`: server-side sessions in the platform's cache, cookies, CSRF tokens.
//! - `oidc`: the identity provider (OpenID Connect with PKCE): who signed in, by its ID token.
//! - `cabinet`: sign-in, the folders and the list, the card, the workflow commands.
//! - `texts`: what people read, in Russian.
//! - `assets`: htmx and the stylesheets, built in.
//! - `open311`, `api`: the machine doors, Open311 GeoReport v2 and the JSON API (OpenAPI), for
//!   partner systems (by API key) and public reads; see `docs/open311.md`.

pub mod admin;
pub mod api;
pub mod assets;
pub mod cabinet;
pub mod citizen;
pub mod config;
pub mod oidc;
pub mod open311;
pub mod session;
pub mod texts;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use pos_platform::auth::Authenticator;
use pos_platform::cache::Cache;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub use config::WebConfig;
use session::{Cookies, Sessions};

/// Largest form the cabinet accepts (an answer's text is the largest field).
const MAX_FORM_BYTES: usize = 256 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct App(Arc<Inner>);

#[derive(Clone)]
pub struct Inner {
    pub config: WebConfig,
    pub channel: Channel,
    /// Mints the platform tokens the services receive: for the development user, or for the
    /// person the identity provider vouched for. None when there is no sign-in.
    pub minter: Option<Arc<Authenticator>>,
    /// The identity provider, when people sign in through it.
    pub oidc: Option<Arc<oidc::Provider>>,
    pub sessions: Sessions,
    pub cookies: Cookies,
    /// Mints the applicants' tokens of the citizen side (the widget's anonymous applicant, the
    /// appeal page's own): the cabinet's minter, or the platform's authenticator when the
    /// cabinet has no sign-in.
    pub citizen_minter: Option<Arc<Authenticator>>,
    /// The key of the applicants' links to their appeals' pages: `web.citizen.appeal_link_key`,
    /// or, after [`App::with_auth`], derived as notify derives it. None: no link is accepted.
    pub appeal_links: Option<pos_platform::appeal_link::LinkKey>,
}

impl std::ops::Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl App {
    /// The cabinet on `channel` (the platform's gRPC front door), listening at `listen_addr`
    /// (which decides whether cookies are `Secure` unless configured). `minter` (the platform's
    /// authenticator) mints the signed-in people's tokens: with its HS256 secret, or with
    /// `web.oidc.token_key_file` when set. With the identity provider configured, the development
    /// sign-in is off whatever `dev_sign_in` says.
    ///
    /// A configuration that cannot work (an invalid provider URL, an unreadable key) is an error.
    pub fn try_new(
        config: WebConfig,
        channel: Channel,
        cache: Arc<dyn Cache>,
        minter: Option<Arc<Authenticator>>,
        listen_addr: SocketAddr,
    ) -> anyhow::Result<App> {
        let mut config = config;
        let platform_minter = minter.clone();
        let oidc = if config.oidc.is_configured() {
            if config.dev_sign_in {
                tracing::info!("development sign-in off: people sign in through the identity provider (web.oidc)");
                config.dev_sign_in = false;
            }
            Some(Arc::new(oidc::Provider::new(&config.oidc)?))
        } else {
            None
        };
        let minter = match (&config.oidc.token_key_file, minter) {
            (_, None) if oidc.is_some() => {
                anyhow::bail!("sign-in through the identity provider needs the platform's auth settings")
            }
            (Some(file), Some(base)) if oidc.is_some() => {
                let pem = std::fs::read(file).with_context(|| format!("web.oidc.token_key_file {}", file.display()))?;
                let signer = Authenticator::clone(&base).with_signing_key(&pem).context("web.oidc.token_key_file")?;
                Some(Arc::new(signer))
            }
            (None, Some(base)) if oidc.is_some() => {
                tracing::warn!(
                    "platform tokens of people signed in through the identity provider are signed with auth.hs256_secret: \
                     set web.oidc.token_key_file outside development"
                );
                Some(base)
            }
            (_, minter) if config.dev_sign_in => minter,
            (_, _) => None,
        };
        if let Some(minter) = &minter {
            minter
                .mint("pos-web", "", "", &[], Duration::from_secs(1))
                .context("the cabinet cannot mint platform tokens: set auth.hs256_secret (development) or web.oidc.token_key_file")?;
        }
        let cookies = Cookies { secure: config.secure_cookies_for(listen_addr) };
        let sessions = Sessions::new(cache, Duration::from_secs(config.session_minutes.max(1) * 60));
        let citizen_minter = minter.clone().or(platform_minter);
        let appeal_links = citizen::link_key(&config.citizen, None);
        Ok(App(Arc::new(Inner { config, channel, minter, oidc, sessions, cookies, citizen_minter, appeal_links })))
    }

    /// [`App::try_new`]; a configuration that cannot work leaves the cabinet without sign-in
    /// (its page says so), and the reason in the log.
    pub fn new(
        config: WebConfig,
        channel: Channel,
        cache: Arc<dyn Cache>,
        minter: Option<Arc<Authenticator>>,
        listen_addr: SocketAddr,
    ) -> App {
        match App::try_new(config.clone(), channel.clone(), cache.clone(), minter.clone(), listen_addr) {
            Ok(app) => app,
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "web cabinet without sign-in: its configuration cannot work"
                );
                let config = WebConfig { dev_sign_in: false, oidc: config::OidcConfig::default(), ..config };
                let cookies = Cookies { secure: config.secure_cookies_for(listen_addr) };
                let sessions = Sessions::new(cache, Duration::from_secs(config.session_minutes.max(1) * 60));
                let citizen_minter = minter;
                let appeal_links = citizen::link_key(&config.citizen, None);
                App(Arc::new(Inner {
                    config,
                    channel,
                    minter: None,
                    oidc: None,
                    sessions,
                    cookies,
                    citizen_minter,
                    appeal_links,
                }))
            }
        }
    }
}

impl App {
    /// The platform's auth settings, for the appeal links' key: without
    /// `web.citizen.appeal_link_key` it is derived from `auth.hs256_secret` exactly as notify
    /// derives the key it signs the registration letters' links with
    /// ([`pos_platform::appeal_link::LinkKey::from_config`]), so that `pos up` and a development
    /// deployment open those links with one secret configured. The processes call it; tests that
    /// need no links leave it out.
    pub fn with_auth(self, auth: &pos_platform::config::AuthConfig) -> App {
        let mut inner = Inner::clone(&self.0);
        inner.appeal_links = citizen::link_key(&inner.config.citizen, Some(auth));
        App(Arc::new(inner))
    }
}

/// All routes, with the CSRF check and the security headers around them.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", axum::routing::get(|| async { axum::response::Redirect::to("/cabinet") }))
        .route("/assets/{name}", axum::routing::get(assets::serve))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .merge(cabinet::routes())
        .merge(citizen::routes(&app))
        .merge(admin::routes())
        .merge(open311::routes(&app))
        .merge(api::routes(&app))
        .layer(axum::middleware::from_fn_with_state(app.clone(), csrf_guard))
        .layer(axum::middleware::from_fn_with_state(app.clone(), security_headers))
        .with_state(app)
}

/// Serves the cabinet on `listener` until `shutdown`.
pub async fn serve(app: App, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "web cabinet listening");
    // The peer's address: the citizen form's rate limits count per client.
    let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    Ok(())
}

/// Refuses every state-changing request whose CSRF token does not match: the session's, or the
/// sign-in cookie's before there is a session. The token comes in the form (`csrf`; the first
/// field of a multipart form) or, for htmx requests, in the `X-CSRF-Token` header.
async fn csrf_guard(State(app): State<App>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    // The widget's writes carry a signed form token instead (no cookies in a third-party frame).
    if citizen::exempt_from_cookie_csrf(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    // Machine APIs (Open311, the JSON API) read no cookie: a partner's key or a bearer token
    // authenticates each request, so a forged cross-site request carries nothing to abuse.
    if request.uri().path().starts_with("/open311/") || request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    // A multipart form (with files) is not read here: its token comes in the header or as its
    // first field, and the files go on to the handler unbuffered (its route sets the limit).
    let header_token = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (body, form_token) = if cabinet::attachments::is_multipart(&parts.headers) {
        match header_token {
            Some(_) => (body, None),
            None => {
                let (token, body) = cabinet::attachments::leading_csrf_field(&parts.headers, body).await;
                (body, token)
            }
        }
    } else {
        let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(bytes) => bytes,
            Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response(),
        };
        let token = form_field(&bytes, "csrf");
        (Body::from(bytes), token)
    };
    let expected = match session::cookie(&parts.headers, app.cookies.session_name()) {
        Some(id) => app.sessions.get(id).await.map(|s| s.csrf),
        None => None,
    }
    .or_else(|| session::cookie(&parts.headers, app.cookies.sign_in_name()).map(str::to_owned));
    let provided = header_token.or(form_token);
    match (expected, provided) {
        (Some(expected), Some(provided)) if session::same_secret(&expected, &provided) => {
            next.run(Request::from_parts(parts, body)).await
        }
        _ => {
            tracing::warn!(target: "security", path = %parts.uri.path(), "form without a valid csrf token refused");
            cabinet::pages::refused_form().into_response()
        }
    }
}

/// A field of a URL-encoded form.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

/// Pages are personal: never cached, never framed, scripts and styles only from the cabinet.
/// Forms lead only to the cabinet, and to the identity provider's end of signing out.
async fn security_headers(State(app): State<App>, request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/assets/");
    // The citizen form is made to be framed by organizations' sites; nothing else is.
    let frameable = citizen::frameable(request.uri().path());
    let mut response = next.run(request).await;
    let provider = app.oidc.as_ref().map(|p| p.form_action_origins()).unwrap_or_default();
    let ancestors = if frameable { citizen::frame_ancestors(&app) } else { "'none'".to_owned() };
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         frame-ancestors {ancestors}; form-action 'self'{}; base-uri 'none'",
        provider.iter().map(|origin| format!(" {origin}")).collect::<String>()
    );
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    if !frameable {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !is_asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(super::form_field(b"a=1&csrf=ab%20c", "csrf").as_deref(), Some("ab c"));
        assert_eq!(super::form_field(b"a=1", "csrf"), None);
    }
}
