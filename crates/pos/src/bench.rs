//! `pos bench`: a load generator. Submits appeals at rising rates to a running platform and
//! reports, per step, the sustained submit rate, submit latency, and submit-to-ticket latency
//! (from the platform's own timestamps: registration in intake to creation in ticketing).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pos_platform::auth::{Authenticator, Role};
use pos_proto::v1 as pb;
use pos_proto::v1::intake_service_client::IntakeServiceClient;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;
use serde::Serialize;
use tokio::sync::Semaphore;

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
}

pub async fn run(
    args: BenchArgs,
    channel: tonic::transport::Channel,
    json: bool,
    authenticator: &Authenticator,
) -> anyhow::Result<Vec<StepReport>> {
    let hour = Duration::from_secs(3600);
    let operator = authenticator.mint("bench-operator", "", "41", &[Role::Operator], hour)?;
    let system = authenticator.mint("bench-system", ORGANIZATION, "41", &[Role::System], hour)?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut reports = Vec::new();
    for (step, rate) in args.rates.iter().copied().enumerate() {
        let report = step_at(&args, &channel, &operator, &system, &format!("{run_id}-{step}"), rate).await?;
        if !json {
            print_row(reports.is_empty(), &report);
        }
        reports.push(report);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(reports)
}

async fn step_at(
    args: &BenchArgs,
    channel: &tonic::transport::Channel,
    operator: &str,
    system: &str,
    step_id: &str,
    rate: u32,
) -> anyhow::Result<StepReport> {
    let total = (u64::from(rate) * args.seconds) as usize;
    let in_flight = Arc::new(Semaphore::new(args.max_in_flight));
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    // Open loop: a late tick fires at once, so a stall shows as latency, not as a lower rate.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        interval.tick().await;
        let permit = in_flight.clone().acquire_owned().await?;
        let (mut client, token) = (IntakeServiceClient::new(channel.clone()), operator.to_owned());
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
    let to_ticket = wait_for_tickets(channel, system, &appeal_ids, Duration::from_secs(args.drain_seconds)).await?;
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
}
