//! The onboarding confirmation (seed 004, «Подтверждение подключения к ПОС»): until an
//! organization's head or coordinator has confirmed that the staff are trained and that the
//! cabinet is ready, the organization is not connected and routing sends its messages to its
//! nearest connected ancestor. Routing keeps the confirmations (`ConfirmOnboarding`); this page
//! asks for them.
//!
//! Every cabinet page asks [`gate`] first (from `signed_in`): a head or coordinator of a
//! not-connected organization is sent to the confirmation page, anyone else of it sees a
//! banner saying who answers its messages meanwhile ([`banner`], in the page frame).
//!
//! The same answer from routing tells the frame the organization's type: only a federal body's
//! staff get the «Обращения на проверку» link ([`federal_for`]).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::HeaderMap;
use maud::{Markup, html};
use pos_platform::auth::Role;
use pos_proto::v1 as pb;

use super::{Api, WebError, is_htmx, pages, session_of};
use crate::App;
use crate::session::Session;
use crate::texts;

/// Who confirms (seed 004: the window appears "after staff with certain roles sign in"): the
/// head and the coordinator, as routing allows.
pub const RESPONSIBLE: [Role; 2] = [Role::Head, Role::Coordinator];

/// How long a connected organization is taken as connected without asking routing again. Only
/// a directory import disconnects one, and that is rare; an organization that is not connected
/// is asked about on every page, so that a confirmation shows at once.
const CONNECTED_TTL: Duration = Duration::from_secs(60);

/// What the cabinet last heard from routing of an organization's onboarding.
#[derive(Clone, Debug)]
struct Known {
    connected: bool,
    /// The short name of whoever answers its messages while it is not connected.
    answered_by: String,
    /// `pb::OrganizationType`.
    organization_type: i32,
    at: Instant,
}

/// Per cabinet instance (the `App`'s address) and organization: several cabinets in one
/// process (tests) each talk to their own routing.
static KNOWN: LazyLock<Mutex<HashMap<(usize, String), Known>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn key(app: &App, organization_id: &str) -> (usize, String) {
    (std::ptr::from_ref::<crate::Inner>(app) as usize, organization_id.to_owned())
}

fn remembered(app: &App, organization_id: &str) -> Option<Known> {
    KNOWN.lock().unwrap_or_else(|e| e.into_inner()).get(&key(app, organization_id)).cloned()
}

fn remember(app: &App, organization: &pb::Organization, answered_by: &str) {
    let known = Known {
        connected: organization.connected,
        answered_by: answered_by.to_owned(),
        organization_type: organization.r#type,
        at: Instant::now(),
    };
    KNOWN.lock().unwrap_or_else(|e| e.into_inner()).insert(key(app, &organization.id), known);
}

/// The short name of an organization as people read it.
fn name(organization: &pb::Organization) -> &str {
    if organization.short_name.is_empty() { &organization.full_name } else { &organization.short_name }
}

/// Who answers the messages of `organization` while it is not connected, as routing decides
/// it: its nearest connected ancestor, else its region's cabinet (ADR 0003). Empty when the
/// directory cannot tell now: the page then says "the parent organization".
async fn answered_by(api: &Api<'_>, organization: &pb::Organization) -> String {
    let get = |id: String| {
        let mut routing = api.routing();
        let request = api.request(pb::GetOrganizationRequest { id });
        async move { routing.get_organization(request).await.map(tonic::Response::into_inner) }
    };
    let mut current = organization.clone();
    // The depth bound guards against a parent cycle that slipped into the directory.
    for _ in 0..16 {
        if current.parent_id.is_empty() {
            break;
        }
        match get(current.parent_id.clone()).await {
            Ok(parent) if parent.connected => return name(&parent).to_owned(),
            Ok(parent) => current = parent,
            Err(status) => {
                tracing::warn!(code = ?status.code(), "an ancestor of a not-connected organization is unavailable");
                return String::new();
            }
        }
    }
    let region = if current.region_code.is_empty() { &organization.region_code } else { &current.region_code };
    let regions = match api.routing().list_regions(api.request(pb::ListRegionsRequest {})).await {
        Ok(regions) => regions.into_inner().regions,
        Err(status) => {
            tracing::warn!(code = ?status.code(), "regions unavailable for a not-connected organization");
            return String::new();
        }
    };
    let Some(cabinet) = regions.into_iter().find(|r| &r.code == region).map(|r| r.cabinet_organization_id) else {
        return String::new();
    };
    get(cabinet).await.map(|cabinet| name(&cabinet).to_owned()).unwrap_or_default()
}

/// The session's organization as routing has it now, and who answers for it meanwhile (empty
/// when connected).
async fn organization(app: &App, session: &Session) -> Result<(pb::Organization, String), tonic::Status> {
    let api = Api::new(app, session);
    let request = pb::GetOrganizationRequest { id: session.organization_id.clone() };
    let organization = api.routing().get_organization(api.request(request)).await?.into_inner();
    let stand_in = if organization.connected { String::new() } else { answered_by(&api, &organization).await };
    remember(app, &organization, &stand_in);
    Ok((organization, stand_in))
}

/// Whether the session's organization is connected, as far as the cabinet knows. Without an
/// answer from routing the cabinet opens as usual: the confirmation can wait, the messages
/// cannot.
async fn state(app: &App, session: &Session) -> Option<Known> {
    let known = remembered(app, &session.organization_id);
    if let Some(known) = &known
        && known.connected
        && known.at.elapsed() < CONNECTED_TTL
    {
        return Some(known.clone());
    }
    match organization(app, session).await {
        Ok((organization, _)) => remembered(app, &organization.id),
        Err(status) => {
            tracing::warn!(code = ?status.code(), "the organization's onboarding state is unavailable");
            known
        }
    }
}

/// Sends a head or coordinator of a not-connected organization to the confirmation; everyone
/// else passes (and the page frame shows them the banner).
pub async fn gate(app: &App, session: &Session, htmx: bool) -> Result<(), WebError> {
    match state(app, session).await {
        Some(known) if !known.connected && session.has_any(&RESPONSIBLE) => Err(WebError::Onboarding { htmx }),
        _ => Ok(()),
    }
}

/// What the frame shows above every page to the staff of a not-connected organization who do
/// not confirm it themselves; nothing for everyone else.
pub fn banner(app_known: Option<(bool, String)>, session: &Session) -> Option<Markup> {
    let (connected, answered_by) = app_known?;
    if connected || session.has_any(&RESPONSIBLE) {
        return None;
    }
    Some(html! {
        p.flash.warning.onboarding-banner role="status" {
            "Организация ещё не подключена к ПОС: руководитель или координатор должен подтвердить, что обучение "
            "пройдено и кабинет готов к работе. До этого сообщения, адресованные организации, направляются в "
            (quoted_or_parent(&answered_by)) " и рассматриваются там."
        }
    })
}

/// The banner for `session`, from what [`gate`] learned on this request (no call of its own:
/// the frame is drawn synchronously, and knows no `App`: the freshest word on the organization
/// is the one this request's gate just had).
pub fn banner_for(session: &Session) -> Option<Markup> {
    banner(latest(session).map(|known| (known.connected, known.answered_by)), session)
}

/// Whether the session's organization is a federal body, whose staff work the escalations
/// addressed to it («Обращения на проверку»), as routing last told any cabinet of this process
/// ([`gate`] asks before every page). Unknown (routing not heard yet): no.
pub fn federal_for(session: &Session) -> bool {
    latest(session).is_some_and(|known| known.organization_type == pb::OrganizationType::FederalAgency as i32)
}

/// The latest of what the cabinets of this process heard of the session's organization: the
/// page frame has no `App` to key by.
fn latest(session: &Session) -> Option<Known> {
    KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|((_, organization_id), _)| *organization_id == session.organization_id)
        .max_by_key(|(_, known)| known.at)
        .map(|(_, known)| known.clone())
}

/// «name» (as it is, when it has its own quotes: МБОУ «Средняя школа № 45»).
fn quoted(name: &str) -> String {
    if name.contains('«') { name.to_owned() } else { format!("«{name}»") }
}

/// The name of whoever answers meanwhile, or the plain words when routing named nobody.
fn quoted_or_parent(name: &str) -> String {
    if name.is_empty() { "вышестоящую организацию".to_owned() } else { quoted(name) }
}

/// `GET /cabinet/onboarding`: the two steps, each with its own form.
pub async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    match render(&app, &headers, None).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn render(app: &App, headers: &HeaderMap, problem: Option<&str>) -> Result<Response, WebError> {
    let session = session_of(app, headers).await?;
    let (organization, answered_by) =
        organization(app, &session).await.map_err(|s| WebError::from_status(&s, is_htmx(headers)))?;
    if organization.connected {
        return Ok(Redirect::to("/cabinet").into_response());
    }
    let main = confirmation(&session, &organization, &answered_by, problem);
    Ok(pages::layout("Требуется подтверждение — ПОС", Some(&session), None, main).into_response())
}

fn confirmation(
    session: &Session,
    organization: &pb::Organization,
    answered_by: &str,
    problem: Option<&str>,
) -> Markup {
    let own_name = name(organization);
    let responsible = session.has_any(&RESPONSIBLE);
    let done = |step: pb::OnboardingStep| match step {
        pb::OnboardingStep::TrainingDone => organization.training_done,
        pb::OnboardingStep::CabinetReady => organization.cabinet_ready,
        pb::OnboardingStep::Unspecified => false,
    };
    html! {
        h1 { "Требуется подтверждение" }
        @if let Some(problem) = problem {
            p.flash.error role="alert" { (problem) }
        }
        p {
            "Подтвердите, пожалуйста, что Вы прошли обучение по работе с системой и готовы приступить."
        }
        p.onboarding-explanation {
            "Пока оба пункта не подтверждены, организация " (quoted(own_name)) " не подключена к Платформе "
            "обратной связи: сообщения граждан, адресованные ей, направляются в " (quoted_or_parent(answered_by))
            ", и отвечает на них эта организация. После подтверждения новые сообщения будут поступать в ваш "
            "кабинет."
        }
        ol.onboarding-steps {
            @for (step, slug, label) in texts::ONBOARDING_STEPS {
                li data-step=(slug) {
                    @if done(step) {
                        p.flash.done { "✓ " (label) " — подтверждено" }
                    } @else if responsible {
                        form method="post" action={ "/cabinet/onboarding/" (slug) } {
                            input type="hidden" name="csrf" value=(session.csrf);
                            p { (label) }
                            button.primary type="submit" aria-label={ "Подтверждаю: " (label) } { "Подтверждаю" }
                        }
                    } @else {
                        p { (label) " — ещё не подтверждено" }
                    }
                }
            }
        }
        @if !responsible {
            p.hint { "Подтвердить может руководитель или координатор организации." }
        }
    }
}

/// `POST /cabinet/onboarding/{step}`: one step confirmed with the person's token; routing
/// checks that they are the organization's head or coordinator. Both done, the cabinet.
pub async fn confirm(State(app): State<App>, headers: HeaderMap, Path(step): Path<String>) -> Response {
    let session = match session_of(&app, &headers).await {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    // The role before the step: nobody else learns which steps there are.
    if !session.has_any(&RESPONSIBLE) {
        tracing::warn!(target: "security", subject = %session.subject, "onboarding confirmation refused");
        return WebError::Forbidden("Подтвердить подключение может руководитель или координатор организации.")
            .into_response();
    }
    let Some((step, _, _)) = texts::ONBOARDING_STEPS.iter().find(|(_, slug, _)| *slug == step) else {
        return WebError::NotFound.into_response();
    };
    let api = Api::new(&app, &session);
    let request = pb::ConfirmOnboardingRequest { organization_id: session.organization_id.clone(), step: *step as i32 };
    match api.routing().confirm_onboarding(api.request(request)).await {
        Ok(organization) => {
            let organization = organization.into_inner();
            // Not connected yet: the page shown next asks routing again, with who answers.
            remember(&app, &organization, "");
            tracing::info!(subject = %session.subject, step = step.as_str_name(), connected = organization.connected,
                "onboarding step confirmed");
            let to = if organization.connected { "/cabinet" } else { "/cabinet/onboarding" };
            Redirect::to(to).into_response()
        }
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            match render(&app, &headers, Some("Подтверждение не принято. Обновите страницу и повторите.")).await
            {
                Ok(response) => response,
                Err(error) => error.into_response(),
            }
        }
        Err(status) => WebError::from_status(&status, is_htmx(&headers)).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(roles: &[&str]) -> Session {
        serde_json::from_value(serde_json::json!({
            "token": "", "subject": "dev", "display_name": "Петров Иван",
            "organization_id": "41-school-pk-45", "organization_name": "СШ № 45",
            "region_code": "41", "roles": roles, "csrf": "token-1", "expires_at": 0,
        }))
        .unwrap()
    }

    fn school(training_done: bool) -> pb::Organization {
        pb::Organization {
            id: "41-school-pk-45".into(),
            full_name: "МБОУ «Средняя школа № 45»".into(),
            short_name: "СШ № 45".into(),
            training_done,
            ..Default::default()
        }
    }

    #[test]
    fn the_responsible_confirm_each_step_others_only_read() {
        let coordinator =
            confirmation(&session(&["coordinator"]), &school(true), "Управление образования ПКГО", None).into_string();
        assert!(coordinator.contains("«Управление образования ПКГО»"), "{coordinator}");
        assert!(coordinator.contains("✓ Мною пройдено обучение — подтверждено"));
        assert!(coordinator.contains(r#"action="/cabinet/onboarding/cabinet-ready""#));
        assert!(!coordinator.contains(r#"action="/cabinet/onboarding/training-done""#), "done: no form");
        assert!(coordinator.contains(r#"name="csrf" value="token-1""#));
        let executor = confirmation(&session(&["executor"]), &school(false), "", None).into_string();
        assert!(!executor.contains("<form"), "{executor}");
        assert!(executor.contains("Подтвердить может руководитель или координатор"));
    }

    #[test]
    fn the_banner_is_for_the_others_of_a_not_connected_organization() {
        let known = |connected| Some((connected, "Управление образования ПКГО".to_owned()));
        let banner = banner(known(false), &session(&["executor"])).expect("a banner").into_string();
        assert!(banner.contains("направляются в «Управление образования ПКГО»"), "{banner}");
        assert!(super::banner(known(true), &session(&["executor"])).is_none(), "connected");
        assert!(super::banner(known(false), &session(&["head"])).is_none(), "the head confirms instead");
        assert!(super::banner(None, &session(&["executor"])).is_none(), "nothing known");
    }

    /// What `remember` keeps, for an organization of a cabinet at a made-up address.
    fn heard(organization_id: &str, organization_type: pb::OrganizationType) {
        let known = Known {
            connected: true,
            answered_by: String::new(),
            organization_type: organization_type as i32,
            at: Instant::now(),
        };
        KNOWN.lock().unwrap().insert((usize::MAX, organization_id.to_owned()), known);
    }

    #[test]
    fn only_a_federal_bodys_staff_see_the_escalations_link() {
        let frame = |organization_id: &str| {
            let mut session = session(&["coordinator"]);
            session.organization_id = organization_id.to_owned();
            pages::layout("ПОС", Some(&session), None, html! {}).into_string()
        };
        let link = r#"href="/cabinet/escalations""#;
        heard("41-nav-rosobrnadzor", pb::OrganizationType::FederalAgency);
        heard("41-nav-school", pb::OrganizationType::School);
        assert!(frame("41-nav-rosobrnadzor").contains(link), "a federal body");
        assert!(!frame("41-nav-school").contains(link), "a school");
        assert!(!frame("41-nav-unheard").contains(link), "routing not heard yet");
        assert!(frame("41-nav-school").contains(r#"href="/cabinet""#), "the other sections stay");
    }
}
