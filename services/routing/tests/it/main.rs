//! The routing service's integration tests, against the local PostgreSQL and Redis (and SQLite
//! for the store's contract suite).

mod admin;
mod consumer;
mod helpers;
mod onboarding;
mod outage;
mod reroute;
mod resolve;
mod scope;
mod store;
