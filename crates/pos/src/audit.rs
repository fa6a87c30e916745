//! `pos audit`: the audit trail of security events (denials, sign-ins, changes of staff,
//! policies, calendars, the classifier, the directory), newest first. Calls
//! `pos.v1.operations.AuditService` as an operator (or as the `--token`'s caller: an
//! organization admin sees the own organization's events); any process answers for the whole
//! deployment.

use chrono::{DateTime, Duration, Utc};
use pos_platform::auth::Role;
use pos_proto::v1::operations as pb;
use pos_proto::v1::operations::audit_service_client::AuditServiceClient;
use serde_json::json;

use crate::ops::{Client, describe};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only these kinds (repeat or separate with commas), e.g. denied_permission,staff_changed.
    #[arg(long = "kind", value_delimiter = ',')]
    kinds: Vec<String>,
    /// Only events about this organization.
    #[arg(long)]
    org: Option<String>,
    /// Only this actor's events (a token's subject).
    #[arg(long)]
    actor: Option<String>,
    /// Only this method, e.g. pos.v1.TicketingService/UpsertStaff.
    #[arg(long)]
    method: Option<String>,
    /// Only events since then: an RFC 3339 time, or an age such as 30m, 24h, 7d.
    #[arg(long, value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
    /// Most events shown (at most 1000).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// The next page: the token the previous page printed.
    #[arg(long)]
    page: Option<String>,
}

/// An RFC 3339 time, or an age (`90s`, `30m`, `24h`, `7d`) before now.
fn parse_since(value: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: i64 = number.parse().map_err(|_| format!("{value:?}: an RFC 3339 time or an age such as 24h"))?;
    let age = match unit {
        "s" => Duration::seconds(number),
        "m" => Duration::minutes(number),
        "h" | "" => Duration::hours(number),
        "d" => Duration::days(number),
        _ => return Err(format!("{value:?}: the age's unit is s, m, h or d")),
    };
    Ok(Utc::now() - age)
}

fn time(event: &pb::AuditEvent) -> Option<DateTime<Utc>> {
    event.at.as_ref().and_then(pos_proto::time::from_proto)
}

/// Runs `pos audit`; `json` prints JSON instead of a table.
pub async fn run(client: &Client, args: AuditArgs, json: bool) -> anyhow::Result<()> {
    let body = pb::ListAuditEventsRequest {
        kinds: args.kinds.iter().map(|kind| kind.trim().to_owned()).filter(|kind| !kind.is_empty()).collect(),
        actor_subject: args.actor.unwrap_or_default(),
        organization_id: args.org.unwrap_or_default(),
        method: args.method.unwrap_or_default(),
        from: args.since.map(pos_proto::time::to_proto),
        to: None,
        page_token: args.page.unwrap_or_default(),
        limit: args.limit,
        local_only: false,
    };
    let answer = AuditServiceClient::new(client.channel())
        .list_audit_events(client.request_as(body, Role::Operator, "", None)?)
        .await
        .map_err(describe)?
        .into_inner();
    if json {
        let events: Vec<_> = answer
            .events
            .iter()
            .map(|event| {
                let details: serde_json::Value =
                    serde_json::from_str(&event.details_json).unwrap_or_else(|_| json!(event.details_json));
                json!({
                    "id": event.id, "at": time(event), "kind": event.kind, "actor_subject": event.actor_subject,
                    "actor_organization_id": event.actor_organization_id, "actor_roles": event.actor_roles,
                    "method": event.method, "organization_id": event.organization_id, "object_id": event.object_id,
                    "outcome": event.outcome, "details": details, "service": event.service,
                })
            })
            .collect();
        let document =
            json!({"events": events, "next_page_token": answer.next_page_token, "unreachable": answer.unreachable});
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<22} {:<24} {:<16} {:<44} {:<16} {:<22} object",
        "time (UTC)", "kind", "actor", "organization", "method", "roles", "outcome"
    );
    for event in &answer.events {
        let at = time(event).map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default();
        let actor = if event.actor_subject.is_empty() { "—" } else { &event.actor_subject };
        let organization = if event.organization_id.is_empty() { "—" } else { &event.organization_id };
        println!(
            "{at:<20} {:<22} {actor:<24} {organization:<16} {:<44} {:<16} {:<22} {}",
            event.kind,
            event.method,
            event.actor_roles.join(","),
            event.outcome,
            event.object_id
        );
    }
    if answer.events.is_empty() {
        println!("no events");
    }
    for service in &answer.unreachable {
        println!("{service}: no peer answered, its events are missing");
    }
    if !answer.next_page_token.is_empty() {
        println!("more: --page {}", answer.next_page_token);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_ages() {
        assert_eq!(parse_since("2026-01-02T03:04:05Z").unwrap().to_rfc3339(), "2026-01-02T03:04:05+00:00");
        let day = Utc::now() - parse_since("1d").unwrap();
        assert!((day - Duration::days(1)).num_seconds().abs() < 5);
        assert!(parse_since("5w").is_err() && parse_since("soon").is_err());
    }
}
