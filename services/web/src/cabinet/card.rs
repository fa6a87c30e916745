//! The card of a message: the appeal's text, the applicant, routing and why, both clocks, the
//! answer, the history (ход работ), and the commands the person's roles allow at this stage.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use chrono_tz::Tz;
use http::HeaderMap;
use maud::{Markup, html};
use pos_proto::v1 as pb;

use super::commands::{self, Command};
use super::{Api, WebError, folder_counts, is_htmx, signed_in};
use super::{attachments, incidents, pages};
use crate::App;
use crate::session::Session;
use crate::texts;

/// Subjects of the platform's services in the history.
const SERVICES: [&str; 5] = ["intake", "routing", "ticketing", "sla", "notify"];

/// A message shown above the card after a command.
pub enum Flash {
    Done(String),
    Warning(String),
    Error(String),
}

/// Everything the card shows, read with the person's token.
pub struct Card {
    pub ticket: pb::Ticket,
    pub appeal: Option<pb::Appeal>,
    pub deadlines: Option<pb::Deadlines>,
    pub history: Vec<pb::HistoryEntry>,
    pub classifier: pb::Classifier,
    pub staff: Vec<pb::StaffMember>,
    pub templates: Vec<pb::AnswerTemplate>,
    pub organizations: Vec<pb::Organization>,
    /// The ticket's incidents, and the federal bodies one may be addressed to (and who handles
    /// those addressed to one).
    pub incidents: Vec<pb::Incident>,
    pub supervisors: Vec<pb::Organization>,
    /// The answer's and the incidents' files, described by intake.
    pub files: HashMap<String, pb::Attachment>,
    /// A form's error to show beside its file field: the form's key and the text.
    pub form_error: Option<(String, String)>,
}

pub async fn page(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let htmx = is_htmx(&headers);
    let session = match signed_in(&app, &headers).await {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    match load(&app, &session, &id, htmx).await {
        Ok(card) => full_page(&app, &session, &card, None, None).await,
        Err(error) => error.into_response(),
    }
}

/// Reads the card. The ticket decides: when the services refuse it, nothing else is read.
pub async fn load(app: &App, session: &Session, id: &str, htmx: bool) -> Result<Card, WebError> {
    let api = Api::new(app, session);
    let key = pb::get_ticket_request::Key::TicketId(id.to_owned());
    let ticket = api
        .ticketing()
        .get_ticket(api.request(pb::GetTicketRequest { key: Some(key.clone()) }))
        .await
        .map_err(|status| WebError::from_status(&status, htmx))?
        .into_inner();
    // The services checked; the page checks again so that it never shows another organization's
    // card, whatever a system role might allow.
    if ticket.organization.as_ref().map(|o| o.id.as_str()) != Some(session.organization_id.as_str()) {
        tracing::warn!(target: "security", subject = %session.subject, ticket = %id, "card of another organization refused");
        return Err(WebError::Forbidden("Это сообщение другой организации."));
    }
    let organization_id = session.organization_id.clone();
    let appeal_id = ticket.appeal_id.clone();
    let (mut intake, mut sla, mut ticketing, mut staff_client, mut templates_client, mut incidents_client) =
        (api.intake(), api.sla(), api.ticketing(), api.ticketing(), api.ticketing(), api.ticketing());
    let ticket_id = ticket.id.clone();
    let (appeal, deadlines, history, classifier, staff, templates, incidents) = tokio::join!(
        intake.get_appeal(api.request(pb::GetAppealRequest { appeal_id: appeal_id.clone() })),
        sla.get_deadlines(api.request(pb::GetDeadlinesRequest { appeal_id })),
        ticketing.get_ticket_history(api.request(pb::GetTicketRequest { key: Some(key) })),
        api.classifier(),
        staff_client.list_staff(
            api.request(pb::ListStaffRequest { organization_id: organization_id.clone(), role: String::new() })
        ),
        templates_client.list_answer_templates(
            api.request(pb::ListAnswerTemplatesRequest { organization_id: organization_id.clone() })
        ),
        incidents_client.list_incidents(api.request(pb::ListIncidentsRequest { ticket_id, ..Default::default() })),
    );
    // What a service does not answer is left out of the card rather than failing it.
    let ok = |what: &str, status: &tonic::Status| tracing::warn!(code = ?status.code(), what, "card part unavailable");
    let appeal = appeal.map(|r| r.into_inner()).inspect_err(|s| ok("appeal", s)).ok();
    let deadlines = deadlines.map(|r| r.into_inner()).inspect_err(|s| ok("deadlines", s)).ok();
    let history = history.map(|r| r.into_inner().entries).inspect_err(|s| ok("history", s)).unwrap_or_default();
    let classifier = classifier.inspect_err(|s| ok("classifier", s)).unwrap_or_default();
    let staff = staff.map(|r| r.into_inner().staff).inspect_err(|s| ok("staff", s)).unwrap_or_default();
    let templates = templates.map(|r| r.into_inner().templates).inspect_err(|s| ok("templates", s)).unwrap_or_default();
    let incidents = incidents.map(|r| r.into_inner().incidents).inspect_err(|s| ok("incidents", s)).unwrap_or_default();
    let mut file_ids: Vec<String> = ticket.answer.as_ref().map(|a| a.attachment_ids.clone()).unwrap_or_default();
    file_ids.extend(incidents.iter().flat_map(|i| i.attachment_ids.iter().cloned()));
    let with_supervisors =
        incidents::may_open(session, &ticket) || incidents.iter().any(|i| !i.handler_organization_id.is_empty());
    let (files, supervisors) = tokio::join!(attachments::describe(&api, &file_ids), async {
        if !with_supervisors {
            return Vec::new();
        }
        incidents::federal_bodies(&api, "").await.inspect_err(|s| ok("federal bodies", s)).unwrap_or_default()
    });
    let mut card = Card {
        ticket,
        appeal,
        deadlines,
        history,
        classifier,
        staff,
        templates,
        organizations: Vec::new(),
        incidents,
        supervisors,
        files,
        form_error: None,
    };
    if commands::available(session, &card).contains(&Command::Redirect) {
        let request =
            pb::ListOrganizationsRequest { region_code: card.ticket.region_code.clone(), ..Default::default() };
        card.organizations = api
            .routing()
            .list_organizations(api.request(request))
            .await
            .map(|r| r.into_inner().organizations)
            .unwrap_or_default();
    }
    Ok(card)
}

/// The whole page around the card.
pub async fn full_page(
    app: &App,
    session: &Session,
    card: &Card,
    flash: Option<Flash>,
    draft: Option<&str>,
) -> Response {
    let counts = folder_counts(&Api::new(app, session), session).await;
    let folder = pb::Folder::try_from(card.ticket.folder).ok();
    let title = pages::title(&format!("Сообщение № {}", card.ticket.number), &counts);
    let main = render(session, card, flash, draft);
    pages::layout(&title, Some(session), Some(pages::folders(&counts, folder, false)), main).into_response()
}

fn zone_of(card: &Card, session: &Session) -> Tz {
    card.ticket.time_zone.parse().unwrap_or_else(|_| session.time_zone())
}

/// The card itself: the part htmx swaps after a command.
pub fn render(session: &Session, card: &Card, flash: Option<Flash>, draft: Option<&str>) -> Markup {
    let ticket = &card.ticket;
    let zone = zone_of(card, session);
    let now = Utc::now();
    let received = ticket.received_at.as_ref().and_then(pos_proto::time::from_proto);
    let fact = card.classifier.facts.iter().find(|f| f.id == ticket.fact_id);
    let subcategory = card.classifier.subcategories.iter().find(|s| s.id == ticket.subcategory_id);
    let category = card.classifier.categories.iter().find(|c| c.id == ticket.category_id);
    let staff_name = |subject: &str| match card.staff.iter().find(|m| m.subject == subject) {
        Some(member) => member.full_name.clone(),
        // The platform's own services act on their own behalf (routing delivers the message).
        None if SERVICES.contains(&subject) => "автоматически".to_owned(),
        None => subject.to_owned(),
    };
    html! {
        article #card data-version=(ticket.version) aria-labelledby="card-title" {
            // Inside the card, so that it follows the folder after a command.
            p.back {
                a href={ "/cabinet?folder=" (pb::Folder::try_from(ticket.folder).map_or("new", texts::folder_slug)) } {
                    "← " (texts::folder_name(ticket.folder))
                }
            }
            @match &flash {
                Some(Flash::Done(text)) => div.flash.done role="status" { (text) },
                Some(Flash::Warning(text)) => div.flash.warning role="alert" { (text) },
                Some(Flash::Error(text)) => div.flash.error role="alert" { (text) },
                None => {},
            }
            header.card-head {
                h1 #card-title {
                    "Сообщение № " (ticket.number)
                    @if ticket.fast_track { " " span.fast title="Фаст-трек" { "⚡ фаст-трек" } }
                }
                p.status {
                    span.badge { (texts::status(&ticket.status)) }
                    " · папка «" (texts::folder_name(ticket.folder)) "»"
                    @if ticket.review_round > 1 { " · повторное рассмотрение № " (ticket.review_round - 1) }
                }
            }
            section.clocks aria-label="Сроки" {
                (clock_block("Срок ответа", card.deadlines.as_ref().and_then(|d| d.answer.as_ref()), now, zone, "рассчитывается…"))
                (clock_block("Срок на исполнение", card.deadlines.as_ref().and_then(|d| d.execution.as_ref()), now, zone,
                    if ticket.assignee_id.is_empty() { "появится при назначении исполнителя" } else { "рассчитывается…" }))
            }
            div.card-grid {
                section.panel aria-labelledby="appeal-h" {
                    h2 #appeal-h { "Обращение" }
                    dl.facts {
                        dt { "Поступило" } dd { (received.map(|at| texts::local_time(at, zone)).unwrap_or_default()) }
                        dt { "Источник" } dd { (texts::source(ticket.source)) }
                        dt { "Категория" } dd { (category.map_or(ticket.category_id.as_str(), |c| c.name.as_str())) }
                        dt { "Подкатегория" } dd { (subcategory.map_or(ticket.subcategory_id.as_str(), |s| s.name.as_str())) }
                        dt { "Факт" } dd { (fact.map_or(ticket.fact_id.as_str(), |f| f.name.as_str())) }
                        @if !ticket.problem_address.is_empty() {
                            dt { "Адрес проблемы" } dd { (ticket.problem_address) }
                        }
                    }
                    div.appeal-text { (ticket.public_text) }
                    @if let Some(appeal) = &card.appeal {
                        @if !appeal.attachments.is_empty() {
                            h3 { "Вложения" }
                            (attachments::list(&appeal.attachments, "Вложения обращения"))
                        }
                    }
                }
                section.panel aria-labelledby="applicant-h" {
                    h2 #applicant-h { "Заявитель" }
                    @if let Some(applicant) = card.appeal.as_ref().and_then(|a| a.applicant.as_ref()) {
                        dl.facts {
                            dt { "ФИО" } dd { (applicant.full_name) }
                            @if !applicant.email.is_empty() { dt { "Эл. почта" } dd { (applicant.email) } }
                            @if !applicant.phone.is_empty() { dt { "Телефон" } dd { (applicant.phone) } }
                        }
                    } @else {
                        p.muted { "Сведения о заявителе недоступны." }
                    }
                    h2 { "Маршрутизация" }
                    dl.facts {
                        dt { "Адресат" } dd { (ticket.organization.as_ref().map(|o| o.short_name.as_str()).unwrap_or_default()) }
                        dt { "Срок рассмотрения" }
                        dd { (ticket.period_days) " " (if ticket.working_days { "рабочих дн." } else { "календарных дн." }) }
                        @if ticket.delegated_by_auto_rule { dt { "Автоправило" } dd { "делегировано автоправилом" } }
                        @if !ticket.assignee_id.is_empty() { dt { "Исполнитель" } dd { (staff_name(&ticket.assignee_id)) } }
                    }
                    @if let Some(routing) = card.appeal.as_ref().and_then(|a| a.routing.as_ref()) {
                        @if !routing.explanation.is_empty() {
                            details.why {
                                summary { "Почему сюда" }
                                p { (routing.explanation) }
                            }
                        }
                    }
                }
            }
            @if let Some(answer) = &ticket.answer {
                @if !answer.text.is_empty() {
                    section.panel.answer aria-labelledby="answer-h" {
                        h2 #answer-h { "Ответ: " (texts::answer_type(answer.r#type)) }
                        div.answer-text { (answer.text) }
                        @if !answer.attachment_ids.is_empty() {
                            h3 { "Файлы ответа" }
                            (attachments::list(&attachments::pick(&card.files, &answer.attachment_ids), "Файлы ответа"))
                        }
                    }
                }
            }
            (commands::forms(session, card, draft))
            (incidents::section(session, card, zone))
            section.panel aria-labelledby="history-h" {
                h2 #history-h { "Ход работ" }
                @if card.history.is_empty() {
                    p.muted { "Записей нет." }
                } @else {
                    ol.history {
                        @for entry in &card.history {
                            @let at = entry.at.as_ref().and_then(pos_proto::time::from_proto);
                            li data-action=(entry.action) {
                                time { (at.map(|at| texts::local_time(at, zone)).unwrap_or_default()) }
                                " "
                                strong {
                                    (texts::incident_history_action(&entry.action)
                                        .unwrap_or_else(|| texts::history_action(&entry.action)))
                                }
                                @if !entry.actor.is_empty() { " — " (staff_name(&entry.actor)) }
                                @if !entry.from_status.is_empty() && entry.from_status != entry.to_status {
                                    span.muted { " (" (texts::status(&entry.from_status)) " → " (texts::status(&entry.to_status)) ")" }
                                }
                                @if !entry.comment.is_empty() { div.comment { (history_comment(&entry.action, &entry.comment)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A history comment as people read it: an incident's opening names its kind in Russian
/// (ticketing writes `situation_center: <subject>`).
fn history_comment(action: &str, comment: &str) -> String {
    if action == "escalated" {
        for (stored, kind) in [
            ("situation_center: ", pb::IncidentKind::SituationCenter),
            ("federal_supervisor: ", pb::IncidentKind::FederalSupervisor),
        ] {
            if let Some(subject) = comment.strip_prefix(stored) {
                return format!("{}: {subject}", texts::incident_kind(kind as i32));
            }
        }
    }
    comment.to_owned()
}

fn clock_block(
    label: &str,
    deadline: Option<&pb::Deadline>,
    now: chrono::DateTime<Utc>,
    zone: Tz,
    missing: &str,
) -> Markup {
    let clock = deadline.and_then(|d| texts::clock(d, now, zone));
    html! {
        div.clock-box {
            div.clock-label { (label) }
            @match clock {
                Some(clock) => div class=(clock.tone.class()) { (clock.text) },
                None => div.clock.muted { (missing) },
            }
        }
    }
}
