//! One appeal is one trace, exported over OTLP: the spans of the submit call, of every relay
//! that published its events, of every consumer that handled them and of the e-mail sent to the
//! applicant, under the trace id the client started, whether the five services share a process
//! (`pos up`) or each runs in its own.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use pos_e2e::{
    KAMCHATKA_CENTER, Mode, Options, Platform, ServiceProcess, config, e_diary_appeal, traced, wait_for_tickets,
};
use pos_platform::auth::Role;
use pos_platform::testing::{self, TempDir};
use pos_proto::v1::intake_service_client::IntakeServiceClient;

const POS: &str = env!("CARGO_BIN_EXE_pos-under-test");

/// One exported span, as the collector received it.
#[derive(Clone, Debug)]
struct ExportedSpan {
    trace_id: String,
    name: String,
    kind: i32,
    /// The `service.name` of the resource that exported it.
    service: String,
    attributes: BTreeMap<String, String>,
}

impl ExportedSpan {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A tiny OTLP/gRPC trace collector keeping every span it receives.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
}

fn text_attributes(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(text) => text.clone(),
                any_value::Value::IntValue(number) => number.to_string(),
                any_value::Value::BoolValue(flag) => flag.to_string(),
                other => format!("{other:?}"),
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let resource_attributes =
                resource.resource.as_ref().map(|r| text_attributes(&r.attributes)).unwrap_or_default();
            let service = resource_attributes.get("service.name").cloned().unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push(ExportedSpan {
                        trace_id: hex(&span.trace_id),
                        name: span.name,
                        kind: span.kind,
                        service: service.clone(),
                        attributes: text_attributes(&span.attributes),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Collector {
    /// Serves on a free loopback port; returns the collector and its OTLP endpoint.
    async fn start() -> (Collector, String, tokio::task::JoinHandle<Result<(), tonic::transport::Error>>) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector.clone()))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (collector, endpoint, server)
    }

    fn of_trace(&self, trace_id: &str) -> Vec<ExportedSpan> {
        self.spans.lock().unwrap().iter().filter(|span| span.trace_id == trace_id).cloned().collect()
    }
}

/// The span of an e-mail handed to the mail port: notify sends from its ledger, later and outside
/// the handling that planned the e-mail, and continues that handling's trace.
const EMAIL_SEND: &str = "email send";

/// Whether `spans` hold an e-mail sent by `service`.
fn email_sent(spans: &[ExportedSpan], service: &str) -> bool {
    spans.iter().any(|span| span.name == EMAIL_SEND && span.kind == SpanKind::Client as i32 && span.service == service)
}

/// Process spans of a trace, by consumer group (the queue).
fn consumer_groups(spans: &[ExportedSpan]) -> BTreeSet<String> {
    spans
        .iter()
        .filter(|span| span.kind == SpanKind::Consumer as i32)
        .filter_map(|span| span.attribute("messaging.consumer.group.name").map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_appeal_is_one_exported_trace() {
    let (collector, otlp, server) = Collector::start().await;
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
    // The applicant's registration letter, in the mailbox folder of the embedded mode.
    let mailbox = data.0.join("mailbox");
    let letter = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .map(|entries| entries.flatten().any(|e| e.path().extension().is_some_and(|x| x == "eml")))
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !letter(&mailbox) {
        assert!(Instant::now() < deadline, "no letter in {}", mailbox.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A graceful stop flushes the batch exporter.
    let status =
        tokio::task::spawn_blocking(move || process.terminate(Duration::from_secs(30))).await.unwrap().unwrap();
    assert!(status.success());

    let spans = collector.of_trace(&trace_id);
    let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    assert!(names.contains(&"pos.v1.IntakeService/SubmitAppeal"), "the submit call is in the trace: {names:?}");
    let consumed = spans.iter().filter(|span| span.kind == SpanKind::Consumer as i32).count();
    // routing (appeal.received), then intake, ticketing, sla, notify (appeal.routed), then
    // intake and notify (ticket.status_changed).
    assert!(consumed >= 7, "every consumer that handled the appeal is in the trace ({consumed}): {names:?}");
    assert!(email_sent(&spans, "pos"), "the applicant's e-mail is sent in the appeal's trace: {names:?}");
    server.abort();
}

/// What every appeal's trace must hold: a process span of each of these consumers (queue names
/// end with them), and spans exported by each of the five services.
const CONSUMERS: [&str; 8] = [
    "routing.appeal-received",
    "intake.appeal-routed",
    "ticketing.appeal-routed",
    "sla.appeal-routed",
    "notify.events",
    "ticketing.sla",
    "intake.ticket-status",
    "sla.ticket-status",
];
const SERVICES: [&str; 5] = ["pos-intake", "pos-routing", "pos-ticketing", "pos-sla", "pos-notify"];

/// What of `CONSUMERS`, `SERVICES` and the applicant's e-mail the trace still lacks (empty:
/// complete).
fn missing_from_trace(spans: &[ExportedSpan]) -> Vec<String> {
    let groups = consumer_groups(spans);
    let services: BTreeSet<&str> = spans.iter().map(|span| span.service.as_str()).collect();
    let consumers = CONSUMERS
        .iter()
        .filter(|consumer| !groups.iter().any(|group| group.ends_with(&format!(".{consumer}"))))
        .map(|consumer| format!("process span of {consumer}"));
    let exporters =
        SERVICES.iter().filter(|service| !services.contains(*service)).map(|service| format!("spans of {service}"));
    let email = (!email_sent(spans, "pos-notify")).then(|| format!("{EMAIL_SEND} span of pos-notify"));
    consumers.chain(exporters).chain(email).collect()
}

fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics endpoint answers");
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The five services as five processes on PostgreSQL and RabbitMQ, each exporting its own spans:
/// each appeal is still exactly one trace, with a span from every service, a producer span for
/// every event published, a consumer span for every consumer that handled one and the send span
/// of the applicant's e-mail; the ticket
/// carries that trace's id; and each process's `/metrics` says which service it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_processes_export_one_trace_per_appeal() {
    const APPEALS: usize = 3;
    let (collector, otlp, server) = Collector::start().await;
    let options = Options::new(Mode::Servers);
    let mut base = config(Mode::Servers, &options.data, &options.run_id, None);
    base.otlp_endpoint = Some(otlp);
    // Export promptly, so that the test need not wait for the default 5 s batches.
    let quick_export = [("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let start = |service: &'static str, peers: Vec<(&'static str, String)>| {
        let mut config = base.clone();
        config.metrics_addr = Some(free_addr());
        async move {
            let env: Vec<(&str, &str)> =
                quick_export.iter().copied().chain(peers.iter().map(|(key, value)| (*key, value.as_str()))).collect();
            let process =
                ServiceProcess::start_with_env(POS, &[service], &config, &env).await.expect("the service starts");
            (service, process, config.metrics_addr.unwrap())
        }
    };
    // Routing first: intake validates against it. Every queue exists before the first appeal.
    let routing = start("routing", vec![]).await;
    let ticketing = start("ticketing", vec![]).await;
    let intake = start("intake", vec![("POS_PEERS__ROUTING", routing.1.endpoint.clone())]).await;
    let sla = start("sla", vec![]).await;
    let notify = start(
        "notify",
        vec![
            ("POS_PEERS__TICKETING", ticketing.1.endpoint.clone()),
            ("POS_PEERS__ROUTING", routing.1.endpoint.clone()),
        ],
    )
    .await;

    let token = testing::token("operator-otlp", "", "41", &[Role::Operator]);
    let mut intake_client = IntakeServiceClient::new(pos_platform::grpc::channel(&intake.1.endpoint).unwrap());
    let mut trace_of_appeal = BTreeMap::new();
    for i in 0..APPEALS {
        let trace_id = uuid::Uuid::new_v4().simple().to_string();
        let request = traced(e_diary_appeal(&testing::unique(&format!("five-{i}"))), &token, &trace_id);
        let appeal_id = intake_client.submit_appeal(request).await.expect("accepted").into_inner().appeal_id;
        trace_of_appeal.insert(appeal_id, trace_id);
    }

    let tickets =
        wait_for_tickets(&ticketing.1.endpoint, KAMCHATKA_CENTER, APPEALS, Duration::from_secs(60)).await.unwrap();
    assert_eq!(tickets.len(), APPEALS, "every appeal has its ticket");
    for ticket in &tickets {
        assert_eq!(
            Some(&ticket.trace_id),
            trace_of_appeal.get(&ticket.appeal_id),
            "the ticket carries its appeal's trace id"
        );
    }

    // Consumers of later events (the status change, the deadline) may still be at work.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut incomplete: Vec<(String, Vec<String>)> = Vec::new();
    while Instant::now() < deadline {
        incomplete = trace_of_appeal
            .values()
            .map(|trace_id| (trace_id.clone(), missing_from_trace(&collector.of_trace(trace_id))))
            .filter(|(_, missing)| !missing.is_empty())
            .collect();
        if incomplete.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(incomplete.is_empty(), "traces lack spans: {incomplete:?}");

    for trace_id in trace_of_appeal.values() {
        let spans = collector.of_trace(trace_id);
        assert!(
            spans.iter().any(|span| span.kind == SpanKind::Server as i32
                && span.service == "pos-intake"
                && span.attribute("rpc.method") == Some("SubmitAppeal")),
            "the submit call opens the trace"
        );
        let published: Vec<&ExportedSpan> =
            spans.iter().filter(|span| span.kind == SpanKind::Producer as i32).collect();
        let processed: Vec<&ExportedSpan> =
            spans.iter().filter(|span| span.kind == SpanKind::Consumer as i32).collect();
        for span in published.iter().chain(&processed) {
            assert_eq!(span.attribute("messaging.system"), Some("rabbitmq"), "{span:?}");
            assert!(span.attribute("messaging.destination.name").is_some_and(|name| !name.is_empty()), "{span:?}");
            assert!(span.attribute("messaging.message.id").is_some_and(|id| !id.is_empty()), "{span:?}");
            assert!(span.attribute("messaging.rabbitmq.destination.routing_key").is_some(), "{span:?}");
        }
        let destination =
            |span: &ExportedSpan| span.attribute("messaging.destination.name").unwrap_or_default().to_owned();
        for span in &published {
            assert_eq!(span.attribute("messaging.operation.type"), Some("publish"), "{span:?}");
            assert_eq!(span.name, format!("{} publish", destination(span)), "{span:?}");
        }
        for span in &processed {
            assert_eq!(span.attribute("messaging.operation.type"), Some("process"), "{span:?}");
            assert_eq!(span.name, format!("{} process", destination(span)), "{span:?}");
        }
        // Every event processed was published in this trace, by the service that wrote it.
        let published_ids: BTreeSet<&str> =
            published.iter().filter_map(|span| span.attribute("messaging.message.id")).collect();
        for span in &processed {
            let id = span.attribute("messaging.message.id").unwrap();
            assert!(published_ids.contains(id), "message {id} was processed but its publish is not in the trace");
        }
        let routed_publishers: BTreeSet<&str> = published
            .iter()
            .filter(|span| {
                span.attribute("messaging.rabbitmq.destination.routing_key")
                    .is_some_and(|k| k.starts_with("appeal.routed."))
            })
            .map(|span| span.service.as_str())
            .collect();
        assert_eq!(routed_publishers, BTreeSet::from(["pos-routing"]), "routing publishes appeal.routed");
    }

    // Each process names its service on /metrics, in the info metric dashboards join on.
    for (service, _, metrics) in [&routing, &ticketing, &intake, &sla, &notify] {
        let text = tokio::task::spawn_blocking({
            let metrics = *metrics;
            move || scrape(metrics)
        })
        .await
        .unwrap();
        let expected = format!("target_info{{service_name=\"pos-{service}\"");
        assert!(text.contains(&expected), "{service}: missing {expected} in:\n{text}");
    }

    // Stop gracefully (which flushes), then remove what the run left on the shared servers.
    for (_, process, _) in [routing, ticketing, intake, sla, notify] {
        let status =
            tokio::task::spawn_blocking(move || process.terminate(Duration::from_secs(30))).await.unwrap().unwrap();
        assert!(status.success());
    }
    Platform::start_with(options).await.expect("starts to clean up").stop().await.expect("cleans up");
    server.abort();
}
