#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pos_platform::host::service_main("intake", &pos_intake::MIGRATIONS, pos_intake::component).await
}
