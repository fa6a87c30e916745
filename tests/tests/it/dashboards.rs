//! The dashboards and alerts operations rely on, against a real Prometheus (Debian's
//! `prometheus`) scraping a running platform under a short load: every expression of every
//! panel returns data, and every alert rule loads and evaluates without error. A panel that
//! shows nothing is a failing test, so a renamed metric cannot silently blank a dashboard.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pos_e2e::{KAMCHATKA_CENTER, Mode, Options, Platform, e_diary_appeal, free_port, tatarstan_e_diary_appeal};
use pos_platform::auth::Role;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A Prometheus of our own on a spare port, scraping `target` every second and loading the
/// platform's alert rules; stopped when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: testing::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: the test command installs Debian's prometheus package (deploy/local/servers.sh)"
        );
        let dir = testing::TempDir::new();
        let rules = repo().join("deploy/prometheus/rules");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}/*.yml\n\
             scrape_configs:\n  - job_name: pos\n    static_configs:\n      - targets: ['{target}']\n",
            rules = rules.display()
        );
        let config_path = dir.0.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        Prometheus { child, addr, _dir: dir }
    }

    /// `GET path` on the Prometheus HTTP API, as JSON.
    fn get(&self, path: &str) -> Option<serde_json::Value> {
        let mut stream = std::net::TcpStream::connect(self.addr).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    }

    /// The instant result of `expr`: its series, empty when it has none.
    fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let answer = self.get(&format!("/api/v1/query?query={}", encode(expr))).ok_or("no answer")?;
        if answer["status"] != "success" {
            return Err(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        Ok(answer["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encoding of a query parameter (everything but the unreserved characters).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every (dashboard, panel, expression) of `deploy/grafana/dashboards`, with Grafana's
/// variables given the values a person opening the dashboard starts with (all regions).
fn panel_expressions() -> Vec<(String, String, String)> {
    let dir = repo().join("deploy/grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut found = Vec::new();
    for file in files.into_iter().filter(|f| f.extension().is_some_and(|e| e == "json")) {
        let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let title = dashboard["title"].as_str().unwrap().to_owned();
        for panel in dashboard["panels"].as_array().unwrap() {
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{title} / {}: a panel without a query", panel["title"]);
            for target in targets {
                let expr = target["expr"].as_str().unwrap().replace("$__rate_interval", "30s").replace("$region", ".*");
                found.push((title.clone(), panel["title"].as_str().unwrap().to_owned(), expr));
            }
        }
    }
    assert!(found.len() >= 20, "the dashboards hold {} queries", found.len());
    found
}

/// Load that touches every panel: appeals in two regions, one answered, rejected by the
/// applicant (a re-review), answered again and accepted; another assigned with a stage deadline
/// already past (an assignment made late: its overdue timer fires at once), and a command sent
/// with the version from before that assignment (a stale card: refused).
async fn load(platform: &Platform) {
    let ids = platform
        .submit_many(12, 4, |i| {
            let id = testing::unique(&format!("dash-{i}"));
            if i % 2 == 0 { e_diary_appeal(&id) } else { tatarstan_e_diary_appeal(&id) }
        })
        .await
        .unwrap();
    assert_eq!(ids.len(), 12);
    let tickets = platform.wait_for_tickets(KAMCHATKA_CENTER, 6, Duration::from_secs(60)).await.unwrap();
    let token = |subject: &str, role: Role| testing::token(subject, KAMCHATKA_CENTER, "41", &[role]);
    let mut ticketing = platform.ticketing();
    let staff = pb::StaffMember {
        subject: "executor-dash".into(),
        organization_id: KAMCHATKA_CENTER.into(),
        full_name: "Петров Иван".into(),
        email: "petrov@kcioko.example".into(),
        roles: vec!["executor".into()],
        active: true,
    };
    ticketing.upsert_staff(outgoing(staff, &token("admin", Role::OrgAdmin))).await.expect("staff saved");
    let (coordinator, executor, head) = (
        token("coordinator-1", Role::Coordinator),
        token("executor-dash", Role::Executor),
        token("head-1", Role::Head),
    );
    let applicant = testing::token("esia-1001", "", "41", &[Role::Applicant]);
    let id = tickets[0].id.clone();
    let mut version = tickets[0].version;
    let assign = pb::AssignExecutorRequest {
        ticket_id: id.clone(),
        expected_version: version,
        executor_id: "executor-dash".into(),
        execution_due: None,
    };
    version = ticketing.assign_executor(outgoing(assign, &coordinator)).await.expect("assigned").into_inner().version;
    let take = pb::TakeInWorkRequest { ticket_id: id.clone(), expected_version: version };
    version = ticketing.take_in_work(outgoing(take, &executor)).await.expect("taken").into_inner().version;
    for round in 0..2 {
        let answer = pb::Answer {
            r#type: pos_proto::v1::events::AnswerType::Resolved as i32,
            text: format!("Здравствуйте! Доступ к электронному дневнику предоставлен ({round})."),
            ..Default::default()
        };
        let prepare = pb::PrepareAnswerRequest {
            ticket_id: id.clone(),
            expected_version: version,
            answer: Some(answer),
            ..Default::default()
        };
        version = ticketing.prepare_answer(outgoing(prepare, &executor)).await.expect("prepared").into_inner().version;
        let send = pb::VersionRequest { ticket_id: id.clone(), expected_version: version };
        version = ticketing.send_for_approval(outgoing(send, &executor)).await.expect("sent").into_inner().version;
        let approve = pb::ApproveRequest { ticket_id: id.clone(), expected_version: version, edited: None };
        version = ticketing.approve(outgoing(approve, &head)).await.expect("approved").into_inner().version;
        if round == 0 {
            let reject = pb::CommentRequest {
                ticket_id: id.clone(),
                expected_version: version,
                comment: "Доступа так и нет".into(),
                attachment_ids: Vec::new(),
            };
            version =
                ticketing.reject_answer(outgoing(reject, &applicant)).await.expect("re-review").into_inner().version;
            let take = pb::TakeInWorkRequest { ticket_id: id.clone(), expected_version: version };
            version =
                ticketing.take_in_work(outgoing(take, &executor)).await.expect("taken again").into_inner().version;
        }
    }
    let accept = pb::AcceptAnswerRequest { ticket_id: id, expected_version: version, rating: 5 };
    ticketing.accept_answer(outgoing(accept, &applicant)).await.expect("accepted");

    let late = &tickets[1];
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    let assign = pb::AssignExecutorRequest {
        ticket_id: late.id.clone(),
        expected_version: late.version,
        executor_id: "executor-dash".into(),
        execution_due: Some(two_days_ago.into()),
    };
    ticketing.assign_executor(outgoing(assign, &coordinator)).await.expect("assigned late");
    let stale = pb::TakeInWorkRequest { ticket_id: late.id.clone(), expected_version: late.version };
    let refused = ticketing.take_in_work(outgoing(stale, &executor)).await.expect_err("a stale version is refused");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_and_alert_rule_evaluates_against_a_running_platform() {
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let mut options = Options::new(Mode::Embedded);
    options.metrics_addr = Some(metrics);
    let platform = Platform::start_with(options).await.expect("platform starts");
    let prometheus = Prometheus::start(metrics);
    load(&platform).await;

    // Rates need two scrapes in their window and the gauges are sampled every few seconds:
    // ask until every query answers with data, and report the ones that never did.
    let expressions = panel_expressions();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut empty: BTreeMap<String, String> = BTreeMap::new();
    loop {
        empty.clear();
        for (dashboard, panel, expr) in &expressions {
            match prometheus.query(expr) {
                Ok(series) if !series.is_empty() => {}
                Ok(_) => {
                    empty.insert(format!("{dashboard} / {panel}"), format!("no data: {expr}"));
                }
                Err(error) => {
                    empty.insert(format!("{dashboard} / {panel}"), format!("{error}: {expr}"));
                }
            }
        }
        if empty.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(empty.is_empty(), "panels without data:\n{empty:#?}");

    // Every alert rule is loaded and evaluates without error against real series.
    let rules = prometheus.get("/api/v1/rules").expect("rules answer");
    let mut loaded = Vec::new();
    for group in rules["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(rule["health"], "ok", "{}: {}", rule["name"], rule["lastError"]);
            loaded.push(rule["name"].as_str().unwrap().to_owned());
        }
    }
    assert!(loaded.len() >= 9, "alert rules loaded: {loaded:?}");
    drop(prometheus);
    platform.stop().await.expect("stops");
}

/// `promtool check rules` and `promtool test rules`: each alert has a case that fires and one
/// that does not (deploy/prometheus/tests).
#[test]
fn alert_rules_pass_promtool() {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: the test command installs Debian's prometheus package"
    );
    let dir = repo().join("deploy/prometheus");
    let check = Command::new(PROMTOOL).arg("check").arg("rules").arg(dir.join("rules/pos.yml")).output().unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = Command::new(PROMTOOL).arg("test").arg("rules").arg(dir.join("tests/pos_test.yml")).output().unwrap();
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );

    // Every alert has a runbook section where its annotation points.
    let rules = std::fs::read_to_string(dir.join("rules/pos.yml")).unwrap();
    let runbook = std::fs::read_to_string(repo().join("docs/runbook.md")).unwrap();
    let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(alerts.len() >= 9, "{alerts:?}");
    for alert in alerts {
        assert!(runbook.contains(&format!("\n## {alert}\n")), "docs/runbook.md has no section for {alert}");
        assert!(rules.contains(&format!("docs/runbook.md#{}", alert.to_lowercase())), "{alert} has no runbook link");
        let tests = std::fs::read_to_string(dir.join("tests/pos_test.yml")).unwrap();
        assert!(tests.contains(&format!("alertname: {alert}")), "{alert} has no promtool test");
    }
}
