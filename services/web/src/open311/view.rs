//! An appeal as a partner or an applicant follows it: found by its number or id with the
//! caller's own token (the services decide whether it is theirs), its status in two words
//! (open, closed) and in plain Russian, its times with the region's offset.
//!
//! Nothing here carries the applicant's name, e-mail or phone: the views are built from the
//! appeal's masked text and address, its routing and the ticket's status and answer.

use chrono::{DateTime, SecondsFormat, Utc};
use http::StatusCode;
use pos_proto::v1 as pb;
use tonic::Code;

use crate::cabinet::Api;

/// The appeal and the ticket currently answering it (none before routing has decided).
#[derive(Clone, Debug)]
pub struct Found {
    pub appeal: pb::Appeal,
    pub ticket: Option<pb::Ticket>,
}

impl Found {
    /// The status as the applicant sees it: the current ticket's, else intake's ("registered",
    /// "routed").
    pub fn status(&self) -> &str {
        match &self.ticket {
            Some(ticket) if !ticket.status.is_empty() => &ticket.status,
            _ => &self.appeal.status,
        }
    }

    pub fn closed(&self) -> bool {
        is_closed(self.status())
    }

    /// The organization's answer, once it went out.
    pub fn answer(&self) -> Option<&pb::Answer> {
        self.ticket.as_ref().filter(|_| self.closed()).and_then(|t| t.answer.as_ref()).filter(|a| !a.text.is_empty())
    }

    /// What Open311 calls status_notes: the answer when there is one, else the status in words.
    pub fn notes(&self) -> String {
        match self.answer() {
            Some(answer) => answer.text.clone(),
            None => status_words(self.status()).to_owned(),
        }
    }

    /// Who answers: the organization the appeal is routed to.
    pub fn agency(&self) -> String {
        match (&self.ticket, self.appeal.routing.as_ref().and_then(|r| r.organization.as_ref())) {
            (Some(ticket), _) if ticket.organization.is_some() => {
                ticket.organization.as_ref().map(|o| o.short_name.clone()).unwrap_or_default()
            }
            (_, Some(organization)) => organization.short_name.clone(),
            _ => String::new(),
        }
    }

    pub fn registered_at(&self) -> Option<DateTime<Utc>> {
        self.appeal.registered_at.as_ref().and_then(pos_proto::time::from_proto)
    }

    /// The last change the applicant can see: the status's, never before registration.
    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        let changed = self.appeal.status_changed_at.as_ref().and_then(pos_proto::time::from_proto);
        changed.max(self.registered_at())
    }

    pub fn answer_due(&self) -> Option<DateTime<Utc>> {
        self.ticket.as_ref().and_then(|t| t.answer_due.as_ref()).and_then(pos_proto::time::from_proto)
    }
}

/// The statuses after which the organization has nothing more to say (the answer went out, or
/// the appeal was rejected). A re-review opens it again.
pub fn is_closed(status: &str) -> bool {
    matches!(status, "answered" | "accepted by applicant" | "re-review stopped" | "rejected")
}

/// The status in the applicant's words.
pub fn status_words(status: &str) -> &'static str {
    match status {
        "registered" => "Обращение зарегистрировано",
        "routed" => "Обращение направлено в организацию",
        "new" => "Обращение поступило в организацию",
        "in work" | "executor assigned" | "answer prepared" | "on agreement" | "on approval" => {
            "Обращение рассматривается"
        }
        "information requested" => "Организация запросила дополнительную информацию",
        "answered" => "Дан ответ",
        "returned for re-review" => "Обращение на повторном рассмотрении",
        "accepted by applicant" => "Ответ принят заявителем",
        "re-review stopped" => "Повторное рассмотрение завершено",
        "rejected" => "Обращение отклонено",
        "redirected" => "Обращение перенаправлено в другую организацию",
        "returned to coordination" => "Обращение передано вышестоящей организации",
        _ => "Обращение рассматривается",
    }
}

/// ISO 8601 with the offset of the region's zone (Moscow's when the region is unknown), as
/// Open311 wants it: `2025-01-15T23:18:00+12:00`.
pub fn local_iso(at: DateTime<Utc>, region_code: &str) -> String {
    let zone = pos_regions::zone(region_code).unwrap_or(chrono_tz::Europe::Moscow);
    at.with_timezone(&zone).to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Whether `id` is a platform number (what Open311 calls service_request_id).
pub fn is_number(id: &str) -> bool {
    !id.is_empty() && id.len() <= 18 && id.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `id` may be an appeal id (a UUID, as intake makes them).
pub fn is_appeal_id(id: &str) -> bool {
    id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The appeal `id` (its number or its id) if the caller may read it. Someone else's appeal is
/// answered as one that does not exist, so that nobody learns which numbers are taken.
pub async fn lookup(api: &Api<'_>, id: &str) -> Result<Option<Found>, tonic::Status> {
    if is_number(id) {
        let request = pb::ListTicketsRequest {
            text: id.to_owned(),
            page_size: 20,
            without_folder_counts: true,
            ..Default::default()
        };
        let tickets = api.ticketing().list_tickets(api.request(request)).await?.into_inner().tickets;
        let Some(ticket) = tickets.into_iter().find(|t| t.number.to_string() == id && t.superseded_by.is_empty())
        else {
            return Ok(None);
        };
        return with_appeal(api, ticket).await;
    }
    if !is_appeal_id(id) {
        return Ok(None);
    }
    let appeal = match api.intake().get_appeal(api.request(pb::GetAppealRequest { appeal_id: id.to_owned() })).await {
        Ok(appeal) => appeal.into_inner(),
        Err(status) if hidden(&status) => return Ok(None),
        Err(status) => return Err(status),
    };
    let key = Some(pb::get_ticket_request::Key::AppealId(id.to_owned()));
    let ticket = match api.ticketing().get_ticket(api.request(pb::GetTicketRequest { key })).await {
        Ok(ticket) => Some(ticket.into_inner()),
        // Not routed yet.
        Err(status) if hidden(&status) => None,
        Err(status) => return Err(status),
    };
    Ok(Some(Found { appeal, ticket }))
}

/// The appeal of `ticket`, read with the same token.
pub async fn with_appeal(api: &Api<'_>, ticket: pb::Ticket) -> Result<Option<Found>, tonic::Status> {
    let request = pb::GetAppealRequest { appeal_id: ticket.appeal_id.clone() };
    match api.intake().get_appeal(api.request(request)).await {
        Ok(appeal) => Ok(Some(Found { appeal: appeal.into_inner(), ticket: Some(ticket) })),
        Err(status) if hidden(&status) => Ok(None),
        Err(status) => Err(status),
    }
}

/// The HTTP status of a service's answer: the caller's mistakes keep their meaning; the
/// platform's own failures are a bad gateway or, when it is only unreachable, unavailable.
pub fn http_status(status: &tonic::Status) -> StatusCode {
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        Code::Ok | Code::Unknown | Code::Internal | Code::Unimplemented | Code::DataLoss => StatusCode::BAD_GATEWAY,
    }
}

/// Answers that mean "not yours or not there".
fn hidden(status: &tonic::Status) -> bool {
    matches!(status.code(), Code::NotFound | Code::PermissionDenied | Code::InvalidArgument)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_carry_the_regions_offset() {
        let at = DateTime::parse_from_rfc3339("2025-01-15T11:18:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(local_iso(at, "41"), "2025-01-15T23:18:00+12:00");
        assert_eq!(local_iso(at, "77"), "2025-01-15T14:18:00+03:00");
    }

    #[test]
    fn an_answer_closes_and_a_re_review_reopens() {
        assert!(is_closed("answered") && is_closed("accepted by applicant"));
        assert!(!is_closed("returned for re-review") && !is_closed("registered") && !is_closed("on approval"));
        assert_eq!(status_words("on approval"), "Обращение рассматривается");
    }

    #[test]
    fn ids_are_numbers_or_uuids() {
        assert!(is_number("250000001") && !is_number("25a") && !is_number(""));
        assert!(is_appeal_id("0193f2a4-5b6c-7d8e-9f00-112233445566"));
        assert!(!is_appeal_id("../../etc/passwd") && !is_appeal_id("250000001"));
    }
}
