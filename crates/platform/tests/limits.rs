//! The gRPC server's limits, from a client on loopback: a caller over its rate is refused with
//! `RESOURCE_EXHAUSTED` and retry info while others go on; a method's own rate; an oversize
//! message refused both ways; a call past its deadline cut off; a connection's concurrent calls
//! capped. The server is the platform's own (`grpc::serve`), serving a dead-letter API of the
//! test's that counts what reaches it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pos_platform::auth::{Role, authorize};
use pos_platform::limits::{Allowance, LimitsConfig, MethodLimits, RATE_LIMITED};
use pos_platform::testing::{self, eventually};
use pos_proto::v1::operations as pb;
use pos_proto::v1::operations::dead_letter_service_client::DeadLetterServiceClient;
use pos_proto::v1::operations::dead_letter_service_server::{DeadLetterService, DeadLetterServiceServer};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt;

const LIST: &str = "/pos.v1.operations.DeadLetterService/ListDeadLetters";
const DROP: &str = "pos.v1.operations.DeadLetterService/DropDeadLetter";

/// Answers every call after authorizing it, counting the calls that reached it. `GetDeadLetter`
/// and `DropDeadLetter` sleep for `message_id` milliseconds; `ReplayDeadLetter` answers with
/// `message_id` bytes.
#[derive(Clone, Default)]
struct Counting {
    reached: Arc<AtomicUsize>,
}

const ROLES: &[Role] = &[Role::Operator, Role::System];

#[tonic::async_trait]
impl DeadLetterService for Counting {
    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        self.reached.fetch_add(1, Ordering::SeqCst);
        authorize(&request, "ListDeadLetters", ROLES)?;
        Ok(Response::new(pb::ListDeadLettersResponse::default()))
    }

    async fn get_dead_letter(
        &self,
        request: Request<pb::GetDeadLetterRequest>,
    ) -> Result<Response<pb::DeadLetter>, Status> {
        self.reached.fetch_add(1, Ordering::SeqCst);
        authorize(&request, "GetDeadLetter", ROLES)?;
        let millis = request.get_ref().message_id.parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(Response::new(pb::DeadLetter::default()))
    }

    async fn replay_dead_letter(
        &self,
        request: Request<pb::ReplayDeadLetterRequest>,
    ) -> Result<Response<pb::ReplayDeadLetterResponse>, Status> {
        self.reached.fetch_add(1, Ordering::SeqCst);
        authorize(&request, "ReplayDeadLetter", ROLES)?;
        let bytes = request.get_ref().message_id.parse().unwrap_or(0);
        Ok(Response::new(pb::ReplayDeadLetterResponse { message_ids: vec!["x".repeat(bytes)] }))
    }

    async fn drop_dead_letter(
        &self,
        request: Request<pb::DropDeadLetterRequest>,
    ) -> Result<Response<pb::DropDeadLetterResponse>, Status> {
        self.reached.fetch_add(1, Ordering::SeqCst);
        authorize(&request, "DropDeadLetter", ROLES)?;
        let millis = request.get_ref().message_id.parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(Response::new(pb::DropDeadLetterResponse::default()))
    }
}

/// The platform's gRPC server with `limits` on a loopback port.
struct Served {
    client: DeadLetterServiceClient<Channel>,
    service: Counting,
    shutdown: CancellationToken,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn serve(limits: LimitsConfig) -> Served {
    testing::init_for_tests_once();
    pos_platform::metrics::install();
    let service = Counting::default();
    let routes = tonic::service::Routes::new(pos_platform::message_limits!(
        DeadLetterServiceServer::new(service.clone()),
        &limits
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let tls = pos_platform::tls::TlsConfig::default();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            pos_platform::grpc::serve(listener, routes, Vec::new(), testing::authenticator(), limits, tls, shutdown)
                .await
        }
    });
    eventually(Duration::from_secs(10), "the server answers health checks", || {
        let endpoint = endpoint.clone();
        async move { pos_platform::host::healthcheck(&endpoint, "").await.is_ok() }
    })
    .await;
    let client = DeadLetterServiceClient::new(pos_platform::grpc::channel(&endpoint).unwrap());
    Served { client, service, shutdown }
}

fn operator(subject: &str) -> String {
    testing::token(subject, "", "", &[Role::Operator])
}

fn as_caller<T>(message: T, token: &str) -> Request<T> {
    pos_platform::grpc::outgoing(message, token)
}

/// Rates tight enough to reach from a test, everything else as deployed.
fn tight(per_method: Allowance) -> LimitsConfig {
    LimitsConfig {
        per_method,
        per_caller: Allowance { rate: 1000.0, burst: 1000 },
        system: Allowance { rate: 1.0, burst: 3 },
        ..LimitsConfig::default()
    }
}

fn retry_delay(status: &Status) -> Duration {
    status.get_details_retry_info().and_then(|info| info.retry_delay).expect("RetryInfo with a delay")
}

/// How often the metric says calls of `method` were refused.
fn rate_limited(method: &str) -> u64 {
    let prefix = format!("pos_grpc_rate_limited_total{{method=\"{method}\"}} ");
    pos_platform::metrics::render()
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn a_caller_over_its_rate_is_refused_with_retry_info_while_another_goes_on() {
    let served = serve(tight(Allowance { rate: 1.0, burst: 10 })).await;
    let (busy, quiet) = (operator("limits-busy"), operator("limits-quiet"));
    let refused_before = rate_limited(LIST);

    // A burst of 40 concurrent calls from one caller: its 10 (and what a second refills) pass.
    let calls = (0..40).map(|_| {
        let mut client = served.client.clone();
        let token = busy.clone();
        async move { client.list_dead_letters(as_caller(pb::ListDeadLettersRequest::default(), &token)).await }
    });
    let answers = futures::future::join_all(calls).await;
    let passed = answers.iter().filter(|answer| answer.is_ok()).count();
    assert!((10..=12).contains(&passed), "{passed} of 40 passed");
    for status in answers.iter().filter_map(|answer| answer.as_ref().err()) {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(pos_platform::error::reason(status), RATE_LIMITED);
        let delay = retry_delay(status);
        assert!(delay > Duration::ZERO && delay <= Duration::from_secs(1), "{delay:?}");
    }
    assert_eq!(served.service.reached.load(Ordering::SeqCst), passed, "a refused call never reaches the service");
    assert_eq!(rate_limited(LIST) - refused_before, 40 - passed as u64);

    // Another caller is not held back by the first one's limit.
    let mut client = served.client.clone();
    for _ in 0..10 {
        client.list_dead_letters(as_caller(pb::ListDeadLettersRequest::default(), &quiet)).await.unwrap();
    }

    // The wait it was told is enough.
    let status = client.list_dead_letters(as_caller(pb::ListDeadLettersRequest::default(), &busy)).await.unwrap_err();
    tokio::time::sleep(retry_delay(&status)).await;
    client.list_dead_letters(as_caller(pb::ListDeadLettersRequest::default(), &busy)).await.unwrap();

    // Without a token the caller is its address: refused as unauthenticated until the
    // address's allowance is gone, then refused before the service hears of it.
    let mut codes = Vec::new();
    for _ in 0..12 {
        codes.push(client.list_dead_letters(pb::ListDeadLettersRequest::default()).await.unwrap_err().code());
    }
    assert_eq!(codes[..10], [Code::Unauthenticated; 10]);
    assert_eq!(codes[11], Code::ResourceExhausted, "{codes:?}");
}

#[tokio::test]
async fn a_method_may_have_a_rate_of_its_own_and_system_callers_theirs() {
    let mut limits = tight(Allowance { rate: 100.0, burst: 100 });
    limits.methods =
        BTreeMap::from([(DROP.to_owned(), MethodLimits { rate: Some(0.5), burst: Some(2), timeout_secs: None })]);
    let served = serve(limits).await;
    let token = operator("limits-dropper");
    let mut client = served.client.clone();
    let drop = || as_caller(pb::DropDeadLetterRequest::default(), &token);
    client.drop_dead_letter(drop()).await.unwrap();
    client.drop_dead_letter(drop()).await.unwrap();
    let status = client.drop_dead_letter(drop()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let delay = retry_delay(&status);
    assert!(delay > Duration::from_secs(1) && delay <= Duration::from_secs(2), "one call in two seconds: {delay:?}");
    // The caller's other methods keep the default.
    for _ in 0..20 {
        client.list_dead_letters(as_caller(pb::ListDeadLettersRequest::default(), &token)).await.unwrap();
    }

    // A system caller is counted by the system allowance (here the tightest), not the method's.
    let system = testing::token("limits-system", "", "", &[Role::System]);
    let get = || as_caller(pb::GetDeadLetterRequest::default(), &system);
    for _ in 0..3 {
        client.get_dead_letter(get()).await.unwrap();
    }
    let status = client.get_dead_letter(get()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn an_oversize_message_is_refused_either_way() {
    let limits = LimitsConfig { max_message_bytes: 64 * 1024, ..LimitsConfig::default() };
    let served = serve(limits).await;
    let token = operator("limits-sizes");
    let mut client = served.client.clone();

    let large = pb::GetDeadLetterRequest { queue: "q".repeat(100 * 1024), message_id: "0".into() };
    let status = client.get_dead_letter(as_caller(large, &token)).await.unwrap_err();
    assert!(matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted), "{status:?}");
    assert_eq!(served.service.reached.load(Ordering::SeqCst), 0, "the service never saw it");
    let fits = pb::GetDeadLetterRequest { queue: "q".repeat(60 * 1024), message_id: "0".into() };
    client.get_dead_letter(as_caller(fits, &token)).await.unwrap();

    // Nor does the server send more than the limit.
    let answer = pb::ReplayDeadLetterRequest { message_id: (100 * 1024).to_string(), ..Default::default() };
    let status = client.replay_dead_letter(as_caller(answer, &token)).await.unwrap_err();
    assert!(matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted), "{status:?}");
}

#[tokio::test]
async fn a_call_past_its_deadline_is_cut_off() {
    let mut limits = LimitsConfig { call_timeout_secs: 1, ..LimitsConfig::default() };
    limits.methods.insert(DROP.to_owned(), MethodLimits { timeout_secs: Some(3), ..MethodLimits::default() });
    let served = serve(limits).await;
    let token = operator("limits-slow");
    let mut client = served.client.clone();
    let get =
        |millis: &str| as_caller(pb::GetDeadLetterRequest { message_id: millis.into(), ..Default::default() }, &token);
    let drop =
        |millis: &str| as_caller(pb::DropDeadLetterRequest { message_id: millis.into(), ..Default::default() }, &token);

    // The server's cap: a second, three for DropDeadLetter.
    let started = Instant::now();
    let status = client.get_dead_letter(get("1500")).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_millis(1400), "{:?}", started.elapsed());
    client.drop_dead_letter(drop("1500")).await.expect("DropDeadLetter may take three seconds");
    let status = client.drop_dead_letter(drop("5000")).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());

    // The client's own deadline, shorter than the server's, holds too.
    let started = Instant::now();
    let mut request = get("2000");
    request.set_timeout(Duration::from_millis(200));
    let status = client.get_dead_letter(request).await.unwrap_err();
    assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
    assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_connection_has_only_so_many_calls_open_at_once() {
    let limits = LimitsConfig { max_concurrent_streams: 2, ..LimitsConfig::default() };
    let served = serve(limits).await;
    let token = operator("limits-streams");
    // The client learns the limit from the server's first SETTINGS frame: a call made before it
    // arrived would be refused (REFUSED_STREAM, UNAVAILABLE to the caller, safe to retry).
    let mut client = served.client.clone();
    client.get_dead_letter(as_caller(pb::GetDeadLetterRequest::default(), &token)).await.unwrap();
    // One connection, six calls of 300 ms at once: two at a time, so at least three rounds.
    let started = Instant::now();
    let calls = (0..6).map(|_| {
        let mut client = served.client.clone();
        let token = token.clone();
        async move {
            let request = pb::GetDeadLetterRequest { message_id: "300".into(), ..Default::default() };
            client.get_dead_letter(as_caller(request, &token)).await
        }
    });
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
}
