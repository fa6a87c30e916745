//! RabbitMQ nodes of a test's own, for fault tests that stop the broker: one node
//! ([`RabbitNode`]) or a cluster of several ([`RabbitCluster`]).

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, unique};

/// How long a node gets to boot.
const BOOT: Duration = Duration::from_secs(90);

/// A RabbitMQ node of a test's own on spare ports, so that stopping it disturbs no other test.
/// Stopped and removed on drop. Needs the `rabbitmq-server` scripts on PATH (when run as root,
/// Debian's scripts switch to the `rabbitmq` user, hence the `chown`). Blocking: call from
/// `spawn_blocking` in async tests.
pub struct RabbitNode {
    name: String,
    port: u16,
    base: std::path::PathBuf,
}

impl RabbitNode {
    /// A node of its own, listening on loopback.
    pub fn start() -> RabbitNode {
        RabbitNode::start_configured(|_| String::new())
    }

    /// A node of its own, listening on loopback, whose `rabbitmq.conf` also has the lines
    /// `configure` returns (e.g. an SSL listener). `configure` gets the node's directory to put
    /// files there first (certificates): the directory is then given to the broker's user.
    pub fn start_configured(configure: impl FnOnce(&Path) -> String) -> RabbitNode {
        let node = RabbitNode::launch(&[], configure);
        node.await_listener(BOOT);
        node
    }

    /// Starts a node without waiting for it to boot, listening on loopback and on `also` (e.g.
    /// a bridge that other network namespaces reach), on the same port, configured further by
    /// `configure` (see [`RabbitNode::start_configured`]). Every node runs as the same user, so
    /// all share that user's Erlang cookie and may form a cluster.
    fn launch(also: &[IpAddr], configure: impl FnOnce(&Path) -> String) -> RabbitNode {
        let id = unique("rmq");
        let name = format!("pos-test-{id}@localhost");
        let (port, dist_port) = (free_port(), free_port());
        let base = std::env::temp_dir().join(format!("pos-rabbitmq-{id}"));
        std::fs::create_dir_all(&base).expect("node directory");
        // Our own config: the system one binds the shared node's port.
        let mut config = format!("listeners.tcp.local = 127.0.0.1:{port}\n");
        for (i, address) in also.iter().enumerate() {
            config.push_str(&format!("listeners.tcp.also{i} = {address}:{port}\n"));
        }
        if !also.is_empty() {
            // `guest` may log in from loopback only, unless told otherwise; a test's node has
            // no other user.
            config.push_str("loopback_users.guest = false\n");
        }
        config.push_str(&configure(&base));
        std::fs::write(base.join("rabbitmq.conf"), config).expect("node config");
        std::fs::write(base.join("enabled_plugins"), "[].\n").expect("node plugins");
        let _ = Command::new("chown").args(["-R", "rabbitmq:rabbitmq"]).arg(&base).status();
        let node = RabbitNode { name, port, base };
        let status = Command::new("rabbitmq-server")
            .arg("-detached")
            .current_dir(std::env::temp_dir())
            .env("RABBITMQ_NODENAME", &node.name)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", node.base.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", node.base.join("log"))
            .env("RABBITMQ_CONFIG_FILE", node.base.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", node.base.join("enabled_plugins"))
            .status()
            .expect("rabbitmq-server on PATH");
        assert!(status.success(), "rabbitmq-server -detached failed");
        node
    }

    /// The Erlang node name, e.g. `pos-test-rmq_t…@localhost`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The AMQP port, the same on every address the node listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `rabbitmqctl -n <node> <args>`, e.g. `stop_app` / `start_app`; returns its output.
    pub fn ctl(&self, args: &[&str]) -> String {
        let output =
            Command::new("rabbitmqctl").arg("-n").arg(&self.name).args(args).output().expect("rabbitmqctl on PATH");
        assert!(
            output.status.success(),
            "rabbitmqctl -n {} {args:?}: {}{}",
            self.name,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Stops the broker application: connections close, queues stay on disk.
    pub fn stop_app(&self) {
        self.ctl(&["stop_app"]);
    }

    /// Starts it again and waits for the listener.
    pub fn start_app(&self) {
        self.ctl(&["start_app"]);
        self.await_listener(Duration::from_secs(60));
    }

    /// The AMQP listener opens once the node has booted.
    pub fn await_listener(&self, limit: Duration) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(started.elapsed() < limit, "node {} did not start in {limit:?}", self.name);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn url(&self) -> String {
        self.url_on(IpAddr::from([127, 0, 0, 1]))
    }

    /// The node's URL at `address`: loopback, or one given to [`RabbitCluster::start_listening`].
    pub fn url_on(&self, address: IpAddr) -> String {
        format!("amqp://guest:guest@{address}:{}/%2f", self.port)
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("-n").arg(&self.name).arg("stop").output();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// A RabbitMQ cluster of the test's own: nodes on spare ports joined to the first. Stopped and
/// removed on drop. Blocking, as [`RabbitNode`].
pub struct RabbitCluster {
    nodes: Vec<RabbitNode>,
}

/// One queue as the cluster lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterQueue {
    pub name: String,
    /// `quorum`, `classic` or `stream`.
    pub kind: String,
    /// The nodes holding a replica (quorum queues; empty for others).
    pub members: Vec<String>,
    /// The members currently up.
    pub online: Vec<String>,
}

impl RabbitCluster {
    /// `size` nodes listening on loopback, clustered.
    pub fn start(size: usize) -> RabbitCluster {
        RabbitCluster::start_listening(size, &[])
    }

    /// `size` nodes listening on loopback and on `also`, clustered: every node running and
    /// seeing the others running when this returns.
    pub fn start_listening(size: usize, also: &[IpAddr]) -> RabbitCluster {
        assert!(size >= 1, "a cluster has a node");
        // Booted side by side: a node's boot is mostly waiting.
        let nodes: Vec<RabbitNode> = (0..size).map(|_| RabbitNode::launch(also, |_| String::new())).collect();
        let cluster = RabbitCluster { nodes };
        for node in &cluster.nodes {
            node.await_listener(BOOT);
        }
        let seed = cluster.nodes[0].name.clone();
        for node in &cluster.nodes[1..] {
            node.ctl(&["stop_app"]);
            // A fresh node, but `join_cluster` wants one that is surely empty.
            node.ctl(&["reset"]);
            node.ctl(&["join_cluster", &seed]);
            node.start_app();
        }
        cluster.await_running(size, Duration::from_secs(60));
        cluster
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, i: usize) -> &RabbitNode {
        &self.nodes[i]
    }

    /// Every node, comma-separated, as `amqp_url` takes a cluster.
    pub fn url(&self) -> String {
        self.nodes.iter().map(RabbitNode::url).collect::<Vec<_>>().join(",")
    }

    /// [`RabbitCluster::url`] at another address the nodes listen on.
    pub fn url_on(&self, address: IpAddr) -> String {
        self.nodes.iter().map(|node| node.url_on(address)).collect::<Vec<_>>().join(",")
    }

    /// Stops node `i`'s broker application: its clients lose their connections, its listener
    /// closes, its queue replicas fall behind; the other nodes go on.
    pub fn stop_node(&self, i: usize) {
        self.nodes[i].stop_app();
    }

    /// Starts node `i` again and waits until the cluster sees every node running.
    pub fn start_node(&self, i: usize) {
        self.nodes[i].start_app();
        self.await_running(self.nodes.len(), Duration::from_secs(60));
    }

    /// The running nodes of the cluster, as a running node sees them.
    pub fn running_nodes(&self) -> Vec<String> {
        let status = self.ctl_any(&["cluster_status", "--formatter", "json"]);
        let status: serde_json::Value = serde_json::from_str(&status).expect("cluster_status prints JSON");
        status["running_nodes"]
            .as_array()
            .map(|nodes| nodes.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    fn await_running(&self, count: usize, limit: Duration) {
        let started = Instant::now();
        loop {
            let running = self.running_nodes();
            if running.len() >= count {
                return;
            }
            assert!(started.elapsed() < limit, "the cluster runs {running:?}, not {count} nodes, after {limit:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Every queue of the default virtual host with its replicas, as a running node lists them.
    pub fn queues(&self) -> Vec<ClusterQueue> {
        let listed = self.ctl_any(&["list_queues", "name", "type", "members", "online", "--formatter", "json"]);
        let listed: serde_json::Value = serde_json::from_str(&listed).expect("list_queues prints JSON");
        let names = |value: &serde_json::Value| -> Vec<String> {
            value
                .as_array()
                .map(|v| v.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        listed
            .as_array()
            .expect("a list of queues")
            .iter()
            .map(|queue| ClusterQueue {
                name: queue["name"].as_str().unwrap_or_default().to_owned(),
                kind: queue["type"].as_str().unwrap_or_default().to_owned(),
                members: names(&queue["members"]),
                online: names(&queue["online"]),
            })
            .collect()
    }

    /// How many client connections each node holds, by node (stopped nodes hold none).
    pub fn connections_per_node(&self) -> Vec<usize> {
        // Asked of every running node and told apart by name, whether a node lists its own
        // connections or the whole cluster's; the port they came in on names their node.
        let mut seen = std::collections::BTreeMap::new();
        for node in &self.nodes {
            let output = Command::new("rabbitmqctl")
                .arg("-n")
                .arg(&node.name)
                .args(["-q", "list_connections", "name", "port", "--formatter", "json"])
                .output()
                .expect("rabbitmqctl on PATH");
            if !output.status.success() {
                continue;
            }
            let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
            for connection in listed.as_array().into_iter().flatten() {
                if let (Some(name), Some(port)) = (connection["name"].as_str(), connection["port"].as_u64()) {
                    seen.insert(name.to_owned(), port);
                }
            }
        }
        self.nodes.iter().map(|node| seen.values().filter(|port| **port == u64::from(node.port)).count()).collect()
    }

    /// `rabbitmqctl` on the first node whose application runs.
    fn ctl_any(&self, args: &[&str]) -> String {
        let mut failures = Vec::new();
        for node in &self.nodes {
            let output = Command::new("rabbitmqctl")
                .arg("-n")
                .arg(&node.name)
                .arg("-q")
                .args(args)
                .output()
                .expect("rabbitmqctl on PATH");
            if output.status.success() {
                return String::from_utf8_lossy(&output.stdout).into_owned();
            }
            failures.push(format!("{}: {}", node.name, String::from_utf8_lossy(&output.stderr).trim()));
        }
        panic!("rabbitmqctl {args:?} failed on every node: {failures:?}");
    }
}

impl Drop for RabbitCluster {
    /// Every node stopped at once: one by one, each stop waits for the others to take over.
    fn drop(&mut self) {
        std::thread::scope(|scope| {
            for node in self.nodes.drain(..) {
                scope.spawn(move || drop(node));
            }
        });
    }
}
