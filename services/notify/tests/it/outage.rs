//! notify with its database gone: every method of `pos.v1.NotifyService`, called as a system
//! (admitted everywhere, for any organization) with a body that passes validation, answers
//! `UNAVAILABLE` with retry info and the reason `DATABASE_UNAVAILABLE`, so that callers know to
//! come back rather than report a fault.

use futures::StreamExt;
use pos_platform::auth::Role;
use pos_platform::rpc_call;
use pos_platform::testing::{self, Call, TestDb, TestOptions, TestServer};
use pos_proto::v1 as pb;
use pos_proto::v1::notify_service_client::NotifyServiceClient;
use tonic::Request;

const ORGANIZATION: &str = "school-1";

/// A system caller, with a token of its own: every method admits it.
fn system<T>(message: T) -> Request<T> {
    pos_platform::grpc::outgoing(message, &testing::token("outage-test", "", "", &[Role::System]))
}

/// One rpc on its own clone of the client.
async fn every_method_is_unavailable(db: TestDb) {
    let server =
        TestServer::spawn("notify", &pos_notify::MIGRATIONS, TestOptions { db, ..Default::default() }, |ctx| {
            pos_notify::component(ctx)
        })
        .await;
    let c = NotifyServiceClient::new(server.channel());
    let deliveries = pb::ListDeliveriesRequest { organization_id: ORGANIZATION.into(), ..Default::default() };
    let settings = pb::OrganizationSettings {
        organization_id: ORGANIZATION.into(),
        time_zone: "Asia/Kamchatka".into(),
        quiet_from: "22:00".into(),
        quiet_until: "08:00".into(),
        digest_enabled: true,
        digest_at: "09:00".into(),
    };
    let notification = pb::Notification {
        organization_id: ORGANIZATION.into(),
        name: "Новое сообщение №{number}".into(),
        r#type: pb::NotificationType::MessageArrived as i32,
        addresses: vec!["info@school.test".into()],
        roles: vec!["coordinator".into()],
        template: "№{number}, {category}".into(),
        enabled: true,
        ..Default::default()
    };
    let delete =
        pb::DeleteNotificationRequest { id: "default-message_arrived".into(), organization_id: ORGANIZATION.into() };
    // The stream opens before it reads; its first item is the failure.
    let subscribe: Call = Box::pin({
        let mut client = c.clone();
        async move {
            let mut stream = client.subscribe(system(pb::SubscribeRequest::default())).await?.into_inner();
            stream.next().await.expect("an item")?;
            Ok(())
        }
    });
    let calls: Vec<(&str, Call)> = vec![
        ("ListDeliveries", rpc_call!(c, list_deliveries, system(deliveries))),
        ("GetDeliveryStats", rpc_call!(c, get_delivery_stats, system(pb::GetDeliveryStatsRequest {}))),
        (
            "RetryDelivery",
            rpc_call!(c, retry_delivery, system(pb::RetryDeliveryRequest { id: uuid::Uuid::now_v7().to_string() })),
        ),
        (
            "GetSettings",
            rpc_call!(c, get_settings, system(pb::GetSettingsRequest { organization_id: ORGANIZATION.into() })),
        ),
        ("UpdateSettings", rpc_call!(c, update_settings, system(settings))),
        (
            "ListNotifications",
            rpc_call!(
                c,
                list_notifications,
                system(pb::ListNotificationsRequest { organization_id: ORGANIZATION.into() })
            ),
        ),
        ("UpsertNotification", rpc_call!(c, upsert_notification, system(notification))),
        ("DeleteNotification", rpc_call!(c, delete_notification, system(delete))),
        ("Subscribe", subscribe),
    ];
    testing::assert_unavailable_without_database(&server, "NotifyService", calls).await;
    server.stop().await;
}

#[tokio::test]
async fn without_its_database_every_method_asks_to_retry_on_postgres() {
    every_method_is_unavailable(TestDb::Postgres).await;
}

#[tokio::test]
async fn without_its_database_every_method_asks_to_retry_on_sqlite() {
    every_method_is_unavailable(TestDb::Sqlite).await;
}
