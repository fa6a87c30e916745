//! Ticketing's integration tests: the store's contract on PostgreSQL and SQLite, and the cabinet
//! over gRPC served by the platform host.

mod bench;
mod grpc;
mod helpers;
mod store;
