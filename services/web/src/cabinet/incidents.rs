//! Incidents in the card (section «Инциденты»): a ticket's escalations to the situation center
//! (seed 000) or to a federal supervisor (seed 001), with their files; opening one; and the
//! handling line's steps, each with the incident's version. The same steps serve the
//! supervisor's own page (`escalations.rs`).
//!
//! Ticketing decides who may run each step; the cabinet offers only what the person's roles and
//! the incident's state allow, and refuses a role that cannot run it before reading the form.

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono_tz::Tz;
use http::HeaderMap;
use maud::{Markup, html};
use pos_platform::auth::Role;
use pos_proto::v1 as pb;

use super::attachments::{self, Submitted};
use super::card::{Card, Flash};
use super::{Api, WebError, commands, escalations, is_htmx, signed_in};
use crate::App;
use crate::session::Session;
use crate::texts;

/// Who escalates a ticket (ticketing's openers).
pub const OPENERS: [Role; 4] = [Role::Coordinator, Role::Executor, Role::Head, Role::Curator];
/// Who records the handling line's steps (ticketing's handlers, less the systems).
pub const HANDLERS: [Role; 4] = [Role::Coordinator, Role::Executor, Role::Head, Role::Curator];

/// The situation center's form (seed 000) as the ITSM knows it.
const SERVICE: &str = "Инциденты ИС ИЭП";
const REQUEST_TYPE: &str = "Запрос/инцидент";
const SYSTEM: &str = "МШ. Платформа ЦОК";
const PRIORITIES: [&str; 4] = ["1 Приоритет", "2 Приоритет", "3 Приоритет", "4 Приоритет"];
/// What screenshots and documents may be; intake decides by content.
const ACCEPT: &str = ".png,.jpg,.jpeg,.pdf,.txt,.rtf,.doc,.docx,.xls,.xlsx,.ppt,.pptx,.odt,.ods,.odp,.odf";

/// A step of the handling line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Escalate,
    RequestInformation,
    InformationReceived,
    Resolve,
}

struct StepRule {
    step: Step,
    slug: &'static str,
    label: &'static str,
    text: &'static str,
    text_required: bool,
    files: bool,
}

const STEPS: [StepRule; 4] = [
    StepRule {
        step: Step::Escalate,
        slug: "escalate",
        label: "Передать на вторую линию",
        text: "Комментарий (необязательно)",
        text_required: false,
        files: false,
    },
    StepRule {
        step: Step::RequestInformation,
        slug: "request-information",
        label: "Запросить информацию",
        text: "Какая информация нужна",
        text_required: true,
        files: false,
    },
    StepRule {
        step: Step::InformationReceived,
        slug: "information-received",
        label: "Информация получена",
        text: "Что получено",
        text_required: true,
        files: true,
    },
    StepRule {
        step: Step::Resolve,
        slug: "resolve",
        label: "Записать решение",
        text: "Решение",
        text_required: true,
        files: true,
    },
];

fn step_rule(step: Step) -> &'static StepRule {
    STEPS.iter().find(|r| r.step == step).expect("every step has a rule")
}

/// Where the step forms are: the ticket's card, or the supervisor's escalations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Card,
    Escalations,
}

/// The steps the person may record on `incident` at `place` now. In the card, the organization
/// records its own line's progress unless a federal body handles the incident; that body's staff
/// record theirs on the escalations page.
pub fn offered(session: &Session, incident: &pb::Incident, place: Place) -> Vec<Step> {
    if !session.has_any(&HANDLERS) {
        return Vec::new();
    }
    let handler = incident.handler_organization_id.as_str();
    let ours = match place {
        Place::Card => handler.is_empty() || handler == session.organization_id,
        Place::Escalations => handler == session.organization_id,
    };
    if !ours {
        return Vec::new();
    }
    let situation_center = incident.kind == pb::IncidentKind::SituationCenter as i32;
    let state = incident.state.as_str();
    let mut steps = Vec::new();
    if situation_center && state == "open, first line" {
        steps.push(Step::Escalate);
    }
    if state.starts_with("open") {
        steps.extend([Step::RequestInformation, Step::Resolve]);
    }
    if state.starts_with("information requested") {
        steps.push(Step::InformationReceived);
    }
    steps
}

/// Whether the person may open an incident on the card's ticket now.
pub fn may_open(session: &Session, ticket: &pb::Ticket) -> bool {
    const CLOSED: [&str; 5] =
        ["accepted by applicant", "re-review stopped", "rejected", "redirected", "returned to coordination"];
    session.has_any(&OPENERS) && !CLOSED.contains(&ticket.status.as_str())
}

/// The card's section «Инциденты».
pub fn section(session: &Session, card: &Card, zone: Tz) -> Markup {
    let may_open = may_open(session, &card.ticket);
    if card.incidents.is_empty() && !may_open {
        return html! {};
    }
    let error_of = |key: &str| card.form_error.as_ref().filter(|(k, _)| k == key).map(|(_, e)| e.as_str());
    html! {
        section.panel.incidents aria-labelledby="incidents-h" {
            h2 #incidents-h { "Инциденты" }
            @if card.incidents.is_empty() {
                p.muted { "Инцидентов нет." }
            }
            @for incident in &card.incidents {
                (incident_view(session, incident, &card.files, &card.supervisors, zone, Place::Card, &card.form_error))
            }
            @if may_open {
                h3.new-incident { "Новый инцидент" }
                details.command data-command="open-situation-center" open[error_of("open-situation-center").is_some()] {
                    summary { "Открыть инцидент в ситуационном центре" }
                    (open_form(session, card, "situation-center", error_of("open-situation-center")))
                }
                details.command data-command="open-federal-supervisor" open[error_of("open-federal-supervisor").is_some()] {
                    summary { "Направить на проверку в федеральный орган" }
                    (open_form(session, card, "federal-supervisor", error_of("open-federal-supervisor")))
                }
            }
        }
    }
}

fn open_form(session: &Session, card: &Card, kind: &str, error: Option<&str>) -> Markup {
    let url = format!("/cabinet/tickets/{}/open-incident", card.ticket.id);
    let id = |name: &str| format!("open-{kind}-{name}");
    let user_account =
        card.appeal.as_ref().and_then(|a| a.applicant.as_ref()).map(|a| a.email.clone()).unwrap_or_default();
    html! {
        form method="post" action=(url) enctype="multipart/form-data" hx-post=(url) hx-encoding="multipart/form-data"
            hx-target="#card" hx-swap="outerHTML" data-command={ "open-" (kind) } {
            // First: the CSRF guard reads it without reading the files.
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="kind" value=(kind);
            @if kind == "situation-center" {
                div.field {
                    label for=(id("service")) { "Услуга" }
                    input id=(id("service")) type="text" name="service" value=(SERVICE) required;
                }
                div.field {
                    label for=(id("request_type")) { "Тип обращения" }
                    input id=(id("request_type")) type="text" name="request_type" value=(REQUEST_TYPE) required;
                }
                div.field {
                    label for=(id("system")) { "Система" }
                    input id=(id("system")) type="text" name="system" value=(SYSTEM) required;
                }
                div.field {
                    label for=(id("priority")) { "Приоритет" }
                    select id=(id("priority")) name="priority" {
                        @for priority in PRIORITIES {
                            option value=(priority) selected[priority == "3 Приоритет"] { (priority) }
                        }
                    }
                }
                div.field {
                    label for=(id("user_account")) { "Учётная запись заявителя (СНИЛС или эл. почта)" }
                    input id=(id("user_account")) type="text" name="user_account" value=(user_account) required
                        autocomplete="off";
                }
            } @else {
                div.field {
                    label for=(id("search")) { "Поиск федерального органа" }
                    input id=(id("search")) type="search" name="q" autocomplete="off"
                        hx-get="/cabinet/incidents/supervisors" hx-trigger="input changed delay:300ms, search"
                        hx-target=(format!("#{}", id("handler"))) hx-swap="innerHTML";
                }
                div.field {
                    label for=(id("handler")) { "Федеральный орган" }
                    select id=(id("handler")) name="handler" required size="4" {
                        (supervisor_options(&card.supervisors))
                    }
                }
            }
            div.field {
                label for=(id("subject")) { "Суть обращения" }
                textarea id=(id("subject")) name="subject" rows="3" required {}
            }
            div.field {
                label for=(id("external_id")) { "Внешний номер (если известен)" }
                input id=(id("external_id")) type="text" name="external_id";
            }
            (attachments::file_field(&id("files"), "Файлы (скриншот и документы)", ACCEPT, error))
            button.primary type="submit" {
                @if kind == "situation-center" { "Открыть инцидент" } @else { "Направить на проверку" }
            }
        }
    }
}

fn supervisor_options(organizations: &[pb::Organization]) -> Markup {
    html! {
        @for org in organizations.iter().take(100) {
            option value=(org.id) { (org.short_name) }
        }
    }
}

/// One incident: what it is, where it stands, its files, and the steps the person may record.
pub fn incident_view(
    session: &Session,
    incident: &pb::Incident,
    files: &HashMap<String, pb::Attachment>,
    organizations: &[pb::Organization],
    zone: Tz,
    place: Place,
    form_error: &Option<(String, String)>,
) -> Markup {
    let opened = incident.opened_at.as_ref().and_then(pos_proto::time::from_proto);
    let handler = organizations.iter().find(|o| o.id == incident.handler_organization_id);
    let heading_id = format!("incident-{}-h", incident.id);
    html! {
        article.incident data-incident=(incident.id) data-state=(incident.state) aria-labelledby=(heading_id) {
            h3 id=(heading_id) { (texts::incident_kind(incident.kind)) ": " (incident.subject) }
            dl.facts {
                dt { "Состояние" } dd.incident-state { (texts::incident_state(incident.kind, &incident.state)) }
                @if !incident.handler_organization_id.is_empty() {
                    dt { "Адресат" }
                    dd { (handler.map_or(incident.handler_organization_id.as_str(), |o| o.short_name.as_str())) }
                }
                @if !incident.external_id.is_empty() { dt { "Внешний номер" } dd { (incident.external_id) } }
                @if !incident.service.is_empty() {
                    dt { "Услуга" } dd { (incident.service) " · " (incident.request_type) " · " (incident.system) }
                }
                @if !incident.priority.is_empty() { dt { "Приоритет" } dd { (incident.priority) } }
                dt { "Открыт" } dd { (opened.map(|at| texts::local_time(at, zone)).unwrap_or_default()) }
                @if !incident.resolution.is_empty() { dt { "Решение" } dd.resolution { (incident.resolution) } }
                @if !incident.last_comment.is_empty() && incident.last_comment != incident.resolution {
                    dt { "Последний комментарий" } dd { (incident.last_comment) }
                }
            }
            @if !incident.attachment_ids.is_empty() {
                h4 { "Файлы инцидента" }
                (attachments::list(&attachments::pick(files, &incident.attachment_ids), "Файлы инцидента"))
            }
            @for step in offered(session, incident, place) {
                @let rule = step_rule(step);
                @let key = format!("{}-{}", rule.slug, incident.id);
                @let error = form_error.as_ref().filter(|(k, _)| *k == key).map(|(_, e)| e.as_str());
                details.command data-command=(rule.slug) open[error.is_some()] {
                    summary { (step_label(step, place)) }
                    (step_form(session, incident, step, place, error))
                }
            }
        }
    }
}

fn step_label(step: Step, place: Place) -> &'static str {
    match (step, place) {
        (Step::Resolve, Place::Escalations) => "Ответить (решение по обращению)",
        _ => step_rule(step).label,
    }
}

fn step_form(session: &Session, incident: &pb::Incident, step: Step, place: Place, error: Option<&str>) -> Markup {
    let rule = step_rule(step);
    let url = format!("/cabinet/incidents/{}/{}", incident.id, rule.slug);
    let id = |name: &str| format!("{}-{}-{name}", rule.slug, incident.id);
    let target = match place {
        Place::Card => "#card",
        Place::Escalations => "#escalations",
    };
    html! {
        form method="post" action=(url) enctype="multipart/form-data" hx-post=(url) hx-encoding="multipart/form-data"
            hx-target=(target) hx-swap="outerHTML" data-command=(rule.slug) {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="version" value=(incident.version);
            input type="hidden" name="ticket" value=(incident.ticket_id);
            input type="hidden" name="place" value=(if place == Place::Card { "card" } else { "escalations" });
            div.field {
                label for=(id("comment")) { (rule.text) }
                textarea id=(id("comment")) name="comment" rows="3" required[rule.text_required] {}
            }
            @if rule.files {
                (attachments::file_field(&id("files"), "Файлы", ACCEPT, error))
            }
            button.primary type="submit" { (step_label(step, place)) }
        }
    }
}

/// `POST /cabinet/tickets/{id}/open-incident`.
pub async fn open(
    State(app): State<App>,
    headers: HeaderMap,
    Path(ticket_id): Path<String>,
    request: Request,
) -> Response {
    let htmx = is_htmx(&headers);
    let session = match signed_in(&app, &headers).await {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    if !session.has_any(&OPENERS) {
        tracing::warn!(target: "security", subject = %session.subject, "incident opening not allowed for the role");
        return WebError::Forbidden("Открывать инциденты могут координатор, исполнитель, руководитель и куратор.")
            .into_response();
    }
    let form = match attachments::read_form(&app, &session, request).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let kind_slug = form.field("kind");
    let kind = match kind_slug.as_str() {
        "federal-supervisor" => pb::IncidentKind::FederalSupervisor,
        _ => pb::IncidentKind::SituationCenter,
    };
    let key = format!(
        "open-{}",
        if kind == pb::IncidentKind::FederalSupervisor { "federal-supervisor" } else { "situation-center" }
    );
    if let Some(error) = form.file_error.clone() {
        return commands::card_response(
            &app,
            &session,
            &ticket_id,
            htmx,
            Flash::Error(error.clone()),
            None,
            Some((key, error)),
        )
        .await;
    }
    let api = Api::new(&app, &session);
    let request = pb::OpenIncidentRequest {
        ticket_id: ticket_id.clone(),
        kind: kind as i32,
        service: form.field("service"),
        request_type: form.field("request_type"),
        system: form.field("system"),
        priority: form.field("priority"),
        subject: form.field("subject"),
        attachment_ids: form.attachment_ids.clone(),
        user_account: form.field("user_account"),
        external_id: form.field("external_id"),
        handler_organization_id: if kind == pb::IncidentKind::FederalSupervisor {
            form.field("handler")
        } else {
            String::new()
        },
    };
    let outcome = api.ticketing().open_incident(api.request(request)).await;
    let flash = match outcome {
        Ok(_) if !htmx => return Redirect::to(&format!("/cabinet/tickets/{ticket_id}")).into_response(),
        Ok(_) => Flash::Done(match kind {
            pb::IncidentKind::FederalSupervisor => "Выполнено: обращение направлено на проверку.".to_owned(),
            _ => "Выполнено: инцидент открыт.".to_owned(),
        }),
        Err(status) => match flash_for(&status) {
            Ok(flash) => flash,
            Err(()) => return WebError::from_status(&status, htmx).into_response(),
        },
    };
    commands::card_response(&app, &session, &ticket_id, htmx, flash, None, None).await
}

/// `POST /cabinet/incidents/{id}/{step}`: a step of the handling line, from the card or the
/// escalations page, answered with the fresh card or page.
pub async fn step(
    State(app): State<App>,
    headers: HeaderMap,
    Path((incident_id, slug)): Path<(String, String)>,
    request: Request,
) -> Response {
    let htmx = is_htmx(&headers);
    let session = match signed_in(&app, &headers).await {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    let Some(rule) = STEPS.iter().find(|r| r.slug == slug) else {
        return WebError::NotFound.into_response();
    };
    if !session.has_any(&HANDLERS) {
        tracing::warn!(target: "security", subject = %session.subject, step = rule.slug, "incident step not allowed for the role");
        return WebError::Forbidden("Это действие недоступно для вашей роли.").into_response();
    }
    let form = match attachments::read_form(&app, &session, request).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let place = if form.field("place") == "escalations" { Place::Escalations } else { Place::Card };
    let key = format!("{}-{incident_id}", rule.slug);
    let outcome = match form.file_error.clone() {
        Some(error) => Err(Err(error)),
        None => run_step(&app, &session, &incident_id, rule.step, &form).await.map_err(Ok),
    };
    let (flash, form_error) = match outcome {
        Ok(()) => {
            if !htmx {
                let back = match place {
                    Place::Card => format!("/cabinet/tickets/{}", form.field("ticket")),
                    Place::Escalations => "/cabinet/escalations".to_owned(),
                };
                return Redirect::to(&back).into_response();
            }
            (Flash::Done(format!("Выполнено: {}.", step_label(rule.step, place).to_lowercase())), None)
        }
        // A refused file: beside the file field.
        Err(Err(text)) => (Flash::Error(text.clone()), Some((key, text))),
        Err(Ok(status)) => match flash_for(&status) {
            Ok(flash) => (flash, None),
            Err(()) => return WebError::from_status(&status, htmx).into_response(),
        },
    };
    match place {
        Place::Card => {
            commands::card_response(&app, &session, &form.field("ticket"), htmx, flash, None, form_error).await
        }
        Place::Escalations => escalations::respond(&app, &session, htmx, Some(flash), form_error).await,
    }
}

async fn run_step(
    app: &App,
    session: &Session,
    incident_id: &str,
    step: Step,
    form: &Submitted,
) -> Result<(), tonic::Status> {
    let api = Api::new(app, session);
    let mut ticketing = api.ticketing();
    let request = api.request(pb::IncidentCommandRequest {
        incident_id: incident_id.to_owned(),
        expected_version: form.field("version").parse().unwrap_or(0),
        comment: form.field("comment"),
        attachment_ids: form.attachment_ids.clone(),
    });
    match step {
        Step::Escalate => ticketing.escalate_incident(request).await?,
        Step::RequestInformation => ticketing.request_incident_information(request).await?,
        Step::InformationReceived => ticketing.incident_information_received(request).await?,
        Step::Resolve => ticketing.resolve_incident(request).await?,
    };
    Ok(())
}

/// What the person reads when an incident command is refused: the ticket commands' words, with
/// the incident form's own fields.
fn flash_for(status: &tonic::Status) -> Result<Flash, ()> {
    if status.code() == tonic::Code::InvalidArgument {
        let fields = pos_platform::error::violated_fields(status);
        let names: Vec<&str> = fields.iter().map(|f| field_name(f)).collect();
        if !names.is_empty() {
            return Ok(Flash::Error(format!("Проверьте поля: {}.", names.join(", "))));
        }
    }
    if status.code() == tonic::Code::FailedPrecondition && pos_platform::error::reason(status) == "TICKET_CLOSED" {
        return Ok(Flash::Error("Сообщение закрыто: инцидент открывают по действующему сообщению.".to_owned()));
    }
    if status.code() == tonic::Code::FailedPrecondition && pos_platform::error::reason(status) != "STALE_VERSION" {
        return Ok(Flash::Error("Это действие недоступно для инцидента в его текущем состоянии.".to_owned()));
    }
    commands::flash_for(status)
}

fn field_name(field: &str) -> &str {
    match field {
        "subject" => "суть обращения",
        "service" => "услуга",
        "request_type" => "тип обращения",
        "system" => "система",
        "priority" => "приоритет",
        "user_account" => "учётная запись заявителя",
        "handler_organization_id" => "федеральный орган",
        "comment" => "комментарий или решение",
        "kind" => "вид инцидента",
        f if f.starts_with("attachment_ids") => "файлы",
        other => other,
    }
}

/// The federal bodies an escalation may be addressed to (htmx search of the open form).
pub async fn supervisors(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let session = match signed_in(&app, &headers).await {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    if !session.has_any(&OPENERS) {
        return WebError::Forbidden("Открывать инциденты могут координатор, исполнитель, руководитель и куратор.")
            .into_response();
    }
    let api = Api::new(&app, &session);
    match federal_bodies(&api, query.get("q").map(String::as_str).unwrap_or_default()).await {
        Ok(organizations) => supervisor_options(&organizations).into_response(),
        Err(status) => WebError::from_status(&status, true).into_response(),
    }
}

/// The directory's federal bodies whose name contains `query`.
pub async fn federal_bodies(api: &Api<'_>, query: &str) -> Result<Vec<pb::Organization>, tonic::Status> {
    let request = pb::ListOrganizationsRequest {
        r#type: pb::OrganizationType::FederalAgency as i32,
        query: query.trim().to_owned(),
        ..Default::default()
    };
    let mut organizations = api.routing().list_organizations(api.request(request)).await?.into_inner().organizations;
    organizations.sort_by(|a, b| a.short_name.cmp(&b.short_name));
    Ok(organizations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(roles: &[Role], organization: &str) -> Session {
        Session {
            token: String::new(),
            subject: "s".into(),
            display_name: String::new(),
            organization_id: organization.into(),
            organization_name: String::new(),
            region_code: "41".into(),
            roles: roles.to_vec(),
            csrf: String::new(),
            expires_at: 0,
            provider: None,
        }
    }

    fn incident(kind: pb::IncidentKind, state: &str, handler: &str) -> pb::Incident {
        pb::Incident {
            kind: kind as i32,
            state: state.into(),
            handler_organization_id: handler.into(),
            organization_id: "college".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_line_is_offered_the_steps_of_the_state() {
        let coordinator = session(&[Role::Coordinator], "college");
        let first = incident(pb::IncidentKind::SituationCenter, "open, first line", "");
        assert_eq!(
            offered(&coordinator, &first, Place::Card),
            [Step::Escalate, Step::RequestInformation, Step::Resolve]
        );
        let second = incident(pb::IncidentKind::SituationCenter, "information requested, second line", "");
        assert_eq!(offered(&coordinator, &second, Place::Card), [Step::InformationReceived]);
        let resolved = incident(pb::IncidentKind::SituationCenter, "resolved, second line", "");
        assert!(offered(&coordinator, &resolved, Place::Card).is_empty(), "the applicant confirms");
        assert!(offered(&session(&[Role::OrgAdmin], "college"), &first, Place::Card).is_empty());
    }

    #[test]
    fn a_federal_escalation_is_worked_by_the_federal_body_on_its_page() {
        let federal = incident(pb::IncidentKind::FederalSupervisor, "open, first line", "rosobrnadzor");
        assert!(offered(&session(&[Role::Coordinator], "college"), &federal, Place::Card).is_empty());
        let supervisor = session(&[Role::Coordinator], "rosobrnadzor");
        assert_eq!(offered(&supervisor, &federal, Place::Escalations), [Step::RequestInformation, Step::Resolve]);
        assert!(offered(&session(&[Role::Coordinator], "other"), &federal, Place::Escalations).is_empty());
    }
}
