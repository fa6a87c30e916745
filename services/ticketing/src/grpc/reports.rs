//! Reports over gRPC: the head, the coordinator and the curator build them for their own
//! organization (as staff see every ticket of it), and systems for any. A curator also
//! supervises the organizations under theirs (DOMAIN.md, "Who uses it"): ticketing keeps no
//! hierarchy, so [`Supervision`] asks routing's directory for the subtree (`ListSubordinates`)
//! with the curator's own token, and a curator's report may cover one supervised organization
//! or all of them (`include_supervised`, with a row per organization).

use std::collections::HashMap;

use pos_platform::auth::{Caller, Role, authorize};
use pos_platform::error::FieldViolations;
use pos_platform::{ApiError, ApiResult};
use pos_proto::v1 as pb;
use pos_proto::v1::routing_service_client::RoutingServiceClient;
use tonic::Request;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;

use super::{Ticketing, timestamp};
use crate::folder::Folder;
use crate::store::report::{self, Figures, ReportQuery};

/// Who builds reports (seed 004: the head and the curator; the coordinator, who routes the
/// organization's work), and systems (a situation center's dashboards).
pub(super) const REPORT_ROLES: [Role; 4] = [Role::Head, Role::Coordinator, Role::Curator, Role::System];

/// Category and executor ids are short identifiers; anything longer is not one.
const MAX_ID_CHARS: usize = 200;

/// How long routing gets to list a subtree.
const SUPERVISION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Routing's directory, asked which organizations lie under a curator's (routing's peers, or
/// this process's endpoint).
#[derive(Clone)]
pub struct Supervision {
    client: RoutingServiceClient<Channel>,
}

impl Supervision {
    pub fn new(channel: Channel) -> Supervision {
        Supervision { client: RoutingServiceClient::new(channel) }
    }

    /// The organizations under `organization_id` (not itself), with the caller's token: the
    /// directory is public to every signed-in role.
    async fn subordinates(&self, metadata: &MetadataMap, organization_id: &str) -> ApiResult<Vec<pb::Organization>> {
        let token = bearer(metadata)?;
        let body = pb::ListSubordinatesRequest { organization_id: organization_id.to_owned() };
        let call = || {
            let mut request = pos_platform::grpc::outgoing(body.clone(), token);
            request.set_timeout(SUPERVISION_TIMEOUT);
            let mut client = self.client.clone();
            async move { client.list_subordinates(request).await }
        };
        match pos_platform::peers::retry_idempotent(call).await {
            Ok(response) => Ok(response.into_inner().organizations),
            // No routing served here or among the peers: nothing can be shown to be supervised,
            // so a curator's report stays their own organization's (and naming another is
            // refused as it would be without supervision).
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                tracing::warn!("routing is not served: supervised organizations are unknown");
                Ok(Vec::new())
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "routing did not list the subtree");
                Err(ApiError::unavailable(
                    "DIRECTORY_UNAVAILABLE",
                    "the directory of organizations is not reachable: supervised organizations cannot be listed now",
                ))
            }
        }
    }

    /// The organization's short name for a report's row; empty when the directory cannot say
    /// now (the row stands, with its id).
    async fn name(&self, metadata: &MetadataMap, organization_id: &str) -> String {
        let Ok(token) = bearer(metadata) else { return String::new() };
        let mut request =
            pos_platform::grpc::outgoing(pb::GetOrganizationRequest { id: organization_id.to_owned() }, token);
        request.set_timeout(SUPERVISION_TIMEOUT);
        match self.client.clone().get_organization(request).await {
            Ok(found) => found.into_inner().short_name,
            Err(status) => {
                tracing::warn!(code = ?status.code(), "routing did not name the report's organization");
                String::new()
            }
        }
    }
}

/// The caller's bearer token, forwarded to routing.
fn bearer(metadata: &MetadataMap) -> ApiResult<&str> {
    metadata
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthenticated("a bearer token is required"))
}

/// The organizations a report covers, each with its short name where the directory gave one.
struct Covered {
    /// The organization asked for first.
    organizations: Vec<String>,
    names: HashMap<String, String>,
}

/// A curator's refusal for an organization outside their subtree, logged like every denial.
fn outside(caller: &Caller, organization_id: &str, method: &str) -> ApiError {
    tracing::warn!(
        target: "security",
        subject = %caller.subject,
        caller_organization = %caller.organization_id,
        organization = %organization_id,
        %method,
        "access denied to an organization outside the caller's supervision"
    );
    ApiError::denied("OTHER_ORGANIZATION", "the organization is neither the caller's nor one they supervise")
}

impl Ticketing {
    /// The organizations under `organization_id`; none when this ticketing has no directory.
    async fn supervised(&self, metadata: &MetadataMap, organization_id: &str) -> ApiResult<Vec<pb::Organization>> {
        match &self.supervision {
            Some(supervision) => supervision.subordinates(metadata, organization_id).await,
            None => Ok(Vec::new()),
        }
    }

    /// Which organizations the report covers, checked against the caller before anything else
    /// of the request is read: their own (or, for a system, any); for a curator, also one
    /// under theirs; with `include_supervised`, the one asked for and its whole subtree.
    async fn covered(
        &self,
        caller: &Caller,
        metadata: &MetadataMap,
        requested: &str,
        include_supervised: bool,
        method: &str,
    ) -> ApiResult<Covered> {
        let organization_id = if requested.is_empty() { caller.organization_id.clone() } else { requested.to_owned() };
        if organization_id.is_empty() {
            return Err(ApiError::invalid("organization_id", "required for callers without an organization"));
        }
        let curator = caller.has(Role::Curator) || caller.has(Role::System);
        if !caller.may_access_organization(&organization_id) && !curator {
            caller.require_organization(&organization_id, method)?;
        }
        if include_supervised && !curator {
            // Only a curator supervises: a head's or coordinator's report is of their own.
            return Err(outside(caller, &organization_id, method));
        }
        let mut names = HashMap::new();
        if !caller.may_access_organization(&organization_id) {
            // A curator naming another organization: it must lie under theirs.
            let subtree = self.supervised(metadata, &caller.organization_id).await?;
            if !subtree.iter().any(|o| o.id == organization_id) {
                return Err(outside(caller, &organization_id, method));
            }
            names.extend(subtree.into_iter().map(|o| (o.id, o.short_name)));
        }
        let mut organizations = vec![organization_id.clone()];
        if include_supervised {
            for organization in self.supervised(metadata, &organization_id).await? {
                organizations.push(organization.id.clone());
                names.insert(organization.id, organization.short_name);
            }
            // The first row's name: the subtree lists only what is under it.
            if let Some(supervision) = &self.supervision
                && !names.contains_key(&organization_id)
            {
                names.insert(organization_id.clone(), supervision.name(metadata, &organization_id).await);
            }
        }
        Ok(Covered { organizations, names })
    }

    pub(super) async fn report(&self, request: Request<pb::GetReportRequest>) -> ApiResult<pb::Report> {
        const METHOD: &str = "pos.v1.TicketingService/GetReport";
        let caller = authorize(&request, METHOD, &REPORT_ROLES)?;
        let metadata = request.metadata().clone();
        let body = request.into_inner();
        // The scope before the body: another organization is refused whatever else it asks.
        let covered = self.covered(&caller, &metadata, &body.organization_id, body.include_supervised, METHOD).await?;
        let organization_id = covered.organizations[0].clone();
        let mut violations = FieldViolations::new();
        let from = timestamp(body.period_from.as_ref(), "period_from", &mut violations);
        let to = timestamp(body.period_to.as_ref(), "period_to", &mut violations);
        for (field, value) in [("period_from", &body.period_from), ("period_to", &body.period_to)] {
            if value.is_none() {
                violations.add(field, "required");
            }
        }
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            violations.add("period_to", "must be after period_from");
        }
        let folder = match pb::Folder::try_from(body.folder) {
            Ok(folder) => Folder::from_proto(folder),
            Err(_) => {
                violations.add("folder", "unknown folder");
                None
            }
        };
        for (field, value) in [("category_id", &body.category_id), ("executor_id", &body.executor_id)] {
            if value.chars().count() > MAX_ID_CHARS {
                violations.add(field, format!("at most {MAX_ID_CHARS} characters"));
            }
        }
        violations.into_result()?;
        let (Some(from), Some(to)) = (from, to) else {
            return Err(ApiError::invalid("period_from", "required"));
        };
        let non_empty = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let query = ReportQuery {
            organization_id,
            from,
            to,
            folder,
            category_id: non_empty(body.category_id),
            executor_id: non_empty(body.executor_id),
        };
        let (built, per_organization) =
            report::build_over(&self.db, &query, &covered.organizations).await.map_err(ApiError::Db)?;
        let rows = |groups: Vec<(String, Figures)>| {
            groups.into_iter().map(|(key, f)| pb::ReportRow { key, figures: Some(figures(&f)) }).collect()
        };
        Ok(pb::Report {
            organization_id: query.organization_id,
            period_from: body.period_from,
            period_to: body.period_to,
            totals: Some(figures(&built.totals)),
            by_category: rows(built.by_category),
            by_executor: rows(built.by_executor),
            by_organization: if body.include_supervised {
                organization_rows(per_organization, &covered.names)
            } else {
                Vec::new()
            },
        })
    }
}

/// The organization asked for first, then the supervised ones, most received first (in the
/// directory's order among equals).
fn organization_rows(
    per_organization: Vec<(String, Figures)>,
    names: &HashMap<String, String>,
) -> Vec<pb::ReportOrganizationRow> {
    let mut rows = per_organization.into_iter();
    let first = rows.next();
    let mut others: Vec<(String, Figures)> = rows.collect();
    others.sort_by_key(|(_, figures)| std::cmp::Reverse(figures.received));
    first
        .into_iter()
        .chain(others)
        .map(|(organization_id, f)| pb::ReportOrganizationRow {
            short_name: names.get(&organization_id).cloned().unwrap_or_default(),
            organization_id,
            figures: Some(figures(&f)),
        })
        .collect()
}

fn figures(figures: &Figures) -> pb::ReportFigures {
    pb::ReportFigures {
        received: figures.received,
        answered: figures.answered,
        answered_on_time: figures.answered_on_time,
        overdue: figures.overdue,
        fast_track: figures.fast_track,
        re_reviews: figures.re_reviews,
        average_answer_seconds: figures.average_answer_seconds(),
        redirected: figures.redirected,
        rejected: figures.rejected,
    }
}
