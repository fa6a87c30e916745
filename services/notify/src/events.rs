//! The events notify consumes. Its queue binds exactly these (see [`crate::component`]), it
//! journals every one of them for the `Subscribe` stream, and the planner matches them all by
//! name: a variant added here and not handled there does not compile.

use pos_proto::v1::events as ev;

pos_platform::event_set! {
    /// One event on the `notify.events` queue, decoded by its AMQP type.
    pub enum NotifyEvent {
        Received(ev::AppealReceived),
        Routed(ev::AppealRouted),
        StatusChanged(ev::TicketStatusChanged),
        AnswerApproved(ev::TicketAnswerApproved),
        Reopened(ev::TicketReopened),
        RerouteRequested(ev::TicketRerouteRequested),
        IncidentChanged(ev::TicketIncidentChanged),
        SlaArmed(ev::SlaArmed),
        FastTrack(ev::SlaFastTrack),
        Warning(ev::SlaWarning),
        Overdue(ev::SlaOverdue),
        Met(ev::SlaMet),
    }
}
