//! A real three-node RabbitMQ cluster on loopback, from the machine's
//! Debian package (`rabbitmq-server` 3.10), for the tests that lose a node
//! while events flow; or one such node alone ([`RabbitCluster::single`]),
//! for the tests that restart the broker. The machine's own broker (5672)
//! is not touched.
//!
//! Each node has a name unique to the run (`herald-<run>-<n>@localhost`, so
//! a leftover of a crashed run cannot collide), AMQP and Erlang
//! distribution ports of its own, and its own config file, enabled-plugins
//! file (`[].`), pid file and data and log directories, all under one
//! temporary directory owned by the `rabbitmq` user: started as root,
//! Debian's wrapper runs the node as that user. The three nodes boot in
//! parallel (`rabbitmq-server -detached`), then nodes 2 and 3 join node 1
//! (`stop_app`, `join_cluster`, `start_app`). Every wait polls
//! `rabbitmqctl` (`await_startup`, `cluster_status`, `status`) or the
//! node's OS processes; none sleeps and hopes.
//!
//! A node booted alone in about 8 s here, three at once in about 25 s on 2
//! cores; a restarted node was back in its cluster in about 6.5 s.
//!
//! Dropped, the cluster stops every node (`rabbitmqctl stop`), kills what is
//! left of them, and removes the directory. RabbitMQ 3.10 does not put the
//! node name on the `beam.smp` command line: a node's processes are found by
//! the `RABBITMQ_NODENAME=<node>` in their environment (`/proc/<pid>/environ`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::process::free_port;

/// Nodes in a cluster.
const NODES: usize = 3;
/// How long nodes have to boot and to (re)join the cluster.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a stopping node has to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two polls of `rabbitmqctl` (each call itself takes about 1 s:
/// it boots an Erlang VM).
const POLL: Duration = Duration::from_millis(500);
/// Ports a node must not take: the machine's broker (AMQP, distribution),
/// epmd, and the distribution ports `rabbitmqctl` itself listens on
/// (`RABBITMQ_CTL_DIST_PORT_MIN`..`MAX`).
const RESERVED_PORTS: [(u16, u16); 4] =
    [(5672, 5672), (4369, 4369), (25672, 25672), (35672, 35682)];

/// One node of the cluster.
struct Node {
    /// `herald-<run>-<n>@localhost`.
    name: String,
    amqp_port: u16,
    dist_port: u16,
    /// Its config, enabled-plugins file, pid file, data and logs.
    dir: PathBuf,
    /// Started and not stopped since.
    up: AtomicBool,
}

/// RabbitMQ nodes clustered on loopback (three, or one alone); stopped
/// and removed when dropped.
pub struct RabbitCluster {
    nodes: Vec<Node>,
    /// Holds every node's directory.
    dir: PathBuf,
}

impl RabbitCluster {
    /// Starts three nodes in parallel, clusters them, and waits until all
    /// three are running in one cluster.
    ///
    /// # Panics
    /// `rabbitmq-server` is missing, the test does not run as root (or as
    /// `rabbitmq`), or the nodes do not start and cluster within 3 minutes
    /// (the message holds the node's log).
    pub async fn start() -> Self {
        Self::start_nodes(NODES).await
    }

    /// Starts one node alone (a broker of its own, to restart at will) and
    /// waits until it runs.
    ///
    /// # Panics
    /// As [`Self::start`].
    pub async fn single() -> Self {
        Self::start_nodes(1).await
    }

    async fn start_nodes(count: usize) -> Self {
        assert!(
            tool("rabbitmq-server").exists(),
            "the cluster needs Debian's rabbitmq-server package (/usr/sbin/rabbitmq-server)"
        );
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let run_id = &run_id[..8];
        let dir = std::env::temp_dir().join(format!("herald-rabbit-{run_id}"));
        std::fs::create_dir_all(&dir).expect("creating the cluster's directory");
        let ports = distinct_ports(2 * count);
        let nodes: Vec<Node> = (0..count)
            .map(|i| {
                let n = i + 1;
                Node {
                    name: format!("herald-{run_id}-{n}@localhost"),
                    amqp_port: ports[2 * i],
                    dist_port: ports[2 * i + 1],
                    dir: dir.join(format!("node{n}")),
                    up: AtomicBool::new(false),
                }
            })
            .collect();
        // From here on, a panic drops the cluster, which cleans up.
        let cluster = Self { nodes, dir };
        for node in &cluster.nodes {
            node.write_files();
        }
        give_to_rabbitmq(&cluster.dir);
        // `-detached` returns at once; the three then boot side by side.
        for node in &cluster.nodes {
            node.launch().await;
        }
        futures_util::future::join_all(cluster.nodes.iter().map(Node::wait_booted)).await;
        let (first, others) = cluster.nodes.split_first().expect("at least one node");
        for node in others {
            node.ctl_ok(&["stop_app"]).await;
            node.ctl_ok(&["join_cluster", first.name.as_str()]).await;
            node.ctl_ok(&["start_app"]).await;
        }
        cluster.wait_clustered().await;
        cluster
    }

    /// The nodes' AMQP URLs, comma-separated, in node order: the value for
    /// `HERALD__AMQP__URLS`.
    #[must_use]
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("amqp://guest:guest@127.0.0.1:{}/%2f", n.amqp_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The nodes' names (`herald-<run>-<n>@localhost`), in node order.
    #[must_use]
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Stops node `i` (0-based) with `rabbitmqctl stop`, and waits until its
    /// processes have exited and it no longer answers.
    ///
    /// # Panics
    /// `rabbitmqctl stop` fails, or the node is still there after a minute.
    pub async fn stop_node(&self, i: usize) {
        let node = &self.nodes[i];
        let name = &node.name;
        let pids = node.pids();
        node.up.store(false, Ordering::Release);
        node.ctl_ok(&["stop"]).await;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
            let answers = run(ctl(name, &["status"]))
                .await
                .is_ok_and(|o| o.status.success());
            if left.is_empty() && !answers {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {name} still running {STOP_TIMEOUT:?} after `rabbitmqctl stop` \
                 (processes {left:?}, answering: {answers})"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Starts node `i` (0-based) again, with the environment it first had,
    /// and waits until it is running and back in the cluster.
    ///
    /// # Panics
    /// The node does not boot or rejoin within 3 minutes.
    pub async fn start_node(&self, i: usize) {
        let node = &self.nodes[i];
        node.launch().await;
        node.wait_booted().await;
        self.wait_clustered().await;
    }

    /// Which node (0-based) leads the quorum queue `queue` of the default
    /// virtual host, as a running node reports it
    /// (`rabbitmqctl list_queues name leader --formatter json`); `None` if
    /// no running node answers or none knows the queue or its leader.
    pub async fn leader_of(&self, queue: &str) -> Option<usize> {
        for node in self.nodes.iter().filter(|n| n.is_up()) {
            let Ok(out) = run(ctl(
                &node.name,
                &["list_queues", "name", "leader", "--formatter", "json"],
            ))
            .await
            else {
                continue;
            };
            if !out.status.success() {
                continue;
            }
            // The listing is the cluster's: another node would answer the
            // same.
            let leader = parse_leader(&String::from_utf8_lossy(&out.stdout), queue)?;
            return self.nodes.iter().position(|n| n.name == leader);
        }
        None
    }

    /// Waits until every node that should be up answers and sees every
    /// such node running in its cluster.
    async fn wait_clustered(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let want: Vec<&str> = self
                .nodes
                .iter()
                .filter(|n| n.is_up())
                .map(|n| n.name.as_str())
                .collect();
            let mut missing = Vec::new();
            for node in self.nodes.iter().filter(|n| n.is_up()) {
                let seen = node.running_nodes().await.unwrap_or_default();
                let absent: Vec<&str> = want
                    .iter()
                    .copied()
                    .filter(|w| !seen.iter().any(|s| s.as_str() == *w))
                    .collect();
                if !absent.is_empty() {
                    let name = &node.name;
                    missing.push(format!("{name} does not see {absent:?} running"));
                }
            }
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not form within {START_TIMEOUT:?}: {missing:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Node {
    fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The node's environment for `rabbitmq-server`: the same at every
    /// start, so a restarted node finds its data and its cluster.
    fn env(&self) -> Vec<(&'static str, String)> {
        let path = |file: &str| self.dir.join(file).display().to_string();
        vec![
            ("RABBITMQ_NODENAME", self.name.clone()),
            ("RABBITMQ_NODE_PORT", self.amqp_port.to_string()),
            ("RABBITMQ_DIST_PORT", self.dist_port.to_string()),
            ("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins")),
            ("RABBITMQ_MNESIA_BASE", path("mnesia")),
            ("RABBITMQ_LOG_BASE", path("log")),
            ("RABBITMQ_PID_FILE", path("pid")),
        ]
    }

    /// The config, the enabled-plugins file and the data and log
    /// directories. The config must name the listener: Debian's
    /// `/etc/rabbitmq/rabbitmq.conf` (5672) would otherwise win over
    /// `RABBITMQ_NODE_PORT`.
    fn write_files(&self) {
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(self.dir.join(sub)).expect("creating a node's directories");
        }
        let port = self.amqp_port;
        std::fs::write(
            self.dir.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.local = 127.0.0.1:{port}\n\
                 loopback_users = none\n\
                 cluster_partition_handling = pause_minority\n"
            ),
        )
        .expect("writing a node's config");
        // An Erlang term, with its full stop.
        std::fs::write(self.dir.join("enabled_plugins"), "[].\n")
            .expect("writing a node's enabled-plugins file");
    }

    /// `rabbitmq-server -detached`: returns once the node is launched, not
    /// booted. What the wrapper prints goes to `start.out`.
    async fn launch(&self) {
        let out =
            std::fs::File::create(self.dir.join("start.out")).expect("creating a node's start.out");
        let err = out.try_clone().expect("cloning start.out");
        let mut command = Command::new(tool("rabbitmq-server"));
        command
            .arg("-detached")
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let status = tokio::task::spawn_blocking(move || command.status())
            .await
            .expect("the blocking task ran")
            .expect("running rabbitmq-server");
        let name = &self.name;
        assert!(
            status.success(),
            "rabbitmq-server -detached for {name}: {status}\n{}",
            self.diagnostics()
        );
        self.up.store(true, Ordering::Release);
    }

    /// Waits until the node has booted: `rabbitmqctl await_startup` fails at
    /// once while the node is not yet registered with epmd, and waits for
    /// the boot once it is.
    async fn wait_booted(&self) {
        let name = &self.name;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let out = run(ctl(name, &["await_startup", "--timeout", "60"])).await;
            let last = match out {
                Ok(o) if o.status.success() => return,
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                Instant::now() < deadline,
                "node {name} did not start within {START_TIMEOUT:?}; rabbitmqctl said:\n{last}\n{}",
                self.diagnostics()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The nodes this node sees running in its cluster; `None` if it does
    /// not answer.
    async fn running_nodes(&self) -> Option<Vec<String>> {
        let out = run(ctl(&self.name, &["cluster_status", "--formatter", "json"]))
            .await
            .ok()?;
        if !out.status.success() {
            return None;
        }
        parse_running_nodes(&String::from_utf8_lossy(&out.stdout))
    }

    /// Runs `rabbitmqctl -n <node> <args>`, which must succeed.
    async fn ctl_ok(&self, args: &[&str]) {
        let name = &self.name;
        let out = run(ctl(name, args)).await.expect("running rabbitmqctl");
        let joined = args.join(" ");
        assert!(
            out.status.success(),
            "rabbitmqctl -n {name} {joined}: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// What the wrapper printed at start and the end of the node's log.
    fn diagnostics(&self) -> String {
        let start = read_lossy(&self.dir.join("start.out"));
        let log = read_lossy(&self.dir.join("log").join(format!("{}.log", self.name)));
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("start.out:\n{start}\nlast lines of the node's log:\n{tail}")
    }

    /// The node's OS processes: those whose environment holds
    /// `RABBITMQ_NODENAME=<node>` (the `beam.smp` and its helpers) or a
    /// `beam.smp` whose command line names the node. epmd is shared with
    /// the machine's broker and left alone.
    fn pids(&self) -> Vec<u32> {
        let marker = format!("RABBITMQ_NODENAME={}", self.name);
        let own = std::process::id();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                if pid == own {
                    return None;
                }
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                let comm = comm.trim();
                if comm == "epmd" {
                    return None;
                }
                let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let names_node = environ
                    .split(|b| *b == 0)
                    .any(|var| var == marker.as_bytes())
                    || (comm == "beam.smp" && contains(&cmdline, self.name.as_bytes()));
                names_node.then_some(pid)
            })
            .collect()
    }

    /// Stops the node, blocking: `rabbitmqctl stop`, then SIGKILL for any of
    /// its processes still there after 30 s.
    fn stop_blocking(&self) {
        if self.pids().is_empty() {
            return;
        }
        let _ = ctl(&self.name, &["stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in self.pids() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        self.up.store(false, Ordering::Release);
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        std::thread::scope(|scope| {
            for node in &self.nodes {
                scope.spawn(move || node.stop_blocking());
            }
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `/usr/sbin/<name>` (Debian's wrappers), else the name for `PATH`.
fn tool(name: &str) -> PathBuf {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from(name)
    }
}

/// `rabbitmqctl -n <node> <args>`.
fn ctl(node: &str, args: &[&str]) -> Command {
    let mut command = Command::new(tool("rabbitmqctl"));
    command.arg("-n").arg(node).args(args);
    command
}

/// Runs a command to its end on the blocking pool, without stdin.
async fn run(mut command: Command) -> std::io::Result<Output> {
    tokio::task::spawn_blocking(move || command.stdin(Stdio::null()).output())
        .await
        .expect("the blocking task ran")
}

/// Hands the directory to the `rabbitmq` user, as whom Debian's wrapper
/// runs the nodes.
fn give_to_rabbitmq(dir: &Path) {
    let status = Command::new("chown")
        .arg("-R")
        .arg("rabbitmq:rabbitmq")
        .arg(dir)
        .status()
        .expect("running chown");
    assert!(
        status.success(),
        "chown -R rabbitmq:rabbitmq {}: the cluster needs root (Debian's wrapper runs the nodes as the rabbitmq user)",
        dir.display()
    );
}

/// `count` distinct free ports, none of them reserved.
fn distinct_ports(count: usize) -> Vec<u16> {
    let mut ports = Vec::with_capacity(count);
    while ports.len() < count {
        let port = free_port();
        let reserved = RESERVED_PORTS
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&port));
        if !reserved && !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// A file's text (invalid UTF-8 replaced), or nothing if it cannot be read.
fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Whether a process with this id exists.
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The JSON value a `--formatter json` command printed, from its first
/// `open` character (`[` or `{`) on.
fn json_from(text: &str, open: char) -> Option<serde_json::Value> {
    let start = text.find(open)?;
    serde_json::from_str(text[start..].trim()).ok()
}

/// The leader of `queue` in the output of
/// `rabbitmqctl list_queues name leader --formatter json`:
/// `[{"name":"q","leader":"herald-…-1@localhost"}, …]`.
fn parse_leader(text: &str, queue: &str) -> Option<String> {
    json_from(text, '[')?
        .as_array()?
        .iter()
        .find(|row| row.get("name").and_then(serde_json::Value::as_str) == Some(queue))?
        .get("leader")?
        .as_str()
        .filter(|leader| leader.contains('@'))
        .map(str::to_owned)
}

/// The `running_nodes` of `rabbitmqctl cluster_status --formatter json`.
fn parse_running_nodes(text: &str) -> Option<Vec<String>> {
    Some(
        json_from(text, '{')?
            .get("running_nodes")?
            .as_array()?
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::{parse_leader, parse_running_nodes};

    #[test]
    fn reads_a_queue_leader_as_rabbitmq_3_10_prints_it() {
        let text = "[\n{\"name\":\"t.deliveries\",\"leader\":\"herald-ab12cd-3@localhost\"}\n,\
                    {\"name\":\"t.dispatch\",\"leader\":\"herald-ab12cd-1@localhost\"}\n]\n";
        assert_eq!(
            parse_leader(text, "t.deliveries").as_deref(),
            Some("herald-ab12cd-3@localhost")
        );
        assert_eq!(
            parse_leader(text, "t.dispatch").as_deref(),
            Some("herald-ab12cd-1@localhost")
        );
        assert!(parse_leader(text, "t.other").is_none());
        assert!(parse_leader("Error: unreachable", "t.deliveries").is_none());
        assert!(parse_leader("[\n]\n", "t.deliveries").is_none());
    }

    #[test]
    fn reads_the_running_nodes_of_cluster_status() {
        let text = "{\"alarms\":[],\"disk_nodes\":[\"a@localhost\",\"b@localhost\"],\
                    \"running_nodes\":[\"b@localhost\",\"a@localhost\"],\"versions\":{}}\n";
        assert_eq!(
            parse_running_nodes(text),
            Some(vec!["b@localhost".to_owned(), "a@localhost".to_owned()])
        );
        assert!(parse_running_nodes("Error").is_none());
    }
}
