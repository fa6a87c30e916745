//! The organization's cabinet: sign-in, folders and list, card, workflow commands, reports.

pub mod attachments;
mod card;
mod commands;
mod escalations;
mod incidents;
mod list;
mod onboarding;
pub mod pages;
mod provider;
pub mod report;
mod report_export;
mod sign_in;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use pos_platform::auth::Role;
use pos_proto::v1 as pb;
use pos_proto::v1::intake_service_client::IntakeServiceClient;
use pos_proto::v1::routing_service_client::RoutingServiceClient;
use pos_proto::v1::sla_service_client::SlaServiceClient;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;
use tonic::transport::Channel;

use crate::App;
use crate::session::Session;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/cabinet", get(list::page))
        .route("/cabinet/sign-in", get(sign_in::page).post(sign_in::submit))
        .route("/cabinet/sign-out", post(sign_in::sign_out))
        .route("/cabinet/sign-in/start", get(provider::start))
        .route("/cabinet/sign-in/callback", get(provider::callback))
        .route("/cabinet/tickets/{id}", get(card::page))
        .route(
            "/cabinet/tickets/{id}/{command}",
            post(commands::run).layer(DefaultBodyLimit::max(attachments::MAX_MULTIPART_BYTES)),
        )
        .route(
            "/cabinet/tickets/{id}/open-incident",
            post(incidents::open).layer(DefaultBodyLimit::max(attachments::MAX_MULTIPART_BYTES)),
        )
        .route(
            "/cabinet/incidents/{id}/{step}",
            post(incidents::step).layer(DefaultBodyLimit::max(attachments::MAX_MULTIPART_BYTES)),
        )
        .route("/cabinet/incidents/supervisors", get(incidents::supervisors))
        .route("/cabinet/escalations", get(escalations::page))
        .route("/cabinet/organizations", get(commands::organization_options))
        .route("/cabinet/attachments/{id}", get(attachments::download))
        .route("/cabinet/onboarding", get(onboarding::page))
        .route("/cabinet/onboarding/{step}", post(onboarding::confirm))
        .route("/cabinet/reports", get(report::page))
        .route("/cabinet/reports.csv", get(report_export::csv))
        .route("/cabinet/reports.xlsx", get(report_export::xlsx))
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum WebError {
    /// No session (or an expired one): sign in first.
    SignIn {
        htmx: bool,
    },
    Forbidden(&'static str),
    /// A head or coordinator of an organization that is not connected: confirm onboarding first.
    Onboarding {
        htmx: bool,
    },
    NotFound,
    Unavailable,
    Internal(String),
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::SignIn { htmx: true } => {
                // htmx follows redirects inside its request; this header makes the whole page go.
                (StatusCode::OK, [("hx-redirect", "/cabinet/sign-in")]).into_response()
            }
            WebError::SignIn { htmx: false } => axum::response::Redirect::to("/cabinet/sign-in").into_response(),
            WebError::Forbidden(why) => pages::error(StatusCode::FORBIDDEN, "Нет доступа", why),
            WebError::Onboarding { htmx: true } => {
                (StatusCode::OK, [("hx-redirect", "/cabinet/onboarding")]).into_response()
            }
            WebError::Onboarding { htmx: false } => axum::response::Redirect::to("/cabinet/onboarding").into_response(),
            WebError::NotFound => {
                pages::error(StatusCode::NOT_FOUND, "Не найдено", "Такого сообщения или страницы нет.")
            }
            WebError::Unavailable => pages::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Сервис временно недоступен",
                "Повторите попытку через минуту.",
            ),
            WebError::Internal(detail) => {
                tracing::error!(%detail, "cabinet page failed");
                pages::error(StatusCode::INTERNAL_SERVER_ERROR, "Ошибка", "Не удалось показать страницу.")
            }
        }
    }
}

impl WebError {
    /// A failed call to a service, as the person sees it.
    pub fn from_status(status: &tonic::Status, htmx: bool) -> WebError {
        use tonic::Code;
        match status.code() {
            Code::Unauthenticated => WebError::SignIn { htmx },
            Code::PermissionDenied => WebError::Forbidden("Это сообщение или действие вам недоступно."),
            Code::NotFound => WebError::NotFound,
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => WebError::Unavailable,
            Code::Ok
            | Code::Cancelled
            | Code::Unknown
            | Code::InvalidArgument
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Internal
            | Code::DataLoss => WebError::Internal(format!("{}: {}", status.code(), status.message())),
        }
    }
}

/// Whether htmx asks for a part of a page. Restoring history asks for a whole one.
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request") && !headers.contains_key("hx-history-restore-request")
}

/// The signed-in staff member, or a redirect to the sign-in (or, for the head or coordinator of
/// an organization not connected yet, to the onboarding confirmation). Only the cabinet's roles
/// get in.
pub async fn signed_in(app: &App, headers: &HeaderMap) -> Result<Session, WebError> {
    let session = session_of(app, headers).await?;
    onboarding::gate(app, &session, is_htmx(headers)).await?;
    Ok(session)
}

/// The signed-in staff member, whatever the organization's onboarding.
async fn session_of(app: &App, headers: &HeaderMap) -> Result<Session, WebError> {
    let htmx = is_htmx(headers);
    let id = crate::session::cookie(headers, app.cookies.session_name()).ok_or(WebError::SignIn { htmx })?;
    let session = app.sessions.get(id).await.ok_or(WebError::SignIn { htmx })?;
    let session = provider::renewed(app, id, session, htmx).await?;
    if !session.has_any(&Role::STAFF) || session.organization_id.is_empty() {
        return Err(WebError::Forbidden("Кабинет организации открыт только её сотрудникам."));
    }
    Ok(session)
}

/// The services' clients, each call carrying the person's token.
pub struct Api<'a> {
    channel: &'a Channel,
    token: &'a str,
}

impl<'a> Api<'a> {
    pub fn new(app: &'a App, session: &'a Session) -> Api<'a> {
        Api { channel: &app.channel, token: &session.token }
    }

    pub fn with_token(app: &'a App, token: &'a str) -> Api<'a> {
        Api { channel: &app.channel, token }
    }

    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        pos_platform::grpc::outgoing(message, self.token)
    }

    pub fn ticketing(&self) -> TicketingServiceClient<Channel> {
        TicketingServiceClient::new(self.channel.clone())
    }

    pub fn routing(&self) -> RoutingServiceClient<Channel> {
        RoutingServiceClient::new(self.channel.clone())
    }

    pub fn sla(&self) -> SlaServiceClient<Channel> {
        SlaServiceClient::new(self.channel.clone())
    }

    pub fn intake(&self) -> IntakeServiceClient<Channel> {
        IntakeServiceClient::new(self.channel.clone())
    }

    /// The first page of a folder, with the counts of every folder.
    pub async fn list(&self, request: pb::ListTicketsRequest) -> Result<pb::ListTicketsResponse, tonic::Status> {
        Ok(self.ticketing().list_tickets(self.request(request)).await?.into_inner())
    }

    pub async fn classifier(&self) -> Result<pb::Classifier, tonic::Status> {
        Ok(self.routing().list_classifier(self.request(pb::ListClassifierRequest {})).await?.into_inner())
    }
}

/// Every folder's count for the organization (ListTickets counts on its first page).
pub async fn folder_counts(api: &Api<'_>, session: &Session) -> Vec<pb::FolderCount> {
    let request = pb::ListTicketsRequest {
        organization_id: session.organization_id.clone(),
        folder: pb::Folder::New as i32,
        page_size: 1,
        ..Default::default()
    };
    match api.list(request).await {
        Ok(response) => response.folder_counts,
        Err(status) => {
            tracing::warn!(code = ?status.code(), "folder counts unavailable");
            Vec::new()
        }
    }
}
