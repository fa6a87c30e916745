//! Intake's integration tests: one binary, against the local PostgreSQL (and SQLite for the
//! store's contract suite). gRPC tests serve intake on 127.0.0.1:0 with the in-process bus.

mod access;
mod attachments;
mod escalations;
mod files;
mod helpers;
mod outage;
mod scope;
mod store;
mod submit;
