//! `pos`: the whole platform in one process (`pos up`), and operator commands.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pos::cli::run().await
}
