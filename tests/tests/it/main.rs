//! End-to-end: the platform driven over gRPC like an external system.

mod audit;
mod dashboards;
mod deploy;
mod deployments;
mod dlq;
mod embedded_crash;
mod faults;
mod front_door;
mod incidents;
mod kamchatka;
mod lifecycle;
mod observability;
mod redirect;
mod replicas;
mod schema_parity;
mod submit_to_ticket;
mod tls;
mod tracing_export;
mod walkthrough;
