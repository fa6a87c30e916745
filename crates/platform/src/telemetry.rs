//! Tracing with OpenTelemetry: spans always carry W3C trace ids (so one appeal is one trace even
//! with no collector), exported over OTLP only when an endpoint is configured. The trace
//! context crosses gRPC metadata and AMQP headers through the helpers below, always by the
//! global propagator (W3C trace context), never by hand.
//!
//! Messaging spans follow the OpenTelemetry semantic conventions: the outbox relay's
//! `<exchange> publish` (kind PRODUCER) continues the context stored with the event and is the
//! context the message carries; a consumer's `<exchange> process` (kind CONSUMER) continues
//! the message's. So submit call → publish → process → publish → … is one trace per appeal,
//! across any number of processes.

use std::collections::BTreeMap;
use std::sync::Once;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// `messaging.system` of every messaging span. The in-process bus of the embedded mode has the
/// broker's semantics (exchange, queues, acks), so its spans read the same.
pub const MESSAGING_SYSTEM: &str = "rabbitmq";

/// The `service.name` of a process hosting `services` (empty: all five, `pos up`): `pos-<name>`
/// for one service, as its own binary names itself, so that a trace shows which service did what.
pub fn service_name(services: &[&str]) -> String {
    if services.is_empty() { "pos".to_owned() } else { format!("pos-{}", services.join("+")) }
}

/// Installs the W3C trace-context propagator as the global one, once. Everything here injects
/// and extracts through the global propagator; the default global one is a no-op, so each entry
/// point installs it first, whichever of them runs first in a process.
fn install_propagator() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new()));
}

/// Flushes and stops telemetry when dropped or shut down.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes pending spans; blocking work runs off the async threads.
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct TelemetryConfig {
    pub service_name: String,
    /// OTLP/gRPC endpoint, e.g. http://127.0.0.1:4317. None: no export.
    pub otlp_endpoint: Option<String>,
    /// `RUST_LOG`-style filter; default `info`.
    pub log_filter: Option<String>,
    pub json_logs: bool,
}

/// Installs the global subscriber. Call once per process, inside a Tokio runtime.
pub fn init(config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    install_propagator();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attributes([
            opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            // Tells replicas of one service apart.
            opentelemetry::KeyValue::new("service.instance.id", uuid::Uuid::new_v4().to_string()),
        ])
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &config.otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer("pos");
    opentelemetry::global::set_tracer_provider(provider.clone());

    let filter = || {
        EnvFilter::try_new(config.log_filter.clone().unwrap_or_else(|| {
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn,lapin=warn,h2=warn,tower=warn".into())
        }))
        .unwrap_or_else(|_| EnvFilter::new("info"))
    };
    // The exporter's own crates must not feed spans back into it.
    let otel_filter = EnvFilter::new("debug,opentelemetry=off,tonic=off,h2=off,hyper=off,tower=off,sqlx=off,lapin=off");
    let otel = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(otel_filter);
    let fmt = if config.json_logs {
        tracing_subscriber::fmt::layer().json().with_filter(filter()).boxed()
    } else {
        tracing_subscriber::fmt::layer().with_filter(filter()).boxed()
    };
    tracing_subscriber::registry().with(otel).with(fmt).try_init()?;
    crate::metrics::describe_target(&config.service_name);
    Ok(TelemetryGuard { provider: Some(provider) })
}

/// Installs a quiet subscriber for tests (logs only when `TEST_LOG` is set). Idempotent.
pub fn init_for_tests() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        install_propagator();
        let provider = SdkTracerProvider::builder().build();
        let tracer = provider.tracer("pos-test");
        opentelemetry::global::set_tracer_provider(provider);
        let otel = tracing_opentelemetry::layer().with_tracer(tracer);
        let level = if std::env::var_os("TEST_LOG").is_some() { "debug,h2=info,hyper=info,tower=info" } else { "off" };
        let _ = tracing_subscriber::registry()
            .with(otel.with_filter(EnvFilter::new("debug,h2=off,hyper=off,tower=off")))
            .with(tracing_subscriber::fmt::layer().with_test_writer().with_filter(EnvFilter::new(level)))
            .try_init();
    });
}

struct MapInjector<'a>(&'a mut BTreeMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct MapExtractor<'a>(&'a BTreeMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// The trace context carried in message headers (empty when they carry none).
pub fn extract(headers: &BTreeMap<String, String>) -> opentelemetry::Context {
    install_propagator();
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&MapExtractor(headers)))
}

/// Writes `context` (`traceparent`, `tracestate`) into message headers; nothing when it has no
/// valid span.
pub fn inject(context: &opentelemetry::Context, headers: &mut BTreeMap<String, String>) {
    install_propagator();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(context, &mut MapInjector(headers));
    });
}

/// Writes the current span's context into `headers`.
pub fn inject_current(headers: &mut BTreeMap<String, String>) {
    inject(&tracing::Span::current().context(), headers);
}

/// Makes `span` a child of the context carried in `headers`, if any. Call it before the span is
/// first entered: a started span keeps its parent.
pub fn set_parent_from(span: &tracing::Span, headers: &BTreeMap<String, String>) {
    set_parent(span, extract(headers));
}

fn set_parent(span: &tracing::Span, context: opentelemetry::Context) {
    if context.span().span_context().is_valid()
        && let Err(error) = span.set_parent(context)
    {
        // Only a span no exporter sees (a disabled one, or no OpenTelemetry layer) ends here.
        tracing::trace!(%error, "trace context not continued");
    }
}

/// Makes `span` a child of the context in gRPC/HTTP request headers, if any.
pub fn set_parent_from_http(span: &tracing::Span, headers: &http::HeaderMap) {
    install_propagator();
    let context =
        opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)));
    set_parent(span, context);
}

/// Adds the current trace context to an outgoing gRPC request.
pub fn inject_into_metadata(metadata: &mut tonic::metadata::MetadataMap) {
    install_propagator();
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(metadata));
    });
}

/// The trace id (32 hex digits) of a valid context.
fn trace_id_of(context: &opentelemetry::Context) -> Option<String> {
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

/// The current span's trace id (32 hex digits), or an empty string outside a trace.
pub fn current_trace_id() -> String {
    trace_id_of(&tracing::Span::current().context()).unwrap_or_default()
}

/// The trace an event belongs to: the id of the context its headers carry (the trace of the
/// transaction that wrote it, continued by the relay that published it), whether or not spans
/// are exported; the current span's when the event carries none.
pub fn event_trace_id(headers: &BTreeMap<String, String>) -> String {
    trace_id_of(&extract(headers)).unwrap_or_else(current_trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn carrying(traceparent: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("traceparent".to_owned(), traceparent.to_owned())])
    }

    #[test]
    fn the_context_crosses_headers_by_the_global_propagator() {
        let context = extract(&carrying(TRACEPARENT));
        assert!(context.span().span_context().is_valid());
        let mut headers = BTreeMap::new();
        inject(&context, &mut headers);
        assert_eq!(headers.get("traceparent").map(String::as_str), Some(TRACEPARENT));
    }

    #[test]
    fn an_events_trace_is_the_one_it_carries_even_with_no_subscriber() {
        assert_eq!(event_trace_id(&carrying(TRACEPARENT)), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(event_trace_id(&carrying("00-garbage")), "", "no trace and no current span");
        assert_eq!(event_trace_id(&BTreeMap::new()), "");
    }

    #[test]
    fn a_grpc_call_continues_the_callers_trace() {
        init_for_tests();
        let mut metadata = tonic::metadata::MetadataMap::new();
        let caller = tracing::info_span!("caller");
        set_parent_from(&caller, &carrying(TRACEPARENT));
        caller.in_scope(|| inject_into_metadata(&mut metadata));
        let headers = metadata.into_headers();
        let server = tracing::info_span!("server");
        set_parent_from_http(&server, &headers);
        assert_eq!(trace_id_of(&server.context()).as_deref(), Some("0af7651916cd43dd8448eb211c80319c"), "{headers:?}");
    }

    #[test]
    fn a_process_is_named_after_the_services_it_hosts() {
        assert_eq!(service_name(&[]), "pos");
        assert_eq!(service_name(&["routing"]), "pos-routing");
        assert_eq!(service_name(&["intake", "sla"]), "pos-intake+sla");
    }
}
