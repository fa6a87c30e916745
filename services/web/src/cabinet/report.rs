//! Reports (Отчёты) for the head, the coordinator and the curator: the messages the
//! organization received in a period and what became of them, in total, by category and by
//! executor, with the period and the filters in the URL, and the same table as CSV and XLSX
//! (`report_export`). A curator also reports over the organizations under theirs (routing's
//! directory): all of them, with a row per organization, or one of them.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use http::HeaderMap;
use maud::{Markup, html};
use pos_platform::auth::Role;
use pos_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use super::{Api, WebError, folder_counts, is_htmx, pages, signed_in};
use crate::App;
use crate::session::Session;
use crate::texts;

/// Who builds reports: the head and the curator (seed 004), and the coordinator, who routes the
/// organization's work. Ticketing decides (`GetReport`); the cabinet shows the link to them only.
pub const REPORT_ROLES: [Role; 3] = [Role::Head, Role::Coordinator, Role::Curator];

/// Whether the session may open the reports (and sees them in the navigation).
pub fn allowed(session: &Session) -> bool {
    session.has_any(&REPORT_ROLES)
}

/// A report's parameters as the URL carries them; empty fields are left out of URLs.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ReportQuery {
    /// The first day, `YYYY-MM-DD`, in the organization's zone; empty: the month's first.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// The last day, included; empty: today.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub to: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub folder: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub category: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub executor: String,
    /// A curator's choice of organizations: empty for their own, [`ALL_SUPERVISED`] for theirs
    /// and every one under it, or the id of one under it. Ignored for other roles.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

/// The scope value of «все подведомственные».
pub const ALL_SUPERVISED: &str = "supervised";

/// Whether the session reports over supervised organizations too (DOMAIN.md: the curator).
pub fn supervises(session: &Session) -> bool {
    session.has(Role::Curator)
}

/// A period of whole local days, both included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl ReportQuery {
    /// The period asked for, or why it cannot be: the month so far by default.
    pub fn period(&self, today: NaiveDate) -> Result<Period, &'static str> {
        let day = |text: &str| NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d");
        let first = match self.from.trim() {
            "" => today.with_day(1).unwrap_or(today),
            text => day(text).map_err(|_| "Дата начала периода указана неверно.")?,
        };
        let last = match self.to.trim() {
            "" => today,
            text => day(text).map_err(|_| "Дата окончания периода указана неверно.")?,
        };
        if first > last {
            return Err("Дата начала периода позже даты окончания.");
        }
        Ok(Period { first, last })
    }

    /// The URL of this report as `path` serves it (the page, `.csv`, `.xlsx`).
    pub fn url(&self, path: &str) -> String {
        match serde_urlencoded::to_string(self) {
            Ok(query) if !query.is_empty() => format!("{path}?{query}"),
            _ => path.to_owned(),
        }
    }

    /// The GetReport request: for the session's own organization, or for a curator the
    /// organizations the scope names (ticketing refuses one outside the curator's subtree).
    pub fn request(&self, session: &Session, period: Period, zone: Tz) -> pb::GetReportRequest {
        let (organization_id, include_supervised) = match self.scope.trim() {
            _ if !supervises(session) => (session.organization_id.clone(), false),
            "" => (session.organization_id.clone(), false),
            ALL_SUPERVISED => (session.organization_id.clone(), true),
            one => (one.to_owned(), false),
        };
        pb::GetReportRequest {
            organization_id,
            include_supervised,
            period_from: Some(pos_proto::time::to_proto(start_of(period.first, zone))),
            period_to: Some(pos_proto::time::to_proto(start_of(period.last + chrono::Duration::days(1), zone))),
            folder: texts::folder_by_slug(&self.folder).map_or(pb::Folder::Unspecified as i32, |f| f as i32),
            category_id: self.category.trim().to_owned(),
            executor_id: self.executor.trim().to_owned(),
        }
    }
}

/// The local midnight that starts `day` in `zone` (the earliest, where a day starts twice).
fn start_of(day: NaiveDate, zone: Tz) -> chrono::DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    zone.from_local_datetime(&midnight).earliest().map_or_else(|| midnight.and_utc(), |at| at.with_timezone(&Utc))
}

/// Today in `zone`.
pub fn today(zone: Tz) -> NaiveDate {
    Utc::now().with_timezone(&zone).date_naive()
}

/// What a figure is, as each output writes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Count(i64),
    /// A share in [0, 1]; `None` when its base is zero.
    Share(Option<f64>),
    /// Seconds; `None` when nothing was answered.
    Duration(Option<i64>),
}

/// One column of the report: its heading on the page, its heading in a file (with the unit
/// the file's number is in), and its value.
pub struct Column {
    pub title: &'static str,
    pub file_title: &'static str,
    pub value: fn(&pb::ReportFigures) -> Value,
}

fn share(part: i64, whole: i64) -> Value {
    Value::Share((whole > 0).then(|| part as f64 / whole as f64))
}

/// The report's columns, in order, for the page, CSV and XLSX alike. A page heading may carry a
/// soft hyphen where a long word would widen its column.
pub const COLUMNS: [Column; 11] = [
    Column { title: "Поступило", file_title: "Поступило", value: |f| Value::Count(f.received) },
    Column { title: "Отвечено", file_title: "Отвечено", value: |f| Value::Count(f.answered) },
    Column {
        title: "Отвечено в срок", file_title: "Отвечено в срок", value: |f| Value::Count(f.answered_on_time)
    },
    Column {
        title: "Доля в срок", file_title: "Доля в срок, %", value: |f| share(f.answered_on_time, f.answered)
    },
    Column { title: "Просрочено", file_title: "Просрочено", value: |f| Value::Count(f.overdue) },
    Column { title: "Фаст-трек", file_title: "Фаст-трек", value: |f| Value::Count(f.fast_track) },
    Column {
        title: "Доля фаст-треков", file_title: "Доля фаст-треков, %", value: |f| share(f.fast_track, f.received)
    },
    Column {
        title: "Повторное рас\u{ad}смотрение",
        file_title: "Повторное рассмотрение",
        value: |f| Value::Count(f.re_reviews),
    },
    Column {
        title: "Среднее время ответа",
        file_title: "Среднее время ответа, ч",
        value: |f| Value::Duration((f.answered > 0).then_some(f.average_answer_seconds)),
    },
    Column {
        title: "Перена\u{ad}правлено", file_title: "Перенаправлено", value: |f| Value::Count(f.redirected)
    },
    Column { title: "Отклонено", file_title: "Отклонено", value: |f| Value::Count(f.rejected) },
];

/// A number with a decimal comma, as Russian readers (and Excel in a Russian locale) expect.
pub fn decimal(value: f64, places: usize) -> String {
    format!("{value:.places$}").replace('.', ",")
}

impl Value {
    /// As the page shows it.
    fn text(self) -> String {
        match self {
            Value::Count(n) => n.to_string(),
            Value::Share(Some(share)) => format!("{} %", decimal(share * 100.0, 1)),
            Value::Duration(Some(seconds)) => texts::span(seconds),
            Value::Share(None) | Value::Duration(None) => "—".to_owned(),
        }
    }
}

/// The report as read, with the names its keys stand for.
pub struct Loaded {
    /// Whose report it is, as people read it: the organization, or the curator's with «и
    /// подведомственные».
    pub organization_name: String,
    pub period: Period,
    pub zone: Tz,
    pub report: pb::Report,
    pub classifier: pb::Classifier,
    pub staff: Vec<pb::StaffMember>,
}

/// What a report's form and rows name: the categories, the staff, and for a curator the
/// organizations under theirs.
pub struct Names {
    pub classifier: pb::Classifier,
    pub staff: Vec<pb::StaffMember>,
    pub subordinates: Vec<pb::Organization>,
}

impl Loaded {
    pub fn category_name(&self, id: &str) -> String {
        self.classifier.categories.iter().find(|c| c.id == id).map_or_else(|| id.to_owned(), |c| c.name.clone())
    }

    pub fn executor_name(&self, subject: &str) -> String {
        if subject.is_empty() {
            return "Не назначен (у координатора)".to_owned();
        }
        self.staff.iter().find(|m| m.subject == subject).map_or_else(|| subject.to_owned(), |m| m.full_name.clone())
    }

    /// An organization of a curator's report by its short name (its id when the directory gave
    /// none).
    pub fn organization_name(row: &pb::ReportOrganizationRow) -> String {
        if row.short_name.is_empty() { row.organization_id.clone() } else { row.short_name.clone() }
    }

    /// Every row of the report: (section, name, figures): the totals, then by organization (a
    /// curator's report over supervised ones), by category, then by executor.
    pub fn rows(&self) -> Vec<(&'static str, String, pb::ReportFigures)> {
        let mut rows = vec![("Итого", "Все сообщения".to_owned(), self.report.totals.unwrap_or_default())];
        for row in &self.report.by_organization {
            rows.push(("Организация", Loaded::organization_name(row), row.figures.unwrap_or_default()));
        }
        for row in &self.report.by_category {
            rows.push(("Категория", self.category_name(&row.key), row.figures.unwrap_or_default()));
        }
        for row in &self.report.by_executor {
            rows.push(("Исполнитель", self.executor_name(&row.key), row.figures.unwrap_or_default()));
        }
        rows
    }

    /// `01.01.2025 — 31.01.2025`.
    pub fn period_text(&self) -> String {
        format!("{} — {}", self.period.first.format("%d.%m.%Y"), self.period.last.format("%d.%m.%Y"))
    }
}

/// The signed-in person, if they may build reports.
pub async fn reporter(app: &App, headers: &HeaderMap) -> Result<Session, WebError> {
    let session = signed_in(app, headers).await?;
    if !allowed(&session) {
        return Err(WebError::Forbidden("Отчёты доступны руководителю, координатору и куратору организации."));
    }
    Ok(session)
}

/// The organizations under a curator's, for the form's choice; none for other roles.
async fn subordinates(api: &Api<'_>, session: &Session) -> Vec<pb::Organization> {
    if !supervises(session) {
        return Vec::new();
    }
    let request = pb::ListSubordinatesRequest { organization_id: session.organization_id.clone() };
    api.routing()
        .list_subordinates(api.request(request))
        .await
        .map(|r| r.into_inner().organizations)
        .inspect_err(|status| tracing::warn!(code = ?status.code(), "supervised organizations unavailable"))
        .unwrap_or_default()
}

/// The names a report's keys stand for: the classifier's categories, the staff and the
/// supervised organizations. Without them the report still stands, with ids in their place.
async fn names(api: &Api<'_>, session: &Session) -> Names {
    let staff_request = pb::ListStaffRequest { organization_id: session.organization_id.clone(), role: String::new() };
    let mut staff_client = api.ticketing();
    let (classifier, staff, subordinates) =
        tokio::join!(api.classifier(), staff_client.list_staff(api.request(staff_request)), subordinates(api, session));
    let classifier = classifier
        .inspect_err(|status| tracing::warn!(code = ?status.code(), "classifier unavailable for the report"))
        .unwrap_or_default();
    let staff = staff
        .map(|r| r.into_inner().staff)
        .inspect_err(|status| tracing::warn!(code = ?status.code(), "staff unavailable for the report"))
        .unwrap_or_default();
    Names { classifier, staff, subordinates }
}

/// Reads the report of `period` with the session's token, and the names of its keys.
pub async fn read(
    app: &App,
    session: &Session,
    query: &ReportQuery,
    period: Period,
    htmx: bool,
) -> Result<(Loaded, Vec<pb::Organization>), WebError> {
    let api = Api::new(app, session);
    let zone = session.time_zone();
    let mut ticketing = api.ticketing();
    let request = query.request(session, period, zone);
    let (report, names) = tokio::join!(ticketing.get_report(api.request(request)), names(&api, session));
    let report = report.map_err(|status| WebError::from_status(&status, htmx))?.into_inner();
    let organization_name = if report.organization_id == session.organization_id {
        if report.by_organization.is_empty() {
            session.organization_name.clone()
        } else {
            format!("{} и подведомственные организации", session.organization_name)
        }
    } else {
        names
            .subordinates
            .iter()
            .find(|o| o.id == report.organization_id)
            .map_or_else(|| report.organization_id.clone(), |o| o.short_name.clone())
    };
    let loaded = Loaded { organization_name, period, zone, report, classifier: names.classifier, staff: names.staff };
    Ok((loaded, names.subordinates))
}

pub async fn page(State(app): State<App>, headers: HeaderMap, Query(query): Query<ReportQuery>) -> Response {
    match render(&app, &headers, query).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn render(app: &App, headers: &HeaderMap, query: ReportQuery) -> Result<Response, WebError> {
    let session = reporter(app, headers).await?;
    let api = Api::new(app, &session);
    let (counts, main) = match query.period(today(session.time_zone())) {
        Ok(period) => {
            let (counts, loaded) =
                tokio::join!(folder_counts(&api, &session), read(app, &session, &query, period, is_htmx(headers)));
            let (loaded, subordinates) = loaded?;
            let main = html! {
                h1 { "Отчёты" }
                (form(&query, Some(period), &loaded.classifier, &loaded.staff, &subordinates))
                (report(&query, &loaded))
            };
            (counts, main)
        }
        Err(why) => {
            let (counts, names) = tokio::join!(folder_counts(&api, &session), names(&api, &session));
            let main = html! {
                h1 { "Отчёты" }
                (form(&query, None, &names.classifier, &names.staff, &names.subordinates))
                p.flash.error role="alert" { (why) }
            };
            (counts, main)
        }
    };
    let title = pages::title("Отчёты", &counts);
    Ok(pages::layout(&title, Some(&session), Some(pages::folders(&counts, None, false)), main).into_response())
}

fn form(
    query: &ReportQuery,
    period: Option<Period>,
    classifier: &pb::Classifier,
    staff: &[pb::StaffMember],
    subordinates: &[pb::Organization],
) -> Markup {
    let from = period.map_or_else(|| query.from.clone(), |p| p.first.format("%Y-%m-%d").to_string());
    let to = period.map_or_else(|| query.to.clone(), |p| p.last.format("%Y-%m-%d").to_string());
    let executors = staff.iter().filter(|m| m.roles.iter().any(|r| r == Role::Executor.as_str()));
    html! {
        form.filters.report-form method="get" action="/cabinet/reports" aria-label="Параметры отчёта" {
            @if !subordinates.is_empty() {
                div.field {
                    label for="scope" { "Организации" }
                    select #scope name="scope" {
                        option value="" { "Только моя организация" }
                        option value=(ALL_SUPERVISED) selected[query.scope == ALL_SUPERVISED] { "Все подведомственные" }
                        @for organization in subordinates {
                            option value=(organization.id) selected[organization.id == query.scope] {
                                @if organization.short_name.is_empty() { (organization.full_name) }
                                @else { (organization.short_name) }
                            }
                        }
                    }
                }
            }
            div.field {
                label for="from" { "Период с" }
                input #from type="date" name="from" value=(from) required;
            }
            div.field {
                label for="to" { "по" }
                input #to type="date" name="to" value=(to) required;
            }
            div.field {
                label for="folder" { "Папка" }
                select #folder name="folder" {
                    option value="" { "Все" }
                    @for (_, slug, name) in texts::FOLDERS {
                        option value=(slug) selected[slug == query.folder] { (name) }
                    }
                }
            }
            (pages::category_field(&classifier.categories, &query.category))
            div.field {
                label for="executor" { "Исполнитель" }
                select #executor name="executor" {
                    option value="" { "Все" }
                    @for member in executors {
                        option value=(member.subject) selected[member.subject == query.executor] { (member.full_name) }
                    }
                }
            }
            div.actions {
                button.primary type="submit" { "Показать" }
                a href="/cabinet/reports" { "Сбросить" }
            }
        }
    }
}

fn report(query: &ReportQuery, loaded: &Loaded) -> Markup {
    let totals = loaded.report.totals.unwrap_or_default();
    let section = |caption: &str, heading: &str, rows: Vec<(String, pb::ReportFigures)>| {
        html! {
            // A wide table scrolls inside its box; the box takes focus so that keyboard users
            // can scroll it too.
            div.table-wrap tabindex="0" role="region" aria-label=(caption) {
                table.report data-section=(heading) {
                    caption { (caption) }
                    thead {
                        tr {
                            th scope="col" { (heading) }
                            @for column in &COLUMNS { th scope="col" { (column.title) } }
                        }
                    }
                    tbody {
                        @for (name, figures) in &rows {
                            tr {
                                th scope="row" { (name) }
                                @for column in &COLUMNS {
                                    @let value = (column.value)(figures);
                                    td data-column=(column.file_title) { (value.text()) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let by_category =
        loaded.report.by_category.iter().map(|r| (loaded.category_name(&r.key), r.figures.unwrap_or_default()));
    let by_executor =
        loaded.report.by_executor.iter().map(|r| (loaded.executor_name(&r.key), r.figures.unwrap_or_default()));
    let by_organization =
        loaded.report.by_organization.iter().map(|r| (Loaded::organization_name(r), r.figures.unwrap_or_default()));
    html! {
           section #report aria-labelledby="report-title" {
    h2 #report-title {
                   (loaded.organization_name) ": сообщения, поступившие с " (loaded.period.first.format("%d.%m.%Y")) " по "
                   (loaded.period.last.format("%d.%m.%Y"))
               }
               p.hint {
                   "Время — по часовому поясу организации (" (loaded.zone.name()) "). Сроки, просрочка и ответы — по "
                   "текущему кругу рассмотрения; среднее время — от поступления до первого ответа."
               }
               p.exports {
                   a.button href=(query.url("/cabinet/reports.csv")) download { "Выгрузить в CSV" }
                   a.button href=(query.url("/cabinet/reports.xlsx")) download { "Выгрузить в XLSX" }
               }
               @if totals.received == 0 {
                   p.empty { "За этот период сообщений не поступало." }
               } @else {
                   (section("Итого за период", "Всего", vec![("Все сообщения".to_owned(), totals)]))
                   @if !loaded.report.by_organization.is_empty() {
                       (section("По организациям", "Организация", by_organization.collect()))
                   }
                   (section("По категориям", "Категория", by_category.collect()))
                   (section("По исполнителям", "Исполнитель", by_executor.collect()))
               }
           }
       }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head's session of the Kamchatka center, built as the session store reads one.
    fn session() -> Session {
        serde_json::from_value(serde_json::json!({
            "token": "", "subject": "dev-head", "display_name": "Кузнецова Анна",
            "organization_id": "41-kcioko", "organization_name": "КГАУ «Камчатский ЦИОКО»",
            "region_code": "41", "roles": ["head"], "csrf": "", "expires_at": 0,
        }))
        .unwrap()
    }

    #[test]
    fn the_period_defaults_to_the_month_so_far_and_must_be_in_order() {
        let today = NaiveDate::from_ymd_opt(2025, 1, 16).unwrap();
        let month = ReportQuery::default().period(today).unwrap();
        assert_eq!((month.first.to_string(), month.last.to_string()), ("2025-01-01".into(), "2025-01-16".into()));
        let reversed = ReportQuery { from: "2025-01-20".into(), to: "2025-01-10".into(), ..ReportQuery::default() };
        assert!(reversed.period(today).is_err());
        let garbage = ReportQuery { from: "вчера".into(), ..ReportQuery::default() };
        assert!(garbage.period(today).is_err());
    }

    #[test]
    fn the_period_is_of_whole_local_days_of_the_sessions_organization() {
        let query = ReportQuery {
            from: "2025-01-15".into(),
            to: "2025-01-25".into(),
            folder: "processed".into(),
            executor: "dev-executor".into(),
            ..ReportQuery::default()
        };
        let period = query.period(NaiveDate::from_ymd_opt(2025, 2, 1).unwrap()).unwrap();
        let request = query.request(&session(), period, chrono_tz::Asia::Kamchatka);
        let at = |t: &Option<prost_types::Timestamp>| pos_proto::time::from_proto(t.as_ref().unwrap()).unwrap();
        // Kamchatka is UTC+12: its days start at noon UTC the day before.
        assert_eq!(at(&request.period_from).to_rfc3339(), "2025-01-14T12:00:00+00:00");
        assert_eq!(at(&request.period_to).to_rfc3339(), "2025-01-25T12:00:00+00:00");
        assert_eq!(request.folder, pb::Folder::Processed as i32);
        assert_eq!((request.organization_id.as_str(), request.executor_id.as_str()), ("41-kcioko", "dev-executor"));
        let url = query.url("/cabinet/reports.csv");
        assert_eq!(url, "/cabinet/reports.csv?from=2025-01-15&to=2025-01-25&folder=processed&executor=dev-executor");
    }

    #[test]
    fn figures_read_as_staff_expect() {
        let figures = pb::ReportFigures {
            received: 3,
            answered: 3,
            answered_on_time: 2,
            fast_track: 1,
            average_answer_seconds: 2 * 86_400 + 3 * 3_600 + 5 * 60,
            ..Default::default()
        };
        let text = |title: &str| {
            let column = COLUMNS.iter().find(|c| c.title == title).unwrap();
            (column.value)(&figures).text()
        };
        assert_eq!(text("Доля в срок"), "66,7 %");
        assert_eq!(text("Доля фаст-треков"), "33,3 %");
        assert_eq!(text("Среднее время ответа"), "2 дн. 3 ч 5 мин");
        let none = pb::ReportFigures::default();
        assert_eq!((COLUMNS[3].value)(&none).text(), "—");
        assert_eq!((COLUMNS[8].value)(&none).text(), "—");
    }

    #[test]
    fn a_curator_chooses_all_supervised_or_one_and_nobody_else_can() {
        let period = Period {
            first: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            last: NaiveDate::from_ymd_opt(2025, 1, 31).unwrap(),
        };
        let curator = Session { roles: vec![Role::Curator], ..session() };
        let zone = chrono_tz::Asia::Kamchatka;
        let scoped = |scope: &str, session: &Session| {
            let query = ReportQuery { scope: scope.into(), ..ReportQuery::default() };
            let request = query.request(session, period, zone);
            (request.organization_id, request.include_supervised)
        };
        assert_eq!(scoped("", &curator), ("41-kcioko".to_owned(), false));
        assert_eq!(scoped(ALL_SUPERVISED, &curator), ("41-kcioko".to_owned(), true));
        assert_eq!(scoped("41-school-pk-1", &curator), ("41-school-pk-1".to_owned(), false));
        // A head's report is of their own organization whatever the URL says.
        assert_eq!(scoped(ALL_SUPERVISED, &session()), ("41-kcioko".to_owned(), false));
        assert_eq!(scoped("41-school-pk-1", &session()), ("41-kcioko".to_owned(), false));
        let url = ReportQuery { scope: ALL_SUPERVISED.into(), ..ReportQuery::default() }.url("/cabinet/reports.csv");
        assert_eq!(url, "/cabinet/reports.csv?scope=supervised", "the exports follow the choice");
    }

    #[test]
    fn only_the_head_the_coordinator_and_the_curator_see_reports() {
        for role in Role::STAFF {
            let session = Session { roles: vec![role], ..session() };
            assert_eq!(allowed(&session), REPORT_ROLES.contains(&role), "{role}");
        }
    }
}
