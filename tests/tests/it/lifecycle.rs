//! A service process as operations run it: health and reflection answer, SIGTERM stops it
//! cleanly.

use std::time::Duration;

use pos_e2e::{Mode, ServiceProcess, config};
use pos_platform::testing::TempDir;
use tokio_stream::StreamExt;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const POS: &str = env!("CARGO_BIN_EXE_pos-under-test");

async fn reflected_services(endpoint: &str) -> Vec<String> {
    let mut client = ServerReflectionClient::new(pos_platform::grpc::channel(endpoint).unwrap());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let response = responses.next().await.expect("a response").expect("reflection answers");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection response {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_five_serve_health_and_reflection_and_stop_on_sigterm() {
    let data = TempDir::new();
    let config = config(Mode::Embedded, &data, "lifecycle", None);
    let process = ServiceProcess::start(POS, &[], &config).await.expect("pos up starts");
    for service in [
        "pos.v1.IntakeService",
        "pos.v1.RoutingService",
        "pos.v1.TicketingService",
        "pos.v1.SlaService",
        "pos.v1.NotifyService",
    ] {
        pos_platform::host::healthcheck(&process.endpoint, service).await.unwrap_or_else(|e| panic!("{service}: {e}"));
    }
    let services = reflected_services(&process.endpoint).await;
    for expected in
        ["pos.v1.IntakeService", "pos.v1.RoutingService", "pos.v1.TicketingService", "grpc.health.v1.Health"]
    {
        assert!(services.iter().any(|s| s == expected), "{expected} not in {services:?}");
    }
    let status =
        tokio::task::spawn_blocking(move || process.terminate(Duration::from_secs(30))).await.unwrap().expect("stops");
    assert!(status.success(), "graceful stop exits 0, got {status}");
}
