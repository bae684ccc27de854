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

/// Another process's CPU time and I/O, read from `/proc/<pid>`: for the
/// nats-server the distributed scenario drains through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ProcUsage {
    /// User + system CPU.
    pub(crate) cpu: Duration,
    /// Bytes read through `read`-like calls (sockets and files).
    pub(crate) rchar: u64,
    /// Bytes written through `write`-like calls (sockets and files).
    pub(crate) wchar: u64,
    /// Bytes the process caused to be written to storage.
    pub(crate) write_bytes: u64,
}

impl ProcUsage {
    /// What `pid` has used so far; `None` if `/proc/<pid>` cannot be read
    /// (gone, or another user's without the rights).
    pub(crate) fn of(pid: u32) -> Option<ProcUsage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let cpu = parse_stat_cpu(&stat, clock_ticks_per_sec())?;
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
        let field = |name: &str| -> Option<u64> {
            io.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
        };
        Some(ProcUsage {
            cpu,
            rchar: field("rchar")?,
            wchar: field("wchar")?,
            write_bytes: field("write_bytes")?,
        })
    }

    /// What was used between `earlier` and `self`.
    pub(crate) fn since(&self, earlier: &ProcUsage) -> ProcUsage {
        ProcUsage {
            cpu: self.cpu.saturating_sub(earlier.cpu),
            rchar: self.rchar.saturating_sub(earlier.rchar),
            wchar: self.wchar.saturating_sub(earlier.wchar),
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
        }
    }
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// User + system CPU from a `/proc/<pid>/stat` line: fields 14 and 15,
/// counted after the command name's closing parenthesis (the name may hold
/// spaces and parentheses).
fn parse_stat_cpu(stat: &str, ticks_per_sec: u64) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: state (field 3) ... utime is field 14, stime 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_micros(ticks * 1_000_000 / ticks_per_sec))
}

/// The process listening on TCP `port` on this machine (IPv4 or IPv6), found
/// through `/proc/net/tcp*` and the processes' socket descriptors; `None` if
/// no process here listens on it, or its descriptors cannot be read.
pub(crate) fn listener_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && wanted.iter().any(|w| target.as_os_str() == w.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// The socket inodes in a `/proc/net/tcp` table that listen (state `0A`)
/// on `port`.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit(':').next()?;
            let listening = *f.get(3)? == "0A";
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod proc_tests {
    use super::*;

    #[test]
    fn cpu_is_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (nats (srv) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 9 0 1000 1 1";
        assert_eq!(parse_stat_cpu(stat, 100), Some(Duration::from_millis(4000)));
    }

    #[test]
    fn only_listening_sockets_on_the_port_are_found() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:107E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0 100 0 0 10 0\n   1: 0100007F:107E 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 31338 1 0 100 0 0 10 0\n   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31339 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 4222), vec![31337]);
        assert_eq!(listening_inodes(table, 8080), vec![31339]);
        assert!(listening_inodes(table, 1).is_empty());
    }

    #[test]
    fn this_process_can_be_read() {
        let now = ProcUsage::of(std::process::id()).expect("/proc/self");
        assert!(now.since(&now) == ProcUsage::default());
    }
}
