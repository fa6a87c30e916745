//! One contract for both mail adapters: the SMTP relay and the embedded mailbox folder.

use std::sync::Arc;

use pos_notify::mailer::{Mail, MailError, MailboxMailer, Mailer};
use pos_platform::testing::{TempDir, eventually};

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
