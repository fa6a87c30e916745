//! The workflow commands: the forms the person's roles allow at the card's stage, and their
//! execution. Each form carries the version the person saw; a stale one is refused by
//! ticketing, and the person gets the fresh card and a word about it, never a lost update.

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{NaiveDate, TimeZone};
use http::HeaderMap;
use maud::{Markup, html};
use pos_platform::auth::Role;
use pos_proto::v1 as pb;

use super::attachments;
use super::card::{self, Card, Flash};
use super::{Api, WebError, folder_counts, is_htmx, pages, signed_in};
use crate::App;
use crate::session::Session;
use crate::texts;

/// The commands the cabinet offers staff (the applicant's own are not among them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    TakeInWork,
    Assign,
    HandOver,
    ReturnToCoordinator,
    Prepare,
    RequestInformation,
    InformationReceived,
    SendForAgreement,
    SendForApproval,
    Agree,
    ReturnForRework,
    Approve,
    Redirect,
    ReturnToCoordination,
    Reject,
    StopReview,
}

/// What ticketing's workflow allows, as the cabinet needs it to offer a command: the roles, the
/// stages (the card's status line), and whether an executor (not a coordinator) must be the
/// assignee. Ticketing decides again on every command.
struct Rule {
    command: Command,
    slug: &'static str,
    label: &'static str,
    roles: &'static [Role],
    stages: &'static [&'static str],
    assignee_only: bool,
}

const WORKING: &[&str] = &["in work", "executor assigned", "answer prepared"];

const RULES: [Rule; 16] = [
    Rule {
        command: Command::TakeInWork,
        slug: "take-in-work",
        label: "Взять в работу",
        roles: &[Role::Coordinator, Role::Executor],
        stages: &["new", "executor assigned", "returned for re-review"],
        assignee_only: true,
    },
    Rule {
        command: Command::Assign,
        slug: "assign",
        label: "Назначить исполнителя",
        roles: &[Role::Coordinator, Role::Curator],
        stages: &["new", "in work", "executor assigned", "returned for re-review", "answer prepared"],
        assignee_only: false,
    },
    Rule {
        command: Command::HandOver,
        slug: "hand-over",
        label: "Передать другому исполнителю",
        roles: &[Role::Executor],
        stages: WORKING,
        assignee_only: true,
    },
    Rule {
        command: Command::ReturnToCoordinator,
        slug: "return-to-coordinator",
        label: "Вернуть координатору",
        roles: &[Role::Executor],
        stages: WORKING,
        assignee_only: true,
    },
    Rule {
        command: Command::Prepare,
        slug: "prepare",
        label: "Подготовить ответ",
        roles: &[Role::Coordinator, Role::Executor],
        stages: &["in work", "answer prepared"],
        assignee_only: true,
    },
    Rule {
        command: Command::RequestInformation,
        slug: "request-information",
        label: "Запросить информацию у заявителя",
        roles: &[Role::Coordinator, Role::Executor],
        stages: &["in work", "answer prepared"],
        assignee_only: true,
    },
    Rule {
        command: Command::InformationReceived,
        slug: "information-received",
        label: "Информация получена",
        roles: &[Role::Coordinator, Role::Executor],
        stages: &["information requested"],
        assignee_only: false,
    },
    Rule {
        command: Command::SendForAgreement,
        slug: "send-for-agreement",
        label: "Направить на согласование",
        roles: &[Role::Coordinator, Role::Executor],
        stages: &["answer prepared"],
        assignee_only: true,
    },
    Rule {
        command: Command::SendForApproval,
        slug: "send-for-approval",
        label: "Направить на утверждение",
        roles: &[Role::Coordinator, Role::Executor],
        stages: &["answer prepared"],
        assignee_only: true,
    },
    Rule {
        command: Command::Agree,
        slug: "agree",
        label: "Согласовать",
        roles: &[Role::Approver],
        stages: &["on agreement"],
        assignee_only: false,
    },
    Rule {
        command: Command::ReturnForRework,
        slug: "return-for-rework",
        label: "Вернуть на доработку",
        roles: &[Role::Head, Role::Approver],
        stages: &["on approval", "on agreement"],
        assignee_only: false,
    },
    Rule {
        command: Command::Approve,
        slug: "approve",
        label: "Утвердить ответ",
        roles: &[Role::Head],
        stages: &["on approval"],
        assignee_only: false,
    },
    Rule {
        command: Command::Redirect,
        slug: "redirect",
        label: "Перенаправить в другую организацию",
        roles: &[Role::Coordinator],
        stages: &["new", "in work", "executor assigned", "returned for re-review"],
        assignee_only: false,
    },
    Rule {
        command: Command::ReturnToCoordination,
        slug: "return-to-coordination",
        label: "Вернуть на координацию",
        roles: &[Role::Coordinator],
        stages: &["new", "in work", "executor assigned", "returned for re-review"],
        assignee_only: false,
    },
    Rule {
        command: Command::Reject,
        slug: "reject",
        label: "Отклонить",
        roles: &[Role::Coordinator],
        stages: &["new", "in work", "executor assigned"],
        assignee_only: false,
    },
    Rule {
        command: Command::StopReview,
        slug: "stop-review",
        label: "Остановить повторное рассмотрение",
        roles: &[Role::Curator],
        stages: &["returned for re-review"],
        assignee_only: false,
    },
];

fn rule(command: Command) -> &'static Rule {
    RULES.iter().find(|r| r.command == command).expect("every command has a rule")
}

/// Whether the person may run `rule` on the card now.
fn allowed(session: &Session, ticket: &pb::Ticket, rule: &Rule) -> bool {
    if !session.has_any(rule.roles) || !rule.stages.contains(&ticket.status.as_str()) {
        return false;
    }
    // The head returns from approval, the approver from agreement.
    if rule.command == Command::ReturnForRework {
        let head = session.has(Role::Head) && ticket.status == "on approval";
        let approver = session.has(Role::Approver) && ticket.status == "on agreement";
        return head || approver;
    }
    // An executor works only on what is assigned to them; a coordinator on anything.
    let executor_only = session.has(Role::Executor) && !session.has(Role::Coordinator);
    !(rule.assignee_only && executor_only && ticket.assignee_id != session.subject)
}

/// The commands the person may run on the card now.
pub fn available(session: &Session, card: &Card) -> Vec<Command> {
    RULES.iter().filter(|r| allowed(session, &card.ticket, r)).map(|r| r.command).collect()
}

/// The command forms of the card.
pub fn forms(session: &Session, card: &Card, draft: Option<&str>) -> Markup {
    let commands = available(session, card);
    if commands.is_empty() {
        return html! {};
    }
    let (plain, with_fields): (Vec<Command>, Vec<Command>) = commands
        .into_iter()
        .partition(|c| matches!(c, Command::TakeInWork | Command::SendForAgreement | Command::SendForApproval));
    html! {
        section.panel.commands aria-labelledby="commands-h" {
            h2 #commands-h { "Действия" }
            @if !plain.is_empty() {
                div.buttons {
                    @for command in &plain {
                        (form(session, card, *command, html! {}))
                    }
                }
            }
            @for command in &with_fields {
                details.command data-command=(rule(*command).slug) open[with_fields.len() == 1] {
                    summary { (rule(*command).label) }
                    (form(session, card, *command, fields(session, card, *command, draft)))
                }
            }
        }
    }
}

fn form(session: &Session, card: &Card, command: Command, fields: Markup) -> Markup {
    let rule = rule(command);
    let url = format!("/cabinet/tickets/{}/{}", card.ticket.id, rule.slug);
    // The answer carries files; the CSRF token stays the first field (see `attachments`).
    let multipart = (command == Command::Prepare).then_some("multipart/form-data");
    html! {
        form method="post" action=(url) enctype=[multipart] hx-post=(url) hx-encoding=[multipart] hx-target="#card"
            hx-swap="outerHTML" data-command=(rule.slug) {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="version" value=(card.ticket.version);
            (fields)
            button.primary type="submit" { (rule.label) }
        }
    }
}

fn comment_field(id: &str, label: &str, required: bool) -> Markup {
    html! {
        div.field {
            label for=(id) { (label) }
            textarea id=(id) name="comment" rows="3" required[required] {}
        }
    }
}

fn executors<'a>(card: &'a Card, except: &'a str) -> impl Iterator<Item = &'a pb::StaffMember> {
    card.staff.iter().filter(move |m| m.active && m.roles.iter().any(|r| r == "executor") && m.subject != except)
}

fn fields(session: &Session, card: &Card, command: Command, draft: Option<&str>) -> Markup {
    let id = |name: &str| format!("{}-{name}", rule(command).slug);
    let answer = card.ticket.answer.as_ref();
    match command {
        Command::TakeInWork | Command::SendForAgreement | Command::SendForApproval => html! {},
        Command::Assign => html! {
            div.field {
                label for=(id("executor")) { "Исполнитель" }
                select id=(id("executor")) name="executor" required {
                    @for member in executors(card, "") {
                        option value=(member.subject) selected[member.subject == card.ticket.assignee_id] { (member.full_name) }
                    }
                }
            }
            div.field {
                label for=(id("due")) { "Срок на исполнение (до конца дня)" }
                input id=(id("due")) type="date" name="execution_due";
            }
        },
        Command::HandOver => html! {
            div.field {
                label for=(id("executor")) { "Кому передать" }
                select id=(id("executor")) name="executor" required {
                    @for member in executors(card, &session.subject) {
                        option value=(member.subject) { (member.full_name) }
                    }
                }
            }
        },
        Command::Prepare => {
            let text = draft.map(str::to_owned).or_else(|| answer.map(|a| a.text.clone())).unwrap_or_default();
            let current = answer.map_or(pb::events::AnswerType::Resolved as i32, |a| a.r#type);
            html! {
                div.field {
                    label for=(id("type")) { "Тип ответа" }
                    select id=(id("type")) name="type" {
                        @for (value, slug, name) in texts::ANSWER_TYPES {
                            option value=(slug) selected[value as i32 == current] { (name) }
                        }
                    }
                }
                @if !card.templates.is_empty() {
                    div.field {
                        label for=(id("template")) { "Шаблон (заменяет текст)" }
                        select id=(id("template")) name="template" {
                            option value="" { "Без шаблона" }
                            @for template in &card.templates { option value=(template.id) { (template.name) } }
                        }
                    }
                }
                div.field {
                    label for=(id("text")) { "Текст ответа" }
                    textarea id=(id("text")) name="text" rows="8" { (text) }
                }
                div.field {
                    label for=(id("basis")) { "Основание (для отклонения)" }
                    input id=(id("basis")) type="text" name="basis" value=(answer.map(|a| a.basis.as_str()).unwrap_or_default());
                }
                @let kept = answer.map(|a| attachments::pick(&card.files, &a.attachment_ids)).unwrap_or_default();
                @if !kept.is_empty() {
                    fieldset.field {
                        legend { "Файлы ответа (снимите отметку, чтобы убрать)" }
                        @for file in &kept {
                            label.choice {
                                input type="checkbox" name="keep" value=(file.id) checked;
                                " " (if file.file_name.is_empty() { file.id.as_str() } else { file.file_name.as_str() })
                            }
                        }
                    }
                }
                @let error = card.form_error.as_ref().filter(|(k, _)| k == "prepare").map(|(_, e)| e.as_str());
                (attachments::file_field(&id("files"), "Приложить файлы", ".pdf,.jpg,.jpeg,.png,.txt,.rtf,.doc,.docx,.xls,.xlsx,.ppt,.pptx,.odt,.ods,.odp,.odf", error))
            }
        }
        Command::Approve => html! {
            div.field {
                label for=(id("text")) { "Текст ответа (можно исправить перед утверждением)" }
                textarea id=(id("text")) name="text" rows="8" { (answer.map(|a| a.text.as_str()).unwrap_or_default()) }
            }
        },
        Command::Redirect => html! {
            div.field {
                label for=(id("search")) { "Поиск организации" }
                input id=(id("search")) type="search" name="q" autocomplete="off"
                    hx-get="/cabinet/organizations" hx-trigger="input changed delay:300ms, search"
                    hx-target=(format!("#{}", id("to"))) hx-swap="innerHTML";
            }
            div.field {
                label for=(id("to")) { "Организация" }
                select id=(id("to")) name="to" required size="6" {
                    (organization_list(&card.organizations, &session.organization_id))
                }
            }
            (comment_field(&id("reason"), "Причина", true))
        },
        Command::Agree => comment_field(&id("comment"), "Комментарий (необязательно)", false),
        Command::ReturnToCoordinator
        | Command::RequestInformation
        | Command::InformationReceived
        | Command::ReturnForRework
        | Command::ReturnToCoordination
        | Command::Reject
        | Command::StopReview => {
            let label = match command {
                Command::RequestInformation => "Какая информация нужна",
                Command::ReturnForRework => "Что доработать",
                Command::Reject | Command::ReturnToCoordination => "Причина",
                _ => "Комментарий",
            };
            comment_field(&id("comment"), label, true)
        }
    }
}

fn organization_list(organizations: &[pb::Organization], own: &str) -> Markup {
    html! {
        @for org in organizations.iter().filter(|o| o.id != own).take(100) {
            option value=(org.id) { (org.region_code) " · " (org.short_name) }
        }
    }
}

/// The redirect form's organization search (htmx).
pub async fn organization_options(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let session = match signed_in(&app, &headers).await {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    if !session.has(Role::Coordinator) {
        return WebError::Forbidden("Перенаправлять сообщения может координатор.").into_response();
    }
    let api = Api::new(&app, &session);
    let request =
        pb::ListOrganizationsRequest { query: query.get("q").cloned().unwrap_or_default(), ..Default::default() };
    match api.routing().list_organizations(api.request(request)).await {
        Ok(response) => {
            organization_list(&response.into_inner().organizations, &session.organization_id).into_response()
        }
        Err(status) => WebError::from_status(&status, true).into_response(),
    }
}

pub async fn run(
    State(app): State<App>,
    headers: HeaderMap,
    Path((id, slug)): Path<(String, String)>,
    request: Request,
) -> Response {
    let htmx = is_htmx(&headers);
    let session = match signed_in(&app, &headers).await {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    let Some(rule) = RULES.iter().find(|r| r.slug == slug) else {
        return WebError::NotFound.into_response();
    };
    // Refused before any call when the role cannot run it at all; the service checks again.
    if !session.has_any(rule.roles) {
        tracing::warn!(target: "security", subject = %session.subject, command = rule.slug, "command not allowed for the role");
        return WebError::Forbidden("Это действие недоступно для вашей роли.").into_response();
    }
    // Read only now: files go to intake as the form is read, after the role was checked.
    let form = match attachments::read_form(&app, &session, request).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let field = |name: &str| form.field(name);
    let version: i64 = field("version").parse().unwrap_or(0);
    let draft = (rule.command == Command::Prepare).then(|| field("text"));
    if let Some(error) = form.file_error.clone() {
        let form_error = Some(("prepare".to_owned(), error.clone()));
        return card_response(&app, &session, &id, htmx, Flash::Error(error), draft.as_deref(), form_error).await;
    }
    let mut attachment_ids = form.values("keep");
    attachment_ids.extend(form.attachment_ids.iter().cloned());
    let outcome = execute(&app, &session, &id, rule.command, version, &field, attachment_ids).await;
    let flash = match outcome {
        Ok(()) => {
            if !htmx {
                return Redirect::to(&format!("/cabinet/tickets/{id}")).into_response();
            }
            Flash::Done(format!("Выполнено: {}.", rule.label.to_lowercase()))
        }
        Err(status) => match flash_for(&status) {
            Ok(flash) => flash,
            Err(()) => return WebError::from_status(&status, htmx).into_response(),
        },
    };
    let keep_draft = matches!(flash, Flash::Warning(_) | Flash::Error(_));
    let draft = if keep_draft { draft.as_deref() } else { None };
    card_response(&app, &session, &id, htmx, flash, draft, None).await
}

/// The fresh card after a command (of the ticket or one of its incidents), with `flash`, the
/// answer's `draft` kept after a refusal, and a form's error beside its file field.
pub(super) async fn card_response(
    app: &App,
    session: &Session,
    id: &str,
    htmx: bool,
    flash: Flash,
    draft: Option<&str>,
    form_error: Option<(String, String)>,
) -> Response {
    let mut card = match card::load(app, session, id, htmx).await {
        Ok(card) => card,
        Err(error) => return error.into_response(),
    };
    card.form_error = form_error;
    if htmx {
        let counts = folder_counts(&Api::new(app, session), session).await;
        let folder = pb::Folder::try_from(card.ticket.folder).ok();
        html! {
            (card::render(session, &card, Some(flash), draft))
            (pages::folders(&counts, folder, true))
        }
        .into_response()
    } else {
        card::full_page(app, session, &card, Some(flash), draft).await
    }
}

/// What the person reads when a command is refused; `Err` for what is no command's fault.
pub(super) fn flash_for(status: &tonic::Status) -> Result<Flash, ()> {
    use tonic::Code;
    let reason = pos_platform::error::reason(status);
    if reason == "STALE_VERSION" {
        return Ok(Flash::Warning(
            "Сообщение изменено другим пользователем. Показана актуальная версия: проверьте её и повторите действие."
                .to_owned(),
        ));
    }
    match status.code() {
        Code::InvalidArgument => {
            let fields = pos_platform::error::violated_fields(status);
            let names: Vec<&str> = fields.iter().map(|f| field_name(f)).collect();
            Ok(Flash::Error(if names.is_empty() {
                "Проверьте заполнение формы.".to_owned()
            } else {
                format!("Проверьте поля: {}.", names.join(", "))
            }))
        }
        Code::FailedPrecondition => {
            Ok(Flash::Error("Это действие недоступно для сообщения в его текущем статусе.".to_owned()))
        }
        Code::PermissionDenied => Ok(Flash::Error("Это действие вам недоступно.".to_owned())),
        Code::Unavailable => {
            Ok(Flash::Error("Сервис временно недоступен, повторите действие через минуту.".to_owned()))
        }
        _ => Err(()),
    }
}

fn field_name(field: &str) -> &str {
    match field {
        "comment" | "reason" => "комментарий или причина",
        "answer.text" | "edited.text" => "текст ответа",
        "answer.basis" => "основание",
        "answer.follow_up_at" => "дата возврата к вопросу",
        "executor_id" => "исполнитель",
        "execution_due" => "срок на исполнение",
        "to_organization_id" => "организация",
        "template_id" => "шаблон",
        f if f.starts_with("answer.attachment_ids") => "файлы ответа",
        other => other,
    }
}

async fn execute(
    app: &App,
    session: &Session,
    id: &str,
    command: Command,
    version: i64,
    field: &(dyn Fn(&str) -> String + Sync),
    attachment_ids: Vec<String>,
) -> Result<(), tonic::Status> {
    let api = Api::new(app, session);
    let mut ticketing = api.ticketing();
    let ticket_id = id.to_owned();
    let comment = || pb::CommentRequest {
        ticket_id: ticket_id.clone(),
        expected_version: version,
        comment: field("comment"),
        attachment_ids: Vec::new(),
    };
    let version_only = || pb::VersionRequest { ticket_id: ticket_id.clone(), expected_version: version };
    match command {
        Command::TakeInWork => {
            let request = pb::TakeInWorkRequest { ticket_id: ticket_id.clone(), expected_version: version };
            ticketing.take_in_work(api.request(request)).await?;
        }
        Command::Assign => {
            let request = pb::AssignExecutorRequest {
                ticket_id: ticket_id.clone(),
                expected_version: version,
                executor_id: field("executor"),
                execution_due: end_of_day(&field("execution_due"), session.time_zone()),
            };
            ticketing.assign_executor(api.request(request)).await?;
        }
        Command::HandOver => {
            let request = pb::HandOverRequest {
                ticket_id: ticket_id.clone(),
                expected_version: version,
                executor_id: field("executor"),
            };
            ticketing.hand_over(api.request(request)).await?;
        }
        Command::ReturnToCoordinator => {
            ticketing.return_to_coordinator(api.request(comment())).await?;
        }
        Command::Prepare => {
            let kind = texts::answer_type_by_slug(&field("type")).unwrap_or(pb::events::AnswerType::Resolved);
            let answer = pb::Answer {
                r#type: kind as i32,
                text: field("text"),
                basis: field("basis"),
                attachment_ids,
                ..Default::default()
            };
            let request = pb::PrepareAnswerRequest {
                ticket_id: ticket_id.clone(),
                expected_version: version,
                answer: Some(answer),
                template_id: field("template"),
            };
            ticketing.prepare_answer(api.request(request)).await?;
        }
        Command::RequestInformation => {
            ticketing.request_information(api.request(comment())).await?;
        }
        Command::InformationReceived => {
            ticketing.information_received(api.request(comment())).await?;
        }
        Command::SendForAgreement => {
            ticketing.send_for_agreement(api.request(version_only())).await?;
        }
        Command::SendForApproval => {
            ticketing.send_for_approval(api.request(version_only())).await?;
        }
        Command::Agree => {
            ticketing.agree(api.request(comment())).await?;
        }
        Command::ReturnForRework => {
            ticketing.return_for_rework(api.request(comment())).await?;
        }
        Command::Approve => {
            // The head's edit replaces the draft; an unchanged text approves the draft as it is.
            let text = field("text");
            let key = pb::get_ticket_request::Key::TicketId(ticket_id.clone());
            let current =
                ticketing.get_ticket(api.request(pb::GetTicketRequest { key: Some(key) })).await?.into_inner();
            let edited =
                current.answer.filter(|a| !text.is_empty() && a.text.trim() != text).map(|a| pb::Answer { text, ..a });
            let request = pb::ApproveRequest { ticket_id: ticket_id.clone(), expected_version: version, edited };
            ticketing.approve(api.request(request)).await?;
        }
        Command::Redirect => {
            let request = pb::RedirectRequest {
                ticket_id: ticket_id.clone(),
                expected_version: version,
                to_organization_id: field("to"),
                reason: field("comment"),
            };
            ticketing.redirect(api.request(request)).await?;
        }
        Command::ReturnToCoordination => {
            ticketing.return_to_coordination(api.request(comment())).await?;
        }
        Command::Reject => {
            ticketing.reject(api.request(comment())).await?;
        }
        Command::StopReview => {
            ticketing.stop_review(api.request(comment())).await?;
        }
    }
    Ok(())
}

/// The end of a local day (deadlines end there): `2025-01-25` → 23:59:59 in `zone`.
fn end_of_day(date: &str, zone: chrono_tz::Tz) -> Option<prost_types::Timestamp> {
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let local = zone.from_local_datetime(&date.and_hms_opt(23, 59, 59)?).latest()?;
    Some(pos_proto::time::to_proto(local.with_timezone(&chrono::Utc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(roles: &[Role], subject: &str) -> Session {
        Session {
            token: String::new(),
            subject: subject.into(),
            display_name: String::new(),
            organization_id: "o".into(),
            organization_name: String::new(),
            region_code: "41".into(),
            roles: roles.to_vec(),
            csrf: String::new(),
            expires_at: 0,
            provider: None,
        }
    }

    fn ticket(status: &str, assignee: &str) -> pb::Ticket {
        pb::Ticket { status: status.into(), assignee_id: assignee.into(), ..Default::default() }
    }

    fn offered(session: &Session, ticket: &pb::Ticket) -> Vec<Command> {
        RULES.iter().filter(|r| allowed(session, ticket, r)).map(|r| r.command).collect()
    }

    #[test]
    fn each_role_is_offered_only_its_own_commands() {
        let coordinator = session(&[Role::Coordinator], "c");
        let new = ticket("new", "");
        assert_eq!(
            offered(&coordinator, &new),
            [Command::TakeInWork, Command::Assign, Command::Redirect, Command::ReturnToCoordination, Command::Reject]
        );
        let executor = session(&[Role::Executor], "e");
        assert!(offered(&executor, &new).is_empty(), "a new message is the coordinator's");
        assert_eq!(offered(&executor, &ticket("executor assigned", "e"))[0], Command::TakeInWork);
        assert!(offered(&executor, &ticket("in work", "other")).is_empty(), "only what is assigned to them");
        let head = session(&[Role::Head], "h");
        assert_eq!(offered(&head, &ticket("on approval", "e")), [Command::ReturnForRework, Command::Approve]);
        assert!(offered(&head, &ticket("on agreement", "e")).is_empty(), "agreement is the approver's");
    }

    #[test]
    fn an_execution_deadline_ends_the_local_day() {
        let due = end_of_day("2025-01-25", chrono_tz::Asia::Kamchatka).unwrap();
        assert_eq!(pos_proto::time::from_proto(&due).unwrap().to_rfc3339(), "2025-01-25T11:59:59+00:00");
        assert!(end_of_day("", chrono_tz::Asia::Kamchatka).is_none());
    }
}
