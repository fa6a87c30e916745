//! All of notify's SQL, written once for both dialects: small functions taking the pool, a
//! connection or the caller's transaction. No other module holds SQL.
//!
//! - [`appeals`]: what notify knows of each appeal, gathered from its events;
//! - [`deliveries`]: the ledger of e-mails, from planning through sending to the log;
//! - [`journal`]: every event followed, in order: the `Subscribe` stream's source;
//! - [`settings`]: the organizations' notifications, quiet hours and digests.

pub mod appeals;
pub mod deliveries;
pub mod journal;
pub mod settings;
