//! The gRPC API: delivery log and stats, the admin's notification settings, and the
//! resumable event stream for external systems.
//!
//! Each method checks the caller's roles and organization first, then the request, and answers
//! with an [`ApiError`]; database failures pass through as [`ApiError::Db`], so an unreachable
//! database is `UNAVAILABLE` with retry info.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use pos_platform::ApiResult;
use pos_platform::audit;
use pos_platform::auth::{Caller, Role, authorize};
use pos_platform::db::{Db, now_micros};
use pos_platform::error::{ApiError, FieldViolations};
use pos_proto::v1 as pb;
use pos_proto::v1::notify_service_server::NotifyService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::Wake;
use crate::settings::{Kind, NotificationRule, OrgSettings, hhmm, parse_hhmm, recipient_roles};
use crate::store;
use crate::store::deliveries::LogFilter;
use crate::store::settings::SettingsUpdate;
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

fn organization_scope(caller: &Caller, requested: &str, method: &str) -> ApiResult<String> {
    if caller.has_any(&DEPLOYMENT_WIDE) {
        return Ok(requested.to_owned());
    }
    // Staff see their own organization's log only, whatever they ask for.
    let organization = if requested.is_empty() { caller.organization_id.clone() } else { requested.to_owned() };
    caller.require_organization(&organization, method)?;
    Ok(organization)
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

type EntryStream = Pin<Box<dyn Stream<Item = Result<pb::JournalEntry, Status>> + Send>>;

/// The methods, answering with [`ApiError`]; the trait below only converts.
impl Notify {
    async fn deliveries(&self, request: Request<pb::ListDeliveriesRequest>) -> ApiResult<pb::ListDeliveriesResponse> {
        const METHOD: &str = "pos.v1.NotifyService/ListDeliveries";
        // The delivery log names recipients: operators and systems only.
        let caller = authorize(&request, METHOD, &[Role::System, Role::OrgAdmin, Role::Curator])?;
        let request = request.into_inner();
        let organization = organization_scope(&caller, &request.organization_id, METHOD)?;
        if request.appeal_id.is_empty() && request.status.is_empty() && organization.is_empty() {
            return Err(ApiError::invalid("appeal_id", "give an appeal, a status or an organization"));
        }
        let limit = i64::from(request.page_size.clamp(1, 500));
        let filter = LogFilter {
            appeal_id: &request.appeal_id,
            status: &request.status,
            organization_id: &organization,
            after_id: &request.page_token,
        };
        let deliveries = store::deliveries::list(self.db.pool(), &filter, limit).await?;
        // Ids are UUIDv7, so their order is creation order and the last id is the page token.
        let next_page_token = if deliveries.len() as i64 == limit {
            deliveries.last().map(|d| d.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListDeliveriesResponse { deliveries, next_page_token })
    }

    async fn stats(&self, request: Request<pb::GetDeliveryStatsRequest>) -> ApiResult<pb::DeliveryStats> {
        const METHOD: &str = "pos.v1.NotifyService/GetDeliveryStats";
        authorize(&request, METHOD, &[Role::System])?;
        Ok(store::deliveries::stats(self.db.pool()).await?)
    }

    async fn retry(&self, request: Request<pb::RetryDeliveryRequest>) -> ApiResult<pb::Delivery> {
        const METHOD: &str = "pos.v1.NotifyService/RetryDelivery";
        let caller = authorize(&request, METHOD, &[Role::System, Role::OrgAdmin])?;
        let id = request.into_inner().id;
        let delivery = store::deliveries::get(self.db.pool(), &id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such delivery"))?;
        organization_scope(&caller, &delivery.organization_id, METHOD)?;
        store::deliveries::requeue_dead(self.db.pool(), &id, now_micros()).await?;
        self.wake.wake();
        let delivery = store::deliveries::get(self.db.pool(), &id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such delivery"))?;
        Ok(delivery)
    }

    async fn settings(&self, request: Request<pb::GetSettingsRequest>) -> ApiResult<pb::OrganizationSettings> {
        const METHOD: &str = "pos.v1.NotifyService/GetSettings";
        let caller = authorize(&request, METHOD, &[Role::System, Role::OrgAdmin, Role::Curator])?;
        let organization = organization_scope(&caller, &request.into_inner().organization_id, METHOD)?;
        if organization.is_empty() {
            return Err(ApiError::invalid("organization_id", "required"));
        }
        self.read_settings(&organization).await
    }

    async fn save_settings(&self, request: Request<pb::OrganizationSettings>) -> ApiResult<pb::OrganizationSettings> {
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
        let update = SettingsUpdate {
            organization_id: &organization,
            time_zone: &request.time_zone,
            quiet_from: &request.quiet_from,
            quiet_until: &request.quiet_until,
            digest_enabled: request.digest_enabled,
            digest_at: &request.digest_at,
        };
        let mut tx = self.db.begin().await?;
        store::settings::save(&mut *tx, &update, now_micros()).await?;
        let details = serde_json::json!({
            "time_zone": request.time_zone,
            "quiet_from": request.quiet_from,
            "quiet_until": request.quiet_until,
            "digest_enabled": request.digest_enabled,
            "digest_at": request.digest_at,
        });
        audit::record(&mut tx, &caller, audit::Kind::SettingsChanged, METHOD, &organization, &organization, details)
            .await?;
        tx.commit().await?;
        if !request.digest_enabled {
            // Nothing may stay held for a digest that will not come.
            store::deliveries::release_held(self.db.pool(), &organization).await?;
            self.wake.wake();
        }
        self.read_settings(&organization).await
    }

    async fn read_settings(&self, organization: &str) -> ApiResult<pb::OrganizationSettings> {
        let settings = store::settings::load(self.db.pool(), organization).await?;
        let digest_at = store::settings::saved_digest_at(self.db.pool(), organization).await?;
        Ok(settings_to_proto(settings, digest_at))
    }

    async fn notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> ApiResult<pb::ListNotificationsResponse> {
        const METHOD: &str = "pos.v1.NotifyService/ListNotifications";
        let caller = authorize(&request, METHOD, &[Role::System, Role::OrgAdmin, Role::Curator])?;
        let organization = organization_scope(&caller, &request.into_inner().organization_id, METHOD)?;
        if organization.is_empty() {
            return Err(ApiError::invalid("organization_id", "required"));
        }
        let mut connection = self.db.pool().acquire().await?;
        let rules = store::settings::rules(&mut connection, &organization).await?;
        Ok(pb::ListNotificationsResponse { notifications: rules.into_iter().map(rule_to_proto).collect() })
    }

    async fn save_notification(&self, request: Request<pb::Notification>) -> ApiResult<pb::Notification> {
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
        let known_roles: Vec<&str> = recipient_roles().collect();
        for (i, role) in request.roles.iter().enumerate() {
            if !known_roles.contains(&role.as_str()) {
                violations.add(format!("roles[{i}]"), format!("one of {}", known_roles.join(", ")));
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
        let mut tx = self.db.begin().await?;
        store::settings::materialize(&mut tx, &organization, now).await?;
        store::settings::save_rule(&mut *tx, &rule, now).await?;
        tx.commit().await?;
        Ok(rule_to_proto(rule))
    }

    async fn remove_notification(
        &self,
        request: Request<pb::DeleteNotificationRequest>,
    ) -> ApiResult<pb::DeleteNotificationResponse> {
        const METHOD: &str = "pos.v1.NotifyService/DeleteNotification";
        let caller = authorize(&request, METHOD, &[Role::System, Role::OrgAdmin])?;
        let request = request.into_inner();
        let organization = organization_scope(&caller, &request.organization_id, METHOD)?;
        if organization.is_empty() {
            return Err(ApiError::invalid("organization_id", "required"));
        }
        let mut tx = self.db.begin().await?;
        store::settings::materialize(&mut tx, &organization, now_micros()).await?;
        if store::settings::delete_rule(&mut *tx, &organization, &request.id).await? == 0 {
            return Err(ApiError::not_found("no such notification"));
        }
        tx.commit().await?;
        Ok(pb::DeleteNotificationResponse {})
    }

    fn open_stream(&self, request: Request<pb::SubscribeRequest>) -> ApiResult<EntryStream> {
        const METHOD: &str = "pos.v1.NotifyService/Subscribe";
        authorize(&request, METHOD, &[Role::System])?;
        let filter = request.into_inner();
        if filter.after_cursor < 0 {
            return Err(ApiError::invalid("after_cursor", "0 or a cursor received before"));
        }
        let (out, receiver) = mpsc::channel(256);
        let (db, wake, stop) = (self.db.clone(), self.wake.clone(), self.streams.clone());
        tokio::spawn(async move {
            tracing::info!(after = filter.after_cursor, "subscriber connected");
            follow(db, wake, filter, out, stop).await;
            tracing::info!("subscriber left");
        });
        Ok(Box::pin(ReceiverStream::new(receiver)))
    }
}

#[tonic::async_trait]
impl NotifyService for Notify {
    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        Ok(Response::new(self.deliveries(request).await?))
    }

    async fn get_delivery_stats(
        &self,
        request: Request<pb::GetDeliveryStatsRequest>,
    ) -> Result<Response<pb::DeliveryStats>, Status> {
        Ok(Response::new(self.stats(request).await?))
    }

    async fn retry_delivery(
        &self,
        request: Request<pb::RetryDeliveryRequest>,
    ) -> Result<Response<pb::Delivery>, Status> {
        Ok(Response::new(self.retry(request).await?))
    }

    async fn get_settings(
        &self,
        request: Request<pb::GetSettingsRequest>,
    ) -> Result<Response<pb::OrganizationSettings>, Status> {
        Ok(Response::new(self.settings(request).await?))
    }

    async fn update_settings(
        &self,
        request: Request<pb::OrganizationSettings>,
    ) -> Result<Response<pb::OrganizationSettings>, Status> {
        Ok(Response::new(self.save_settings(request).await?))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        Ok(Response::new(self.notifications(request).await?))
    }

    async fn upsert_notification(
        &self,
        request: Request<pb::Notification>,
    ) -> Result<Response<pb::Notification>, Status> {
        Ok(Response::new(self.save_notification(request).await?))
    }

    async fn delete_notification(
        &self,
        request: Request<pb::DeleteNotificationRequest>,
    ) -> Result<Response<pb::DeleteNotificationResponse>, Status> {
        Ok(Response::new(self.remove_notification(request).await?))
    }

    type SubscribeStream = EntryStream;

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Result<Response<EntryStream>, Status> {
        Ok(Response::new(self.open_stream(request)?))
    }
}

fn matches(filter: &pb::SubscribeRequest, entry: &pb::JournalEntry) -> bool {
    (filter.region_codes.is_empty() || filter.region_codes.contains(&entry.region_code))
        && (filter.organization_ids.is_empty() || filter.organization_ids.contains(&entry.organization_id))
        && (filter.event_types.is_empty() || filter.event_types.contains(&entry.event_type))
}

/// Replays the journal after the cursor, then follows it live. Replay and live are the same
/// loop over the same table, so nothing falls between them: a wake-up only shortens the wait.
/// A failed read ends the stream with its status (`UNAVAILABLE` while the database is down).
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
        let entries = match store::journal::after(db.pool(), cursor, REPLAY_BATCH).await {
            Ok(entries) => entries,
            Err(error) => {
                let _ = out.send(Err(Status::from(ApiError::Db(error)))).await;
                return;
            }
        };
        let full = entries.len() as i64 == REPLAY_BATCH;
        for entry in entries {
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
