//! Шаблоны ответов: the organization's answer templates (ticketing ListAnswerTemplates /
//! SaveAnswerTemplate), and a preview that fills the placeholders as the person types
//! (PreviewAnswerTemplate: sample values, or a real message's when its number is given). The
//! cabinet fills nothing itself: ticketing renders the preview exactly as it will the answer.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::HeaderMap;
use maud::{Markup, html};
use pos_proto::v1 as pb;

use super::{FieldErrors, Fields, Refused, Section, csrf, done_text, reader, writer};
use crate::App;
use crate::cabinet::{Api, WebError, is_htmx};
use crate::session::Session;
use crate::texts;

const SECTION: Section = Section::Templates;

/// What the editor holds: a template being written, and the message to preview it on.
#[derive(Clone, Debug, Default)]
struct Draft {
    name: String,
    body: String,
    number: String,
}

async fn list(app: &App, session: &Session) -> Result<Vec<pb::AnswerTemplate>, WebError> {
    let api = Api::new(app, session);
    let request = pb::ListAnswerTemplatesRequest { organization_id: session.organization_id.clone() };
    let mut templates = api
        .ticketing()
        .list_answer_templates(api.request(request))
        .await
        .map_err(|status| WebError::from_status(&status, false))?
        .into_inner()
        .templates;
    templates.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(templates)
}

pub async fn page(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let session = reader(&app, &headers, SECTION).await?;
    let templates = list(&app, &session).await?;
    let draft = query
        .get("edit")
        .and_then(|id| templates.iter().find(|t| &t.id == id))
        .map(|t| Draft { name: t.name.clone(), body: t.body.clone(), number: String::new() })
        .unwrap_or_default();
    let preview = if draft.body.is_empty() {
        html! {}
    } else {
        preview_of(&app, &session, &draft).await
    };
    let main = render(&session, &templates, &draft, &FieldErrors::default(), preview);
    super::page(&app, &session, SECTION, done_text(query.get("done")), main).await
}

pub async fn save(
    State(app): State<App>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let session = writer(&app, &headers, SECTION).await?;
    let fields = Fields::new(fields);
    let draft = Draft { name: fields.get("name"), body: fields.raw("body"), number: fields.get("number") };
    let template = pb::AnswerTemplate {
        id: String::new(),
        organization_id: session.organization_id.clone(),
        name: draft.name.clone(),
        body: draft.body.clone(),
    };
    let api = Api::new(&app, &session);
    let errors = match api.ticketing().save_answer_template(api.request(template)).await {
        Ok(_) => return Ok(Redirect::to("/cabinet/admin/templates?done=saved").into_response()),
        Err(status) => match Refused::from_status(&status, word) {
            Refused::Fields(errors) => errors,
            Refused::Page(error) => return Err(error),
        },
    };
    let templates = list(&app, &session).await?;
    let main = render(&session, &templates, &draft, &errors, html! {});
    super::page(&app, &session, SECTION, None, main).await
}

/// The preview of the posted draft: the part htmx swaps in as the person types, or the whole
/// page when the browser runs no scripts.
pub async fn preview(
    State(app): State<App>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let session = writer(&app, &headers, SECTION).await?;
    let fields = Fields::new(fields);
    let draft = Draft { name: fields.get("name"), body: fields.raw("body"), number: fields.get("number") };
    let preview = preview_of(&app, &session, &draft).await;
    if is_htmx(&headers) {
        return Ok(preview.into_response());
    }
    let templates = list(&app, &session).await?;
    let main = render(&session, &templates, &draft, &FieldErrors::default(), preview);
    super::page(&app, &session, SECTION, None, main).await
}

/// The filled text, or why it cannot be filled, as the preview box shows it.
async fn preview_of(app: &App, session: &Session, draft: &Draft) -> Markup {
    if draft.body.trim().is_empty() {
        return preview_box(
            html! { p.hint { "Введите текст шаблона — здесь появится ответ с заполненными подстановками." } },
        );
    }
    let api = Api::new(app, session);
    let ticket_id = if draft.number.is_empty() {
        String::new()
    } else {
        match ticket_by_number(&api, session, &draft.number).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                return preview_box(html! {
                    p.flash.error.field-error data-field="number" {
                        "Сообщение № " (draft.number) " не найдено в кабинете организации."
                    }
                });
            }
            Err(status) => return preview_failed(&status),
        }
    };
    let request = pb::PreviewAnswerTemplateRequest {
        organization_id: session.organization_id.clone(),
        body: draft.body.clone(),
        ticket_id: ticket_id.clone(),
    };
    match api.ticketing().preview_answer_template(api.request(request)).await {
        Ok(response) => {
            let response = response.into_inner();
            let on = if ticket_id.is_empty() {
                "Пример: подстановки заполнены образцами значений.".to_owned()
            } else {
                format!("Так ответ будет выглядеть для сообщения № {}.", draft.number)
            };
            preview_box(html! {
                p.hint { (on) }
                div.answer-text data-preview="text" { (response.text) }
                @if !response.placeholders.is_empty() {
                    p.hint {
                        "Подстановки: "
                        (response.placeholders.iter().map(|p| placeholder_meaning(p)).collect::<Vec<_>>().join(", "))
                        "."
                    }
                }
            })
        }
        Err(status) => preview_failed(&status),
    }
}

/// A message of the organization by its number, as the list's search finds it.
async fn ticket_by_number(api: &Api<'_>, session: &Session, number: &str) -> Result<Option<String>, tonic::Status> {
    if !number.chars().all(|c| c.is_ascii_digit()) {
        return Ok(None);
    }
    let request = pb::ListTicketsRequest {
        organization_id: session.organization_id.clone(),
        text: number.to_owned(),
        page_size: 5,
        without_folder_counts: true,
        ..Default::default()
    };
    let tickets = api.list(request).await?.tickets;
    Ok(tickets.into_iter().find(|t| t.number.to_string() == number).map(|t| t.id))
}

fn preview_failed(status: &tonic::Status) -> Markup {
    match FieldErrors::from_status(status, word) {
        Some(errors) => preview_box(html! {
            (errors.beside("body", "template-body"))
            (errors.rest(&["body"]))
        }),
        None => {
            tracing::warn!(code = ?status.code(), "template preview unavailable");
            let text = match status.code() {
                tonic::Code::PermissionDenied => "Предпросмотр вам недоступен.",
                _ => "Предпросмотр сейчас недоступен, повторите через минуту.",
            };
            preview_box(html! { p.flash.error { (text) } })
        }
    }
}

fn preview_box(content: Markup) -> Markup {
    html! {
        div #template-preview aria-live="polite" { (content) }
    }
}

fn placeholder_meaning(name: &str) -> String {
    texts::ANSWER_PLACEHOLDERS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or_else(|| name.to_owned(), |(n, meaning)| format!("{{{{{n}}}}} — {meaning}"))
}

/// A field error of SaveAnswerTemplate or PreviewAnswerTemplate in the person's words; an
/// unknown placeholder is named as the author wrote it.
fn word(field: &str, description: &str) -> String {
    match field {
        "name" => "Укажите название шаблона.".to_owned(),
        "body" => {
            if let Some(rest) = description.strip_prefix("unknown placeholder ") {
                let name = rest.split(';').next().unwrap_or(rest).trim();
                let known: Vec<String> =
                    texts::ANSWER_PLACEHOLDERS.iter().map(|(n, _)| format!("{{{{{n}}}}}")).collect();
                format!("Неизвестная подстановка {name}. Допустимые: {}.", known.join(", "))
            } else if description.contains("not closed") {
                "Подстановка открыта «{{», но не закрыта «}}».".to_owned()
            } else if description.contains("empty") {
                "Введите текст шаблона.".to_owned()
            } else {
                "Текст шаблона слишком длинный.".to_owned()
            }
        }
        "ticket_id" => "Это сообщение другой организации.".to_owned(),
        _ => "Проверьте заполнение формы.".to_owned(),
    }
}

fn render(
    session: &Session,
    templates: &[pb::AnswerTemplate],
    draft: &Draft,
    errors: &FieldErrors,
    preview: Markup,
) -> Markup {
    let editable = SECTION.editable(session);
    html! {
        @if templates.is_empty() {
            p.empty { "Шаблонов пока нет." }
        } @else {
            ul.templates #templates {
                @for template in templates {
                    li data-template=(template.name) {
                        strong { (template.name) }
                        " "
                        @if editable {
                            a href={ "/cabinet/admin/templates?edit=" (template.id) "#template-form" }
                                aria-label={ "Изменить шаблон «" (template.name) "»" } { "Изменить" }
                        }
                        div.answer-text { (template.body) }
                    }
                }
            }
        }
        @if editable {
            section.panel #template-form aria-labelledby="template-form-h" {
                h3 #template-form-h { "Шаблон" }
                p.hint { "Шаблон с тем же названием заменяется. Подстановки пишутся в двойных фигурных скобках." }
                form method="post" action="/cabinet/admin/templates" data-form="template" {
                    (csrf(session))
                    (errors.rest(&["name", "body"]))
                    div.field {
                        label for="template-name" { "Название" }
                        input #template-name type="text" name="name" value=(draft.name) required
                            aria-describedby=[errors.described_by("name", "template-name")];
                        (errors.beside("name", "template-name"))
                    }
                    div.field {
                        label for="template-body" { "Текст" }
                        textarea #template-body name="body" rows="8" required
                            aria-describedby="template-hint template-preview"
                            hx-post="/cabinet/admin/templates/preview"
                            hx-trigger="input changed delay:400ms"
                            hx-target="#template-preview" hx-swap="outerHTML" { (draft.body) }
                        (errors.beside("body", "template-body"))
                    }
                    p.hint #template-hint {
                        "Подстановки: "
                        @for (i, (name, meaning)) in texts::ANSWER_PLACEHOLDERS.iter().enumerate() {
                            @if i > 0 { "; " }
                            code { "{{" (name) "}}" } " — " (meaning)
                        }
                        "."
                    }
                    div.field {
                        label for="template-number" { "Проверить на сообщении № (необязательно)" }
                        input #template-number type="text" inputmode="numeric" name="number" value=(draft.number)
                            hx-post="/cabinet/admin/templates/preview"
                            hx-trigger="input changed delay:600ms"
                            hx-target="#template-preview" hx-swap="outerHTML";
                    }
                    h4 { "Предпросмотр" }
                    (if_empty(preview))
                    div.actions {
                        button.primary type="submit" { "Сохранить шаблон" }
                        button type="submit" formaction="/cabinet/admin/templates/preview" { "Показать предпросмотр" }
                    }
                }
            }
        }
    }
}

/// The preview box, empty until there is something to fill.
fn if_empty(preview: Markup) -> Markup {
    if preview.0.is_empty() { preview_box(html! {}) } else { preview }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_placeholder_is_named_in_russian() {
        let text = word("body", "unknown placeholder {{applicant}}; known: applicant_name, user_name");
        assert!(text.starts_with("Неизвестная подстановка {{applicant}}. Допустимые: {{applicant_name}}"), "{text}");
        assert_eq!(word("name", "required"), "Укажите название шаблона.");
    }
}
