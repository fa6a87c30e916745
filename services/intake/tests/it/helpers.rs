//! The running intake for tests: a fresh PostgreSQL schema, the in-process bus and cache, a
//! fixed classifier, a gRPC server on 127.0.0.1:0, and clients with tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pos_intake::classifier::{ClassifierSnapshot, ClassifierSource, FixedClassifier, SourceError};
use pos_intake::config::IntakeConfig;
use pos_platform::Db;
use pos_platform::auth::Role;
use pos_platform::bus::Bus;
use pos_platform::bus::memory::MemoryBus;
use pos_platform::cache::MemoryCache;
use pos_platform::host::{Infra, ServiceContext};
use pos_platform::testing::{TempDir, authenticator, platform_config, postgres_db, token};
use pos_proto::v1::intake_service_client::IntakeServiceClient;
use pos_proto::v1::{
    AddresseeKind, AddresseeRule, Applicant, Category, Classifier, Fact, Organization, OrganizationType, Region,
    Source, Subcategory, SubmitAppealRequest,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const REGION: &str = "41";
pub const SCHOOL: &str = "school-41-1";
pub const COLLEGE: &str = "college-41-1";
pub const ROSOBRNADZOR: &str = "rosobrnadzor";
pub const APPLICANT: &str = "esia-1001";
pub const OTHER_APPLICANT: &str = "esia-2002";

/// The classifier of seeds 001 and 003, as routing would list it.
pub fn classifier() -> FixedClassifier {
    let picked = |kind: OrganizationType| {
        Some(AddresseeRule {
            kind: AddresseeKind::Picked as i32,
            organization_type: kind as i32,
            organization_id: String::new(),
        })
    };
    let fact = |id: &str, subcategory: &str, addressee: Option<AddresseeRule>| Fact {
        id: id.into(),
        subcategory_id: subcategory.into(),
        name: id.into(),
        addressee,
        period_days: 2,
        active: true,
        ..Fact::default()
    };
    FixedClassifier {
        classifier: Classifier {
            categories: vec![
                Category {
                    id: "edu-portal".into(), name: "Сведения об образовании на портале".into(), active: true
                },
                Category { id: "education".into(), name: "Образование".into(), active: true },
            ],
            subcategories: vec![
                Subcategory {
                    id: "edu-documents".into(),
                    category_id: "edu-portal".into(),
                    name: "Проблемы с документами об образовании".into(),
                    active: true,
                },
                Subcategory {
                    id: "e-diary".into(),
                    category_id: "education".into(),
                    name: "Электронный дневник".into(),
                    active: true,
                },
            ],
            facts: vec![
                fact("school-certificate-missing", "edu-documents", picked(OrganizationType::School)),
                fact("college-diploma-missing", "edu-documents", picked(OrganizationType::College)),
                fact(
                    "other",
                    "edu-documents",
                    Some(AddresseeRule {
                        kind: AddresseeKind::Federal as i32,
                        organization_type: OrganizationType::FederalAgency as i32,
                        organization_id: ROSOBRNADZOR.into(),
                    }),
                ),
                fact(
                    "diary-access",
                    "e-diary",
                    Some(AddresseeRule {
                        kind: AddresseeKind::Regional as i32,
                        organization_type: OrganizationType::RegionalCenter as i32,
                        organization_id: String::new(),
                    }),
                ),
            ],
            version: 1,
        },
        regions: vec![
            Region {
                code: REGION.into(),
                name: "Камчатский край".into(),
                time_zone: "Asia/Kamchatka".into(),
                cabinet_organization_id: "cabinet-41".into(),
            },
            Region {
                code: "16".into(),
                name: "Республика Татарстан".into(),
                time_zone: "Europe/Moscow".into(),
                cabinet_organization_id: "cabinet-16".into(),
            },
        ],
        organizations: vec![
            organization(SCHOOL, OrganizationType::School),
            organization(COLLEGE, OrganizationType::College),
            organization(ROSOBRNADZOR, OrganizationType::FederalAgency),
        ],
    }
}

fn organization(id: &str, kind: OrganizationType) -> Organization {
    Organization {
        id: id.into(),
        full_name: id.into(),
        short_name: id.into(),
        region_code: REGION.into(),
        r#type: kind as i32,
        connected: true,
        ..Organization::default()
    }
}

/// Routing that can be switched off: the snapshot and organization lookups then fail as an
/// unreachable peer would.
pub struct SwitchableRouting {
    /// What routing lists; tests change it to model routing's own changes.
    pub data: std::sync::Mutex<FixedClassifier>,
    pub snapshot_down: AtomicBool,
    pub organizations_down: AtomicBool,
}

impl SwitchableRouting {
    pub fn new(snapshot_down: bool, organizations_down: bool) -> Arc<SwitchableRouting> {
        Arc::new(SwitchableRouting {
            data: std::sync::Mutex::new(classifier()),
            snapshot_down: AtomicBool::new(snapshot_down),
            organizations_down: AtomicBool::new(organizations_down),
        })
    }
}

#[async_trait]
impl ClassifierSource for SwitchableRouting {
    async fn load(&self) -> Result<ClassifierSnapshot, SourceError> {
        if self.snapshot_down.load(Ordering::SeqCst) {
            return Err(SourceError::Unavailable("connection refused".into()));
        }
        let data = self.data.lock().unwrap().clone();
        data.load().await
    }

    async fn organization(&self, id: &str) -> Result<Option<Organization>, SourceError> {
        if self.organizations_down.load(Ordering::SeqCst) {
            return Err(SourceError::Unavailable("connection refused".into()));
        }
        let data = self.data.lock().unwrap().clone();
        data.organization(id).await
    }
}

/// A complete, valid submission from the test applicant.
pub fn submission(request_id: &str) -> SubmitAppealRequest {
    SubmitAppealRequest {
        request_id: request_id.into(),
        source: Source::Epgu as i32,
        applicant: Some(Applicant {
            full_name: "Иванова Мария Петровна".into(),
            email: "maria@example.ru".into(),
            phone: "+7 914 000-00-00".into(),
            account_id: APPLICANT.into(),
        }),
        region_code: REGION.into(),
        category_id: "edu-portal".into(),
        subcategory_id: "edu-documents".into(),
        fact_id: "school-certificate-missing".into(),
        picked_organization_id: SCHOOL.into(),
        text: "Аттестат сына не отображается в личном кабинете.".into(),
        problem_address: "Петропавловск-Камчатский, ул. Ленинская, 1".into(),
        attachment_ids: Vec::new(),
        public: true,
        portal_number: "EPGU-777".into(),
    }
}

pub fn applicant_token() -> String {
    token(APPLICANT, "", REGION, &[Role::Applicant])
}

pub fn other_applicant_token() -> String {
    token(OTHER_APPLICANT, "", REGION, &[Role::Applicant])
}

pub fn system_token() -> String {
    token("integration-portal", "", "", &[Role::System])
}

pub fn staff_token(organization: &str) -> String {
    token("coordinator-1", organization, REGION, &[Role::Coordinator])
}

/// A request with `authorization: Bearer <token>`.
pub fn call<T>(message: T, token: &str) -> tonic::Request<T> {
    pos_platform::grpc::outgoing(message, token)
}

pub struct TestApp {
    pub db: Db,
    pub bus: Arc<MemoryBus>,
    pub client: IntakeServiceClient<Channel>,
    pub dir: TempDir,
    /// The exchange, which the host puts before every queue name.
    pub exchange: String,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(Arc::new(classifier()), IntakeConfig::default()).await
    }

    pub async fn spawn_with(source: Arc<dyn ClassifierSource>, config: IntakeConfig) -> TestApp {
        let db = postgres_db("intake", &pos_intake::MIGRATIONS).await;
        TestApp::spawn_on(db, source, config).await
    }

    pub async fn spawn_on(db: Db, source: Arc<dyn ClassifierSource>, config: IntakeConfig) -> TestApp {
        let dir = TempDir::new();
        let bus = Arc::new(MemoryBus::new());
        let infra = Infra {
            config: platform_config(&dir.0),
            bus: bus.clone(),
            cache: Arc::new(MemoryCache::new()),
            authenticator: authenticator(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let ctx =
            ServiceContext { infra: infra.clone(), db: db.clone(), config_file: None, self_endpoint: endpoint.clone() };
        let component = pos_intake::component_from(ctx, config, source).await.expect("intake builds");
        let exchange = infra.config.exchange.clone();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { pos_platform::host::run(&infra, vec![component], listener, shutdown).await }
        });
        let client = IntakeServiceClient::new(pos_platform::grpc::channel(&endpoint).expect("channel"));
        let app = TestApp { db, bus, client, dir, exchange, shutdown, server };
        app.wait_for_consumers().await;
        app
    }

    /// Consumers declare their queues when they start; events published before would go to
    /// the unroutable queue.
    async fn wait_for_consumers(&self) {
        for _ in 0..200 {
            let routed = self.bus.queue_depth(&self.queue(pos_intake::consumer::ROUTED_QUEUE)).await;
            let status = self.bus.queue_depth(&self.queue(pos_intake::consumer::STATUS_QUEUE)).await;
            if routed.is_ok() && status.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("intake's consumers did not start");
    }

    /// The name a consumer's queue has on the bus.
    pub fn queue(&self, consumer_queue: &str) -> String {
        format!("{}.{consumer_queue}", self.exchange)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        self.db.drop_schema().await.expect("schema dropped");
        self.db.close().await;
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(self.db.pool())
            .await
            .expect("count")
    }
}

/// Polls `check` until it holds (events are handled asynchronously).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}
