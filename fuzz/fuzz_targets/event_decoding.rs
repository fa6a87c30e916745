//! Events as they come off the broker, whatever a peer (or a replayed dead letter) put in them:
//! each consumer's decoding picks a variant by the AMQP type or refuses, never panics; and the
//! dead-letter tool's own protobuf reader (`pos dlq show`) renders any payload as JSON, reading
//! every payload the contract's own encoder writes without calling it undecodable.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use pos_platform::bus::{Bytes, Envelope, EventSet};
use pos_platform::dead_letters::payload;
use pos_proto::v1::events as ev;
use prost::{Message, Name};

fn type_names() -> [String; 13] {
    [
        ev::AppealReceived::full_name(),
        ev::AppealRouted::full_name(),
        ev::TicketStatusChanged::full_name(),
        ev::TicketAnswerApproved::full_name(),
        ev::TicketReopened::full_name(),
        ev::TicketRerouteRequested::full_name(),
        ev::TicketIncidentChanged::full_name(),
        ev::SlaArmed::full_name(),
        ev::SlaFastTrack::full_name(),
        ev::SlaWarning::full_name(),
        ev::SlaOverdue::full_name(),
        ev::SlaMet::full_name(),
        "pos.v1.events.Unknown".to_owned(),
    ]
}

/// The payload re-encoded by the contract's own encoder, when it decodes as `type_name`.
fn reencoded(type_name: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    fn again<M: Message + Default>(bytes: &[u8]) -> Option<Vec<u8>> {
        M::decode(bytes).ok().map(|message| message.encode_to_vec())
    }
    match type_name.rsplit('.').next()? {
        "AppealReceived" => again::<ev::AppealReceived>(bytes),
        "AppealRouted" => again::<ev::AppealRouted>(bytes),
        "TicketStatusChanged" => again::<ev::TicketStatusChanged>(bytes),
        "TicketAnswerApproved" => again::<ev::TicketAnswerApproved>(bytes),
        "TicketReopened" => again::<ev::TicketReopened>(bytes),
        "TicketRerouteRequested" => again::<ev::TicketRerouteRequested>(bytes),
        "TicketIncidentChanged" => again::<ev::TicketIncidentChanged>(bytes),
        "SlaArmed" => again::<ev::SlaArmed>(bytes),
        "SlaFastTrack" => again::<ev::SlaFastTrack>(bytes),
        "SlaWarning" => again::<ev::SlaWarning>(bytes),
        "SlaOverdue" => again::<ev::SlaOverdue>(bytes),
        "SlaMet" => again::<ev::SlaMet>(bytes),
        _ => None,
    }
}

fuzz_target!(|input: (u8, Vec<u8>)| {
    let (pick, bytes) = input;
    let names = type_names();
    let type_name = names[pick as usize % names.len()].clone();
    let envelope = Envelope {
        message_id: uuid::Uuid::nil(),
        routing_key: "fuzz.41".to_owned(),
        type_name: type_name.clone(),
        timestamp: chrono::DateTime::UNIX_EPOCH,
        headers: BTreeMap::new(),
        payload: Bytes::from(bytes.clone()),
    };
    let _ = pos_notify::events::NotifyEvent::decode(&envelope);
    let _ = pos_ticketing::consumer::SlaEvent::decode(&envelope);
    let _ = pos_sla::consumer::TicketEvent::decode(&envelope);

    let shown = payload::to_json(&type_name, &bytes);
    serde_json::from_str::<serde_json::Value>(&shown).expect("the dead-letter view is JSON");
    if let Some(clean) = reencoded(&type_name, &bytes) {
        let shown = payload::to_json(&type_name, &clean);
        let value: serde_json::Value = serde_json::from_str(&shown).expect("JSON");
        assert!(value.get("undecodable").is_none(), "a well-formed {type_name} read as undecodable: {shown}");
    }
});
