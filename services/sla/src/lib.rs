//! SLA: answer deadlines in the addressee's local time.
//!
//! This first part arms a clock for every routed appeal and answers `GetDeadlines` for periods
//! counted in calendar days. Working-day periods wait for the production calendars; their
//! clocks are recorded so that nothing is lost when the calendars arrive.

pub mod deadline;

use async_trait::async_trait;
use chrono::Utc;
use chrono_tz::Tz;
use pos_platform::auth::{Role, authorize};
use pos_platform::bus::QueueSpec;
use pos_platform::consumer::{Consumer, HandleError, Handler};
use pos_platform::db::{Db, Migrations, RowExt, now_micros, to_micros};
use pos_platform::grpc::internal;
use pos_platform::host::{Component, ServiceContext};
use pos_platform::{Envelope, Tx};
use pos_proto::v1 as pb;
use pos_proto::v1::events::AppealRouted;
use pos_proto::v1::sla_service_server::{SlaService, SlaServiceServer};
use sqlx::Row;
use sqlx::migrate::Migrator;
use tonic::{Request, Response, Status};

static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
pub static MIGRATIONS: Migrations = Migrations { postgres: &POSTGRES, sqlite: &SQLITE };

pub async fn component(ctx: ServiceContext) -> anyhow::Result<Component> {
    let bindings = ctx.infra.config.bindings("appeal.routed");
    let bindings: Vec<&str> = bindings.iter().map(String::as_str).collect();
    let routes = tonic::service::Routes::new(SlaServiceServer::new(Sla { db: ctx.db.clone() }));
    Ok(Component::new("sla", ctx.db, routes, vec!["pos.v1.SlaService"])
        .consumer(Consumer::new(QueueSpec::new("sla.appeal-routed", &bindings), ArmOnRouted)))
}

/// `appeal.routed` → the appeal's answer clock.
struct ArmOnRouted;

#[async_trait]
impl Handler for ArmOnRouted {
    async fn handle(&self, tx: &mut Tx, envelope: &Envelope) -> Result<(), HandleError> {
        let routed: AppealRouted = envelope.decode()?;
        let zone: Tz = routed
            .time_zone
            .parse()
            .map_err(|_| HandleError::poison(anyhow::anyhow!("unknown time zone {:?}", routed.time_zone)))?;
        let registered_at = routed
            .registered_at
            .as_ref()
            .and_then(pos_proto::time::from_proto)
            .ok_or_else(|| HandleError::poison(anyhow::anyhow!("appeal.routed without registered_at")))?;
        let period = u32::try_from(routed.period_days)
            .map_err(|_| HandleError::poison(anyhow::anyhow!("negative period {}", routed.period_days)))?;
        let due = if routed.working_days { None } else { deadline::calendar_deadline(registered_at, zone, period) };
        sqlx::query(
            "INSERT INTO clocks (appeal_id, organization_id, region_code, time_zone, registered_at, period_days, \
             working_days, fast_track, due_at, armed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (appeal_id) DO NOTHING",
        )
        .bind(&routed.appeal_id)
        .bind(routed.organization.as_ref().map(|o| o.id.clone()).unwrap_or_default())
        .bind(&routed.region_code)
        .bind(&routed.time_zone)
        .bind(to_micros(registered_at))
        .bind(i64::from(routed.period_days))
        .bind(routed.working_days)
        .bind(routed.fast_track)
        .bind(due.map(to_micros))
        .bind(now_micros())
        .execute(&mut **tx)
        .await?;
        tracing::info!(appeal_id = %routed.appeal_id, due = ?due, fast_track = routed.fast_track, "answer clock armed");
        Ok(())
    }
}

struct Sla {
    db: Db,
}

#[tonic::async_trait]
impl SlaService for Sla {
    async fn get_deadlines(
        &self,
        request: Request<pb::GetDeadlinesRequest>,
    ) -> Result<Response<pb::Deadlines>, Status> {
        const METHOD: &str = "pos.v1.SlaService/GetDeadlines";
        let caller = authorize(&request, METHOD, &Role::ALL)?;
        let appeal_id = request.into_inner().appeal_id;
        let row = sqlx::query("SELECT organization_id, time_zone, due_at, fast_track FROM clocks WHERE appeal_id = $1")
            .bind(&appeal_id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| internal("failed to read the clock", e))?
            .ok_or_else(|| Status::not_found("no deadline is armed for this appeal"))?;
        let read = || -> Result<(String, String, Option<i64>, bool), sqlx::Error> {
            Ok((
                row.try_get("organization_id")?,
                row.try_get("time_zone")?,
                row.try_get("due_at")?,
                row.flag("fast_track")?,
            ))
        };
        let (organization_id, zone, due_at, fast_track) =
            read().map_err(|e| internal("failed to read the clock", e))?;
        // Applicants follow their appeal in intake; deadlines are the cabinet's and systems'.
        if !caller.has(Role::System) {
            caller.require_organization(&organization_id, METHOD)?;
        }
        let zone_tz: Tz = zone.parse().map_err(|_| internal("stored time zone", &zone))?;
        let due_at = due_at.ok_or_else(|| {
            Status::unavailable("working-day deadlines are counted once production calendars are loaded")
        })?;
        let due = pos_platform::db::from_micros(due_at);
        let now = Utc::now();
        Ok(Response::new(pb::Deadlines {
            appeal_id,
            fast_track,
            answer: Some(pb::Deadline {
                due: Some(pb::LocalTime {
                    utc: Some(pos_proto::time::to_proto(due)),
                    time_zone: zone.clone(),
                    local: due.with_timezone(&zone_tz).to_rfc3339(),
                }),
                remaining: deadline::remaining(now, due, zone_tz),
                paused: false,
                // Until warning policies arrive: the last local day before the deadline.
                at_risk: now <= due && due - now < chrono::Duration::hours(24),
                overdue: now > due,
            }),
            execution: None,
        }))
    }
}
