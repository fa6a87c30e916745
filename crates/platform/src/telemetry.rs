//! Tracing with OpenTelemetry: spans always carry W3C trace ids (so one appeal is one trace even
//! with no collector), exported over OTLP only when an endpoint is configured. The trace
//! context crosses gRPC metadata and AMQP headers through the helpers below.

use std::collections::BTreeMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

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
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut builder = SdkTracerProvider::builder()
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(config.service_name.clone()).build());
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
    Ok(TelemetryGuard { provider: Some(provider) })
}

/// Installs a quiet subscriber for tests (logs only when `TEST_LOG` is set). Idempotent.
pub fn init_for_tests() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
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

/// Writes the current span's context (`traceparent`) into `headers`.
pub fn inject_current(headers: &mut BTreeMap<String, String>) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut MapInjector(headers));
}

/// Makes `span` a child of the context carried in `headers`, if any.
pub fn set_parent_from(span: &tracing::Span, headers: &BTreeMap<String, String>) {
    let context = TraceContextPropagator::new().extract(&MapExtractor(headers));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// Makes `span` a child of the context in gRPC/HTTP request headers, if any.
pub fn set_parent_from_http(span: &tracing::Span, headers: &http::HeaderMap) {
    let mut map = BTreeMap::new();
    if let Some(value) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        map.insert("traceparent".to_owned(), value.to_owned());
    }
    if let Some(value) = headers.get("tracestate").and_then(|v| v.to_str().ok()) {
        map.insert("tracestate".to_owned(), value.to_owned());
    }
    set_parent_from(span, &map);
}

/// Adds the current trace context to an outgoing gRPC request.
pub fn inject_into_metadata(metadata: &mut tonic::metadata::MetadataMap) {
    let mut map = BTreeMap::new();
    inject_current(&mut map);
    for (key, value) in map {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            metadata.insert(key, value);
        }
    }
}

/// The current span's trace id (32 hex digits), or an empty string outside a trace.
pub fn current_trace_id() -> String {
    let context = tracing::Span::current().context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() { span_context.trace_id().to_string() } else { String::new() }
}
