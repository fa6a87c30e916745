//! The platform as an external system sees it: started in-process (all five services on one
//! gRPC listener, with real servers or embedded adapters) and driven over gRPC.

use std::time::{Duration, Instant};

use pos_platform::auth::Role;
use pos_platform::config::Secret;
use pos_platform::host::Infra;
use pos_platform::testing::{self, TempDir};
use pos_proto::v1 as pb;
use pos_proto::v1::intake_service_client::IntakeServiceClient;
use pos_proto::v1::routing_service_client::RoutingServiceClient;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Which adapters the platform runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// PostgreSQL, RabbitMQ and Redis on loopback, isolated by a unique schema prefix,
    /// exchange and cache prefix.
    Servers,
    /// SQLite files, the journaled in-process bus and the in-process cache, in a temp dir.
    Embedded,
}

pub struct Platform {
    pub endpoint: String,
    pub infra: Infra,
    pub mode: Mode,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
    _data: TempDir,
}

impl Platform {
    pub async fn start(mode: Mode) -> anyhow::Result<Platform> {
        let data = TempDir::new();
        Platform::start_in(mode, data, None).await
    }

    /// Starts on `data` (an embedded platform's state survives a restart in the same dir);
    /// `run_id` keeps the same schemas and exchange across restarts in server mode.
    pub async fn start_in(mode: Mode, data: TempDir, run_id: Option<String>) -> anyhow::Result<Platform> {
        testing::init_for_tests_once();
        let run_id = run_id.unwrap_or_else(|| testing::unique("e2e"));
        let mut config = testing::platform_config(&data.0);
        if mode == Mode::Servers {
            config.database_url = Some(Secret::new(testing::database_url()));
            config.schema_prefix = format!("{run_id}_");
            config.amqp_url = Some(Secret::new(testing::amqp_url()));
            config.exchange = format!("{run_id}.events");
            config.redis_url = Some(Secret::new(testing::redis_url()));
            config.cache_prefix = run_id.clone();
        }
        let infra = Infra::connect(config).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let components = pos::up::components(&infra, None, &endpoint).await?;
        let shutdown = CancellationToken::new();
        let handle = {
            let (infra, shutdown) = (infra.clone(), shutdown.clone());
            tokio::spawn(async move { pos_platform::host::run(&infra, components, listener, shutdown).await })
        };
        Ok(Platform { endpoint, infra, mode, shutdown, handle, _data: data })
    }

    /// Stops gracefully, as on SIGTERM.
    pub async fn stop(self) -> anyhow::Result<TempDir> {
        self.shutdown.cancel();
        self.handle.await??;
        Ok(self._data)
    }

    pub fn channel(&self) -> Channel {
        pos_platform::grpc::channel(&self.endpoint).expect("valid endpoint")
    }

    pub fn intake(&self) -> IntakeServiceClient<Channel> {
        IntakeServiceClient::new(self.channel())
    }

    pub fn routing(&self) -> RoutingServiceClient<Channel> {
        RoutingServiceClient::new(self.channel())
    }

    pub fn ticketing(&self) -> TicketingServiceClient<Channel> {
        TicketingServiceClient::new(self.channel())
    }

    /// Waits until the appeal has a ticket, as its addressee's coordinator sees it.
    pub async fn wait_for_ticket(&self, appeal_id: &str, organization_id: &str, timeout: Duration) -> anyhow::Result<pb::Ticket> {
        let token = testing::token("e2e-coordinator", organization_id, "", &[Role::Coordinator, Role::System]);
        let deadline = Instant::now() + timeout;
        loop {
            let request = pos_platform::grpc::outgoing(
                pb::GetTicketRequest { key: Some(pb::get_ticket_request::Key::AppealId(appeal_id.to_owned())) },
                &token,
            );
            match self.ticketing().get_ticket(request).await {
                Ok(ticket) => return Ok(ticket.into_inner()),
                Err(status) if status.code() == tonic::Code::NotFound && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => anyhow::bail!("no ticket for appeal {appeal_id}: {status}"),
            }
        }
    }
}

/// A request carrying a token and a chosen W3C trace context.
pub fn traced<T>(message: T, token: &str, trace_id: &str) -> tonic::Request<T> {
    let mut request = pos_platform::grpc::outgoing(message, token);
    let traceparent = format!("00-{trace_id}-{}-01", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    request.metadata_mut().insert("traceparent", traceparent.parse().expect("ascii"));
    request
}
