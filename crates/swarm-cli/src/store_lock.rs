//! One process per store directory.
//!
//! A [`FileStore`](swarm::FileStore) directory belongs to one process at a
//! time: two writers would interleave records and corrupt the log. The store
//! does not lock it, so the commands that write (`demo`, `run`) take a lock
//! file holding their pid. A lock left by a process that no longer exists (a
//! `swarm run` killed with SIGKILL) is taken over, so a killed run can always
//! be resumed.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::error::CliError;

const LOCK_FILE: &str = "swarm.lock";

/// Held while a command writes to a store; removes the lock file on drop.
#[derive(Debug)]
pub(crate) struct StoreLock {
    path: PathBuf,
}

impl StoreLock {
    /// Takes the lock of the store in `dir` (creating `dir` if needed).
    pub(crate) fn acquire(dir: &Path) -> Result<StoreLock, CliError> {
        let io = |e: std::io::Error| {
            CliError::Runtime(format!("cannot lock the store {}: {e}", dir.display()))
        };
        fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(LOCK_FILE);
        // Two attempts: the second after removing a stale lock.
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    file.write_all(format!("{}\n", std::process::id()).as_bytes())
                        .map_err(io)?;
                    return Ok(StoreLock { path });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    match holder {
                        Some(pid) if pid != std::process::id() && is_alive(pid) => {
                            return Err(CliError::BadInput(format!(
                                "the store {} is in use by process {pid}: wait for it to finish or use another --store (if no swarm runs there, delete {})",
                                dir.display(),
                                path.display()
                            )));
                        }
                        _ => {
                            tracing::info!(lock = %path.display(), ?holder, "taking over a stale store lock");
                            match fs::remove_file(&path) {
                                Ok(()) => {}
                                Err(e) if e.kind() == ErrorKind::NotFound => {}
                                Err(e) => return Err(io(e)),
                            }
                        }
                    }
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(CliError::BadInput(format!(
            "the store {} is being locked by another process: try again",
            dir.display()
        )))
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether a process with this pid exists (`kill -0`, which signals nothing).
fn is_alive(pid: u32) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("kill -0 {pid} 2>/dev/null"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        // Cannot tell: assume it is gone rather than block a resume forever.
        .unwrap_or(false)
}
