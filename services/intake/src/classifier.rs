//! What intake needs from routing to validate an appeal: the classifier (categories,
//! subcategories, facts), the regions, and the type of a picked organization.
//!
//! Routing owns all three. Intake must keep registering appeals while routing is down, so it
//! holds an in-memory snapshot (loaded at start, refreshed in the background, kept when a
//! refresh fails) and caches organization lookups. When an organization cannot be checked
//! because routing is unreachable the appeal is accepted: routing decides later and explains.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pos_platform::cache::Cache;
use pos_platform::host::Infra;
use pos_platform::peers::retry_idempotent;
use pos_proto::v1::routing_service_client::RoutingServiceClient;
use pos_proto::v1::{
    Category, Classifier, Fact, GetOrganizationRequest, ListClassifierRequest, ListRegionsRequest, Organization,
    Region, Subcategory,
};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

/// Why routing could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Not reachable or not answering in time: worth trying again later.
    #[error("routing is unreachable: {0}")]
    Unavailable(String),
    /// Reachable but refused or failed (auth, internal error).
    #[error("routing failed: {0}")]
    Failed(String),
}

impl From<tonic::Status> for SourceError {
    fn from(status: tonic::Status) -> SourceError {
        let text = format!("{:?}: {}", status.code(), status.message());
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::ResourceExhausted => {
                SourceError::Unavailable(text)
            }
            Code::Ok
            | Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Internal
            | Code::DataLoss
            | Code::Unauthenticated => SourceError::Failed(text),
        }
    }
}

/// Where the classifier, the regions and the organizations come from: routing over gRPC in
/// production, a fixed set of data in intake's own tests.
#[async_trait]
pub trait ClassifierSource: Send + Sync + 'static {
    /// The whole classifier and the regions.
    async fn load(&self) -> Result<ClassifierSnapshot, SourceError>;
    /// One organization; `Ok(None)` when routing does not know it.
    async fn organization(&self, id: &str) -> Result<Option<Organization>, SourceError>;
}

/// The classifier and the regions at one moment, indexed for validation.
#[derive(Debug, Default)]
pub struct ClassifierSnapshot {
    pub version: i64,
    categories: HashMap<String, Category>,
    subcategories: HashMap<String, Subcategory>,
    facts: HashMap<String, Fact>,
    regions: HashMap<String, Region>,
}

impl ClassifierSnapshot {
    pub fn new(classifier: Classifier, regions: Vec<Region>) -> ClassifierSnapshot {
        ClassifierSnapshot {
            version: classifier.version,
            categories: classifier.categories.into_iter().map(|c| (c.id.clone(), c)).collect(),
            subcategories: classifier.subcategories.into_iter().map(|s| (s.id.clone(), s)).collect(),
            facts: classifier.facts.into_iter().map(|f| (f.id.clone(), f)).collect(),
            regions: regions.into_iter().map(|r| (r.code.clone(), r)).collect(),
        }
    }

    pub fn category(&self, id: &str) -> Option<&Category> {
        self.categories.get(id)
    }

    pub fn subcategory(&self, id: &str) -> Option<&Subcategory> {
        self.subcategories.get(id)
    }

    pub fn fact(&self, id: &str) -> Option<&Fact> {
        self.facts.get(id)
    }

    pub fn region(&self, code: &str) -> Option<&Region> {
        self.regions.get(code)
    }

    pub fn fact_count(&self) -> usize {
        self.facts.len()
    }

    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    /// No fact or no region: nothing could be valid, so routing is not seeded yet.
    pub fn is_empty(&self) -> bool {
        self.facts.is_empty() || self.regions.is_empty()
    }
}

/// Routing over gRPC, with a fresh service token on every call (tokens expire).
pub struct RoutingClassifier {
    client: RoutingServiceClient<Channel>,
    infra: Infra,
}

impl RoutingClassifier {
    /// Routing over `channel` (balanced over its replicas, see `ServiceContext::peer`).
    pub fn new(channel: Channel, infra: Infra) -> RoutingClassifier {
        RoutingClassifier { client: RoutingServiceClient::new(channel), infra }
    }

    fn token(&self) -> Result<String, SourceError> {
        self.infra.service_token("intake").map_err(|e| SourceError::Failed(format!("{e:#}")))
    }

    fn request<T>(message: T, token: &str) -> tonic::Request<T> {
        let mut request = pos_platform::grpc::outgoing(message, token);
        request.set_timeout(Duration::from_secs(5));
        request
    }
}

// Reads only: each is tried again when the replica the balancer picked is down.
#[async_trait]
impl ClassifierSource for RoutingClassifier {
    async fn load(&self) -> Result<ClassifierSnapshot, SourceError> {
        let token = self.token()?;
        let classifier = retry_idempotent(|| {
            let (mut client, request) = (self.client.clone(), Self::request(ListClassifierRequest {}, &token));
            async move { client.list_classifier(request).await }
        })
        .await?
        .into_inner();
        let regions = retry_idempotent(|| {
            let (mut client, request) = (self.client.clone(), Self::request(ListRegionsRequest {}, &token));
            async move { client.list_regions(request).await }
        })
        .await?
        .into_inner()
        .regions;
        Ok(ClassifierSnapshot::new(classifier, regions))
    }

    async fn organization(&self, id: &str) -> Result<Option<Organization>, SourceError> {
        let token = self.token()?;
        let lookup = retry_idempotent(|| {
            let request = Self::request(GetOrganizationRequest { id: id.to_owned() }, &token);
            let mut client = self.client.clone();
            async move { client.get_organization(request).await }
        });
        match lookup.await {
            Ok(response) => Ok(Some(response.into_inner())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status.into()),
        }
    }
}

/// A classifier given as data: for tests, and for running intake without routing.
#[derive(Clone, Debug, Default)]
pub struct FixedClassifier {
    pub classifier: Classifier,
    pub regions: Vec<Region>,
    pub organizations: Vec<Organization>,
}

#[async_trait]
impl ClassifierSource for FixedClassifier {
    async fn load(&self) -> Result<ClassifierSnapshot, SourceError> {
        Ok(ClassifierSnapshot::new(self.classifier.clone(), self.regions.clone()))
    }

    async fn organization(&self, id: &str) -> Result<Option<Organization>, SourceError> {
        Ok(self.organizations.iter().find(|o| o.id == id).cloned())
    }
}

/// What is known about a picked organization.
#[derive(Clone, Debug, PartialEq)]
pub enum OrganizationLookup {
    Found(Organization),
    NotFound,
    /// Routing could not be asked; the appeal goes on unchecked.
    Unchecked,
}

/// The snapshot intake validates against, and the organization cache.
pub struct Catalog {
    source: Arc<dyn ClassifierSource>,
    snapshot: RwLock<Option<Arc<ClassifierSnapshot>>>,
    cache: Arc<dyn Cache>,
    organization_ttl: Duration,
    /// When a refresh was last tried on demand; one at a time, at most every few seconds.
    on_demand: tokio::sync::Mutex<Option<Instant>>,
}

/// How often a submission naming something the snapshot does not know may trigger a refresh.
const ON_DEMAND_INTERVAL: Duration = Duration::from_secs(5);
/// How long a submission waits for such a refresh.
const ON_DEMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Organizations routing does not know are remembered briefly: one may be created any moment.
const NOT_FOUND_TTL: Duration = Duration::from_secs(30);
const FOUND: u8 = b'F';
const MISSING: u8 = b'N';

impl Catalog {
    pub fn new(source: Arc<dyn ClassifierSource>, cache: Arc<dyn Cache>, organization_ttl: Duration) -> Catalog {
        Catalog {
            source,
            snapshot: RwLock::new(None),
            cache,
            organization_ttl,
            on_demand: tokio::sync::Mutex::new(None),
        }
    }

    /// The latest snapshot; `None` until one was ever loaded.
    pub fn snapshot(&self) -> Option<Arc<ClassifierSnapshot>> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Loads a new snapshot; on failure the previous one stays in use.
    pub async fn refresh(&self) -> Result<Arc<ClassifierSnapshot>, SourceError> {
        let loaded = Arc::new(self.source.load().await?);
        metrics::gauge!("pos_intake_classifier_version").set(loaded.version as f64);
        let previous = self.snapshot.write().unwrap_or_else(|e| e.into_inner()).replace(loaded.clone());
        if previous.as_ref().is_none_or(|p| p.version != loaded.version) {
            tracing::info!(
                version = loaded.version,
                facts = loaded.fact_count(),
                regions = loaded.region_count(),
                "classifier snapshot loaded"
            );
        }
        Ok(loaded)
    }

    /// Refreshes every `interval` until `shutdown`; while nothing was ever loaded, retries
    /// sooner (1 s, doubling) so that intake becomes ready soon after routing does.
    pub async fn run_refresher(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut retry = Duration::from_secs(1);
        loop {
            let wait = match self.refresh().await {
                Ok(snapshot) if !snapshot.is_empty() => {
                    retry = Duration::from_secs(1);
                    interval
                }
                Ok(_) => {
                    tracing::info!("classifier is empty, routing is not seeded yet");
                    let wait = retry.min(interval);
                    retry = (retry * 2).min(interval);
                    wait
                }
                Err(error) => {
                    let loaded = self.snapshot().is_some();
                    tracing::warn!(%error, keeping_previous = loaded, "classifier refresh failed");
                    if loaded {
                        interval
                    } else {
                        let wait = retry.min(interval);
                        retry = (retry * 2).min(interval);
                        wait
                    }
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// Reloads the snapshot now, unless that was tried within the last few seconds: a
    /// submission naming a fact or region the snapshot does not know may be newer than it.
    /// Returns the snapshot to validate against (the new one, or the one there was).
    pub async fn refresh_on_demand(&self) -> Option<Arc<ClassifierSnapshot>> {
        let mut last = self.on_demand.lock().await;
        if last.is_none_or(|at| at.elapsed() >= ON_DEMAND_INTERVAL) {
            *last = Some(Instant::now());
            match tokio::time::timeout(ON_DEMAND_TIMEOUT, self.refresh()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::debug!(%error, "on-demand classifier refresh failed"),
                Err(_) => tracing::debug!("on-demand classifier refresh timed out"),
            }
        }
        self.snapshot()
    }

    /// The organization `id`, from the cache or routing. Never fails: when routing cannot be
    /// asked the answer is [`OrganizationLookup::Unchecked`].
    pub async fn organization(&self, id: &str) -> OrganizationLookup {
        let key = format!("intake:organization:{id}");
        match self.cache.get(&key).await {
            Ok(Some(value)) => match value.split_first() {
                Some((&MISSING, _)) => return OrganizationLookup::NotFound,
                Some((&FOUND, bytes)) => {
                    if let Ok(organization) = Organization::decode(bytes) {
                        return OrganizationLookup::Found(organization);
                    }
                }
                _ => {}
            },
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "organization cache unavailable, asking routing"),
        }
        match self.source.organization(id).await {
            Ok(Some(organization)) => {
                let mut value = vec![FOUND];
                organization.encode(&mut value).unwrap_or_default();
                if let Err(error) = self.cache.set(&key, &value, self.organization_ttl).await {
                    tracing::debug!(%error, "organization not cached");
                }
                OrganizationLookup::Found(organization)
            }
            Ok(None) => {
                if let Err(error) = self.cache.set(&key, &[MISSING], NOT_FOUND_TTL.min(self.organization_ttl)).await {
                    tracing::debug!(%error, "organization not cached");
                }
                OrganizationLookup::NotFound
            }
            Err(error) => {
                tracing::warn!(organization_id = %id, %error, "organization could not be checked, accepting unchecked");
                OrganizationLookup::Unchecked
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use pos_platform::cache::MemoryCache;

    use super::*;

    /// Routing that can be switched off, counting the calls that reach it.
    struct Flaky {
        data: FixedClassifier,
        down: AtomicBool,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl ClassifierSource for Flaky {
        async fn load(&self) -> Result<ClassifierSnapshot, SourceError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(SourceError::Unavailable("connection refused".into()));
            }
            self.data.load().await
        }

        async fn organization(&self, id: &str) -> Result<Option<Organization>, SourceError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(SourceError::Unavailable("connection refused".into()));
            }
            self.data.organization(id).await
        }
    }

    fn flaky() -> Arc<Flaky> {
        let data = FixedClassifier {
            classifier: Classifier {
                facts: vec![Fact { id: "f1".into(), subcategory_id: "s1".into(), active: true, ..Fact::default() }],
                version: 7,
                ..Classifier::default()
            },
            regions: vec![Region { code: "41".into(), ..Region::default() }],
            organizations: vec![Organization { id: "school-1".into(), ..Organization::default() }],
        };
        Arc::new(Flaky { data, down: AtomicBool::new(false), calls: AtomicUsize::new(0) })
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_previous_snapshot() {
        let source = flaky();
        let catalog = Catalog::new(source.clone(), Arc::new(MemoryCache::new()), Duration::from_secs(60));
        assert!(catalog.snapshot().is_none());
        source.down.store(true, Ordering::SeqCst);
        assert!(catalog.refresh().await.is_err());
        assert!(catalog.snapshot().is_none(), "nothing is guessed before a first load");
        source.down.store(false, Ordering::SeqCst);
        catalog.refresh().await.unwrap();
        source.down.store(true, Ordering::SeqCst);
        assert!(catalog.refresh().await.is_err());
        let kept = catalog.snapshot().expect("the previous snapshot stays");
        assert_eq!(kept.version, 7);
        assert!(kept.fact("f1").is_some() && kept.region("41").is_some());
    }

    #[tokio::test]
    async fn on_demand_refreshes_are_rate_limited() {
        let source = flaky();
        let catalog = Catalog::new(source.clone(), Arc::new(MemoryCache::new()), Duration::from_secs(60));
        assert!(catalog.refresh_on_demand().await.is_some());
        let calls = source.calls.load(Ordering::SeqCst);
        assert!(catalog.refresh_on_demand().await.is_some());
        assert_eq!(source.calls.load(Ordering::SeqCst), calls, "a second request within seconds asks nobody");
    }

    #[tokio::test]
    async fn organizations_are_cached_and_unchecked_when_routing_is_down() {
        let source = flaky();
        let catalog = Catalog::new(source.clone(), Arc::new(MemoryCache::new()), Duration::from_secs(60));
        assert!(matches!(catalog.organization("school-1").await, OrganizationLookup::Found(o) if o.id == "school-1"));
        assert_eq!(catalog.organization("nope").await, OrganizationLookup::NotFound);
        let calls = source.calls.load(Ordering::SeqCst);
        source.down.store(true, Ordering::SeqCst);
        // Both answers come from the cache now.
        assert!(matches!(catalog.organization("school-1").await, OrganizationLookup::Found(_)));
        assert_eq!(catalog.organization("nope").await, OrganizationLookup::NotFound);
        assert_eq!(source.calls.load(Ordering::SeqCst), calls);
        assert_eq!(catalog.organization("school-2").await, OrganizationLookup::Unchecked);
    }

    #[test]
    fn transport_failures_are_unavailable_and_refusals_are_failures() {
        // What routing answers when its database is down, and when the token does not allow it.
        let down = tonic::Status::from(pos_platform::ApiError::Db(sqlx::Error::PoolClosed));
        assert!(matches!(SourceError::from(down), SourceError::Unavailable(_)));
        let refused = tonic::Status::from(pos_platform::ApiError::permission_denied("no"));
        assert!(matches!(SourceError::from(refused), SourceError::Failed(_)));
    }
}
