//! Locks that shrug off poisoning.
//!
//! The store's shared state stays consistent across a panic (every critical
//! section either completes its update or leaves the old value), so a poisoned
//! lock carries no information worth failing on; these thin wrappers over
//! `std::sync` return the guard either way. They replace `parking_lot`, which
//! cost this crate six dependencies for the same behaviour.

use std::sync::{self, PoisonError};

pub(crate) use std::sync::{Condvar, MutexGuard};

/// A `std::sync::Mutex` whose `lock` ignores poisoning.
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(sync::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(sync::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A `std::sync::RwLock` whose `read` and `write` ignore poisoning.
#[derive(Debug, Default)]
pub(crate) struct RwLock<T>(sync::RwLock<T>);

impl<T> RwLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(sync::RwLock::new(value))
    }

    pub(crate) fn read(&self) -> sync::RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> sync::RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Waits on `condvar`, ignoring poisoning like the locks above.
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}
