//! Answer templates filled without saving anything: the preview the cabinet shows while a
//! template is written. The values are the ones an answer prepared from the template would get
//! (`Ticketing::render` fills a saved template with the same ones), so the preview cannot drift
//! from the answer.

use std::cell::RefCell;

use pos_platform::auth::{Caller, authorize};
use pos_platform::db::Db;
use pos_platform::{ApiError, ApiResult};
use pos_proto::v1 as pb;
use tonic::Request;

use super::{TEMPLATE_WRITERS, Ticketing, check_access, organization_of};
use crate::store::staff;
use crate::store::tickets::Ticket;
use crate::template::{self, TemplateError};

/// The longest body a preview fills: well above any answer, far below a message's limit.
const MAX_BODY_CHARS: usize = 20_000;

/// What each placeholder stands for, as an example a person recognises: the preview without a
/// ticket shows these.
fn sample(name: &str, user_name: &str, today: &str) -> String {
    match name {
        "applicant_name" => "Иванов Иван Иванович".to_owned(),
        "user_name" => user_name.to_owned(),
        "message_number" | "registration_number" => "250000001".to_owned(),
        "organization_name" => "МБОУ «Средняя общеобразовательная школа № 1»".to_owned(),
        "category" => "Образование".to_owned(),
        "created_date" | "registration_date" => today.to_owned(),
        other => format!("{{{{{other}}}}}"),
    }
}

/// A placeholder's value for `ticket`, filled by `user_name`.
pub(super) fn ticket_value(ticket: &Ticket, user_name: &str, name: &str) -> String {
    match name {
        "applicant_name" => ticket.applicant_name.clone(),
        "user_name" => user_name.to_owned(),
        "message_number" | "registration_number" => ticket.number.to_string(),
        "organization_name" => ticket.organization_short_name.clone(),
        "category" => ticket.category_id.clone(),
        // created_date, registration_date: a checked template names nothing else.
        _ => ticket.received_at.format("%d.%m.%Y").to_string(),
    }
}

/// The caller's name as the staff directory has it (their subject when they are not in it).
pub(super) async fn user_name(db: &Db, organization_id: &str, caller: &Caller) -> ApiResult<String> {
    let staff = staff::list(db, organization_id, None).await.map_err(ApiError::Db)?;
    Ok(staff
        .into_iter()
        .find(|m| m.subject == caller.subject)
        .map(|m| m.full_name)
        .unwrap_or_else(|| caller.subject.clone()))
}

/// Fills `body` with `value`, noting each placeholder used once, in order.
fn fill(body: &str, value: impl Fn(&str) -> String) -> Result<pb::PreviewAnswerTemplateResponse, TemplateError> {
    let used = RefCell::new(Vec::<String>::new());
    let text = template::render(body, |name| {
        let mut used = used.borrow_mut();
        if !used.iter().any(|u| u == name) {
            used.push(name.to_owned());
        }
        value(name)
    })?;
    Ok(pb::PreviewAnswerTemplateResponse { text, placeholders: used.into_inner() })
}

impl Ticketing {
    pub(super) async fn preview(
        &self,
        request: Request<pb::PreviewAnswerTemplateRequest>,
    ) -> ApiResult<pb::PreviewAnswerTemplateResponse> {
        const METHOD: &str = "pos.v1.TicketingService/PreviewAnswerTemplate";
        // Whoever may write templates may preview them, for the same organization only.
        let caller = authorize(&request, METHOD, &TEMPLATE_WRITERS)?;
        let body = request.into_inner();
        let organization_id = organization_of(&caller, &body.organization_id, METHOD)?;
        let ticket = if body.ticket_id.trim().is_empty() {
            None
        } else {
            let ticket = self.load(body.ticket_id.trim()).await?;
            check_access(&caller, &ticket, METHOD)?;
            if ticket.organization_id != organization_id {
                return Err(ApiError::invalid("ticket_id", "not a ticket of the template's organization"));
            }
            Some(ticket)
        };
        if body.body.chars().count() > MAX_BODY_CHARS {
            return Err(ApiError::invalid("body", format!("at most {MAX_BODY_CHARS} characters")));
        }
        let user_name = user_name(&self.db, &organization_id, &caller).await?;
        let filled = match &ticket {
            Some(ticket) => fill(&body.body, |name| ticket_value(ticket, &user_name, name)),
            None => {
                let today = chrono::Utc::now().format("%d.%m.%Y").to_string();
                fill(&body.body, |name| sample(name, &user_name, &today))
            }
        };
        filled.map_err(|error| ApiError::invalid("body", error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_has_a_sample_and_each_is_noted_once() {
        for name in template::PLACEHOLDERS {
            assert!(!sample(name, "Петрова Анна", "25.01.2025").contains("{{"), "{name} has a sample");
        }
        let filled =
            fill("{{applicant_name}}, № {{message_number}} ({{ message_number }})", |n| sample(n, "П", "01.01.2025"))
                .unwrap();
        assert_eq!(filled.text, "Иванов Иван Иванович, № 250000001 (250000001)");
        assert_eq!(filled.placeholders, ["applicant_name", "message_number"]);
    }

    #[test]
    fn an_unknown_placeholder_is_named() {
        let error = fill("Здравствуйте, {{applicant}}!", |n| n.to_owned()).unwrap_err();
        assert_eq!(error, TemplateError::Unknown("applicant".into()));
        assert!(error.to_string().contains("{{applicant}}"), "{error}");
    }
}
