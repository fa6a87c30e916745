//! `pos dlq`: the dead letters of every consumer (events a consumer gave up on) — list them with
//! their reasons, read one with its payload, replay them after a fix, or drop one for good.
//! Calls `pos.v1.operations.DeadLetterService` as an operator; any process answers for the
//! whole deployment.

use chrono::{DateTime, Utc};
use pos_platform::auth::Role;
use pos_proto::v1::operations as pb;
use pos_proto::v1::operations::dead_letter_service_client::DeadLetterServiceClient;
use serde_json::json;

use crate::ops::{Client, describe};

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Every consumer's dead-letter queue with its depth and its oldest message; with
    /// `--queue`, that queue's messages with their reasons, oldest first.
    List {
        /// A consumer's queue, as listed or by its short name (e.g. routing.appeal-received).
        #[arg(long)]
        queue: Option<String>,
        /// Most messages listed (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One dead letter: its reason, headers and payload decoded as JSON.
    Show {
        /// The consumer's queue, as `pos dlq list` shows it or by its short name.
        queue: String,
        message_id: String,
    },
    /// Put a dead letter (or, with --all, every one of the queue) back on its consumer's queue
    /// as a new first delivery, after the cause is fixed. The consumer's inbox keeps an event
    /// from being applied twice, however often it is replayed.
    Replay {
        /// The consumer's queue, as `pos dlq list` shows it or by its short name.
        queue: String,
        /// The message to replay.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        message_id: Option<String>,
        /// Every dead letter of the queue.
        #[arg(long)]
        all: bool,
    },
    /// Remove a dead letter for good (logged with its reason and who removed it).
    Drop {
        /// The consumer's queue, as `pos dlq list` shows it or by its short name.
        queue: String,
        message_id: String,
    },
}

/// A protobuf timestamp field as a time (a macro: this crate does not name protobuf's types).
macro_rules! time {
    ($field:expr) => {
        $field.as_ref().and_then(pos_proto::time::from_proto)
    };
}

fn text_time(at: Option<DateTime<Utc>>) -> String {
    at.map(|at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| "—".to_owned())
}

fn summary_json(m: &pb::DeadLetterSummary) -> serde_json::Value {
    json!({
        "message_id": m.message_id, "type_name": m.type_name, "routing_key": m.routing_key,
        "reason": m.reason, "dead_lettered_at": time!(m.dead_lettered_at), "delivery_count": m.delivery_count,
        "size": m.size, "appeal_id": m.appeal_id, "published_at": time!(m.published_at),
    })
}

/// Runs one `pos dlq` command; `json` prints JSON instead of text.
pub async fn run(client: &Client, command: DlqCommand, json: bool) -> anyhow::Result<()> {
    let mut api = DeadLetterServiceClient::new(client.channel());
    match command {
        DlqCommand::List { queue, limit } => {
            let body =
                pb::ListDeadLettersRequest { queue: queue.clone().unwrap_or_default(), local_only: false, limit };
            let answer = api
                .list_dead_letters(client.request_as(body, Role::Operator, "", None)?)
                .await
                .map_err(describe)?
                .into_inner();
            print_list(&answer, queue.is_some(), json)
        }
        DlqCommand::Show { queue, message_id } => {
            let body = pb::GetDeadLetterRequest { queue, message_id };
            let letter = api
                .get_dead_letter(client.request_as(body, Role::Operator, "", None)?)
                .await
                .map_err(describe)?
                .into_inner();
            print_letter(&letter, json)
        }
        DlqCommand::Replay { queue, message_id, all } => {
            let body =
                pb::ReplayDeadLetterRequest { queue: queue.clone(), message_id: message_id.unwrap_or_default(), all };
            let answer = api
                .replay_dead_letter(client.request_as(body, Role::Operator, "", None)?)
                .await
                .map_err(describe)?
                .into_inner();
            if json {
                println!("{}", serde_json::to_string_pretty(&json!({"queue": queue, "replayed": answer.message_ids}))?);
            } else if answer.message_ids.is_empty() {
                println!("{queue}: no dead letters to replay");
            } else {
                println!("{queue}: {} replayed", answer.message_ids.len());
                for id in &answer.message_ids {
                    println!("  {id}");
                }
            }
            Ok(())
        }
        DlqCommand::Drop { queue, message_id } => {
            let body = pb::DropDeadLetterRequest { queue: queue.clone(), message_id };
            let answer = api
                .drop_dead_letter(client.request_as(body, Role::Operator, "", None)?)
                .await
                .map_err(describe)?
                .into_inner();
            if json {
                println!("{}", serde_json::to_string_pretty(&json!({"queue": queue, "dropped": answer.message_ids}))?);
            } else {
                for id in &answer.message_ids {
                    println!("{queue}: {id} dropped");
                }
            }
            Ok(())
        }
    }
}

fn print_list(answer: &pb::ListDeadLettersResponse, one_queue: bool, json: bool) -> anyhow::Result<()> {
    if json {
        let queues: Vec<_> = answer
            .queues
            .iter()
            .map(|q| {
                json!({
                    "queue": q.queue, "dead_letter_queue": q.dead_letter_queue, "service": q.service,
                    "depth": q.depth, "oldest": time!(q.oldest),
                })
            })
            .collect();
        let mut document = json!({"queues": queues, "unreachable": answer.unreachable});
        if one_queue {
            document["messages"] = answer.messages.iter().map(summary_json).collect();
        }
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(());
    }
    println!("{:<64} {:>6}  oldest", "queue", "dead");
    for queue in &answer.queues {
        println!("{:<64} {:>6}  {}", queue.queue, queue.depth, text_time(time!(queue.oldest)));
    }
    for service in &answer.unreachable {
        println!("{service}: no peer answered, its queues are missing");
    }
    if one_queue {
        if answer.messages.is_empty() {
            println!("no dead letters");
        }
        for m in &answer.messages {
            println!();
            println!("{}  {}  {}", m.message_id, m.routing_key, text_time(time!(m.dead_lettered_at)));
            if !m.appeal_id.is_empty() {
                println!("  appeal      {}", m.appeal_id);
            }
            println!("  deliveries  {}", m.delivery_count);
            println!("  reason      {}", m.reason);
        }
    }
    Ok(())
}

fn print_letter(letter: &pb::DeadLetter, json: bool) -> anyhow::Result<()> {
    let summary = letter.summary.clone().unwrap_or_default();
    if json {
        let payload: serde_json::Value =
            serde_json::from_str(&letter.payload_json).unwrap_or_else(|_| json!(letter.payload_json));
        let document = json!({
            "queue": letter.queue, "summary": summary_json(&summary), "headers": letter.headers, "payload": payload,
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(());
    }
    println!("message     {}", summary.message_id);
    println!("queue       {}", letter.queue);
    println!("event       {} ({})", summary.routing_key, summary.type_name);
    if !summary.appeal_id.is_empty() {
        println!("appeal      {}", summary.appeal_id);
    }
    println!("published   {}", text_time(time!(summary.published_at)));
    println!("died        {} after {} deliveries", text_time(time!(summary.dead_lettered_at)), summary.delivery_count);
    println!("reason      {}", summary.reason);
    let mut headers: Vec<_> = letter.headers.iter().collect();
    headers.sort();
    println!("headers");
    for (key, value) in headers {
        println!("  {key}: {value}");
    }
    println!("payload");
    for line in letter.payload_json.lines() {
        println!("  {line}");
    }
    Ok(())
}
