//! Two replicas of every service, as ten processes, on a three-node RabbitMQ cluster of the
//! test's own (quorum queues with a member on every node), PostgreSQL, Redis and a real SMTP
//! sink. 2,000 appeals are submitted across both intake replicas. A fifth in, the broker node
//! most clients are on is stopped. A quarter in, with that node down, one replica of each
//! service is killed (SIGKILL) and started again, connecting to the nodes still up; half in, the
//! other replica of each is stopped (SIGTERM) and started again; three quarters in, the node is
//! started again, so the end checks see the whole cluster. Every appeal ends with exactly one
//! ticket that shows its answer deadline, exactly one deadline in sla and its registration
//! e-mail; e-mails sent twice in the crash window are counted and bounded. Every queue of the
//! run is a quorum queue with a member on each of the three nodes, before and after.
//!
//! Where network namespaces can be made (`ip netns add`; the test runs as root), each replica
//! runs on a host of its own: a namespace joined by a veth pair to a bridge in the test's
//! namespace, with an address of its own and the same gRPC port as every other replica. The
//! broker nodes listen on the bridge too. PostgreSQL, Redis and the SMTP sink listen on loopback
//! only, so the test relays each, byte for byte, from the bridge to loopback. Where namespaces
//! cannot be made, every replica runs on loopback and the test's output says so. Named `fault_`
//! so that it runs alone.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pos_e2e::mail::SmtpSink;
use pos_e2e::{
    Host, KAMCHATKA_CENTER, Mode, Options, Platform, ServiceProcess, all_tickets, assert_one_ticket_per_appeal, config,
    e_diary_appeal, free_port, peers_env, wait_for_deadlines, wait_for_tickets,
};
use pos_platform::auth::Role;
use pos_platform::config::{PlatformConfig, Secret};
use pos_platform::grpc::outgoing;
use pos_platform::testing::{self, ClusterQueue, RabbitCluster, TempDir};
use pos_proto::BusEvent;
use pos_proto::v1 as pb;
use pos_proto::v1::events::AppealReceived;
use pos_proto::v1::intake_service_client::IntakeServiceClient;
use pos_proto::v1::notify_service_client::NotifyServiceClient;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;
use sqlx::Row;
use tonic::transport::Channel;

const POS: &str = env!("CARGO_BIN_EXE_pos-under-test");
const APPEALS: usize = 2_000;
/// Submissions in flight at once, spread over both intake replicas.
const IN_FLIGHT: usize = 32;
/// In start order: routing first (intake validates against it), notify last.
const SERVICES: [&str; 5] = ["routing", "ticketing", "intake", "sla", "notify"];
const REPLICAS: usize = 2;
/// The replica of each service that is killed, and the one that is stopped gracefully.
const KILLED: usize = 1;
const TERMINATED: usize = 0;
/// The broker's nodes; a quorum queue on them survives one node down.
const BROKER_NODES: usize = 3;
/// Every replica's gRPC port on a host of its own.
const GRPC_PORT: u16 = 50051;
/// notify's messages in flight per process (`[notify] concurrency`), set explicitly because
/// the duplicate bound below is counted in it.
const NOTIFY_CONCURRENCY: usize = 16;
/// A `sending` row older than this is sent again by the other replica: short, so that the rows
/// the killed notify had claimed go out soon, yet well above the SMTP timeout.
const NOTIFY_LEASE_SECS: u64 = 15;
const SMTP_TIMEOUT_SECS: u64 = 5;
/// Each replica's database pool.
const DB_CONNECTIONS: u32 = 5;

/// What a replica of `service` is told of its peers: every replica of every other service, over
/// which the platform balances its calls (intake's to routing, notify's to ticketing and
/// routing). A killed replica comes back on the same host and port. The one place that knows
/// how peers are configured.
fn peer_env(service: &str, endpoints: &[(&str, Vec<String>)]) -> Vec<(String, String)> {
    let others: Vec<(&str, Vec<String>)> =
        endpoints.iter().filter(|(peer, _)| *peer != service).map(|(peer, list)| (*peer, list.clone())).collect();
    peers_env(&others)
}

/// Runs `ip <args>`; the error says what failed and why.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = std::process::Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// A `10.a.b.0/24` that no interface or route here uses.
fn free_subnet() -> Result<[u8; 2], String> {
    let mut taken = String::new();
    for args in [&["-4", "-o", "addr", "show"][..], &["-4", "route", "show", "table", "all"][..]] {
        let output = std::process::Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
        taken.push_str(&String::from_utf8_lossy(&output.stdout));
    }
    for _ in 0..64 {
        let random = uuid::Uuid::new_v4();
        let [a, b] = [200 + random.as_bytes()[0] % 50, random.as_bytes()[1]];
        if !taken.contains(&format!("10.{a}.{b}.")) {
            return Ok([a, b]);
        }
    }
    Err("no free 10.x.y.0/24 subnet".to_owned())
}

/// Hosts of their own for the replicas: a network namespace each, joined by a veth pair to a
/// bridge in the test's namespace, whose address (the gateway) is where the hosts find the
/// broker and the relays to the servers on loopback. Removed on drop.
struct Network {
    bridge: String,
    gateway: Ipv4Addr,
    hosts: Vec<Host>,
    relays: Vec<tokio::task::JoinHandle<()>>,
}

impl Network {
    /// `count` hosts, or why they cannot be made here. Blocking.
    fn create(count: usize) -> Result<Network, String> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
        let [a, b] = free_subnet()?;
        // Interface names have at most 15 bytes.
        let bridge = format!("posbr{id}");
        let gateway = Ipv4Addr::new(10, a, b, 1);
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        // From here on, dropping it removes whatever was made.
        let mut network = Network { bridge: bridge.clone(), gateway, hosts: Vec::new(), relays: Vec::new() };
        ip(&["addr", "add", &format!("{gateway}/24"), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for k in 0..count {
            let netns = format!("pos-{id}-{k}");
            let address = Ipv4Addr::new(10, a, b, u8::try_from(k + 2).map_err(|_| "too many hosts")?);
            let (outside, inside) = (format!("pv{id}h{k}"), format!("pv{id}n{k}"));
            ip(&["netns", "add", &netns])?;
            network.hosts.push(Host { netns: Some(netns.clone()), address: address.into() });
            ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside])?;
            ip(&["link", "set", &inside, "netns", &netns])?;
            ip(&["link", "set", &outside, "master", &bridge])?;
            ip(&["link", "set", &outside, "up"])?;
            ip(&["-n", &netns, "addr", "add", &format!("{address}/24"), "dev", &inside])?;
            ip(&["-n", &netns, "link", "set", &inside, "up"])?;
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        }
        Ok(network)
    }

    /// `url` (a server on the test's loopback) as the hosts reach it: through a relay on the
    /// gateway that copies each connection's bytes both ways.
    async fn relayed(&mut self, url: &str, default_port: u16) -> String {
        let target = server_address(url, default_port);
        let listener = tokio::net::TcpListener::bind((self.gateway, 0)).await.expect("a relay on the bridge");
        let at = listener.local_addr().expect("the relay's address");
        self.relays.push(tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
        let authority = authority(url);
        format!("{}{at}{}", &url[..authority.start], &url[authority.end..])
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for relay in &self.relays {
            relay.abort();
        }
        // A namespace's veth goes with it, and its peer on the bridge with that.
        for host in &self.hosts {
            if let Some(netns) = &host.netns {
                let _ = ip(&["netns", "del", netns]);
            }
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// Where a server URL's host and port are: after the scheme and any user, up to the path.
fn authority(url: &str) -> std::ops::Range<usize> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find(['/', '?']).map_or(url.len(), |i| start + i);
    let start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    start..end
}

/// The address a server URL names (`default_port` when it names no port).
fn server_address(url: &str, default_port: u16) -> SocketAddr {
    let authority = &url[authority(url)];
    let has_port = authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    let authority = if has_port { authority.to_owned() } else { format!("{authority}:{default_port}") };
    let addresses: Vec<SocketAddr> =
        authority.to_socket_addrs().unwrap_or_else(|error| panic!("{authority}: {error}")).collect();
    addresses.iter().find(|a| a.is_ipv4()).or(addresses.first()).copied().unwrap_or_else(|| panic!("{authority}"))
}

/// How many times each Message-ID arrived at `sink`.
fn arrivals(sink: &SmtpSink) -> HashMap<String, usize> {
    let mut arrivals = HashMap::new();
    for id in sink.files().iter().filter_map(|file| message_id(file)) {
        *arrivals.entry(id).or_insert(0) += 1;
    }
    arrivals
}

/// The ledger row id a message carries in its Message-ID (`<id@pos.notify>`).
fn message_id(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let header = text.lines().take_while(|line| !line.is_empty()).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("message-id").then(|| value.trim().to_owned())
    })?;
    Some(header.trim_start_matches('<').split('@').next()?.to_owned())
}

/// One replica: a `pos up --services <service>` process on a host and port that stay its own
/// across restarts, so that its peers find it again.
struct Replica {
    service: &'static str,
    host: Host,
    port: u16,
    config: PlatformConfig,
    env: Vec<(String, String)>,
    process: Option<ServiceProcess>,
    _data: TempDir,
}

impl Replica {
    fn endpoint(&self) -> String {
        format!("http://{}", SocketAddr::new(self.host.address, self.port))
    }

    async fn start(&mut self) {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
        let process = ServiceProcess::start_on_host(POS, &[self.service], &self.config, &env, &self.host, self.port)
            .await
            .unwrap_or_else(|error| panic!("{} on {} starts: {error}", self.service, self.endpoint()));
        self.process = Some(process);
    }
}

/// The ten replicas, `replicas[service][r]`.
struct Fleet {
    replicas: Vec<[Replica; REPLICAS]>,
}

impl Fleet {
    /// `hosts[service * REPLICAS + r]` runs replica `r` of `service`.
    fn new(base: &PlatformConfig, shared_env: &[(String, String)], hosts: &[Host]) -> Fleet {
        let placed: Vec<[(Host, u16); REPLICAS]> = (0..SERVICES.len())
            .map(|s| {
                std::array::from_fn(|r| {
                    let host = hosts[s * REPLICAS + r].clone();
                    // On a host of its own every replica has the same port, as on machines.
                    let port = if host.netns.is_some() { GRPC_PORT } else { free_port().expect("a free port") };
                    (host, port)
                })
            })
            .collect();
        let endpoints: Vec<(&str, Vec<String>)> = SERVICES
            .iter()
            .zip(&placed)
            .map(|(service, placed)| {
                let endpoints =
                    placed.iter().map(|(host, port)| format!("http://{}", SocketAddr::new(host.address, *port)));
                (*service, endpoints.collect())
            })
            .collect();
        let replicas = SERVICES
            .iter()
            .zip(&placed)
            .map(|(service, placed)| {
                std::array::from_fn(|r| {
                    // Each replica has a state directory of its own, as on another machine.
                    let data = TempDir::new();
                    let mut config = base.clone();
                    config.data_dir = data.0.clone();
                    let peers = peer_env(service, &endpoints);
                    let (host, port) = placed[r].clone();
                    Replica {
                        service,
                        host,
                        port,
                        config,
                        env: shared_env.iter().cloned().chain(peers).collect(),
                        process: None,
                        _data: data,
                    }
                })
            })
            .collect();
        Fleet { replicas }
    }

    fn endpoint(&self, service: &str, r: usize) -> String {
        let index = SERVICES.iter().position(|s| *s == service).expect("a service");
        self.replicas[index][r].endpoint()
    }

    /// Starts replica `r` of every service, in [`SERVICES`] order.
    async fn start(&mut self, r: usize) {
        for replicas in &mut self.replicas {
            replicas[r].start().await;
        }
    }

    /// SIGKILL to replica `r` of every service at once: no shutdown, as a crash.
    async fn kill(&mut self, r: usize) {
        let processes: Vec<ServiceProcess> =
            self.replicas.iter_mut().map(|replicas| replicas[r].process.take().expect("running")).collect();
        tokio::task::spawn_blocking(move || processes.into_iter().for_each(ServiceProcess::kill)).await.unwrap();
    }

    /// SIGTERM to replica `r` of every service at once; each must finish what it holds and exit
    /// cleanly within the shutdown grace.
    async fn terminate(&mut self, r: usize) {
        let stopping: Vec<_> = self
            .replicas
            .iter_mut()
            .map(|replicas| {
                let (service, process) = (replicas[r].service, replicas[r].process.take().expect("running"));
                tokio::task::spawn_blocking(move || (service, process.terminate(Duration::from_secs(30))))
            })
            .collect();
        for stopped in stopping {
            let (service, status) = stopped.await.unwrap();
            let status = status.unwrap_or_else(|error| panic!("{service} replica {r} stops on SIGTERM: {error}"));
            assert!(status.success(), "{service} replica {r} exits cleanly on SIGTERM: {status}");
        }
    }

    /// SIGTERM to every replica that runs, so that nothing is left behind.
    async fn stop(&mut self) {
        for r in 0..REPLICAS {
            if self.replicas.iter().all(|replicas| replicas[r].process.is_some()) {
                self.terminate(r).await;
            }
        }
    }
}

/// Submits appeals `0..count` of `run`, alternating between the intake replicas and retrying
/// with the same request id on the other one when a call fails because a replica went away
/// (or its routing peer did). Counts the accepted in `accepted`; returns the appeal ids.
async fn submit_all(
    intakes: [IntakeServiceClient<Channel>; REPLICAS],
    run: &str,
    count: usize,
    accepted: &AtomicUsize,
    retries: &AtomicUsize,
) -> Vec<String> {
    // A channel integration submitting in bulk: a system caller, with its own rate allowance.
    let token = testing::token("channel-replicas", "", "", &[Role::System]);
    futures::stream::iter(0..count)
        .map(|i| {
            let (intakes, token) = (&intakes, &token);
            async move {
                let request = e_diary_appeal(&format!("{run}-{i}"));
                let started = Instant::now();
                for attempt in 0.. {
                    let mut client = intakes[(i + attempt) % REPLICAS].clone();
                    match client.submit_appeal(pos_platform::grpc::outgoing(request.clone(), token)).await {
                        Ok(response) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            return response.into_inner().appeal_id;
                        }
                        Err(status) if went_away(&status) && started.elapsed() < Duration::from_secs(120) => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100 * (attempt as u64 + 1).min(10))).await;
                        }
                        Err(status) => panic!("appeal {i} not accepted: {status}"),
                    }
                }
                unreachable!("the retry loop returns or panics")
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await
}

/// A failure that says nothing about the request, only that the replica (or its peer) is
/// gone or going: the same request id may be tried again, and intake answers a repeat with the
/// first answer.
fn went_away(status: &tonic::Status) -> bool {
    use tonic::Code;
    match status.code() {
        // Refused connections and servers shutting down; intake's routing peer being down.
        Code::Unavailable
        // A connection reset mid-call, and the client's own timeout.
        | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => true,
        // A replica stopping sends GOAWAY; a request that crossed it on the wire fails in the
        // client's transport, which tonic reports as INTERNAL "h2 protocol error": the server
        // never saw it.
        Code::Internal if status.message().starts_with("h2 protocol error") => true,
        Code::Ok
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss
        | Code::Unauthenticated => false,
    }
}

/// Waits until `accepted` reaches `count` (or every submission is done).
async fn progress(accepted: &AtomicUsize, count: usize) -> usize {
    loop {
        let now = accepted.load(Ordering::Relaxed);
        if now >= count {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn query_counts(db: &pos_platform::db::Db, sql: &str) -> HashMap<String, i64> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(db.pool())
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .iter()
        .map(|row| (row.get::<String, _>(0), row.get::<i64, _>(1)))
        .collect()
}

/// notify's ledger rows of registration e-mails: (row id, which is the Message-ID, appeal id).
async fn registrations(db: &pos_platform::db::Db, prefix: &str) -> Vec<(String, String)> {
    let sql = format!(
        "SELECT id, appeal_id FROM {prefix}notify.deliveries WHERE audience = 'applicant' AND event = '{}'",
        AppealReceived::EVENT
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(db.pool())
        .await
        .expect("notify's ledger readable")
        .iter()
        .map(|row| (row.get::<String, _>(0), row.get::<String, _>(1)))
        .collect()
}

/// Appeals of `appeal_ids` whose count in `counts` is not exactly one, with that count.
fn not_once(counts: &HashMap<String, i64>, appeal_ids: &[String]) -> Vec<(String, i64)> {
    appeal_ids
        .iter()
        .map(|id| (id.clone(), counts.get(id).copied().unwrap_or(0)))
        .filter(|(_, count)| *count != 1)
        .collect()
}

/// Where the front-door phase redirects its appeal: a connected organization of Kamchatka.
const REDIRECTED_TO: &str = "41-uo-petropavlovsk";

/// Checks that a command moved the version by one and returns the ticket it answered.
fn advanced(before: &pb::Ticket, updated: tonic::Response<pb::Ticket>) -> pb::Ticket {
    let updated = updated.into_inner();
    assert_eq!(updated.version, before.version + 1, "every command moves the version by one");
    updated
}

/// Everything through `front` only: `appeal_id`'s ticket is redirected from the regional
/// center to [`REDIRECTED_TO`] by the center's coordinator; once the new organization holds
/// the new ticket with its answer deadline, it is assigned, answered and approved there. Checks
/// that the ticket is processed, that the applicant's view says so, and that exactly one answer
/// e-mail for the appeal arrives at `sink`. Returns the answered ticket and the e-mail's id.
async fn redirect_and_answer(front: &str, appeal_id: &str, sink: &SmtpSink) -> (pb::Ticket, String) {
    let channel = pos_platform::grpc::channel(front).unwrap();
    let mut ticketing = TicketingServiceClient::new(channel.clone());
    let staff =
        |subject: &str, organization_id: &str, role: Role| testing::token(subject, organization_id, "41", &[role]);

    // (1) The redirect, with the version the center's cabinet shows.
    let ticket = all_tickets(front, KAMCHATKA_CENTER)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.appeal_id == appeal_id)
        .expect("the appeal's ticket at the regional center");
    let redirect = pb::RedirectRequest {
        ticket_id: ticket.id.clone(),
        expected_version: ticket.version,
        to_organization_id: REDIRECTED_TO.into(),
        reason: "the municipal department's question".into(),
    };
    let coordinator = staff("coordinator-kcioko", KAMCHATKA_CENTER, Role::Coordinator);
    let redirected = advanced(&ticket, ticketing.redirect(outgoing(redirect, &coordinator)).await.expect("redirected"));
    assert_eq!(redirected.status, "redirected", "{redirected:?}");

    // The new organization holds a ticket of its own for the appeal, showing its deadline.
    let deadline = Instant::now() + Duration::from_secs(90);
    let ticket = loop {
        let held = all_tickets(front, REDIRECTED_TO).await.unwrap().into_iter().find(|t| t.appeal_id == appeal_id);
        match held {
            Some(ticket) if ticket.answer_due.is_some() => break ticket,
            held => {
                assert!(Instant::now() < deadline, "{REDIRECTED_TO} has no ticket with its deadline: {held:?}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    assert_ne!(ticket.id, redirected.id, "the redirect makes a ticket of the new organization's own");
    assert_eq!(ticket.folder, pb::Folder::New as i32);

    // (2) The whole workflow there.
    let executor_id = "executor-pkgo";
    let member = pb::StaffMember {
        subject: executor_id.into(),
        organization_id: REDIRECTED_TO.into(),
        full_name: "Сидорова Анна".into(),
        email: "sidorova@uo-pkgo.example".into(),
        roles: vec!["executor".into()],
        active: true,
    };
    let admin = staff("admin-pkgo", REDIRECTED_TO, Role::OrgAdmin);
    ticketing.upsert_staff(outgoing(member, &admin)).await.expect("staff saved");
    let (coordinator, executor, head) = (
        staff("coordinator-pkgo", REDIRECTED_TO, Role::Coordinator),
        staff(executor_id, REDIRECTED_TO, Role::Executor),
        staff("head-pkgo", REDIRECTED_TO, Role::Head),
    );
    let assign = pb::AssignExecutorRequest {
        ticket_id: ticket.id.clone(),
        expected_version: ticket.version,
        executor_id: executor_id.into(),
        execution_due: None,
    };
    let ticket = advanced(&ticket, ticketing.assign_executor(outgoing(assign, &coordinator)).await.expect("assigned"));
    let take = pb::TakeInWorkRequest { ticket_id: ticket.id.clone(), expected_version: ticket.version };
    let ticket = advanced(&ticket, ticketing.take_in_work(outgoing(take, &executor)).await.expect("taken in work"));
    let answer = pb::Answer {
        r#type: pos_proto::v1::events::AnswerType::Resolved as i32,
        text: "Здравствуйте! Доступ к электронному дневнику предоставлен.".into(),
        ..Default::default()
    };
    let prepare = pb::PrepareAnswerRequest {
        ticket_id: ticket.id.clone(),
        expected_version: ticket.version,
        answer: Some(answer),
        template_id: String::new(),
    };
    let ticket = advanced(&ticket, ticketing.prepare_answer(outgoing(prepare, &executor)).await.expect("prepared"));
    let send = pb::VersionRequest { ticket_id: ticket.id.clone(), expected_version: ticket.version };
    let ticket = advanced(&ticket, ticketing.send_for_approval(outgoing(send, &executor)).await.expect("sent"));
    assert_eq!(ticket.folder, pb::Folder::SentForApproval as i32);
    let approve = pb::ApproveRequest { ticket_id: ticket.id.clone(), expected_version: ticket.version, edited: None };
    let answered = advanced(&ticket, ticketing.approve(outgoing(approve, &head)).await.expect("approved"));
    assert_eq!(answered.folder, pb::Folder::Processed as i32, "{answered:?}");
    assert_eq!(answered.status, "answered", "{answered:?}");

    // The applicant sees the ticket's status (intake keeps the view from ticket events).
    let applicant = testing::token("esia-1001", "", "41", &[Role::Applicant]);
    let mut intake = IntakeServiceClient::new(channel.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let request = pb::GetAppealRequest { appeal_id: appeal_id.to_owned() };
        let appeal = intake.get_appeal(outgoing(request, &applicant)).await.expect("the applicant's view").into_inner();
        if appeal.status == answered.status {
            break;
        }
        assert!(Instant::now() < deadline, "the applicant sees {:?}, not {:?}", appeal.status, answered.status);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Exactly one answer e-mail for the appeal, sent, and at the SMTP server once.
    let system = testing::token("ops", "", "", &[Role::System]);
    let mut notify = NotifyServiceClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(NOTIFY_LEASE_SECS + 60);
    loop {
        let request =
            pb::ListDeliveriesRequest { appeal_id: appeal_id.to_owned(), page_size: 100, ..Default::default() };
        let deliveries =
            notify.list_deliveries(outgoing(request, &system)).await.expect("delivery log").into_inner().deliveries;
        let answers: Vec<&pb::Delivery> = deliveries
            .iter()
            .filter(|d| d.event_type == "ticket.answer_approved" && d.audience == "applicant")
            .collect();
        assert!(answers.len() <= 1, "more than one answer e-mail planned: {answers:?}");
        if let Some(delivery) = answers.first()
            && delivery.status == "sent"
            && let Some(&arrived) = arrivals(sink).get(&delivery.id)
        {
            assert_eq!(arrived, 1, "the answer e-mail arrived {arrived} times");
            assert_eq!(delivery.recipient, "maria@example.org");
            return (answered, delivery.id.clone());
        }
        assert!(Instant::now() < deadline, "the answer e-mail did not arrive: {answers:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs `f` on the broker, off the async threads (`rabbitmqctl` blocks).
async fn on_broker<T: Send + 'static>(
    broker: &Arc<RabbitCluster>,
    f: impl FnOnce(&RabbitCluster) -> T + Send + 'static,
) -> T {
    let broker = broker.clone();
    tokio::task::spawn_blocking(move || f(&broker)).await.unwrap()
}

/// Waits until every queue of the run (named after its exchange) is a quorum queue with a member
/// on each broker node, all of them up; returns how many queues the run has.
async fn assert_replicated(broker: &Arc<RabbitCluster>, exchange: &str) -> usize {
    let prefix = format!("{exchange}.");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let queues: Vec<ClusterQueue> = on_broker(broker, |broker| broker.queues())
            .await
            .into_iter()
            .filter(|q| q.name.starts_with(&prefix))
            .collect();
        let short: Vec<&ClusterQueue> = queues
            .iter()
            .filter(|q| q.kind != "quorum" || q.members.len() != BROKER_NODES || q.online.len() != BROKER_NODES)
            .collect();
        if !queues.is_empty() && short.is_empty() {
            return queues.len();
        }
        assert!(
            Instant::now() < deadline,
            "queues of the run not replicated on {BROKER_NODES} nodes: {} of {}, e.g. {:?}",
            short.len(),
            queues.len(),
            short.first()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the faults did, for the report.
struct Faults {
    /// Client connections per broker node just before one was stopped.
    connections: Vec<usize>,
    /// The same once every client had moved, and how long after the stop that was seen.
    moved: Vec<usize>,
    moved_in: Duration,
    stopped_node: usize,
    stopped_at: usize,
    killed_at: usize,
    terminated_at: usize,
    restarted_at: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_two_replicas_of_each_service_killed_and_stopped_while_a_broker_node_is_down() {
    let began = Instant::now();
    let mut network = match tokio::task::spawn_blocking(|| Network::create(SERVICES.len() * REPLICAS)).await.unwrap() {
        Ok(network) => Some(network),
        Err(reason) => {
            println!("replicas: no network namespaces here ({reason}); every replica runs on loopback");
            None
        }
    };
    let gateway: Option<IpAddr> = network.as_ref().map(|network| network.gateway.into());
    let broker = tokio::task::spawn_blocking(move || RabbitCluster::start_listening(BROKER_NODES, gateway.as_slice()))
        .await
        .unwrap();
    let broker = Arc::new(broker);
    let sink = tokio::task::spawn_blocking(SmtpSink::start).await.unwrap();
    // The test itself (and the clean-up platform) reaches every server on loopback.
    let options = Options { amqp_url: Some(broker.url()), ..Options::new(Mode::Servers) };
    let mut base = config(Mode::Servers, &options.data, &options.run_id, options.amqp_url.as_deref());
    let mut smtp_url = sink.url();
    let hosts = match &mut network {
        Some(network) => {
            base.amqp_url = Some(Secret::new(broker.url_on(network.gateway.into())));
            base.database_url = Some(Secret::new(network.relayed(&testing::database_url(), 5432).await));
            base.redis_url = Some(Secret::new(network.relayed(&testing::redis_url(), 6379).await));
            smtp_url = network.relayed(&smtp_url, 25).await;
            network.hosts.clone()
        }
        None => vec![Host::loopback(); SERVICES.len() * REPLICAS],
    };
    let shared_env: Vec<(String, String)> = [
        ("POS_NOTIFY__SMTP_URL", smtp_url),
        ("POS_NOTIFY__SMTP_TIMEOUT_SECS", SMTP_TIMEOUT_SECS.to_string()),
        ("POS_NOTIFY__LEASE_SECS", NOTIFY_LEASE_SECS.to_string()),
        ("POS_NOTIFY__CONCURRENCY", NOTIFY_CONCURRENCY.to_string()),
        // Ten pools of the default ten would take every connection PostgreSQL allows (100).
        ("POS_DB_MAX_CONNECTIONS", DB_CONNECTIONS.to_string()),
        // The replicas listen on the test's bridge, not loopback: plaintext, said explicitly.
        ("POS_TLS__ALLOW_PLAINTEXT", "true".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    let mut fleet = Fleet::new(&base, &shared_env, &hosts);
    // One replica of each first (it migrates), then the second: every queue exists before
    // the first appeal.
    for r in 0..REPLICAS {
        fleet.start(r).await;
    }
    let started = began.elapsed();
    // Progress as it goes, so that a run cut short by the harness's time limit shows where it was.
    println!("replicas: {:.1}s: {} processes up", started.as_secs_f64(), SERVICES.len() * REPLICAS);
    let queues = assert_replicated(&broker, &base.exchange).await;

    let run = testing::unique("replicas");
    let intakes: [IntakeServiceClient<Channel>; REPLICAS] = std::array::from_fn(|r| {
        IntakeServiceClient::new(pos_platform::grpc::channel(&fleet.endpoint("intake", r)).unwrap())
    });
    let (accepted, retries) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let submitting = Instant::now();
    let faults = async {
        // A fifth in: the broker node most clients are on stops. Every process lists the nodes
        // in the same order, so they all start on the first.
        let stopped_at = progress(&accepted, APPEALS / 5).await;
        let connections = on_broker(&broker, |broker| broker.connections_per_node()).await;
        let stopped_node = (0..BROKER_NODES).max_by_key(|&i| (connections[i], std::cmp::Reverse(i))).unwrap_or(0);
        assert!(connections[stopped_node] > 0, "no client on any broker node: {connections:?}");
        on_broker(&broker, move |broker| broker.stop_node(stopped_node)).await;
        // Every client it held moves to the nodes still up.
        let stopping = Instant::now();
        let moved = loop {
            let now = on_broker(&broker, |broker| broker.connections_per_node()).await;
            if now.iter().sum::<usize>() >= connections.iter().sum::<usize>() {
                break now;
            }
            assert!(stopping.elapsed() < Duration::from_secs(60), "clients did not reconnect: {now:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let moved_in = stopping.elapsed();
        assert_eq!(moved[stopped_node], 0, "a stopped node holds no client");
        // A quarter in, with the node down: a crash of one replica of every service, back as
        // soon as it can be, on the nodes still up.
        let killed_at = progress(&accepted, APPEALS / 4).await;
        fleet.kill(KILLED).await;
        fleet.start(KILLED).await;
        // Half in (or later, once the killed are back): a graceful stop of the others.
        let terminated_at = progress(&accepted, APPEALS / 2).await;
        fleet.terminate(TERMINATED).await;
        fleet.start(TERMINATED).await;
        // Three quarters in: the node comes back and catches up.
        let restarted_at = progress(&accepted, APPEALS * 3 / 4).await;
        on_broker(&broker, move |broker| broker.start_node(stopped_node)).await;
        Faults { connections, moved, moved_in, stopped_node, stopped_at, killed_at, terminated_at, restarted_at }
    };
    let (appeal_ids, faults) = tokio::join!(submit_all(intakes, &run, APPEALS, &accepted, &retries), faults);
    let submitted_in = submitting.elapsed();
    println!("replicas: {:.1}s: {APPEALS} appeals accepted", began.elapsed().as_secs_f64());
    assert_eq!(appeal_ids.len(), APPEALS);

    // Every appeal exactly one ticket, each showing its answer deadline, as the cabinet sees it.
    let ticketing = fleet.endpoint("ticketing", KILLED);
    let tickets = wait_for_tickets(&ticketing, KAMCHATKA_CENTER, APPEALS, Duration::from_secs(240)).await.unwrap();
    assert_one_ticket_per_appeal(&tickets, &appeal_ids);
    wait_for_deadlines(&ticketing, KAMCHATKA_CENTER, &appeal_ids, Duration::from_secs(60)).await.unwrap();
    let settled_in = submitting.elapsed();
    println!("replicas: {:.1}s: every ticket with its deadline", began.elapsed().as_secs_f64());

    // Exactly one answer deadline per appeal in sla, armed once.
    let prefix = &base.schema_prefix;
    let db = pos_platform::db::Db::connect(&testing::database_url(), "public", 2).await.unwrap();
    let clocks = query_counts(
        &db,
        &format!("SELECT appeal_id, COUNT(*) FROM {prefix}sla.sla_clocks WHERE clock = 'answer' GROUP BY appeal_id"),
    )
    .await;
    let wrong = not_once(&clocks, &appeal_ids);
    assert!(wrong.is_empty(), "appeals without exactly one answer deadline: {} e.g. {:?}", wrong.len(), wrong.first());
    let armed = query_counts(
        &db,
        &format!(
            "SELECT appeal_id, COUNT(*) FROM {prefix}sla.sla_log WHERE clock = 'answer' AND kind = 'armed' \
             GROUP BY appeal_id"
        ),
    )
    .await;
    let wrong = not_once(&armed, &appeal_ids);
    assert!(wrong.is_empty(), "answer deadlines not armed exactly once: {} e.g. {:?}", wrong.len(), wrong.first());

    // One registration e-mail per appeal in notify's ledger (notify may still be working
    // through its queue), and each at the SMTP server.
    let registered = Instant::now();
    let registrations = loop {
        let registrations = registrations(&db, prefix).await;
        if registrations.len() >= appeal_ids.len() || registered.elapsed() > Duration::from_secs(180) {
            break registrations;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut ledger: HashMap<String, i64> = HashMap::new();
    for (_, appeal_id) in &registrations {
        *ledger.entry(appeal_id.clone()).or_insert(0) += 1;
    }
    let wrong = not_once(&ledger, &appeal_ids);
    assert!(wrong.is_empty(), "registration e-mails planned other than once: {} e.g. {:?}", wrong.len(), wrong.first());
    db.close().await;
    let deadline = Instant::now() + Duration::from_secs(NOTIFY_LEASE_SECS + 60);
    let (arrivals, missing) = loop {
        let arrivals = arrivals(&sink);
        let missing: Vec<&str> = registrations
            .iter()
            .filter(|(id, _)| !arrivals.contains_key(id))
            .map(|(_, appeal_id)| appeal_id.as_str())
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break (arrivals, missing.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(missing, 0, "appeals whose registration e-mail never arrived");
    let duplicates: usize = registrations.iter().map(|(id, _)| arrivals[id].saturating_sub(1)).sum();
    let duplicated_appeals = registrations.iter().filter(|(id, _)| arrivals[id] > 1).count();

    // The node that was down holds its replica of every queue again, and no queue was lost.
    assert_eq!(assert_replicated(&broker, &base.exchange).await, queues, "the run's queues after the faults");

    let Faults { connections, moved, moved_in, stopped_node, stopped_at, killed_at, terminated_at, restarted_at } =
        faults;
    let placement = match &network {
        Some(network) => format!("each on a host of its own (network namespaces, bridge {})", network.gateway),
        None => "on loopback".to_owned(),
    };
    println!(
        "replicas: N={APPEALS} appeals, {REPLICAS}×{} processes {placement}, on {BROKER_NODES} broker nodes with \
         {queues} quorum queues of {BROKER_NODES} members, up in {:.1}s; submitted in {:.1}s with {} client retries \
         (broker node {stopped_node} stopped at {stopped_at} accepted, connections by node {connections:?}, then \
         {moved:?} within {:.1}s; SIGKILL at {killed_at}, SIGTERM at {terminated_at}, node {stopped_node} back at \
         {restarted_at}); every ticket with its deadline {:.1}s after the first submission; {:.1}s in all; \
         registration e-mails sent twice: {duplicates} (over {duplicated_appeals} appeals)",
        SERVICES.len(),
        started.as_secs_f64(),
        submitted_in.as_secs_f64(),
        retries.load(Ordering::Relaxed),
        moved_in.as_secs_f64(),
        settled_in.as_secs_f64(),
        began.elapsed().as_secs_f64(),
    );
    // An e-mail goes twice only when its sender dies between the SMTP server's answer and the
    // `sent` mark (SIGTERM lets those finish): at most the messages notify had in flight when
    // it was killed, once.
    assert!(duplicates <= NOTIFY_CONCURRENCY, "{duplicates} registration e-mails sent twice, more than in flight");

    // Then a redirect and a full workflow through the front door: one process that hosts no
    // ticketing, no notify and no intake answers every call, forwarding each to its owner.
    let front = fleet.endpoint("routing", KILLED);
    let through_front = Instant::now();
    let (answered, mail_id) = redirect_and_answer(&front, &appeal_ids[0], &sink).await;
    println!(
        "replicas: through the front door {front}: appeal {} redirected {KAMCHATKA_CENTER} → {REDIRECTED_TO}, \
         answered as ticket {} ({}) and its answer e-mail {mail_id} arrived once, {:.1}s",
        appeal_ids[0],
        answered.id,
        answered.status,
        through_front.elapsed().as_secs_f64(),
    );

    fleet.stop().await;
    // Queues and exchanges go with the nodes; the schemas with a platform of the same run.
    Platform::start_with(options).await.expect("starts to clean up").stop().await.expect("cleans up");
    drop(sink);
    tokio::task::spawn_blocking(move || drop(broker)).await.unwrap();
    drop(fleet);
    drop(network);
}
