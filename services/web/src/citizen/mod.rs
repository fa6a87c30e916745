//! The citizen's side: the form an organization embeds on its site (the widget), its abuse
//! limits, and the applicant's page of their appeal, reached by the secret link of the
//! registration e-mail.
//!
//! - `widget`: `/widget.js` (the embed snippet's script), `/widget` (the form, made for an
//!   iframe), its uploads, classifier and directory lookups, and the result page.
//! - `form_token`: the form's signed token (CSRF, honeypot timing, idempotency, proof of work).
//! - `limits`: rate limits per IP and per contact, the client's IP, the 429 page.
//! - `appeal`: `/appeal/<link>` → a session → `/appeal/<id>`: status, history, deadlines, the
//!   answer and its files, accept or reject it, send the information asked for.
//!
//! Like the cabinet, it decides nothing itself: each call goes to the services with a token
//! minted for the applicant (an anonymous `widget-<nonce>` for the form, the appeal's own
//! account for the page), and the services check it.

mod appeal;
pub mod config;
pub mod form_token;
pub mod limits;
mod pages;
mod widget;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use http::Method;
use pos_platform::appeal_link::LinkKey;
use pos_platform::auth::{Authenticator, Role};

pub use config::CitizenConfig;
use form_token::FormKeys;
use limits::Limiter;

use crate::App;

/// The largest form the citizen pages take (the appeal's text is the largest field); files go
/// apart, streamed.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The appeal links' key: `web.citizen.appeal_link_key`; unset, with the platform's `auth`,
/// the one derived from `auth.hs256_secret` (notify signs with the same, see
/// [`LinkKey::from_config`]); none otherwise.
pub fn link_key(config: &CitizenConfig, auth: Option<&pos_platform::config::AuthConfig>) -> Option<LinkKey> {
    match auth {
        Some(auth) => LinkKey::from_config(config.appeal_link_key.as_ref(), auth),
        None => config
            .appeal_link_key
            .as_ref()
            .filter(|k| !k.expose().is_empty())
            .map(|k| LinkKey::new(k.expose().as_bytes())),
    }
}

/// The citizen side's state: the cabinet's [`App`] and what only the citizen side has.
pub struct Citizen {
    pub app: App,
    pub config: CitizenConfig,
    pub forms: FormKeys,
    pub links: Option<LinkKey>,
    pub minter: Option<Arc<Authenticator>>,
    pub ip_limiter: Limiter<IpAddr>,
    pub contact_limiter: Limiter<String>,
}

#[derive(Clone)]
pub struct CitizenState(Arc<Citizen>);

impl std::ops::Deref for CitizenState {
    type Target = Citizen;
    fn deref(&self) -> &Citizen {
        &self.0
    }
}

impl CitizenState {
    pub fn new(app: &App, minter: Option<Arc<Authenticator>>) -> CitizenState {
        let config = app.config.citizen.clone();
        let form_key = match &config.form_key {
            Some(key) if !key.expose().is_empty() => key.expose().as_bytes().to_vec(),
            _ => {
                tracing::info!(
                    "widget forms signed with a random key of this process: set web.citizen.form_key for replicas"
                );
                rand::random::<[u8; 32]>().to_vec()
            }
        };
        let links = app.appeal_links.clone();
        if links.is_none() {
            tracing::info!(
                "appeal links not accepted: set web.citizen.appeal_link_key (notify.appeal_link_key's value) \
                 or auth.hs256_secret"
            );
        }
        CitizenState(Arc::new(Citizen {
            app: app.clone(),
            forms: FormKeys::new(&form_key),
            links,
            minter,
            ip_limiter: Limiter::new(limits::per_minute(config.ip_per_minute, config.ip_burst)),
            contact_limiter: Limiter::new(limits::per_hour(config.contact_per_hour, config.contact_burst)),
            config,
        }))
    }

    /// A token for the applicant `subject` (anonymous or the appeal's own) for `ttl`.
    pub fn applicant_token(&self, subject: &str, region_code: &str, ttl: Duration) -> Option<String> {
        let minter = self.minter.as_ref()?;
        match minter.mint(subject, "", region_code, &[Role::Applicant], ttl) {
            Ok(token) => Some(token),
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "applicant token not minted");
                None
            }
        }
    }
}

/// The citizen side's routes, with their own state; merged into the web service's router.
pub fn routes(app: &App) -> Router<App> {
    let state = CitizenState::new(app, app.citizen_minter.clone());
    let limited = || axum::middleware::from_fn_with_state(state.clone(), limits::per_ip);
    Router::new()
        .route("/widget.js", get(widget::script))
        .route("/widget", get(widget::page).merge(post(widget::submit).layer(limited())))
        .route("/widget/upload", post(widget::upload).layer(limited()))
        .route("/widget/organizations", get(widget::organizations).layer(limited()))
        .route("/appeal/{key}", get(appeal::open))
        .route("/appeal/{id}/accept", post(appeal::accept))
        .route("/appeal/{id}/reject", post(appeal::reject))
        .route(
            "/appeal/{id}/information",
            post(appeal::information).layer(DefaultBodyLimit::max(crate::cabinet::attachments::MAX_MULTIPART_BYTES)),
        )
        .route("/appeal/{id}/files/{file}", get(appeal::download))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(state)
}

/// The pages an organization's site may frame: the widget and what it leads to.
pub fn frameable(path: &str) -> bool {
    path == "/widget" || path.starts_with("/widget/")
}

/// The widget's writes carry their own CSRF protection (the signed form token) and no cookies:
/// the cabinet's cookie check does not apply to them, and only to them.
pub fn exempt_from_cookie_csrf(method: &Method, path: &str) -> bool {
    method == Method::POST && (path == "/widget" || path == "/widget/upload")
}

/// The `frame-ancestors` sources of the widget's pages.
pub fn frame_ancestors(app: &App) -> String {
    let sources = app.config.citizen.frame_ancestors.trim();
    // Only what a CSP source list can hold: no quotes of ours broken, no directive injected.
    if sources.is_empty() || sources.contains([';', ',', '"', '\n', '\r']) {
        "*".to_owned()
    } else {
        sources.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use pos_platform::appeal_link::AppealLink;
    use pos_platform::config::{AuthConfig, Secret};

    use super::*;

    /// Without its own key the web opens the links notify signs with the key derived from the
    /// development secret (what `pos up` has), and with its own key only the links of that key.
    #[test]
    fn citizen_appeal_links_open_with_the_key_notify_derives() {
        let auth = AuthConfig { hs256_secret: Some(Secret::new("development secret")), ..AuthConfig::default() };
        let link = AppealLink { appeal_id: "a-1".into(), subject: "widget-ab".into(), expires_at: i64::MAX };
        let signed = LinkKey::from_config(None, &auth).expect("notify's key").sign(&link);
        let web = link_key(&CitizenConfig::default(), Some(&auth)).expect("derived");
        assert_eq!(web.verify(&signed, 0), Ok(link.clone()));
        assert!(link_key(&CitizenConfig::default(), None).is_none(), "no key without auth or a setting");
        let own = CitizenConfig { appeal_link_key: Some(Secret::new("own")), ..CitizenConfig::default() };
        let own = link_key(&own, Some(&auth)).expect("configured");
        assert!(own.verify(&signed, 0).is_err(), "a configured key is not replaced by the derived one");
    }
}
