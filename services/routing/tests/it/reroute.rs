//! `ticket.reroute_requested` → a new decision → `appeal.routed` again for the same appeal.

use std::sync::Arc;
use std::time::Duration;

use pos_platform::Envelope;
use pos_platform::cache::MemoryCache;
use pos_platform::consumer::{Handler, deliver};
use pos_platform::db::Db;
use pos_proto::v1 as pb;
use pos_proto::v1::events::{AppealReceived, AppealRouted, TicketRerouteRequested};
use pos_routing::consumer::AppealReceivedHandler;
use pos_routing::reroute::{self, RerouteRequestedHandler};
use pos_routing::snapshot::Snapshots;
use pos_routing::{OnConflict, RoutingConfig, Seed, load_seed};
use prost::{Message, Name};
use sqlx::Row;

struct Harness {
    db: Db,
    snapshots: Arc<Snapshots>,
    received: AppealReceivedHandler,
    reroute: RerouteRequestedHandler,
}

impl Harness {
    async fn new(db: Db) -> Harness {
        load_seed(&db, &Seed::embedded().unwrap(), OnConflict::Keep).await.unwrap();
        let snapshots = Arc::new(Snapshots::new(Arc::new(MemoryCache::new()), Duration::from_secs(60)));
        let config = Arc::new(RoutingConfig::default());
        Harness {
            db,
            received: AppealReceivedHandler::new(snapshots.clone(), config.clone()),
            reroute: RerouteRequestedHandler::new(snapshots.clone(), config),
            snapshots,
        }
    }

    async fn handle<H: Handler>(&self, handler: &H, envelope: &Envelope) {
        let mut tx = self.db.begin().await.unwrap();
        deliver(handler, &mut tx, envelope).await.unwrap();
        tx.commit().await.unwrap();
    }

    async fn routed(&self) -> Vec<AppealRouted> {
        sqlx::query("SELECT type_name, payload FROM outbox ORDER BY id")
            .fetch_all(self.db.pool())
            .await
            .unwrap()
            .into_iter()
            .filter(|row| row.get::<String, _>("type_name") == AppealRouted::full_name())
            .map(|row| AppealRouted::decode(row.get::<Vec<u8>, _>("payload").as_slice()).unwrap())
            .collect()
    }

    async fn parent_of(&self, organization_id: &str) -> String {
        let mut conn = self.db.pool().acquire().await.unwrap();
        let snapshot = self.snapshots.current(&mut conn).await.unwrap();
        let org = snapshot.directory.organization(organization_id).expect("known organization").clone();
        snapshot.directory.parent(&org).expect("a parent").id.clone()
    }
}

fn appeal() -> AppealReceived {
    AppealReceived {
        appeal_id: "a-1".into(),
        number: 251819982,
        registered_at: Some(prost_types::Timestamp { seconds: 1_736_943_480, nanos: 0 }),
        source: pb::Source::PortalWidget as i32,
        region_code: "41".into(),
        fact_id: "education.e-diary.access".into(),
        public_text: "Прошу предоставить доступ к электронному дневнику".into(),
        problem_address: "Петропавловск-Камчатский".into(),
        applicant: Some(pb::Applicant {
            full_name: "Иванова Мария Петровна".into(),
            email: "maria@example.org".into(),
            phone: String::new(),
            account_id: "esia-1001".into(),
        }),
        ..Default::default()
    }
}

fn request(ticket_id: &str, from: &str, to: &str) -> Envelope {
    let request = TicketRerouteRequested {
        ticket_id: ticket_id.into(),
        appeal_id: "a-1".into(),
        region_code: "41".into(),
        from_organization_id: from.into(),
        to_organization_id: to.into(),
        reason: "пришло по ошибке".into(),
        actor: "coord-1".into(),
        requested_at: None,
    };
    Envelope::new(&request, "41").with_appeal("a-1")
}

#[tokio::test]
async fn a_reroute_is_a_new_decision_and_routes_the_appeal_again() {
    let postgres = pos_platform::testing::postgres_db("routing", &pos_routing::MIGRATIONS).await;
    let (sqlite, _dir) = pos_platform::testing::sqlite_db("routing", &pos_routing::MIGRATIONS).await;
    for db in [postgres, sqlite] {
        let h = Harness::new(db).await;
        h.handle(&h.received, &Envelope::new(&appeal(), "41").with_appeal("a-1")).await;
        let first = h.routed().await.pop().expect("first decision");
        let school = first.organization.clone().expect("addressee").id;

        // Return to coordination: the parent, with the same deadline terms.
        h.handle(&h.reroute, &request("t-1", &school, "")).await;
        h.handle(&h.reroute, &request("t-1", &school, "")).await;
        let routed = h.routed().await;
        assert_eq!(routed.len(), 2, "a redelivered request decides once");
        let back = &routed[1];
        let parent = h.parent_of(&school).await;
        assert_eq!(back.organization.as_ref().map(|o| o.id.as_str()), Some(parent.as_str()));
        assert_eq!((back.appeal_id.as_str(), back.number), ("a-1", first.number));
        assert_eq!((back.period_days, back.fast_track), (first.period_days, first.fast_track));
        assert_eq!(
            back.explanation,
            "Организация КГАУ \"КАМЧАТСКИЙ ЦЕНТР ИНФОРМАТИЗАЦИИ И ОЦЕНКИ КАЧЕСТВА ОБРАЗОВАНИЯ\" вернула обращение на \
             координацию в «Минобразования Камчатского края». Причина: пришло по ошибке"
        );
        // A reroute announces the appeal as completely as its first routing did: every reader
        // of appeal.routed gets what it needs (the deadline's start, the names, the applicant).
        assert!(!first.reroute && back.reroute);
        assert!(back.registered_at.is_some());
        assert_eq!(back.registered_at, first.registered_at);
        assert_eq!((back.source, back.region_code.as_str()), (first.source, first.region_code.as_str()));
        assert_eq!(
            (&back.category_id, &back.subcategory_id, &back.fact_id),
            (&first.category_id, &first.subcategory_id, &first.fact_id)
        );
        assert_eq!((&back.public_text, &back.problem_address), (&first.public_text, &first.problem_address));
        assert_eq!(back.applicant, first.applicant);
        assert_eq!(back.applicant.as_ref().map(|a| a.email.as_str()), Some("maria@example.org"));
        // The names come from routing's classifier, in the first routing and the reroute alike.
        assert_eq!(first.fact_name, "Проблемы с доступом к электронному дневнику");
        assert!(!first.category_name.is_empty() && !first.subcategory_name.is_empty());
        assert_eq!(
            (&back.category_name, &back.subcategory_name, &back.fact_name),
            (&first.category_name, &first.subcategory_name, &first.fact_name)
        );

        // The parent redirects it back down to a named organization.
        h.handle(&h.reroute, &request("t-2", &parent, &school)).await;
        let again = h.routed().await.pop().expect("redirected");
        assert_eq!(again.organization.map(|o| o.id), Some(school.clone()));
        assert!(
            again.explanation.starts_with(
                "Организация «Минобразования Камчатского края» перенаправила обращение в КГАУ \"КАМЧАТСКИЙ ЦЕНТР"
            ),
            "{}",
            again.explanation
        );
        // An unknown addressee does not lose the appeal: it goes up from the one that asked.
        h.handle(&h.reroute, &request("t-3", &school, "no-such-org")).await;
        let up = h.routed().await.pop().expect("rerouted up");
        assert_eq!(up.organization.map(|o| o.id), Some(parent.clone()));
        assert!(
            up.explanation.contains(
                "перенаправила обращение в [no-such-org], но такой организации нет в справочнике; обращение возвращено \
                 на координацию в «Минобразования Камчатского края»"
            ),
            "{}",
            up.explanation
        );

        let reroutes = reroute::reroutes(&h.db, "a-1").await.unwrap();
        assert_eq!(reroutes.len(), 3);
        // The appeal's first decision is untouched.
        let decisions: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM routing_decisions").fetch_one(h.db.pool()).await.unwrap();
        assert_eq!(decisions, 1);
        if h.db.dialect() == pos_platform::db::Dialect::Postgres {
            h.db.drop_schema().await.unwrap();
        }
        h.db.close().await;
    }
}
