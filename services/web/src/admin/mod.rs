//! Настройки организации: the organization's own settings in the cabinet — staff and roles,
//! answer templates (with a live preview), notifications, auto-rules, and the snippet that puts
//! the appeal form on the organization's site.
//!
//! The services decide who may read and change each of these; the table below mirrors their
//! role checks only to show each person the sections (and the forms) their roles allow and to
//! refuse early. Whatever a service refuses (PERMISSION_DENIED) still shows the refusal page.
//! Forms post, the service's field errors come back beside the fields, and a saved form
//! redirects to its page (post/redirect/get) with a word that it was saved.

mod notifications;
mod rules;
mod staff;
mod templates;
mod widget;

use axum::Router;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::HeaderMap;
use maud::{Markup, html};
use pos_platform::auth::Role;
use tonic_types::StatusExt;

use crate::App;
use crate::cabinet::{Api, WebError, folder_counts, pages, signed_in};
use crate::session::Session;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/cabinet/admin", get(index))
        .route("/cabinet/admin/staff", get(staff::page).post(staff::save))
        .route("/cabinet/admin/templates", get(templates::page).post(templates::save))
        .route("/cabinet/admin/templates/preview", post(templates::preview))
        .route("/cabinet/admin/notifications", get(notifications::page))
        .route("/cabinet/admin/notifications/settings", post(notifications::save_settings))
        .route("/cabinet/admin/notifications/rules", post(notifications::save_rule))
        .route("/cabinet/admin/notifications/rules/{id}/delete", post(notifications::delete_rule))
        .route("/cabinet/admin/rules", get(rules::page).post(rules::save))
        .route("/cabinet/admin/rules/{id}/delete", post(rules::delete))
        .route("/cabinet/admin/widget", get(widget::page))
}

/// A section of the settings, with who sees it and who changes it there, as the services allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Staff,
    Templates,
    Notifications,
    AutoRules,
    Widget,
}

impl Section {
    pub const ALL: [Section; 5] =
        [Section::Staff, Section::Templates, Section::Notifications, Section::AutoRules, Section::Widget];

    pub fn title(self) -> &'static str {
        match self {
            Section::Staff => "Сотрудники и роли",
            Section::Templates => "Шаблоны ответов",
            Section::Notifications => "Уведомления",
            Section::AutoRules => "Автоправила",
            Section::Widget => "Форма обращений на сайт",
        }
    }

    pub fn url(self) -> &'static str {
        match self {
            Section::Staff => "/cabinet/admin/staff",
            Section::Templates => "/cabinet/admin/templates",
            Section::Notifications => "/cabinet/admin/notifications",
            Section::AutoRules => "/cabinet/admin/rules",
            Section::Widget => "/cabinet/admin/widget",
        }
    }

    /// Who sees the section: ticketing lets all staff read the directory, but the settings show
    /// it to those who keep it and to the head; notify lets the admin and the curator read the
    /// settings; routing lets staff read their auto-rules.
    fn readers(self) -> &'static [Role] {
        match self {
            Section::Staff => &[Role::OrgAdmin, Role::Curator, Role::Head],
            Section::Templates => &[Role::OrgAdmin, Role::Head, Role::Coordinator],
            Section::Notifications => &[Role::OrgAdmin, Role::Curator],
            Section::AutoRules => &[Role::OrgAdmin, Role::Head, Role::Curator],
            Section::Widget => &[Role::OrgAdmin, Role::Head, Role::Curator],
        }
    }

    /// Who changes it: ticketing's UpsertStaff (admin, curator) and SaveAnswerTemplate (admin,
    /// head, coordinator), notify's updates and routing's auto-rules (admin).
    fn writers(self) -> &'static [Role] {
        match self {
            Section::Staff => &[Role::OrgAdmin, Role::Curator],
            Section::Templates => &[Role::OrgAdmin, Role::Head, Role::Coordinator],
            Section::Notifications | Section::AutoRules => &[Role::OrgAdmin],
            Section::Widget => &[],
        }
    }

    pub fn visible(self, session: &Session) -> bool {
        session.has_any(self.readers())
    }

    pub fn editable(self, session: &Session) -> bool {
        session.has_any(self.writers())
    }
}

/// Whether the person sees the settings at all (and the «Настройки» link).
pub fn allowed(session: &Session) -> bool {
    Section::ALL.iter().any(|s| s.visible(session))
}

/// The signed-in person, if they may see `section`.
async fn reader(app: &App, headers: &HeaderMap, section: Section) -> Result<Session, WebError> {
    let session = signed_in(app, headers).await?;
    if !section.visible(&session) {
        tracing::warn!(target: "security", subject = %session.subject, section = ?section, "settings section refused");
        return Err(WebError::Forbidden("Этот раздел настроек вам недоступен."));
    }
    Ok(session)
}

/// The signed-in person, if they may change `section`: checked before the form is read.
async fn writer(app: &App, headers: &HeaderMap, section: Section) -> Result<Session, WebError> {
    let session = signed_in(app, headers).await?;
    if !section.editable(&session) {
        tracing::warn!(target: "security", subject = %session.subject, section = ?section, "settings change refused");
        return Err(WebError::Forbidden("Изменять этот раздел настроек может администратор ЛКО."));
    }
    Ok(session)
}

/// `/cabinet/admin`: the first section the person may see.
async fn index(axum::extract::State(app): axum::extract::State<App>, headers: HeaderMap) -> Result<Response, WebError> {
    let session = signed_in(&app, &headers).await?;
    match Section::ALL.iter().find(|s| s.visible(&session)) {
        Some(section) => Ok(Redirect::to(section.url()).into_response()),
        None => Err(WebError::Forbidden("Настройки организации вам недоступны.")),
    }
}

/// A form's fields as posted, repeated names (checkboxes) kept.
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn new(fields: Vec<(String, String)>) -> Fields {
        Fields(fields)
    }

    /// The first value of `name`, trimmed; empty when absent.
    pub fn get(&self, name: &str) -> String {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned()).unwrap_or_default()
    }

    /// The value of `name` as typed (a template's body keeps its spaces and lines).
    pub fn raw(&self, name: &str) -> String {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.replace("\r\n", "\n")).unwrap_or_default()
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned()).filter(|v| !v.is_empty()).collect()
    }

    pub fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// A service's field errors, each in the person's words, to show beside its field.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<(String, String)>);

impl FieldErrors {
    /// The errors of an INVALID_ARGUMENT `status`, worded by `word` (field, service's
    /// description → text); `None` for any other status.
    pub fn from_status(status: &tonic::Status, word: impl Fn(&str, &str) -> String) -> Option<FieldErrors> {
        if status.code() != tonic::Code::InvalidArgument {
            return None;
        }
        let violations = status.get_details_bad_request().map(|b| b.field_violations).unwrap_or_default();
        let mut errors: Vec<(String, String)> =
            violations.iter().map(|v| (v.field.clone(), word(&v.field, &v.description))).collect();
        if errors.is_empty() {
            errors.push((String::new(), "Проверьте заполнение формы.".to_owned()));
        }
        Some(FieldErrors(errors))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors of `field` and of fields under it (`addresses[2]` is of `addresses`).
    pub fn of(&self, field: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(f, _)| f == field || f.strip_prefix(field).is_some_and(|rest| rest.starts_with('[')))
            .map(|(_, text)| text.as_str())
            .collect()
    }

    /// The errors beside `field`, tied to its input by `id` (`aria-describedby`).
    pub fn beside(&self, field: &str, id: &str) -> Markup {
        let errors = self.of(field);
        html! {
            @if !errors.is_empty() {
                p.flash.error.field-error id=(format!("{id}-error")) data-field=(field) {
                    @for (i, text) in errors.iter().enumerate() {
                        @if i > 0 { br; }
                        (text)
                    }
                }
            }
        }
    }

    /// `aria-describedby` for an input whose field has errors.
    pub fn described_by(&self, field: &str, id: &str) -> Option<String> {
        (!self.of(field).is_empty()).then(|| format!("{id}-error"))
    }

    /// The errors of fields no input shows (`known` are those the form has), as one alert.
    pub fn rest(&self, known: &[&str]) -> Markup {
        let rest: Vec<&str> = self
            .0
            .iter()
            .filter(|(f, _)| !known.iter().any(|k| f == k || f.strip_prefix(k).is_some_and(|r| r.starts_with('['))))
            .map(|(_, text)| text.as_str())
            .collect();
        html! {
            @if !rest.is_empty() {
                p.flash.error role="alert" { @for text in rest { (text) " " } }
            }
        }
    }
}

/// What a failed save shows: the form again with its field errors, or the refusal/error page.
pub enum Refused {
    Fields(FieldErrors),
    Page(WebError),
}

impl Refused {
    pub fn from_status(status: &tonic::Status, word: impl Fn(&str, &str) -> String) -> Refused {
        match FieldErrors::from_status(status, word) {
            Some(errors) => Refused::Fields(errors),
            None => Refused::Page(WebError::from_status(status, false)),
        }
    }
}

/// The settings page around `main`: the folders, the sections the person sees, and a word
/// about what was just saved.
async fn page(
    app: &App,
    session: &Session,
    current: Section,
    done: Option<&str>,
    main: Markup,
) -> Result<Response, WebError> {
    let counts = folder_counts(&Api::new(app, session), session).await;
    let title = pages::title(current.title(), &counts);
    let body = html! {
        h1 { "Настройки организации" }
        nav.filters.admin-sections aria-label="Разделы настроек" {
            @for section in Section::ALL.iter().filter(|s| s.visible(session)) {
                a href=(section.url()) aria-current=[(*section == current).then_some("page")] { (section.title()) }
            }
        }
        @if let Some(done) = done {
            p.flash.done role="status" { (done) }
        }
        h2 { (current.title()) }
        (main)
    };
    Ok(pages::layout(&title, Some(session), Some(pages::folders(&counts, None, false)), body).into_response())
}

/// The hidden CSRF field of every form.
fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// The word about a saved form, from the `done` the redirect carries.
fn done_text(done: Option<&String>) -> Option<&'static str> {
    match done?.as_str() {
        "saved" => Some("Сохранено."),
        "deleted" => Some("Удалено."),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(roles: &[Role]) -> Session {
        serde_json::from_value(serde_json::json!({
            "token": "", "subject": "s", "display_name": "S", "organization_id": "41-kcioko",
            "organization_name": "O", "region_code": "41", "roles": roles, "csrf": "", "expires_at": 0,
        }))
        .unwrap()
    }

    #[test]
    fn each_role_sees_the_sections_its_services_allow() {
        let visible = |roles: &[Role]| -> Vec<Section> {
            Section::ALL.into_iter().filter(|s| s.visible(&session(roles))).collect()
        };
        assert_eq!(visible(&[Role::OrgAdmin]), Section::ALL);
        assert_eq!(visible(&[Role::Head]), [Section::Staff, Section::Templates, Section::AutoRules, Section::Widget]);
        assert_eq!(visible(&[Role::Coordinator]), [Section::Templates]);
        assert!(visible(&[Role::Executor]).is_empty() && !allowed(&session(&[Role::Executor])));
        assert!(visible(&[Role::Approver]).is_empty());
        let head = session(&[Role::Head]);
        assert!(Section::Templates.editable(&head) && !Section::Staff.editable(&head));
        assert!(!Section::AutoRules.editable(&head) && !Section::Widget.editable(&session(&[Role::OrgAdmin])));
    }

    #[test]
    fn repeated_fields_are_kept_and_field_errors_found_by_prefix() {
        let fields = Fields::new(vec![
            ("roles".into(), "executor".into()),
            ("roles".into(), " head ".into()),
            ("body".into(), "a\r\nb".into()),
        ]);
        assert_eq!(fields.all("roles"), ["executor", "head"]);
        assert_eq!(fields.raw("body"), "a\nb");
        assert!(fields.checked("roles") && !fields.checked("active"));
        let errors = FieldErrors(vec![("addresses[1]".into(), "адрес".into()), ("name".into(), "имя".into())]);
        assert_eq!(errors.of("addresses"), ["адрес"]);
        assert!(errors.of("address").is_empty());
        assert_eq!(errors.rest(&["addresses"]).into_string().matches("имя").count(), 1);
    }
}
