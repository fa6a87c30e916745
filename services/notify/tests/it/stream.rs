//! Subscribe: every event in order, resumed from a cursor after a disconnect without gaps,
//! while writers commit concurrently.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use pos_notify::Wake;
use pos_notify::directory::StaticDirectory;
use pos_platform::Db;
use pos_platform::testing::{postgres_db, sqlite_db};
use pos_proto::v1 as pb;
use pos_proto::v1::notify_service_server::NotifyService;

use crate::helpers::*;

async fn next(
    stream: &mut (impl futures::Stream<Item = Result<pb::JournalEntry, tonic::Status>> + Unpin),
) -> pb::JournalEntry {
    tokio::time::timeout(Duration::from_secs(20), stream.next()).await.expect("an entry in time").unwrap().unwrap()
}

async fn resume_without_gaps(db: &Db) {
    let wake = Arc::new(Wake::default());
    let notify = service(db, wake.clone());
    let planner = Arc::new(planner(db, wake, StaticDirectory::default()));
    let domain = unique_domain();
    // Three writers at once: on PostgreSQL their sequence values can commit out of order.
    let mut writers = Vec::new();
    for writer in 0..3 {
        let (db, planner, domain) = (db.clone(), planner.clone(), domain.clone());
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..50 {
                let id = uuid::Uuid::now_v7().to_string();
                let envelope = deliver(&db, &planner, &received(&id, i, &format!("w{writer}-{i}@{domain}")), &id).await;
                ids.push(envelope.message_id.to_string());
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            ids
        }));
    }
    let mut seen = Vec::new();
    let mut stream = notify.subscribe(system(pb::SubscribeRequest::default())).await.unwrap().into_inner();
    for _ in 0..40 {
        seen.push(next(&mut stream).await);
    }
    // The subscriber drops off mid-run and comes back with its last cursor.
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cursor = seen.last().unwrap().cursor;
    let mut stream = notify
        .subscribe(system(pb::SubscribeRequest { after_cursor: cursor, ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    while seen.len() < 150 {
        seen.push(next(&mut stream).await);
    }
    let mut written = HashSet::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    let cursors: Vec<i64> = seen.iter().map(|e| e.cursor).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "cursors in order");
    let received: HashSet<String> = seen.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(received.len(), 150, "no duplicates");
    assert_eq!(received, written, "nothing missed");
    // Nothing beyond what was written.
    assert!(tokio::time::timeout(Duration::from_millis(700), stream.next()).await.is_err());
    // Filters: nothing of another region or type.
    let mut filtered = notify
        .subscribe(system(pb::SubscribeRequest { region_codes: vec!["77".into()], ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert!(tokio::time::timeout(Duration::from_millis(700), filtered.next()).await.is_err());
    let mut typed = notify
        .subscribe(system(pb::SubscribeRequest { event_types: vec!["appeal.received".into()], ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut typed).await;
    assert_eq!((first.event_type.as_str(), first.region_code.as_str()), ("appeal.received", "41"));
    assert_eq!(first.type_name, "pos.v1.events.AppealReceived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resumes_from_its_cursor_without_gaps_on_postgres() {
    resume_without_gaps(&postgres_db("notify", &pos_notify::MIGRATIONS).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resumes_from_its_cursor_without_gaps_on_sqlite() {
    let (db, _dir) = sqlite_db("notify", &pos_notify::MIGRATIONS).await;
    resume_without_gaps(&db).await;
}

#[tokio::test]
async fn only_systems_subscribe() {
    let (db, _dir) = sqlite_db("notify", &pos_notify::MIGRATIONS).await;
    let notify = service(&db, Arc::new(Wake::default()));
    let refused = notify
        .subscribe(as_caller(pb::SubscribeRequest::default(), "school-1", &[pos_platform::auth::Role::Curator]))
        .await;
    assert_eq!(refused.err().unwrap().code(), tonic::Code::PermissionDenied);
}
