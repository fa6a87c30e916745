//! `pos dlq` against the embedded platform: an event routing cannot read is dead-lettered; the
//! operator lists it with its reason, reads it, replays it (it dies again: the cause is in the
//! payload, and it comes back as a first delivery) and drops it.

use std::process::Command;
use std::time::Duration;

use pos_e2e::{Mode, Platform};
use pos_platform::Envelope;
use pos_platform::auth::Role;
use pos_platform::testing::{self, eventually};
use serde_json::Value;

const POS: &str = env!("CARGO_BIN_EXE_pos-under-test");
const QUEUE: &str = "routing.appeal-received";

/// Runs `pos <args>` against `platform` as an operator; its standard output.
fn pos(platform: &Platform, args: &[&str]) -> String {
    let token = testing::token("duty-operator", "", "", &[Role::Operator]);
    let out = Command::new(POS)
        .args(["--endpoint", &platform.endpoint, "--token", &token])
        .args(args)
        .env("POS_AUTH__HS256_SECRET", testing::TEST_SECRET)
        .output()
        .expect("pos runs");
    assert!(out.status.success(), "pos {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn json(platform: &Platform, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = pos(platform, &args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn depth(platform: &Platform, queue: &str) -> u64 {
    let listed = json(platform, &["dlq", "list"]);
    listed["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["queue"] == queue)
        .and_then(|q| q["depth"].as_u64())
        .unwrap_or_else(|| panic!("{queue} is listed: {listed}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_show_replay_drop_embedded() {
    let platform = Platform::start(Mode::Embedded).await.expect("platform starts");
    let queue = platform.infra.config.queue_name(QUEUE);
    let mut poison = Envelope::new(&pos_proto::v1::events::AppealReceived::default(), "41");
    poison.payload = pos_platform::bus::Bytes::from_static(b"\xff\xff\xff not protobuf");
    platform.infra.bus.publish(&poison).await.expect("published");
    let id = poison.message_id.to_string();

    let p = &platform;
    eventually(Duration::from_secs(30), "the poison event is dead-lettered", || async {
        tokio::task::block_in_place(|| depth(p, &queue)) == 1
    })
    .await;
    let listed = tokio::task::block_in_place(|| json(p, &["dlq", "list", "--queue", QUEUE]));
    let message = &listed["messages"][0];
    assert_eq!(message["message_id"], id.as_str(), "{listed}");
    assert!(message["reason"].as_str().unwrap().contains("AppealReceived"), "{listed}");
    let text = tokio::task::block_in_place(|| pos(p, &["dlq", "list", "--queue", QUEUE]));
    assert!(text.contains(&id) && text.contains("reason"), "{text}");

    let shown = tokio::task::block_in_place(|| json(p, &["dlq", "show", QUEUE, &id]));
    assert_eq!(shown["queue"], queue.as_str(), "{shown}");
    assert!(shown["payload"]["undecodable"].is_string(), "the payload says why it does not read: {shown}");

    // Replayed: back to routing as a first delivery, which refuses it again.
    let replayed = tokio::task::block_in_place(|| json(p, &["dlq", "replay", QUEUE, &id]));
    assert_eq!(replayed["replayed"], serde_json::json!([id]), "{replayed}");
    eventually(Duration::from_secs(30), "the replayed poison is dead again", || async {
        let listed = tokio::task::block_in_place(|| json(p, &["dlq", "list", "--queue", QUEUE]));
        listed["messages"].as_array().is_some_and(|m| m.len() == 1 && m[0]["delivery_count"] == 1)
    })
    .await;

    let dropped = tokio::task::block_in_place(|| pos(p, &["dlq", "drop", QUEUE, &id]));
    assert!(dropped.contains("dropped"), "{dropped}");
    assert_eq!(tokio::task::block_in_place(|| depth(p, &queue)), 0);

    platform.stop().await.expect("stops");
}
