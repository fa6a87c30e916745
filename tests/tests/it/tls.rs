//! Every hop on TLS: the five services as processes calling each other with mutual TLS, each
//! with its own certificate, on a PostgreSQL, a RabbitMQ and a Redis that speak TLS only, mailing
//! through a relay that requires STARTTLS. Plaintext and strangers are refused at the door, and
//! a certificate renewed on disk is served without a restart.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pos_e2e::mail::SmtpSink;
use pos_e2e::{KAMCHATKA_CENTER, Mode, Options, ServiceProcess, config, e_diary_appeal, wait_for_tickets};
use pos_platform::auth::Role;
use pos_platform::config::Secret;
use pos_platform::testing::{self, TestCa, TlsPostgres, TlsRabbit, TlsRedis};
use pos_platform::tls::ClientTls;
use pos_proto::v1::intake_service_client::IntakeServiceClient;

const POS: &str = env!("CARGO_BIN_EXE_pos-under-test");

/// The `[tls]` and `servers_ca_file` settings of one service process: it serves with its own
/// certificate, requires one from `services` of its callers, and presents its own to its peers.
fn tls_env(services: &TestCa, servers: &TestCa, name: &str) -> Vec<(String, String)> {
    let (cert, key) = services.issue(&format!("{name}.pos"));
    let path = |p: &Path| p.display().to_string();
    vec![
        ("POS_SERVERS_CA_FILE".into(), path(&servers.ca_file())),
        ("POS_TLS__CERT_FILE".into(), path(&cert)),
        ("POS_TLS__KEY_FILE".into(), path(&key)),
        ("POS_TLS__CLIENT_CA_FILE".into(), path(&services.ca_file())),
        ("POS_TLS__REQUIRE_CLIENT_CERT".into(), "true".into()),
        ("POS_TLS__CA_FILE".into(), path(&services.ca_file())),
        ("POS_TLS__CLIENT_CERT_FILE".into(), path(&cert)),
        ("POS_TLS__CLIENT_KEY_FILE".into(), path(&key)),
        ("POS_TLS__RELOAD_SECS".into(), "1".into()),
    ]
}

/// The SHA-256 fingerprint of the certificate a TLS server at `port` presents now (asked as a
/// client with `client`'s certificate, since the server requires one), or of a PEM file.
fn served_fingerprint(port: u16, ca: &Path, client: (&Path, &Path)) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername localhost -CAfile {} -cert {} -key {} \
         </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
        ca.display(),
        client.0.display(),
        client.1.display()
    );
    let output = Command::new("sh").args(["-c", &script]).output().expect("openssl runs");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn file_fingerprint(pem: &Path) -> String {
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem)
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn port_of(endpoint: &str) -> u16 {
    endpoint.rsplit(':').next().and_then(|port| port.parse().ok()).expect("an endpoint with a port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appeal_reaches_the_applicants_mail_with_every_hop_on_tls() {
    testing::init_for_tests_once();
    // The servers' certificates come from one authority, the services' from another.
    let servers = TestCa::named("pos servers");
    let services = TestCa::named("pos services");
    let servers = std::sync::Arc::new(servers);
    let (postgres, redis, rabbit) = {
        let (a, b, c) = (servers.clone(), servers.clone(), servers.clone());
        let postgres = tokio::task::spawn_blocking(move || TlsPostgres::start(&a));
        let redis = tokio::task::spawn_blocking(move || TlsRedis::start(&b));
        let rabbit = tokio::task::spawn_blocking(move || TlsRabbit::start(&c));
        (postgres.await.unwrap(), redis.await.unwrap(), rabbit.await.unwrap())
    };
    let sink = SmtpSink::start_tls(&servers.cert_file(), &servers.key_file());

    let options = Options::new(Mode::Servers);
    let mut base = config(Mode::Servers, &options.data, &options.run_id, Some(&rabbit.url()));
    base.database_url = Some(Secret::new(postgres.url()));
    base.redis_url = Some(Secret::new(redis.url()));
    for url in [postgres.url(), redis.url(), rabbit.url(), sink.url()] {
        assert!(
            url.starts_with("postgres://") && url.contains("sslmode=verify-full")
                || url.starts_with("rediss://")
                || url.starts_with("amqps://")
                || url.contains("tls=required"),
            "{url} is a TLS URL"
        );
    }

    // The test calls as an integration with a certificate of its own.
    let (cert, key) = services.issue("integration.pos");
    let client = ClientTls::from_files(&services.ca_file(), Some((&cert, &key)), None).unwrap();
    // What this test process's own `https://` channels use (`grpc::channel`).
    pos_platform::tls::set_process_client(Some(client.clone()));
    let start = |service: &'static str, peers: Vec<(&'static str, String)>| {
        let mut env = tls_env(&services, &servers, service);
        env.extend(
            peers
                .into_iter()
                .map(|(service, endpoint)| (format!("POS_PEERS__{}", service.to_ascii_uppercase()), endpoint)),
        );
        if service == "notify" {
            env.push(("POS_NOTIFY__SMTP_URL".into(), sink.url()));
            env.push(("POS_NOTIFY__POLL_MS".into(), "50".into()));
        }
        let (base, client) = (base.clone(), client.clone());
        async move {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            ServiceProcess::start_tls(POS, &[service], &base, &env, &client).await.expect("the service starts on TLS")
        }
    };
    let routing = start("routing", vec![]).await;
    let ticketing = start("ticketing", vec![("routing", routing.endpoint.clone())]).await;
    let intake = start("intake", vec![("routing", routing.endpoint.clone())]).await;
    let _sla = start("sla", vec![]).await;
    let _notify =
        start("notify", vec![("ticketing", ticketing.endpoint.clone()), ("routing", routing.endpoint.clone())]).await;
    for process in [&routing, &ticketing, &intake] {
        assert!(process.endpoint.starts_with("https://"), "{} serves TLS", process.endpoint);
    }

    // Submission → routing → ticket with its deadline → the registration e-mail, every hop on TLS.
    let token = testing::token("integration-tls", "", "41", &[Role::System]);
    let channel = pos_platform::grpc::channel_with(&intake.endpoint, Some(&client)).unwrap();
    let appeal = e_diary_appeal(&testing::unique("tls"));
    let email = appeal.applicant.as_ref().unwrap().email.clone();
    let submitted = IntakeServiceClient::new(channel)
        .submit_appeal(pos_platform::grpc::outgoing(appeal, &token))
        .await
        .expect("accepted over mutual TLS")
        .into_inner();
    let tickets = wait_for_tickets(&ticketing.endpoint, KAMCHATKA_CENTER, 1, Duration::from_secs(60)).await.unwrap();
    assert!(tickets.iter().any(|ticket| ticket.appeal_id == submitted.appeal_id), "the appeal has its ticket");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.messages(&email).is_empty() {
        assert!(Instant::now() < deadline, "no e-mail reached the applicant over STARTTLS");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A plaintext client gets no answer from a TLS listener.
    let plaintext = pos_platform::grpc::channel(&intake.endpoint.replace("https://", "http://")).unwrap();
    let refused = IntakeServiceClient::new(plaintext)
        .submit_appeal(pos_platform::grpc::outgoing(e_diary_appeal(&testing::unique("plain")), &token))
        .await;
    assert!(refused.is_err(), "a plaintext call is refused");

    // A client whose certificate another authority signed is refused, though it trusts the server.
    let stranger_ca = TestCa::named("somebody else");
    let (stranger_cert, stranger_key) = stranger_ca.issue("integration.pos");
    let stranger = ClientTls::from_files(&services.ca_file(), Some((&stranger_cert, &stranger_key)), None).unwrap();
    let refused = match pos_platform::grpc::channel_with(&intake.endpoint, Some(&stranger)) {
        Ok(channel) => IntakeServiceClient::new(channel)
            .submit_appeal(pos_platform::grpc::outgoing(e_diary_appeal(&testing::unique("stranger")), &token))
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(refused, "a certificate from another CA is refused");

    // Intake's certificate renewed on disk: new connections get the new one, without a restart.
    // `TestCa::issue` names the files after the certificate's name, as `tls_env` asked.
    let intake_cert = services.ca_file().with_file_name("intake.pos.pem");
    let before = file_fingerprint(&intake_cert);
    let port = port_of(&intake.endpoint);
    assert_eq!(served_fingerprint(port, &services.ca_file(), (&cert, &key)), before, "the first certificate is served");
    services.issue("intake.pos");
    let after = file_fingerprint(&intake_cert);
    assert_ne!(before, after, "the certificate on disk changed");
    testing::eventually(Duration::from_secs(10), "the renewed certificate is served", || {
        let (ca, cert, key, after) = (services.ca_file(), cert.clone(), key.clone(), after.clone());
        async move { served_fingerprint(port, &ca, (&cert, &key)) == after }
    })
    .await;
    let channel = pos_platform::grpc::channel_with(&intake.endpoint, Some(&client)).unwrap();
    IntakeServiceClient::new(channel)
        .submit_appeal(pos_platform::grpc::outgoing(e_diary_appeal(&testing::unique("renewed")), &token))
        .await
        .expect("accepted with the renewed certificate");
}
