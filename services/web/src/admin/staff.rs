//! Сотрудники и роли: the organization's staff directory (ticketing ListStaff / UpsertStaff) —
//! who works in the cabinet, with which roles, and whether they still do. Nobody is deleted: a
//! person who leaves is deactivated, so the history still names them.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::HeaderMap;
use maud::{Markup, html};
use pos_platform::auth::Role;
use pos_proto::v1 as pb;

use super::{FieldErrors, Fields, Refused, Section, csrf, done_text, reader, writer};
use crate::App;
use crate::cabinet::{Api, WebError};
use crate::session::Session;
use crate::texts;

const SECTION: Section = Section::Staff;

async fn list(app: &App, session: &Session) -> Result<Vec<pb::StaffMember>, WebError> {
    let api = Api::new(app, session);
    let request = pb::ListStaffRequest { organization_id: session.organization_id.clone(), role: String::new() };
    let mut staff = api
        .ticketing()
        .list_staff(api.request(request))
        .await
        .map_err(|status| WebError::from_status(&status, false))?
        .into_inner()
        .staff;
    // The active first, then by name, as a person looks for a colleague.
    staff.sort_by(|a, b| (!a.active, &a.full_name).cmp(&(!b.active, &b.full_name)));
    Ok(staff)
}

pub async fn page(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let session = reader(&app, &headers, SECTION).await?;
    let staff = list(&app, &session).await?;
    let editing = query.get("edit").and_then(|subject| staff.iter().find(|m| &m.subject == subject)).cloned();
    let form = editing.unwrap_or_else(|| pb::StaffMember { active: true, ..Default::default() });
    let main = render(&session, &staff, &form, query.contains_key("edit"), &FieldErrors::default());
    super::page(&app, &session, SECTION, done_text(query.get("done")), main).await
}

pub async fn save(
    State(app): State<App>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    // The role first: a person who may not change the directory learns nothing from the form.
    let session = writer(&app, &headers, SECTION).await?;
    let fields = Fields::new(fields);
    let member = pb::StaffMember {
        subject: fields.get("subject"),
        organization_id: session.organization_id.clone(),
        full_name: fields.get("full_name"),
        email: fields.get("email"),
        roles: fields.all("roles"),
        active: fields.checked("active"),
    };
    let api = Api::new(&app, &session);
    let errors = match api.ticketing().upsert_staff(api.request(member.clone())).await {
        Ok(_) => return Ok(Redirect::to("/cabinet/admin/staff?done=saved").into_response()),
        Err(status) => match Refused::from_status(&status, word) {
            Refused::Fields(errors) => errors,
            Refused::Page(error) => return Err(error),
        },
    };
    let staff = list(&app, &session).await?;
    let editing = fields.checked("editing");
    let main = render(&session, &staff, &member, editing, &errors);
    super::page(&app, &session, SECTION, None, main).await
}

/// A field error of UpsertStaff in the person's words.
fn word(field: &str, _description: &str) -> String {
    match field {
        "subject" => "Укажите учётную запись сотрудника (идентификатор входа).",
        "full_name" => "Укажите ФИО сотрудника.",
        "roles" => "Выберите роли из списка.",
        "email" => "Укажите адрес электронной почты.",
        _ => "Проверьте заполнение формы.",
    }
    .to_owned()
}

fn roles_text(member: &pb::StaffMember) -> String {
    // In the order the cabinet always lists roles, whatever order the directory keeps.
    let names: Vec<&str> = Role::STAFF
        .into_iter()
        .filter(|role| member.roles.iter().any(|r| r == role.as_str()))
        .map(texts::role)
        .collect();
    if names.is_empty() { "—".to_owned() } else { names.join(", ") }
}

fn render(
    session: &Session,
    staff: &[pb::StaffMember],
    form: &pb::StaffMember,
    editing: bool,
    errors: &FieldErrors,
) -> Markup {
    let editable = SECTION.editable(session);
    html! {
        p.hint { "Роли определяют, что сотрудник видит и делает в кабинете. Один сотрудник может иметь несколько ролей. \
                   Уволенного сотрудника отключите: история работ сохранит его имя." }
        @if staff.is_empty() {
            p.empty { "В справочнике пока нет сотрудников." }
        } @else {
            div.table-wrap tabindex="0" role="region" aria-label="Сотрудники" {
                table.tickets #staff {
                    caption.hint { "Сотрудники организации" }
                    thead {
                        tr {
                            th scope="col" { "ФИО" }
                            th scope="col" { "Учётная запись" }
                            th scope="col" { "Эл. почта" }
                            th scope="col" { "Роли" }
                            th scope="col" { "Состояние" }
                            @if editable { th scope="col" { "Действия" } }
                        }
                    }
                    tbody {
                        @for member in staff {
                            tr data-subject=(member.subject) {
                                th scope="row" { (member.full_name) }
                                td { (member.subject) }
                                td { (member.email) }
                                td.roles { (roles_text(member)) }
                                td.state { @if member.active { "Работает" } @else { "Отключён" } }
                                @if editable {
                                    td.nowrap {
                                        a href={ "/cabinet/admin/staff?edit=" (member.subject) "#staff-form" }
                                            aria-label={ "Изменить: " (member.full_name) } { "Изменить" }
                                        " "
                                        (toggle(session, member))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if editable {
            (edit_form(session, form, editing, errors))
        }
    }
}

/// Deactivates an active person (or brings one back), keeping their roles.
fn toggle(session: &Session, member: &pb::StaffMember) -> Markup {
    let (label, active) = if member.active { ("Отключить", false) } else { ("Включить", true) };
    html! {
        form.inline method="post" action="/cabinet/admin/staff" data-toggle=(member.subject) {
            (csrf(session))
            input type="hidden" name="editing" value="1";
            input type="hidden" name="subject" value=(member.subject);
            input type="hidden" name="full_name" value=(member.full_name);
            input type="hidden" name="email" value=(member.email);
            @for role in &member.roles { input type="hidden" name="roles" value=(role); }
            @if active { input type="hidden" name="active" value="on"; }
            button type="submit" aria-label={ (label) ": " (member.full_name) } { (label) }
        }
    }
}

fn edit_form(session: &Session, form: &pb::StaffMember, editing: bool, errors: &FieldErrors) -> Markup {
    html! {
        section.panel #staff-form aria-labelledby="staff-form-h" {
            h3 #staff-form-h { @if editing { "Изменить сотрудника: " (form.full_name) } @else { "Добавить сотрудника" } }
            form method="post" action="/cabinet/admin/staff" data-form="staff" {
                (csrf(session))
                @if editing { input type="hidden" name="editing" value="1"; }
                (errors.rest(&["subject", "full_name", "email", "roles"]))
                div.field {
                    label for="staff-subject" { "Учётная запись (идентификатор входа)" }
                    @if editing {
                        input #staff-subject type="text" name="subject" value=(form.subject) readonly;
                    } @else {
                        input #staff-subject type="text" name="subject" value=(form.subject) required
                            aria-describedby=[errors.described_by("subject", "staff-subject")];
                    }
                    (errors.beside("subject", "staff-subject"))
                }
                div.field {
                    label for="staff-name" { "ФИО" }
                    input #staff-name type="text" name="full_name" value=(form.full_name) required
                        aria-describedby=[errors.described_by("full_name", "staff-name")];
                    (errors.beside("full_name", "staff-name"))
                }
                div.field {
                    label for="staff-email" { "Эл. почта" }
                    input #staff-email type="text" inputmode="email" autocomplete="off" name="email" value=(form.email)
                        aria-describedby=[errors.described_by("email", "staff-email")];
                    (errors.beside("email", "staff-email"))
                }
                fieldset aria-describedby=[errors.described_by("roles", "staff-roles")] {
                    legend { "Роли" }
                    div.checks {
                        @for role in Role::STAFF {
                            label.choice {
                                input type="checkbox" name="roles" value=(role.as_str())
                                    checked[form.roles.iter().any(|r| r == role.as_str())];
                                " " (texts::role(role))
                            }
                        }
                    }
                    (errors.beside("roles", "staff-roles"))
                }
                div.field {
                    label.choice {
                        input type="checkbox" name="active" checked[form.active];
                        " Работает (может входить в кабинет)"
                    }
                }
                div.actions {
                    button.primary type="submit" { "Сохранить" }
                    @if editing { a href="/cabinet/admin/staff" { "Отмена" } }
                }
            }
        }
    }
}
