//! Open311 GeoReport v2 (`/open311/v2/...`), so that existing Open311 clients (FixMyStreet and
//! the apps built for it) can send appeals to pos and follow them. The mapping is in
//! `docs/open311.md`: a service is a fact of the classifier, a jurisdiction is a region,
//! `service_request_id` is the platform number.
//!
//! - `discovery`, `services`, `services/<fact>`: public reads, no key.
//! - `requests` POST: a partner's `api_key` (see [`partners`]) → intake's SubmitAppeal, as the
//!   partner's own applicant account, so a retry registers one appeal and the partner alone
//!   reads it back.
//! - `requests` GET, `requests/<number>`, `tokens/<appeal id>`: the partner's key again; only
//!   its own requests.
//!
//! Every file comes as `.json` and `.xml`. Errors are Open311's `[{"code", "description"}]`.
//! Like the rest of the web, nothing is decided here: the services check each call.

pub mod config;
pub mod format;
pub mod limits;
pub mod partners;
pub mod view;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use futures::future::join_all;
use http::{HeaderMap, StatusCode};
use pos_proto::v1 as pb;
use serde_json::{Value, json};

pub use config::Open311Config;
use format::Format;
use partners::{Partner, Partners};
use view::Found;

use crate::App;
use crate::cabinet::Api;

/// A request's form is small: a description and a few fields.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// At most this many requests in one GET requests answer (the newest first).
const MAX_LISTED: i32 = 200;
/// How many appeals of a list are read at once.
const CONCURRENT_CALLS: usize = 8;
/// The attribute of a fact addressed to the organization the applicant picks.
pub const ORGANIZATION_ATTRIBUTE: &str = "organization_id";
/// Above this many organizations in a jurisdiction, the attribute is a free string (their ids
/// come from the JSON API's directory search) rather than a list of values.
const MAX_LISTED_VALUES: usize = 500;
/// The longest client token (`request_id`) a partner may send for idempotency.
const MAX_CLIENT_TOKEN_CHARS: usize = 100;
/// When this Open311 interface last changed, for discovery's `changeset`.
const CHANGESET: &str = "2026-12-07T00:00:00Z";

/// Open311's state: the web's [`App`] and the partners.
pub struct Door {
    pub app: App,
    pub partners: Partners,
}

#[derive(Clone)]
pub struct DoorState(Arc<Door>);

impl std::ops::Deref for DoorState {
    type Target = Door;
    fn deref(&self) -> &Door {
        &self.0
    }
}

impl DoorState {
    pub fn new(app: &App) -> DoorState {
        let partners = Partners::from_config(&app.config.open311);
        DoorState(Arc::new(Door { app: app.clone(), partners }))
    }

    /// The partner whose key came with the request (`api_key` in the query or form, or the
    /// `X-Api-Key` header).
    pub fn partner(&self, headers: &HeaderMap, fields: &[(String, String)]) -> Option<&Partner> {
        let key = field(fields, "api_key")
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .unwrap_or_default();
        self.partners.find(key.trim())
    }

    fn minter(&self) -> Option<&Arc<pos_platform::auth::Authenticator>> {
        self.app.citizen_minter.as_ref()
    }
}

/// Open311's routes, with their own state; merged into the web service's router.
pub fn routes(app: &App) -> Router<App> {
    let state = DoorState::new(app);
    Router::new()
        .route("/open311/v2/{file}", get(top_level).post(post_requests))
        .route("/open311/v2/services/{file}", get(service_definition))
        .route("/open311/v2/requests/{file}", get(one_request))
        .route("/open311/v2/tokens/{file}", get(token))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(limits::DoorLimiter::new(app), limited))
        .with_state(state)
}

/// Over its quota, a client gets Open311's error body with `Retry-After`.
async fn limited(
    State(limiter): State<Arc<limits::DoorLimiter>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match limiter.check(&request) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            tracing::info!(target: "security", path = %request.uri().path(), "open311 rate limited by ip");
            let format = if request.uri().path().ends_with(".xml") { Format::Xml } else { Format::Json };
            let response = format::error(format, StatusCode::TOO_MANY_REQUESTS, "too many requests; retry later");
            limits::with_retry_after(response, wait)
        }
    }
}

/// The fields of a query string or a URL-encoded form; None when it is not one.
pub fn fields_of(raw: &[u8]) -> Option<Vec<(String, String)>> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(raw).ok()
}

pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

fn non_empty<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    field(fields, name).map(str::trim).filter(|v| !v.is_empty())
}

/// `discovery`, `services` and GET `requests`, in either format.
async fn top_level(
    State(state): State<DoorState>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some((stem, format)) = Format::split(&file) else {
        return format::error(Format::Json, StatusCode::NOT_FOUND, "no such Open311 resource: use .json or .xml");
    };
    let Some(fields) = fields_of(query.unwrap_or_default().as_bytes()) else {
        return format::error(format, StatusCode::BAD_REQUEST, "the query string is not URL-encoded");
    };
    match stem {
        "discovery" => discovery(&state, format),
        "services" => services(&state, format, &fields).await,
        "requests" => list_requests(&state, format, &headers, &fields).await,
        _ => format::error(format, StatusCode::NOT_FOUND, "no such Open311 resource"),
    }
}

fn discovery(state: &DoorState, format: Format) -> Response {
    let base = state.app.config.public_base();
    let contact = state.app.config.open311.contact.trim();
    let value = json!({
        "changeset": CHANGESET,
        "contact": if contact.is_empty() { "Оператор платформы обратной связи" } else { contact },
        "key_service": "Ключ API (api_key) для отправки и чтения заявок выдаёт оператор платформы; \
                        перечень услуг читается без ключа.",
        "endpoints": [{
            "specification": "http://wiki.open311.org/GeoReport_v2",
            "url": format!("{base}/open311/v2"),
            "changeset": CHANGESET,
            "type": "production",
            "formats": ["application/json", "text/xml"],
        }],
    });
    format::respond(format, StatusCode::OK, "discovery", &value)
}

/// The jurisdiction a request names, checked; the default when it names none.
fn jurisdiction(state: &DoorState, fields: &[(String, String)]) -> Result<Option<String>, String> {
    match non_empty(fields, "jurisdiction_id") {
        Some(code) if pos_regions::is_known(code) => Ok(Some(code.to_owned())),
        Some(code) => {
            Err(format!("jurisdiction_id: unknown region {:?} (a two-digit region code, e.g. \"41\")", truncate(code)))
        }
        None => {
            let default = state.app.config.open311.default_jurisdiction.trim();
            Ok((!default.is_empty()).then(|| default.to_owned()))
        }
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The classifier, read as the public reader.
async fn classifier(state: &DoorState) -> Result<pb::Classifier, Response> {
    let token = partners::public_token(state.minter()).ok_or_else(unavailable)?;
    Api::with_token(&state.app, &token).classifier().await.map_err(|status| {
        tracing::warn!(code = ?status.code(), message = %status.message(), "open311: classifier unavailable");
        upstream(Format::Json, &status)
    })
}

fn unavailable() -> Response {
    format::error(Format::Json, StatusCode::SERVICE_UNAVAILABLE, "the platform cannot be reached; retry later")
}

/// A service's group: its category and subcategory, as the applicant reads them.
struct Tree<'a> {
    categories: HashMap<&'a str, &'a pb::Category>,
    subcategories: HashMap<&'a str, &'a pb::Subcategory>,
}

impl<'a> Tree<'a> {
    fn new(classifier: &'a pb::Classifier) -> Tree<'a> {
        Tree {
            categories: classifier.categories.iter().map(|c| (c.id.as_str(), c)).collect(),
            subcategories: classifier.subcategories.iter().map(|s| (s.id.as_str(), s)).collect(),
        }
    }

    /// The fact's category and subcategory, when the fact and both of them are active.
    fn parents(&self, fact: &pb::Fact) -> Option<(&'a pb::Category, &'a pb::Subcategory)> {
        let subcategory = self.subcategories.get(fact.subcategory_id.as_str()).filter(|s| s.active)?;
        let category = self.categories.get(subcategory.category_id.as_str()).filter(|c| c.active)?;
        fact.active.then_some((*category, *subcategory))
    }
}

/// Whether the fact is addressed to the organization the applicant picks (then the request
/// must name it: the service has metadata).
pub fn needs_organization(fact: &pb::Fact) -> bool {
    fact.addressee.as_ref().is_some_and(|a| a.kind == pb::AddresseeKind::Picked as i32)
}

fn service_json(fact: &pb::Fact, category: &pb::Category, subcategory: &pb::Subcategory) -> Value {
    json!({
        "service_code": fact.id,
        "service_name": fact.name,
        "description": format!("{} → {} → {}", category.name, subcategory.name, fact.name),
        "metadata": needs_organization(fact),
        "type": "realtime",
        "keywords": "",
        "group": format!("{} / {}", category.name, subcategory.name),
    })
}

async fn services(state: &DoorState, format: Format, fields: &[(String, String)]) -> Response {
    if let Err(problem) = jurisdiction(state, fields) {
        return format::error(format, StatusCode::BAD_REQUEST, &problem);
    }
    let classifier = match classifier(state).await {
        Ok(classifier) => classifier,
        Err(response) => return response,
    };
    let tree = Tree::new(&classifier);
    let list: Vec<Value> =
        classifier.facts.iter().filter_map(|fact| tree.parents(fact).map(|(c, s)| service_json(fact, c, s))).collect();
    format::respond(format, StatusCode::OK, "services", &Value::Array(list))
}

/// `services/<fact>.json`: the attributes a request for the service takes.
async fn service_definition(
    State(state): State<DoorState>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some((code, format)) = Format::split(&file) else {
        return format::error(Format::Json, StatusCode::NOT_FOUND, "no such Open311 resource: use .json or .xml");
    };
    let Some(fields) = fields_of(query.unwrap_or_default().as_bytes()) else {
        return format::error(format, StatusCode::BAD_REQUEST, "the query string is not URL-encoded");
    };
    let region = match jurisdiction(&state, &fields) {
        Ok(region) => region,
        Err(problem) => return format::error(format, StatusCode::BAD_REQUEST, &problem),
    };
    let classifier = match classifier(&state).await {
        Ok(classifier) => classifier,
        Err(response) => return response,
    };
    let tree = Tree::new(&classifier);
    let Some(fact) = classifier.facts.iter().find(|f| f.id == code && tree.parents(f).is_some()) else {
        return format::error(format, StatusCode::NOT_FOUND, &format!("service_code {:?} not found", truncate(code)));
    };
    let mut attributes = Vec::new();
    if needs_organization(fact) {
        let kind = fact.addressee.as_ref().map(|a| a.organization_type).unwrap_or_default();
        let kind_name = organization_kind_name(kind);
        // With a jurisdiction, the organizations to pick from are listed (FixMyStreet shows a
        // select); without one, or too many, the client sends an id from the directory.
        let values = match &region {
            Some(region) => organizations(&state, region, kind).await,
            None => None,
        };
        let mut attribute = json!({
            "variable": true,
            "code": ORGANIZATION_ATTRIBUTE,
            "datatype": "string",
            "required": true,
            "datatype_description": "Идентификатор организации из справочника (GET /api/v1/organizations)",
            "order": 1,
            "description": format!("Организация, которой адресовано обращение ({kind_name})"),
        });
        if let Some(values) = values.filter(|v| !v.is_empty() && v.len() <= MAX_LISTED_VALUES) {
            attribute["datatype"] = json!("singlevaluelist");
            attribute["datatype_description"] = json!("Выберите организацию из списка");
            attribute["values"] = Value::Array(values);
        }
        attributes.push(attribute);
    }
    let value = json!({ "service_code": fact.id, "attributes": attributes });
    format::respond(format, StatusCode::OK, "service_definition", &value)
}

/// The organizations of `kind` in `region` as Open311 values; None when the directory cannot
/// be read.
async fn organizations(state: &DoorState, region: &str, kind: i32) -> Option<Vec<Value>> {
    let token = partners::public_token(state.minter())?;
    let api = Api::with_token(&state.app, &token);
    let request = pb::ListOrganizationsRequest { region_code: region.to_owned(), r#type: kind, ..Default::default() };
    let response = api.routing().list_organizations(api.request(request)).await.ok()?.into_inner();
    Some(response.organizations.iter().map(|o| json!({ "key": o.id, "name": o.short_name })).collect())
}

/// The kind of organization in the applicant's words.
pub fn organization_kind_name(kind: i32) -> &'static str {
    match pb::OrganizationType::try_from(kind).unwrap_or(pb::OrganizationType::Unspecified) {
        pb::OrganizationType::School => "школа",
        pb::OrganizationType::College => "колледж",
        pb::OrganizationType::MunicipalEducationDepartment => "муниципальный орган управления образованием",
        pb::OrganizationType::RegionalMinistry => "региональное министерство",
        pb::OrganizationType::RegionalCenter => "региональный центр",
        pb::OrganizationType::RegionalCabinet => "кабинет региона",
        pb::OrganizationType::FederalAgency => "федеральный орган",
        pb::OrganizationType::Clinic => "поликлиника",
        pb::OrganizationType::Other | pb::OrganizationType::Unspecified => "организация",
    }
}

fn refused(format: Format) -> Response {
    tracing::info!(target: "security", "open311 request without a valid api_key refused");
    format::error(format, StatusCode::FORBIDDEN, "api_key required: a key issued to the partner system")
}

/// POST `requests.json`: a new request → SubmitAppeal.
async fn post_requests(
    State(state): State<DoorState>,
    Path(file): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(("requests", format)) = Format::split(&file) else {
        return format::error(Format::Json, StatusCode::NOT_FOUND, "only requests.json and requests.xml take POST");
    };
    // The key first: nothing of the request is looked at for a caller we do not know.
    let parsed = fields_of(&body);
    let fields = parsed.as_deref().unwrap_or_default();
    let Some(partner) = state.partner(&headers, fields).cloned() else {
        return refused(format);
    };
    if parsed.is_none() {
        return format::error(format, StatusCode::BAD_REQUEST, "the body must be a URL-encoded form");
    }
    let region = match jurisdiction(&state, fields) {
        Ok(Some(region)) => region,
        Ok(None) => {
            return format::error(
                format,
                StatusCode::BAD_REQUEST,
                "jurisdiction_id: required (a region code, e.g. \"41\")",
            );
        }
        Err(problem) => return format::error(format, StatusCode::BAD_REQUEST, &problem),
    };
    let client_token =
        non_empty(fields, "request_id").or_else(|| headers.get("idempotency-key").and_then(|v| v.to_str().ok()));
    if client_token.is_some_and(|t| t.chars().count() > MAX_CLIENT_TOKEN_CHARS || t.chars().any(char::is_control)) {
        return format::error(
            format,
            StatusCode::BAD_REQUEST,
            &format!("request_id: at most {MAX_CLIENT_TOKEN_CHARS} characters, no control characters"),
        );
    }
    let request = submission(fields, &region, &partner, client_token);
    let Some(token) = partners::applicant_token(state.minter(), &partner.subject(), &region) else {
        return unavailable();
    };
    let api = Api::with_token(&state.app, &token);
    match api.intake().submit_appeal(api.request(request)).await {
        Ok(response) => {
            let response = response.into_inner();
            tracing::info!(partner = %partner.name, appeal_id = %response.appeal_id, number = response.number, "appeal submitted through open311");
            let value = json!([{
                "service_request_id": response.number.to_string(),
                "token": response.appeal_id,
                "service_notice": format!("Обращение зарегистрировано под номером {}", response.number),
                "account_id": Value::Null,
            }]);
            format::respond(format, StatusCode::OK, "service_requests", &value)
        }
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            let violations = tonic_types::StatusExt::get_details_bad_request(&status)
                .map(|b| b.field_violations)
                .unwrap_or_default();
            let mut descriptions: Vec<String> =
                violations.iter().map(|v| format!("{}: {}", open311_field(&v.field), v.description)).collect();
            if descriptions.is_empty() {
                descriptions.push(status.message().to_owned());
            }
            format::errors(format, StatusCode::BAD_REQUEST, &descriptions)
        }
        Err(status) => upstream(format, &status),
    }
}

/// The SubmitAppeal of an Open311 request: the applicant from first/last name, e-mail and
/// phone; the problem's address from `address_string` and the point; a photo's link in the text
/// (pos does not fetch other sites' files).
fn submission(
    fields: &[(String, String)],
    region: &str,
    partner: &Partner,
    client_token: Option<&str>,
) -> pb::SubmitAppealRequest {
    let get = |name: &str| non_empty(fields, name).unwrap_or_default().to_owned();
    let full_name =
        [get("last_name"), get("first_name")].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
    let mut address = get("address_string");
    if let (Some(lat), Some(long)) = (non_empty(fields, "lat"), non_empty(fields, "long")) {
        let point = format!("координаты {lat}, {long}");
        address = if address.is_empty() { point } else { format!("{address} ({point})") };
    }
    let mut text = get("description");
    let media = get("media_url");
    if media.starts_with("https://") || media.starts_with("http://") {
        text = format!("{text}\n\nФото: {media}");
    }
    // What identifies the request for a retry: everything it says, the key aside.
    let canonical: Vec<(String, String)> = fields.iter().filter(|(k, _)| k != "api_key").cloned().collect();
    pb::SubmitAppealRequest {
        request_id: partners::request_id(client_token, &canonical),
        source: partner.source as i32,
        applicant: Some(pb::Applicant {
            full_name,
            email: get("email"),
            phone: get("phone"),
            account_id: String::new(),
        }),
        region_code: region.to_owned(),
        fact_id: get("service_code"),
        picked_organization_id: get(&format!("attribute[{ORGANIZATION_ATTRIBUTE}]")),
        text,
        problem_address: address,
        ..Default::default()
    }
}

/// The Open311 parameter an intake field came from.
fn open311_field(field: &str) -> String {
    let name = match field {
        "applicant" | "applicant.full_name" | "applicant.account_id" => "first_name",
        "applicant.email" => "email",
        "applicant.phone" => "phone",
        "fact_id" | "category_id" | "subcategory_id" => "service_code",
        "region_code" => "jurisdiction_id",
        "text" => "description",
        "problem_address" => "address_string",
        "picked_organization_id" => "attribute[organization_id]",
        other => other,
    };
    name.to_owned()
}

/// A service's failure as Open311 says it: the caller's mistakes with their code, the
/// platform's own as unavailable.
fn upstream(format: Format, status: &tonic::Status) -> Response {
    let code = view::http_status(status);
    if code.is_server_error() {
        tracing::warn!(code = ?status.code(), message = %status.message(), "open311: a service call failed");
        return format::error(format, code, "the platform cannot answer now; retry later");
    }
    format::error(format, code, status.message())
}

/// GET `requests`: the partner's own requests, the newest first, filtered as Open311 allows.
async fn list_requests(
    state: &DoorState,
    format: Format,
    headers: &HeaderMap,
    fields: &[(String, String)],
) -> Response {
    let Some(partner) = state.partner(headers, fields).cloned() else {
        return refused(format);
    };
    let region = match non_empty(fields, "jurisdiction_id") {
        None => None,
        Some(_) => match jurisdiction(state, fields) {
            Ok(region) => region,
            Err(problem) => return format::error(format, StatusCode::BAD_REQUEST, &problem),
        },
    };
    let mut problems = Vec::new();
    let date = |name: &str, problems: &mut Vec<String>| {
        non_empty(fields, name).and_then(|value| match chrono::DateTime::parse_from_rfc3339(value) {
            Ok(at) => Some(at.with_timezone(&chrono::Utc)),
            Err(_) => {
                problems
                    .push(format!("{name}: not an ISO 8601 date and time with an offset (2025-01-15T23:18:00+12:00)"));
                None
            }
        })
    };
    let start = date("start_date", &mut problems);
    let end = date("end_date", &mut problems);
    let statuses: Vec<&str> =
        non_empty(fields, "status").map(|s| s.split(',').map(str::trim).collect()).unwrap_or_default();
    if statuses.iter().any(|s| !matches!(*s, "open" | "closed")) {
        problems.push("status: open, closed, or both separated by a comma".into());
    }
    let list = |name: &str| -> Vec<String> {
        non_empty(fields, name)
            .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let ids = list("service_request_id");
    let codes = list("service_code");
    if ids.len() > 50 || codes.len() > 50 {
        problems.push("service_request_id, service_code: at most 50 each".into());
    }
    if !problems.is_empty() {
        return format::errors(format, StatusCode::BAD_REQUEST, &problems);
    }
    let Some(token) = partners::applicant_token(state.minter(), &partner.subject(), "") else {
        return unavailable();
    };
    let api = Api::with_token(&state.app, &token);
    let found: Result<Vec<Found>, tonic::Status> = if ids.is_empty() {
        let request = pb::ListTicketsRequest {
            page_size: MAX_LISTED,
            fact_ids: codes.clone(),
            region_code: region.clone().unwrap_or_default(),
            without_folder_counts: true,
            ..Default::default()
        };
        match api.ticketing().list_tickets(api.request(request)).await {
            Ok(response) => {
                let tickets: Vec<_> =
                    response.into_inner().tickets.into_iter().filter(|t| t.superseded_by.is_empty()).collect();
                let mut found = Vec::new();
                // A few calls at a time: a long list does not open hundreds of streams at once.
                for chunk in tickets.chunks(CONCURRENT_CALLS) {
                    found.extend(join_all(chunk.iter().map(|t| view::with_appeal(&api, t.clone()))).await);
                }
                found.into_iter().filter_map(Result::transpose).collect()
            }
            Err(status) => Err(status),
        }
    } else {
        let mut found = Vec::new();
        for chunk in ids.chunks(CONCURRENT_CALLS) {
            found.extend(join_all(chunk.iter().map(|id| view::lookup(&api, id))).await);
        }
        found.into_iter().filter_map(Result::transpose).collect()
    };
    let found = match found {
        Ok(found) => found,
        Err(status) => return upstream(format, &status),
    };
    let names = match classifier(state).await {
        Ok(classifier) => classifier.facts.into_iter().map(|f| (f.id, f.name)).collect(),
        Err(_) => HashMap::new(),
    };
    let list: Vec<Value> = found
        .iter()
        .filter(|f| codes.is_empty() || codes.contains(&f.appeal.fact_id))
        .filter(|f| region.as_ref().is_none_or(|r| *r == f.appeal.region_code))
        .filter(|f| statuses.is_empty() || statuses.contains(&if f.closed() { "closed" } else { "open" }))
        .filter(|f| start.is_none_or(|start| f.registered_at().is_some_and(|at| at >= start)))
        .filter(|f| end.is_none_or(|end| f.registered_at().is_some_and(|at| at <= end)))
        .map(|f| request_json(f, &names))
        .collect();
    format::respond(format, StatusCode::OK, "service_requests", &Value::Array(list))
}

/// One request as Open311 shows it. The applicant's name and contacts are never in it; the
/// text and the address are intake's masked ones.
fn request_json(found: &Found, names: &HashMap<String, String>) -> Value {
    let region = &found.appeal.region_code;
    let iso = |at: Option<chrono::DateTime<chrono::Utc>>| at.map(|at| view::local_iso(at, region));
    json!({
        "service_request_id": found.appeal.number.to_string(),
        "token": found.appeal.id,
        "status": if found.closed() { "closed" } else { "open" },
        "status_notes": found.notes(),
        "service_name": names.get(&found.appeal.fact_id).cloned().unwrap_or_default(),
        "service_code": found.appeal.fact_id,
        "description": found.appeal.public_text,
        "agency_responsible": found.agency(),
        "service_notice": view::status_words(found.status()),
        "requested_datetime": iso(found.registered_at()),
        "updated_datetime": iso(found.updated_at()),
        "expected_datetime": iso(found.answer_due()),
        "address": found.appeal.problem_address,
    })
}

/// GET `requests/<number>.json` (or the appeal id Open311 calls the token).
async fn one_request(
    State(state): State<DoorState>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some((id, format)) = Format::split(&file) else {
        return format::error(Format::Json, StatusCode::NOT_FOUND, "no such Open311 resource: use .json or .xml");
    };
    let fields = fields_of(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let Some(partner) = state.partner(&headers, &fields).cloned() else {
        return refused(format);
    };
    let Some(token) = partners::applicant_token(state.minter(), &partner.subject(), "") else {
        return unavailable();
    };
    let api = Api::with_token(&state.app, &token);
    let found = match view::lookup(&api, id).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(format, id),
        Err(status) => return upstream(format, &status),
    };
    let names = match classifier(&state).await {
        Ok(classifier) => classifier.facts.into_iter().map(|f| (f.id, f.name)).collect(),
        Err(_) => HashMap::new(),
    };
    format::respond(format, StatusCode::OK, "service_requests", &json!([request_json(&found, &names)]))
}

fn not_found(format: Format, id: &str) -> Response {
    format::error(
        format,
        StatusCode::NOT_FOUND,
        &format!(
            "service_request_id {:?} not found among this partner's requests (a new request is found by its number once routed, within seconds; by its token at once)",
            truncate(id)
        ),
    )
}

/// GET `tokens/<appeal id>.json`: the number of a request posted moments ago.
async fn token(
    State(state): State<DoorState>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some((id, format)) = Format::split(&file) else {
        return format::error(Format::Json, StatusCode::NOT_FOUND, "no such Open311 resource: use .json or .xml");
    };
    let fields = fields_of(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let Some(partner) = state.partner(&headers, &fields).cloned() else {
        return refused(format);
    };
    if !view::is_appeal_id(id) {
        return not_found(format, id);
    }
    let Some(token) = partners::applicant_token(state.minter(), &partner.subject(), "") else {
        return unavailable();
    };
    let api = Api::with_token(&state.app, &token);
    match view::lookup(&api, id).await {
        Ok(Some(found)) => format::respond(
            format,
            StatusCode::OK,
            "service_requests",
            &json!([{ "service_request_id": found.appeal.number.to_string(), "token": found.appeal.id }]),
        ),
        Ok(None) => not_found(format, id),
        Err(status) => upstream(format, &status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_request_becomes_a_submission_and_a_retry_the_same() {
        let partner = Partners::from_config(&Open311Config {
            partners: vec![config::PartnerConfig {
                name: "fms".into(),
                key_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"k")),
                source: "mobile_app".into(),
            }],
            ..Open311Config::default()
        })
        .find("k")
        .cloned()
        .unwrap();
        let form = fields(&[
            ("api_key", "k"),
            ("service_code", "education.meals.quality"),
            ("first_name", "Иван"),
            ("last_name", "Петров"),
            ("email", "ivan@example.ru"),
            ("description", "Холодные обеды"),
            ("lat", "53.01"),
            ("long", "158.65"),
            ("address_string", "ул. Ленина, 1"),
            ("media_url", "https://photos.example/1.jpg"),
            ("attribute[organization_id]", "41-school-pk-1"),
        ]);
        let request = submission(&form, "41", &partner, None);
        assert_eq!(request.fact_id, "education.meals.quality");
        assert_eq!(request.picked_organization_id, "41-school-pk-1");
        assert_eq!(request.applicant.as_ref().unwrap().full_name, "Петров Иван");
        assert_eq!(request.problem_address, "ул. Ленина, 1 (координаты 53.01, 158.65)");
        assert!(request.text.ends_with("Фото: https://photos.example/1.jpg"));
        assert_eq!(request.source, pb::Source::MobileApp as i32);
        // Another key of the same partner, the same request: the same request id.
        let mut again = form.clone();
        again[0].1 = "other".into();
        assert_eq!(submission(&again, "41", &partner, None).request_id, request.request_id);
        assert_eq!(submission(&form, "41", &partner, Some("t-1")).request_id, "client:t-1");
    }

    #[test]
    fn intake_fields_are_named_as_the_client_sent_them() {
        assert_eq!(open311_field("applicant.full_name"), "first_name");
        assert_eq!(open311_field("fact_id"), "service_code");
        assert_eq!(open311_field("picked_organization_id"), "attribute[organization_id]");
        assert_eq!(open311_field("attachment_ids[0]"), "attachment_ids[0]");
    }
}
