//! The routing service as its own process.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pos_platform::host::service_main("routing", &pos_routing::MIGRATIONS, pos_routing::component).await
}
