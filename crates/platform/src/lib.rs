//! What every pos service needs and no service owns: configuration, telemetry, the gRPC server
//! bootstrap (health, reflection, metrics, auth), the bus (AMQP and in-process), the outbox
//! relay and the inbox, database pools and migrations, the cache, and shutdown.

pub mod appeal_link;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod cache;
pub mod config;
pub mod consumer;
pub mod db;
pub mod dead_letters;
pub mod error;
pub mod grpc;
pub mod host;
pub mod jwks;
pub mod limits;
pub mod metrics;
pub mod operations;
pub mod outbox;
pub mod parking;
pub mod peers;
pub mod servers_ca;
pub mod shutdown;
pub mod telemetry;
pub mod testing;
pub mod tls;

pub use bus::{Bus, Envelope, EventSet, QueueSpec};

// For `event_set!`, expanded in the services.
pub use db::{Db, Dialect, Tx};
pub use error::{ApiError, ApiResult};
#[doc(hidden)]
pub use pos_proto as __proto;
