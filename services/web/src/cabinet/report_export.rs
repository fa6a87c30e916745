//! The report as a file: CSV (UTF-8 with a byte order mark, so that Excel reads the Cyrillic;
//! semicolons and decimal commas, as Excel in a Russian locale splits and reads them) and XLSX.
//! Both hold the page's table: the totals, then by category, then by executor.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use rust_xlsxwriter::{Format, Workbook, XlsxError};

use super::report::{self, COLUMNS, Loaded, ReportQuery, Value, decimal};
use super::{WebError, is_htmx, pages};
use crate::App;
use crate::session::Session;

const BOM: &[u8] = b"\xEF\xBB\xBF";
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

pub async fn csv(State(app): State<App>, headers: HeaderMap, Query(query): Query<ReportQuery>) -> Response {
    export(&app, &headers, &query, "csv").await
}

pub async fn xlsx(State(app): State<App>, headers: HeaderMap, Query(query): Query<ReportQuery>) -> Response {
    export(&app, &headers, &query, "xlsx").await
}

async fn export(app: &App, headers: &HeaderMap, query: &ReportQuery, format: &str) -> Response {
    let session = match report::reporter(app, headers).await {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    let period = match query.period(report::today(session.time_zone())) {
        Ok(period) => period,
        Err(why) => return pages::error(StatusCode::BAD_REQUEST, "Отчёт не построен", why),
    };
    let loaded = match report::read(app, &session, query, period, is_htmx(headers)).await {
        Ok((loaded, _)) => loaded,
        Err(error) => return error.into_response(),
    };
    let (body, content_type) = match format {
        "csv" => (to_csv(&loaded).map_err(|e| e.to_string()), "text/csv; charset=utf-8"),
        _ => (to_xlsx(&loaded).map_err(|e| e.to_string()), XLSX),
    };
    let body = match body {
        Ok(body) => body,
        Err(error) => return WebError::Internal(format!("report export: {error}")).into_response(),
    };
    let name = file_name(&session, &loaded, format);
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type)), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response()
}

/// `report_41-kcioko_2025-01-01_2025-01-31.csv` (`…_supervised_…` for a curator's report over
/// the organizations under theirs): ASCII only, so every browser keeps it.
fn file_name(session: &Session, loaded: &Loaded, format: &str) -> String {
    let id = if loaded.report.organization_id.is_empty() {
        &session.organization_id
    } else {
        &loaded.report.organization_id
    };
    let scope = if loaded.report.by_organization.is_empty() { "" } else { "_supervised" };
    let organization: String = format!("{id}{scope}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    format!("report_{organization}_{}_{}.{format}", loaded.period.first, loaded.period.last)
}

/// A figure as a file's cell text: counts as they are, shares in percent and times in hours,
/// with a decimal comma; empty where there is nothing to divide by.
fn cell(value: Value) -> String {
    match value {
        Value::Count(n) => n.to_string(),
        Value::Share(Some(share)) => decimal(share * 100.0, 1),
        Value::Duration(Some(seconds)) => decimal(seconds as f64 / 3600.0, 1),
        Value::Share(None) | Value::Duration(None) => String::new(),
    }
}

pub fn to_csv(loaded: &Loaded) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::WriterBuilder::new().delimiter(b';').from_writer(BOM.to_vec());
    let mut heading = vec!["Раздел".to_owned(), "Наименование".to_owned()];
    heading.extend(COLUMNS.iter().map(|c| c.file_title.to_owned()));
    writer.write_record(&heading)?;
    for (section, name, figures) in loaded.rows() {
        let mut record = vec![section.to_owned(), name];
        record.extend(COLUMNS.iter().map(|c| cell((c.value)(&figures))));
        writer.write_record(&record)?;
    }
    writer.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

pub fn to_xlsx(loaded: &Loaded) -> Result<Vec<u8>, XlsxError> {
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name("Отчёт")?;
    let bold = Format::new().set_bold();
    let heading = Format::new().set_bold().set_text_wrap().set_background_color("#E8ECF0");
    let percent = Format::new().set_num_format("0.0%");
    let hours = Format::new().set_num_format("0.0");
    let title = format!("Отчёт: {}, сообщения, поступившие {}", loaded.organization_name, loaded.period_text());
    sheet.write_string_with_format(0, 0, &title, &bold)?;
    sheet.write_string(1, 0, format!("Часовой пояс организации: {}", loaded.zone.name()))?;
    const HEAD: u32 = 3;
    sheet.write_string_with_format(HEAD, 0, "Раздел", &heading)?;
    sheet.write_string_with_format(HEAD, 1, "Наименование", &heading)?;
    for (i, column) in COLUMNS.iter().enumerate() {
        let col = 2 + i as u16;
        sheet.write_string_with_format(HEAD, col, column.file_title, &heading)?;
        sheet.set_column_width(col, 14)?;
    }
    sheet.set_column_width(0, 14)?;
    sheet.set_column_width(1, 44)?;
    for (r, (section, name, figures)) in loaded.rows().into_iter().enumerate() {
        let row = HEAD + 1 + r as u32;
        sheet.write_string(row, 0, section)?;
        sheet.write_string(row, 1, name)?;
        for (i, column) in COLUMNS.iter().enumerate() {
            let col = 2 + i as u16;
            match (column.value)(&figures) {
                Value::Count(n) => {
                    sheet.write_number(row, col, n as f64)?;
                }
                Value::Share(Some(share)) => {
                    sheet.write_number_with_format(row, col, share, &percent)?;
                }
                Value::Duration(Some(seconds)) => {
                    sheet.write_number_with_format(row, col, seconds as f64 / 3600.0, &hours)?;
                }
                Value::Share(None) | Value::Duration(None) => {}
            }
        }
    }
    sheet.set_freeze_panes(HEAD + 1, 2)?;
    workbook.save_to_buffer()
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use pos_proto::v1 as pb;

    use super::*;
    use crate::cabinet::report::Period;

    fn loaded() -> Loaded {
        let figures = |received, answered, on_time| pb::ReportFigures {
            received,
            answered,
            answered_on_time: on_time,
            fast_track: received,
            average_answer_seconds: if answered > 0 { 5_400 } else { 0 },
            ..Default::default()
        };
        Loaded {
            organization_name: "КГАУ «Камчатский ЦИОКО»".into(),
            period: Period {
                first: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
                last: NaiveDate::from_ymd_opt(2025, 1, 31).unwrap(),
            },
            zone: chrono_tz::Asia::Kamchatka,
            report: pb::Report {
                totals: Some(figures(3, 2, 1)),
                by_category: vec![pb::ReportRow { key: "education".into(), figures: Some(figures(3, 2, 1)) }],
                by_executor: vec![
                    pb::ReportRow { key: "dev-executor".into(), figures: Some(figures(2, 2, 1)) },
                    pb::ReportRow { key: String::new(), figures: Some(figures(1, 0, 0)) },
                ],
                ..Default::default()
            },
            classifier: pb::Classifier {
                categories: vec![pb::Category {
                    id: "education".into(),
                    name: "Образование".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            staff: vec![pb::StaffMember {
                subject: "dev-executor".into(),
                full_name: "Петров Иван".into(),
                ..Default::default()
            }],
        }
    }

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
    fn the_csv_opens_in_a_russian_excel() {
        let bytes = to_csv(&loaded()).unwrap();
        assert!(bytes.starts_with(BOM), "a byte order mark first");
        let text = String::from_utf8(bytes[BOM.len()..].to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 4, "{text}");
        assert!(lines[0].starts_with("Раздел;Наименование;Поступило;Отвечено;Отвечено в срок;Доля в срок, %;"));
        assert_eq!(lines[1], "Итого;Все сообщения;3;2;1;50,0;0;3;100,0;0;1,5;0;0");
        assert_eq!(lines[2], "Категория;Образование;3;2;1;50,0;0;3;100,0;0;1,5;0;0");
        assert_eq!(lines[3], "Исполнитель;Петров Иван;2;2;1;50,0;0;2;100,0;0;1,5;0;0");
        // Nothing answered: no share and no time, rather than a zero that reads as a figure.
        assert_eq!(lines[4], "Исполнитель;Не назначен (у координатора);1;0;0;;0;1;100,0;0;;0;0");
    }

    #[test]
    fn a_curators_report_has_a_row_per_organization_and_its_own_file_name() {
        let mut loaded = loaded();
        let row = |id: &str, name: &str, received| pb::ReportOrganizationRow {
            organization_id: id.into(),
            short_name: name.into(),
            figures: Some(pb::ReportFigures { received, ..Default::default() }),
        };
        loaded.report.organization_id = "41-kcioko".into();
        loaded.report.by_organization = vec![row("41-kcioko", "КГАУ «Камчатский ЦИОКО»", 2), row("41-school-1", "", 1)];
        let bytes = to_csv(&loaded).unwrap();
        let text = String::from_utf8(bytes[BOM.len()..].to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].starts_with("Организация;КГАУ «Камчатский ЦИОКО»;2;"), "{text}");
        assert!(lines[3].starts_with("Организация;41-school-1;1;"), "an id where the directory gave no name: {text}");
        assert_eq!(file_name(&session(), &loaded, "xlsx"), "report_41-kcioko_supervised_2025-01-01_2025-01-31.xlsx");
    }

    #[test]
    fn the_xlsx_is_a_workbook() {
        let bytes = to_xlsx(&loaded()).unwrap();
        assert!(bytes.starts_with(b"PK\x03\x04"), "a zip container");
        assert!(bytes.len() > 4_000);
    }

    #[test]
    fn file_names_are_ascii() {
        let name = file_name(&Session { organization_id: "41/кц".into(), ..session() }, &loaded(), "csv");
        assert_eq!(name, "report_41____2025-01-01_2025-01-31.csv");
    }
}
