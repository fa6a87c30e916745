#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pos_platform::host::service_main("notify", &pos_notify::MIGRATIONS, pos_notify::component).await
}
