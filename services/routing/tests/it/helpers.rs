//! The routing service served for a test (a fresh schema, Redis under a prefix of its own, an
//! in-process bus), requests with tokens, and deliveries settled by hand.

use pos_platform::auth::Role;
use pos_platform::testing::{self, TestOptions, TestServer};
use pos_proto::v1::routing_service_client::RoutingServiceClient;
use tonic::transport::Channel;

/// The routing service, seeded, serving on a free port.
pub async fn spawn_app() -> TestServer {
    let options = TestOptions { redis: true, ..TestOptions::default() };
    TestServer::spawn("routing", &pos_routing::MIGRATIONS, options, pos_routing::component).await
}

pub fn routing_client(app: &TestServer) -> RoutingServiceClient<Channel> {
    RoutingServiceClient::new(app.channel())
}

/// A request with a bearer token for `roles` in `organization_id`.
pub fn req<T>(message: T, organization_id: &str, roles: &[Role]) -> tonic::Request<T> {
    let token = testing::token("tester", organization_id, "41", roles);
    pos_platform::grpc::outgoing(message, &token)
}

/// A request from an integration acting as the platform (classifier and directory admin).
pub fn system<T>(message: T) -> tonic::Request<T> {
    req(message, "", &[Role::System])
}

/// A request from an applicant: any authenticated role may resolve and read.
pub fn applicant<T>(message: T) -> tonic::Request<T> {
    req(message, "", &[Role::Applicant])
}

/// Asserts an `INVALID_ARGUMENT` naming `field` in its BadRequest details.
pub fn assert_invalid(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let fields = pos_platform::error::violated_fields(status);
    assert!(fields.iter().any(|f| f == field), "expected a violation of {field}, got {fields:?}: {}", status.message());
}
