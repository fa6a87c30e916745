//! «Обращения на проверку»: the escalations addressed to the person's organization as a federal
//! supervisor (seed 001: Рособрнадзор checks what a college says about a diploma), with the
//! appeal's number, public text and files. Its staff cannot open the escalating organization's
//! card; here they request information and answer (resolve) each escalation with their own token.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use maud::{Markup, html};
use pos_proto::v1 as pb;

use super::attachments;
use super::card::Flash;
use super::incidents::{self, Place};
use super::{Api, WebError, pages, signed_in};
use crate::App;
use crate::session::Session;

/// What the page shows.
struct Escalations {
    incidents: Vec<pb::Incident>,
    files: HashMap<String, pb::Attachment>,
    organizations: Vec<pb::Organization>,
}

/// `GET /cabinet/escalations`.
pub async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    let session = match signed_in(&app, &headers).await {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    respond(&app, &session, false, None, None).await
}

/// The page (or, for htmx, its section) with `flash` after a step.
pub async fn respond(
    app: &App,
    session: &Session,
    htmx: bool,
    flash: Option<Flash>,
    form_error: Option<(String, String)>,
) -> Response {
    let loaded = match load(app, session, htmx).await {
        Ok(loaded) => loaded,
        Err(error) => return error.into_response(),
    };
    let section = render(session, &loaded, flash, &form_error);
    if htmx {
        return section.into_response();
    }
    let main = html! {
        h1 { "Обращения на проверку" }
        p.hint { "Обращения, которые организации направили вашей организации как федеральному органу. Запросите информацию или ответьте: ответ увидит направившая организация." }
        (section)
    };
    pages::layout("Обращения на проверку — ПОС", Some(session), None, main).into_response()
}

async fn load(app: &App, session: &Session, htmx: bool) -> Result<Escalations, WebError> {
    let api = Api::new(app, session);
    let request = pb::ListIncidentsRequest {
        ticket_id: String::new(),
        handler_organization_id: session.organization_id.clone(),
        open_only: true,
    };
    let incidents = match api.ticketing().list_incidents(api.request(request)).await {
        Ok(response) => response.into_inner().incidents,
        // An organization no escalation can be addressed to has none.
        Err(status) if matches!(status.code(), tonic::Code::NotFound | tonic::Code::InvalidArgument) => {
            tracing::info!(code = ?status.code(), "no escalations for the organization");
            Vec::new()
        }
        Err(status) => return Err(WebError::from_status(&status, htmx)),
    };
    // Only what is addressed to this organization, whatever the service returned.
    let incidents: Vec<pb::Incident> =
        incidents.into_iter().filter(|i| i.handler_organization_id == session.organization_id).collect();
    let ids: Vec<String> =
        incidents.iter().flat_map(|i| i.appeal_attachment_ids.iter().chain(&i.attachment_ids)).cloned().collect();
    let files = attachments::describe(&api, &ids).await;
    let organizations = if incidents.is_empty() {
        Vec::new()
    } else {
        let request = pb::ListOrganizationsRequest::default();
        api.routing()
            .list_organizations(api.request(request))
            .await
            .map(|r| r.into_inner().organizations)
            .unwrap_or_default()
    };
    Ok(Escalations { incidents, files, organizations })
}

fn render(
    session: &Session,
    page: &Escalations,
    flash: Option<Flash>,
    form_error: &Option<(String, String)>,
) -> Markup {
    let zone = session.time_zone();
    let escalating =
        |id: &str| page.organizations.iter().find(|o| o.id == id).map_or(id.to_owned(), |o| o.short_name.clone());
    html! {
        section #escalations aria-label="Обращения на проверку" {
            @match &flash {
                Some(Flash::Done(text)) => div.flash.done role="status" { (text) },
                Some(Flash::Warning(text)) => div.flash.warning role="alert" { (text) },
                Some(Flash::Error(text)) => div.flash.error role="alert" { (text) },
                None => {},
            }
            @if page.incidents.is_empty() {
                p.empty { "Обращений на проверку нет." }
            }
            @for incident in &page.incidents {
                section.panel.escalation data-incident=(incident.id) aria-label={ "Обращение № " (incident.appeal_number) } {
                    h2 { "Обращение № " (incident.appeal_number) }
                    p.muted { "Направила: " (escalating(&incident.organization_id)) }
                    h3 { "Текст обращения" }
                    div.appeal-text { (incident.appeal_text) }
                    @if !incident.appeal_attachment_ids.is_empty() {
                        h3 { "Файлы обращения" }
                        (attachments::list(&attachments::pick(&page.files, &incident.appeal_attachment_ids), "Файлы обращения"))
                    }
                    (incidents::incident_view(session, incident, &page.files, &page.organizations, zone, Place::Escalations, form_error))
                }
            }
        }
    }
}
