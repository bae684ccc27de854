//! A 3-server NATS cluster with JetStream for fault tests, each server in its
//! own network namespace.
//!
//! Layout of a [`Cluster`] holding slot `s` (a lease, see below):
//!
//! - a bridge `swtk<s>br` in the root namespace, address `10.A.B.1/24` where
//!   `A.B` encodes `s` (`A = 200 + s / 256`, `B = s % 256`);
//! - per server `i` (0, 1, 2): a namespace `swtk<s>n<i>`, a veth pair whose
//!   root end `swtk<s>h<i>` is a port of the bridge and whose other end,
//!   inside the namespace, has `10.A.B.(10+i)/24`; a `nats-server` run there
//!   with `ip netns exec`, its own store directory and `server_name`
//!   (`<name>-n<i>`), client port 4222, cluster port 6222 with routes to the
//!   other two, monitoring port 8222. The root namespace reaches every port
//!   through the bridge, so tests and `swarm` processes connect from there.
//!
//! Faults: [`Cluster::kill`] (SIGKILL), [`Cluster::restart`] (same config and
//! store), [`Cluster::isolate`] / [`Cluster::heal`] (the root end of the
//! server's veth down / up: it loses its routes to the other servers and its
//! clients, which see a stalled TCP connection, as on a cut cable),
//! [`Cluster::wipe_store`] (a lost disk).
//!
//! Slots: a cluster leases a slot by creating
//! `$TMPDIR/swarm-testkit-cluster/slot-<s>` (create-new, holding the pid), so
//! clusters of parallel test processes get distinct names and subnets. Drop
//! (also while unwinding from a panic) kills the servers, deletes the
//! namespaces, the bridge and the directory, and frees the slot. Leftovers of
//! a test process that was killed before its drop ran (its lease names a
//! dead pid) are swept when the next cluster starts: their servers killed,
//! their namespaces and links deleted.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod durability;

pub use durability::Durability;

/// Servers in a cluster.
pub const SERVERS: usize = 3;
/// Slots (distinct names and subnets) available machine-wide.
const SLOTS: u32 = 4096;
const PREFIX: &str = "swtk";
const CLIENT_PORT: u16 = 4222;
const ROUTE_PORT: u16 = 6222;
const HTTP_PORT: u16 = 8222;
/// Bound of every wait of the harness (a stuck cluster, not a timing assertion).
const WAIT: Duration = Duration::from_secs(60);

/// Why a cluster could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Network namespaces cannot be made here (not root, or no `ip` from
    /// iproute2): tests skip with this reason, except under `SWARM_CI=1`.
    #[error("network namespaces not available: {reason}")]
    NamespacesUnavailable {
        /// What is missing, and what to do.
        reason: String,
    },
    /// No nats-server binary.
    #[error(
        "nats-server not found ({binary}): install it or name it in SWARM_NATS_SERVER: {source}"
    )]
    ServerMissing {
        /// The binary tried.
        binary: String,
        /// Why it could not be run.
        #[source]
        source: std::io::Error,
    },
    /// A command of the setup or of a fault failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// A condition did not hold within the harness's bound.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// The condition.
        what: String,
        /// How long the harness waited.
        waited: Duration,
    },
    /// Every slot is leased: too many clusters at once, or leftovers the
    /// sweep could not remove (see `ip netns list`).
    #[error("all {SLOTS} cluster slots are leased under {}: remove stale leases", dir.display())]
    NoSlot {
        /// The lease directory.
        dir: PathBuf,
    },
    /// A server's answer could not be understood.
    #[error("server {server}: {message}")]
    Protocol {
        /// The server's index.
        server: usize,
        /// What was wrong.
        message: String,
    },
    /// The server index is not 0, 1 or 2.
    #[error("no server {0} in a cluster of {SERVERS}")]
    NoServer(usize),
}

type Result<T, E = ClusterError> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// Runs a command to the end; a non-zero exit is an error with its stderr.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("running `{command}`")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ClusterError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

fn ip(args: &[&str]) -> Result<String> {
    run("ip", args)
}

/// Root and `ip` with netns support, or the reason why not.
fn check_namespaces() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse::<u32>().ok());
    if uid != Some(0) {
        return Err(ClusterError::NamespacesUnavailable {
            reason: format!(
                "not root (effective uid {}): run the cluster tests as root",
                uid.map_or_else(|| "unknown".to_owned(), |u| u.to_string())
            ),
        });
    }
    match Command::new("ip")
        .args(["netns", "list"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(ClusterError::NamespacesUnavailable {
            reason: format!("`ip netns list` failed ({s}): the kernel or iproute2 lacks netns"),
        }),
        Err(e) => Err(ClusterError::NamespacesUnavailable {
            reason: format!("no `ip` command ({e}): install iproute2"),
        }),
    }
}

fn nats_server_binary() -> String {
    std::env::var("SWARM_NATS_SERVER").unwrap_or_else(|_| {
        if Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server".into()
        } else {
            "nats-server".into()
        }
    })
}

fn lease_dir() -> PathBuf {
    std::env::temp_dir().join("swarm-testkit-cluster")
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid a slot's lease names, if the lease exists and can be read.
fn lease_pid(slot: u32) -> Option<u32> {
    std::fs::read_to_string(lease_dir().join(format!("slot-{slot}")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn slot_is_live(slot: u32) -> bool {
    lease_pid(slot).is_some_and(pid_alive)
}

/// The slot in a name `swtk<s><rest>`.
fn slot_of(name: &str) -> Option<u32> {
    let digits: String = name
        .strip_prefix(PREFIX)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Removes what test processes that died without dropping their clusters
/// left behind: servers, namespaces, links and leases of slots whose lease
/// is missing or names a dead process, and their store directories. Best effort: what cannot be removed
/// is left for the next sweep.
pub fn sweep_stale() {
    let netns = ip(&["netns", "list"]).unwrap_or_default();
    for line in netns.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(slot) = slot_of(name) else { continue };
        if slot_is_live(slot) {
            continue;
        }
        // Processes keep a deleted namespace alive: kill them first.
        for pid in ip(&["netns", "pids", name]).unwrap_or_default().lines() {
            let _ = run("kill", &["-KILL", pid.trim()]);
        }
        let _ = ip(&["netns", "del", name]);
    }
    let links = ip(&["-o", "link", "show"]).unwrap_or_default();
    for line in links.lines() {
        // "7: swtk12h0@if6: <...>" or "5: swtk12br: <...>"
        let Some(name) = line
            .split(": ")
            .nth(1)
            .map(|n| n.split('@').next().unwrap_or(n))
        else {
            continue;
        };
        let Some(slot) = slot_of(name) else { continue };
        if !slot_is_live(slot) {
            let _ = ip(&["link", "del", name]);
        }
    }
    // Store directories `swarm-cluster-<slot>-<pid>-<name>` of dead processes.
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("swarm-cluster-"))
                .and_then(|n| n.split('-').nth(1))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !pid_alive(pid) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(lease_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(slot) = name
                .to_str()
                .and_then(|n| n.strip_prefix("slot-"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if lease_pid(slot).is_some_and(|p| !pid_alive(p)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Leases a free slot: create-new of its lease file, so two processes never
/// hold the same one.
fn lease_slot() -> Result<u32> {
    let dir = lease_dir();
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let start = std::process::id() % SLOTS;
    for k in 0..SLOTS {
        let slot = (start + k) % SLOTS;
        let path = dir.join(format!("slot-{slot}"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                write!(f, "{}", std::process::id())
                    .map_err(io(format!("writing {}", path.display())))?;
                return Ok(slot);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(format!("creating {}", path.display()))(e)),
        }
    }
    Err(ClusterError::NoSlot { dir })
}

/// One server of the cluster.
#[derive(Debug)]
struct Server {
    netns: String,
    host_link: String,
    ip: Ipv4Addr,
    server_name: String,
    config: PathBuf,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    isolated: bool,
}

/// A 3-server NATS cluster with JetStream, each server in its own network
/// namespace (see the [module](self) docs). Everything is torn down on drop.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    slot: u32,
    bridge: String,
    dir: PathBuf,
    servers: Vec<Server>,
    durability: Durability,
}

impl Cluster {
    /// Builds the namespaces and links, starts the three servers and waits
    /// (bounded) until every one reports healthy. `name` names the cluster
    /// and its servers (letters, digits, `-`, `_`; others become `_`).
    ///
    /// Fails with [`ClusterError::NamespacesUnavailable`] when not root or
    /// without iproute2, [`ClusterError::ServerMissing`] without nats-server.
    pub fn start(name: &str) -> Result<Cluster> {
        check_namespaces()?;
        let binary = nats_server_binary();
        Command::new(&binary)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|source| ClusterError::ServerMissing {
                binary: binary.clone(),
                source,
            })?;
        sweep_stale();
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let slot = lease_slot()?;
        let dir = std::env::temp_dir().join(format!(
            "swarm-cluster-{slot}-{}-{name}",
            std::process::id()
        ));
        let mut cluster = Cluster {
            name,
            slot,
            bridge: format!("{PREFIX}{slot}br"),
            dir,
            servers: Vec::new(),
            durability: Durability::for_binary(&binary),
        };
        // From here on, drop undoes whatever was built.
        cluster.build()?;
        for i in 0..SERVERS {
            cluster.spawn(i)?;
        }
        cluster.wait_healthy()?;
        Ok(cluster)
    }

    fn subnet(&self) -> (u8, u8) {
        // `slot < 4096`: 200 + slot / 256 <= 215.
        ((200 + self.slot / 256) as u8, (self.slot % 256) as u8)
    }

    fn build(&mut self) -> Result<()> {
        let (a, b) = self.subnet();
        std::fs::create_dir_all(&self.dir)
            .map_err(io(format!("creating {}", self.dir.display())))?;
        ip(&["link", "add", &self.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("10.{a}.{b}.1/24"),
            "dev",
            &self.bridge,
        ])?;
        ip(&["link", "set", &self.bridge, "up"])?;
        let ips: Vec<Ipv4Addr> = (0..SERVERS)
            .map(|i| Ipv4Addr::new(10, a, b, 10 + i as u8))
            .collect();
        for (i, addr) in ips.iter().enumerate() {
            let netns = format!("{PREFIX}{}n{i}", self.slot);
            let host_link = format!("{PREFIX}{}h{i}", self.slot);
            let peer = format!("{PREFIX}{}p{i}", self.slot);
            let store = self.dir.join(format!("n{i}"));
            let config = self.dir.join(format!("n{i}.conf"));
            let log = self.dir.join(format!("n{i}.log"));
            let server_name = format!("{}-n{i}", self.name);
            ip(&["netns", "add", &netns])?;
            // Pushed before the links exist so that drop deletes the namespace
            // even if a later step fails.
            self.servers.push(Server {
                netns: netns.clone(),
                host_link: host_link.clone(),
                ip: *addr,
                server_name: server_name.clone(),
                config: config.clone(),
                store: store.clone(),
                log,
                child: None,
                isolated: false,
            });
            ip(&[
                "link", "add", &host_link, "type", "veth", "peer", "name", &peer,
            ])?;
            ip(&["link", "set", &peer, "netns", &netns])?;
            ip(&["link", "set", &host_link, "master", &self.bridge])?;
            ip(&["link", "set", &host_link, "up"])?;
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &peer,
            ])?;
            ip(&["-n", &netns, "link", "set", &peer, "up"])?;
            let routes: Vec<String> = ips
                .iter()
                .filter(|other| *other != addr)
                .map(|other| format!("\"nats-route://{other}:{ROUTE_PORT}\""))
                .collect();
            let text = format!(
                "server_name: \"{server_name}\"\n\
                 listen: \"{addr}:{CLIENT_PORT}\"\n\
                 http: \"{addr}:{HTTP_PORT}\"\n\
                 jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 64MB\n  max_file_store: 2GB\n{}}}\n\
                 cluster {{\n  name: \"{}\"\n  listen: \"{addr}:{ROUTE_PORT}\"\n  routes: [{}]\n}}\n",
                store.display(),
                self.durability.config_lines(),
                self.name,
                routes.join(", ")
            );
            std::fs::write(&config, text).map_err(io(format!("writing {}", config.display())))?;
        }
        Ok(())
    }

    fn server(&self, i: usize) -> Result<&Server> {
        self.servers.get(i).ok_or(ClusterError::NoServer(i))
    }

    fn server_mut(&mut self, i: usize) -> Result<&mut Server> {
        self.servers.get_mut(i).ok_or(ClusterError::NoServer(i))
    }

    /// Starts server `i`'s process and waits until its client port accepts.
    fn spawn(&mut self, i: usize) -> Result<()> {
        let binary = nats_server_binary();
        let server = self.server_mut(i)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&server.log)
            .map_err(io(format!("opening {}", server.log.display())))?;
        let config = server.config.to_string_lossy().into_owned();
        let child = Command::new("ip")
            .args(["netns", "exec", &server.netns, &binary, "-c", &config])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io(format!("starting nats-server {i} in {}", server.netns)))?;
        server.child = Some(child);
        if server.isolated {
            return Ok(());
        }
        let addr = SocketAddr::from((server.ip, CLIENT_PORT));
        let what = format!("server {i}'s client port {addr}");
        poll(&what, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        })
    }

    /// The servers' version and `sync_interval` (see [`Durability`]).
    pub fn durability(&self) -> &Durability {
        &self.durability
    }

    /// The cluster's name (its servers are `<name>-n0` ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Server `i`'s client URL, `nats://10.A.B.(10+i):4222`.
    ///
    /// # Panics
    ///
    /// If `i` is not 0, 1 or 2.
    pub fn url(&self, i: usize) -> String {
        let server = &self.servers[i];
        format!("nats://{}:{CLIENT_PORT}", server.ip)
    }

    /// Every server's client URL, comma-separated (`nats://a:4222,nats://b:4222,...`):
    /// the form NATS clients take for a server list.
    pub fn urls(&self) -> String {
        (0..self.servers.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The network namespaces of the servers (`ip netns` names), gone
    /// once the cluster is dropped.
    pub fn namespaces(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.netns.clone()).collect()
    }

    /// Server `i`'s `server_name`.
    ///
    /// # Panics
    ///
    /// If `i` is not 0, 1 or 2.
    pub fn server_name(&self, i: usize) -> &str {
        &self.servers[i].server_name
    }

    /// Server `i`'s log so far (its stderr), for a failing test's message.
    pub fn server_log(&self, i: usize) -> String {
        self.servers
            .get(i)
            .and_then(|s| std::fs::read_to_string(&s.log).ok())
            .unwrap_or_default()
    }

    /// Whether server `i`'s process runs (it may still be isolated).
    pub fn is_running(&mut self, i: usize) -> bool {
        self.servers
            .get_mut(i)
            .and_then(|s| s.child.as_mut())
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills server `i` (SIGKILL) and waits until it exited. Killing a
    /// stopped server does nothing.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let server = self.server_mut(i)?;
        if let Some(mut child) = server.child.take() {
            let _ = child.kill();
            child
                .wait()
                .map_err(io(format!("waiting for server {i} to exit")))?;
        }
        Ok(())
    }

    /// Kills server `i` if it runs and starts it again with the same
    /// configuration and store directory; waits until its client port
    /// accepts (unless it is isolated), not until it caught up: see
    /// [`wait_healthy`](Self::wait_healthy).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i)?;
        self.spawn(i)
    }

    /// Deletes server `i`'s store directory (a lost disk); the server must
    /// be stopped ([`kill`](Self::kill)) first, and comes back empty on
    /// [`restart`](Self::restart).
    pub fn wipe_store(&mut self, i: usize) -> Result<()> {
        if self.is_running(i) {
            return Err(ClusterError::Protocol {
                server: i,
                message: "wipe_store on a running server: kill it first".into(),
            });
        }
        let store = self.server(i)?.store.clone();
        match std::fs::remove_dir_all(&store) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("removing {}", store.display()))(e)),
        }
    }

    /// Cuts server `i`'s link (its veth's root end down): it can no longer
    /// reach the other servers, nor they or any client it.
    pub fn isolate(&mut self, i: usize) -> Result<()> {
        let link = self.server(i)?.host_link.clone();
        ip(&["link", "set", &link, "down"])?;
        self.server_mut(i)?.isolated = true;
        Ok(())
    }

    /// Restores server `i`'s link.
    pub fn heal(&mut self, i: usize) -> Result<()> {
        let link = self.server(i)?.host_link.clone();
        ip(&["link", "set", &link, "up"])?;
        self.server_mut(i)?.isolated = false;
        Ok(())
    }

    /// The servers that run and are not isolated.
    fn reachable(&mut self) -> Vec<usize> {
        (0..self.servers.len())
            .filter(|&i| self.is_running(i) && !self.servers[i].isolated)
            .collect()
    }

    /// Polls until every running, reachable server answers its `/healthz`
    /// with `ok` (JetStream on, the meta group has a leader, its streams and
    /// consumers are current), at most a minute.
    pub fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        loop {
            let mut healthy = true;
            for i in self.reachable() {
                match self.healthz(i) {
                    Ok(body) if body.contains("\"ok\"") => {}
                    Ok(body) => {
                        last = format!("server {i}: {body}");
                        healthy = false;
                    }
                    Err(e) => {
                        last = format!("server {i}: {e}");
                        healthy = false;
                    }
                }
            }
            if healthy {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Timeout {
                    what: format!("the cluster to be healthy (last: {last})"),
                    waited: WAIT,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /healthz` on server `i`'s monitoring port.
    fn healthz(&self, i: usize) -> Result<String> {
        let server = self.server(i)?;
        let addr = SocketAddr::from((server.ip, HTTP_PORT));
        let what = format!("GET http://{addr}/healthz");
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
            .map_err(io(what.clone()))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(io(what.clone()))?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: nats\r\n\r\n")
            .map_err(io(what.clone()))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(io(what.clone()))?;
        Ok(response
            .split_once("\r\n\r\n")
            .map_or(response.as_str(), |(_, body)| body)
            .trim()
            .to_owned())
    }

    /// The index of the server that leads stream `stream`, from the
    /// JetStream API's stream info (`cluster.leader`), asked of the first
    /// reachable server that answers; `None` when no server answers or the
    /// stream has no leader now.
    pub fn stream_leader(&mut self, stream: &str) -> Option<usize> {
        for i in self.reachable() {
            let Ok(info) = self.request(i, &format!("$JS.API.STREAM.INFO.{stream}"), b"") else {
                continue;
            };
            let Ok(info) = serde_json::from_slice::<serde_json::Value>(&info) else {
                continue;
            };
            let Some(leader) = info["cluster"]["leader"].as_str() else {
                continue;
            };
            return self.servers.iter().position(|s| s.server_name == leader);
        }
        None
    }

    /// Polls [`stream_leader`](Self::stream_leader) until the stream has a
    /// leader, at most a minute.
    pub fn wait_stream_leader(&mut self, stream: &str) -> Result<usize> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(leader) = self.stream_leader(stream) {
                return Ok(leader);
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Timeout {
                    what: format!("stream {stream} to have a leader"),
                    waited: WAIT,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One JetStream API request (`$JS.API.<...>`, empty body) to the first
    /// reachable server that answers with JSON: its reply (for example
    /// `$JS.API.CONSUMER.INFO.<stream>.<consumer>`).
    pub fn jetstream_api(&mut self, subject: &str) -> Option<serde_json::Value> {
        self.reachable().into_iter().find_map(|i| {
            let reply = self.request(i, subject, b"").ok()?;
            serde_json::from_slice(&reply).ok()
        })
    }

    /// The servers that hold a replica of `stream` (leader and followers),
    /// from its stream info.
    pub fn stream_replicas(&mut self, stream: &str) -> Option<HashSet<usize>> {
        for i in self.reachable() {
            let Ok(info) = self.request(i, &format!("$JS.API.STREAM.INFO.{stream}"), b"") else {
                continue;
            };
            let Ok(info) = serde_json::from_slice::<serde_json::Value>(&info) else {
                continue;
            };
            let cluster = &info["cluster"];
            let mut names: Vec<&str> = cluster["leader"].as_str().into_iter().collect();
            if let Some(replicas) = cluster["replicas"].as_array() {
                names.extend(replicas.iter().filter_map(|r| r["name"].as_str()));
            }
            if names.is_empty() {
                continue;
            }
            return Some(
                names
                    .iter()
                    .filter_map(|n| self.servers.iter().position(|s| s.server_name == *n))
                    .collect(),
            );
        }
        None
    }

    /// One request/reply on server `i` over the NATS protocol (a plain
    /// socket, no client library): the reply's payload.
    fn request(&self, i: usize, subject: &str, payload: &[u8]) -> Result<Vec<u8>> {
        let server = self.server(i)?;
        let addr = SocketAddr::from((server.ip, CLIENT_PORT));
        let what = format!("request {subject} on server {i} ({addr})");
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
            .map_err(io(what.clone()))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(io(what.clone()))?;
        let mut writer = stream.try_clone().map_err(io(what.clone()))?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).map_err(io(what.clone()))?;
        if !line.starts_with("INFO") {
            return Err(ClusterError::Protocol {
                server: i,
                message: format!("expected INFO, got {line:?}"),
            });
        }
        let inbox = "_INBOX.swarm_testkit";
        let mut out = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB {inbox} 1\r\nPUB {subject} {inbox} {}\r\n",
            payload.len()
        )
        .into_bytes();
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        writer.write_all(&out).map_err(io(what.clone()))?;
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(io(what.clone()))?;
            if n == 0 {
                return Err(ClusterError::Protocol {
                    server: i,
                    message: format!("{what}: connection closed"),
                });
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first().copied() {
                Some("PING") => writer.write_all(b"PONG\r\n").map_err(io(what.clone()))?,
                Some("-ERR") => {
                    return Err(ClusterError::Protocol {
                        server: i,
                        message: format!("{what}: {}", line.trim()),
                    });
                }
                Some("MSG") => {
                    let len: usize =
                        words.last().and_then(|w| w.parse().ok()).ok_or_else(|| {
                            ClusterError::Protocol {
                                server: i,
                                message: format!("bad MSG line {line:?}"),
                            }
                        })?;
                    let mut body = vec![0; len + 2];
                    reader.read_exact(&mut body).map_err(io(what.clone()))?;
                    body.truncate(len);
                    return Ok(body);
                }
                _ => {}
            }
        }
    }

    /// Tears everything down; what fails is left to the next sweep.
    fn teardown(&mut self) {
        for server in &mut self.servers {
            if let Some(mut child) = server.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = ip(&["netns", "del", &server.netns]);
            let _ = ip(&["link", "del", &server.host_link]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(lease_dir().join(format!("slot-{}", self.slot)));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Polls `done` every 20 ms, at most [`WAIT`].
fn poll(what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    while !done() {
        if Instant::now() > deadline {
            return Err(ClusterError::Timeout {
                what: what.to_owned(),
                waited: WAIT,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Starts a cluster, or returns `None` (printing why) where network
/// namespaces or nats-server are not available, except under `SWARM_CI=1`,
/// where that fails the test.
///
/// # Panics
///
/// If the cluster cannot be built for another reason, or under `SWARM_CI=1`
/// when namespaces or nats-server are missing.
pub fn start_or_skip(name: &str) -> Option<Cluster> {
    match Cluster::start(name) {
        Ok(cluster) => Some(cluster),
        Err(
            e @ (ClusterError::NamespacesUnavailable { .. } | ClusterError::ServerMissing { .. }),
        ) => {
            assert!(
                std::env::var("SWARM_CI").as_deref() != Ok("1"),
                "SWARM_CI=1 but the cluster tests cannot run: {e}"
            );
            let _ = writeln!(std::io::stderr(), "skipped: {e}");
            None
        }
        Err(e) => panic!("cannot start the NATS cluster: {e}"),
    }
}
