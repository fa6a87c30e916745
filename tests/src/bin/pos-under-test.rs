//! The `pos` command line, built inside this package so that end-to-end tests can run services
//! as processes of their own (and kill them).

#[tokio::main]
async fn main() {
    if let Err(error) = pos::cli::run().await {
        eprintln!("pos: {error:#}");
        std::process::exit(1);
    }
}
