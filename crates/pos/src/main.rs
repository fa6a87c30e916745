//! `pos`: the whole platform in one process (`pos up`), and operator commands.

#[tokio::main]
async fn main() {
    if let Err(error) = pos::cli::run().await {
        // One readable line with its causes; operators do not need a Rust backtrace.
        eprintln!("pos: {error:#}");
        std::process::exit(1);
    }
}
