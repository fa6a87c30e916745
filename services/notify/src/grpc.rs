//! The gRPC API: delivery log and stats, the admin's notification settings, and the
//! resumable event stream for external systems.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use pos_platform::auth::{Caller, Role, authorize};
use pos_platform::db::{Db, RowExt, now_micros};
use pos_platform::grpc::{FieldViolations, internal, invalid_field};
use pos_proto::v1 as pb;
use pos_proto::v1::notify_service_server::NotifyService;
use sqlx::Row;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::Wake;
use crate::settings::{self, Kind, NotificationRule, OrgSettings, hhmm, parse_hhmm};
use crate::template;

pub struct Notify {
    pub db: Db,
    pub wake: Arc<Wake>,
    pub streams: CancellationToken,
}

/// Roles that may name any organization.
const DEPLOYMENT_WIDE: [Role; 1] = [Role::System];
/// Rows read per query when replaying the journal.
const REPLAY_BATCH: i64 = 500;

fn organization_scope(caller: &Caller, requested: &str, method: &str) -> Result<String, Status> {
    if caller.has_any(&DEPLOYMENT_WIDE) {
        return Ok(requested.to_owned());
    }
    // Staff see their own organization's log only, whatever they ask for.
    let organization = if requested.is_empty() { caller.organization_id.clone() } else { requested.to_owned() };
    caller.require_organization(&organization, method)?;
    Ok(organization)
}

fn delivery_from_row(row: &sqlx::any::AnyRow) -> Result<pb::Delivery, sqlx::Error> {
    Ok(pb::Delivery {
        id: row.try_get("id")?,
        event_id: row.try_get("message_id")?,
        event_type: row.try_get("event")?,
        channel: row.try_get("channel")?,
        recipient: row.try_get("recipient")?,
        status: row.try_get("status")?,
        attempts: row.try_get::<i64, _>("attempts")? as i32,
        last_error: row.try_get("last_error")?,
        created_at: Some(pos_proto::time::to_proto(row.time("created_at")?)),
        delivered_at: row.time_opt("delivered_at")?.map(pos_proto::time::to_proto),
        appeal_id: row.try_get("appeal_id")?,
        organization_id: row.try_get("organization_id")?,
        audience: row.try_get("audience")?,
        subject: row.try_get("subject")?,
        next_attempt_at: Some(pos_proto::time::to_proto(row.time("next_attempt_at")?)),
    })
}

fn rule_to_proto(rule: NotificationRule) -> pb::Notification {
    pb::Notification {
        id: rule.id,
        organization_id: rule.organization_id,
        name: rule.name,
        r#type: rule.kind.to_proto(),
        addresses: rule.addresses,
        roles: rule.roles,
        template: rule.template,
        enabled: rule.enabled,
        description: rule.description,
    }
}

fn settings_to_proto(settings: OrgSettings, digest_at: String) -> pb::OrganizationSettings {
    pb::OrganizationSettings {
        organization_id: settings.organization_id,
        time_zone: settings.time_zone.name().to_owned(),
        quiet_from: hhmm(settings.quiet.map(|q| q.0)),
        quiet_until: hhmm(settings.quiet.map(|q| q.1)),
        digest_enabled: settings.digest_at.is_some(),
        digest_at,
    }
}

const ROLES: [&str; 7] = ["coordinator", "executor", "head", "curator", "org_admin", "approver", "assignee"];

type EntryStream = Pin<Box<dyn Stream<Item = Result<pb::JournalEntry, Status>> + Send>>;

#[tonic::async_trait]
impl NotifyService for Notify {
    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        const METHOD: &str = "pos.v1.NotifyService/ListDeliveries";
        // The delivery log names recipients: operators and systems only.
        let caller = authorize(&request, METHOD, &[Role::System, Role::OrgAdmin, Role::Curator])?;
        let request = request.into_inner();
        let organization = organization_scope(&caller, &request.organization_id, METHOD)?;
        if request.appeal_id.is_empty() && request.status.is_empty() && organization.is_empty() {
            return Err(invalid_field("appeal_id", "give an appeal, a status or an organization"));
        }
        let limit = i64::from(request.page_size.clamp(1, 500));
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        for (column, value) in
            [("appeal_id", &request.appeal_id), ("status", &request.status), ("organization_id", &organization)]
        {
            if !value.is_empty() {
                binds.push(value.clone());
                conditions.push(format!("{column} = ${}", binds.len()));
            }
        }
        // Ids are UUIDv7, so their order is creation order and the last id is the page token.
        if !request.page_token.is_empty() {
            binds.push(request.page_token.clone());
            conditions.push(format!("id > ${}", binds.len()));
        }
        let sql = format!(
            "SELECT id, message_id, appeal_id, organization_id, event, audience, channel, recipient, subject, status, \
             attempts, last_error, created_at, next_attempt_at, delivered_at FROM deliveries WHERE {} \
             ORDER BY id LIMIT ${}",
            conditions.join(" AND "),
            binds.len() + 1
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in binds {
            query = query.bind(value);
        }
        let rows =
            query.bind(limit).fetch_all(self.db.pool()).await.map_err(|e| internal("failed to read deliveries", e))?;
        let deliveries = rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| internal("failed to read deliveries", e))?;
        let next_page_token = if deliveries.len() as i64 == limit {
            deliveries.last().map(|d| d.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListDeliveriesResponse { deliveries, next_page_token }))
    }

    async fn get_delivery_stats(
        &self,
        request: Request<pb::GetDeliveryStatsRequest>,
    ) -> Result<Response<pb::DeliveryStats>, Status> {
        const METHOD: &str = "pos.v1.NotifyService/GetDeliveryStats";
        authorize(&request, METHOD, &[Role::System])?;
        let stats = delivery_stats(&self.db).await.map_err(|e| internal("failed to read delivery stats", e))?;
        Ok(Response::new(stats))
    }

    async fn retry_delivery(
        &self,
        request: Request<pb::RetryDeliveryRequest>,
    ) -> Result<Response<pb::Delivery>, Status> {
        const METHOD: &str = "pos.v1.NotifyService/RetryDelivery";
        let caller = authorize(&request, METHOD, &[Role::System, Role::OrgAdmin])?;
        let id = request.into_inner().id;
        let row = sqlx::query("SELECT organization_id, status FROM deliveries WHERE id = $1")
            .bind(&id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| internal("failed to read the delivery", e))?
            .ok_or_else(|| Status::not_found("no such delivery"))?;
        let organization: String = row.try_get("organization_id").map_err(|e| internal("bad delivery row", e))?;
        organization_scope(&caller, &organization, METHOD)?;
        sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1 WHERE id = $2 AND status = 'dead'",
        )
        .bind(now_micros())
        .bind(&id)
        .execute(self.db.pool())
        .await
        .map_err(|e| internal("failed to requeue the delivery", e))?;
        self.wake.wake();
        let row = sqlx::query(
            "SELECT id, message_id, appeal_id, organization_id, event, audience, channel, recipient, subject, status, \
             attempts, last_error, created_at, next_attempt_at, delivered_at FROM deliveries WHERE id = $1",
        )
        .bind(&id)
        .fetch_one(self.db.pool())
        .await
        .map_err(|e| internal("failed to read the delivery", e))?;
        Ok(Response::new(delivery_from_row(&row).map_err(|e| internal("bad delivery row", e))?))
    }

    async fn get_settings(
        &self,
        request: Request<pb::GetSettingsRequest>,
    ) -> Result<Response<pb::OrganizationSettings>, Status> {
        const METHOD: &str = "pos.v1.NotifyService/GetSettings";
        let caller = authorize(&request, METHOD, &[Role::System, Role::OrgAdmin, Role::Curator])?;
        let organization = organization_scope(&caller, &request.into_inner().organization_id, METHOD)?;
        if organization.is_empty() {
            return Err(invalid_field("organization_id", "required"));
        }
        let (settings, digest_at) = read_settings(&self.db, &organization).await?;
        Ok(Response::new(settings_to_proto(settings, digest_at)))
    }

    async fn update_settings(
        &self,
        request: Request<pb::OrganizationSettings>,
    ) -> Result<Response<pb::OrganizationSettings>, Status> {
        const METHOD: &str = "pos.v1.NotifyService/UpdateSettings";
        let caller = authorize(&request, METHOD, &[Role::System, Role::OrgAdmin])?;
        let request = request.into_inner();
        let organization = organization_scope(&caller, &request.organization_id, METHOD)?;
        let mut violations = FieldViolations::new();
        if organization.is_empty() {
            violations.add("organization_id", "required");
        }
        if request.time_zone.parse::<chrono_tz::Tz>().is_err() {
            violations.add("time_zone", "an IANA time zone, e.g. Asia/Kamchatka");
        }
        let quiet_given = !request.quiet_from.is_empty() || !request.quiet_until.is_empty();
        for (field, value) in [("quiet_from", &request.quiet_from), ("quiet_until", &request.quiet_until)] {
            if quiet_given && parse_hhmm(value).is_none() {
                violations.add(field, "local time HH:MM; give both or neither");
            }
        }
        if quiet_given && request.quiet_from == request.quiet_until {
            violations.add("quiet_until", "must differ from quiet_from");
        }
        if request.digest_enabled && parse_hhmm(&request.digest_at).is_none() {
            violations.add("digest_at", "local time HH:MM");
        }
        violations.into_result()?;
        sqlx::query(
            "INSERT INTO org_settings (organization_id, time_zone, quiet_from, quiet_until, digest_enabled, digest_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (organization_id) DO UPDATE SET time_zone = excluded.time_zone, \
             quiet_from = excluded.quiet_from, quiet_until = excluded.quiet_until, digest_enabled = excluded.digest_enabled, \
             digest_at = excluded.digest_at, updated_at = excluded.updated_at",
        )
        .bind(&organization)
        .bind(&request.time_zone)
        .bind(&request.quiet_from)
        .bind(&request.quiet_until)
        .bind(request.digest_enabled)
        .bind(&request.digest_at)
        .bind(now_micros())
        .execute(self.db.pool())
        .await
        .map_err(|e| internal("failed to save settings", e))?;
        if !request.digest_enabled {
            // Nothing may stay held for a digest that will not come.
            sqlx::query("UPDATE deliveries SET status = 'pending' WHERE organization_id = $1 AND status = 'digest'")
                .bind(&organization)
                .execute(self.db.pool())
                .await
                .map_err(|e| internal("failed to release held mail", e))?;
            self.wake.wake();
        }
        let (settings, digest_at) = read_settings(&self.db, &organization).await?;
        Ok(Response::new(settings_to_proto(settings, digest_at)))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        const METHOD: &str = "pos.v1.NotifyService/ListNotifications";
        let caller = authorize(&request, METHOD, &[Role::System, Role::OrgAdmin, Role::Curator])?;
        let organization = organization_scope(&caller, &request.into_inner().organization_id, METHOD)?;
        if organization.is_empty() {
            return Err(invalid_field("organization_id", "required"));
        }
        let mut connection = self.db.pool().acquire().await.map_err(|e| internal("failed to read notifications", e))?;
        let rules = settings::rules(&mut connection, &organization)
            .await
            .map_err(|e| internal("failed to read notifications", e))?;
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: rules.into_iter().map(rule_to_proto).collect(),
        }))
    }

    async fn upsert_notification(
        &self,
        request: Request<pb::Notification>,
    ) -> Result<Response<pb::Notification>, Status> {
        const METHOD: &str = "pos.v1.NotifyService/UpsertNotification";
        let caller = authorize(&request, METHOD, &[Role::System, Role::OrgAdmin])?;
        let request = request.into_inner();
        let organization = organization_scope(&caller, &request.organization_id, METHOD)?;
        let mut violations = FieldViolations::new();
        if organization.is_empty() {
            violations.add("organization_id", "required");
        }
        if request.name.trim().is_empty() {
            violations.add("name", "the e-mail subject is required");
        } else if let Err(error) = template::validate(&request.name) {
            violations.add("name", error.to_string());
        }
        let kind = Kind::from_proto(request.r#type);
        if kind.is_none() {
            violations.add("type", "required");
        }
        if let Err(error) = template::validate(&request.template) {
            violations.add("template", error.to_string());
        }
        for (i, address) in request.addresses.iter().enumerate() {
            if address.trim().parse::<lettre::Address>().is_err() {
                violations.add(format!("addresses[{i}]"), "not an e-mail address");
            }
        }
        for (i, role) in request.roles.iter().enumerate() {
            if !ROLES.contains(&role.as_str()) {
                violations.add(format!("roles[{i}]"), format!("one of {}", ROLES.join(", ")));
            }
        }
        violations.into_result()?;
        let rule = NotificationRule {
            id: if request.id.is_empty() { uuid::Uuid::now_v7().to_string() } else { request.id },
            organization_id: organization.clone(),
            kind: kind.unwrap_or(Kind::MessageArrived),
            name: request.name.trim().to_owned(),
            addresses: request.addresses.iter().map(|a| a.trim().to_lowercase()).collect(),
            roles: request.roles,
            template: request.template,
            enabled: request.enabled,
            description: request.description,
        };
        let now = now_micros();
        let mut tx = self.db.begin().await.map_err(|e| internal("failed to save the notification", e))?;
        settings::materialize(&mut tx, &organization, now)
            .await
            .map_err(|e| internal("failed to save the notification", e))?;
        settings::save_rule(&mut tx, &rule, now).await.map_err(|e| internal("failed to save the notification", e))?;
        tx.commit().await.map_err(|e| internal("failed to save the notification", e))?;
        Ok(Response::new(rule_to_proto(rule)))
    }

    async fn delete_notification(
        &self,
        request: Request<pb::DeleteNotificationRequest>,
    ) -> Result<Response<pb::DeleteNotificationResponse>, Status> {
        const METHOD: &str = "pos.v1.NotifyService/DeleteNotification";
        let caller = authorize(&request, METHOD, &[Role::System, Role::OrgAdmin])?;
        let request = request.into_inner();
        let organization = organization_scope(&caller, &request.organization_id, METHOD)?;
        if organization.is_empty() {
            return Err(invalid_field("organization_id", "required"));
        }
        let mut tx = self.db.begin().await.map_err(|e| internal("failed to delete the notification", e))?;
        settings::materialize(&mut tx, &organization, now_micros())
            .await
            .map_err(|e| internal("failed to delete the notification", e))?;
        let deleted = sqlx::query("DELETE FROM org_notifications WHERE organization_id = $1 AND id = $2")
            .bind(&organization)
            .bind(&request.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| internal("failed to delete the notification", e))?
            .rows_affected();
        if deleted == 0 {
            return Err(Status::not_found("no such notification"));
        }
        tx.commit().await.map_err(|e| internal("failed to delete the notification", e))?;
        Ok(Response::new(pb::DeleteNotificationResponse {}))
    }

    type SubscribeStream = EntryStream;

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Result<Response<EntryStream>, Status> {
        const METHOD: &str = "pos.v1.NotifyService/Subscribe";
        authorize(&request, METHOD, &[Role::System])?;
        let filter = request.into_inner();
        if filter.after_cursor < 0 {
            return Err(invalid_field("after_cursor", "0 or a cursor received before"));
        }
        let (out, receiver) = mpsc::channel(256);
        let (db, wake, stop) = (self.db.clone(), self.wake.clone(), self.streams.clone());
        tokio::spawn(async move {
            tracing::info!(after = filter.after_cursor, "subscriber connected");
            follow(db, wake, filter, out, stop).await;
            tracing::info!("subscriber left");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

async fn read_settings(db: &Db, organization: &str) -> Result<(OrgSettings, String), Status> {
    let settings =
        settings::load_settings(db.pool(), organization).await.map_err(|e| internal("failed to read settings", e))?;
    let digest_at: Option<String> = sqlx::query("SELECT digest_at FROM org_settings WHERE organization_id = $1")
        .bind(organization)
        .fetch_optional(db.pool())
        .await
        .map_err(|e| internal("failed to read settings", e))?
        .map(|row| row.try_get("digest_at"))
        .transpose()
        .map_err(|e| internal("failed to read settings", e))?;
    Ok((settings, digest_at.unwrap_or_default()))
}

fn matches(filter: &pb::SubscribeRequest, entry: &pb::JournalEntry) -> bool {
    (filter.region_codes.is_empty() || filter.region_codes.contains(&entry.region_code))
        && (filter.organization_ids.is_empty() || filter.organization_ids.contains(&entry.organization_id))
        && (filter.event_types.is_empty() || filter.event_types.contains(&entry.event_type))
}

/// Replays the journal after the cursor, then follows it live. Replay and live are the same
/// loop over the same table, so nothing falls between them: a wake-up only shortens the wait.
async fn follow(
    db: Db,
    wake: Arc<Wake>,
    filter: pb::SubscribeRequest,
    out: mpsc::Sender<Result<pb::JournalEntry, Status>>,
    stop: CancellationToken,
) {
    let mut cursor = filter.after_cursor;
    loop {
        // Registered before reading, so a write between the read and the wait still wakes us.
        let woken = wake.journal.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let rows = sqlx::query(
            "SELECT seq, message_id, event, region_code, appeal_id, organization_id, type_name, payload, received_at \
             FROM journal WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(cursor)
        .bind(REPLAY_BATCH)
        .fetch_all(db.pool())
        .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                let _ = out.send(Err(internal("failed to read the journal", error))).await;
                return;
            }
        };
        let full = rows.len() as i64 == REPLAY_BATCH;
        for row in rows {
            let entry = match journal_entry(&row) {
                Ok(entry) => entry,
                Err(error) => {
                    let _ = out.send(Err(internal("failed to read the journal", error))).await;
                    return;
                }
            };
            cursor = entry.cursor;
            if matches(&filter, &entry) && out.send(Ok(entry)).await.is_err() {
                return;
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            () = &mut woken => {}
            // Another instance may have written: the wake-up is only in-process.
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = out.closed() => return,
            () = stop.cancelled() => return,
        }
    }
}

fn journal_entry(row: &sqlx::any::AnyRow) -> Result<pb::JournalEntry, sqlx::Error> {
    Ok(pb::JournalEntry {
        cursor: row.try_get("seq")?,
        event_id: row.try_get("message_id")?,
        event_type: row.try_get("event")?,
        region_code: row.try_get("region_code")?,
        appeal_id: row.try_get("appeal_id")?,
        organization_id: row.try_get("organization_id")?,
        type_name: row.try_get("type_name")?,
        payload: row.try_get::<Vec<u8>, _>("payload")?,
        received_at: Some(pos_proto::time::to_proto(row.time("received_at")?)),
    })
}

/// Counts by status and the measured sending window.
pub async fn delivery_stats(db: &Db) -> Result<pb::DeliveryStats, sqlx::Error> {
    let mut stats = pb::DeliveryStats::default();
    for row in sqlx::query("SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status").fetch_all(db.pool()).await? {
        let n: i64 = row.try_get("n")?;
        match row.try_get::<String, _>("status")?.as_str() {
            "pending" | "digest" => stats.pending += n,
            "sending" => stats.sending = n,
            "sent" | "digested" => stats.sent += n,
            "dead" => stats.dead = n,
            other => tracing::warn!(status = other, "unknown delivery status"),
        }
    }
    stats.resent_after_crash = sqlx::query("SELECT COALESCE(SUM(resent), 0) AS n FROM deliveries")
        .fetch_one(db.pool())
        .await?
        .try_get::<i64, _>("n")?;
    let mut windows: Vec<i64> = sqlx::query(
        "SELECT delivered_at - sending_at AS w FROM deliveries \
         WHERE status = 'sent' AND sending_at IS NOT NULL ORDER BY delivered_at DESC LIMIT 100000",
    )
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|row| row.try_get::<i64, _>("w"))
    .collect::<Result<_, _>>()?;
    windows.sort_unstable();
    let at = |q: f64| windows.get(((windows.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
    stats.window_p50_micros = at(0.5);
    stats.window_p99_micros = at(0.99);
    stats.window_max_micros = windows.last().copied().unwrap_or(0);
    Ok(stats)
}
