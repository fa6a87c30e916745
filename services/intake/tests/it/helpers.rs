//! The running intake for tests (the platform's [`TestServer`] with a fixed classifier), clients
//! with tokens, and deliveries settled by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use pos_intake::classifier::{ClassifierSnapshot, ClassifierSource, FixedClassifier, SourceError};
use pos_intake::config::IntakeConfig;
use pos_platform::auth::Role;
use pos_platform::testing::{TestOptions, TestServer, token};
use pos_proto::v1::intake_service_client::IntakeServiceClient;
use pos_proto::v1::{
    AddresseeKind, AddresseeRule, Applicant, Category, Classifier, Fact, Organization, OrganizationType, Region,
    Source, Subcategory, SubmitAppealRequest,
};
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

/// Everything a caller reads in a refusal: code, message, reason and each field violation. Two
/// refusals that tell the caller the same thing are equal here.
pub fn refusal(status: &tonic::Status) -> (tonic::Code, String, String, Vec<(String, String)>) {
    use tonic_types::StatusExt;
    let violations = status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| (v.field, v.description)).collect())
        .unwrap_or_default();
    (status.code(), status.message().to_owned(), pos_platform::error::reason(status), violations)
}

/// A request with `authorization: Bearer <token>`.
pub fn call<T>(message: T, token: &str) -> tonic::Request<T> {
    pos_platform::grpc::outgoing(message, token)
}

/// Intake served with a classifier source of the test's choice, and a client to it.
pub struct TestApp {
    pub server: TestServer,
    pub client: IntakeServiceClient<Channel>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(Arc::new(classifier()), IntakeConfig::default()).await
    }

    pub async fn spawn_with(source: Arc<dyn ClassifierSource>, config: IntakeConfig) -> TestApp {
        TestApp::spawn_options(TestOptions::default(), source, config).await
    }

    pub async fn spawn_options(
        options: TestOptions,
        source: Arc<dyn ClassifierSource>,
        config: IntakeConfig,
    ) -> TestApp {
        let server = TestServer::spawn("intake", &pos_intake::MIGRATIONS, options, |ctx| {
            pos_intake::component_from(ctx, config, source)
        })
        .await;
        let client = IntakeServiceClient::new(server.channel());
        TestApp { server, client }
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(self.server.db.pool())
            .await
            .expect("count")
    }
}
