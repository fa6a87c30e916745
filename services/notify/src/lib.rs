//! Notify: turns events into messages to people and systems.
//!
//! - The consumer ([`plan`]) journals every event it follows (the ordered source of the
//!   resumable `Subscribe` stream) and writes the ledger rows of the e-mails the event causes,
//!   in the inbox transaction: an event is planned exactly once.
//! - The sender ([`sender`]) delivers ledger rows through the [`mailer::Mailer`] port (an SMTP
//!   relay, or a mailbox folder in embedded mode), retrying with backoff and dead-lettering.
//! - Organizations' admins configure their notifications, quiet hours and digest ([`settings`]).
//! - What people read is in templates under `templates/` ([`texts`]); all SQL is in [`store`].

pub mod appeal;
pub mod digest;
pub mod directory;
pub mod events;
mod grpc;
pub mod letters;
pub mod mailer;
pub mod plan;
pub mod sender;
pub mod settings;
mod store;
pub mod template;
pub mod texts;

use std::sync::Arc;
use std::time::Duration;

use pos_platform::config::{PlatformConfig, Secret};
use pos_platform::consumer::Consumer;
use pos_platform::db::Migrations;
use pos_platform::host::{Component, ServiceContext};
use pos_platform::peers::Service;
use pos_platform::servers_ca::ServersCa;
use pos_proto::v1::notify_service_server::NotifyServiceServer;
use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

pub use grpc::Notify;

static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
pub static MIGRATIONS: Migrations = Migrations { postgres: &POSTGRES, sqlite: &SQLITE };

/// The `[notify]` section (`POS_NOTIFY__…`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct NotifyConfig {
    /// The SMTP relay as lettre reads it (`smtp://127.0.0.1:2525`, `smtps://user:pass@host`);
    /// unset: e-mails become `.eml` files in `<data_dir>/mailbox/`.
    pub smtp_url: Option<Secret>,
    /// A PEM bundle of the CAs that sign the relay's certificate (`POS_NOTIFY__SMTP_CA_FILE`),
    /// for `smtp://…?tls=required` (STARTTLS) or `smtps://`; unset: the platform's
    /// `servers_ca_file`, else the public web PKI roots only.
    pub smtp_ca_file: Option<std::path::PathBuf>,
    pub from: String,
    pub smtp_timeout_secs: u64,
    pub smtp_connections: u32,
    pub max_attempts: i64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub concurrency: usize,
    /// Rows claimed per round: a small multiple of `concurrency`, since a claimed row waiting
    /// for its turn would be sent again after a crash.
    pub batch: i64,
    /// A `sending` row older than this is presumed lost in a crash and sent again; keep it
    /// above the SMTP timeout so a slow relay is not mistaken for a crash.
    pub lease_secs: u64,
    pub poll_ms: u64,
    pub digest_poll_secs: u64,
    /// Deprecated: one ticketing (staff directory) or routing (organizations) endpoint, used
    /// only when the platform's `[peers]` section (`POS_PEERS__TICKETING`, `POS_PEERS__ROUTING`)
    /// lists none for that service.
    pub ticketing_endpoint: Option<String>,
    pub routing_endpoint: Option<String>,
    /// Which letters applicants receive (see [`letters`]): a list, or one comma-separated string
    /// (`POS_NOTIFY__APPLICANT_LETTERS=registered,taken_in_work,answer_ready`).
    pub applicant_letters: letters::Letters,
    /// The web service's public address (`https://pos.example.ru`): the registration letter
    /// carries the applicant's secret link to the appeal's page under it
    /// ([`pos_platform::appeal_link`]). Empty: the web's own, read from the same configuration
    /// ([`NotifyConfig::load`]): `[web] public_url`, else `http://<web.addr>` (the web's
    /// default address when `[web]` sets none), as the web itself names its public base. So
    /// `pos up` sends working links with nothing configured but `auth.hs256_secret`.
    pub public_url: String,
    /// The appeal links' HMAC key, the same as the web's `web.citizen.appeal_link_key`; unset:
    /// derived from `auth.hs256_secret` (development).
    pub appeal_link_key: Option<Secret>,
    /// How long an appeal link opens the appeal's page, in days.
    pub appeal_link_days: u64,
}

impl Default for NotifyConfig {
    fn default() -> NotifyConfig {
        NotifyConfig {
            smtp_url: None,
            smtp_ca_file: None,
            from: "Платформа обратной связи <noreply@pos.local>".into(),
            smtp_timeout_secs: 15,
            smtp_connections: 16,
            max_attempts: 12,
            retry_base_ms: 1_000,
            retry_max_ms: 30_000,
            concurrency: 16,
            batch: 32,
            lease_secs: 40,
            poll_ms: 500,
            digest_poll_secs: 30,
            ticketing_endpoint: None,
            routing_endpoint: None,
            applicant_letters: letters::Letters::default(),
            public_url: String::new(),
            appeal_link_key: None,
            appeal_link_days: 365,
        }
    }
}

/// What notify reads of the web's section (`[web]`, `POS_WEB__*`): where the applicants open
/// their appeal links when `notify.public_url` is empty (notify does not depend on the web).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
struct WebAddress {
    public_url: String,
    addr: std::net::SocketAddr,
}

impl Default for WebAddress {
    fn default() -> WebAddress {
        WebAddress { public_url: String::new(), addr: pos_platform::appeal_link::DEFAULT_WEB_ADDR }
    }
}

impl NotifyConfig {
    /// The `[notify]` section of `file` and the environment, its empty `public_url` filled
    /// with the web's public address from the same configuration (see the field).
    pub fn load(file: Option<&std::path::Path>) -> Result<NotifyConfig, pos_platform::config::ConfigError> {
        let mut config: NotifyConfig = pos_platform::config::section(file, "notify")?;
        if config.public_url.trim().is_empty() {
            let web: WebAddress = pos_platform::config::section(file, "web")?;
            config.public_url = pos_platform::appeal_link::public_base(&web.public_url, web.addr);
            tracing::debug!(public_url = %config.public_url, "appeal links under the web's address (notify.public_url unset)");
        }
        Ok(config)
    }

    pub fn sender(&self) -> sender::SenderConfig {
        sender::SenderConfig {
            from: self.from.clone(),
            batch: self.batch.max(1),
            concurrency: self.concurrency.max(1),
            max_attempts: self.max_attempts.max(1),
            backoff_base: Duration::from_millis(self.retry_base_ms),
            backoff_max: Duration::from_millis(self.retry_max_ms.max(self.retry_base_ms)),
            lease: Duration::from_secs(self.lease_secs.max(self.smtp_timeout_secs + 1)),
            poll: Duration::from_millis(self.poll_ms.max(10)),
        }
    }

    /// The SMTP relay when `smtp_url` is set, else the mailbox folder in the platform's `data_dir`.
    pub fn mailer(&self, platform: &PlatformConfig) -> anyhow::Result<Arc<dyn mailer::Mailer>> {
        match &self.smtp_url {
            Some(url) => self.mailer_for(url.expose(), self.smtp_ca(platform)?.as_ref()),
            None => Ok(Arc::new(mailer::MailboxMailer::new(platform.data_dir.join("mailbox"))?)),
        }
    }

    /// The CAs that verify the relay: `smtp_ca_file`, else the platform's `servers_ca_file`.
    pub fn smtp_ca(&self, platform: &PlatformConfig) -> Result<Option<ServersCa>, pos_platform::config::ConfigError> {
        match &self.smtp_ca_file {
            Some(path) => ServersCa::load("notify.smtp_ca_file", path).map(Some),
            None => ServersCa::from_config(platform),
        }
    }

    /// The SMTP relay at `url` with this configuration's timeout and pool, its certificate
    /// verified against `ca` when the URL asks for TLS.
    pub fn mailer_for(&self, url: &str, ca: Option<&ServersCa>) -> anyhow::Result<Arc<dyn mailer::Mailer>> {
        // One pooled connection per message in flight, so none waits for a connection.
        let connections = self.smtp_connections.max(u32::try_from(self.concurrency).unwrap_or(u32::MAX));
        Ok(Arc::new(mailer::SmtpMailer::new(url, Duration::from_secs(self.smtp_timeout_secs), connections, ca)?))
    }
}

/// The consumer of every [`events::NotifyEvent`]: its queue and inbox name.
pub const CONSUMER: &str = "notify.events";

/// Wakes the sender and the stream followers when the consumer wrote something.
#[derive(Default)]
pub struct Wake {
    pub journal: tokio::sync::Notify,
    pub deliveries: tokio::sync::Notify,
}

impl Wake {
    pub fn wake(&self) {
        self.journal.notify_waiters();
        self.deliveries.notify_one();
    }
}

/// What the component is built from; tests supply their own directory and mailer.
pub struct Parts {
    pub config: NotifyConfig,
    pub directory: Arc<dyn directory::Directory>,
    pub mailer: Arc<dyn mailer::Mailer>,
}

pub async fn component(ctx: ServiceContext) -> anyhow::Result<Component> {
    let config = NotifyConfig::load(ctx.config_file.as_deref())?;
    let token = ctx.infra.service_token("notify")?;
    let ticketing = peer(&ctx, Service::Ticketing, config.ticketing_endpoint.as_deref(), "notify.ticketing_endpoint")?;
    let routing = peer(&ctx, Service::Routing, config.routing_endpoint.as_deref(), "notify.routing_endpoint")?;
    let directory = Arc::new(directory::GrpcDirectory::new(ticketing, routing, token));
    let mailer = config.mailer(&ctx.infra.config)?;
    tracing::info!(mailer = mailer.kind(), "notify mail port chosen");
    Ok(build(ctx, Parts { config, directory, mailer }))
}

/// The channel to `service`: its `[peers]`, else the deprecated single endpoint, else this process.
fn peer(
    ctx: &ServiceContext,
    service: Service,
    deprecated: Option<&str>,
    setting: &str,
) -> anyhow::Result<tonic::transport::Channel> {
    match deprecated {
        Some(url) if ctx.infra.config.peers.endpoints(service).is_empty() => {
            tracing::warn!("{setting} is deprecated: list the endpoints in {}", service.setting());
            Ok(pos_platform::grpc::channel(url)?)
        }
        _ => ctx.peer(service),
    }
}

pub fn build(ctx: ServiceContext, parts: Parts) -> Component {
    let Parts { config, directory, mailer } = parts;
    let wake = Arc::new(Wake::default());
    // Streams stay open until their subscriber leaves; shutting down must end them too.
    let streams = CancellationToken::new();
    let service = Notify { db: ctx.db.clone(), wake: wake.clone(), streams: streams.clone() };
    let routes = tonic::service::Routes::new(pos_platform::message_limits!(
        NotifyServiceServer::new(service),
        &ctx.infra.config.limits
    ));
    let planner = plan::Planner {
        directory,
        wake: wake.clone(),
        dialect: ctx.db.dialect(),
        letters: config.applicant_letters.clone(),
        appeal_links: plan::AppealLinks::new(&config, &ctx.infra.config.auth),
    };
    let (sender_db, digest_db, sender_wake, digest_wake) = (ctx.db.clone(), ctx.db.clone(), wake.clone(), wake);
    let sender_config = config.sender();
    let digest_poll = Duration::from_secs(config.digest_poll_secs.max(1));
    Component::new("notify", ctx.db, routes, vec!["pos.v1.NotifyService"])
        .consumer(Consumer::new(CONSUMER, &ctx.infra.config.regions, planner))
        .task("notify.sender", move |token| sender::run(sender_db, mailer, sender_wake, sender_config, token))
        .task("notify.digest", move |token| digest::run(digest_db, digest_wake, digest_poll, token))
        .task("notify.streams", move |token| async move {
            token.cancelled().await;
            streams.cancel();
            Ok(())
        })
}
