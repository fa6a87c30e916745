//! `pos bench`: a load generator. Submits appeals at rising rates to a running platform and
//! reports, per step, the sustained submit rate, submit latency, and submit-to-ticket latency
//! (from the platform's own timestamps: registration in intake to creation in ticketing).
//!
//! And, per step, what an appeal costs: CPU time of the platform, PostgreSQL, RabbitMQ and the
//! load generator (from `/proc`), the platform's transactions and bus deliveries (from its
//! Prometheus endpoint) and PostgreSQL's own transaction count. On two shared cores a rate is
//! noisy; the cost per appeal is what tells one version of the platform from the next.

mod cpu;
mod scrape;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pos_platform::auth::{Authenticator, Role};
use pos_proto::v1 as pb;
use pos_proto::v1::intake_service_client::IntakeServiceClient;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;
use serde::Serialize;
use tokio::sync::Semaphore;

use self::cpu::{CpuProbe, CpuTimes};

/// The appeal every submission carries: Kamchatka's e-diary fact, routed to the regional center.
const ORGANIZATION: &str = "41-kcioko";

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Target rates (appeals per second), one step each, in order.
    #[arg(long, value_delimiter = ',', default_values_t = [25u32, 50, 100, 200, 400])]
    pub rates: Vec<u32>,
    /// Seconds each step submits for.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Submissions in flight at most; a slower platform lowers the achieved rate.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Seconds to wait after a step for its last tickets.
    #[arg(long, default_value_t = 120)]
    pub drain_seconds: u64,
    /// The platform's Prometheus endpoint (`pos up` with `POS_METRICS_ADDR`), e.g.
    /// http://127.0.0.1:9464/metrics: transactions and bus deliveries per appeal.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// The platform's process, whose CPU time is the platform's; by default every process
    /// named `pos` or `pos-…` but this one.
    #[arg(long)]
    pub platform_pid: Option<u32>,
    /// The platform's PostgreSQL (postgres://…): also PostgreSQL's own count of transactions
    /// per appeal. Its statistics reach `pg_stat_database` up to 10 s after a connection goes
    /// idle, so each step then waits 11 s more, and so does the start.
    #[arg(long)]
    pub database_url: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StepReport {
    pub target_per_second: u32,
    pub submitted: usize,
    pub failed: usize,
    pub achieved_per_second: f64,
    pub submit_p50_ms: f64,
    pub submit_p99_ms: f64,
    pub ticketed: usize,
    pub to_ticket_p50_ms: f64,
    pub to_ticket_p99_ms: f64,
    pub to_ticket_max_ms: f64,
    /// Seconds from just before the first submission until every ticket was found and the
    /// platform, PostgreSQL and RabbitMQ were quiet again: what the cost figures cover.
    pub window_seconds: f64,
    /// CPU milliseconds per accepted appeal, per group of processes; `None` without `/proc`.
    pub cpu_ms_per_appeal: Option<CpuPerAppeal>,
    /// `pos_db_transactions_total` per accepted appeal; `None` without `--metrics-url`.
    pub transactions_per_appeal: Option<f64>,
    /// `pos_consumer_deliveries_total` (every queue and outcome) per accepted appeal; `None`
    /// without `--metrics-url`.
    pub deliveries_per_appeal: Option<f64>,
    /// PostgreSQL's `xact_commit + xact_rollback` of the database per accepted appeal; `None`
    /// without `--database-url`.
    pub pg_xact_per_appeal: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuPerAppeal {
    pub platform: f64,
    pub postgres: f64,
    pub broker: f64,
    pub bench: f64,
    pub total: f64,
}

impl CpuPerAppeal {
    fn of(used: &CpuTimes, appeals: usize) -> CpuPerAppeal {
        let per = |seconds: f64| seconds * 1000.0 / appeals as f64;
        CpuPerAppeal {
            platform: per(used.platform),
            postgres: per(used.postgres),
            broker: per(used.broker),
            bench: per(used.bench),
            total: per(used.total()),
        }
    }
}

/// What a step's costs are read from.
struct Probes {
    cpu: Option<CpuProbe>,
    metrics_url: Option<String>,
    postgres: Option<PgStats>,
    /// The shares of one core the groups used at rest, before the first step.
    at_rest: CpuTimes,
}

/// The platform's counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    transactions: f64,
    deliveries: f64,
}

impl Probes {
    async fn new(args: &BenchArgs) -> anyhow::Result<Probes> {
        let cpu = CpuProbe::new(args.platform_pid);
        let mut at_rest = CpuTimes::default();
        if let Some(cpu) = &cpu {
            let platform = cpu.platform_processes();
            if platform.is_empty() {
                eprintln!("CPU: no platform process found (named pos or pos-…, or --platform-pid)");
            } else {
                let list: Vec<String> = platform.iter().map(|(pid, comm)| format!("{pid} ({comm})")).collect();
                eprintln!("CPU: the platform is process {}", list.join(", "));
            }
            // What the groups use with no load: every step's window carries it, so a figure
            // per appeal is only as exact as this is small (other work on the same servers).
            let before = cpu.sample();
            tokio::time::sleep(AT_REST_SAMPLE).await;
            at_rest = cpu.sample().since(&before).per_second(AT_REST_SAMPLE);
            eprintln!(
                "CPU at rest, % of one core: platform {:.1}, postgres {:.1}, broker {:.1}",
                at_rest.platform * 100.0,
                at_rest.postgres * 100.0,
                at_rest.broker * 100.0
            );
        }
        let postgres = match &args.database_url {
            Some(url) => Some(PgStats::connect(url).await?),
            None => None,
        };
        let probes = Probes { cpu, metrics_url: args.metrics_url.clone(), postgres, at_rest };
        // Fail at the start, not after the first step.
        probes.counters().await?;
        Ok(probes)
    }

    async fn counters(&self) -> anyhow::Result<Option<Counters>> {
        let Some(url) = &self.metrics_url else { return Ok(None) };
        let text = scrape::get(url).await?;
        Ok(Some(Counters {
            transactions: scrape::sum_samples(&text, "pos_db_transactions_total"),
            deliveries: scrape::sum_samples(&text, "pos_consumer_deliveries_total"),
        }))
    }

    fn cpu(&self) -> Option<CpuTimes> {
        self.cpu.as_ref().map(CpuProbe::sample)
    }

    /// After the tickets are in, waits until the platform and its servers are quiet again:
    /// under 5 % of one core over the last 250 ms above what they used at rest, the platform
    /// alone as well, or 15 s at most. Returns the CPU times then. Above the rest, because
    /// servers shared with other work (another platform's pollers on the same PostgreSQL) may
    /// never fall under 5 %, and the window would run to its limit carrying 15 s of that work;
    /// the platform alone too, because the rest of busy servers could hide its last work.
    async fn wait_until_quiet(&self) -> Option<CpuTimes> {
        let probe = self.cpu.as_ref()?;
        let started = Instant::now();
        let (mut last, mut last_at) = (probe.sample(), Instant::now());
        loop {
            tokio::time::sleep(QUIET_SAMPLE).await;
            let (now, now_at) = (probe.sample(), Instant::now());
            let busy = now.since(&last).per_second(now_at.duration_since(last_at));
            let quiet = busy.servers() < self.at_rest.servers() + QUIET_SHARE
                && busy.platform < self.at_rest.platform + QUIET_SHARE;
            if quiet || started.elapsed() >= QUIET_LIMIT {
                return Some(now);
            }
            (last, last_at) = (now, now_at);
        }
    }
}

const AT_REST_SAMPLE: Duration = Duration::from_secs(2);
const QUIET_SAMPLE: Duration = Duration::from_millis(250);
/// Of one core.
const QUIET_SHARE: f64 = 0.05;
const QUIET_LIMIT: Duration = Duration::from_secs(15);
/// PostgreSQL flushes an idle connection's statistics 10 s after it went idle.
const PG_STATS_SETTLE: Duration = Duration::from_secs(11);

/// PostgreSQL's own transaction count of the platform's database.
struct PgStats {
    connection: tokio::sync::Mutex<sqlx::PgConnection>,
}

impl PgStats {
    async fn connect(url: &str) -> anyhow::Result<PgStats> {
        use sqlx::Connection as _;
        anyhow::ensure!(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "--database-url must be a postgres:// URL"
        );
        let connection = sqlx::PgConnection::connect(url)
            .await
            .with_context(|| format!("connecting to {}", pos_platform::db::redact_url(url)))?;
        Ok(PgStats { connection: tokio::sync::Mutex::new(connection) })
    }

    /// `xact_commit + xact_rollback` of the database, once the counts of the connections gone
    /// idle have arrived.
    async fn settled_transactions(&self) -> anyhow::Result<f64> {
        tokio::time::sleep(PG_STATS_SETTLE).await;
        let mut connection = self.connection.lock().await;
        let count: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(xact_commit + xact_rollback), 0)::BIGINT FROM pg_stat_database \
             WHERE datname = current_database()",
        )
        .fetch_one(&mut *connection)
        .await?;
        Ok(count as f64)
    }
}

pub async fn run(
    args: BenchArgs,
    channel: tonic::transport::Channel,
    json: bool,
    authenticator: &Authenticator,
) -> anyhow::Result<Vec<StepReport>> {
    let hour = Duration::from_secs(3600);
    // A load test submits as a system integration: a person's allowance (50 calls a second of
    // one method) would refuse most of a step above it, and the cost would be the limiter's.
    let submitter = authenticator.mint("bench-load", "", "41", &[Role::System], hour)?;
    let system = authenticator.mint("bench-system", ORGANIZATION, "41", &[Role::System], hour)?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let probes = Probes::new(&args).await?;
    let mut pg_transactions = match &probes.postgres {
        Some(postgres) => {
            eprintln!("PostgreSQL: waiting {} s for its statistics to settle", PG_STATS_SETTLE.as_secs());
            Some(postgres.settled_transactions().await?)
        }
        None => None,
    };
    let mut reports = Vec::new();
    for (step, rate) in args.rates.iter().copied().enumerate() {
        let step_id = format!("{run_id}-{step}");
        let report =
            step_at(&args, &channel, &submitter, &system, &step_id, rate, &probes, &mut pg_transactions).await?;
        if !json {
            print_row(reports.is_empty(), &report);
        }
        reports.push(report);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print_costs(&reports, probes.cpu.is_some(), probes.postgres.is_some());
    }
    Ok(reports)
}

/// One step at `rate`. `pg_transactions` is PostgreSQL's settled count at the step's start,
/// and is left at its end.
#[allow(clippy::too_many_arguments)]
async fn step_at(
    args: &BenchArgs,
    channel: &tonic::transport::Channel,
    submitter: &str,
    system: &str,
    step_id: &str,
    rate: u32,
    probes: &Probes,
    pg_transactions: &mut Option<f64>,
) -> anyhow::Result<StepReport> {
    let total = (u64::from(rate) * args.seconds) as usize;
    let in_flight = Arc::new(Semaphore::new(args.max_in_flight));
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    // Open loop: a late tick fires at once, so a stall shows as latency, not as a lower rate.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // The scrape first, so that its own work falls outside the window; the CPU last.
    let counters_before = probes.counters().await?;
    let cpu_before = probes.cpu();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        interval.tick().await;
        let permit = in_flight.clone().acquire_owned().await?;
        let (mut client, token) = (IntakeServiceClient::new(channel.clone()), submitter.to_owned());
        let request = appeal(&format!("{step_id}-{i}"));
        tasks.spawn(async move {
            let sent = Instant::now();
            let result = client.submit_appeal(pos_platform::grpc::outgoing(request, &token)).await;
            drop(permit);
            result.map(|r| (r.into_inner().appeal_id, sent.elapsed()))
        });
    }
    let mut submit_latencies = Vec::with_capacity(total);
    let mut appeal_ids = std::collections::HashSet::with_capacity(total);
    let mut failed = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            Ok((appeal_id, latency)) => {
                appeal_ids.insert(appeal_id);
                submit_latencies.push(latency);
            }
            Err(status) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("submit failed: {status}");
                }
            }
        }
    }
    let elapsed = started.elapsed();
    // Listing tickets while waiting loads the platform too: it stays inside the window.
    let to_ticket = wait_for_tickets(channel, system, &appeal_ids, Duration::from_secs(args.drain_seconds)).await?;
    let cpu_after = probes.wait_until_quiet().await;
    let window = started.elapsed();
    let counters_after = match probes.counters().await {
        Ok(counters) => counters,
        Err(error) => {
            eprintln!("metrics: {error:#}");
            None
        }
    };
    let appeals = appeal_ids.len();
    let per_appeal = |count: f64| count / appeals as f64;
    let counted = counters_before.zip(counters_after);
    let pg_xact_per_appeal = match (&probes.postgres, *pg_transactions) {
        (Some(postgres), Some(before)) => {
            let after = postgres.settled_transactions().await?;
            *pg_transactions = Some(after);
            Some(per_appeal(after - before))
        }
        _ => None,
    };
    Ok(StepReport {
        target_per_second: rate,
        submitted: appeal_ids.len(),
        failed,
        achieved_per_second: appeal_ids.len() as f64 / elapsed.as_secs_f64(),
        submit_p50_ms: percentile_ms(&mut submit_latencies, 0.50),
        submit_p99_ms: percentile_ms(&mut submit_latencies, 0.99),
        ticketed: to_ticket.len(),
        to_ticket_p50_ms: percentile_ms(&mut to_ticket.clone(), 0.50),
        to_ticket_p99_ms: percentile_ms(&mut to_ticket.clone(), 0.99),
        to_ticket_max_ms: percentile_ms(&mut to_ticket.clone(), 1.0),
        window_seconds: window.as_secs_f64(),
        cpu_ms_per_appeal: cpu_before.zip(cpu_after).map(|(b, a)| CpuPerAppeal::of(&a.since(&b), appeals)),
        transactions_per_appeal: counted.map(|(b, a)| per_appeal(a.transactions - b.transactions)),
        deliveries_per_appeal: counted.map(|(b, a)| per_appeal(a.deliveries - b.deliveries)),
        pg_xact_per_appeal,
    })
}

/// Lists the organization's New folder until every appeal of the step has its ticket (or the
/// time is up); returns each ticket's registration-to-creation latency.
async fn wait_for_tickets(
    channel: &tonic::transport::Channel,
    token: &str,
    appeal_ids: &std::collections::HashSet<String>,
    limit: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let deadline = Instant::now() + limit;
    let mut found = std::collections::HashMap::new();
    let mut client = TicketingServiceClient::new(channel.clone());
    loop {
        let mut page_token = String::new();
        loop {
            let request = pb::ListTicketsRequest {
                organization_id: ORGANIZATION.into(),
                folder: pb::Folder::New as i32,
                page_size: 500,
                page_token: page_token.clone(),
                ..Default::default()
            };
            let page = client.list_tickets(pos_platform::grpc::outgoing(request, token)).await?.into_inner();
            for ticket in page.tickets {
                if appeal_ids.contains(&ticket.appeal_id) {
                    let received = ticket.received_at.as_ref().and_then(pos_proto::time::from_proto);
                    let created = ticket.created_at.as_ref().and_then(pos_proto::time::from_proto);
                    if let (Some(received), Some(created)) = (received, created) {
                        let latency = (created - received).to_std().unwrap_or_default();
                        found.insert(ticket.appeal_id, latency);
                    }
                }
            }
            // Newest first: once a page holds only older tickets than the step's, stop paging.
            if page.next_page_token.is_empty() || found.len() == appeal_ids.len() {
                break;
            }
            page_token = page.next_page_token;
        }
        if found.len() == appeal_ids.len() || Instant::now() > deadline {
            return Ok(found.into_values().collect());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn appeal(request_id: &str) -> pb::SubmitAppealRequest {
    pb::SubmitAppealRequest {
        request_id: request_id.to_owned(),
        source: pb::Source::PortalWidget as i32,
        applicant: Some(pb::Applicant {
            full_name: "Нагрузочный Тест".into(),
            email: "bench@example.org".into(),
            phone: String::new(),
            account_id: "bench".into(),
        }),
        region_code: "41".into(),
        category_id: "education".into(),
        subcategory_id: "education.e-diary".into(),
        fact_id: "education.e-diary.access".into(),
        text: "Прошу предоставить доступ к электронному дневнику.".into(),
        ..Default::default()
    }
}

fn percentile_ms(samples: &mut [Duration], quantile: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    let index = ((samples.len() as f64 * quantile).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[index].as_secs_f64() * 1000.0
}

fn print_row(header: bool, r: &StepReport) {
    if header {
        println!(
            "{:>8} {:>9} {:>7} {:>10} {:>11} {:>11} {:>9} {:>13} {:>13} {:>13}",
            "target/s",
            "submitted",
            "failed",
            "achieved/s",
            "submit p50",
            "submit p99",
            "ticketed",
            "to-ticket p50",
            "to-ticket p99",
            "to-ticket max"
        );
    }
    println!(
        "{:>8} {:>9} {:>7} {:>10.1} {:>9.1}ms {:>9.1}ms {:>9} {:>11.1}ms {:>11.1}ms {:>11.1}ms",
        r.target_per_second,
        r.submitted,
        r.failed,
        r.achieved_per_second,
        r.submit_p50_ms,
        r.submit_p99_ms,
        r.ticketed,
        r.to_ticket_p50_ms,
        r.to_ticket_p99_ms,
        r.to_ticket_max_ms
    );
}

/// The cost of an appeal per step, as a table after the latency one (one row would not fit a
/// terminal). The CPU columns only where `/proc` was read, PostgreSQL's only when asked.
fn print_costs(reports: &[StepReport], with_cpu: bool, with_pg: bool) {
    println!();
    println!("{}", costs_table(reports, with_cpu, with_pg));
}

fn costs_table(reports: &[StepReport], with_cpu: bool, with_pg: bool) -> String {
    type Cell = fn(&StepReport) -> String;
    fn figure(value: Option<f64>) -> String {
        value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
    }
    let mut columns: Vec<(&str, Cell)> = vec![
        ("target/s", |r| r.target_per_second.to_string()),
        ("appeals", |r| r.submitted.to_string()),
        ("window", |r| format!("{:.1}s", r.window_seconds)),
    ];
    if with_cpu {
        columns.extend([
            ("platform", (|r| figure(r.cpu_ms_per_appeal.map(|c| c.platform))) as Cell),
            ("postgres", |r| figure(r.cpu_ms_per_appeal.map(|c| c.postgres))),
            ("broker", |r| figure(r.cpu_ms_per_appeal.map(|c| c.broker))),
            ("bench", |r| figure(r.cpu_ms_per_appeal.map(|c| c.bench))),
            ("total", |r| figure(r.cpu_ms_per_appeal.map(|c| c.total))),
        ]);
    }
    columns.push(("tx/appeal", |r| figure(r.transactions_per_appeal)));
    columns.push(("deliveries/appeal", |r| figure(r.deliveries_per_appeal)));
    if with_pg {
        columns.push(("pg xact/appeal", |r| figure(r.pg_xact_per_appeal)));
    }
    let cells: Vec<Vec<String>> = reports.iter().map(|r| columns.iter().map(|(_, cell)| cell(r)).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (header, _))| cells.iter().map(|row| row[i].len()).chain([header.len()]).max().unwrap_or(0))
        .collect();
    let line = |row: Vec<&str>| {
        row.iter().zip(&widths).map(|(text, width)| format!("{text:>width$}")).collect::<Vec<_>>().join("  ")
    };
    let mut table = Vec::new();
    if with_cpu {
        // Over the five CPU columns: what their figures are.
        let before: usize = widths[..3].iter().map(|w| w + 2).sum();
        let span: usize = widths[3..8].iter().sum::<usize>() + 4 * 2;
        table.push(format!("{:before$}{:^span$}", "", "cpu/appeal, ms"));
    }
    table.push(line(columns.iter().map(|(header, _)| *header).collect()));
    for row in &cells {
        table.push(line(row.iter().map(String::as_str).collect()));
    }
    table.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&mut samples, 0.50), 50.0);
        assert_eq!(percentile_ms(&mut samples, 0.99), 99.0);
        assert_eq!(percentile_ms(&mut samples, 1.0), 100.0);
        assert!(percentile_ms(&mut [], 0.5).is_nan());
    }

    fn report(cpu: Option<CpuPerAppeal>, transactions: Option<f64>) -> StepReport {
        StepReport {
            target_per_second: 100,
            submitted: 1000,
            failed: 0,
            achieved_per_second: 100.0,
            submit_p50_ms: 1.0,
            submit_p99_ms: 2.0,
            ticketed: 1000,
            to_ticket_p50_ms: 3.0,
            to_ticket_p99_ms: 4.0,
            to_ticket_max_ms: 5.0,
            window_seconds: 11.3,
            cpu_ms_per_appeal: cpu,
            transactions_per_appeal: transactions,
            deliveries_per_appeal: transactions.map(|t| t / 2.0),
            pg_xact_per_appeal: None,
        }
    }

    #[test]
    fn cpu_per_appeal_is_milliseconds_per_accepted_appeal() {
        let used = CpuTimes { platform: 2.5, postgres: 1.0, broker: 0.5, bench: 0.25 };
        let cpu = CpuPerAppeal::of(&used, 1000);
        assert_eq!((cpu.platform, cpu.postgres, cpu.broker, cpu.bench, cpu.total), (2.5, 1.0, 0.5, 0.25, 4.25));
    }

    #[test]
    fn the_cost_table_shows_two_decimals_and_a_dash_for_what_was_not_measured() {
        let cpu = CpuPerAppeal { platform: 2.5, postgres: 1.0, broker: 0.5, bench: 0.25, total: 4.25 };
        let table = costs_table(&[report(Some(cpu), Some(7.0)), report(None, None)], true, true);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].contains("cpu/appeal, ms"), "{table}");
        let header: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(header[..4], ["target/s", "appeals", "window", "platform"]);
        assert!(lines[1].ends_with("tx/appeal  deliveries/appeal  pg xact/appeal"), "{table}");
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(row, ["100", "1000", "11.3s", "2.50", "1.00", "0.50", "0.25", "4.25", "7.00", "3.50", "-"]);
        assert_eq!(lines[3].split_whitespace().filter(|cell| *cell == "-").count(), 8, "{table}");
        assert!(lines.iter().skip(1).all(|line| line.len() == lines[1].len()), "aligned:\n{table}");

        let table = costs_table(&[report(None, Some(7.0))], false, false);
        assert_eq!(table.lines().next().unwrap().split_whitespace().collect::<Vec<_>>().len(), 5, "{table}");
        assert!(!table.contains("cpu/appeal"));
    }

    #[test]
    fn the_report_serializes_its_costs() {
        let cpu = CpuPerAppeal { platform: 2.5, postgres: 1.0, broker: 0.5, bench: 0.25, total: 4.25 };
        let json = serde_json::to_value(report(Some(cpu), Some(7.0))).unwrap();
        assert_eq!(json["cpu_ms_per_appeal"]["total"], 4.25);
        assert_eq!(json["transactions_per_appeal"], 7.0);
        assert_eq!(json["deliveries_per_appeal"], 3.5);
        assert!(json["pg_xact_per_appeal"].is_null());
        assert_eq!(json["to_ticket_p99_ms"], 4.0);
    }
}
