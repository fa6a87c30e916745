//! The applicant's page of their appeal. The registration e-mail's secret link
//! (`/appeal/v1.…`, see [`pos_platform::appeal_link`]) makes an applicant session and
//! redirects to `/appeal/<appeal id>`, so the link leaves the address bar and the history at
//! once. The page shows the status and history in plain words, both deadlines in local time, the
//! answer with its files; the applicant accepts it with a rating or rejects it with a comment
//! (re-review), and sends the information the organization asked for. Every call carries a
//! token minted for the appeal's own applicant; the services check that the appeal is theirs.

use axum::Form;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use maud::{Markup, html};
use pos_platform::auth::Role;
use pos_platform::grpc::outgoing;
use pos_proto::v1 as pb;
use pos_proto::v1::intake_service_client::IntakeServiceClient;
use pos_proto::v1::routing_service_client::RoutingServiceClient;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;
use serde::Deserialize;

use super::widget::local_moment;
use super::{CitizenState, pages};
use crate::cabinet::Api;
use crate::cabinet::attachments;
use crate::session::{self, Session};
use crate::texts;

/// The ticket statuses in which the applicant reads an answer that went out.
const ANSWERED: [&str; 3] = ["answered", "accepted by applicant", "re-review stopped"];
/// History entries whose comment is addressed to the applicant or is theirs; others' comments
/// are the organization's internal notes.
const COMMENTS_SHOWN: [&str; 3] = ["information requested", "information received", "rejected by applicant"];

fn timestamp(t: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.max(0) as u32)).filter(|t| t.timestamp() > 0)
}

/// `/appeal/<link>` signs the applicant in; `/appeal/<appeal id>` is the page.
pub async fn open(
    State(state): State<CitizenState>,
    Path(key): Path<String>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    if key.starts_with("v1.") { sign_in(&state, &key).await } else { page(&state, &key, &query, &headers).await }
}

async fn sign_in(state: &CitizenState, link: &str) -> Response {
    let Some(keys) = &state.links else {
        return pages::message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Ссылка сейчас не работает",
            "Страницы обращений временно недоступны. Повторите попытку позже.",
        );
    };
    let granted = match keys.verify(link, Utc::now().timestamp()) {
        Ok(granted) => granted,
        Err(pos_platform::appeal_link::LinkError::Expired) => {
            return pages::message(
                StatusCode::GONE,
                "Срок действия ссылки истёк",
                "Ссылка из письма больше не работает. Узнать о ходе рассмотрения можно в организации, назвав номер обращения.",
            );
        }
        Err(error) => {
            tracing::info!(target: "security", %error, "appeal link refused");
            return pages::message(
                StatusCode::NOT_FOUND,
                "Ссылка не распознана",
                "Проверьте, что ссылка скопирована из письма целиком.",
            );
        }
    };
    let app = &state.app;
    let ttl = app.sessions.ttl();
    let Some(token) = state.applicant_token(&granted.subject, "", ttl) else {
        return pages::unavailable();
    };
    let session = Session {
        token,
        subject: granted.subject,
        display_name: String::new(),
        organization_id: String::new(),
        organization_name: String::new(),
        region_code: String::new(),
        roles: vec![Role::Applicant],
        csrf: session::random_token(),
        expires_at: Utc::now().timestamp() + ttl.as_secs() as i64,
        provider: None,
    };
    let id = match app.sessions.create(&session).await {
        Ok(id) => id,
        Err(error) => {
            tracing::warn!(%error, "applicant session not stored");
            return pages::unavailable();
        }
    };
    let cookie = app.cookies.set(app.cookies.session_name(), &id, ttl);
    let mut response = Redirect::to(&format!("/appeal/{}", granted.appeal_id)).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The applicant signed in by a link, or none.
async fn applicant(state: &CitizenState, headers: &HeaderMap) -> Option<Session> {
    let id = session::cookie(headers, state.app.cookies.session_name())?;
    let session = state.app.sessions.get(id).await?;
    (session.roles == [Role::Applicant]).then_some(session)
}

fn open_by_link() -> Response {
    pages::message(
        StatusCode::UNAUTHORIZED,
        "Откройте страницу по ссылке из письма",
        "Страница обращения открывается по личной ссылке из письма о регистрации. Если письмо потерялось, обратитесь в организацию, назвав номер обращения.",
    )
}

fn failed(status: &tonic::Status) -> Response {
    match status.code() {
        tonic::Code::NotFound | tonic::Code::PermissionDenied => pages::message(
            StatusCode::NOT_FOUND,
            "Обращение не найдено",
            "Такого обращения нет, или оно подано не вами.",
        ),
        tonic::Code::Unauthenticated => open_by_link(),
        code => {
            tracing::warn!(?code, message = %status.message(), "appeal page: service call failed");
            pages::unavailable()
        }
    }
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    #[serde(default)]
    done: String,
}

/// What the page shows.
struct View {
    appeal: pb::Appeal,
    ticket: Option<pb::Ticket>,
    history: Vec<pb::HistoryEntry>,
    /// The answer's files: id, name, size.
    files: Vec<(String, String, i64)>,
    topic: Vec<String>,
}

async fn load(state: &CitizenState, session: &Session, appeal_id: &str) -> Result<View, Response> {
    let channel = state.app.channel.clone();
    let token = session.token.as_str();
    let mut intake = IntakeServiceClient::new(channel.clone());
    let request = pb::GetAppealRequest { appeal_id: appeal_id.to_owned() };
    let appeal = intake.get_appeal(outgoing(request, token)).await.map_err(|s| failed(&s))?.into_inner();
    let mut ticketing = TicketingServiceClient::new(channel.clone());
    let key = || Some(pb::get_ticket_request::Key::AppealId(appeal_id.to_owned()));
    let ticket = match ticketing.get_ticket(outgoing(pb::GetTicketRequest { key: key() }, token)).await {
        Ok(ticket) => Some(ticket.into_inner()),
        // Not routed yet: no organization has it in its cabinet.
        Err(status) if status.code() == tonic::Code::NotFound => None,
        Err(status) => return Err(failed(&status)),
    };
    let history = match &ticket {
        Some(_) => match ticketing.get_ticket_history(outgoing(pb::GetTicketRequest { key: key() }, token)).await {
            Ok(history) => history.into_inner().entries,
            Err(status) => {
                tracing::warn!(code = ?status.code(), "appeal page: history unavailable");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let mut files = Vec::new();
    if let Some(answer) =
        ticket.as_ref().filter(|t| ANSWERED.contains(&t.status.as_str())).and_then(|t| t.answer.as_ref())
    {
        // Described without being read: the applicant's page view is no download.
        let described = attachments::describe(&Api::with_token(&state.app, token), &answer.attachment_ids).await;
        for file in attachments::pick(&described, &answer.attachment_ids) {
            if file.file_name.is_empty() {
                files.push((file.id, "Файл".to_owned(), 0));
            } else {
                files.push((file.id, file.file_name, file.size));
            }
        }
    }
    let mut routing = RoutingServiceClient::new(channel);
    let topic = match routing.list_classifier(outgoing(pb::ListClassifierRequest {}, token)).await {
        Ok(classifier) => {
            let classifier = classifier.into_inner();
            let category = classifier.categories.iter().find(|c| c.id == appeal.category_id).map(|c| c.name.clone());
            let sub = classifier.subcategories.iter().find(|s| s.id == appeal.subcategory_id).map(|s| s.name.clone());
            let fact = classifier.facts.iter().find(|f| f.id == appeal.fact_id).map(|f| f.name.clone());
            [category, sub, fact].into_iter().flatten().collect()
        }
        Err(_) => Vec::new(),
    };
    Ok(View { appeal, ticket, history, files, topic })
}

/// The status in plain words.
fn status_words(view: &View) -> String {
    match &view.ticket {
        Some(ticket) => match ticket.status.as_str() {
            "new" => "Поступило в организацию, ждёт рассмотрения".to_owned(),
            "answered" => "Ответ готов".to_owned(),
            "information requested" => "Организации нужны дополнительные сведения от вас".to_owned(),
            "returned for re-review" => "Рассматривается повторно".to_owned(),
            "accepted by applicant" => "Вы приняли ответ".to_owned(),
            "redirected" => "Передано в другую организацию".to_owned(),
            "rejected" => "Отклонено организацией".to_owned(),
            "executor assigned" | "in work" | "answer prepared" | "on agreement" | "on approval" => {
                "Рассматривается".to_owned()
            }
            other => texts::status(other).to_owned(),
        },
        None => "Зарегистрировано, передаётся в организацию".to_owned(),
    }
}

/// A deadline: the end of a local day in the addressee's zone, said as the applicant reads it.
fn deadline(at: Option<&prost_types::Timestamp>, zone: &str, region_code: &str) -> Option<String> {
    let at = timestamp(at)?;
    let zone: chrono_tz::Tz = zone.parse().ok().or_else(|| pos_regions::zone(region_code))?;
    let local = zone.from_utc_datetime(&at.naive_utc());
    Some(format!("до {} ({})", local.format("%H:%M %d.%m.%Y"), zone_words(zone, at)))
}

fn zone_words(zone: chrono_tz::Tz, at: DateTime<Utc>) -> String {
    use chrono::Offset;
    let offset = zone.from_utc_datetime(&at.naive_utc()).offset().fix().local_minus_utc();
    let sign = if offset < 0 { '-' } else { '+' };
    format!("время организации, UTC{sign}{}", offset.abs() / 3600)
}

fn flash(done: &str) -> Option<(&'static str, &'static str)> {
    match done {
        "accepted" => Some(("success", "Спасибо! Вы приняли ответ, оценка сохранена.")),
        "rejected" => Some(("success", "Ваш комментарий отправлен: обращение рассмотрят повторно.")),
        "information" => Some(("success", "Сведения отправлены в организацию.")),
        "stale" => Some(("warning", "Статус обращения изменился, пока страница была открыта. Посмотрите его ещё раз.")),
        "invalid" => Some(("warning", "Заполните форму: нужна оценка или комментарий.")),
        "file" => Some(("warning", "Файл не принят: проверьте его тип и размер и отправьте сведения ещё раз.")),
        _ => None,
    }
}

async fn page(state: &CitizenState, appeal_id: &str, query: &PageQuery, headers: &HeaderMap) -> Response {
    let Some(session) = applicant(state, headers).await else {
        return open_by_link();
    };
    let view = match load(state, &session, appeal_id).await {
        Ok(view) => view,
        Err(response) => return response,
    };
    let appeal = &view.appeal;
    let region = appeal.region_code.as_str();
    let registered = timestamp(appeal.registered_at.as_ref()).unwrap_or_else(Utc::now);
    let ticket = view.ticket.as_ref();
    let zone = ticket.map_or("", |t| t.time_zone.as_str());
    let organization = ticket
        .and_then(|t| t.organization.as_ref())
        .or_else(|| appeal.routing.as_ref().and_then(|r| r.organization.as_ref()))
        .map(|o| o.short_name.clone());
    let status = ticket.map_or("", |t| t.status.as_str());
    let answer = ticket.filter(|t| ANSWERED.contains(&t.status.as_str())).and_then(|t| t.answer.as_ref());
    let version = ticket.map_or(0, |t| t.version);
    let base = format!("/appeal/{}", appeal.id);
    let body = pages::layout(
        &format!("Обращение № {} — Платформа обратной связи", appeal.number),
        true,
        html! {
            h1 { "Обращение № " (appeal.number) }
            @if let Some((class, text)) = flash(&query.done) {
                p.flash.(class) role="status" { (text) }
            }
            dl.facts {
                dt { "Статус" }
                dd #status { (status_words(&view)) }
                dt { "Зарегистрировано" }
                dd { (local_moment(registered, region)) }
                @if !view.topic.is_empty() {
                    dt { "Тема" }
                    dd { (view.topic.join(" → ")) }
                }
                @if let Some(organization) = &organization {
                    dt { "Рассматривает" }
                    dd { (organization) }
                }
                dt { "Срок ответа" }
                dd #answer-due {
                    (deadline(ticket.and_then(|t| t.answer_due.as_ref()), zone, region).unwrap_or_else(|| "будет назначен, когда организация получит обращение".into()))
                }
                dt { "Срок исполнения" }
                dd #execution-due {
                    (deadline(ticket.and_then(|t| t.execution_due.as_ref()), zone, region).unwrap_or_else(|| "будет назначен, когда обращение поручат исполнителю".into()))
                }
            }
            section aria-labelledby="text-title" {
                h2 #text-title { "Текст обращения" }
                p.appeal-text { (appeal.public_text) }
            }
            @if let Some(answer) = answer {
                section #answer aria-labelledby="answer-title" {
                    h2 #answer-title { "Ответ организации" }
                    @let kind = texts::answer_type(answer.r#type);
                    @if !kind.is_empty() { p { "Результат: " strong { (kind) } } }
                    p.answer-text { (answer.text) }
                    @if !view.files.is_empty() {
                        h3 { "Файлы ответа" }
                        ul.files {
                            @for (id, name, size) in &view.files {
                                li { a href={ (base) "/files/" (id) } download=(name) { (name) } @if *size > 0 { " (" (human_size(*size)) ")" } }
                            }
                        }
                    }
                }
            }
            @if status == "answered" {
                (actions(&base, &session.csrf, version))
            }
            @if status == "information requested" {
                section aria-labelledby="information-title" {
                    h2 #information-title { "Отправить сведения" }
                    @if let Some(asked) = view.history.iter().rev().find(|e| e.action == "information requested") {
                        p { "Организация просит: " (asked.comment) }
                    }
                    // The CSRF token is the first field: the guard reads it without buffering the files.
                    form method="post" action={ (base) "/information" } enctype="multipart/form-data" data-form="information" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        input type="hidden" name="version" value=(version);
                        div.field {
                            label for="information" { "Сведения *" }
                            textarea #information name="comment" rows="5" required maxlength="10000" {}
                        }
                        div.field {
                            label for="information-files" { "Файлы" }
                            input #information-files type="file" name="files" multiple aria-describedby="information-files-hint";
                            p.hint #information-files-hint {
                                "До " (attachments::MAX_FILES) " файлов, каждый до " (attachments::MAX_FILE_BYTES / 1024 / 1024)
                                " МБ: документы, таблицы, PDF, фотографии (jpeg)."
                            }
                        }
                        button type="submit" { "Отправить" }
                    }
                }
            }
            section aria-labelledby="history-title" {
                h2 #history-title { "Ход рассмотрения" }
                ol.history {
                    li { span.when { (local_moment(registered, region)) } " — Зарегистрировано" }
                    @for entry in &view.history {
                        @let at = timestamp(entry.at.as_ref()).unwrap_or(registered);
                        li data-action=(entry.action) {
                            span.when { (local_moment(at, region)) } " — " (history_words(&entry.action))
                            @if COMMENTS_SHOWN.contains(&entry.action.as_str()) && !entry.comment.is_empty() {
                                ": «" (entry.comment) "»"
                            }
                        }
                    }
                }
            }
        },
    );
    (StatusCode::OK, body).into_response()
}

/// A history step as the applicant reads it: what happened to their appeal, not the cabinet's
/// folders.
fn history_words(action: &str) -> &str {
    match action {
        "received" => "Поступило в организацию",
        "executor assigned" => "Назначен ответственный исполнитель",
        "handed over" | "returned to coordinator" => "Передано другому сотруднику",
        "answer prepared" | "returned for rework" => "Готовится ответ",
        "sent for agreement" | "agreed" => "Ответ согласуется",
        "sent for approval" => "Ответ на утверждении у руководителя",
        "approved" | "edited and approved" => "Ответ утверждён и направлен вам",
        "information requested" => "Организация запросила у вас сведения",
        "information received" => "Сведения получены",
        "rejected by applicant" => "Вы не согласились с ответом: повторное рассмотрение",
        "accepted by applicant" => "Вы приняли ответ",
        other => texts::history_action(other),
    }
}

fn actions(base: &str, csrf: &str, version: i64) -> Markup {
    html! {
        section aria-labelledby="accept-title" {
            h2 #accept-title { "Принять ответ" }
            form method="post" action={ (base) "/accept" } data-form="accept" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="version" value=(version);
                fieldset.rating {
                    legend { "Оцените ответ от 1 (плохо) до 5 (отлично) *" }
                    @for rating in 1..=5 {
                        span.choice {
                            input type="radio" name="rating" id={ "rating-" (rating) } value=(rating) required;
                            label for={ "rating-" (rating) } { (rating) }
                        }
                    }
                }
                button type="submit" { "Принять ответ" }
            }
        }
        section aria-labelledby="reject-title" {
            h2 #reject-title { "Не согласен с ответом" }
            form method="post" action={ (base) "/reject" } data-form="reject" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="version" value=(version);
                div.field {
                    label for="reject-comment" { "Что не так с ответом *" }
                    textarea #reject-comment name="comment" rows="4" required maxlength="10000" aria-describedby="reject-hint" {}
                    p.hint #reject-hint { "Организация рассмотрит обращение повторно с учётом вашего комментария." }
                }
                button type="submit" { "Отправить на повторное рассмотрение" }
            }
        }
    }
}

fn human_size(bytes: i64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} МБ", bytes as f64 / (1024.0 * 1024.0)).replace('.', ",")
    } else {
        format!("{} КБ", (bytes + 1023) / 1024)
    }
}

#[derive(Deserialize)]
pub struct CommandForm {
    #[serde(default)]
    version: i64,
    #[serde(default)]
    rating: i32,
    #[serde(default)]
    comment: String,
}

#[derive(Clone, Copy)]
enum Command {
    Accept,
    Reject,
    Information,
}

async fn command(
    state: &CitizenState,
    appeal_id: &str,
    headers: &HeaderMap,
    form: CommandForm,
    command: Command,
) -> Response {
    let Some(session) = applicant(state, headers).await else {
        return open_by_link();
    };
    run(state, &session, appeal_id, form, Vec::new(), command).await
}

/// The applicant's command on the appeal's ticket; back to the page with what came of it.
async fn run(
    state: &CitizenState,
    session: &Session,
    appeal_id: &str,
    form: CommandForm,
    attachment_ids: Vec<String>,
    command: Command,
) -> Response {
    let back = |done: &str| Redirect::to(&format!("/appeal/{appeal_id}?done={done}")).into_response();
    let comment = form.comment.trim().to_owned();
    match command {
        Command::Accept if !(1..=5).contains(&form.rating) => return back("invalid"),
        Command::Reject | Command::Information if comment.is_empty() => return back("invalid"),
        Command::Accept | Command::Reject | Command::Information => {}
    }
    let token = session.token.as_str();
    let mut ticketing = TicketingServiceClient::new(state.app.channel.clone());
    // The ticket of this appeal, as its applicant may read it: the form names no ticket.
    let key = Some(pb::get_ticket_request::Key::AppealId(appeal_id.to_owned()));
    let ticket = match ticketing.get_ticket(outgoing(pb::GetTicketRequest { key }, token)).await {
        Ok(ticket) => ticket.into_inner(),
        Err(status) => return failed(&status),
    };
    let comment_request = |comment: String, attachment_ids: Vec<String>| pb::CommentRequest {
        ticket_id: ticket.id.clone(),
        expected_version: form.version,
        comment,
        attachment_ids,
    };
    let (result, done) = match command {
        Command::Accept => {
            let request = pb::AcceptAnswerRequest {
                ticket_id: ticket.id.clone(),
                expected_version: form.version,
                rating: form.rating,
            };
            (ticketing.accept_answer(outgoing(request, token)).await, "accepted")
        }
        Command::Reject => {
            (ticketing.reject_answer(outgoing(comment_request(comment, Vec::new()), token)).await, "rejected")
        }
        Command::Information => {
            let request = comment_request(comment, attachment_ids);
            (ticketing.information_received(outgoing(request, token)).await, "information")
        }
    };
    match result {
        Ok(_) => back(done),
        Err(status) if status.code() == tonic::Code::FailedPrecondition => back("stale"),
        Err(status) if status.code() == tonic::Code::InvalidArgument => back("invalid"),
        Err(status) => failed(&status),
    }
}

pub async fn accept(
    State(state): State<CitizenState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CommandForm>,
) -> Response {
    command(&state, &id, &headers, form, Command::Accept).await
}

pub async fn reject(
    State(state): State<CitizenState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CommandForm>,
) -> Response {
    command(&state, &id, &headers, form, Command::Reject).await
}

/// The information asked for: a multipart form whose files go to intake as the applicant's
/// uploads as they are read, then InformationReceived names them.
pub async fn information(State(state): State<CitizenState>, Path(id): Path<String>, request: Request) -> Response {
    let Some(session) = applicant(&state, request.headers()).await else {
        return open_by_link();
    };
    let submitted = match attachments::read_form(&state.app, &session, request).await {
        Ok(submitted) => submitted,
        Err(response) => return response,
    };
    if submitted.file_error.is_some() {
        return Redirect::to(&format!("/appeal/{id}?done=file")).into_response();
    }
    let form = CommandForm {
        version: submitted.field("version").parse().unwrap_or_default(),
        rating: 0,
        comment: submitted.field("comment"),
    };
    run(&state, &session, &id, form, submitted.attachment_ids, Command::Information).await
}

/// A file of the answer (or of the appeal), streamed from intake as it arrives.
pub async fn download(
    State(state): State<CitizenState>,
    Path((_appeal_id, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(session) = applicant(&state, &headers).await else {
        return open_by_link();
    };
    let mut intake = IntakeServiceClient::new(state.app.channel.clone());
    let request = pb::DownloadAttachmentRequest { attachment_id: file };
    let mut stream = match intake.download_attachment(outgoing(request, &session.token)).await {
        Ok(stream) => stream.into_inner(),
        Err(status) => return failed(&status),
    };
    let info = match stream.next().await {
        Some(Ok(pb::AttachmentChunk { part: Some(pb::attachment_chunk::Part::Info(info)) })) => info,
        Some(Err(status)) => return failed(&status),
        _ => return pages::unavailable(),
    };
    let body = Body::from_stream(stream.filter_map(|part| {
        std::future::ready(match part {
            Ok(pb::AttachmentChunk { part: Some(pb::attachment_chunk::Part::Chunk(bytes)) }) => Some(Ok(bytes)),
            Ok(_) => None,
            Err(status) => Some(Err(std::io::Error::other(status.message().to_owned()))),
        })
    }));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    let content_type =
        HeaderValue::from_str(&info.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    if let Ok(length) = HeaderValue::from_str(&info.size.to_string()) {
        headers.insert(header::CONTENT_LENGTH, length);
    }
    if let Ok(disposition) = HeaderValue::from_str(&attachments::content_disposition(&info.file_name)) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    response
}
