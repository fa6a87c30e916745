//! Ticketing's integration tests: the store's contract on PostgreSQL and SQLite, the migrations,
//! the cabinet over gRPC served by the platform host, and the cabinet with its database down.

mod bench;
mod early;
mod grpc;
mod helpers;
mod incidents;
mod migrations;
mod outage;
mod preview;
mod scope;
mod store;
mod supervised_report;
