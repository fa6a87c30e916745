//! Уведомления: the organization's e-mail notifications (notify GetSettings / UpdateSettings,
//! ListNotifications / UpsertNotification / DeleteNotification) — quiet hours and the daily
//! digest, and which notification goes to which mailing list and roles.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::HeaderMap;
use maud::{Markup, html};
use pos_platform::auth::Role;
use pos_proto::v1 as pb;
use pos_proto::v1::notify_service_client::NotifyServiceClient;
use tonic::transport::Channel;

use super::{FieldErrors, Fields, Refused, Section, csrf, done_text, reader, writer};
use crate::App;
use crate::cabinet::{Api, WebError};
use crate::session::Session;
use crate::texts;

const SECTION: Section = Section::Notifications;

/// Notify's recipient for "whoever the message is assigned to", besides the roles.
const ASSIGNEE: &str = "assignee";

fn notify(app: &App) -> NotifyServiceClient<Channel> {
    NotifyServiceClient::new(app.channel.clone())
}

/// What the page shows besides the forms being edited.
struct Loaded {
    settings: pb::OrganizationSettings,
    notifications: Vec<pb::Notification>,
}

async fn load(app: &App, session: &Session) -> Result<Loaded, WebError> {
    let api = Api::new(app, session);
    let organization_id = session.organization_id.clone();
    let (mut settings_client, mut list_client) = (notify(app), notify(app));
    let (settings, notifications) = tokio::join!(
        settings_client.get_settings(api.request(pb::GetSettingsRequest { organization_id: organization_id.clone() })),
        list_client.list_notifications(api.request(pb::ListNotificationsRequest { organization_id })),
    );
    let settings = settings.map_err(|status| WebError::from_status(&status, false))?.into_inner();
    let notifications =
        notifications.map_err(|status| WebError::from_status(&status, false))?.into_inner().notifications;
    Ok(Loaded { settings, notifications })
}

/// The forms as shown: the saved values, or what the person posted with its errors.
#[derive(Default)]
struct Forms {
    settings: Option<(pb::OrganizationSettings, FieldErrors)>,
    notification: Option<(pb::Notification, FieldErrors)>,
}

pub async fn page(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let session = reader(&app, &headers, SECTION).await?;
    let loaded = load(&app, &session).await?;
    let editing = query.get("edit").and_then(|id| loaded.notifications.iter().find(|n| &n.id == id)).cloned();
    let forms = Forms { settings: None, notification: editing.map(|n| (n, FieldErrors::default())) };
    let main = render(&session, &loaded, forms);
    super::page(&app, &session, SECTION, done_text(query.get("done")), main).await
}

pub async fn save_settings(
    State(app): State<App>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let session = writer(&app, &headers, SECTION).await?;
    let fields = Fields::new(fields);
    let settings = pb::OrganizationSettings {
        organization_id: session.organization_id.clone(),
        time_zone: fields.get("time_zone"),
        quiet_from: fields.get("quiet_from"),
        quiet_until: fields.get("quiet_until"),
        digest_enabled: fields.checked("digest_enabled"),
        digest_at: fields.get("digest_at"),
    };
    let api = Api::new(&app, &session);
    let errors = match notify(&app).update_settings(api.request(settings.clone())).await {
        Ok(_) => return Ok(Redirect::to("/cabinet/admin/notifications?done=saved").into_response()),
        Err(status) => match Refused::from_status(&status, word) {
            Refused::Fields(errors) => errors,
            Refused::Page(error) => return Err(error),
        },
    };
    again(&app, &session, Forms { settings: Some((settings, errors)), notification: None }).await
}

pub async fn save_rule(
    State(app): State<App>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let session = writer(&app, &headers, SECTION).await?;
    let fields = Fields::new(fields);
    let kind = fields.get("type").parse::<i32>().unwrap_or(pb::NotificationType::Unspecified as i32);
    let notification = pb::Notification {
        id: fields.get("id"),
        organization_id: session.organization_id.clone(),
        name: fields.get("name"),
        r#type: kind,
        addresses: addresses(&fields.raw("addresses")),
        roles: fields.all("roles"),
        template: fields.raw("template"),
        enabled: fields.checked("enabled"),
        description: fields.get("description"),
    };
    let api = Api::new(&app, &session);
    let errors = match notify(&app).upsert_notification(api.request(notification.clone())).await {
        Ok(_) => return Ok(Redirect::to("/cabinet/admin/notifications?done=saved").into_response()),
        Err(status) => match Refused::from_status(&status, word) {
            Refused::Fields(errors) => errors,
            Refused::Page(error) => return Err(error),
        },
    };
    again(&app, &session, Forms { settings: None, notification: Some((notification, errors)) }).await
}

pub async fn delete_rule(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let session = writer(&app, &headers, SECTION).await?;
    let api = Api::new(&app, &session);
    let request = pb::DeleteNotificationRequest { id, organization_id: session.organization_id.clone() };
    match notify(&app).delete_notification(api.request(request)).await {
        Ok(_) => Ok(Redirect::to("/cabinet/admin/notifications?done=deleted").into_response()),
        Err(status) => Err(WebError::from_status(&status, false)),
    }
}

/// The page again, with the posted form and its errors.
async fn again(app: &App, session: &Session, forms: Forms) -> Result<Response, WebError> {
    let loaded = load(app, session).await?;
    super::page(app, session, SECTION, None, render(session, &loaded, forms)).await
}

/// Mailing addresses typed one a line, or separated by commas or semicolons.
fn addresses(text: &str) -> Vec<String> {
    text.split(['\n', ',', ';']).map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect()
}

/// A field error of notify's settings and notifications in the person's words.
fn word(field: &str, _description: &str) -> String {
    let base = field.split('[').next().unwrap_or(field);
    match base {
        "time_zone" => "Укажите часовой пояс, например Asia/Kamchatka.",
        "quiet_from" | "quiet_until" => "Укажите начало и конец тихих часов (ЧЧ:ММ, разные) или оставьте оба пустыми.",
        "digest_at" => "Укажите время отправки сводки (ЧЧ:ММ).",
        "name" => "Укажите тему письма (подстановки — в фигурных скобках, например {number}).",
        "type" => "Выберите тип уведомления.",
        "template" => "Проверьте подстановки в тексте письма.",
        "addresses" => "Проверьте адреса рассылки: один адрес электронной почты в строке.",
        "roles" => "Выберите получателей из списка.",
        _ => "Проверьте заполнение формы.",
    }
    .to_owned()
}

fn recipient(role: &str) -> &str {
    if role == ASSIGNEE {
        return "Ответственный по сообщению";
    }
    role.parse::<Role>().map_or(role, |r| texts::role(r))
}

fn render(session: &Session, loaded: &Loaded, forms: Forms) -> Markup {
    let editable = SECTION.editable(session);
    let (settings, settings_errors) = match forms.settings {
        Some((settings, errors)) => (settings, errors),
        None => (loaded.settings.clone(), FieldErrors::default()),
    };
    let fresh =
        pb::Notification { r#type: pb::NotificationType::MessageArrived as i32, enabled: true, ..Default::default() };
    let (notification, notification_errors) = forms.notification.unwrap_or((fresh, FieldErrors::default()));
    html! {
        section.panel #notify-settings aria-labelledby="notify-settings-h" {
            h3 #notify-settings-h { "Тихие часы и сводка" }
            p.hint { "В тихие часы несрочные письма ждут их окончания. Сводка собирает несрочные уведомления за день в одно письмо." }
            form method="post" action="/cabinet/admin/notifications/settings" data-form="settings" {
                (csrf(session))
                (settings_errors.rest(&["time_zone", "quiet_from", "quiet_until", "digest_at"]))
                fieldset disabled[!editable] {
                    div.field {
                        label for="time-zone" { "Часовой пояс" }
                        input #time-zone type="text" name="time_zone" value=(settings.time_zone) required
                            aria-describedby=[settings_errors.described_by("time_zone", "time-zone")];
                        (settings_errors.beside("time_zone", "time-zone"))
                    }
                    div.checks {
                        div.field {
                            label for="quiet-from" { "Тихие часы с" }
                            input #quiet-from type="time" name="quiet_from" value=(settings.quiet_from)
                                aria-describedby=[settings_errors.described_by("quiet_from", "quiet-from")];
                            (settings_errors.beside("quiet_from", "quiet-from"))
                        }
                        div.field {
                            label for="quiet-until" { "до" }
                            input #quiet-until type="time" name="quiet_until" value=(settings.quiet_until)
                                aria-describedby=[settings_errors.described_by("quiet_until", "quiet-until")];
                            (settings_errors.beside("quiet_until", "quiet-until"))
                        }
                    }
                    div.field {
                        label.choice {
                            input type="checkbox" name="digest_enabled" checked[settings.digest_enabled];
                            " Присылать сводку раз в день"
                        }
                    }
                    div.field {
                        label for="digest-at" { "Время сводки" }
                        input #digest-at type="time" name="digest_at" value=(settings.digest_at)
                            aria-describedby=[settings_errors.described_by("digest_at", "digest-at")];
                        (settings_errors.beside("digest_at", "digest-at"))
                    }
                    @if editable { div.actions { button.primary type="submit" { "Сохранить" } } }
                }
            }
        }
        h3 { "Рассылки" }
        @if loaded.notifications.is_empty() {
            p.empty { "Уведомлений не настроено." }
        } @else {
            div.table-wrap tabindex="0" role="region" aria-label="Рассылки" {
                table.tickets #notifications {
                    thead {
                        tr {
                            th scope="col" { "Тема письма" }
                            th scope="col" { "Тип" }
                            th scope="col" { "Адреса" }
                            th scope="col" { "Получатели по ролям" }
                            th scope="col" { "Включено" }
                            @if editable { th scope="col" { "Действия" } }
                        }
                    }
                    tbody {
                        @for n in &loaded.notifications {
                            tr data-notification=(n.id) {
                                th scope="row" { (n.name) }
                                td { (texts::notification_type(n.r#type)) }
                                td { (n.addresses.join(", ")) }
                                td { (n.roles.iter().map(|r| recipient(r)).collect::<Vec<_>>().join(", ")) }
                                td { @if n.enabled { "Да" } @else { "Нет" } }
                                @if editable {
                                    td.nowrap {
                                        a href={ "/cabinet/admin/notifications?edit=" (n.id) "#notification-form" }
                                            aria-label={ "Изменить: " (n.name) } { "Изменить" }
                                        " "
                                        form.inline method="post" action={ "/cabinet/admin/notifications/rules/" (n.id) "/delete" } {
                                            (csrf(session))
                                            button type="submit" aria-label={ "Удалить: " (n.name) } { "Удалить" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if editable {
            (notification_form(session, &notification, &notification_errors))
        }
    }
}

fn notification_form(session: &Session, n: &pb::Notification, errors: &FieldErrors) -> Markup {
    let known = ["name", "type", "addresses", "roles", "template"];
    let recipients = Role::STAFF.iter().map(|r| r.as_str()).chain([ASSIGNEE]);
    html! {
        section.panel #notification-form aria-labelledby="notification-form-h" {
            h3 #notification-form-h { @if n.id.is_empty() { "Новая рассылка" } @else { "Изменить рассылку" } }
            form method="post" action="/cabinet/admin/notifications/rules" data-form="notification" {
                (csrf(session))
                input type="hidden" name="id" value=(n.id);
                (errors.rest(&known))
                div.field {
                    label for="n-type" { "Тип уведомления" }
                    select #n-type name="type" {
                        @for (kind, name) in texts::NOTIFICATION_TYPES {
                            option value=(kind as i32) selected[kind as i32 == n.r#type] { (name) }
                        }
                    }
                    (errors.beside("type", "n-type"))
                }
                div.field {
                    label for="n-name" { "Тема письма" }
                    input #n-name type="text" name="name" value=(n.name) required
                        aria-describedby=[errors.described_by("name", "n-name")];
                    (errors.beside("name", "n-name"))
                }
                div.field {
                    label for="n-addresses" { "Адреса рассылки (по одному в строке)" }
                    textarea #n-addresses name="addresses" rows="3"
                        aria-describedby=[errors.described_by("addresses", "n-addresses")] { (n.addresses.join("\n")) }
                    (errors.beside("addresses", "n-addresses"))
                }
                fieldset {
                    legend { "Получатели по ролям" }
                    div.checks {
                        @for role in recipients {
                            label.choice {
                                input type="checkbox" name="roles" value=(role) checked[n.roles.iter().any(|r| r == role)];
                                " " (recipient(role))
                            }
                        }
                    }
                    (errors.beside("roles", "n-roles"))
                }
                div.field {
                    label for="n-template" { "Текст письма" }
                    textarea #n-template name="template" rows="4" aria-describedby="n-template-hint" { (n.template) }
                    p.hint #n-template-hint {
                        "Подстановки: {number}, {category}, {organization}, {created_at}, {deadline}, {status}, "
                        "{execution_due}, {applicant_name}, {registration_number}, {registration_date}."
                    }
                    (errors.beside("template", "n-template"))
                }
                div.field {
                    label.choice { input type="checkbox" name="enabled" checked[n.enabled]; " Включено" }
                }
                div.actions {
                    button.primary type="submit" { "Сохранить рассылку" }
                    @if !n.id.is_empty() { a href="/cabinet/admin/notifications" { "Отмена" } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_split_by_lines_commas_and_semicolons() {
        assert_eq!(addresses("a@x.ru\n b@x.ru, c@x.ru;\n\n"), ["a@x.ru", "b@x.ru", "c@x.ru"]);
        assert_eq!(word("addresses[1]", "not an e-mail address"), word("addresses", ""));
    }
}
