//! Signing in and out.
//!
//! Development: pick an organization from the directory and a role; the cabinet mints the same
//! HS256 token `pos up` prints, for the development user of that role (`dev-coordinator`, ...),
//! and puts the user into the organization's staff directory when missing, so that a
//! coordinator can assign them. Production sign-in goes through the identity provider (OpenID
//! Connect, `super::provider`), and the page then offers only that.

use std::collections::HashMap;
use std::time::Duration;

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, StatusCode, header};
use maud::html;
use pos_platform::auth::Role;
use pos_proto::v1 as pb;

use super::pages;
use super::provider::{self, SignInRecord};
use super::{Api, WebError};
use crate::App;
use crate::session::{self, Session};
use crate::texts;

/// The roles one can sign in as, with the development user's name.
const DEV_USERS: [(Role, &str); 6] = [
    (Role::Coordinator, "Смирнова Ольга"),
    (Role::Executor, "Петров Иван"),
    (Role::Head, "Кузнецова Анна"),
    (Role::Curator, "Волков Сергей"),
    (Role::OrgAdmin, "Соколова Мария"),
    (Role::Approver, "Орлов Дмитрий"),
];

/// The development sign-in, as the audit trail names it.
const DEVELOPMENT: &str = "web/sign-in/development";

/// How long the sign-in form's CSRF cookie lives.
const SIGN_IN_FORM_TTL: Duration = Duration::from_secs(3600);

pub async fn page(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if app.oidc.is_some() {
        return super::provider::page(query.contains_key("signed_out"));
    }
    let (true, Some(minter)) = (app.config.dev_sign_in, app.minter.clone()) else {
        return pages::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Вход не настроен",
            "Вход через поставщика удостоверений (ЕСИА) для этого кабинета ещё не настроен. Обратитесь к администратору.",
        );
    };
    // The directory is public; reading it before sign-in takes a token of the least role.
    let token = match minter.mint("web-sign-in", "", "", &[Role::Applicant], Duration::from_secs(60)) {
        Ok(token) => token,
        Err(error) => return WebError::Internal(error.to_string()).into_response(),
    };
    let api = Api::with_token(&app, &token);
    let organizations =
        match api.routing().list_organizations(api.request(pb::ListOrganizationsRequest::default())).await {
            Ok(response) => {
                let mut organizations = response.into_inner().organizations;
                organizations.sort_by(|a, b| (&a.region_code, &a.short_name).cmp(&(&b.region_code, &b.short_name)));
                organizations
            }
            Err(status) => return WebError::from_status(&status, false).into_response(),
        };
    let cookie_name = app.cookies.sign_in_name();
    let (csrf, set_cookie) = match session::cookie(&headers, cookie_name) {
        Some(value) if value.len() == 64 => (value.to_owned(), None),
        _ => {
            let value = session::random_token();
            let cookie = app.cookies.set(cookie_name, &value, SIGN_IN_FORM_TTL);
            (value, Some(cookie))
        }
    };
    let body = pages::layout(
        "Вход — ПОС",
        None,
        None,
        html! {
            div.sign-in {
                h1 { "Вход в личный кабинет организации" }
                p.hint { "Режим разработки: выберите организацию и роль пользователя." }
                form method="post" action="/cabinet/sign-in" {
                    input type="hidden" name="csrf" value=(csrf);
                    div.field {
                        label for="organization" { "Организация" }
                        select #organization name="organization" required {
                            @for org in &organizations {
                                option value=(org.id) selected[org.id == "41-kcioko"] {
                                    (org.region_code) " · " (org.short_name)
                                }
                            }
                        }
                    }
                    fieldset.field {
                        legend { "Роль" }
                        @for (role, name) in DEV_USERS {
                            label.choice {
                                input type="radio" name="role" value=(role.as_str()) required
                                    checked[role == Role::Coordinator];
                                " " (texts::role(role)) span.muted { " — " (name) }
                            }
                        }
                    }
                    button.primary type="submit" { "Войти" }
                }
            }
        },
    );
    let mut response = body.into_response();
    if let Some(cookie) = set_cookie
        && let Ok(value) = cookie.parse()
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn submit(
    State(app): State<App>,
    headers: HeaderMap,
    extensions: http::Extensions,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (true, Some(minter)) = (app.config.dev_sign_in, app.minter.clone()) else {
        return WebError::Forbidden("Вход для разработки выключен.").into_response();
    };
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let Some((role, name)) = DEV_USERS.iter().find(|(role, _)| role.as_str() == field("role")).copied() else {
        return pages::error(StatusCode::BAD_REQUEST, "Вход не выполнен", "Выберите роль.");
    };
    let ttl = app.sessions.ttl();
    let lookup = match minter.mint("web-sign-in", "", "", &[Role::Applicant], Duration::from_secs(60)) {
        Ok(token) => token,
        Err(error) => return WebError::Internal(error.to_string()).into_response(),
    };
    let api = Api::with_token(&app, &lookup);
    let request = pb::GetOrganizationRequest { id: field("organization").to_owned() };
    let organization = match api.routing().get_organization(api.request(request)).await {
        Ok(organization) => organization.into_inner(),
        Err(status) if status.code() == tonic::Code::NotFound => {
            let client = provider::client_of(&app, &headers, &extensions);
            let record = SignInRecord {
                method: DEVELOPMENT,
                outcome: "UNKNOWN_ORGANIZATION",
                subject: &format!("dev-{role}"),
                organization_id: "",
                roles: &[role],
                client,
                reason: Some("development sign-in to an organization not in the directory"),
            };
            provider::record_sign_in(&app, record);
            return pages::error(StatusCode::BAD_REQUEST, "Вход не выполнен", "Такой организации нет в справочнике.");
        }
        Err(status) => return WebError::from_status(&status, false).into_response(),
    };
    let subject = format!("dev-{role}");
    let token = match minter.mint(&subject, &organization.id, &organization.region_code, &[role], ttl) {
        Ok(token) => token,
        Err(error) => return WebError::Internal(error.to_string()).into_response(),
    };
    if let Err(error) = ensure_staff(&app, &minter, &organization.id, &subject, name, role).await {
        tracing::warn!(%error, organization = %organization.id, "development user not added to the staff directory");
    }
    let session = Session {
        token,
        subject,
        display_name: name.to_owned(),
        organization_id: organization.id.clone(),
        organization_name: if organization.short_name.is_empty() {
            organization.full_name.clone()
        } else {
            organization.short_name.clone()
        },
        region_code: organization.region_code.clone(),
        roles: vec![role],
        csrf: session::random_token(),
        expires_at: chrono::Utc::now().timestamp() + ttl.as_secs() as i64,
        provider: None,
    };
    let id = match app.sessions.create(&session).await {
        Ok(id) => id,
        Err(error) => return WebError::Internal(error.to_string()).into_response(),
    };
    tracing::info!(subject = %session.subject, organization = %session.organization_id, "signed in (development)");
    let record = SignInRecord {
        method: DEVELOPMENT,
        outcome: pos_platform::audit::OK,
        subject: &session.subject,
        organization_id: &session.organization_id,
        roles: &session.roles,
        client: provider::client_of(&app, &headers, &extensions),
        reason: None,
    };
    provider::record_sign_in(&app, record);
    let mut response = Redirect::to("/cabinet").into_response();
    for cookie in [app.cookies.set(app.cookies.session_name(), &id, ttl), app.cookies.clear(app.cookies.sign_in_name())]
    {
        if let Ok(value) = cookie.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Adds the development user to the organization's staff when missing, as its admin would.
async fn ensure_staff(
    app: &App,
    minter: &pos_platform::auth::Authenticator,
    organization_id: &str,
    subject: &str,
    name: &str,
    role: Role,
) -> anyhow::Result<()> {
    let admin = minter.mint("dev-org_admin", organization_id, "", &[Role::OrgAdmin], Duration::from_secs(60))?;
    let api = Api::with_token(app, &admin);
    let request = pb::ListStaffRequest { organization_id: organization_id.to_owned(), role: String::new() };
    let staff = api.ticketing().list_staff(api.request(request)).await?.into_inner().staff;
    if staff.iter().any(|member| member.subject == subject && member.active) {
        return Ok(());
    }
    let member = pb::StaffMember {
        subject: subject.to_owned(),
        organization_id: organization_id.to_owned(),
        full_name: name.to_owned(),
        email: format!("{subject}@example.org"),
        roles: vec![role.as_str().to_owned()],
        active: true,
    };
    api.ticketing().upsert_staff(api.request(member)).await?;
    Ok(())
}

/// Ends the session; one signed in through the identity provider goes on to sign out there too,
/// when the provider has an end-session endpoint.
pub async fn sign_out(State(app): State<App>, headers: HeaderMap) -> Response {
    let mut target = "/cabinet/sign-in".to_owned();
    if let Some(id) = session::cookie(&headers, app.cookies.session_name()) {
        let session = app.sessions.get(id).await;
        app.sessions.remove(id).await;
        if let Some(session) = session {
            tracing::info!(subject = %session.subject, "signed out");
            if let (Some(provider), Some(signed_in)) = (&app.oidc, &session.provider) {
                target = match provider.end_session_url(Some(&signed_in.id_token)).await {
                    Some(url) => url.to_string(),
                    None => "/cabinet/sign-in?signed_out=1".to_owned(),
                };
            }
        }
    }
    let mut response = Redirect::to(&target).into_response();
    if let Ok(value) = app.cookies.clear(app.cookies.session_name()).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
