//! The `pos` binary's library: hosting the services in one process, and the command line.

pub mod act;
pub mod audit;
pub mod bench;
pub mod cli;
pub mod dlq;
pub mod ops;
pub mod up;
