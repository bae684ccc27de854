//! Shared setup for the criterion benchmarks in `benches/benches/`.
#![allow(missing_docs)]

/// A multi-threaded tokio runtime with `workers` worker threads.
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot start a tokio runtime for the benchmark: {e}"),
    }
}

/// A current-thread tokio runtime.
pub fn current_thread() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot start a tokio runtime for the benchmark: {e}"),
    }
}
