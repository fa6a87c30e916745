//! The page frame (with the sections: messages, and reports for those who build them), the
//! folder navigation and the error pages.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use maud::{DOCTYPE, Markup, html};
use pos_proto::v1 as pb;

use crate::assets;
use crate::session::Session;
use crate::texts;

/// How many messages wait in New: it leads the tab's title, so a new one shows in a
/// background tab.
pub fn new_count(counts: &[pb::FolderCount]) -> i64 {
    counts.iter().find(|c| c.folder == pb::Folder::New as i32).map_or(0, |c| c.count)
}

/// The tab's title: `(3) Новые — ПОС`.
pub fn title(page: &str, counts: &[pb::FolderCount]) -> String {
    match new_count(counts) {
        0 => format!("{page} — ПОС"),
        n => format!("({n}) {page} — ПОС"),
    }
}

/// A full page: the header with who is signed in, the folders, and `main`.
pub fn layout(page_title: &str, session: Option<&Session>, folders: Option<Markup>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="ru" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // The page's own CSP forbids the inline style htmx would add for its indicators.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"historyCacheSize":0}"#;
                title { (page_title) }
                link rel="stylesheet" href=(assets::url("modern-normalize.css"));
                link rel="stylesheet" href=(assets::url("cabinet.css"));
                script src=(assets::url("htmx.min.js")) defer {}
            }
            body {
                a.skip href="#main" { "Перейти к содержимому" }
                header.top {
                    a.brand href="/cabinet" { "ПОС" span.brand-sub { "Платформа обратной связи" } }
                    @if let Some(session) = session {
                        nav.sections aria-label="Разделы" {
                            a href="/cabinet" { "Сообщения" }
                            // Escalations addressed to the organization as a federal supervisor: its
                            // type comes from routing, with the onboarding state.
                            @if super::onboarding::federal_for(session) {
                                a href="/cabinet/escalations" data-section="escalations" { "Обращения на проверку" }
                            }
                            @if super::report::allowed(session) {
                                a href="/cabinet/reports" data-section="reports" { "Отчёты" }
                            }
                            @if crate::admin::allowed(session) {
                                a href="/cabinet/admin" data-section="admin" { "Настройки" }
                            }
                        }
                    }
                    @if let Some(session) = session {
                        div.who {
                            span.org { (session.organization_name) }
                            span.person {
                                (session.display_name) " · "
                                (session.roles.iter().map(|r| texts::role(*r)).collect::<Vec<_>>().join(", "))
                            }
                            form method="post" action="/cabinet/sign-out" {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button.link type="submit" { "Выйти" }
                            }
                        }
                    }
                }
                div.layout {
                    @if let Some(folders) = folders { (folders) }
                    main #main tabindex="-1" {
                        // Staff of an organization not connected yet: who answers meanwhile.
                        @if let Some(banner) = session.and_then(super::onboarding::banner_for) { (banner) }
                        (main)
                    }
                }
            }
        }
    }
}

/// The folders with their counts; `oob` for an htmx response that updates them in place.
pub fn folders(counts: &[pb::FolderCount], active: Option<pb::Folder>, oob: bool) -> Markup {
    html! {
        nav #folders aria-label="Папки" hx-swap-oob=[oob.then_some("true")] {
            ul {
                @for (folder, slug, name) in texts::FOLDERS {
                    @let count = counts.iter().find(|c| c.folder == folder as i32).map_or(0, |c| c.count);
                    li {
                        a href={ "/cabinet?folder=" (slug) }
                            aria-current=[(active == Some(folder)).then_some("page")]
                            data-folder=(slug) {
                            span.name { (name) }
                            span.count aria-label={ (count) " сообщ." } { (count) }
                        }
                    }
                }
            }
        }
    }
}

pub fn error(status: StatusCode, heading: &str, text: &str) -> Response {
    let body = layout(
        &format!("{heading} — ПОС"),
        None,
        None,
        html! {
            h1 { (heading) }
            p { (text) }
            p { a href="/cabinet" { "Вернуться в кабинет" } }
        },
    );
    (status, body).into_response()
}

/// A form that came without its CSRF token (or with another session's).
pub fn refused_form() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "Форма не принята",
        "Форма устарела или отправлена не со страницы кабинета. Обновите страницу и повторите действие.",
    )
}

/// The filter by category, as the list and the reports show it: "Все" or one of the classifier's
/// categories, `selected` by id.
pub fn category_field(categories: &[pb::Category], selected: &str) -> Markup {
    html! {
        div.field {
            label for="category" { "Категория" }
            select #category name="category" {
                option value="" { "Все" }
                @for category in categories {
                    option value=(category.id) selected[category.id == selected] { (category.name) }
                }
            }
        }
    }
}
