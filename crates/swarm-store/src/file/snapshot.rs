//! Snapshot files: `snapshot-<seq>.snap`, written atomically (temp file, fsync,
//! rename, fsync the directory), the newest K kept.
//!
//! Layout: magic `SWRMSNAP` (8), version (4), sequence (8), data length (8),
//! CRC32C of the data (4), then the data.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::format::{u32_at, u64_at};
use super::recovery::sync_dir;
use crate::error::{Result, StoreError};
use crate::store::Snapshot;

const MAGIC: [u8; 8] = *b"SWRMSNAP";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 32;

fn path_of(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("snapshot-{seq:020}.snap"))
}

/// The snapshot files in `dir`, oldest first; deletes the temp files of
/// interrupted saves.
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    list_files(dir, true)
}

/// The snapshot files in `dir`, oldest first; with `clean`, deletes the temp
/// files of interrupted saves (a read-only reader passes `false`).
fn list_files(dir: &Path, clean: bool) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_prefix("snapshot-")
            .and_then(|s| s.strip_suffix(".snap"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((seq, entry.path()));
        } else if clean && name.starts_with("snapshot-") && name.ends_with(".tmp") {
            // A save interrupted by a crash: never renamed, never valid.
            let _ = fs::remove_file(entry.path());
        }
    }
    out.sort_by_key(|(seq, _)| *seq);
    Ok(out)
}

/// Writes `snapshot` atomically, then deletes all but the newest `keep`.
pub(crate) fn save(dir: &Path, snapshot: &Snapshot, keep: usize) -> Result<()> {
    let path = path_of(dir, snapshot.seq);
    let tmp = path.with_extension("snap.tmp");
    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&snapshot.seq.to_le_bytes());
    header[20..28].copy_from_slice(&(snapshot.data.len() as u64).to_le_bytes());
    header[28..32].copy_from_slice(&crc32c::crc32c(&snapshot.data).to_le_bytes());
    let write = || -> std::io::Result<()> {
        let mut f = super::recovery::private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&header)?;
        f.write_all(&snapshot.data)?;
        f.sync_all()
    };
    write().map_err(|e| StoreError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
    sync_dir(dir)?;
    let all = list(dir)?;
    let excess = all.len().saturating_sub(keep.max(1));
    for (_, old) in &all[..excess] {
        fs::remove_file(old).map_err(|e| StoreError::io(old, e))?;
    }
    Ok(())
}

fn read_valid(path: &Path, seq: u64) -> Result<Option<Snapshot>, String> {
    let mut data = fs::read(path).map_err(|e| e.to_string())?;
    if data.len() < HEADER_LEN || data[0..8] != MAGIC {
        return Err("not a snapshot file".into());
    }
    let version = u32_at(&data, 8);
    if version != VERSION {
        return Err(format!(
            "snapshot format version {version} is not {VERSION}"
        ));
    }
    if u64_at(&data, 12) != seq {
        return Err("the sequence in the file does not match its name".into());
    }
    let len = u64_at(&data, 20);
    if len != (data.len() - HEADER_LEN) as u64 {
        return Err("the snapshot is truncated".into());
    }
    let body = &data[HEADER_LEN..];
    if crc32c::crc32c(body) != u32_at(&data, 28) {
        return Err("snapshot checksum mismatch".into());
    }
    // The header goes in place: no second buffer of the snapshot's size.
    data.drain(..HEADER_LEN);
    Ok(Some(Snapshot { seq, data }))
}

/// The newest valid snapshot at or before `at_or_before`; damaged ones are
/// skipped (and logged).
pub(crate) fn latest(dir: &Path, at_or_before: u64) -> Result<Option<Snapshot>> {
    latest_in(list(dir)?, at_or_before)
}

/// [`latest`] without writing: a temp file of an interrupted save is left alone.
pub(crate) fn latest_read_only(dir: &Path, at_or_before: u64) -> Result<Option<Snapshot>> {
    latest_in(list_files(dir, false)?, at_or_before)
}

fn latest_in(files: Vec<(u64, PathBuf)>, at_or_before: u64) -> Result<Option<Snapshot>> {
    for (seq, path) in files.into_iter().rev() {
        if seq > at_or_before {
            continue;
        }
        match read_valid(&path, seq) {
            Ok(found) => return Ok(found),
            Err(reason) => {
                tracing::warn!(file = %path.display(), %reason, "skipping damaged snapshot");
            }
        }
    }
    Ok(None)
}

/// Deletes snapshots past `last_seq` (a log cut on open would otherwise let
/// them describe events that are gone); returns how many.
pub(crate) fn drop_after(dir: &Path, last_seq: u64) -> Result<usize> {
    let mut dropped = 0;
    for (seq, path) in list(dir)? {
        if seq > last_seq {
            fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
            dropped += 1;
        }
    }
    if dropped > 0 {
        sync_dir(dir)?;
    }
    Ok(dropped)
}
