//! What the process costs: CPU time from `getrusage`, resident memory from
//! `/proc/self/statm`, and exponential draws from the shared seeded stream.

use std::time::Duration;

use swarm_core::rng::SplitMix64;

/// CPU time (user + system) the whole process has used so far.
pub(crate) fn cpu_time() -> Duration {
    // SAFETY: `rusage` is plain data, so all zeroes is a valid value, and
    // `getrusage` only writes into the struct we pass it.
    #[allow(unsafe_code)]
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Resident set size of this process, in bytes (0 where `/proc` is missing).
pub(crate) fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// Process CPU over a stretch of wall-clock time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuMeter {
    cpu: Duration,
    wall: std::time::Instant,
}

impl CpuMeter {
    pub(crate) fn start() -> Self {
        CpuMeter {
            cpu: cpu_time(),
            wall: std::time::Instant::now(),
        }
    }

    /// (CPU used, wall time passed) since `start`.
    pub(crate) fn read(&self) -> (Duration, Duration) {
        (cpu_time().saturating_sub(self.cpu), self.wall.elapsed())
    }
}

/// An exponential draw with this mean (arrival gaps of a Poisson process).
pub(crate) fn exp(rng: &mut SplitMix64, mean: Duration) -> Duration {
    mean.mul_f64(-(1.0 - rng.next_f64()).ln())
}

/// Median of a small sample (sorts it).
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Rounds to 3 decimals for the report.
pub(crate) fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
