#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pos_platform::host::service_main("ticketing", &pos_ticketing::MIGRATIONS, pos_ticketing::component).await
}
