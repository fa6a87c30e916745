//! The audit trail of security events: who was refused (UNAUTHENTICATED, PERMISSION_DENIED),
//! who signed in to the cabinet, and who changed staff and roles, SLA policies and calendars,
//! the classifier, the directory and notification settings. Append-only, in each service's own
//! database (`audit_events`, a platform table: see `migrations/`), with the actor, the
//! organization, the method and the time; no personal data and no tokens.
//!
//! - Changes are recorded by the method that makes them, with [`record`], in the transaction of
//!   the change: a change is never without its event, nor an event without its change.
//! - Denials are seen by [`DenialLayer`] around each service's routes, from the response's
//!   `grpc-status`, and written by a batch writer ([`Trail`]) off the call's path: a burst of
//!   denials neither slows calls nor fails them; what does not fit the queue is counted.
//! - Sign-ins happen in the web cabinet, which has no database: it records them with
//!   `AuditService/RecordAuditEvent`, kept by the process hosting ticketing (the staff's owner).
//! - `pos.v1.operations.AuditService/ListAuditEvents` lists them, newest first: every process
//!   answers for the services it runs and asks its peers for the others'.
//!
//! Every event also counts in `pos_security_events_total{kind, method}`, for the alert on a
//! burst of denials (`PosDenialBurst`).

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::Duration;

use pos_proto::v1::operations as pb;
use pos_proto::v1::operations::audit_service_client::AuditServiceClient;
use pos_proto::v1::operations::audit_service_server::AuditService;
use sqlx::{AnyConnection, Row};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::auth::{AuthFailure, Authenticated, Caller, Role, authorize};
use crate::config::PlatformConfig;
use crate::db::{Db, from_micros, now_micros, to_micros};
use crate::error::{ApiError, FieldViolations};
use crate::operations::{PeerServices, forwarded_request, is_forwarded};

/// What happened. The stored and wire name is snake case (`denied_permission`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::VariantArray, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum Kind {
    /// A call without a valid token.
    DeniedUnauthenticated,
    /// A call refused for the caller's role or organization.
    DeniedPermission,
    /// A person signed in to the cabinet.
    SignIn,
    /// A sign-in to the cabinet refused.
    SignInFailed,
    /// A staff member added or changed: roles, active.
    StaffChanged,
    /// An SLA policy replaced.
    PolicyChanged,
    /// A production calendar year loaded.
    CalendarChanged,
    /// A category, subcategory or fact of the classifier saved.
    ClassifierChanged,
    /// The directory changed: an organization, an auto-rule, an onboarding step.
    DirectoryChanged,
    /// An organization's notification settings saved.
    SettingsChanged,
}

impl Kind {
    pub const ALL: &'static [Kind] = <Kind as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Events the web cabinet reports through `RecordAuditEvent`; the others only the service
    /// that saw them records.
    fn reported_from_outside(self) -> bool {
        matches!(self, Kind::SignIn | Kind::SignInFailed)
    }
}

/// For `details`, to services that do not otherwise speak JSON.
pub use serde_json::{Value, json};
/// The outcome of an event that is not a refusal.
pub const OK: &str = "ok";

/// Who acted, as stored.
#[derive(Clone, Debug, Default)]
struct Actor {
    subject: String,
    organization_id: String,
    roles: Vec<String>,
}

impl Actor {
    fn of(caller: &Caller) -> Actor {
        let mut roles: Vec<String> = caller.roles.iter().map(|role| role.as_str().to_owned()).collect();
        roles.sort();
        Actor { subject: caller.subject.clone(), organization_id: caller.organization_id.clone(), roles }
    }
}

/// One event, as stored.
#[derive(Clone, Debug)]
struct Entry {
    id: Uuid,
    at: i64,
    kind: Kind,
    actor: Actor,
    method: String,
    organization_id: String,
    object_id: String,
    outcome: String,
    details: Value,
}

impl Entry {
    fn new(kind: Kind, actor: Actor, method: &str, organization_id: &str, object_id: &str, outcome: &str) -> Entry {
        Entry {
            id: Uuid::now_v7(),
            at: now_micros(),
            kind,
            actor,
            method: method.to_owned(),
            organization_id: organization_id.to_owned(),
            object_id: object_id.to_owned(),
            outcome: outcome.to_owned(),
            details: json!({}),
        }
    }

    fn count(&self) {
        metrics::counter!("pos_security_events_total", "kind" => self.kind.as_str(), "method" => self.method.clone())
            .increment(1);
    }
}

/// Records a change made by `caller` with `method` (`pos.v1.SlaService/PutPolicy`), about
/// `organization_id` (the caller's own when empty) and the object `object_id`, in the
/// transaction `conn` of the change. `details` (a JSON object) says what changed; it must hold
/// no personal data (names, addresses, documents) and no secrets.
pub async fn record(
    conn: &mut AnyConnection,
    caller: &Caller,
    kind: Kind,
    method: &str,
    organization_id: &str,
    object_id: &str,
    details: Value,
) -> Result<(), sqlx::Error> {
    let organization_id = if organization_id.is_empty() { &caller.organization_id } else { organization_id };
    let mut entry = Entry::new(kind, Actor::of(caller), method, organization_id, object_id, OK);
    entry.details = details;
    insert(conn, &entry).await?;
    entry.count();
    Ok(())
}

async fn insert(conn: &mut AnyConnection, entry: &Entry) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_events (id, at, kind, actor_subject, actor_organization_id, actor_roles, method, \
         organization_id, object_id, outcome, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(entry.id.to_string())
    .bind(entry.at)
    .bind(entry.kind.as_str())
    .bind(&entry.actor.subject)
    .bind(&entry.actor.organization_id)
    .bind(entry.actor.roles.join(" "))
    .bind(&entry.method)
    .bind(&entry.organization_id)
    .bind(&entry.object_id)
    .bind(&entry.outcome)
    .bind(entry.details.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Events waiting for the writer; beyond this a burst is dropped (and counted), not queued
/// without bound.
const QUEUE: usize = 4096;
/// Events written in one transaction.
const BATCH: usize = 256;

/// Where the denials seen around one service's routes go: a bounded queue to that service's
/// database, emptied by [`Writer::run`].
#[derive(Clone)]
pub struct Trail {
    sender: mpsc::Sender<Entry>,
}

/// Writes what a [`Trail`] queued, in batches, until every copy of the trail is gone.
pub struct Writer {
    db: Db,
    receiver: mpsc::Receiver<Entry>,
}

impl Trail {
    /// The trail into `db`, and its writer to run.
    pub fn new(db: Db) -> (Trail, Writer) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        (Trail { sender }, Writer { db, receiver })
    }

    fn push(&self, entry: Entry) {
        entry.count();
        if let Err(error) = self.sender.try_send(entry) {
            let reason = match error {
                mpsc::error::TrySendError::Full(_) => "queue_full",
                mpsc::error::TrySendError::Closed(_) => "stopped",
            };
            metrics::counter!("pos_audit_events_dropped_total", "reason" => reason).increment(1);
        }
    }
}

impl Writer {
    /// Returns once the trail is dropped (the server stopped) and what it queued is written.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut batch = Vec::with_capacity(BATCH);
        while self.receiver.recv_many(&mut batch, BATCH).await > 0 {
            // One retry: a database that is away for longer loses these, counted, rather than
            // holding the queue until calls' denials are dropped instead.
            let mut written = self.write(&batch).await;
            if written.is_err() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                written = self.write(&batch).await;
            }
            if let Err(error) = written {
                tracing::warn!(%error, events = batch.len(), schema = self.db.schema(), "audit events not written");
                metrics::counter!("pos_audit_events_dropped_total", "reason" => "store_failed")
                    .increment(batch.len() as u64);
            }
            batch.clear();
        }
        Ok(())
    }

    async fn write(&self, batch: &[Entry]) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        for entry in batch {
            insert(&mut tx, entry).await?;
        }
        tx.commit().await
    }
}

/// Records every call of the routes it wraps that ends UNAUTHENTICATED or PERMISSION_DENIED,
/// with the caller ([`Authenticated`], put there by the auth layer), the method, the refusal's
/// reason and the client's address, into a [`Trail`].
#[derive(Clone)]
pub struct DenialLayer {
    trail: Trail,
}

impl DenialLayer {
    pub fn new(trail: Trail) -> DenialLayer {
        DenialLayer { trail }
    }
}

impl<S> tower::Layer<S> for DenialLayer {
    type Service = Denials<S>;
    fn layer(&self, inner: S) -> Denials<S> {
        Denials { inner, trail: self.trail.clone() }
    }
}

#[derive(Clone)]
pub struct Denials<S> {
    inner: S,
    trail: Trail,
}

/// What is known of a call before it is answered.
struct Asked {
    method: String,
    caller: Option<Result<Caller, AuthFailure>>,
    peer: Option<std::net::IpAddr>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Denials<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let asked = Asked {
            method: request.uri().path().trim_start_matches('/').to_owned(),
            caller: request.extensions().get::<Authenticated>().map(|authenticated| authenticated.0.clone()),
            peer: crate::tls::peer_address(request.extensions()),
        };
        let trail = self.trail.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            // A refusal comes before any message, so it is a trailers-only response: its status
            // is in the headers.
            if let Ok(response) = &result
                && let Some(entry) = denial(&asked, response.headers())
            {
                trail.push(entry);
            }
            result
        })
    }
}

/// Texts kept from a refusal at most this long (they are the services' own, not the caller's).
const MAX_TEXT: usize = 300;

fn shortened(text: &str) -> String {
    text.chars().take(MAX_TEXT).collect()
}

/// The event of a refused call, if the response is a refusal.
fn denial(asked: &Asked, headers: &http::HeaderMap) -> Option<Entry> {
    let kind = match headers.get("grpc-status").and_then(|value| value.to_str().ok())? {
        "16" => Kind::DeniedUnauthenticated,
        "7" => Kind::DeniedPermission,
        _ => return None,
    };
    let status = Status::from_header_map(headers);
    let reason = status.as_ref().and_then(|status| {
        use tonic_types::StatusExt as _;
        status.get_error_details().error_info().map(|info| info.reason.clone())
    });
    let mut details = serde_json::Map::new();
    if let Some(status) = &status {
        details.insert("message".into(), Value::String(shortened(status.message())));
    }
    if let Some(peer) = asked.peer {
        details.insert("peer".into(), Value::String(peer.to_string()));
    }
    let actor = match &asked.caller {
        Some(Ok(caller)) => Actor::of(caller),
        Some(Err(AuthFailure::Invalid(why))) => {
            details.insert("token".into(), Value::String(format!("invalid: {}", shortened(why))));
            Actor::default()
        }
        Some(Err(AuthFailure::Missing)) | None => {
            details.insert("token".into(), Value::String("missing".into()));
            Actor::default()
        }
    };
    let outcome = reason.unwrap_or_else(|| {
        if kind == Kind::DeniedUnauthenticated { "UNAUTHENTICATED" } else { "PERMISSION_DENIED" }.to_owned()
    });
    let organization_id = actor.organization_id.clone();
    let mut entry = Entry::new(kind, actor, &asked.method, &organization_id, "", &outcome);
    entry.details = Value::Object(details);
    Some(entry)
}

/// Who may list events: operators and systems everything, organization admins their own
/// organization's.
const VIEWERS: &[Role] = &[Role::Operator, Role::System, Role::OrgAdmin];
const DEPLOYMENT_WIDE: &[Role] = &[Role::Operator, Role::System];
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// One service's events, as the process running it keeps them.
#[derive(Clone)]
pub struct Store {
    pub service: &'static str,
    pub db: Db,
}

/// `pos.v1.operations.AuditService` of one process.
pub struct AuditApi {
    local: Vec<Store>,
    peers: PeerServices,
}

impl AuditApi {
    /// The API over the events of the services `local` (those this process runs).
    pub fn new(local: Vec<Store>, config: &PlatformConfig) -> anyhow::Result<AuditApi> {
        let hosted: Vec<&str> = local.iter().map(|store| store.service).collect();
        Ok(AuditApi { peers: PeerServices::new(&hosted, config)?, local })
    }

    /// Where events reported from outside go: ticketing's store when it runs here.
    fn reports_store(&self) -> Option<&Store> {
        self.local.iter().find(|store| store.service == "ticketing")
    }
}

/// What a list asks for, checked.
struct Filter {
    kinds: Vec<Kind>,
    actor_subject: String,
    organization_id: String,
    method: String,
    from: Option<i64>,
    to: Option<i64>,
    before: Option<(i64, String)>,
    limit: u32,
}

impl Filter {
    fn from_request(body: &pb::ListAuditEventsRequest, organization_id: String) -> Result<Filter, ApiError> {
        let mut violations = FieldViolations::new();
        let mut kinds = Vec::new();
        for name in &body.kinds {
            match Kind::from_str(name.trim()) {
                Ok(kind) => kinds.push(kind),
                Err(_) => violations.add(
                    "kinds",
                    format!(
                        "unknown kind {name:?}: one of {}",
                        Kind::ALL.iter().map(|kind| kind.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ),
            }
        }
        let mut time = |field: &str, value: &Option<prost_types::Timestamp>| match value {
            None => None,
            Some(value) => match pos_proto::time::from_proto(value) {
                Some(at) => Some(to_micros(at)),
                None => {
                    violations.add(field, "out of range");
                    None
                }
            },
        };
        let from = time("from", &body.from);
        let to = time("to", &body.to);
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            violations.add("to", "must be later than from");
        }
        let before = if body.page_token.is_empty() {
            None
        } else {
            let parsed = parse_page_token(&body.page_token);
            if parsed.is_none() {
                violations.add("page_token", "not a page token of this list");
            }
            parsed
        };
        if body.limit > MAX_LIMIT {
            violations.add("limit", format!("at most {MAX_LIMIT}"));
        }
        violations.into_result()?;
        Ok(Filter {
            kinds,
            actor_subject: body.actor_subject.trim().to_owned(),
            organization_id,
            method: body.method.trim().trim_start_matches('/').to_owned(),
            from,
            to,
            before,
            limit: if body.limit == 0 { DEFAULT_LIMIT } else { body.limit },
        })
    }
}

/// `<microseconds>.<id>` of the last event on a page: the next page starts before it.
fn page_token(event: &pb::AuditEvent) -> String {
    format!("{}.{}", micros_of(event), event.id)
}

fn parse_page_token(token: &str) -> Option<(i64, String)> {
    let (at, id) = token.split_once('.')?;
    let id = Uuid::from_str(id).ok()?;
    Some((at.parse().ok()?, id.to_string()))
}

fn micros_of(event: &pb::AuditEvent) -> i64 {
    event.at.as_ref().and_then(pos_proto::time::from_proto).map(to_micros).unwrap_or_default()
}

enum Bound {
    Text(String),
    Number(i64),
}

/// The newest events of one store that match `filter`.
async fn query(store: &Store, filter: &Filter) -> Result<Vec<pb::AuditEvent>, sqlx::Error> {
    let mut conditions = Vec::new();
    let mut bounds = Vec::new();
    let bind = |bounds: &mut Vec<Bound>, value: Bound| {
        bounds.push(value);
        format!("${}", bounds.len())
    };
    if !filter.kinds.is_empty() {
        let placeholders: Vec<String> =
            filter.kinds.iter().map(|kind| bind(&mut bounds, Bound::Text(kind.as_str().to_owned()))).collect();
        conditions.push(format!("kind IN ({})", placeholders.join(", ")));
    }
    for (column, value) in [
        ("actor_subject", &filter.actor_subject),
        ("organization_id", &filter.organization_id),
        ("method", &filter.method),
    ] {
        if !value.is_empty() {
            conditions.push(format!("{column} = {}", bind(&mut bounds, Bound::Text(value.clone()))));
        }
    }
    if let Some(from) = filter.from {
        conditions.push(format!("at >= {}", bind(&mut bounds, Bound::Number(from))));
    }
    if let Some(to) = filter.to {
        conditions.push(format!("at < {}", bind(&mut bounds, Bound::Number(to))));
    }
    if let Some((at, id)) = &filter.before {
        let (first, second) = (bind(&mut bounds, Bound::Number(*at)), bind(&mut bounds, Bound::Number(*at)));
        let third = bind(&mut bounds, Bound::Text(id.clone()));
        conditions.push(format!("(at < {first} OR (at = {second} AND id < {third}))"));
    }
    let limit = bind(&mut bounds, Bound::Number(i64::from(filter.limit)));
    let filter_sql = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    // The placeholders are numbered above; every value travels as a bound parameter.
    let sql = format!(
        "SELECT id, at, kind, actor_subject, actor_organization_id, actor_roles, method, organization_id, object_id, \
         outcome, details FROM audit_events{filter_sql} ORDER BY at DESC, id DESC LIMIT {limit}"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for value in bounds {
        query = match value {
            Bound::Text(text) => query.bind(text),
            Bound::Number(number) => query.bind(number),
        };
    }
    let rows = query.fetch_all(store.db.pool()).await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let roles: String = row.try_get("actor_roles")?;
        events.push(pb::AuditEvent {
            id: row.try_get("id")?,
            at: Some(pos_proto::time::to_proto(from_micros(row.try_get("at")?))),
            kind: row.try_get("kind")?,
            actor_subject: row.try_get("actor_subject")?,
            actor_organization_id: row.try_get("actor_organization_id")?,
            actor_roles: roles.split_whitespace().map(str::to_owned).collect(),
            method: row.try_get("method")?,
            organization_id: row.try_get("organization_id")?,
            object_id: row.try_get("object_id")?,
            outcome: row.try_get("outcome")?,
            details_json: row.try_get("details")?,
            service: store.service.to_owned(),
        });
    }
    Ok(events)
}

/// Newest first, each event once (a process running several services may be asked for each),
/// at most `limit`.
fn merged(mut events: Vec<pb::AuditEvent>, limit: u32) -> (Vec<pb::AuditEvent>, String) {
    events.sort_by(|a, b| (micros_of(b), &b.id).cmp(&(micros_of(a), &a.id)));
    events.dedup_by(|a, b| a.id == b.id);
    let full = events.len() >= limit as usize;
    events.truncate(limit as usize);
    let next = if full { events.last().map(page_token).unwrap_or_default() } else { String::new() };
    (events, next)
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        const METHOD: &str = "pos.v1.operations.AuditService/ListAuditEvents";
        let caller = authorize(&request, METHOD, VIEWERS)?;
        let body = request.get_ref();
        // Whose events before anything else: an admin learns nothing of another organization.
        let organization_id = if caller.has_any(DEPLOYMENT_WIDE) {
            body.organization_id.trim().to_owned()
        } else {
            let wanted = match body.organization_id.trim() {
                "" => caller.organization_id.clone(),
                given => given.to_owned(),
            };
            caller.require_organization(&wanted, METHOD)?;
            wanted
        };
        let filter = Filter::from_request(body, organization_id)?;
        let mut events = Vec::new();
        for store in &self.local {
            events.extend(query(store, &filter).await.map_err(ApiError::Db)?);
        }
        let mut unreachable = Vec::new();
        if !body.local_only && !is_forwarded(&request) {
            let asked = pb::ListAuditEventsRequest {
                local_only: true,
                organization_id: filter.organization_id.clone(),
                limit: filter.limit,
                ..body.clone()
            };
            let (answers, silent) = self
                .peers
                .ask_each("ListAuditEvents", |channel| {
                    let outgoing = forwarded_request(&request, asked.clone());
                    async move { AuditServiceClient::new(channel).list_audit_events(outgoing).await }
                })
                .await;
            events.extend(answers.into_iter().flat_map(|answer| answer.into_inner().events));
            unreachable = silent;
        }
        let (events, next_page_token) = merged(events, filter.limit);
        Ok(Response::new(pb::ListAuditEventsResponse { events, next_page_token, unreachable }))
    }

    async fn record_audit_event(
        &self,
        request: Request<pb::RecordAuditEventRequest>,
    ) -> Result<Response<pb::RecordAuditEventResponse>, Status> {
        const METHOD: &str = "pos.v1.operations.AuditService/RecordAuditEvent";
        authorize(&request, METHOD, &[Role::System])?;
        let body = request.get_ref();
        let mut violations = FieldViolations::new();
        let kind = match Kind::from_str(body.kind.trim()) {
            Ok(kind) if kind.reported_from_outside() => Some(kind),
            _ => {
                violations.add("kind", "sign_in or sign_in_failed");
                None
            }
        };
        if body.method.trim().is_empty() {
            violations.add("method", "required: where it happened, e.g. web/sign-in");
        }
        let details = match body.details_json.trim() {
            "" => Some(json!({})),
            text => match serde_json::from_str::<Value>(text) {
                Ok(value @ Value::Object(_)) => Some(value),
                _ => {
                    violations.add("details_json", "a JSON object");
                    None
                }
            },
        };
        violations.into_result()?;
        let (Some(kind), Some(details)) = (kind, details) else { unreachable!("validated") };
        let Some(store) = self.reports_store() else {
            // Ticketing keeps them; a process without it passes the report on once.
            return match (self.peers.get("ticketing"), is_forwarded(&request)) {
                (Some(channel), false) => {
                    let outgoing = forwarded_request(&request, body.clone());
                    Ok(AuditServiceClient::new(channel).record_audit_event(outgoing).await?)
                }
                _ => Err(ApiError::unavailable(
                    "NO_AUDIT_STORE",
                    "this process runs no ticketing and has no peers for it: nowhere to keep the event",
                )
                .into()),
            };
        };
        let mut roles: Vec<String> = body.actor_roles.iter().map(|role| role.trim().to_owned()).collect();
        roles.sort();
        let actor = Actor {
            subject: body.actor_subject.trim().to_owned(),
            organization_id: body.actor_organization_id.trim().to_owned(),
            roles,
        };
        let outcome = if body.outcome.trim().is_empty() { OK } else { body.outcome.trim() };
        let organization_id = actor.organization_id.clone();
        let mut entry = Entry::new(kind, actor, body.method.trim(), &organization_id, "", outcome);
        entry.details = details;
        let mut conn = store.db.pool().acquire().await.map_err(ApiError::Db)?;
        insert(&mut conn, &entry).await.map_err(ApiError::Db)?;
        entry.count();
        Ok(Response::new(pb::RecordAuditEventResponse { id: entry.id.to_string() }))
    }
}

/// The audit trail of one process: a trail per service it runs (its routes' denials, into its
/// store), the writers to run, and the API over the stores.
pub struct Wiring {
    trails: Vec<(&'static str, Trail)>,
    writers: Vec<Writer>,
    stores: Vec<Store>,
}

impl Wiring {
    pub fn new(stores: Vec<Store>) -> Wiring {
        let (mut trails, mut writers) = (Vec::new(), Vec::new());
        for store in &stores {
            let (trail, writer) = Trail::new(store.db.clone());
            trails.push((store.service, trail));
            writers.push(writer);
        }
        Wiring { trails, writers, stores }
    }

    /// The writers, to run until the server stops.
    pub fn take_writers(&mut self) -> Vec<Writer> {
        std::mem::take(&mut self.writers)
    }

    /// `routes` recording their denials: into `service`'s store, or for the operations APIs
    /// (`None`) into the first service's.
    pub fn watch(&self, service: Option<&str>, routes: axum::Router) -> axum::Router {
        let trail = match service {
            Some(service) => self.trails.iter().find(|(name, _)| *name == service),
            None => self.trails.first(),
        };
        match trail {
            Some((_, trail)) => routes.layer(DenialLayer::new(trail.clone())),
            None => routes,
        }
    }

    /// The API over the stores. Drop the wiring once the routes are built: the writers end when
    /// the last copy of their trail (the routes') is gone.
    pub fn api(&self, config: &PlatformConfig) -> anyhow::Result<AuditApi> {
        AuditApi::new(self.stores.clone(), config)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;

    use sqlx::migrate::Migrator;
    use tower::{Layer as _, ServiceExt as _};

    use super::*;
    use crate::db::Migrations;
    use crate::error::ApiError;

    static NONE: Migrator = Migrator::DEFAULT;
    static PLATFORM_ONLY: Migrations = Migrations { postgres: &NONE, sqlite: &NONE };

    fn caller(subject: &str, organization_id: &str, roles: &[Role]) -> Caller {
        Caller {
            subject: subject.to_owned(),
            organization_id: organization_id.to_owned(),
            region_code: "41".to_owned(),
            roles: roles.iter().copied().collect(),
        }
    }

    /// A service answering every call with `error` (or OK without one), as tonic answers.
    fn answering(
        error: Option<ApiError>,
    ) -> impl tower::Service<
        http::Request<()>,
        Response = http::Response<tonic::body::Body>,
        Error = Infallible,
        Future = impl Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send + 'static,
    > + Clone {
        let error = error.map(|error| Arc::new(std::sync::Mutex::new(Some(error))));
        tower::service_fn(move |_request: http::Request<()>| {
            let error = error.clone();
            async move {
                let taken = error.and_then(|error| error.lock().unwrap().take());
                Ok::<_, Infallible>(match taken {
                    Some(error) => Status::from(error).into_http(),
                    None => {
                        let mut response = http::Response::new(tonic::body::Body::empty());
                        response.headers_mut().insert("grpc-status", http::HeaderValue::from_static("0"));
                        response
                    }
                })
            }
        })
    }

    fn call(authenticated: Option<Result<Caller, AuthFailure>>) -> http::Request<()> {
        let mut request = http::Request::builder().uri("/pos.v1.SlaService/PutPolicy").body(()).unwrap();
        if let Some(outcome) = authenticated {
            request.extensions_mut().insert(Authenticated(outcome));
        }
        request
    }

    async fn all(db: &Db) -> Vec<pb::AuditEvent> {
        let store = Store { service: "sla", db: db.clone() };
        let filter = Filter::from_request(&pb::ListAuditEventsRequest::default(), String::new()).unwrap();
        query(&store, &filter).await.unwrap()
    }

    #[tokio::test]
    async fn the_denial_layer_records_refusals_with_their_callers_only() {
        let (db, _dir) = crate::testing::sqlite_db("sla", &PLATFORM_ONLY).await;
        let (trail, writer) = Trail::new(db.clone());
        let writing = tokio::spawn(writer.run());
        let layer = DenialLayer::new(trail);

        let head = caller("u-head", "41-school", &[Role::Head]);
        let denied = ApiError::denied("ROLE_NOT_ALLOWED", "PutPolicy needs one of the roles system, org_admin");
        let response = layer.layer(answering(Some(denied))).oneshot(call(Some(Ok(head)))).await.unwrap();
        assert_eq!(response.headers()["grpc-status"], "7");
        layer
            .layer(answering(Some(ApiError::Unauthenticated("missing bearer token"))))
            .oneshot(call(Some(Err(AuthFailure::Missing))))
            .await
            .unwrap();
        // Neither an answer nor another error is a security event.
        layer.layer(answering(None)).oneshot(call(Some(Ok(caller("u", "o", &[Role::System]))))).await.unwrap();
        layer
            .layer(answering(Some(ApiError::not_found("no policy"))))
            .oneshot(call(Some(Ok(caller("u", "o", &[Role::System])))))
            .await
            .unwrap();
        drop(layer);
        writing.await.unwrap().unwrap();

        let events = all(&db).await;
        assert_eq!(events.len(), 2, "{events:?}");
        let unauthenticated = &events[0];
        assert_eq!(unauthenticated.kind, "denied_unauthenticated");
        assert_eq!(unauthenticated.actor_subject, "");
        assert!(unauthenticated.details_json.contains("missing"), "{unauthenticated:?}");
        let denied = &events[1];
        assert_eq!(denied.kind, "denied_permission");
        assert_eq!(denied.method, "pos.v1.SlaService/PutPolicy");
        assert_eq!((denied.actor_subject.as_str(), denied.organization_id.as_str()), ("u-head", "41-school"));
        assert_eq!(denied.actor_roles, ["head"]);
        assert_eq!(denied.outcome, "ROLE_NOT_ALLOWED");
        assert!(denied.details_json.contains("needs one of the roles"), "{denied:?}");
    }

    #[tokio::test]
    async fn changes_are_kept_in_their_transaction_and_never_altered() {
        for (db, _dir) in [(crate::testing::postgres_db("audit", &PLATFORM_ONLY).await, None), {
            let (db, dir) = crate::testing::sqlite_db("audit", &PLATFORM_ONLY).await;
            (db, Some(dir))
        }] {
            let admin = caller("u-admin", "41-school", &[Role::OrgAdmin]);
            let mut tx = db.begin().await.unwrap();
            record(&mut tx, &admin, Kind::StaffChanged, "pos.v1.TicketingService/UpsertStaff", "", "u-1", json!({}))
                .await
                .unwrap();
            tx.rollback().await.unwrap();
            assert!(all(&db).await.is_empty(), "a rolled back change leaves no event");

            let mut tx = db.begin().await.unwrap();
            let details = json!({"roles_before": [], "roles_after": ["executor"]});
            record(&mut tx, &admin, Kind::StaffChanged, "pos.v1.TicketingService/UpsertStaff", "", "u-1", details)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            let events = all(&db).await;
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].organization_id, "41-school", "the caller's organization when none is named");
            assert!(events[0].details_json.contains("roles_after"));

            for statement in ["UPDATE audit_events SET outcome = 'x'", "DELETE FROM audit_events"] {
                let refused = sqlx::query(statement).execute(db.pool()).await;
                assert!(refused.is_err(), "{statement} must be refused");
            }
            assert_eq!(all(&db).await.len(), 1);
            db.drop_schema().await.unwrap();
        }
    }

    #[test]
    fn pages_follow_each_other_newest_first() {
        let event = |micros: i64, id: &str| pb::AuditEvent {
            id: id.to_owned(),
            at: Some(pos_proto::time::to_proto(from_micros(micros))),
            ..Default::default()
        };
        let a = Uuid::now_v7().to_string();
        let b = Uuid::now_v7().to_string();
        let (page, next) = merged(vec![event(1, &a), event(2, &b), event(2, &b), event(3, &a)], 2);
        assert_eq!(page.iter().map(micros_of).collect::<Vec<_>>(), [3, 2]);
        assert_eq!(parse_page_token(&next), Some((2, b.clone())));
        let (page, next) = merged(vec![event(1, &a)], 2);
        assert_eq!(page.len(), 1);
        assert!(next.is_empty(), "the last page has no next");
        assert!(parse_page_token("12.not-a-uuid").is_none());
        assert_eq!(Kind::from_str("denied_permission"), Ok(Kind::DeniedPermission));
    }
}
