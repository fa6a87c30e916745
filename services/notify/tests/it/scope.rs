//! Every method of `pos.v1.NotifyService` keeps to the caller's scope: staff of another
//! organization (with every cabinet role) read and change none of the first organization's
//! deliveries, settings or notifications, and reach nothing deployment-wide; a caller without
//! the method's role is denied before the body is read.

use pos_platform::auth::Role;
use pos_platform::rpc_call;
use pos_platform::testing::{self, Scoped, TestOptions, TestServer};
use pos_proto::v1 as pb;
use pos_proto::v1::notify_service_client::NotifyServiceClient;
use tonic::transport::Channel;

const SCHOOL: &str = "school-1";
const OTHER: &str = "school-2";

/// Staff of the other school holding every cabinet role.
fn intruder<T>(message: T) -> tonic::Request<T> {
    pos_platform::grpc::outgoing(message, &testing::token("intruder", OTHER, "41", &Role::STAFF))
}

/// A caller of the first school holding every role but `allowed`.
fn without<T>(allowed: &[Role], message: T) -> tonic::Request<T> {
    let roles: Vec<Role> = Role::ALL.iter().copied().filter(|role| !allowed.contains(role)).collect();
    pos_platform::grpc::outgoing(message, &testing::token("outsider", SCHOOL, "41", &roles))
}

fn system<T>(message: T) -> tonic::Request<T> {
    pos_platform::grpc::outgoing(message, &testing::token("scope-test", "", "", &[Role::System]))
}

async fn spawn() -> (TestServer, NotifyServiceClient<Channel>) {
    let server =
        TestServer::spawn("notify", &pos_notify::MIGRATIONS, TestOptions::default(), pos_notify::component).await;
    let client = NotifyServiceClient::new(server.channel());
    (server, client)
}

/// The first school's objects: a dead e-mail to retry, and a notification of its own.
async fn first_school(server: &TestServer, client: &mut NotifyServiceClient<Channel>) -> (String, String) {
    let delivery_id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO deliveries (id, message_id, appeal_id, organization_id, event, audience, channel, recipient, \
         subject, body, status, created_at, next_attempt_at) \
         VALUES ($1, 'm-1', 'a-1', $2, 'appeal.routed', 'staff', 'email', 'coordinator@school.test', \
         'Новое сообщение', 'Текст', 'dead', 1, 1)",
    )
    .bind(&delivery_id)
    .bind(SCHOOL)
    .execute(server.db.pool())
    .await
    .expect("a dead delivery of the school");
    let notification = pb::Notification {
        organization_id: SCHOOL.into(),
        name: "Новое сообщение №{number}".into(),
        r#type: pb::NotificationType::MessageArrived as i32,
        addresses: vec!["info@school.test".into()],
        template: "№{number}".into(),
        enabled: true,
        ..Default::default()
    };
    let saved = client.upsert_notification(system(notification)).await.expect("the school's notification");
    (delivery_id, saved.into_inner().id)
}

/// Refused for its fields, if it were read.
fn bad_settings(organization: &str) -> pb::OrganizationSettings {
    pb::OrganizationSettings {
        organization_id: organization.into(),
        time_zone: "Nowhere/Nothing".into(),
        quiet_from: "25:00".into(),
        ..Default::default()
    }
}

fn bad_notification(organization: &str, id: &str) -> pb::Notification {
    pb::Notification {
        id: id.into(),
        organization_id: organization.into(),
        addresses: vec!["not an address".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn another_organization_reaches_nothing_of_the_first() {
    let (server, mut c) = spawn().await;
    let (delivery_id, notification_id) = first_school(&server, &mut c).await;
    let school = || SCHOOL.to_owned();
    // Without a named organization the log is the caller's own: the school's e-mail stays out.
    let own_log = {
        let mut client = c.clone();
        testing::call(async move {
            let listed = client
                .list_deliveries(intruder(pb::ListDeliveriesRequest { appeal_id: "a-1".into(), ..Default::default() }))
                .await?;
            let leaked = listed.get_ref().deliveries.iter().any(|d| d.organization_id == SCHOOL);
            assert!(!leaked, "the school's e-mails listed to another school: {listed:?}");
            Ok(listed)
        })
    };
    let rows: Vec<(&str, Scoped)> = vec![
        (
            "ListDeliveries",
            Scoped::Denied(rpc_call!(
                c,
                list_deliveries,
                intruder(pb::ListDeliveriesRequest { organization_id: school(), ..Default::default() })
            )),
        ),
        ("ListDeliveries", Scoped::OwnOnly(own_log)),
        (
            "GetDeliveryStats",
            Scoped::Denied(rpc_call!(c, get_delivery_stats, intruder(pb::GetDeliveryStatsRequest {}))),
        ),
        (
            "RetryDelivery",
            Scoped::Denied(rpc_call!(
                c,
                retry_delivery,
                intruder(pb::RetryDeliveryRequest { id: delivery_id.clone() })
            )),
        ),
        (
            "GetSettings",
            Scoped::Denied(rpc_call!(c, get_settings, intruder(pb::GetSettingsRequest { organization_id: school() }))),
        ),
        ("UpdateSettings", Scoped::Denied(rpc_call!(c, update_settings, intruder(bad_settings(SCHOOL))))),
        (
            "ListNotifications",
            Scoped::Denied(rpc_call!(
                c,
                list_notifications,
                intruder(pb::ListNotificationsRequest { organization_id: school() })
            )),
        ),
        (
            "UpsertNotification",
            Scoped::Denied(rpc_call!(c, upsert_notification, intruder(bad_notification(SCHOOL, &notification_id)))),
        ),
        (
            "DeleteNotification",
            Scoped::Denied(rpc_call!(
                c,
                delete_notification,
                intruder(pb::DeleteNotificationRequest { id: notification_id.clone(), organization_id: school() })
            )),
        ),
        ("Subscribe", Scoped::Denied(rpc_call!(c, subscribe, intruder(pb::SubscribeRequest::default())))),
    ];
    testing::assert_every_method_scoped("NotifyService", rows).await;
    // The school's notification is still there, as it was saved.
    let listed = c
        .list_notifications(system(pb::ListNotificationsRequest { organization_id: school() }))
        .await
        .expect("the school's notifications")
        .into_inner();
    let kept = listed.notifications.iter().find(|n| n.id == notification_id).expect("kept");
    assert_eq!(kept.addresses, ["info@school.test"]);
    server.stop().await;
}

#[tokio::test]
async fn a_caller_without_the_role_is_denied_before_the_body_is_read() {
    let (server, c) = spawn().await;
    let readers = [Role::System, Role::OrgAdmin, Role::Curator];
    let writers = [Role::System, Role::OrgAdmin];
    let system_only = [Role::System];
    let rows: Vec<(&str, Scoped)> = vec![
        (
            "ListDeliveries",
            Scoped::Denied(rpc_call!(c, list_deliveries, without(&readers, pb::ListDeliveriesRequest::default()))),
        ),
        (
            "GetDeliveryStats",
            Scoped::Denied(rpc_call!(c, get_delivery_stats, without(&system_only, pb::GetDeliveryStatsRequest {}))),
        ),
        (
            "RetryDelivery",
            Scoped::Denied(rpc_call!(c, retry_delivery, without(&writers, pb::RetryDeliveryRequest::default()))),
        ),
        (
            "GetSettings",
            Scoped::Denied(rpc_call!(c, get_settings, without(&readers, pb::GetSettingsRequest::default()))),
        ),
        ("UpdateSettings", Scoped::Denied(rpc_call!(c, update_settings, without(&writers, bad_settings(""))))),
        (
            "ListNotifications",
            Scoped::Denied(rpc_call!(
                c,
                list_notifications,
                without(&readers, pb::ListNotificationsRequest::default())
            )),
        ),
        (
            "UpsertNotification",
            Scoped::Denied(rpc_call!(c, upsert_notification, without(&writers, bad_notification("", "")))),
        ),
        (
            "DeleteNotification",
            Scoped::Denied(rpc_call!(
                c,
                delete_notification,
                without(&writers, pb::DeleteNotificationRequest::default())
            )),
        ),
        (
            "Subscribe",
            Scoped::Denied(rpc_call!(
                c,
                subscribe,
                without(&system_only, pb::SubscribeRequest { after_cursor: -1, ..Default::default() })
            )),
        ),
    ];
    testing::assert_every_method_scoped("NotifyService", rows).await;
    server.stop().await;
}
