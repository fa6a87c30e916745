//! One contract for both mail adapters: the SMTP relay and the embedded mailbox folder.

use std::sync::Arc;

use pos_notify::NotifyConfig;
use pos_notify::mailer::{Mail, MailError, MailboxMailer, Mailer, SmtpMailer};
use pos_platform::config::{PlatformConfig, Secret};
use pos_platform::testing::{TempDir, TestCa, eventually};

use crate::helpers::*;

/// Where a mailer's messages can be read back from.
trait Inbox {
    fn messages_for(&self, recipient: &str) -> Vec<String>;
}

impl Inbox for SmtpSink {
    fn messages_for(&self, recipient: &str) -> Vec<String> {
        self.messages(recipient)
    }
}

struct Folder(TempDir);

impl Inbox for Folder {
    fn messages_for(&self, recipient: &str) -> Vec<String> {
        read_dir_messages(&self.0.0.join("mailbox"))
            .into_iter()
            .filter(|m| header(m, "To").to_lowercase().contains(&recipient.to_lowercase()))
            .collect()
    }
}

async fn contract(mailer: Arc<dyn Mailer>, inbox: &dyn Inbox) {
    let domain = unique_domain();
    let to = format!("reader@{domain}");
    let mail = Mail {
        id: uuid::Uuid::now_v7().to_string(),
        from: "Платформа <noreply@pos.test>".into(),
        to: to.clone(),
        subject: "Сообщение №7 зарегистрировано".into(),
        body: "Здравствуйте!\nВаше сообщение зарегистрировано.".into(),
    };
    mailer.send(&mail).await.unwrap();
    eventually(std::time::Duration::from_secs(5), "the mail arrived", || {
        std::future::ready(!inbox.messages_for(&to).is_empty())
    })
    .await;
    let arrived = inbox.messages_for(&to);
    assert_eq!(arrived.len(), 1);
    assert_eq!(header(&arrived[0], "Message-ID"), mail.message_id());
    let (subject, body) = decoded(&arrived[0]);
    assert_eq!(subject, mail.subject);
    assert!(body.contains("Ваше сообщение зарегистрировано."), "{body}");
    let bad = Mail { to: "nobody at all".into(), ..mail };
    assert!(matches!(mailer.send(&bad).await, Err(MailError::Permanent(_))));
}

#[tokio::test]
async fn the_smtp_relay_keeps_the_mail_contract() {
    let sink = SmtpSink::start();
    contract(sink.mailer(), &sink).await;
}

#[tokio::test]
async fn the_mailbox_folder_keeps_the_mail_contract() {
    let dir = TempDir::new();
    let mailer = Arc::new(MailboxMailer::new(dir.0.join("mailbox")).unwrap());
    contract(mailer, &Folder(dir)).await;
}

#[tokio::test]
async fn a_relay_that_is_down_is_a_transient_failure() {
    let sink = SmtpSink::down();
    let mail = Mail {
        id: "x".into(),
        from: "noreply@pos.test".into(),
        to: "a@b.test".into(),
        subject: "s".into(),
        body: "b".into(),
    };
    assert!(matches!(sink.mailer().send(&mail).await, Err(MailError::Transient(_))));
}

fn letter(to: &str) -> Mail {
    Mail {
        id: uuid::Uuid::now_v7().to_string(),
        from: "noreply@pos.test".into(),
        to: to.to_owned(),
        subject: "Проверка защищённого соединения".into(),
        body: "Письмо ушло по TLS.".into(),
    }
}

#[tokio::test]
async fn mail_goes_over_starttls_to_a_relay_the_ca_vouches_for() {
    let ca = TestCa::new();
    let sink = SmtpSink::start_tls(&ca.cert_file(), &ca.key_file());
    // As a deployment configures it: the platform's CA bundle, no relay-specific one.
    let platform = PlatformConfig { servers_ca_file: Some(ca.ca_file()), ..PlatformConfig::default() };
    let config = NotifyConfig { smtp_url: Some(Secret::new(sink.url())), ..NotifyConfig::default() };
    let mailer = config.mailer(&platform).unwrap();
    let to = format!("reader@{}", unique_domain());
    mailer.send(&letter(&to)).await.expect("sent over STARTTLS");
    assert_eq!(sink.messages(&to).len(), 1);
}

#[tokio::test]
async fn a_relay_whose_certificate_another_ca_signed_is_refused() {
    let (ca, stranger) = (TestCa::new(), TestCa::new());
    let sink = SmtpSink::start_tls(&ca.cert_file(), &ca.key_file());
    // notify's own bundle wins over the platform's.
    let platform = PlatformConfig { servers_ca_file: Some(ca.ca_file()), ..PlatformConfig::default() };
    let config = NotifyConfig {
        smtp_url: Some(Secret::new(sink.url())),
        smtp_ca_file: Some(stranger.ca_file()),
        ..NotifyConfig::default()
    };
    let to = format!("reader@{}", unique_domain());
    match config.mailer(&platform).unwrap().send(&letter(&to)).await {
        Err(MailError::Transient(error)) => {
            assert!(error.contains(&stranger.ca_file().display().to_string()), "names the CA bundle: {error}")
        }
        other => panic!("a relay with another CA's certificate took the mail: {other:?}"),
    }
    assert!(sink.messages(&to).is_empty());
}

#[tokio::test]
async fn a_relay_that_requires_starttls_refuses_plaintext_mail() {
    let ca = TestCa::new();
    let sink = SmtpSink::start_tls(&ca.cert_file(), &ca.key_file());
    let plaintext = sink.url().replace("?tls=required", "");
    let mailer = SmtpMailer::new(&plaintext, std::time::Duration::from_secs(5), 1, None).unwrap();
    let to = format!("reader@{}", unique_domain());
    assert!(mailer.send(&letter(&to)).await.is_err(), "the relay took mail without TLS");
    assert!(sink.messages(&to).is_empty());
}
