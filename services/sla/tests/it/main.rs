//! The SLA service's integration tests against the local PostgreSQL (and SQLite for the same
//! flows): clocks through their events, timers fired once and never early, two instances side
//! by side, an instance killed with SIGKILL, and every method without its database.

mod bench;
mod early;
mod flow;
mod grpc;
mod helpers;
mod outage;
mod scope;
mod timers;
