//! The `pos.v1` contracts: generated code and a few tiny conversions.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("pos.v1");

    pub mod events {
        tonic::include_proto!("pos.v1.events");
    }

    pub mod operations {
        tonic::include_proto!("pos.v1.operations");
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

/// A bus payload: its event name (the routing key's first part; the wire contract of bindings)
/// and, from the contract itself, its protobuf full name (the AMQP `type` property).
pub trait BusEvent: prost::Message + prost::Name + Default {
    const EVENT: &'static str;

    /// Whether an AMQP `type` names this payload (without building the full name).
    fn is_type(type_name: &str) -> bool {
        type_name.strip_prefix(Self::PACKAGE).and_then(|rest| rest.strip_prefix('.')) == Some(Self::NAME)
    }
}

macro_rules! bus_event {
    ($($ty:ident => $event:literal),* $(,)?) => {
        $(impl BusEvent for v1::events::$ty {
            const EVENT: &'static str = $event;
        })*
    };
}

bus_event! {
    AppealReceived => "appeal.received",
    AppealRouted => "appeal.routed",
    TicketStatusChanged => "ticket.status_changed",
    TicketAnswerApproved => "ticket.answer_approved",
    TicketReopened => "ticket.reopened",
    TicketRerouteRequested => "ticket.reroute_requested",
    TicketIncidentChanged => "ticket.incident_changed",
    SlaArmed => "sla.armed",
    SlaFastTrack => "sla.fast_track",
    SlaWarning => "sla.warning",
    SlaOverdue => "sla.overdue",
    SlaMet => "sla.met",
}

#[cfg(test)]
mod tests {
    use super::BusEvent;
    use super::v1::events::{AppealRouted, TicketStatusChanged};
    use prost::Name;

    #[test]
    fn type_names_come_from_the_contract() {
        assert_eq!(AppealRouted::full_name(), "pos.v1.events.AppealRouted");
        assert!(AppealRouted::is_type("pos.v1.events.AppealRouted"));
        assert!(!AppealRouted::is_type("pos.v1.events.AppealRoutedX"));
        assert!(!AppealRouted::is_type(&TicketStatusChanged::full_name()));
    }
}
