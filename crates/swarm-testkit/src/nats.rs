//! The NATS test harness.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The NATS server of the tests, from `SWARM_NATS_URL`. Without it the test
/// should return (it prints that it is skipped); under `SWARM_CI=1` a missing
/// server is a failure instead (CI must run the NATS tests), as the promtool
/// test does.
///
/// # Panics
///
/// Under `SWARM_CI=1` when `SWARM_NATS_URL` is unset or empty.
pub fn server_url() -> Option<String> {
    match std::env::var("SWARM_NATS_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ => {
            assert!(
                std::env::var("SWARM_CI").as_deref() != Ok("1"),
                "SWARM_NATS_URL not set but SWARM_CI=1: start nats-server with JetStream \
                 (-js) and set SWARM_NATS_URL, as .ci/run does"
            );
            // Written past the test harness's capture, so that it shows.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipped: SWARM_NATS_URL not set");
            None
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other test, or test process, uses: `<prefix>_<pid>_<n>_<tag>`
/// (letters, digits and `_`, as stream names allow).
pub fn unique_name(prefix: &str, tag: &str) -> String {
    format!(
        "{prefix}_{}_{}_{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
///
/// # Panics
///
/// If no port can be bound on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// A nats-server with JetStream that a test starts itself (own port, own
/// store directory), killed when dropped. The binary is `SWARM_NATS_SERVER`,
/// else `/usr/sbin/nats-server`, else `nats-server` on the `PATH`.
#[derive(Debug)]
pub struct OwnServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl OwnServer {
    fn binary() -> String {
        std::env::var("SWARM_NATS_SERVER").unwrap_or_else(|_| {
            if Path::new("/usr/sbin/nats-server").exists() {
                "/usr/sbin/nats-server".into()
            } else {
                "nats-server".into()
            }
        })
    }

    /// Starts a server on `port` keeping its streams in `dir`, and waits
    /// (bounded, 5 s) until it accepts connections.
    ///
    /// # Panics
    ///
    /// If nats-server cannot be started.
    pub fn start(port: u16, dir: &Path) -> OwnServer {
        let child = Command::new(Self::binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("SWARM_NATS_URL is set, so nats-server must be installed (or named in SWARM_NATS_SERVER)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        OwnServer {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    /// Starts a server on a free port.
    pub fn start_anywhere(dir: &Path) -> OwnServer {
        OwnServer::start(free_port(), dir)
    }

    /// Its URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills it (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills it and starts it again on the same port and store directory.
    pub fn restart(&mut self) {
        self.kill();
        *self = OwnServer::start(self.port, &self.dir.clone());
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}
