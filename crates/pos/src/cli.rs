//! The `pos` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use pos_platform::auth::Role;

use crate::up;

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
    /// Run the services in this process: embedded (SQLite files, in-process bus and cache)
    /// unless POS_DATABASE_URL, POS_AMQP_URL, POS_REDIS_URL point to real servers.
    Up {
        /// Which services to run (all by default), e.g. `--services routing` to scale one alone.
        #[arg(long, value_delimiter = ',', value_parser = up::parse_service)]
        services: Vec<&'static str>,
    },
    /// Submit appeals at rising rates to a running platform and report throughput and latency.
    Bench(crate::bench::BenchArgs),
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

/// Parses the process's arguments and runs the command.
pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = up::load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Up { services } => up::up(config, cli.config, &services).await,
        Command::Migrate => up::migrate(config).await,
        Command::Bench(args) => {
            let authenticator = pos_platform::auth::Authenticator::from_config(&config.auth)?;
            crate::bench::run(args, &authenticator).await.map(|_| ())
        }
        Command::Token { role, org, region, subject, hours } => {
            let authenticator = pos_platform::auth::Authenticator::from_config(&config.auth)?;
            let token =
                authenticator.mint(&subject, &org, &region, &[role], std::time::Duration::from_secs(hours * 3600))?;
            println!("{token}");
            Ok(())
        }
    }
}
