//! End-to-end: the platform driven over gRPC like an external system.

mod submit_to_ticket;
