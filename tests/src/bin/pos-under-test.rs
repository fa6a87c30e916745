//! The `pos` command line, built inside this package so that end-to-end tests can run services
//! as processes of their own (and kill them).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pos::cli::run().await
}
