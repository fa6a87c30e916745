//! The web cabinet (личный кабинет организации): server-rendered pages for the organization's
//! staff, with htmx for partial updates.
//!
//! The service holds no data of its own and decides nothing the services decide: every page is
//! built from the services' gRPC APIs, called with the signed-in person's token, so the services
//! authorize each call exactly as they would a command-line or system call. The pages check the
//! session's roles and organization first only to show the right things and to refuse early.
//!
//! - `session`: server-side sessions in the platform's cache, cookies, CSRF tokens.
//! - `cabinet`: sign-in, the folders and the list, the card, the workflow commands.
//! - `texts`: what people read, in Russian.
//! - `assets`: htmx and the stylesheets, built in.

pub mod assets;
pub mod cabinet;
pub mod config;
pub mod session;
pub mod texts;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

pub struct Inner {
    pub config: WebConfig,
    pub channel: Channel,
    /// Mints development tokens; only with the development sign-in.
    pub minter: Option<Arc<Authenticator>>,
    pub sessions: Sessions,
    pub cookies: Cookies,
}

impl std::ops::Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl App {
    /// The cabinet on `channel` (the platform's gRPC front door), listening at `listen_addr`
    /// (which decides whether cookies are `Secure` unless configured). `minter` is required for
    /// the development sign-in and ignored otherwise.
    pub fn new(
        config: WebConfig,
        channel: Channel,
        cache: Arc<dyn Cache>,
        minter: Option<Arc<Authenticator>>,
        listen_addr: SocketAddr,
    ) -> App {
        let cookies = Cookies { secure: config.secure_cookies_for(listen_addr) };
        let sessions = Sessions::new(cache, Duration::from_secs(config.session_minutes.max(1) * 60));
        let minter = if config.dev_sign_in { minter } else { None };
        App(Arc::new(Inner { config, channel, minter, sessions, cookies }))
    }
}

/// All routes, with the CSRF check and the security headers around them.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", axum::routing::get(|| async { axum::response::Redirect::to("/cabinet") }))
        .route("/assets/{name}", axum::routing::get(assets::serve))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .merge(cabinet::routes())
        .layer(axum::middleware::from_fn_with_state(app.clone(), csrf_guard))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(app)
}

/// Serves the cabinet on `listener` until `shutdown`.
pub async fn serve(app: App, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "web cabinet listening");
    axum::serve(listener, router(app)).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    Ok(())
}

/// Refuses every state-changing request whose CSRF token does not match: the session's, or the
/// sign-in cookie's before there is a session. The token comes in the form (`csrf`) or, for
/// htmx requests, in the `X-CSRF-Token` header.
async fn csrf_guard(State(app): State<App>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response(),
    };
    let expected = match session::cookie(&parts.headers, app.cookies.session_name()) {
        Some(id) => app.sessions.get(id).await.map(|s| s.csrf),
        None => None,
    }
    .or_else(|| session::cookie(&parts.headers, app.cookies.sign_in_name()).map(str::to_owned));
    let provided = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| form_field(&bytes, "csrf"));
    match (expected, provided) {
        (Some(expected), Some(provided)) if session::same_secret(&expected, &provided) => {
            next.run(Request::from_parts(parts, Body::from(bytes))).await
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
async fn security_headers(request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/assets/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
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
