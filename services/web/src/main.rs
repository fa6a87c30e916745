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
    let web: WebConfig = pos_platform::config::section(file.as_deref(), "web")?;
    // `pos-web healthcheck`: for a container's health check, where there is no curl.
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck(web.addr).await;
    }
    let platform = PlatformConfig::load(file.as_deref())?;
    let telemetry = pos_platform::telemetry::init(&pos_platform::telemetry::TelemetryConfig {
        service_name: "pos-web".into(),
        otlp_endpoint: platform.otlp_endpoint.clone(),
        log_filter: platform.log_filter.clone(),
        json_logs: platform.json_logs,
    })?;
    // Sessions live in Redis when there is one, so that every replica finds them.
    let cache: Arc<dyn Cache> = match &platform.redis_url {
        Some(url) => {
            let ca = pos_platform::servers_ca::ServersCa::from_config(&platform)?;
            Arc::new(
                RedisCache::connect_with_ca(url.expose(), &platform.cache_prefix, ca.as_ref())
                    .await
                    .context("failed to connect to Redis")?,
            )
        }
        None => Arc::new(MemoryCache::new()),
    };
    let minter = Some(Arc::new(Authenticator::for_process(&platform.auth, platform.is_embedded())?));
    let listener =
        tokio::net::TcpListener::bind(web.addr).await.with_context(|| format!("failed to listen on {}", web.addr))?;
    // `https://` with the `[tls]` client settings (`POS_TLS__CA_FILE`, and a client certificate
    // when the platform requires one).
    let client_tls = pos_platform::tls::ClientTls::from_config(&platform.tls)?;
    let channel = pos_platform::grpc::channel_with(&web.grpc_endpoint, client_tls.as_ref())?;
    // A configuration that cannot work stops the process here rather than serving no sign-in.
    let app = App::try_new(web, channel, cache, minter, listener.local_addr()?)?.with_auth(&platform.auth);
    let shutdown = pos_platform::shutdown::on_signal();
    // Its process on the dashboards like every other: `target_info` and the gRPC client's view.
    if let Some(addr) = platform.metrics_addr {
        pos_platform::metrics::describe_target("pos-web");
        tokio::spawn(pos_platform::metrics::serve(addr, shutdown.clone()));
    }
    let result = pos_web::serve(app, listener, shutdown).await;
    telemetry.shutdown().await;
    result
}

/// Exits with an error unless the cabinet listening on `addr` answers `GET /healthz` with 200.
async fn healthcheck(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A cabinet listening on every interface is reached on loopback.
    let target = match addr.ip() {
        ip if ip.is_unspecified() => std::net::SocketAddr::from(([127, 0, 0, 1], addr.port())),
        _ => addr,
    };
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        stream.write_all(format!("GET /healthz HTTP/1.0\r\nHost: {target}\r\n\r\n").as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        anyhow::Ok(answer)
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), check)
        .await
        .with_context(|| format!("{target} did not answer in 5 s"))??;
    let status = String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned();
    anyhow::ensure!(status.split_whitespace().nth(1) == Some("200"), "{target}/healthz answered {status:?}");
    Ok(())
}
