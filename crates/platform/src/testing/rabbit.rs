//! A RabbitMQ node of a test's own, for fault tests that stop the broker.

use super::unique;

/// A RabbitMQ node of a test's own on spare ports, so that stopping it disturbs no other test.
/// Stopped and removed on drop. Needs the `rabbitmq-server` scripts on PATH (when run as root,
/// Debian's scripts switch to the `rabbitmq` user, hence the `chown`). Blocking: call from
/// `spawn_blocking` in async tests.
pub struct RabbitNode {
    name: String,
    port: u16,
    base: std::path::PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl RabbitNode {
    pub fn start() -> RabbitNode {
        use std::process::Command;
        let id = unique("rmq");
        let name = format!("pos-test-{id}@localhost");
        let (port, dist_port) = (free_port(), free_port());
        let base = std::env::temp_dir().join(format!("pos-rabbitmq-{id}"));
        std::fs::create_dir_all(&base).expect("node directory");
        // Our own config: the system one binds the shared node's port.
        std::fs::write(base.join("rabbitmq.conf"), format!("listeners.tcp.local = 127.0.0.1:{port}\n"))
            .expect("node config");
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
        node.await_listener(std::time::Duration::from_secs(90));
        node
    }

    /// Runs `rabbitmqctl -n <node> <args>`, e.g. `stop_app` / `start_app`.
    pub fn ctl(&self, args: &[&str]) {
        let output = std::process::Command::new("rabbitmqctl")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("rabbitmqctl on PATH");
        assert!(output.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Stops the broker application: connections close, queues stay on disk.
    pub fn stop_app(&self) {
        self.ctl(&["stop_app"]);
    }

    /// Starts it again and waits for the listener.
    pub fn start_app(&self) {
        self.ctl(&["start_app"]);
        self.await_listener(std::time::Duration::from_secs(60));
    }

    /// The AMQP listener opens once the node has booted.
    pub fn await_listener(&self, limit: std::time::Duration) {
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(started.elapsed() < limit, "node {} did not start in {limit:?}", self.name);
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl").arg("-n").arg(&self.name).arg("stop").output();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
