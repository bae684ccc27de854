//! How the cluster's servers write to disk: the `sync_interval` the harness
//! configures, chosen from the server's version.
//!
//! nats-server 2.10 and later take `jetstream { sync_interval: always }`:
//! every stored message is fsynced before the server acknowledges it, the
//! setting docs/nats.md recommends for "no acknowledged task lost on a
//! power cut". 2.9 does not know the option (it refuses the config), so
//! there the servers run with its default (fsync about every two minutes),
//! which survives process kills but not a power cut.
//!
//! `SWARM_NATS_SYNC=default` runs the default on any version (to compare);
//! `SWARM_NATS_SERVER` names the binary (see the module docs).

use std::fmt;
use std::process::Command;

/// What the servers were configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Durability {
    /// The server's version, as `nats-server --version` prints it (`v2.15.1`).
    pub version: String,
    /// Whether `sync_interval: always` is set.
    pub sync_always: bool,
}

impl Durability {
    /// The setting for `binary`: `sync_interval: always` where the version
    /// supports it and `SWARM_NATS_SYNC` is not `default`.
    pub(crate) fn for_binary(binary: &str) -> Durability {
        let version = Command::new(binary)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .and_then(|out| parse_version(&out))
            .unwrap_or_default();
        let supported = version_at_least(&version, (2, 10));
        let wanted = std::env::var("SWARM_NATS_SYNC").map_or(true, |v| v.trim() != "default");
        Durability {
            version,
            sync_always: supported && wanted,
        }
    }

    /// The lines of the `jetstream { }` block this adds.
    pub(crate) fn config_lines(&self) -> &'static str {
        if self.sync_always {
            "  sync_interval: always\n"
        } else {
            ""
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = if self.version.is_empty() {
            "nats-server (version unknown)".to_string()
        } else {
            format!("nats-server {}", self.version)
        };
        if self.sync_always {
            write!(f, "{version}, sync_interval: always")
        } else {
            write!(
                f,
                "{version}, default sync_interval (lazy fsync: not power-cut safe)"
            )
        }
    }
}

/// `v2.15.1` from `nats-server: v2.15.1`.
fn parse_version(out: &str) -> Option<String> {
    out.split_whitespace()
        .find(|w| w.starts_with('v') && w[1..].starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
}

/// Whether `v<major>.<minor>...` is at least `at_least`.
fn version_at_least(version: &str, at_least: (u32, u32)) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= at_least,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_and_compared() {
        assert_eq!(
            parse_version("nats-server: v2.15.1\n").as_deref(),
            Some("v2.15.1")
        );
        assert_eq!(parse_version("nothing here"), None);
        assert!(version_at_least("v2.10.0", (2, 10)));
        assert!(version_at_least("v2.15.1", (2, 10)));
        assert!(version_at_least("v3.0.0-beta", (2, 10)));
        assert!(!version_at_least("v2.9.10", (2, 10)));
        assert!(!version_at_least("", (2, 10)));
    }

    #[test]
    fn only_sync_always_adds_a_line() {
        let d = Durability {
            version: "v2.15.1".into(),
            sync_always: true,
        };
        assert_eq!(d.config_lines(), "  sync_interval: always\n");
        assert!(d.to_string().contains("sync_interval: always"));
        let d = Durability {
            version: "v2.9.10".into(),
            sync_always: false,
        };
        assert_eq!(d.config_lines(), "");
        assert!(d.to_string().contains("not power-cut safe"));
    }
}
