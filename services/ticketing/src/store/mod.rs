//! The ticketing database, one module per aggregate, each written once for both dialects:
//! tickets (read, created from a routed appeal, changed by a versioned transition) with their
//! history and the deadlines mirrored from the SLA service; the cabinet's list; the staff
//! directory; answer templates; postponed answers' reminders; incidents; the reports.

pub mod deadlines;
pub mod history;
pub mod incidents;
pub mod listing;
pub mod reminders;
pub mod report;
pub mod staff;
pub mod templates;
pub mod tickets;

/// A column that holds an unknown value: the row is not what this build wrote.
fn undecodable(column: &str, what: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.into(), source: what.into() }
}
