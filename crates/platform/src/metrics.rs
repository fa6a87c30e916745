//! Prometheus metrics: the process-wide recorder with every metric's description and buckets,
//! the `/metrics` endpoint, gauge families replaced whole at each sample, and a tower layer
//! recording rate, errors and latency per gRPC method.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use metrics::Unit;
use metrics_exporter_prometheus::formatting::sanitize_label_value;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latencies of calls and handlers: a millisecond to ten seconds.
const DEFAULT_BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Histograms whose values live on another scale than a call's latency.
const BUCKETS: [(&str, &[f64]); 3] = [
    // A timer is late by the firing loop's poll (a second) when all is well; an hour late is an
    // outage the alert must still tell apart from a day.
    (
        "pos_sla_timer_lateness_seconds",
        &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0],
    ),
    // Staff are to look at new appeals twice a day; the period runs up to 30 days.
    (
        "pos_ticket_first_action_seconds",
        &[
            60.0,
            300.0,
            900.0,
            1800.0,
            3600.0,
            7200.0,
            14400.0,
            28800.0,
            43200.0,
            86400.0,
            172_800.0,
            259_200.0,
            432_000.0,
            604_800.0,
            1_209_600.0,
            2_592_000.0,
        ],
    ),
    // Three hops over the bus: well under a second when all is well, minutes when a consumer
    // lags or the broker was away.
    (
        "pos_appeal_ticketed_seconds",
        &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0],
    ),
];

/// What a metric is, for its `# TYPE` and `# HELP` lines.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric the services record, with its description: one list, so that `/metrics` explains
/// each of them and a dashboard author finds them all in one place. Labels are in brackets.
const CATALOGUE: &[(&str, Kind, Option<Unit>, &str)] = &[
    ("target_info", Kind::Gauge, None, "The service this process runs [service_name, service_version]; always 1."),
    // gRPC
    ("pos_grpc_requests_total", Kind::Counter, None, "gRPC calls handled [method, code]; code 0 is OK."),
    ("pos_grpc_request_seconds", Kind::Histogram, Some(Unit::Seconds), "Time to handle a gRPC call [method]."),
    (
        "pos_grpc_rate_limited_total",
        Kind::Counter,
        None,
        "gRPC calls refused by a rate limit before reaching the service [method].",
    ),
    (
        "pos_grpc_forwarded_total",
        Kind::Counter,
        None,
        "Calls for services this process does not host, passed to a peer [service, outcome].",
    ),
    // Security
    (
        "pos_security_events_total",
        Kind::Counter,
        None,
        "Security events of the audit trail [kind: denied_unauthenticated, denied_permission, sign_in, \
         sign_in_failed, staff_changed, policy_changed, ...; method].",
    ),
    (
        "pos_audit_events_dropped_total",
        Kind::Counter,
        None,
        "Denials not kept in the audit trail [reason: queue_full, store_failed, stopped]; still counted above.",
    ),
    // Events
    (
        "pos_consumer_deliveries_total",
        Kind::Counter,
        None,
        "Deliveries a consumer handled [queue, outcome: done, duplicate, retried, dead_lettered].",
    ),
    ("pos_consumer_handle_seconds", Kind::Histogram, Some(Unit::Seconds), "Time to handle one delivery [queue]."),
    ("pos_consumer_lag", Kind::Gauge, None, "Messages waiting in a consumer's queue [queue]."),
    ("pos_dead_letters", Kind::Gauge, None, "Messages in a consumer's dead-letter queue [queue]."),
    ("pos_outbox_backlog", Kind::Gauge, None, "Committed events not yet confirmed by the broker [schema]."),
    ("pos_outbox_published_total", Kind::Counter, None, "Events the outbox relay published [schema]."),
    (
        "pos_db_transactions_total",
        Kind::Counter,
        None,
        "Write transactions begun on a service's database [schema]: the cost figure `pos bench` divides per appeal.",
    ),
    ("pos_parked_events", Kind::Gauge, None, "Events kept until the object they are about exists [schema, consumer]."),
    (
        "pos_parked_oldest_seconds",
        Kind::Gauge,
        Some(Unit::Seconds),
        "How long the oldest parked event has waited [schema, consumer].",
    ),
    // Intake
    (
        "pos_intake_submissions_total",
        Kind::Counter,
        None,
        "SubmitAppeal calls by outcome [outcome: registered, replayed, invalid, ...].",
    ),
    ("pos_intake_attachments_total", Kind::Counter, None, "Attachment uploads by outcome [outcome]."),
    ("pos_intake_classifier_version", Kind::Gauge, None, "The version of the classifier snapshot intake validates by."),
    (
        "pos_appeals_received_total",
        Kind::Counter,
        None,
        "Appeals registered, once each (an idempotent retry is not counted) [region: the appeal's].",
    ),
    // Routing
    (
        "pos_routing_decisions_total",
        Kind::Counter,
        None,
        "Appeals routed [outcome: direct, fallback, delegated; region: the appeal's].",
    ),
    ("pos_routing_reroutes_total", Kind::Counter, None, "Appeals routed again: redirects and returns to coordination."),
    // Ticketing
    (
        "pos_tickets_created_total",
        Kind::Counter,
        None,
        "Tickets created in an organization's New folder, a reroute's included [region: the appeal's].",
    ),
    (
        "pos_appeal_ticketed_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "From an appeal's registration to its first ticket: intake, routing and ticketing end to end.",
    ),
    (
        "pos_tickets",
        Kind::Gauge,
        None,
        "Open tickets (not in a final stage) by cabinet folder [folder, region], sampled from the store.",
    ),
    (
        "pos_ticket_first_action_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "From a ticket's creation to the first workflow command staff applied to it.",
    ),
    (
        "pos_tickets_reopened_total",
        Kind::Counter,
        None,
        "Answers the applicant rejected: tickets back on re-review [region].",
    ),
    (
        "pos_tickets_closed_total",
        Kind::Counter,
        None,
        "Tickets the organization closed: answered, rejected, or re-review stopped; a re-review reopens one and \
         its next answer closes it again [region].",
    ),
    // SLA
    (
        "pos_sla_armed_total",
        Kind::Counter,
        None,
        "Answer deadlines armed: first rounds, re-reviews and reroutes [region, fast_track].",
    ),
    (
        "pos_sla_deadlines",
        Kind::Gauge,
        None,
        "Open answer deadlines [region, state: open (all), due_today, at_risk (a warning point passed), \
         overdue], sampled from the store.",
    ),
    ("pos_sla_timers_pending", Kind::Gauge, None, "Deadline timers (warnings, overdue) not fired yet."),
    ("pos_sla_timers_fired_total", Kind::Counter, None, "Deadline timers fired and published."),
    (
        "pos_sla_timer_lateness_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "How late a deadline timer fired after its due time [kind: warning, overdue].",
    ),
    // Notify
    ("pos_notify_deliveries_total", Kind::Counter, None, "E-mail attempts by outcome [outcome: sent, retried, dead]."),
    (
        "pos_notify_resent_after_crash_total",
        Kind::Counter,
        None,
        "E-mails found sending after a crash and sent again: possible duplicates.",
    ),
    (
        "pos_notify_send_window_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "The double-send window: from handing an e-mail to the relay to marking it sent.",
    ),
];

/// Installs the recorder once per process and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new().set_buckets(&DEFAULT_BUCKETS).expect("static buckets are valid");
            for (name, buckets) in BUCKETS {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
                    .expect("static buckets are valid");
            }
            let handle = builder.install_recorder().expect("the metrics recorder is installed once");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    for &(name, kind, unit, help) in CATALOGUE {
        match (kind, unit) {
            (Kind::Counter, Some(unit)) => metrics::describe_counter!(name, unit, help),
            (Kind::Counter, None) => metrics::describe_counter!(name, help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(name, unit, help),
            (Kind::Gauge, None) => metrics::describe_gauge!(name, help),
            (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(name, unit, help),
            (Kind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
}

/// The name the process gave itself on `/metrics`.
static TARGET: OnceLock<String> = OnceLock::new();

/// Names the process on `/metrics`: `target_info{service_name, service_version} 1`, the
/// OpenMetrics target info (the name OpenTelemetry gives resource attributes in Prometheus).
/// One series per process rather than a label on every series: dashboards join it on the
/// scrape's `instance`, and the metric names and labels of everything else stay as they are.
///
/// The first name given stands: telemetry names the process at start-up, and the host names
/// it after the services it runs only when nothing did (a test hosting them in-process).
pub fn describe_target(service_name: &str) {
    install();
    let mut first = false;
    TARGET.get_or_init(|| {
        first = true;
        service_name.to_owned()
    });
    if first {
        metrics::gauge!(
            "target_info",
            "service_name" => service_name.to_owned(),
            "service_version" => env!("CARGO_PKG_VERSION"),
        )
        .set(1.0);
    }
}

/// One series of a [`replace_gauges`] family.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

struct Family {
    help: &'static str,
    series: Vec<Series>,
}

static FAMILIES: Mutex<BTreeMap<&'static str, Family>> = Mutex::new(BTreeMap::new());

/// Replaces every series of gauge `name` with `series`: a series left out is gone from the next
/// scrape, not kept at its last value. For a ranking (the top-N of something), whose members
/// change: the recorder keeps every series it ever saw, which would let the ones that left the
/// ranking linger and the series grow without bound.
pub fn replace_gauges(name: &'static str, help: &'static str, series: Vec<Series>) {
    FAMILIES.lock().unwrap_or_else(PoisonError::into_inner).insert(name, Family { help, series });
}

/// The [`replace_gauges`] families in the text exposition format.
fn render_families() -> String {
    use std::fmt::Write as _;
    let families = FAMILIES.lock().unwrap_or_else(PoisonError::into_inner);
    let mut text = String::new();
    for (name, family) in families.iter() {
        let _ = writeln!(text, "# HELP {name} {}", family.help.replace('\\', "\\\\").replace('\n', "\\n"));
        let _ = writeln!(text, "# TYPE {name} gauge");
        for series in &family.series {
            let labels: Vec<String> = series
                .labels
                .iter()
                .map(|(label, value)| format!("{label}=\"{}\"", sanitize_label_value(value)))
                .collect();
            if labels.is_empty() {
                let _ = writeln!(text, "{name} {}", series.value);
            } else {
                let _ = writeln!(text, "{name}{{{}}} {}", labels.join(","), series.value);
            }
        }
    }
    text
}

/// Everything `/metrics` shows.
pub fn render() -> String {
    let mut text = install().render();
    text.push_str(&render_families());
    text
}

/// Serves `GET /metrics` until `shutdown`.
pub async fn serve(addr: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    install();
    let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { render() }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics endpoint listening");
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    Ok(())
}

/// Records `pos_grpc_requests_total{method,code}` and `pos_grpc_request_seconds{method}`, and
/// the status on the call's server span (see [`crate::grpc::serve`]).
#[derive(Clone, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            // Errors of unary calls travel in the headers (trailers-only responses); a
            // streaming call's final status is in the trailers, counted as "0" here.
            let code = match &result {
                Ok(response) => {
                    response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0").to_owned()
                }
                Err(_) => "transport".to_owned(),
            };
            crate::grpc::record_status(&tracing::Span::current(), &code);
            metrics::counter!("pos_grpc_requests_total", "method" => method.clone(), "code" => code).increment(1);
            metrics::histogram!("pos_grpc_request_seconds", "method" => method).record(started.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(organization: &str, value: f64) -> Series {
        Series { labels: vec![("organization", organization.to_owned()), ("state", "overdue".to_owned())], value }
    }

    #[test]
    fn a_replaced_family_keeps_only_its_latest_series() {
        const NAME: &str = "pos_test_ranking";
        replace_gauges(NAME, "A ranking.", vec![series("41-school-1", 3.0), series("41-\"quoted\"", 1.0)]);
        let text = render();
        assert!(text.contains("# HELP pos_test_ranking A ranking.\n# TYPE pos_test_ranking gauge\n"), "{text}");
        assert!(text.contains("pos_test_ranking{organization=\"41-school-1\",state=\"overdue\"} 3\n"), "{text}");
        assert!(text.contains("pos_test_ranking{organization=\"41-\\\"quoted\\\"\",state=\"overdue\"} 1\n"), "{text}");

        replace_gauges(NAME, "A ranking.", vec![series("41-school-2", 2.0)]);
        let text = render();
        assert!(!text.contains("41-school-1"), "a series that left the ranking is gone: {text}");
        assert!(text.contains("pos_test_ranking{organization=\"41-school-2\",state=\"overdue\"} 2\n"), "{text}");
    }

    #[test]
    fn every_histogram_with_its_own_buckets_is_described_as_a_histogram() {
        for (name, buckets) in BUCKETS {
            assert!(
                CATALOGUE.iter().any(|(described, kind, _, _)| *described == name && matches!(kind, Kind::Histogram)),
                "{name} is not in the catalogue"
            );
            assert!(buckets.windows(2).all(|pair| pair[0] < pair[1]), "{name}: buckets must ascend");
        }
        let mut names: Vec<&str> = CATALOGUE.iter().map(|(name, ..)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len(), "a metric is described twice");
    }

    #[test]
    fn histograms_get_their_own_buckets_on_metrics() {
        install();
        metrics::histogram!("pos_ticket_first_action_seconds").record(120.0);
        let text = render();
        assert!(text.contains("pos_ticket_first_action_seconds_bucket{le=\"2592000\"} 1"), "{text}");
        assert!(text.contains("# HELP pos_ticket_first_action_seconds "), "{text}");
    }
}
