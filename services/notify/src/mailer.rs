//! The mail port: an SMTP relay (lettre) in production, a mailbox folder of `.eml` files in
//! embedded mode. Both take the same [`Mail`] and answer with the same [`MailError`], and one
//! contract test suite runs against both.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use pos_platform::servers_ca::ServersCa;

/// One e-mail, addressed to one recipient.
#[derive(Clone, Debug)]
pub struct Mail {
    /// The ledger row's id: the Message-ID, so a duplicate (a crash between sending and
    /// marking) can be recognised by the receiver and counted by the tests.
    pub id: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl Mail {
    pub fn message_id(&self) -> String {
        format!("<{}@pos.notify>", self.id)
    }

    fn build(&self) -> Result<Message, MailError> {
        let from: Mailbox = self.from.parse().map_err(|e| MailError::Permanent(format!("bad sender address: {e}")))?;
        let to: Mailbox = self.to.parse().map_err(|e| MailError::Permanent(format!("bad recipient address: {e}")))?;
        Message::builder()
            .message_id(Some(self.message_id()))
            .from(from)
            .to(to)
            .subject(self.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(self.body.clone())
            .map_err(|e| MailError::Permanent(format!("message does not build: {e}")))
    }
}

/// Why a message did not go; the sender retries the first and dead-letters the second.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("transient: {0}")]
    Transient(String),
    #[error("permanent: {0}")]
    Permanent(String),
}

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, mail: &Mail) -> Result<(), MailError>;
    /// For logs: `smtp` or `mailbox`.
    fn kind(&self) -> &'static str;
}

/// An SMTP relay, with pooled connections so a burst does not open one per message.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// What verifies the relay's certificate (a CA bundle of ours), told with a failure to send.
    verified_by: Option<String>,
}

impl SmtpMailer {
    /// `url` as lettre reads it: `smtp://host:port` (plain, for loopback relays),
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtp://…?tls=opportunistic`, or
    /// `smtps://host` (TLS from the first byte). With TLS the relay's certificate is verified
    /// against `ca` as well as the public web PKI roots, for the name in the URL.
    pub fn new(url: &str, timeout: Duration, connections: u32, ca: Option<&ServersCa>) -> anyhow::Result<SmtpMailer> {
        let redacted = || pos_platform::db::redact_url(url);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .with_context(|| format!("invalid smtp_url {}", redacted()))?;
        let mut verified_by = None;
        if let Some(ca) = ca
            && let Some(mode) = tls_mode(url).with_context(|| format!("invalid smtp_url {}", redacted()))?
        {
            builder = builder.tls(mode.with_ca(ca).with_context(|| {
                format!("smtp_url {}: the CA bundle {} does not load", redacted(), ca.path().display())
            })?);
            verified_by = Some(ca.describe());
        }
        let transport =
            builder.timeout(Some(timeout)).pool_config(PoolConfig::new().max_size(connections.max(1))).build();
        Ok(SmtpMailer { transport, verified_by })
    }
}

/// How a URL asks for TLS, as lettre's `from_url` reads it, and for which server name.
struct TlsMode {
    kind: TlsKind,
    domain: String,
}

enum TlsKind {
    /// STARTTLS, or fail (`?tls=required`).
    Required,
    /// STARTTLS when offered (`?tls=opportunistic`).
    Opportunistic,
    /// TLS from the first byte (`smtps://`).
    Wrapper,
}

/// `None` for a plaintext URL (`smtp://` without `tls`).
fn tls_mode(url: &str) -> anyhow::Result<Option<TlsMode>> {
    let parsed = url::Url::parse(url)?;
    let domain = parsed.host_str().context("no host")?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let tls = parsed.query_pairs().find(|(key, _)| key == "tls").map(|(_, value)| value.into_owned());
    let kind = match (parsed.scheme(), tls.as_deref()) {
        ("smtps", _) => TlsKind::Wrapper,
        ("smtp", Some("required")) => TlsKind::Required,
        ("smtp", Some("opportunistic")) => TlsKind::Opportunistic,
        _ => return Ok(None),
    };
    Ok(Some(TlsMode { kind, domain }))
}

impl TlsMode {
    fn with_ca(self, ca: &ServersCa) -> Result<Tls, lettre::transport::smtp::Error> {
        let mut parameters = TlsParameters::builder(self.domain);
        for certificate in ca.certificates() {
            parameters = parameters.add_root_certificate(Certificate::from_der(certificate.to_vec())?);
        }
        let parameters = parameters.build_rustls()?;
        Ok(match self.kind {
            TlsKind::Required => Tls::Required(parameters),
            TlsKind::Opportunistic => Tls::Opportunistic(parameters),
            TlsKind::Wrapper => Tls::Wrapper(parameters),
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let message = mail.build()?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            // A 5xx answer will not change by retrying; anything else (refused connection,
            // timeout, 4xx) may.
            Err(error) if error.is_permanent() => Err(MailError::Permanent(error.to_string())),
            // lettre reports a refused certificate as a connection error: say what verified it.
            Err(error) => match &self.verified_by {
                Some(ca) => Err(MailError::Transient(format!("{error} ({ca})"))),
                None => Err(MailError::Transient(error.to_string())),
            },
        }
    }

    fn kind(&self) -> &'static str {
        "smtp"
    }
}

/// Embedded mode: each message becomes `<dir>/<id>.eml`. Writing the same id again replaces
/// the file, so the crash window cannot produce a second copy here.
pub struct MailboxMailer {
    dir: PathBuf,
}

impl MailboxMailer {
    pub fn new(dir: PathBuf) -> anyhow::Result<MailboxMailer> {
        std::fs::create_dir_all(&dir)?;
        Ok(MailboxMailer { dir })
    }
}

#[async_trait]
impl Mailer for MailboxMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let bytes = mail.build()?.formatted();
        let path = self.dir.join(format!("{}.eml", mail.id));
        let temporary = self.dir.join(format!(".{}.tmp", mail.id));
        // Write then rename: a reader never sees half a message.
        let write = async {
            tokio::fs::write(&temporary, &bytes).await?;
            tokio::fs::rename(&temporary, &path).await
        };
        write.await.map_err(|e| MailError::Transient(format!("mailbox write failed: {e}")))
    }

    fn kind(&self) -> &'static str {
        "mailbox"
    }
}
