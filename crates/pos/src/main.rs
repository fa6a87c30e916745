//! `pos`: the whole platform in one process (`pos up`), and operator commands.

use pos::up;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use pos_platform::auth::Role;

#[derive(Debug, Parser)]
#[command(name = "pos", version, about = "An open platform for citizen appeals")]
struct Cli {
    /// A TOML configuration file (also `POS_CONFIG`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run all five services in this process: embedded (SQLite files, in-process bus and cache)
    /// unless POS_DATABASE_URL, POS_AMQP_URL, POS_REDIS_URL point to real servers.
    Up,
    /// Apply every service's database migrations and exit.
    Migrate,
    /// Print a development token (HS256) for a role.
    Token {
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The caller's organization id.
        #[arg(long, default_value = "")]
        org: String,
        /// The caller's region code.
        #[arg(long, default_value = "")]
        region: String,
        #[arg(long, default_value = "dev-user")]
        subject: String,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 12)]
        hours: u64,
    },
}

fn parse_role(value: &str) -> Result<Role, String> {
    value.parse()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = up::load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Up => up::up(config, cli.config).await,
        Command::Migrate => up::migrate(config).await,
        Command::Token { role, org, region, subject, hours } => {
            let authenticator = pos_platform::auth::Authenticator::from_config(&config.auth)?;
            let token =
                authenticator.mint(&subject, &org, &region, &[role], std::time::Duration::from_secs(hours * 3600))?;
            println!("{token}");
            Ok(())
        }
    }
}
