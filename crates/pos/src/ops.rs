//! Operator commands: thin gRPC clients printing readable tables, or JSON with `--json`.
//!
//! They call a running platform like any integration. Without `--token` they mint a
//! development token with the signing key of the configuration (`pos up`'s key by default).

use std::time::Duration;

use anyhow::Context;
use pos_platform::auth::{Authenticator, Role};
use pos_platform::tls::ClientTls;
use pos_proto::v1 as pb;
use pos_proto::v1::intake_service_client::IntakeServiceClient;
use pos_proto::v1::routing_service_client::RoutingServiceClient;
use pos_proto::v1::sla_service_client::SlaServiceClient;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;
use serde_json::json;
use tonic::transport::Channel;

/// Where and as whom the command calls.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The platform's gRPC endpoint.
    #[arg(long, env = "POS_ENDPOINT", default_value = "http://127.0.0.1:50051", global = true)]
    pub endpoint: String,
    /// A bearer token; without it a development token is minted.
    #[arg(long, env = "POS_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// PEM CA certificates that verify an `https://` endpoint; else `tls.ca_file` of the
    /// configuration (`POS_TLS__CA_FILE`).
    #[arg(long, global = true)]
    pub ca_file: Option<std::path::PathBuf>,
    /// A PEM client certificate, for a platform that requires one (mutual TLS); else
    /// `tls.client_cert_file`.
    #[arg(long, global = true, requires = "key_file")]
    pub cert_file: Option<std::path::PathBuf>,
    /// The private key of `--cert-file`; else `tls.client_key_file`.
    #[arg(long, global = true, requires = "cert_file")]
    pub key_file: Option<std::path::PathBuf>,
    /// The name the platform's certificate carries, when it is not the endpoint's host; else
    /// `tls.server_name`.
    #[arg(long, global = true)]
    pub server_name: Option<String>,
}

impl Target {
    /// The client TLS: the configuration's `[tls]` client settings, overridden by the flags.
    pub fn client_tls(&self, config: &pos_platform::tls::TlsConfig) -> anyhow::Result<Option<ClientTls>> {
        let mut tls = config.clone();
        if let Some(ca_file) = &self.ca_file {
            tls.ca_file = Some(ca_file.clone());
        }
        if let (Some(cert_file), Some(key_file)) = (&self.cert_file, &self.key_file) {
            tls.client_cert_file = Some(cert_file.clone());
            tls.client_key_file = Some(key_file.clone());
        }
        if let Some(server_name) = &self.server_name {
            tls.server_name = Some(server_name.clone());
        }
        ClientTls::from_config(&tls)
    }

    /// A connected channel to the endpoint: plaintext for `http://`, TLS for `https://`.
    pub async fn connect(&self, config: &pos_platform::tls::TlsConfig) -> anyhow::Result<Channel> {
        let tls = self.client_tls(config)?;
        pos_platform::grpc::endpoint(&self.endpoint, tls.as_ref(), None)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("no platform answers at {} (is `pos up` running?)", self.endpoint))
    }
}

pub struct Client {
    channel: Channel,
    target: Target,
    authenticator: Authenticator,
}

impl Client {
    pub async fn connect(
        target: Target,
        authenticator: Authenticator,
        tls: &pos_platform::tls::TlsConfig,
    ) -> anyhow::Result<Client> {
        let channel = target.connect(tls).await?;
        Ok(Client { channel, target, authenticator })
    }

    fn token(&self, role: Role, organization_id: &str) -> anyhow::Result<String> {
        match &self.target.token {
            Some(token) => Ok(token.clone()),
            None => {
                self.authenticator.mint(&format!("cli-{role}"), organization_id, "", &[role], Duration::from_secs(600))
            }
        }
    }

    fn request<T>(&self, message: T, role: Role, organization_id: &str) -> anyhow::Result<tonic::Request<T>> {
        Ok(pos_platform::grpc::outgoing(message, &self.token(role, organization_id)?))
    }

    /// A request as `subject` with `role` in `organization_id` (a minted development token
    /// unless `--token` was given).
    pub fn request_as<T>(
        &self,
        message: T,
        role: Role,
        organization_id: &str,
        subject: Option<&str>,
    ) -> anyhow::Result<tonic::Request<T>> {
        let token = match (&self.target.token, subject) {
            (Some(token), _) => token.clone(),
            (None, Some(subject)) => {
                self.authenticator.mint(subject, organization_id, "", &[role], Duration::from_secs(600))?
            }
            (None, None) => self.token(role, organization_id)?,
        };
        Ok(pos_platform::grpc::outgoing(message, &token))
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The category and subcategory a fact belongs to, from the classifier.
    async fn fact_path(&self, fact_id: &str) -> anyhow::Result<(String, String)> {
        let classifier = RoutingServiceClient::new(self.channel.clone())
            .list_classifier(self.request(pb::ListClassifierRequest {}, Role::Operator, "")?)
            .await?
            .into_inner();
        let fact = classifier
            .facts
            .iter()
            .find(|f| f.id == fact_id)
            .with_context(|| format!("no fact {fact_id:?} in the classifier (see `pos classifier`)"))?;
        let subcategory = classifier
            .subcategories
            .iter()
            .find(|s| s.id == fact.subcategory_id)
            .with_context(|| format!("fact {fact_id:?} has no subcategory"))?;
        Ok((subcategory.category_id.clone(), subcategory.id.clone()))
    }
}

/// Whether a fact is fast-track in `region_code`, as the classifier says: the region's
/// exception, else the fact's default.
fn classifier_fast_track(fact: &pb::Fact, region_code: &str) -> bool {
    if fact.fast_track_regions.iter().any(|r| r == region_code) {
        true
    } else if fact.not_fast_track_regions.iter().any(|r| r == region_code) {
        false
    } else {
        fact.fast_track_default
    }
}

/// A fact's period as a deadline will use it in one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectivePeriod {
    pub fact_id: String,
    pub days: u32,
    pub working_days: bool,
    pub fast_track: bool,
    /// Why, as the SLA policy says.
    pub reason: String,
}

impl EffectivePeriod {
    /// "2 calendar days", "10 calendar days ⚡".
    pub fn label(&self) -> String {
        let unit = if self.working_days { "working" } else { "calendar" };
        format!("{} {unit} days{}", self.days, if self.fast_track { " ⚡" } else { "" })
    }
}

/// The classifier and the periods its facts get in `region_code` (`*`: the default policy),
/// from the SLA service's policy: the one source of periods, the one a deadline uses.
pub async fn effective_periods(
    channel: Channel,
    token: &str,
    region_code: &str,
) -> anyhow::Result<(pb::Classifier, String, Vec<EffectivePeriod>)> {
    let tree = RoutingServiceClient::new(channel.clone())
        .list_classifier(pos_platform::grpc::outgoing(pb::ListClassifierRequest {}, token))
        .await
        .map_err(describe)?
        .into_inner();
    let facts = tree
        .facts
        .iter()
        .map(|f| pb::PeriodQuery {
            fact_id: f.id.clone(),
            classifier_fast_track: classifier_fast_track(f, region_code),
        })
        .collect();
    let request = pb::ResolvePeriodsRequest { region_code: region_code.to_owned(), facts };
    let answer = SlaServiceClient::new(channel)
        .resolve_periods(pos_platform::grpc::outgoing(request, token))
        .await
        .map_err(describe)?
        .into_inner();
    let periods = answer
        .periods
        .into_iter()
        .map(|p| {
            let period = p.period.unwrap_or_default();
            EffectivePeriod {
                fact_id: p.fact_id,
                days: period.days,
                working_days: period.working_days,
                fast_track: p.fast_track,
                reason: p.reason,
            }
        })
        .collect();
    Ok((tree, answer.policy_region, periods))
}

/// The classifier as a tree: category → subcategory → fact, with each fact's period as the
/// deadlines of `region` (the default policy when none) will use it.
pub async fn classifier(client: &Client, region: Option<&str>) -> anyhow::Result<()> {
    let region = region.unwrap_or("*");
    let token = client.token(Role::Operator, "")?;
    let (tree, policy_region, periods) = effective_periods(client.channel.clone(), &token, region).await?;
    let period_of = |fact_id: &str| periods.iter().find(|p| p.fact_id == fact_id);
    if client.target.json {
        let facts: Vec<_> = tree
            .facts
            .iter()
            .map(|f| {
                let period = period_of(&f.id);
                json!({
                    "id": f.id, "subcategory_id": f.subcategory_id, "name": f.name,
                    "period_days": period.map(|p| p.days), "working_days": period.map(|p| p.working_days),
                    "fast_track": period.map(|p| p.fast_track), "period_reason": period.map(|p| p.reason.clone()),
                    "fast_track_default": f.fast_track_default,
                })
            })
            .collect();
        let document =
            json!({"version": tree.version, "region": region, "policy_region": policy_region, "facts": facts});
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(());
    }
    let policy = if policy_region == "*" {
        "the default SLA policy".to_owned()
    } else {
        format!("the SLA policy of region {policy_region}")
    };
    println!("periods in region {region}, as deadlines use them ({policy})");
    for category in &tree.categories {
        println!("{}  {}", category.id, category.name);
        for subcategory in tree.subcategories.iter().filter(|s| s.category_id == category.id) {
            println!("  {}  {}", subcategory.id, subcategory.name);
            for fact in tree.facts.iter().filter(|f| f.subcategory_id == subcategory.id) {
                let period = period_of(&fact.id).map(EffectivePeriod::label).unwrap_or_else(|| "—".to_owned());
                println!("    {:<52} {:<20} {}", fact.id, period, fact.name);
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct SubmitArgs {
    /// The fact (leaf of the classifier), e.g. education.e-diary.access.
    #[arg(long)]
    pub fact: String,
    /// The applicant's region code, e.g. 41.
    #[arg(long)]
    pub region: String,
    #[arg(long)]
    pub text: String,
    /// The organization the applicant picked (schools, colleges).
    #[arg(long, default_value = "")]
    pub organization: String,
    #[arg(long, default_value = "Иванова Мария Петровна")]
    pub name: String,
    #[arg(long, default_value = "applicant@example.org")]
    pub email: String,
    #[arg(long, default_value = "")]
    pub address: String,
    /// Idempotency key; a new one by default.
    #[arg(long)]
    pub request_id: Option<String>,
}

pub async fn submit(client: &Client, args: SubmitArgs) -> anyhow::Result<()> {
    let (category_id, subcategory_id) = client.fact_path(&args.fact).await?;
    let request = pb::SubmitAppealRequest {
        request_id: args.request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        source: pb::Source::Phone as i32,
        applicant: Some(pb::Applicant {
            full_name: args.name,
            email: args.email,
            phone: String::new(),
            account_id: String::new(),
        }),
        region_code: args.region,
        category_id,
        subcategory_id,
        fact_id: args.fact,
        picked_organization_id: args.organization,
        text: args.text,
        problem_address: args.address,
        ..Default::default()
    };
    let response = IntakeServiceClient::new(client.channel.clone())
        .submit_appeal(client.request(request, Role::Operator, "")?)
        .await
        .map_err(describe)?
        .into_inner();
    let registered = response.registered_at.as_ref().and_then(pos_proto::time::from_proto);
    if client.target.json {
        println!(
            "{}",
            json!({"appeal_id": response.appeal_id, "number": response.number, "registered_at": registered})
        );
    } else {
        println!("appeal {} registered as № {}", response.appeal_id, response.number);
        if let Some(at) = registered {
            println!("registered at {}", at.to_rfc3339());
        }
    }
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct TicketsArgs {
    /// The organization whose cabinet to list, e.g. 41-kcioko.
    #[arg(long)]
    pub org: String,
    /// new, in-work, returned, processed, sent-for-approval, returned-to-coordination; all if omitted.
    #[arg(long, value_parser = parse_folder)]
    pub folder: Option<pb::Folder>,
    #[arg(long, default_value_t = 50)]
    pub limit: i32,
}

fn parse_folder(value: &str) -> Result<pb::Folder, String> {
    let name = format!("FOLDER_{}", value.replace('-', "_").to_uppercase());
    pb::Folder::from_str_name(&name).ok_or_else(|| format!("unknown folder {value:?}"))
}

fn folder_name(folder: i32) -> String {
    pb::Folder::try_from(folder)
        .map(|f| f.as_str_name().trim_start_matches("FOLDER_").to_lowercase().replace('_', "-"))
        .unwrap_or_else(|_| folder.to_string())
}

pub async fn tickets(client: &Client, args: TicketsArgs) -> anyhow::Result<()> {
    let request = pb::ListTicketsRequest {
        organization_id: args.org.clone(),
        folder: args.folder.map(|f| f as i32).unwrap_or_default(),
        page_size: args.limit,
        ..Default::default()
    };
    let list = TicketingServiceClient::new(client.channel.clone())
        .list_tickets(client.request(request, Role::Coordinator, &args.org)?)
        .await
        .map_err(describe)?
        .into_inner();
    if client.target.json {
        let tickets: Vec<_> = list.tickets.iter().map(ticket_json).collect();
        let counts: serde_json::Map<_, _> =
            list.folder_counts.iter().map(|c| (folder_name(c.folder), json!(c.count))).collect();
        println!("{}", serde_json::to_string_pretty(&json!({"folders": counts, "tickets": tickets}))?);
        return Ok(());
    }
    let counts: Vec<String> =
        list.folder_counts.iter().map(|c| format!("{} {}", folder_name(c.folder), c.count)).collect();
    println!("{}: {}", args.org, counts.join(" · "));
    println!(
        "{:<11} {:<36} {:<2} {:<26} {:<17} {:<28} TEXT",
        "NUMBER", "TICKET", "", "FOLDER / STATUS", "RECEIVED (UTC)", "FACT"
    );
    for t in &list.tickets {
        let received = t
            .received_at
            .as_ref()
            .and_then(pos_proto::time::from_proto)
            .map(|at| at.format("%d.%m.%Y %H:%M").to_string())
            .unwrap_or_default();
        println!(
            "{:<11} {:<36} {:<2} {:<26} {:<17} {:<28} {}",
            t.number,
            t.id,
            if t.fast_track { "⚡" } else { "" },
            format!("{} / {}", folder_name(t.folder), t.status),
            received,
            truncate(&t.fact_id, 28),
            truncate(&t.public_text, 48)
        );
    }
    Ok(())
}

fn ticket_json(t: &pb::Ticket) -> serde_json::Value {
    json!({
        "id": t.id, "appeal_id": t.appeal_id, "number": t.number,
        "organization_id": t.organization.as_ref().map(|o| o.id.clone()),
        "folder": folder_name(t.folder), "status": t.status, "fast_track": t.fast_track,
        "delegated_by_auto_rule": t.delegated_by_auto_rule, "region_code": t.region_code,
        "fact_id": t.fact_id, "text": t.public_text,
        "received_at": t.received_at.as_ref().and_then(pos_proto::time::from_proto),
        "version": t.version,
    })
}

pub async fn show(client: &Client, appeal_id: &str) -> anyhow::Result<()> {
    let appeal = IntakeServiceClient::new(client.channel.clone())
        .get_appeal(client.request(pb::GetAppealRequest { appeal_id: appeal_id.to_owned() }, Role::System, "")?)
        .await
        .map_err(describe)?
        .into_inner();
    let routing = appeal.routing.clone().unwrap_or_default();
    let organization = routing.organization.clone().unwrap_or_default();
    if client.target.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "appeal_id": appeal.id, "number": appeal.number, "status": appeal.status,
                "region_code": appeal.region_code, "fact_id": appeal.fact_id, "text": appeal.public_text,
                "registered_at": appeal.registered_at.as_ref().and_then(pos_proto::time::from_proto),
                "routing": {
                    "organization_id": organization.id, "organization": organization.short_name,
                    "period_days": routing.period_days, "working_days": routing.working_days,
                    "fast_track": routing.fast_track, "delegated_by_auto_rule": routing.delegated_by_auto_rule,
                    "explanation": routing.explanation,
                },
            }))?
        );
        return Ok(());
    }
    println!("№ {}  ({})", appeal.number, appeal.id);
    println!("status        {}", appeal.status);
    if let Some(at) = appeal.registered_at.as_ref().and_then(pos_proto::time::from_proto) {
        println!("registered    {}", at.to_rfc3339());
    }
    println!("region        {}", appeal.region_code);
    println!("fact          {}", appeal.fact_id);
    println!("text          {}", appeal.public_text);
    if appeal.routing.is_some() {
        println!("addressee     {} ({})", organization.short_name, organization.id);
        let days = if routing.working_days { "working" } else { "calendar" };
        println!(
            "period        {} {days} days{}",
            routing.period_days,
            if routing.fast_track { ", fast-track ⚡" } else { "" }
        );
        println!("why           {}", routing.explanation);
    } else {
        println!("addressee     (not routed yet)");
    }
    Ok(())
}

pub async fn deadlines(client: &Client, appeal_id: &str) -> anyhow::Result<()> {
    let deadlines = SlaServiceClient::new(client.channel.clone())
        .get_deadlines(client.request(pb::GetDeadlinesRequest { appeal_id: appeal_id.to_owned() }, Role::System, "")?)
        .await
        .map_err(describe)?
        .into_inner();
    let line = |name: &str, deadline: &Option<pb::Deadline>| match deadline {
        Some(d) => {
            let due = d.due.clone().unwrap_or_default();
            let mut flags = Vec::new();
            for (on, flag) in [
                (d.paused, "paused"),
                (d.at_risk, "at risk"),
                (d.overdue, "overdue"),
                (d.met, "met"),
                (d.stopped, "stopped"),
            ] {
                if on {
                    flags.push(flag);
                }
            }
            let round = if d.round > 1 { format!(", review round {}", d.round) } else { String::new() };
            format!(
                "{name:<10} {}  [{} {}] ({}{round}) {}",
                d.remaining,
                due.time_zone,
                due.local,
                d.period,
                flags.join(", ")
            )
        }
        None => format!("{name:<10} —"),
    };
    if client.target.json {
        let as_json = |d: &Option<pb::Deadline>| {
            d.as_ref().map(|d| {
                let due = d.due.clone().unwrap_or_default();
                json!({
                    "remaining": d.remaining, "time_zone": due.time_zone, "local": due.local,
                    "utc": due.utc.as_ref().and_then(pos_proto::time::from_proto),
                    "paused": d.paused, "at_risk": d.at_risk, "overdue": d.overdue,
                    "met": d.met, "stopped": d.stopped, "round": d.round, "period": d.period,
                })
            })
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "appeal_id": deadlines.appeal_id, "fast_track": deadlines.fast_track,
                "answer": as_json(&deadlines.answer), "execution": as_json(&deadlines.execution),
            }))?
        );
        return Ok(());
    }
    println!("{}{}", deadlines.appeal_id, if deadlines.fast_track { "  ⚡ fast-track" } else { "" });
    println!("{}", line("answer", &deadlines.answer));
    println!("{}", line("execution", &deadlines.execution));
    Ok(())
}

/// One line for a ticket after a command (or its JSON).
pub fn print_ticket_line(client: &Client, ticket: &pb::Ticket) -> anyhow::Result<()> {
    if client.target.json {
        println!("{}", serde_json::to_string_pretty(&ticket_json(ticket))?);
    } else {
        let assignee =
            if ticket.assignee_id.is_empty() { String::new() } else { format!(", executor {}", ticket.assignee_id) };
        println!(
            "ticket {} (№ {}): {} / {}{assignee}, version {}",
            ticket.id,
            ticket.number,
            folder_name(ticket.folder),
            ticket.status,
            ticket.version
        );
    }
    Ok(())
}

/// A gRPC error as an operator should read it: the code, the message, the offending fields.
pub fn describe(status: tonic::Status) -> anyhow::Error {
    let fields = pos_platform::error::violated_fields(&status);
    if fields.is_empty() {
        anyhow::anyhow!("{:?}: {}", status.code(), status.message())
    } else {
        anyhow::anyhow!("{:?}: {} (fields: {})", status.code(), status.message(), fields.join(", "))
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_parse_from_their_cli_names() {
        assert_eq!(parse_folder("new"), Ok(pb::Folder::New));
        assert_eq!(parse_folder("returned-to-coordination"), Ok(pb::Folder::ReturnedToCoordination));
        assert!(parse_folder("archive").is_err());
        assert_eq!(folder_name(pb::Folder::SentForApproval as i32), "sent-for-approval");
    }

    #[test]
    fn long_text_is_cut_on_characters() {
        assert_eq!(truncate("Здравствуйте", 6), "Здрав…");
        assert_eq!(truncate("кратко", 10), "кратко");
    }
}
