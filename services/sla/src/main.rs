#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pos_platform::host::service_main("sla", &pos_sla::MIGRATIONS, pos_sla::component).await
}
