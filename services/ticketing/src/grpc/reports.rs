//! Reports over gRPC: the head, the coordinator and the curator build them for their own
//! organization (as staff see every ticket of it), and systems for any. The model knows no
//! supervision between organizations here (the hierarchy is routing's), so a curator's reports
//! are of their own organization.

use pos_platform::auth::{Role, authorize};
use pos_platform::error::FieldViolations;
use pos_platform::{ApiError, ApiResult};
use pos_proto::v1 as pb;
use tonic::Request;

use super::{Ticketing, organization_of, timestamp};
use crate::folder::Folder;
use crate::store::report::{self, Figures, ReportQuery};

/// Who builds reports (seed 004: the head and the curator; the coordinator, who routes the
/// organization's work), and systems (a situation center's dashboards).
pub(super) const REPORT_ROLES: [Role; 4] = [Role::Head, Role::Coordinator, Role::Curator, Role::System];

/// Category and executor ids are short identifiers; anything longer is not one.
const MAX_ID_CHARS: usize = 200;

impl Ticketing {
    pub(super) async fn report(&self, request: Request<pb::GetReportRequest>) -> ApiResult<pb::Report> {
        const METHOD: &str = "pos.v1.TicketingService/GetReport";
        let caller = authorize(&request, METHOD, &REPORT_ROLES)?;
        let body = request.into_inner();
        // The scope before the body: another organization is refused whatever else it asks.
        let organization_id = organization_of(&caller, &body.organization_id, METHOD)?;
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
        let built = report::build(&self.db, &query).await.map_err(ApiError::Db)?;
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
        })
    }
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
