//! One front door: the five services as separate processes, each told every service's peers
//! once (`POS_PEERS__…`); a client talks to ONE process and reaches every service through it,
//! the owner still authenticates, and a service's calls to its peers are balanced over their
//! replicas.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use pos_e2e::{
    KAMCHATKA_CENTER, Mode, Options, Platform, ServiceProcess, config, e_diary_appeal, free_port, peers_env,
};
use pos_platform::auth::Role;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;
use pos_proto::v1::intake_service_client::IntakeServiceClient;
use pos_proto::v1::sla_service_client::SlaServiceClient;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;

const POS: &str = env!("CARGO_BIN_EXE_pos-under-test");

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The `/metrics` page at `addr`.
async fn scrape(addr: std::net::SocketAddr) -> String {
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("metrics endpoint answers");
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    })
    .await
    .unwrap()
}

/// The sum of the samples of `metric` whose labels contain every one of `labels`.
fn sum_of(page: &str, metric: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit_once(' ').and_then(|(_, value)| value.parse::<f64>().ok()))
        .sum()
}

/// Calls a routing replica answered from intake's classifier refresher.
fn classifier_calls(page: &str) -> f64 {
    sum_of(page, "pos_grpc_requests_total", &["/pos.v1.RoutingService/ListClassifier"])
        + sum_of(page, "pos_grpc_requests_total", &["/pos.v1.RoutingService/ListRegions"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_is_the_front_door_and_peer_calls_are_balanced() {
    let options = Options::new(Mode::Servers);
    let base = config(Mode::Servers, &options.data, &options.run_id, None);
    let endpoint = |port: u16| format!("http://127.0.0.1:{port}");
    let ports: Vec<(&str, u16)> = ["routing", "routing", "ticketing", "sla", "notify", "intake"]
        .into_iter()
        .map(|service| (service, free_port().unwrap()))
        .collect();
    // One peer list for every process, as one shared configuration file would give it; a
    // process ignores the entry of a service it hosts.
    let peers: Vec<(&str, Vec<String>)> = ["intake", "routing", "ticketing", "sla", "notify"]
        .into_iter()
        .map(|service| {
            let endpoints = ports.iter().filter(|(s, _)| *s == service).map(|(_, port)| endpoint(*port)).collect();
            (service, endpoints)
        })
        .collect();
    let mut env = peers_env(&peers);
    // Intake asks routing for the classifier every second: enough calls to see the balance.
    env.push(("POS_INTAKE__CLASSIFIER_REFRESH_SECS".to_owned(), "1".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();

    // Routing first: intake validates against it.
    let mut processes = Vec::new();
    for (service, port) in &ports {
        let mut config = base.clone();
        config.metrics_addr = Some(free_addr());
        let process =
            ServiceProcess::start_on_port(POS, &[service], &config, &env, *port).await.expect("the service starts");
        processes.push((*service, process, config.metrics_addr.unwrap()));
    }
    // The front door: the first routing replica, which hosts nothing but routing.
    let front = processes[0].1.endpoint.clone();
    let channel = || pos_platform::grpc::channel(&front).unwrap();

    // Submit through routing's process: forwarded to intake.
    let operator = testing::token("operator-front", "", "41", &[Role::Operator]);
    let submitted = IntakeServiceClient::new(channel())
        .submit_appeal(outgoing(e_diary_appeal(&testing::unique("front")), &operator))
        .await
        .expect("a submission through the front door is accepted")
        .into_inner();

    // List tickets through it: forwarded to ticketing.
    let tickets = pos_e2e::wait_for_tickets(&front, KAMCHATKA_CENTER, 1, Duration::from_secs(60)).await.unwrap();
    assert!(tickets.iter().any(|t| t.appeal_id == submitted.appeal_id), "the appeal has its ticket");

    // Read the deadlines through it (forwarded to sla), and wait until ticketing shows them.
    let system = testing::token("system-front", "", "", &[Role::System]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let request = pb::GetDeadlinesRequest { appeal_id: submitted.appeal_id.clone() };
        match SlaServiceClient::new(channel()).get_deadlines(outgoing(request, &system)).await {
            Ok(deadlines) if deadlines.get_ref().answer.is_some() => break,
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => panic!("deadlines through the front door: {status}"),
        }
        assert!(Instant::now() < deadline, "the appeal's deadlines never showed through the front door");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    pos_e2e::wait_for_deadlines(
        &front,
        KAMCHATKA_CENTER,
        std::slice::from_ref(&submitted.appeal_id),
        Duration::from_secs(60),
    )
    .await
    .unwrap();

    // A workflow command through it, with the staff it needs.
    let token = |subject: &str, role: Role| testing::token(subject, KAMCHATKA_CENTER, "41", &[role]);
    let mut ticketing = TicketingServiceClient::new(channel());
    let executor = pb::StaffMember {
        subject: "executor-front".into(),
        organization_id: KAMCHATKA_CENTER.into(),
        full_name: "Петров Иван".into(),
        email: "petrov@kcioko.example".into(),
        roles: vec!["executor".into()],
        active: true,
    };
    ticketing.upsert_staff(outgoing(executor, &token("admin", Role::OrgAdmin))).await.expect("staff saved");
    // The ticket as it is now (the deadline's arrival changed it).
    let tickets = pos_e2e::all_tickets(&front, KAMCHATKA_CENTER).await.unwrap();
    let ticket = tickets.iter().find(|t| t.appeal_id == submitted.appeal_id).unwrap();
    let assign = pb::AssignExecutorRequest {
        ticket_id: ticket.id.clone(),
        expected_version: ticket.version,
        executor_id: "executor-front".into(),
        execution_due: None,
    };
    let assigned = ticketing
        .assign_executor(outgoing(assign, &token("coordinator-front", Role::Coordinator)))
        .await
        .expect("assigned through the front door")
        .into_inner();
    assert_eq!(assigned.version, ticket.version + 1);

    // Any process is a front door: the tickets again, through sla's.
    let sla_front = &processes.iter().find(|(service, _, _)| *service == "sla").unwrap().1.endpoint;
    let through_sla = pos_e2e::all_tickets(sla_front, KAMCHATKA_CENTER).await.unwrap();
    assert!(through_sla.iter().any(|t| t.appeal_id == submitted.appeal_id));

    // Forwarding keeps authentication with the owner: a bad token is UNAUTHENTICATED, from intake
    // and from ticketing alike.
    let refused = IntakeServiceClient::new(channel())
        .submit_appeal(outgoing(e_diary_appeal(&testing::unique("front-bad")), "not-a-token"))
        .await
        .expect_err("a bad token is refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let request = pb::ListTicketsRequest { organization_id: KAMCHATKA_CENTER.into(), ..Default::default() };
    let refused = TicketingServiceClient::new(channel())
        .list_tickets(outgoing(request, "not-a-token"))
        .await
        .expect_err("a bad token is refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");

    // The front forwarded (it counts what it sent on), and both routing replicas serve intake.
    let front_metrics = scrape(processes[0].2).await;
    for service in ["intake", "ticketing", "sla"] {
        let forwarded = sum_of(
            &front_metrics,
            "pos_grpc_forwarded_total",
            &[&format!("service=\"{service}\""), "outcome=\"forwarded\""],
        );
        assert!(forwarded > 0.0, "the front door forwarded no {service} call:\n{front_metrics}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let first = classifier_calls(&scrape(processes[0].2).await);
        let second = classifier_calls(&scrape(processes[1].2).await);
        if first > 0.0 && second > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "intake's calls did not reach both routing replicas: {first} and {second} classifier calls"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    for (_, process, _) in processes {
        let status =
            tokio::task::spawn_blocking(move || process.terminate(Duration::from_secs(30))).await.unwrap().unwrap();
        assert!(status.success());
    }
    Platform::start_with(options).await.expect("starts to clean up").stop().await.expect("cleans up");
}
