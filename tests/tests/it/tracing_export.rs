//! One appeal is one trace, exported over OTLP: a `pos up` process with an OTLP endpoint sends
//! the spans of the submit call and of every consumer that handled the appeal, under the trace
//! id the client started.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use pos_e2e::{KAMCHATKA_CENTER, Mode, ServiceProcess, config, e_diary_appeal, traced, wait_for_tickets};
use pos_platform::auth::Role;
use pos_platform::testing::{self, TempDir};
use pos_proto::v1::intake_service_client::IntakeServiceClient;

const POS: &str = env!("CARGO_BIN_EXE_pos-under-test");

/// Span names by trace id (hex), as received.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, String)>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let trace_id: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                    spans.push((trace_id, span.name));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_appeal_is_one_exported_trace() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let data = TempDir::new();
    let mut config = config(Mode::Embedded, &data, "otlp", None);
    config.otlp_endpoint = Some(otlp);
    let process = ServiceProcess::start(POS, &[], &config).await.expect("pos up starts");
    let token = testing::token("operator-otlp", "", "41", &[Role::Operator]);
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let channel = pos_platform::grpc::channel(&process.endpoint).unwrap();
    IntakeServiceClient::new(channel)
        .submit_appeal(traced(e_diary_appeal(&testing::unique("otlp")), &token, &trace_id))
        .await
        .expect("accepted");
    wait_for_tickets(&process.endpoint, KAMCHATKA_CENTER, 1, Duration::from_secs(30)).await.unwrap();
    // A graceful stop flushes the batch exporter.
    let status =
        tokio::task::spawn_blocking(move || process.terminate(Duration::from_secs(30))).await.unwrap().unwrap();
    assert!(status.success());

    let spans = collector.spans.lock().unwrap().clone();
    let names: Vec<&str> = spans.iter().filter(|(id, _)| *id == trace_id).map(|(_, name)| name.as_str()).collect();
    assert!(names.contains(&"grpc"), "the submit call is in the trace: {names:?}");
    let consumed = names.iter().filter(|name| **name == "consume").count();
    // routing (appeal.received), then intake, ticketing, sla, notify (appeal.routed), then
    // intake and notify (ticket.status_changed).
    assert!(consumed >= 7, "every consumer that handled the appeal is in the trace ({consumed}): {names:?}");
    server.abort();
}
