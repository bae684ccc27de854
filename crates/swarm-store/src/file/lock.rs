//! One writer per directory: an OS advisory lock on `swarm.lock`, held by the
//! writer thread for the store's life.
//!
//! The lock belongs to the open file, not to a pid written in it, so there is
//! nothing to go stale: the OS drops it when the file is closed or the process
//! dies (a SIGKILLed run can be resumed at once). The file itself is never
//! deleted, since deleting it would let two processes lock two different files.

use std::fs::{File, TryLockError};
use std::path::Path;

use crate::error::{Result, StoreError};

/// The lock file inside a store's directory.
pub(crate) const LOCK_FILE: &str = "swarm.lock";

/// Takes the exclusive lock of the store in `dir` (which must exist), or
/// fails with [`StoreError::Locked`] if another open store holds it.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = super::recovery::private_file()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(StoreError::io(&path, e)),
    }
}
