//! End-to-end: the platform driven over gRPC like an external system.

mod faults;
mod submit_to_ticket;
