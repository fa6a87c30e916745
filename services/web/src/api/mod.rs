//! The JSON API (`/api/v1/...`): the public parts of the gRPC API over HTTP/JSON, for
//! integrators who cannot use gRPC. Its OpenAPI document is generated from these handlers
//! (`utoipa`), served at `/api/v1/openapi.json`, so the two cannot drift.
//!
//! - Submit an appeal (`POST /appeals`): a partner's key (`X-Api-Key`, the same keys as Open311)
//!   or a platform token (`Authorization: Bearer`).
//! - An appeal's status (`GET /appeals/{id}`, by id or number): the partner's key, a platform
//!   token, or the applicant's appeal link (`X-Appeal-Link`, the secret of the registration
//!   e-mail's link). Each reads only what the services let that caller read.
//! - The classifier, the directory (search), the regions: public, no credential.
//!
//! Errors are JSON: `{"error", "description", "fields": [{"field", "description"}]}`, the fields
//! being intake's field violations under the request body's names.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use pos_platform::appeal_link::LinkKey;
use pos_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::App;
use crate::cabinet::Api;
use crate::open311::limits::{self, DoorLimiter};
use crate::open311::partners::{self, Partner};
use crate::open311::view::{self, Found};
use crate::open311::{DoorState, needs_organization};

/// A submission is a text and a few fields.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// At most this many organizations in one directory answer.
const MAX_ORGANIZATIONS: usize = 100;
/// The longest search string.
const MAX_QUERY_CHARS: usize = 200;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pos JSON API",
        version = "1",
        description = "Платформа обратной связи: подача обращения, его статус, классификатор, справочник организаций и регионы. \
                       The HTTP/JSON mapping of the public parts of the gRPC API."
    ),
    tags(
        (name = "appeals", description = "Submit an appeal and follow its status"),
        (name = "reference", description = "The classifier, the directory of organizations, the regions (public)")
    ),
    modifiers(&Credentials)
)]
struct Document;

/// The ways to authenticate, for the document.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            PARTNER_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Api-Key",
                "The key issued to a partner system (the same as Open311's api_key)",
            ))),
        );
        components.add_security_scheme(BEARER, SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme(APPEAL_LINK, SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-Appeal-Link",
            "The secret of the applicant's link to the appeal (the last part of /appeal/<secret> in the registration e-mail)",
        ))));
    }
}

const PARTNER_KEY: &str = "partner_key";
const BEARER: &str = "bearer";
const APPEAL_LINK: &str = "appeal_link";

/// The API's state: Open311's door (the partners, the web's [`App`]) and the appeal links' key.
#[derive(Clone)]
struct ApiState {
    door: DoorState,
    links: Option<Arc<LinkKey>>,
}

/// The JSON API's routes and its document; merged into the web service's router.
pub fn routes(app: &App) -> Router<App> {
    // The same key the appeal page opens links with (configured, or derived as notify does).
    let links = app.appeal_links.clone().map(Arc::new);
    let state = ApiState { door: DoorState::new(app), links };
    let (router, document) = OpenApiRouter::with_openapi(Document::openapi())
        .routes(routes!(submit_appeal))
        .routes(routes!(appeal_status))
        .routes(routes!(classifier))
        .routes(routes!(organizations))
        .routes(routes!(regions))
        .split_for_parts();
    let document = Arc::new(document.to_json().unwrap_or_default());
    router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], document.as_str().to_owned()) }
            }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(DoorLimiter::new(app), limited))
        .with_state(state)
}

/// Over its quota, a client gets a problem with `Retry-After` (every operation documents 429).
async fn limited(
    State(limiter): State<Arc<DoorLimiter>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match limiter.check(&request) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            tracing::info!(target: "security", path = %request.uri().path(), "json api rate limited by ip");
            let response = problem(StatusCode::TOO_MANY_REQUESTS, "too many requests; retry later", Vec::new());
            limits::with_retry_after(response, wait)
        }
    }
}

/// The document as served, for tests and tools.
pub fn document() -> String {
    let (_, document) = OpenApiRouter::<ApiState>::with_openapi(Document::openapi())
        .routes(routes!(submit_appeal))
        .routes(routes!(appeal_status))
        .routes(routes!(classifier))
        .routes(routes!(organizations))
        .routes(routes!(regions))
        .split_for_parts();
    document.to_json().unwrap_or_default()
}

/// What went wrong, with the offending fields.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A stable code: `invalid_argument`, `unauthenticated`, `permission_denied`, `not_found`,
    /// `conflict`, `too_many_requests`, `unavailable`.
    error: String,
    description: String,
    /// The request's fields at fault (`applicant.email`, `fact_id`, ...).
    fields: Vec<FieldError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldError {
    field: String,
    description: String,
}

fn problem(status: StatusCode, description: &str, fields: Vec<FieldError>) -> Response {
    let error = match status {
        StatusCode::BAD_REQUEST => "invalid_argument",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::FORBIDDEN => "permission_denied",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        _ => "unavailable",
    };
    let body = Problem { error: error.into(), description: description.into(), fields };
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn invalid(field: &str, description: &str) -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        &format!("{field}: {description}"),
        vec![FieldError { field: field.into(), description: description.into() }],
    )
}

fn unavailable() -> Response {
    problem(StatusCode::SERVICE_UNAVAILABLE, "the platform cannot be reached; retry later", Vec::new())
}

/// A service's failure: intake's field violations become `fields`; the platform's own failures
/// say only that it cannot answer (the details are in the log).
fn upstream(status: &tonic::Status) -> Response {
    let code = view::http_status(status);
    if code.is_server_error() {
        tracing::warn!(code = ?status.code(), message = %status.message(), "api: a service call failed");
        return problem(code, "the platform cannot answer now; retry later", Vec::new());
    }
    let fields = tonic_types::StatusExt::get_details_bad_request(status)
        .map(|b| b.field_violations)
        .unwrap_or_default()
        .into_iter()
        .map(|v| FieldError { field: v.field, description: v.description })
        .collect();
    problem(code, status.message(), fields)
}

/// Who is calling.
enum Caller {
    Partner(Partner),
    /// A platform token, passed on as it is: the services check it.
    Bearer(String),
    /// The applicant's link: acts as the applicant, on that appeal only.
    Link {
        appeal_id: String,
        subject: String,
    },
}

/// A credential that came but is not valid: 401 with what is wrong with it.
struct BadCredential(&'static str);

impl IntoResponse for BadCredential {
    fn into_response(self) -> Response {
        problem(StatusCode::UNAUTHORIZED, self.0, Vec::new())
    }
}

fn caller(state: &ApiState, headers: &HeaderMap) -> Result<Option<Caller>, BadCredential> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    if let Some(key) = header("x-api-key") {
        return match state.door.partners.find(key) {
            Some(partner) => Ok(Some(Caller::Partner(partner.clone()))),
            None => {
                tracing::info!(target: "security", "api request with an unknown partner key refused");
                Err(BadCredential("X-Api-Key: not a key issued to a partner"))
            }
        };
    }
    if let Some(authorization) = header("authorization") {
        return match authorization.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty()) {
            Some(token) => Ok(Some(Caller::Bearer(token.to_owned()))),
            None => Err(BadCredential("Authorization: expected Bearer <platform token>")),
        };
    }
    if let Some(link) = header("x-appeal-link") {
        let granted = state.links.as_ref().and_then(|key| key.verify(link, Utc::now().timestamp()).ok());
        return match granted {
            Some(link) => Ok(Some(Caller::Link { appeal_id: link.appeal_id, subject: link.subject })),
            None => Err(BadCredential("X-Appeal-Link: not a valid appeal link")),
        };
    }
    Ok(None)
}

fn no_credential() -> Response {
    problem(StatusCode::UNAUTHORIZED, "a credential is required: X-Api-Key or Authorization: Bearer", Vec::new())
}

/// An appeal as submitted through the API.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AppealSubmission {
    /// The client's idempotency key (1..128 characters): the same key returns the first answer
    /// and registers nothing new.
    #[schema(example = "b6f7c2de-6c1f-4b0e-9d53-1f7e2c8a9a10")]
    request_id: String,
    /// The applicant's region, a two-digit code (GET /api/v1/regions).
    #[schema(example = "41")]
    region_code: String,
    /// The fact of the classifier (GET /api/v1/classifier).
    #[schema(example = "education.e-diary.access")]
    fact_id: String,
    /// The organization the applicant picked (GET /api/v1/organizations), required when the
    /// fact says `needs_organization`.
    #[serde(default)]
    picked_organization_id: String,
    /// The message.
    text: String,
    /// Where the problem is, if it has a place.
    #[serde(default)]
    problem_address: String,
    applicant: ApplicantIn,
    /// Whether the applicant agrees that the appeal may be published.
    #[serde(default)]
    public: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ApplicantIn {
    #[schema(example = "Петров Иван Сергеевич")]
    full_name: String,
    /// Where the registration, the status changes and the answer are sent.
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
}

/// The registered appeal.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    appeal_id: String,
    /// The platform number shown to people.
    number: i64,
    /// ISO 8601 with the region's offset.
    registered_at: String,
}

// No response link to the status operation: utoipa 5.5 writes a link's `operationId` as
// `operation_id`, which the document's validation rejects; the id is in the 201 body.
/// Submit an appeal.
///
/// Registers the appeal; routing then decides which organization answers it and by when. The
/// same `request_id` again returns the first answer.
#[utoipa::path(
    post,
    path = "/api/v1/appeals",
    tag = "appeals",
    request_body(content = AppealSubmission, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 400, description = "A field is wrong", body = Problem),
        (status = 401, description = "No or an invalid credential", body = Problem),
        (status = 403, description = "The credential may not submit", body = Problem),
        (status = 409, description = "The request_id was used for another appeal", body = Problem),
        (status = 429, description = "Too many requests from this client; see Retry-After", body = Problem),
        (status = 503, description = "The platform cannot answer now", body = Problem),
    ),
    security(("partner_key" = []), ("bearer" = []))
)]
async fn submit_appeal(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    // The caller first: nothing of the body is looked at for a caller we do not know.
    let (token, source) = match caller(&state, &headers) {
        Ok(Some(Caller::Partner(partner))) => (None, Some(partner)),
        Ok(Some(Caller::Bearer(token))) => (Some(token), None),
        Ok(Some(Caller::Link { .. })) => {
            return problem(StatusCode::FORBIDDEN, "an appeal link reads its appeal; it does not submit", Vec::new());
        }
        Ok(None) => return no_credential(),
        Err(refusal) => return refusal.into_response(),
    };
    let submission: AppealSubmission = match serde_json::from_slice(&body) {
        Ok(submission) => submission,
        Err(error) => return invalid("body", &format!("not an appeal submission: {error}")),
    };
    let token = match (token, &source) {
        (Some(token), _) => token,
        (None, Some(partner)) => {
            match partners::applicant_token(
                state.door.app.citizen_minter.as_ref(),
                &partner.subject(),
                &submission.region_code,
            ) {
                Some(token) => token,
                None => return unavailable(),
            }
        }
        (None, None) => return no_credential(),
    };
    let region_code = submission.region_code.clone();
    let request = pb::SubmitAppealRequest {
        request_id: submission.request_id,
        source: source.map(|p| p.source).unwrap_or(pb::Source::ExternalSystem) as i32,
        applicant: Some(pb::Applicant {
            full_name: submission.applicant.full_name,
            email: submission.applicant.email,
            phone: submission.applicant.phone,
            account_id: String::new(),
        }),
        region_code: submission.region_code,
        fact_id: submission.fact_id,
        picked_organization_id: submission.picked_organization_id,
        text: submission.text,
        problem_address: submission.problem_address,
        public: submission.public,
        ..Default::default()
    };
    let api = Api::with_token(&state.door.app, &token);
    match api.intake().submit_appeal(api.request(request)).await {
        Ok(response) => {
            let response = response.into_inner();
            tracing::info!(appeal_id = %response.appeal_id, number = response.number, "appeal submitted through the json api");
            let registered_at = response
                .registered_at
                .as_ref()
                .and_then(pos_proto::time::from_proto)
                .map(|at| view::local_iso(at, &region_code))
                .unwrap_or_default();
            let location = format!("/api/v1/appeals/{}", response.appeal_id);
            let body = Registered { appeal_id: response.appeal_id, number: response.number, registered_at };
            let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(status) => upstream(&status),
    }
}

/// An appeal as its applicant or the submitting partner follows it. No name, e-mail or phone:
/// the text and address are masked (passport and SNILS numbers).
#[derive(Debug, Serialize, ToSchema)]
pub struct AppealStatus {
    appeal_id: String,
    number: i64,
    /// `open` until the organization's answer went out (or the appeal was rejected); a re-review
    /// opens it again.
    state: OpenClosed,
    /// The status as the services name it: `registered`, `routed`, `new`, `in work`, `answered`,
    /// `returned for re-review`, ...
    status: String,
    /// The status in plain Russian.
    status_text: String,
    fact_id: String,
    region_code: String,
    /// The organization answering it; none until routed.
    organization: Option<OrganizationRef>,
    text: String,
    problem_address: String,
    /// ISO 8601 with the region's offset.
    registered_at: Option<String>,
    updated_at: Option<String>,
    answer_due: Option<String>,
    /// The organization's answer, once it went out.
    answer: Option<AnswerOut>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OpenClosed {
    Open,
    Closed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationRef {
    id: String,
    short_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnswerOut {
    /// `resolved`, `not_resolved`, `postponed`, `rejected`.
    r#type: String,
    text: String,
}

fn appeal_status_of(found: &Found) -> AppealStatus {
    let region = &found.appeal.region_code;
    let iso = |at: Option<chrono::DateTime<Utc>>| at.map(|at| view::local_iso(at, region));
    let organization = match &found.ticket {
        Some(ticket) => ticket.organization.as_ref(),
        None => found.appeal.routing.as_ref().and_then(|r| r.organization.as_ref()),
    };
    AppealStatus {
        appeal_id: found.appeal.id.clone(),
        number: found.appeal.number,
        state: if found.closed() { OpenClosed::Closed } else { OpenClosed::Open },
        status: found.status().to_owned(),
        status_text: view::status_words(found.status()).to_owned(),
        fact_id: found.appeal.fact_id.clone(),
        region_code: region.clone(),
        organization: organization.map(|o| OrganizationRef { id: o.id.clone(), short_name: o.short_name.clone() }),
        text: found.appeal.public_text.clone(),
        problem_address: found.appeal.problem_address.clone(),
        registered_at: iso(found.registered_at()),
        updated_at: iso(found.updated_at()),
        answer_due: iso(found.answer_due()),
        answer: found.answer().map(|answer| AnswerOut {
            r#type: pb::events::AnswerType::try_from(answer.r#type)
                .map(|t| t.as_str_name().trim_start_matches("ANSWER_TYPE_").to_ascii_lowercase())
                .unwrap_or_default(),
            text: answer.text.clone(),
        }),
    }
}

/// An appeal's status.
///
/// By the appeal's id or its number. A partner reads the appeals it submitted; an applicant's
/// link reads its own appeal; a platform token what the services let it read. Anything else is
/// not found.
#[utoipa::path(
    get,
    path = "/api/v1/appeals/{id}",
    tag = "appeals",
    params(("id" = String, Path, description = "The appeal's id or its platform number")),
    responses(
        (status = 200, description = "The appeal", body = AppealStatus),
        (status = 401, description = "No or an invalid credential", body = Problem),
        (status = 404, description = "Not found among what the caller may read", body = Problem),
        (status = 429, description = "Too many requests from this client; see Retry-After", body = Problem),
        (status = 503, description = "The platform cannot answer now", body = Problem),
    ),
    security(("partner_key" = []), ("bearer" = []), ("appeal_link" = []))
)]
async fn appeal_status(State(state): State<ApiState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let minter = state.door.app.citizen_minter.as_ref();
    let (token, only) = match caller(&state, &headers) {
        Ok(Some(Caller::Partner(partner))) => (partners::applicant_token(minter, &partner.subject(), ""), None),
        Ok(Some(Caller::Bearer(token))) => (Some(token), None),
        Ok(Some(Caller::Link { appeal_id, subject })) => {
            (partners::applicant_token(minter, &subject, ""), Some(appeal_id))
        }
        Ok(None) => return no_credential(),
        Err(refusal) => return refusal.into_response(),
    };
    let Some(token) = token else {
        return unavailable();
    };
    let not_found = || problem(StatusCode::NOT_FOUND, "no such appeal among those the credential may read", Vec::new());
    let api = Api::with_token(&state.door.app, &token);
    match view::lookup(&api, id.trim()).await {
        // A link opens its own appeal only, even if its applicant has others.
        Ok(Some(found)) if only.as_ref().is_none_or(|only| *only == found.appeal.id) => {
            axum::Json(appeal_status_of(&found)).into_response()
        }
        Ok(_) => not_found(),
        Err(status) => upstream(&status),
    }
}

/// The classifier: category → subcategory → fact.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClassifierOut {
    /// Changes whenever the tree changes.
    version: i64,
    categories: Vec<CategoryOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryOut {
    id: String,
    name: String,
    subcategories: Vec<SubcategoryOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubcategoryOut {
    id: String,
    name: String,
    facts: Vec<FactOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FactOut {
    id: String,
    name: String,
    /// The appeal must name the organization the applicant picked (`picked_organization_id`),
    /// of `organization_type`.
    needs_organization: bool,
    organization_type: Option<OrganizationKind>,
    /// Review period; 0 means the region's standard (or fast-track) period.
    period_days: i32,
    working_days: bool,
}

/// The kinds of organizations in the directory.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OrganizationKind {
    School,
    College,
    MunicipalEducationDepartment,
    RegionalMinistry,
    RegionalCenter,
    RegionalCabinet,
    FederalAgency,
    Clinic,
    Other,
}

impl OrganizationKind {
    fn from_proto(kind: i32) -> Option<OrganizationKind> {
        Some(match pb::OrganizationType::try_from(kind).ok()? {
            pb::OrganizationType::Unspecified => return None,
            pb::OrganizationType::School => OrganizationKind::School,
            pb::OrganizationType::College => OrganizationKind::College,
            pb::OrganizationType::MunicipalEducationDepartment => OrganizationKind::MunicipalEducationDepartment,
            pb::OrganizationType::RegionalMinistry => OrganizationKind::RegionalMinistry,
            pb::OrganizationType::RegionalCenter => OrganizationKind::RegionalCenter,
            pb::OrganizationType::RegionalCabinet => OrganizationKind::RegionalCabinet,
            pb::OrganizationType::FederalAgency => OrganizationKind::FederalAgency,
            pb::OrganizationType::Clinic => OrganizationKind::Clinic,
            pb::OrganizationType::Other => OrganizationKind::Other,
        })
    }

    fn to_proto(self) -> pb::OrganizationType {
        match self {
            OrganizationKind::School => pb::OrganizationType::School,
            OrganizationKind::College => pb::OrganizationType::College,
            OrganizationKind::MunicipalEducationDepartment => pb::OrganizationType::MunicipalEducationDepartment,
            OrganizationKind::RegionalMinistry => pb::OrganizationType::RegionalMinistry,
            OrganizationKind::RegionalCenter => pb::OrganizationType::RegionalCenter,
            OrganizationKind::RegionalCabinet => pb::OrganizationType::RegionalCabinet,
            OrganizationKind::FederalAgency => pb::OrganizationType::FederalAgency,
            OrganizationKind::Clinic => pb::OrganizationType::Clinic,
            OrganizationKind::Other => pb::OrganizationType::Other,
        }
    }
}

/// A token for the public reads; none when the web cannot mint.
fn public_api(state: &ApiState) -> Option<String> {
    partners::public_token(state.door.app.citizen_minter.as_ref())
}

/// The classifier.
///
/// The active categories, subcategories and facts: what an appeal can be about, and for each
/// fact whether the applicant must pick the organization.
#[utoipa::path(
    get,
    path = "/api/v1/classifier",
    tag = "reference",
    responses(
        (status = 200, description = "The classifier", body = ClassifierOut),
        (status = 429, description = "Too many requests from this client; see Retry-After", body = Problem),
        (status = 503, description = "The platform cannot answer now", body = Problem),
    )
)]
async fn classifier(State(state): State<ApiState>) -> Response {
    let Some(token) = public_api(&state) else {
        return unavailable();
    };
    let classifier = match Api::with_token(&state.door.app, &token).classifier().await {
        Ok(classifier) => classifier,
        Err(status) => return upstream(&status),
    };
    let fact = |f: &pb::Fact| FactOut {
        id: f.id.clone(),
        name: f.name.clone(),
        needs_organization: needs_organization(f),
        organization_type: f
            .addressee
            .as_ref()
            .filter(|_| needs_organization(f))
            .and_then(|a| OrganizationKind::from_proto(a.organization_type)),
        period_days: f.period_days,
        working_days: f.working_days,
    };
    let categories = classifier
        .categories
        .iter()
        .filter(|c| c.active)
        .map(|c| CategoryOut {
            id: c.id.clone(),
            name: c.name.clone(),
            subcategories: classifier
                .subcategories
                .iter()
                .filter(|s| s.active && s.category_id == c.id)
                .map(|s| SubcategoryOut {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    facts: classifier.facts.iter().filter(|f| f.active && f.subcategory_id == s.id).map(fact).collect(),
                })
                .collect(),
        })
        .collect();
    axum::Json(ClassifierOut { version: classifier.version, categories }).into_response()
}

/// A directory search: at least one of `region_code`, `parent_id`, `query`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrganizationsQuery {
    /// The region, a two-digit code.
    region_code: Option<String>,
    /// The kind of organization.
    #[param(inline)]
    r#type: Option<OrganizationKind>,
    /// The parent organization's id: its direct subordinates.
    parent_id: Option<String>,
    /// A part of the full or short name, any case.
    query: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationOut {
    id: String,
    full_name: String,
    short_name: String,
    address: String,
    region_code: String,
    parent_id: String,
    r#type: Option<OrganizationKind>,
    /// Onboarded: its appeals reach it (otherwise they go to its nearest connected ancestor).
    connected: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationsOut {
    organizations: Vec<OrganizationOut>,
    /// More matched than were returned: narrow the search.
    truncated: bool,
}

/// Search the directory of organizations.
///
/// For the organization an appeal's applicant picks (a school, a college, ...). At most 100 are
/// returned; `truncated` says when more matched.
#[utoipa::path(
    get,
    path = "/api/v1/organizations",
    tag = "reference",
    params(OrganizationsQuery),
    responses(
        (status = 200, description = "The organizations found", body = OrganizationsOut),
        (status = 400, description = "A parameter is wrong", body = Problem),
        (status = 429, description = "Too many requests from this client; see Retry-After", body = Problem),
        (status = 503, description = "The platform cannot answer now", body = Problem),
    )
)]
async fn organizations(State(state): State<ApiState>, RawQuery(query): RawQuery) -> Response {
    let query: OrganizationsQuery = match serde_urlencoded::from_str(query.as_deref().unwrap_or_default()) {
        Ok(query) => query,
        Err(error) => return invalid("query", &format!("not a directory search: {error}")),
    };
    let text = |value: &Option<String>| value.as_deref().map(str::trim).unwrap_or_default().to_owned();
    let (region_code, parent_id, search) = (text(&query.region_code), text(&query.parent_id), text(&query.query));
    for (field, value) in [("region_code", &region_code), ("parent_id", &parent_id), ("query", &search)] {
        if value.chars().count() > MAX_QUERY_CHARS {
            return invalid(field, &format!("at most {MAX_QUERY_CHARS} characters"));
        }
        if value.chars().any(char::is_control) {
            return invalid(field, "must not contain control characters");
        }
    }
    if !region_code.is_empty() && !pos_regions::is_known(&region_code) {
        return invalid("region_code", "unknown region: a two-digit code, e.g. \"41\" (GET /api/v1/regions)");
    }
    if region_code.is_empty() && parent_id.is_empty() && search.is_empty() {
        return invalid("region_code", "give region_code, parent_id or query: the whole directory is not listed");
    }
    let Some(token) = public_api(&state) else {
        return unavailable();
    };
    let api = Api::with_token(&state.door.app, &token);
    let request = pb::ListOrganizationsRequest {
        region_code,
        r#type: query.r#type.map(|k| k.to_proto() as i32).unwrap_or_default(),
        parent_id,
        query: search,
    };
    let found = match api.routing().list_organizations(api.request(request)).await {
        Ok(response) => response.into_inner().organizations,
        Err(status) => return upstream(&status),
    };
    let truncated = found.len() > MAX_ORGANIZATIONS;
    let organizations = found
        .into_iter()
        .take(MAX_ORGANIZATIONS)
        .map(|o| OrganizationOut {
            r#type: OrganizationKind::from_proto(o.r#type),
            id: o.id,
            full_name: o.full_name,
            short_name: o.short_name,
            address: o.address,
            region_code: o.region_code,
            parent_id: o.parent_id,
            connected: o.connected,
        })
        .collect();
    axum::Json(OrganizationsOut { organizations, truncated }).into_response()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegionOut {
    #[schema(example = "41")]
    code: String,
    name: String,
    /// IANA zone, e.g. `Asia/Kamchatka`: deadlines end at its local midnight.
    time_zone: String,
}

/// The regions.
///
/// The subjects of the Russian Federation the platform serves, with their time zones.
#[utoipa::path(
    get,
    path = "/api/v1/regions",
    tag = "reference",
    responses(
        (status = 200, description = "The regions", body = Vec<RegionOut>),
        (status = 429, description = "Too many requests from this client; see Retry-After", body = Problem),
        (status = 503, description = "The platform cannot answer now", body = Problem),
    )
)]
async fn regions(State(state): State<ApiState>) -> Response {
    let Some(token) = public_api(&state) else {
        return unavailable();
    };
    let api = Api::with_token(&state.door.app, &token);
    match api.routing().list_regions(api.request(pb::ListRegionsRequest {})).await {
        Ok(response) => axum::Json(
            response
                .into_inner()
                .regions
                .into_iter()
                .map(|r| RegionOut { code: r.code, name: r.name, time_zone: r.time_zone })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(status) => upstream(&status),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_lists_every_route_and_credential() {
        let document: serde_json::Value = serde_json::from_str(&super::document()).unwrap();
        let paths = document["paths"].as_object().unwrap();
        for path in [
            "/api/v1/appeals",
            "/api/v1/appeals/{id}",
            "/api/v1/classifier",
            "/api/v1/organizations",
            "/api/v1/regions",
        ] {
            assert!(paths.contains_key(path), "{path} documented");
        }
        let schemes = document["components"]["securitySchemes"].as_object().unwrap();
        assert_eq!(schemes.len(), 3, "{schemes:?}");
        assert!(
            document["components"]["schemas"]["AppealSubmission"]["required"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("request_id"))
        );
    }
}
