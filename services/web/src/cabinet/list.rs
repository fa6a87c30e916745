//! A folder's list with ListTickets' filters, kept in the URL so a list can be bookmarked and
//! shared, cursor paging, and live updates (htmx polls the list and the folder counts).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use http::HeaderMap;
use maud::{Markup, html};
use pos_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use super::pages;
use super::{Api, WebError, folder_counts, is_htmx, signed_in};
use crate::App;
use crate::session::Session;
use crate::texts;

const PAGE_SIZE: i32 = 25;

/// The list's state as the URL carries it; empty fields are left out of URLs.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ListQuery {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub folder: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub q: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub category: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fact: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub due_from: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub due_to: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fast: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub overdue: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub delegated: String,
    /// Only the tickets with an incident not yet closed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub incident: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sort: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub page: String,
}

impl ListQuery {
    fn folder(&self) -> pb::Folder {
        texts::folder_by_slug(&self.folder).unwrap_or(pb::Folder::New)
    }

    fn url(&self) -> String {
        match serde_urlencoded::to_string(self) {
            Ok(query) if !query.is_empty() => format!("/cabinet?{query}"),
            _ => "/cabinet".to_owned(),
        }
    }

    /// Whether anything but the folder, the order and the page narrows the list.
    fn filtered(&self) -> bool {
        [&self.q, &self.category, &self.fact, &self.source, &self.due_from, &self.due_to, &self.fast]
            .into_iter()
            .chain([&self.overdue, &self.delegated, &self.incident])
            .any(|value| !value.trim().is_empty())
    }

    fn with_page(&self, page: &str) -> ListQuery {
        ListQuery { page: page.to_owned(), ..self.clone() }
    }

    /// The ListTickets request for the session's own organization (never one from the URL).
    fn request(&self, session: &Session, zone: Tz) -> pb::ListTicketsRequest {
        let sort = match self.sort.as_str() {
            "received-asc" => pb::SortOrder::ReceivedAsc,
            "due-asc" => pb::SortOrder::DueAsc,
            "due-desc" => pb::SortOrder::DueDesc,
            _ => pb::SortOrder::ReceivedDesc,
        };
        let day = |text: &str, days_after: i64| {
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
            let midnight = (date + chrono::Duration::days(days_after)).and_hms_opt(0, 0, 0)?;
            let local = zone.from_local_datetime(&midnight).earliest()?;
            Some(pos_proto::time::to_proto(local.with_timezone(&Utc)))
        };
        pb::ListTicketsRequest {
            organization_id: session.organization_id.clone(),
            folder: self.folder() as i32,
            page_size: PAGE_SIZE,
            page_token: self.page.clone(),
            sort: sort as i32,
            fast_track_only: !self.fast.is_empty(),
            delegated_only: !self.delegated.is_empty(),
            overdue_only: !self.overdue.is_empty(),
            // The range is of whole local days, the last one included.
            due_from: day(&self.due_from, 0),
            due_to: day(&self.due_to, 1),
            sources: texts::source_by_slug(&self.source).map(|s| vec![s as i32]).unwrap_or_default(),
            category_ids: if self.category.is_empty() { Vec::new() } else { vec![self.category.clone()] },
            fact_ids: if self.fact.is_empty() { Vec::new() } else { vec![self.fact.clone()] },
            region_code: String::new(),
            text: self.q.trim().to_owned(),
            // Decided by the page, which knows whether it shows them (see `render`).
            without_folder_counts: false,
            incident_open_only: !self.incident.is_empty(),
        }
    }
}

pub async fn page(State(app): State<App>, headers: HeaderMap, Query(query): Query<ListQuery>) -> Response {
    match render(&app, &headers, query).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn render(app: &App, headers: &HeaderMap, query: ListQuery) -> Result<Response, WebError> {
    let htmx = is_htmx(headers);
    let session = signed_in(app, headers).await?;
    let zone = session.time_zone();
    let api = Api::new(app, &session);
    let folder = query.folder();
    let mut request = query.request(&session, zone);
    // The folders show the cabinet's own counts, whatever the list's filters: their links open
    // each folder unfiltered, and those counts come from an index alone, where counts under the
    // filters would cost a pass over every ticket that passes them (hundreds of milliseconds in a
    // cabinet of 100,000). An unfiltered first page brings them; any other page asks beside it.
    let counts_with_page = request.page_token.is_empty() && !query.filtered();
    request.without_folder_counts = !counts_with_page;
    let own_counts = async { if counts_with_page { None } else { Some(folder_counts(&api, &session).await) } };
    let (listed, classifier, own_counts) = tokio::join!(api.list(request), api.classifier(), own_counts);
    let listed = listed.map_err(|status| WebError::from_status(&status, htmx))?;
    let classifier = classifier.unwrap_or_default();
    let counts = own_counts.unwrap_or_else(|| listed.folder_counts.clone());
    let folder_name = texts::folder_name(folder as i32);
    let title = pages::title(folder_name, &counts);
    let results = results(app, &query, &listed, &classifier, zone);
    if htmx {
        // The list, the folders and the tab title, swapped in place.
        let fragment = html! {
            title { (title) }
            (results)
            (pages::folders(&counts, Some(folder), true))
        };
        return Ok(fragment.into_response());
    }
    let main = html! {
        h1 { (folder_name) }
        (filters(&query, &classifier))
        (results)
    };
    Ok(pages::layout(&title, Some(&session), Some(pages::folders(&counts, Some(folder), false)), main).into_response())
}

fn filters(query: &ListQuery, classifier: &pb::Classifier) -> Markup {
    html! {
        form.filters method="get" action="/cabinet" hx-get="/cabinet" hx-target="#results" hx-swap="outerHTML"
            hx-push-url="true" role="search" aria-label="Фильтры" {
            input type="hidden" name="folder" value=(query.folder);
            div.field.wide {
                label for="q" { "Текст или номер" }
                input #q type="search" name="q" value=(query.q) placeholder="например, 250000001";
            }
            (pages::category_field(&classifier.categories, &query.category))
            div.field {
                label for="fact" { "Факт" }
                select #fact name="fact" {
                    option value="" { "Все" }
                    @for subcategory in &classifier.subcategories {
                        optgroup label=(subcategory.name) {
                            @for fact in classifier.facts.iter().filter(|f| f.subcategory_id == subcategory.id) {
                                option value=(fact.id) selected[fact.id == query.fact] { (fact.name) }
                            }
                        }
                    }
                }
            }
            div.field {
                label for="source" { "Источник" }
                select #source name="source" {
                    option value="" { "Все" }
                    @for (_, slug, name) in texts::SOURCES {
                        option value=(slug) selected[slug == query.source] { (name) }
                    }
                }
            }
            div.field {
                label for="due_from" { "Срок ответа с" }
                input #due_from type="date" name="due_from" value=(query.due_from);
            }
            div.field {
                label for="due_to" { "по" }
                input #due_to type="date" name="due_to" value=(query.due_to);
            }
            div.field {
                label for="sort" { "Порядок" }
                select #sort name="sort" {
                    @for (value, name) in [("", "Сначала новые"), ("received-asc", "Сначала старые"),
                        ("due-asc", "Ближайший срок"), ("due-desc", "Дальний срок")] {
                        option value=(value) selected[value == query.sort] { (name) }
                    }
                }
            }
            div.checks {
                label.choice { input type="checkbox" name="fast" value="1" checked[!query.fast.is_empty()]; " ⚡ Фаст-трек" }
                label.choice { input type="checkbox" name="overdue" value="1" checked[!query.overdue.is_empty()]; " Просроченные" }
                label.choice {
                    input type="checkbox" name="delegated" value="1" checked[!query.delegated.is_empty()];
                    " Делегированы автоправилами"
                }
                label.choice {
                    input type="checkbox" name="incident" value="1" checked[!query.incident.is_empty()];
                    " С открытым инцидентом"
                }
            }
            div.actions {
                button.primary type="submit" { "Найти" }
                a href={ "/cabinet?folder=" (texts::folder_slug(query.folder())) } { "Сбросить" }
            }
        }
    }
}

fn results(
    app: &App,
    query: &ListQuery,
    listed: &pb::ListTicketsResponse,
    classifier: &pb::Classifier,
    zone: Tz,
) -> Markup {
    let now = Utc::now();
    let fact_name = |id: &str| classifier.facts.iter().find(|f| f.id == id).map_or(id.to_owned(), |f| f.name.clone());
    let poll = format!("every {}s", app.config.live_poll_secs.max(1));
    html! {
        section #results aria-live="polite" aria-label="Сообщения" hx-get=(query.url()) hx-trigger=(poll)
            hx-swap="outerHTML" {
            @if listed.tickets.is_empty() {
                p.empty { "В этой папке нет сообщений." }
            } @else {
                table.tickets {
                    thead {
                        tr {
                            th scope="col" { "№" }
                            th scope="col" { "Поступило" }
                            th scope="col" { "Тема" }
                            th scope="col" { "Срок ответа" }
                            th scope="col" { "Статус" }
                        }
                    }
                    tbody {
                        @for ticket in &listed.tickets {
                            @let received = ticket.received_at.as_ref().and_then(pos_proto::time::from_proto);
                            tr data-ticket=(ticket.id) {
                                td.number.nowrap {
                                    a href={ "/cabinet/tickets/" (ticket.id) } { (ticket.number) }
                                    @if ticket.fast_track {
                                        " " span.fast title="Фаст-трек" aria-label="фаст-трек" { "⚡" }
                                    }
                                    @if ticket.incident_open {
                                        " " span.badge.incident-mark title="Открыт инцидент" { "инцидент" }
                                    }
                                }
                                td.nowrap { (received.map(|at| texts::local_time(at, zone)).unwrap_or_default()) }
                                td {
                                    div.fact { (fact_name(&ticket.fact_id)) }
                                    div.excerpt { (excerpt(&ticket.public_text, 140)) }
                                }
                                td {
                                    @if let Some(clock) = texts::row_clock(ticket, now, zone) {
                                        span class=(clock.tone.class()) { (clock.text) }
                                    } @else {
                                        span.muted { "—" }
                                    }
                                }
                                td { (texts::status(&ticket.status)) }
                            }
                        }
                    }
                }
            }
            nav.pager aria-label="Страницы" {
                @if !query.page.is_empty() {
                    a href=(query.with_page("").url()) { "← В начало" }
                }
                @if !listed.next_page_token.is_empty() {
                    a href=(query.with_page(&listed.next_page_token).url()) rel="next" { "Дальше →" }
                }
            }
        }
    }
}

/// The first `chars` characters of a text, on a word boundary.
fn excerpt(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let cut: String = text.chars().take(chars).collect();
    match cut.rsplit_once(' ') {
        Some((head, _)) => format!("{head}…"),
        None => format!("{cut}…"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_round_trip_through_the_url() {
        let query =
            ListQuery {
                folder: "in-work".into(), q: "дневник".into(), fast: "1".into(), ..ListQuery::default()
            };
        let url = query.url();
        assert!(url.starts_with("/cabinet?folder=in-work&q=") && url.ends_with("&fast=1"), "{url}");
        let back: ListQuery = serde_urlencoded::from_str(url.trim_start_matches("/cabinet?")).unwrap();
        assert_eq!(back.q, "дневник");
        assert_eq!(back.folder(), pb::Folder::InWork);
    }

    #[test]
    fn only_what_narrows_the_list_counts_as_a_filter() {
        let plain =
            ListQuery { folder: "in-work".into(), sort: "due-asc".into(), page: "abc".into(), ..ListQuery::default() };
        assert!(!plain.filtered(), "the folder, the order and the page are no filters");
        assert!(ListQuery { q: "дневник".into(), ..plain.clone() }.filtered());
        assert!(ListQuery { overdue: "1".into(), ..plain.clone() }.filtered());
        assert!(ListQuery { delegated: "1".into(), ..plain.clone() }.filtered());
        assert!(ListQuery { incident: "1".into(), ..plain }.filtered());
    }

    #[test]
    fn the_deadline_range_is_of_whole_local_days() {
        let session = Session {
            token: String::new(),
            subject: String::new(),
            display_name: String::new(),
            organization_id: "41-kcioko".into(),
            organization_name: String::new(),
            region_code: "41".into(),
            roles: Vec::new(),
            csrf: String::new(),
            expires_at: 0,
            provider: None,
        };
        let query = ListQuery { due_from: "2025-01-25".into(), due_to: "2025-01-25".into(), ..ListQuery::default() };
        let request = query.request(&session, chrono_tz::Asia::Kamchatka);
        let from = pos_proto::time::from_proto(&request.due_from.unwrap()).unwrap();
        let to = pos_proto::time::from_proto(&request.due_to.unwrap()).unwrap();
        assert_eq!(from.to_rfc3339(), "2025-01-24T12:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2025-01-25T12:00:00+00:00");
        assert_eq!(request.organization_id, "41-kcioko");
    }
}
