//! The admin's notification configuration: defaults, validation, recipients, quiet hours and
//! the daily digest.

use std::sync::Arc;

use chrono::Utc;
use pos_notify::Wake;
use pos_notify::directory::StaticDirectory;
use pos_platform::Db;
use pos_platform::auth::Role;
use pos_platform::testing::{postgres_db, sqlite_db};
use pos_proto::v1 as pb;
use pos_proto::v1::events as ev;
use pos_proto::v1::notify_service_server::NotifyService;
use sqlx::Row;

use crate::helpers::*;

fn admin<T>(message: T) -> tonic::Request<T> {
    as_caller(message, "school-1", &[Role::OrgAdmin])
}

async fn arrive(db: &Db, planner: &pos_notify::plan::Planner, organization: &str) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    deliver(db, planner, &received(&id, 5, "applicant@x.test"), &id).await;
    deliver(
        db,
        planner,
        &ev::AppealRouted {
            appeal_id: id.clone(),
            number: 5,
            organization: Some(pb::OrganizationRef {
                id: organization.into(),
                short_name: "Школа".into(),
                ..Default::default()
            }),
            time_zone: "Asia/Kamchatka".into(),
            ..Default::default()
        },
        &id,
    )
    .await;
    let deadline = ev::SlaDeadline {
        appeal_id: id.clone(),
        organization_id: organization.into(),
        clock: ev::SlaClock::Answer as i32,
        due: ts(Utc::now() + chrono::Duration::days(30)),
        ..Default::default()
    };
    deliver(db, planner, &ev::SlaArmed { deadline: Some(deadline), at: ts(Utc::now()) }, &id).await;
    id
}

async fn organization_rows(db: &Db, appeal_id: &str) -> Vec<(String, String, String, i64)> {
    sqlx::query(
        "SELECT recipient, subject, status, next_attempt_at FROM deliveries \
         WHERE appeal_id = $1 AND audience = 'organization' ORDER BY recipient",
    )
    .bind(appeal_id)
    .fetch_all(db.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get("recipient"), r.get("subject"), r.get("status"), r.get("next_attempt_at")))
    .collect()
}

async fn configuration(db: &Db) {
    let wake = Arc::new(Wake::default());
    let notify = service(db, wake.clone());
    let mut directory = StaticDirectory::default();
    directory.emails.insert("school-1".into(), "school@x.test".into());
    let planner = planner(db, wake, directory);

    // A new organization starts with the defaults, one per type.
    let defaults = notify
        .list_notifications(admin(pb::ListNotificationsRequest { organization_id: "school-1".into() }))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert_eq!(defaults.len(), 5);
    let arrived = arrive(db, &planner, "school-1").await;
    assert_eq!(organization_rows(db, &arrived).await.len(), 1, "the default goes to the organization's own address");

    // Templates are checked when saved.
    let invalid = notify
        .upsert_notification(admin(pb::Notification {
            organization_id: "school-1".into(),
            name: "Поступление".into(),
            r#type: pb::NotificationType::MessageArrived as i32,
            addresses: vec!["not-an-address".into()],
            roles: vec!["janitor".into()],
            template: "Сообщение {nomer}".into(),
            enabled: true,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    let fields = pos_platform::error::violated_fields(&invalid);
    for field in ["template", "addresses[0]", "roles[0]"] {
        assert!(fields.iter().any(|f| f == field), "{field} not in {fields:?}");
    }
    // Another organization's admin cannot touch it.
    let foreign = notify
        .list_notifications(admin(pb::ListNotificationsRequest { organization_id: "school-2".into() }))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), tonic::Code::PermissionDenied);

    // The admin's own "message arrived": two mailing addresses and a template of their own.
    let saved = notify
        .upsert_notification(admin(pb::Notification {
            organization_id: "school-1".into(),
            name: "Новое сообщение №{number}".into(),
            r#type: pb::NotificationType::MessageArrived as i32,
            addresses: vec!["Info@School.test".into(), "director@school.test".into()],
            template: "№{number}, {category}, {organization}, {created_at}, срок {deadline}, {status}".into(),
            enabled: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let listed = notify
        .list_notifications(admin(pb::ListNotificationsRequest { organization_id: "school-1".into() }))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert_eq!(listed.len(), 6, "the defaults stay beside the new one");
    // The default "message arrived" is switched off; the new one replaces it.
    let mut default_arrived = listed.iter().find(|n| n.id == "default-message_arrived").unwrap().clone();
    default_arrived.enabled = false;
    notify.upsert_notification(admin(default_arrived)).await.unwrap();
    let arrived = arrive(db, &planner, "school-1").await;
    let rows = organization_rows(db, &arrived).await;
    let recipients: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(recipients, ["director@school.test", "info@school.test"]);
    assert_eq!(rows[0].1, "Новое сообщение №5");

    // Quiet hours around the clock but one minute: the mail waits for their end.
    let now = Utc::now().with_timezone(&chrono_tz::Asia::Kamchatka);
    let from = (now - chrono::Duration::minutes(1)).format("%H:%M").to_string();
    let until = (now + chrono::Duration::minutes(2)).format("%H:%M").to_string();
    notify
        .update_settings(admin(pb::OrganizationSettings {
            organization_id: "school-1".into(),
            time_zone: "Asia/Kamchatka".into(),
            quiet_from: from,
            quiet_until: until,
            ..Default::default()
        }))
        .await
        .unwrap();
    let quiet = arrive(db, &planner, "school-1").await;
    for row in organization_rows(db, &quiet).await {
        assert!(row.3 > pos_platform::db::now_micros() + 30_000_000, "held until the quiet hours end");
    }
    let invalid = notify
        .update_settings(admin(pb::OrganizationSettings {
            organization_id: "school-1".into(),
            time_zone: "Mars/Olympus".into(),
            quiet_from: "25:00".into(),
            quiet_until: "07:00".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    let fields = pos_platform::error::violated_fields(&invalid);
    assert!(fields.contains(&"time_zone".to_owned()) && fields.contains(&"quiet_from".to_owned()), "{fields:?}");

    // A daily digest: held, then one e-mail per recipient at the digest time.
    notify
        .update_settings(admin(pb::OrganizationSettings {
            organization_id: "school-1".into(),
            time_zone: "Asia/Kamchatka".into(),
            digest_enabled: true,
            digest_at: "00:00".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let first = arrive(db, &planner, "school-1").await;
    let second = arrive(db, &planner, "school-1").await;
    for appeal in [&first, &second] {
        assert!(organization_rows(db, appeal).await.iter().all(|r| r.2 == "digest"));
    }
    let queued = pos_notify::digest::round(db, Utc::now()).await.unwrap();
    assert_eq!(queued, 2, "one digest per recipient");
    assert_eq!(pos_notify::digest::round(db, Utc::now()).await.unwrap(), 0, "once a day");
    let digests: Vec<String> =
        sqlx::query("SELECT body FROM deliveries WHERE event = 'digest' AND recipient = 'info@school.test'")
            .fetch_all(db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("body"))
            .collect();
    assert_eq!(digests.len(), 1);
    assert_eq!(digests[0].matches("Новое сообщение №5").count(), 2);
    assert!(organization_rows(db, &first).await.iter().all(|r| r.2 == "digested"));

    // Deleting them all leaves none, not the defaults.
    for notification in listed {
        notify
            .delete_notification(admin(pb::DeleteNotificationRequest {
                id: notification.id,
                organization_id: "school-1".into(),
            }))
            .await
            .unwrap();
    }
    let _ = saved;
    let none = notify
        .list_notifications(admin(pb::ListNotificationsRequest { organization_id: "school-1".into() }))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert!(none.is_empty());
}

#[tokio::test]
async fn an_admin_configures_notifications_on_postgres() {
    configuration(&postgres_db("notify", &pos_notify::MIGRATIONS).await).await;
}

#[tokio::test]
async fn an_admin_configures_notifications_on_sqlite() {
    let (db, _dir) = sqlite_db("notify", &pos_notify::MIGRATIONS).await;
    configuration(&db).await;
}
