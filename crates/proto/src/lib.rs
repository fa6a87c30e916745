//! The `pos.v1` contracts: generated code and a few tiny conversions.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("pos.v1");

    pub mod events {
        tonic::include_proto!("pos.v1.events");
    }
}

/// The encoded file descriptor set of every `pos.v1` file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("pos_descriptor");

/// Conversions between protobuf timestamps and chrono.
pub mod time {
    use chrono::{DateTime, TimeZone, Utc};

    pub fn to_proto(at: DateTime<Utc>) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 }
    }

    pub fn from_proto(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
        Utc.timestamp_opt(ts.seconds, ts.nanos.max(0) as u32).single()
    }
}

/// A bus payload: its event name (the routing key's first part) and its protobuf full name
/// (the AMQP `type` property).
pub trait BusEvent: prost::Message + Default {
    const EVENT: &'static str;
    const TYPE: &'static str;
}

macro_rules! bus_event {
    ($ty:ty, $event:literal, $name:literal) => {
        impl BusEvent for $ty {
            const EVENT: &'static str = $event;
            const TYPE: &'static str = $name;
        }
    };
}

bus_event!(v1::events::AppealReceived, "appeal.received", "pos.v1.events.AppealReceived");
bus_event!(v1::events::AppealRouted, "appeal.routed", "pos.v1.events.AppealRouted");
bus_event!(v1::events::TicketStatusChanged, "ticket.status_changed", "pos.v1.events.TicketStatusChanged");
bus_event!(v1::events::TicketAnswerApproved, "ticket.answer_approved", "pos.v1.events.TicketAnswerApproved");
bus_event!(v1::events::TicketReopened, "ticket.reopened", "pos.v1.events.TicketReopened");
bus_event!(v1::events::TicketRerouteRequested, "ticket.reroute_requested", "pos.v1.events.TicketRerouteRequested");
bus_event!(v1::events::SlaArmed, "sla.armed", "pos.v1.events.SlaArmed");
bus_event!(v1::events::SlaFastTrack, "sla.fast_track", "pos.v1.events.SlaFastTrack");
bus_event!(v1::events::SlaWarning, "sla.warning", "pos.v1.events.SlaWarning");
bus_event!(v1::events::SlaOverdue, "sla.overdue", "pos.v1.events.SlaOverdue");
bus_event!(v1::events::SlaMet, "sla.met", "pos.v1.events.SlaMet");
