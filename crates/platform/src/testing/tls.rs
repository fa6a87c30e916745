//! TLS for servers a test starts: a certificate authority of the test's own ([`TestCa`]) with a
//! server certificate it signs for `localhost` and `127.0.0.1`, and a PostgreSQL
//! ([`TlsPostgres`]), a Redis ([`TlsRedis`]) and a RabbitMQ node ([`TlsRabbit`]) of the test's
//! own that accept TLS connections only. Starting is blocking: call from `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Datelike;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::{RabbitNode, TempDir, free_port};
use crate::servers_ca::ServersCa;

/// A certificate authority of the test's own and a server certificate it signed for
/// `localhost` and `127.0.0.1`, as PEM files in a directory removed on drop. Two of them do not
/// trust each other: a client given one's CA refuses a server with the other's certificate.
pub struct TestCa {
    dir: TempDir,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> TestCa {
        TestCa::named("pos test CA")
    }

    /// A CA whose certificate carries `common_name`, with its `localhost` server certificate.
    pub fn named(common_name: &str) -> TestCa {
        let dir = TempDir::new();
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.distinguished_name = named(common_name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        valid_around_now(&mut ca);
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_certificate = ca.self_signed(&ca_key).expect("CA certificate");
        std::fs::write(dir.0.join("ca.pem"), pem("CERTIFICATE", ca_certificate.der())).expect("CA file");
        let authority = TestCa { dir, issuer: Issuer::new(ca, ca_key) };
        let (certificate, key) = authority.sign(&["localhost", "127.0.0.1"], &[ExtendedKeyUsagePurpose::ServerAuth]);
        std::fs::write(authority.dir.0.join("server.pem"), certificate).expect("cert file");
        write_private(&authority.dir.0.join("server.key"), &key);
        authority
    }

    /// A certificate for `name` (its first DNS name and common name, also valid for `localhost`
    /// and `127.0.0.1`, where tests' servers listen) good for servers and clients alike, e.g.
    /// `routing.pos` for a service that serves and calls others: its PEM files `<name>.pem` and
    /// `<name>.key` in the CA's directory (a second issue for the same name replaces them).
    pub fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let (certificate, key) = self.issue_pem(name);
        let (cert_file, key_file) = (self.dir.0.join(format!("{name}.pem")), self.dir.0.join(format!("{name}.key")));
        std::fs::write(&cert_file, certificate).expect("cert file");
        write_private(&key_file, &key);
        (cert_file, key_file)
    }

    /// What [`TestCa::issue`] writes, as PEM text: the certificate and its key.
    pub fn issue_pem(&self, name: &str) -> (String, String) {
        self.sign(
            &[name, "localhost", "127.0.0.1"],
            &[ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    fn sign(&self, names: &[&str], usages: &[ExtendedKeyUsagePurpose]) -> (String, String) {
        let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("certificate parameters");
        params.distinguished_name = named(names[0]);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages.to_vec();
        valid_around_now(&mut params);
        let key = KeyPair::generate().expect("key");
        let certificate = params.signed_by(&key, &self.issuer).expect("certificate");
        (pem("CERTIFICATE", certificate.der()), pem("PRIVATE KEY", &key.serialize_der()))
    }

    /// The CA's certificate, PEM: what clients trust (`servers_ca_file`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.0.join("ca.pem")
    }

    /// The server's certificate, PEM.
    pub fn cert_file(&self) -> PathBuf {
        self.dir.0.join("server.pem")
    }

    /// The server's private key, PEM (PKCS #8), readable by its owner only.
    pub fn key_file(&self) -> PathBuf {
        self.dir.0.join("server.key")
    }

    /// The CA as the platform reads `servers_ca_file`.
    pub fn servers_ca(&self) -> ServersCa {
        ServersCa::load("servers_ca_file", &self.ca_file()).expect("the test CA loads")
    }

    /// Copies the server's certificate and key (and the CA) into `dir` for a server running as
    /// `user` (when the test runs as root; otherwise the server runs as the test's user): servers
    /// refuse a key others may read. Returns the certificate, key and CA paths.
    fn install(&self, dir: &Path, user: &str) -> (PathBuf, PathBuf, PathBuf) {
        let (cert, key, ca) = (dir.join("server.pem"), dir.join("server.key"), dir.join("ca.pem"));
        std::fs::copy(self.cert_file(), &cert).expect("server certificate copied");
        std::fs::copy(self.ca_file(), &ca).expect("CA copied");
        write_private(&key, &std::fs::read_to_string(self.key_file()).expect("server key"));
        if is_root() {
            let status = Command::new("chown").arg("-R").arg(format!("{user}:")).arg(dir).status().expect("chown runs");
            assert!(status.success(), "chown -R {user} {}", dir.display());
        }
        (cert, key, ca)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// Valid from last year to two years on: never expired, never a date far enough away for some
/// TLS stack to mind.
fn valid_around_now(params: &mut CertificateParams) {
    let year = chrono::Utc::now().year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// DER as a PEM block (RFC 7468: base64 in lines of 64).
fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

fn write_private(path: &Path, contents: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).expect("key file");
    file.write_all(contents.as_bytes()).expect("key written");
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// `program` with `args`, as `user` when the test runs as root (PostgreSQL refuses to run as root).
fn command_as(user: &str, program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", user, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
}

fn await_port(port: u16, limit: Duration, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < limit, "{what} did not listen on port {port} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// PostgreSQL's server programs: `$POS_TEST_PG_BIN`, else the newest Debian install
/// (`/usr/lib/postgresql/<version>/bin`), else whatever `PATH` has.
fn postgres_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("POS_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<u32>().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .max_by_key(|(version, _)| *version);
    newest.map(|(_, bin)| bin).unwrap_or_default()
}

/// A PostgreSQL cluster of the test's own on a spare loopback port, with `ssl = on` and a
/// `pg_hba.conf` that admits `hostssl` connections only (as `postgres`, trusted), so that a
/// plaintext connection is refused. Stopped and removed on drop.
pub struct TlsPostgres {
    port: u16,
    dir: TempDir,
}

impl TlsPostgres {
    pub fn start(ca: &TestCa) -> TlsPostgres {
        let bin = postgres_bin();
        let dir = TempDir::new();
        let data = dir.0.join("data");
        let (cert, key, _) = ca.install(&dir.0, "postgres");
        let mut initdb = command_as("postgres", &bin.join("initdb"));
        initdb.arg("-D").arg(&data).args(["-U", "postgres", "-A", "trust", "--no-sync", "--no-instructions"]);
        run(initdb, "initdb");
        let port = free_port();
        let config = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nfsync = off\n",
            dir.0.display(),
            cert.display(),
            key.display()
        );
        append(&data.join("postgresql.conf"), &config);
        std::fs::write(data.join("pg_hba.conf"), "hostssl all all 127.0.0.1/32 trust\n").expect("pg_hba.conf");
        let mut start = command_as("postgres", &bin.join("pg_ctl"));
        start.arg("-D").arg(&data).arg("-l").arg(dir.0.join("postgres.log")).args(["-w", "-t", "60", "start"]);
        let postgres = TlsPostgres { port, dir };
        run(start, "pg_ctl start");
        postgres
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL that verifies the server's certificate and name; the CA comes from
    /// `servers_ca_file` (or a `sslrootcert` a test appends).
    pub fn url(&self) -> String {
        self.url_with("sslmode=verify-full")
    }

    /// The URL with other parameters, e.g. `sslmode=disable`.
    pub fn url_with(&self, query: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?{query}", self.port)
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let mut stop = command_as("postgres", &postgres_bin().join("pg_ctl"));
        stop.arg("-D").arg(self.dir.0.join("data")).args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).expect("file to append to");
    file.write_all(text.as_bytes()).expect("appended");
}

/// A Redis of the test's own that listens with TLS only (no plaintext port), on a spare
/// loopback port, keeping nothing on disk. Stopped on drop.
pub struct TlsRedis {
    port: u16,
    child: Child,
    _dir: TempDir,
}

impl TlsRedis {
    pub fn start(ca: &TestCa) -> TlsRedis {
        let dir = TempDir::new();
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(ca.cert_file())
            .arg("--tls-key-file")
            .arg(ca.key_file())
            .arg("--tls-ca-cert-file")
            .arg(ca.ca_file())
            .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let redis = TlsRedis { port, child, _dir: dir };
        await_port(port, Duration::from_secs(20), "redis-server");
        redis
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rediss://` at the address the certificate names.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A RabbitMQ node of the test's own ([`RabbitNode`]) with an SSL listener beside its plain
/// one: the server's certificate, no client certificates asked for. Stopped on drop.
pub struct TlsRabbit {
    node: RabbitNode,
    tls_port: u16,
}

impl TlsRabbit {
    pub fn start(ca: &TestCa) -> TlsRabbit {
        let tls_port = free_port();
        let node = RabbitNode::start_configured(|dir| {
            let tls = dir.join("tls");
            std::fs::create_dir_all(&tls).expect("tls directory");
            // The node's directory is handed to the broker's user as a whole after this.
            let (cert, key, ca_file) = ca.install(&tls, "rabbitmq");
            format!(
                "listeners.ssl.default = 127.0.0.1:{tls_port}\nssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\nssl_options.keyfile = {}\nssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                ca_file.display(),
                cert.display(),
                key.display()
            )
        });
        await_port(tls_port, Duration::from_secs(30), "the RabbitMQ SSL listener");
        TlsRabbit { node, tls_port }
    }

    pub fn node(&self) -> &RabbitNode {
        &self.node
    }

    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// `amqps://` at the address the certificate names.
    pub fn url(&self) -> String {
        format!("amqps://guest:guest@127.0.0.1:{}/%2f", self.tls_port)
    }
}
