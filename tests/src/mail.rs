//! The e-mails tests read: a real SMTP relay of the test's own (`deploy/local/smtp_sink.py`),
//! and the messages it (or the embedded platform's mailbox folder) holds, decoded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pos_platform::testing::TempDir;

use crate::{Mode, Options, Platform, free_port};

/// `deploy/local/smtp_sink.py` on a port of its own, stopped when dropped. It files each message
/// under a folder per recipient.
pub struct SmtpSink {
    pub port: u16,
    dir: TempDir,
    child: Child,
    /// Whether it requires STARTTLS.
    tls: bool,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        SmtpSink::launch(None)
    }

    /// A relay that offers STARTTLS with `cert` and `key` (PEM files) and takes no mail before
    /// the client has started TLS.
    pub fn start_tls(cert: &Path, key: &Path) -> SmtpSink {
        SmtpSink::launch(Some((cert, key)))
    }

    fn launch(tls: Option<(&Path, &Path)>) -> SmtpSink {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/smtp_sink.py");
        let (port, dir) = (free_port().expect("a free port"), TempDir::new());
        let mut command = Command::new("python3");
        command.arg(script).args(["--port", &port.to_string(), "--dir", &dir.0.display().to_string()]);
        if let Some((cert, key)) = tls {
            command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (deploy/local/smtp.sh installs aiosmtpd)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "smtp sink did not start: is aiosmtpd installed (deploy/local/smtp.sh)?"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        SmtpSink { port, dir, child, tls: tls.is_some() }
    }

    /// The relay's address as notify's `smtp_url`, asking for STARTTLS when it requires it.
    pub fn url(&self) -> String {
        if self.tls {
            format!("smtp://127.0.0.1:{}?tls=required", self.port)
        } else {
            format!("smtp://127.0.0.1:{}", self.port)
        }
    }

    /// Every message file it holds, whoever it was for (a message sent twice is two files).
    pub fn files(&self) -> Vec<PathBuf> {
        let folders = std::fs::read_dir(&self.dir.0).into_iter().flatten().flatten();
        folders
            .flat_map(|folder| std::fs::read_dir(folder.path()).into_iter().flatten().flatten())
            .map(|file| file.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect()
    }

    /// The platform, embedded, with notify mailing through this relay and polling often.
    pub async fn embedded_platform(&self) -> Platform {
        let mut options = Options::new(Mode::Embedded);
        let config_file = options.data.0.join("pos.toml");
        std::fs::write(&config_file, format!("[notify]\nsmtp_url = \"{}\"\npoll_ms = 50\n", self.url()))
            .expect("the configuration file");
        options.config_file = Some(config_file);
        Platform::start_with(options).await.expect("platform starts")
    }

    /// The subject and body of every message that arrived for `recipient`.
    pub fn messages(&self, recipient: &str) -> Vec<(String, String)> {
        messages_in(&self.dir.0.join(recipient.to_lowercase()))
    }

    /// Waits up to a minute for a letter to `recipient` whose subject is `subject`; its body.
    pub async fn letter(&self, recipient: &str, subject: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((_, body)) = self.messages(recipient).into_iter().find(|(s, _)| s == subject) {
                return body;
            }
            let subjects: Vec<String> = self.messages(recipient).into_iter().map(|(s, _)| s).collect();
            assert!(Instant::now() < deadline, "no letter {subject:?} to {recipient}; got {subjects:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The decoded subject and body of every `.eml` file in `folder` (none if it does not exist).
pub fn messages_in(folder: &Path) -> Vec<(String, String)> {
    std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "eml"))
        .map(|entry| decoded(&std::fs::read(entry.path()).expect("a message file")))
        .collect()
}

/// The decoded subject and body of a message (Python's email package, there anyway for the sink).
pub fn decoded(message: &[u8]) -> (String, String) {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys,email,email.policy;m=email.message_from_bytes(sys.stdin.buffer.read(),policy=email.policy.default);\
             sys.stdout.write(str(m['subject'])+'\\n\\x00'+m.get_content())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().expect("stdin").write_all(message).expect("the message written to python3");
    let text = String::from_utf8(child.wait_with_output().expect("python3 ends").stdout).expect("UTF-8");
    let (subject, body) = text.split_once("\n\u{0}").unwrap_or((&text, ""));
    (subject.to_owned(), body.to_owned())
}
