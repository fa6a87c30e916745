//! The `pos` binary's library: hosting all five services in one process.

pub mod up;
