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
    #[command(flatten)]
    target: crate::ops::Target,
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
    /// A workflow command on a ticket: take-in-work, assign, prepare, send-for-approval,
    /// approve, return-for-rework, redirect, reject, accept, reject-answer.
    Act(crate::act::ActArgs),
    /// An organization's staff directory.
    #[command(subcommand)]
    Staff(crate::act::StaffCommand),
    /// The classifier: categories, subcategories and facts with the periods their deadlines get
    /// (the SLA policy's, per region).
    Classifier {
        /// The region whose policy to show, e.g. 41; the default policy when omitted.
        #[arg(long)]
        region: Option<String>,
    },
    /// Register an appeal (as an operator taking it by phone).
    Submit(crate::ops::SubmitArgs),
    /// An organization's cabinet: folder counts and the list.
    Tickets(crate::ops::TicketsArgs),
    /// An appeal with its routing and status.
    Show { appeal_id: String },
    /// An appeal's answer and execution deadlines.
    Deadlines { appeal_id: String },
    /// Load the seed classifier, directory and regions into the routing database (existing
    /// rows are updated from the files).
    Seed {
        /// A directory with regions.toml, classifier.toml, organizations.toml; the built-in
        /// seed when omitted.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Dead letters: the events consumers gave up on, with their reasons; read, replay after a
    /// fix, or drop (operator role).
    #[command(subcommand)]
    Dlq(crate::dlq::DlqCommand),
    /// The audit trail of security events: denials, sign-ins, changes of staff, policies,
    /// calendars, the classifier and the directory, newest first (operator; an organization
    /// admin's token shows the own organization's).
    Audit(crate::audit::AuditArgs),
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

async fn client(
    target: crate::ops::Target,
    config: &pos_platform::config::PlatformConfig,
) -> anyhow::Result<crate::ops::Client> {
    let authenticator = pos_platform::auth::Authenticator::from_config(&config.auth)?;
    crate::ops::Client::connect(target, authenticator, &config.tls).await
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
            let channel = cli.target.connect(&config.tls).await?;
            crate::bench::run(args, channel, cli.target.json, &authenticator).await.map(|_| ())
        }
        Command::Seed { dir } => up::seed(config, dir.as_deref()).await,
        Command::Act(args) => crate::act::act(&client(cli.target, &config).await?, args).await,
        Command::Staff(command) => crate::act::staff(&client(cli.target, &config).await?, command).await,
        Command::Dlq(command) => {
            let json = cli.target.json;
            crate::dlq::run(&client(cli.target, &config).await?, command, json).await
        }
        Command::Audit(args) => {
            let json = cli.target.json;
            crate::audit::run(&client(cli.target, &config).await?, args, json).await
        }
        Command::Classifier { region } => {
            crate::ops::classifier(&client(cli.target, &config).await?, region.as_deref()).await
        }
        Command::Submit(args) => crate::ops::submit(&client(cli.target, &config).await?, args).await,
        Command::Tickets(args) => crate::ops::tickets(&client(cli.target, &config).await?, args).await,
        Command::Show { appeal_id } => crate::ops::show(&client(cli.target, &config).await?, &appeal_id).await,
        Command::Deadlines { appeal_id } => {
            crate::ops::deadlines(&client(cli.target, &config).await?, &appeal_id).await
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
