//! `pos-web`: the web cabinet as a process of its own, in front of the platform's gRPC API.

use std::sync::Arc;

use anyhow::Context;
use pos_platform::auth::Authenticator;
use pos_platform::cache::{Cache, MemoryCache, RedisCache};
use pos_platform::config::PlatformConfig;
use pos_web::{App, WebConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = std::env::var_os("POS_CONFIG").map(std::path::PathBuf::from);
    let platform = PlatformConfig::load(file.as_deref())?;
    let web: WebConfig = pos_platform::config::section(file.as_deref(), "web")?;
    let telemetry = pos_platform::telemetry::init(&pos_platform::telemetry::TelemetryConfig {
        service_name: "pos-web".into(),
        otlp_endpoint: platform.otlp_endpoint.clone(),
        log_filter: platform.log_filter.clone(),
        json_logs: platform.json_logs,
    })?;
    // Sessions live in Redis when there is one, so that every replica finds them.
    let cache: Arc<dyn Cache> = match &platform.redis_url {
        Some(url) => Arc::new(
            RedisCache::connect(url.expose(), &platform.cache_prefix).await.context("failed to connect to Redis")?,
        ),
        None => Arc::new(MemoryCache::new()),
    };
    let minter = Some(Arc::new(Authenticator::from_config(&platform.auth)?));
    let listener =
        tokio::net::TcpListener::bind(web.addr).await.with_context(|| format!("failed to listen on {}", web.addr))?;
    let channel = pos_platform::grpc::channel(&web.grpc_endpoint)?;
    let app = App::new(web, channel, cache, minter, listener.local_addr()?);
    let shutdown = pos_platform::shutdown::on_signal();
    let result = pos_web::serve(app, listener, shutdown).await;
    telemetry.shutdown().await;
    result
}
