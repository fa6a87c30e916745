//! A real SMTP sink per test, events as the other services publish them, and a running sender.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pos_notify::directory::{Staff, StaticDirectory};
use pos_notify::letters::Letters;
use pos_notify::mailer::{Mailer, SmtpMailer};
use pos_notify::plan::Planner;
use pos_notify::sender::SenderConfig;
use pos_notify::{Wake, sender};
use pos_platform::testing::TempDir;
use pos_platform::{Db, Envelope};
use pos_proto::BusEvent;
use tokio_util::sync::CancellationToken;

/// `deploy/local/smtp_sink.py` on a port of its own, stopped when dropped.
pub struct SmtpSink {
    pub port: u16,
    pub dir: TempDir,
    child: Option<Child>,
    /// The certificate and key it offers STARTTLS with, and then requires.
    tls: Option<(PathBuf, PathBuf)>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/smtp_sink.py")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let mut sink = SmtpSink::down();
        sink.resume();
        sink
    }

    /// A relay that offers STARTTLS with `cert` and `key` (PEM files) and takes no mail before
    /// the client has started TLS.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> SmtpSink {
        let mut sink = SmtpSink::down();
        sink.tls = Some((cert.to_path_buf(), key.to_path_buf()));
        sink.resume();
        sink
    }

    /// A port nothing listens on yet, for a relay that is down from the start.
    pub fn down() -> SmtpSink {
        SmtpSink { port: free_port(), dir: TempDir::new(), child: None, tls: None }
    }

    pub fn resume(&mut self) {
        let mut command = Command::new("python3");
        command.arg(script()).args(["--port", &self.port.to_string(), "--dir", &self.dir.0.display().to_string()]);
        if let Some((cert, key)) = &self.tls {
            command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (deploy/local/smtp.sh installs aiosmtpd)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "smtp sink did not start: is aiosmtpd installed (deploy/local/smtp.sh)?"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The relay's address as `smtp_url`, asking for STARTTLS when it requires it.
    pub fn url(&self) -> String {
        if self.tls.is_some() {
            format!("smtp://127.0.0.1:{}?tls=required", self.port)
        } else {
            format!("smtp://127.0.0.1:{}", self.port)
        }
    }

    pub fn mailer(&self) -> Arc<dyn Mailer> {
        Arc::new(SmtpMailer::new(&self.url(), Duration::from_secs(5), 8, None).unwrap())
    }

    /// The raw messages that arrived for `recipient`.
    pub fn messages(&self, recipient: &str) -> Vec<String> {
        read_dir_messages(&self.dir.0.join(recipient.to_lowercase()))
    }

    /// Message-ID → how many times it arrived, over every recipient.
    pub fn message_ids(&self) -> HashMap<String, usize> {
        let mut ids = HashMap::new();
        for entry in std::fs::read_dir(&self.dir.0).into_iter().flatten().flatten() {
            for message in read_dir_messages(&entry.path()) {
                *ids.entry(header(&message, "Message-ID")).or_insert(0) += 1;
            }
        }
        ids
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn read_dir_messages(dir: &std::path::Path) -> Vec<String> {
    let mut messages = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "eml") {
            messages.push(String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned());
        }
    }
    messages
}

pub fn header(message: &str, name: &str) -> String {
    let prefix = format!("{}:", name.to_lowercase());
    message
        .lines()
        .find(|line| line.to_lowercase().starts_with(&prefix))
        .map(|line| line[prefix.len()..].trim().to_owned())
        .unwrap_or_default()
}

/// The decoded subject and body of a message lettre built (UTF-8, base64 or quoted-printable).
pub fn decoded(message: &str) -> (String, String) {
    // Python's email package decodes exactly what lettre encodes; it is there anyway for aiosmtpd.
    let output = Command::new("python3")
        .args([
            "-c",
            "import sys,email,email.policy;m=email.message_from_bytes(sys.stdin.buffer.read(),policy=email.policy.default);\
             sys.stdout.write(str(m['subject'])+'\\n\\x00'+m.get_content())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(message.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let (subject, body) = text.split_once("\n\u{0}").unwrap_or((&text, ""));
    (subject.to_owned(), body.to_owned())
}

pub fn staff(subject: &str, email: &str, roles: &[&str]) -> Staff {
    Staff { subject: subject.into(), email: email.into(), roles: roles.iter().map(|r| (*r).to_owned()).collect() }
}

pub fn planner(db: &Db, wake: Arc<Wake>, directory: StaticDirectory) -> Planner {
    Planner {
        directory: Arc::new(directory),
        wake,
        dialect: db.dialect(),
        letters: Letters::default(),
        appeal_links: None,
    }
}

/// Handles `event` as the consumer would: in a transaction of its own, retried while its
/// appeal's earlier events are "not yet" there.
pub async fn deliver<E: BusEvent>(db: &Db, planner: &Planner, event: &E, appeal_id: &str) -> Envelope {
    let envelope = Envelope::new(event, "41").with_appeal(appeal_id);
    handle(db, planner, &envelope).await;
    envelope
}

pub async fn handle(db: &Db, planner: &Planner, envelope: &Envelope) {
    let mut tx = db.begin().await.unwrap();
    pos_platform::consumer::deliver(planner, &mut tx, envelope).await.unwrap();
    tx.commit().await.unwrap();
}

pub fn sender_config() -> SenderConfig {
    SenderConfig {
        from: "POS <noreply@pos.test>".into(),
        batch: 64,
        concurrency: 8,
        max_attempts: 50,
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(1_000),
        lease: Duration::from_secs(30),
        poll: Duration::from_millis(50),
    }
}

/// A running sender, stopped when dropped.
pub struct RunningSender {
    token: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl RunningSender {
    pub fn start(db: &Db, mailer: Arc<dyn Mailer>, wake: Arc<Wake>, config: SenderConfig) -> RunningSender {
        let token = CancellationToken::new();
        let handle = tokio::spawn(sender::run(db.clone(), mailer, wake, config, token.clone()));
        RunningSender { token, handle: Some(handle) }
    }

    pub async fn stop(mut self) {
        self.token.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }
}

impl Drop for RunningSender {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

pub fn ts(at: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(pos_proto::time::to_proto(at))
}

pub fn unique_domain() -> String {
    format!("{}.test", pos_platform::testing::unique("n").replace('_', "-"))
}

/// A request as the auth layer hands it on for a caller with `roles` in `organization_id`.
pub fn as_caller<T>(message: T, organization_id: &str, roles: &[pos_platform::auth::Role]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(pos_platform::auth::Authenticated(Ok(pos_platform::auth::Caller {
        subject: "tester".into(),
        organization_id: organization_id.into(),
        region_code: "41".into(),
        roles: roles.iter().copied().collect(),
    })));
    request
}

pub fn system<T>(message: T) -> tonic::Request<T> {
    as_caller(message, "", &[pos_platform::auth::Role::System])
}

pub fn service(db: &Db, wake: Arc<Wake>) -> pos_notify::Notify {
    pos_notify::Notify { db: db.clone(), wake, streams: CancellationToken::new() }
}

/// A registered appeal: one e-mail to its applicant.
pub fn received(appeal_id: &str, number: i64, email: &str) -> pos_proto::v1::events::AppealReceived {
    pos_proto::v1::events::AppealReceived {
        appeal_id: appeal_id.into(),
        number,
        registered_at: ts(Utc::now()),
        applicant: Some(pos_proto::v1::Applicant {
            full_name: "Заявитель".into(),
            email: email.into(),
            ..Default::default()
        }),
        region_code: "41".into(),
        category_id: "food".into(),
        category_name: "Питание в школе".into(),
        applicant_time_zone: "Asia/Kamchatka".into(),
        ..Default::default()
    }
}
