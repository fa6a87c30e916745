//! Signing in through the identity provider (OpenID Connect).
//!
//! `/cabinet/sign-in/start` keeps the sign-in's secrets (state, nonce, PKCE verifier) on the
//! server under a cookie of their own and sends the person to the provider;
//! `/cabinet/sign-in/callback` takes them back once, redeems the code and checks the ID token
//! (`crate::oidc`). Then the person's organization and roles: from the ID token's claims, or,
//! where a claim is absent, from the staff directory (ticketing's staff list); the staff
//! directory also says whether an administrator has switched the account off. The session gets
//! a short-lived platform token minted for them (see `docs/adr/0012-…`), minted again from the
//! session as it runs out.
//!
//! Every refusal shows the person what happened in Russian and logs the reason in English
//! (target `security`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use futures::StreamExt;
use http::{HeaderMap, StatusCode, header};
use maud::html;
use openidconnect::ClaimsVerificationError;
use pos_platform::auth::Role;
use pos_proto::v1 as pb;

use super::{Api, WebError, pages};
use crate::App;
use crate::oidc::{Identity, SignInError};
use crate::session::{self, ProviderSession, Session};

/// How many organizations' staff lists are read at once when the ID token names no
/// organization.
const DIRECTORY_CONCURRENCY: usize = 8;

/// A platform token is minted again when less than this is left of it.
const RENEW_BEFORE_SECS: i64 = 60;

/// Why the cabinet would not let a person in, after the provider vouched for them.
#[derive(Debug)]
enum Refusal {
    Provider(SignInError),
    /// No pending sign-in in this browser: never started here, already used, or too old.
    NoPendingSignIn,
    UnknownOrganization(String),
    NotStaff,
    SeveralOrganizations(Vec<String>),
    Deactivated,
    NoCabinetRole,
    Directory(tonic::Status),
    Internal(String),
}

impl Refusal {
    /// The page the person sees.
    fn page(&self) -> Response {
        use ClaimsVerificationError as C;
        let (status, text): (StatusCode, String) = match self {
            Refusal::Provider(SignInError::Unavailable(_)) | Refusal::Directory(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Служба входа сейчас недоступна. Повторите попытку через минуту.".into(),
            ),
            Refusal::Provider(SignInError::StateMismatch) | Refusal::NoPendingSignIn => (
                StatusCode::BAD_REQUEST,
                "Ответ службы входа не относится ко входу, начатому в этом браузере: вход устарел, уже завершён \
                 или начат в другом окне. Начните вход заново."
                    .into(),
            ),
            Refusal::Provider(SignInError::Refused { error, .. }) if error == "access_denied" => {
                (StatusCode::FORBIDDEN, "Вход отменён или не разрешён службой входа.".into())
            }
            Refusal::Provider(SignInError::Refused { .. }) => {
                (StatusCode::BAD_REQUEST, "Служба входа отказала во входе. Начните вход заново.".into())
            }
            Refusal::Provider(SignInError::CodeRefused(_)) => (
                StatusCode::BAD_REQUEST,
                "Служба входа не подтвердила вход: код входа не принят. Начните вход заново.".into(),
            ),
            Refusal::Provider(SignInError::NoIdToken) => {
                (StatusCode::BAD_GATEWAY, "Служба входа не прислала подтверждение личности.".into())
            }
            Refusal::Provider(SignInError::IdToken(C::Expired(_))) => (
                StatusCode::BAD_REQUEST,
                "Подтверждение личности от службы входа просрочено и не принято. Начните вход заново.".into(),
            ),
            Refusal::Provider(SignInError::IdToken(C::SignatureVerification(_))) => (
                StatusCode::BAD_REQUEST,
                "Подтверждение личности подписано не ключом службы входа и не принято.".into(),
            ),
            Refusal::Provider(SignInError::IdToken(C::InvalidNonce(_))) => (
                StatusCode::BAD_REQUEST,
                "Подтверждение личности выдано для другого входа и не принято. Начните вход заново.".into(),
            ),
            Refusal::Provider(SignInError::IdToken(_)) => (
                StatusCode::BAD_REQUEST,
                "Подтверждение личности выдано не для этого кабинета или повреждено и не принято.".into(),
            ),
            Refusal::UnknownOrganization(id) => (
                StatusCode::FORBIDDEN,
                format!("Организации «{id}», указанной в учётной записи, нет в справочнике организаций."),
            ),
            Refusal::NotStaff => (
                StatusCode::FORBIDDEN,
                "Учётная запись не числится среди сотрудников ни одной организации. Обратитесь к администратору \
                 личного кабинета вашей организации."
                    .into(),
            ),
            Refusal::SeveralOrganizations(_) => (
                StatusCode::FORBIDDEN,
                "Учётная запись числится сотрудником нескольких организаций, а служба входа не сообщила, в какую \
                 входить. Обратитесь к администратору."
                    .into(),
            ),
            Refusal::Deactivated => {
                (StatusCode::FORBIDDEN, "Учётная запись отключена администратором личного кабинета организации.".into())
            }
            Refusal::NoCabinetRole => (
                StatusCode::FORBIDDEN,
                "У учётной записи нет ни одной роли личного кабинета организации. Обратитесь к администратору.".into(),
            ),
            Refusal::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Не удалось выполнить вход.".into()),
        };
        let body = pages::layout(
            "Вход не выполнен — ПОС",
            None,
            None,
            html! {
                div.sign-in {
                    h1 { "Вход не выполнен" }
                    p.refusal role="alert" { (text) }
                    p { a href="/cabinet/sign-in" { "Начать вход заново" } }
                }
            },
        );
        (status, body).into_response()
    }

    /// The reason, for the log.
    fn reason(&self) -> String {
        match self {
            Refusal::Provider(error) => crate::oidc::error_chain(error),
            Refusal::NoPendingSignIn => "no pending sign-in in this browser (never started, used or expired)".into(),
            Refusal::UnknownOrganization(id) => format!("the organization claim names {id:?}, not in the directory"),
            Refusal::NotStaff => "the subject is in no organization's staff directory".into(),
            Refusal::SeveralOrganizations(ids) => {
                format!("no organization claim and the subject is staff of several: {}", ids.join(", "))
            }
            Refusal::Deactivated => "the staff directory has the account switched off".into(),
            Refusal::NoCabinetRole => "no cabinet role in the roles claim or the staff directory".into(),
            Refusal::Directory(status) => {
                format!("the directory is unavailable: {}: {}", status.code(), status.message())
            }
            Refusal::Internal(detail) => detail.clone(),
        }
    }

    /// The reason as a code, for the audit trail.
    fn code(&self) -> &'static str {
        match self {
            Refusal::Provider(SignInError::Unavailable(_)) => "PROVIDER_UNAVAILABLE",
            Refusal::Provider(SignInError::StateMismatch) => "STATE_MISMATCH",
            Refusal::Provider(SignInError::Refused { .. }) => "PROVIDER_REFUSED",
            Refusal::Provider(SignInError::CodeRefused(_)) => "CODE_REFUSED",
            Refusal::Provider(SignInError::NoIdToken) => "NO_ID_TOKEN",
            Refusal::Provider(SignInError::IdToken(_)) => "ID_TOKEN_REJECTED",
            Refusal::NoPendingSignIn => "NO_PENDING_SIGN_IN",
            Refusal::UnknownOrganization(_) => "UNKNOWN_ORGANIZATION",
            Refusal::NotStaff => "NOT_STAFF",
            Refusal::SeveralOrganizations(_) => "SEVERAL_ORGANIZATIONS",
            Refusal::Deactivated => "DEACTIVATED",
            Refusal::NoCabinetRole => "NO_CABINET_ROLE",
            Refusal::Directory(_) => "DIRECTORY_UNAVAILABLE",
            Refusal::Internal(_) => "INTERNAL",
        }
    }

    fn respond(self, app: &App, subject: Option<&str>, client: Option<IpAddr>) -> Response {
        let reason = self.reason();
        record_sign_in(
            app,
            SignInRecord {
                method: CALLBACK,
                outcome: self.code(),
                subject: subject.unwrap_or_default(),
                organization_id: "",
                roles: &[],
                client,
                reason: Some(&reason),
            },
        );
        match &self {
            Refusal::Provider(SignInError::Unavailable(_)) | Refusal::Directory(_) | Refusal::Internal(_) => {
                tracing::error!(target: "security", subject, %reason, "sign-in through the identity provider failed");
            }
            _ => tracing::warn!(target: "security", subject, %reason, "sign-in through the identity provider refused"),
        }
        self.page()
    }
}

impl From<SignInError> for Refusal {
    fn from(error: SignInError) -> Refusal {
        Refusal::Provider(error)
    }
}

/// The sign-in page when people sign in through the provider: one button, and a word after
/// signing out.
pub fn page(signed_out: bool) -> Response {
    let body = pages::layout(
        "Вход — ПОС",
        None,
        None,
        html! {
            div.sign-in {
                h1 { "Вход в личный кабинет организации" }
                @if signed_out {
                    p.flash.done role="status" { "Вы вышли из личного кабинета." }
                }
                p { "Вход выполняется через единую службу входа вашей организации." }
                p { a.button.primary href="/cabinet/sign-in/start" { "Войти" } }
            }
        },
    );
    body.into_response()
}

/// Sends the person to the provider, keeping the sign-in's secrets here.
pub async fn start(State(app): State<App>, headers: HeaderMap, extensions: http::Extensions) -> Response {
    let Some(provider) = app.oidc.clone() else {
        return WebError::NotFound.into_response();
    };
    let client = client_of(&app, &headers, &extensions);
    let (url, pending) = match provider.authorize().await {
        Ok(started) => started,
        Err(error) => return Refusal::from(error).respond(&app, None, client),
    };
    let ttl = Duration::from_secs(provider.config().sign_in_minutes.max(1) * 60);
    let id = match app.sessions.put_pending(&pending, ttl).await {
        Ok(id) => id,
        Err(error) => {
            return Refusal::Internal(format!("pending sign-in not stored: {error}")).respond(&app, None, client);
        }
    };
    let mut response = Redirect::to(url.as_str()).into_response();
    append_cookie(&mut response, &app.cookies.set(app.cookies.pending_name(), &id, ttl));
    response
}

/// The provider's answer.
pub async fn callback(
    State(app): State<App>,
    headers: HeaderMap,
    extensions: http::Extensions,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(provider) = app.oidc.clone() else {
        return WebError::NotFound.into_response();
    };
    let client = client_of(&app, &headers, &extensions);
    let pending = match session::cookie(&headers, app.cookies.pending_name()) {
        Some(id) => app.sessions.take_pending(id).await,
        None => None,
    };
    let mut response = match pending {
        None => Refusal::NoPendingSignIn.respond(&app, None, client),
        Some(pending) => {
            let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
            let outcome = if let Some(error) = params.get("error") {
                if session::same_secret(&pending.state, param("state")) {
                    Err(SignInError::Refused {
                        error: error.clone(),
                        description: params.get("error_description").cloned(),
                    })
                } else {
                    Err(SignInError::StateMismatch)
                }
            } else {
                provider.finish(&pending, param("state"), param("code")).await
            };
            match outcome {
                Err(error) => Refusal::from(error).respond(&app, None, client),
                Ok(identity) => match sign_in(&app, &identity, client).await {
                    Ok(response) => response,
                    Err(refusal) => refusal.respond(&app, Some(&identity.subject), client),
                },
            }
        }
    };
    append_cookie(&mut response, &app.cookies.clear(app.cookies.pending_name()));
    response
}

/// Whom the identity is in the cabinet: organization, roles, name.
struct Person {
    organization: pb::Organization,
    roles: Vec<Role>,
    name: String,
    roles_from_directory: bool,
}

async fn sign_in(app: &App, identity: &Identity, client: Option<IpAddr>) -> Result<Response, Refusal> {
    let person = resolve(app, identity).await?;
    let minter = app.minter.as_ref().ok_or_else(|| Refusal::Internal("no key to mint platform tokens".into()))?;
    let ttl = app.sessions.ttl();
    let token_ttl = token_ttl(app);
    let token = minter
        .mint(&identity.subject, &person.organization.id, &person.organization.region_code, &person.roles, token_ttl)
        .map_err(|e| Refusal::Internal(format!("platform token not minted: {e}")))?;
    let now = chrono::Utc::now().timestamp();
    let session = Session {
        token,
        subject: identity.subject.clone(),
        display_name: person.name,
        organization_id: person.organization.id.clone(),
        organization_name: if person.organization.short_name.is_empty() {
            person.organization.full_name.clone()
        } else {
            person.organization.short_name.clone()
        },
        region_code: person.organization.region_code.clone(),
        roles: person.roles,
        csrf: session::random_token(),
        expires_at: now + ttl.as_secs() as i64,
        provider: Some(ProviderSession {
            id_token: identity.id_token.clone(),
            token_expires_at: now + token_ttl.as_secs() as i64,
            roles_from_directory: person.roles_from_directory,
        }),
    };
    let id = app.sessions.create(&session).await.map_err(|e| Refusal::Internal(format!("session not stored: {e}")))?;
    tracing::info!(
        subject = %session.subject,
        organization = %session.organization_id,
        roles = ?session.roles,
        "signed in through the identity provider"
    );
    record_sign_in(
        app,
        SignInRecord {
            method: CALLBACK,
            outcome: pos_platform::audit::OK,
            subject: &session.subject,
            organization_id: &session.organization_id,
            roles: &session.roles,
            client,
            reason: None,
        },
    );
    let mut response = Redirect::to("/cabinet").into_response();
    append_cookie(&mut response, &app.cookies.set(app.cookies.session_name(), &id, ttl));
    Ok(response)
}

fn token_ttl(app: &App) -> Duration {
    Duration::from_secs(app.config.oidc.token_minutes.max(1) * 60).min(app.sessions.ttl())
}

/// A token for the cabinet's own look-ups in the directories, before and besides the person's.
fn own_token(app: &App) -> Result<String, Refusal> {
    let minter = app.minter.as_ref().ok_or_else(|| Refusal::Internal("no key to mint platform tokens".into()))?;
    minter
        .mint("pos-web", "", "", &[Role::System], Duration::from_secs(60))
        .map_err(|e| Refusal::Internal(format!("token for the directory not minted: {e}")))
}

async fn resolve(app: &App, identity: &Identity) -> Result<Person, Refusal> {
    let config = &app.config.oidc;
    let token = own_token(app)?;
    let api = Api::with_token(app, &token);
    let organization_id = claim(&identity.claims.0, &config.organization_claim)
        .and_then(|value| value.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned));
    let (organization, member) = match organization_id {
        Some(id) => {
            let request = pb::GetOrganizationRequest { id: id.clone() };
            let organization = match api.routing().get_organization(api.request(request)).await {
                Ok(organization) => organization.into_inner(),
                Err(status) if status.code() == tonic::Code::NotFound => {
                    return Err(Refusal::UnknownOrganization(id));
                }
                Err(status) => return Err(Refusal::Directory(status)),
            };
            let member = staff_member(&api, &organization.id, &identity.subject).await.map_err(Refusal::Directory)?;
            (organization, member)
        }
        None => find_in_directory(&api, &identity.subject).await?,
    };
    if member.as_ref().is_some_and(|member| !member.active) {
        return Err(Refusal::Deactivated);
    }
    let (roles, roles_from_directory) = match claim(&identity.claims.0, &config.roles_claim) {
        Some(value) => (cabinet_roles(role_names(value)), false),
        None => (member.as_ref().map(|m| cabinet_roles(m.roles.iter().map(String::as_str))).unwrap_or_default(), true),
    };
    if roles.is_empty() {
        return Err(Refusal::NoCabinetRole);
    }
    let name = member
        .as_ref()
        .map(|m| m.full_name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| identity.name.clone())
        .or_else(|| identity.email.clone())
        .unwrap_or_else(|| identity.subject.clone());
    Ok(Person { organization, roles, name, roles_from_directory })
}

/// The subject's entry in the organization's staff directory.
async fn staff_member(
    api: &Api<'_>,
    organization_id: &str,
    subject: &str,
) -> Result<Option<pb::StaffMember>, tonic::Status> {
    let request = pb::ListStaffRequest { organization_id: organization_id.to_owned(), role: String::new() };
    let staff = api.ticketing().list_staff(api.request(request)).await?.into_inner().staff;
    Ok(staff.into_iter().find(|member| member.subject == subject))
}

/// The one connected organization whose staff directory lists the subject as active.
async fn find_in_directory(
    api: &Api<'_>,
    subject: &str,
) -> Result<(pb::Organization, Option<pb::StaffMember>), Refusal> {
    let organizations = api
        .routing()
        .list_organizations(api.request(pb::ListOrganizationsRequest::default()))
        .await
        .map_err(Refusal::Directory)?
        .into_inner()
        .organizations;
    let lookups = organizations.into_iter().filter(|o| o.connected).map(|organization| async move {
        let member = staff_member(api, &organization.id, subject).await;
        (organization, member)
    });
    let (mut found, mut switched_off) = (Vec::new(), false);
    let mut results = futures::stream::iter(lookups).buffer_unordered(DIRECTORY_CONCURRENCY);
    while let Some((organization, member)) = results.next().await {
        match member {
            Ok(Some(member)) if member.active => found.push((organization, Some(member))),
            Ok(Some(_)) => switched_off = true,
            Ok(None) => {}
            Err(status) => return Err(Refusal::Directory(status)),
        }
    }
    match found.len() {
        0 if switched_off => Err(Refusal::Deactivated),
        0 => Err(Refusal::NotStaff),
        1 => Ok(found.remove(0)),
        _ => Err(Refusal::SeveralOrganizations(found.into_iter().map(|(o, _)| o.id).collect())),
    }
}

/// A claim by name; a dotted name reaches into objects (`realm_access.roles`).
fn claim<'a>(claims: &'a serde_json::Map<String, serde_json::Value>, name: &str) -> Option<&'a serde_json::Value> {
    if name.is_empty() {
        return None;
    }
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    let mut parts = name.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// Role names from a list, or from one string separated by spaces or commas.
fn role_names(value: &serde_json::Value) -> Box<dyn Iterator<Item = &str> + '_> {
    match value {
        serde_json::Value::Array(items) => Box::new(items.iter().filter_map(|item| item.as_str())),
        serde_json::Value::String(text) => Box::new(text.split([' ', ',']).filter(|s| !s.is_empty())),
        _ => Box::new(std::iter::empty()),
    }
}

/// The cabinet's roles among `names`; others (the provider's own, `system`, `operator`) are
/// not the cabinet's to grant.
fn cabinet_roles<'a>(names: impl Iterator<Item = &'a str>) -> Vec<Role> {
    let mut roles: Vec<Role> =
        names.filter_map(|name| name.trim().parse::<Role>().ok()).filter(|role| Role::STAFF.contains(role)).collect();
    roles.sort_by_key(|role| role.as_str());
    roles.dedup();
    roles
}

/// The session, with a fresh platform token when the one it holds runs out: the staff
/// directory is asked again whether the account is on (and, for roles it gave, which).
pub async fn renewed(app: &App, id: &str, mut session: Session, htmx: bool) -> Result<Session, WebError> {
    let Some(provider) = session.provider.clone() else {
        return Ok(session);
    };
    let now = chrono::Utc::now().timestamp();
    if provider.token_expires_at - now > RENEW_BEFORE_SECS {
        return Ok(session);
    }
    let token = own_token(app).map_err(|refusal| WebError::Internal(refusal.reason()))?;
    let api = Api::with_token(app, &token);
    let member = staff_member(&api, &session.organization_id, &session.subject)
        .await
        .map_err(|status| WebError::from_status(&status, htmx))?;
    let end = |why: &str| {
        tracing::warn!(target: "security", subject = %session.subject, reason = why, "session ended on renewal");
    };
    if member.as_ref().is_some_and(|member| !member.active) {
        end("the staff directory has the account switched off");
        app.sessions.remove(id).await;
        return Err(WebError::SignIn { htmx });
    }
    if provider.roles_from_directory {
        let roles = member.map(|m| cabinet_roles(m.roles.iter().map(String::as_str))).unwrap_or_default();
        if roles.is_empty() {
            end("no cabinet role left in the staff directory");
            app.sessions.remove(id).await;
            return Err(WebError::SignIn { htmx });
        }
        session.roles = roles;
    }
    let minter = app.minter.as_ref().ok_or_else(|| WebError::Internal("no key to mint platform tokens".into()))?;
    let token_ttl = token_ttl(app);
    session.token = minter
        .mint(&session.subject, &session.organization_id, &session.region_code, &session.roles, token_ttl)
        .map_err(|e| WebError::Internal(format!("platform token not minted: {e}")))?;
    session.provider = Some(ProviderSession { token_expires_at: now + token_ttl.as_secs() as i64, ..provider });
    app.sessions.update(id, &session).await.map_err(|e| WebError::Internal(format!("session not stored: {e}")))?;
    tracing::debug!(subject = %session.subject, "platform token minted again");
    Ok(session)
}

/// Where the provider's answer arrives, as the audit trail names it.
const CALLBACK: &str = "web/sign-in/callback";

/// A sign-in, or a refused one, for the audit trail. No names: the subject, the organization,
/// the roles, the reason and the client's address.
pub(crate) struct SignInRecord<'a> {
    pub method: &'static str,
    /// `ok`, or the refusal's code.
    pub outcome: &'a str,
    pub subject: &'a str,
    pub organization_id: &'a str,
    pub roles: &'a [Role],
    pub client: Option<IpAddr>,
    pub reason: Option<&'a str>,
}

/// The client's address: the peer, or what trusted proxies say it was.
pub(crate) fn client_of(app: &App, headers: &HeaderMap, extensions: &http::Extensions) -> Option<IpAddr> {
    crate::citizen::limits::client_ip(
        crate::citizen::limits::peer(extensions),
        headers,
        &app.config.citizen.trusted_proxies,
    )
}

/// Records a sign-in in the audit trail through `AuditService/RecordAuditEvent` (the cabinet
/// keeps no store), in the background: the person's page does not wait for it, and a trail
/// that cannot be reached is logged, not shown to them.
pub(crate) fn record_sign_in(app: &App, record: SignInRecord<'_>) {
    let Some(minter) = app.minter.clone() else { return };
    let token = match minter.mint("pos-web", "", "", &[Role::System], Duration::from_secs(60)) {
        Ok(token) => token,
        Err(error) => {
            tracing::warn!(%error, "sign-in not recorded in the audit trail: no token");
            return;
        }
    };
    let mut details = serde_json::Map::new();
    if let Some(client) = record.client {
        details.insert("client".into(), client.to_string().into());
    }
    if let Some(reason) = record.reason {
        details.insert("reason".into(), reason.into());
    }
    let succeeded = record.outcome == pos_platform::audit::OK;
    let event = pb::operations::RecordAuditEventRequest {
        kind: if succeeded { "sign_in" } else { "sign_in_failed" }.to_owned(),
        actor_subject: record.subject.to_owned(),
        actor_organization_id: record.organization_id.to_owned(),
        actor_roles: record.roles.iter().map(|role| role.as_str().to_owned()).collect(),
        method: record.method.to_owned(),
        outcome: record.outcome.to_owned(),
        details_json: serde_json::Value::Object(details).to_string(),
    };
    let channel = app.channel.clone();
    tokio::spawn(async move {
        let mut audit = pb::operations::audit_service_client::AuditServiceClient::new(channel);
        if let Err(status) = audit.record_audit_event(pos_platform::grpc::outgoing(event, &token)).await {
            tracing::warn!(code = ?status.code(), message = status.message(), "sign-in not recorded in the audit trail");
        }
    });
}

fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_found_by_plain_and_dotted_names() {
        let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"org": "41-kcioko", "realm_access": {"roles": ["executor", "offline_access"]}, "a.b": 1}"#,
        )
        .unwrap();
        assert_eq!(claim(&claims, "org").and_then(|v| v.as_str()), Some("41-kcioko"));
        assert_eq!(claim(&claims, "a.b"), Some(&serde_json::json!(1)));
        let roles = claim(&claims, "realm_access.roles").unwrap();
        assert_eq!(cabinet_roles(role_names(roles)), [Role::Executor]);
        assert!(claim(&claims, "realm_access.groups").is_none() && claim(&claims, "").is_none());
    }

    #[test]
    fn only_cabinet_roles_are_taken_from_a_claim() {
        let value = serde_json::json!("head, coordinator system operator head unknown");
        assert_eq!(cabinet_roles(role_names(&value)), [Role::Coordinator, Role::Head]);
        assert!(cabinet_roles(role_names(&serde_json::json!(42))).is_empty());
    }
}
