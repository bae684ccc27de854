//! `swarm run` keeps the tail of a job's stdout (its output) and stderr (in a
//! failed attempt's error) in bounded memory, however much the job prints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{code, run, stderr, stdout, write_jobs};

/// What every job below prints on each stream before its last line.
const CHATTER: u64 = 200_000_000;
/// The peak resident memory `swarm run` may reach; buffering one job's
/// output alone would take more than `CHATTER` bytes.
const MAX_RSS_BYTES: i64 = 100_000_000;

/// The largest peak resident set size, in bytes, of the children this process
/// has waited for (`getrusage(RUSAGE_CHILDREN)`): the `swarm` binary and the
/// jobs' shells.
fn children_peak_rss_bytes() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable `rusage`; getrusage only writes it.
    #[allow(unsafe_code)]
    let usage = unsafe {
        assert_eq!(
            libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()),
            0
        );
        usage.assume_init()
    };
    // Linux reports ru_maxrss in KiB.
    usage.ru_maxrss * 1024
}

#[test]
fn a_job_that_prints_200_mb_runs_in_bounded_memory_and_keeps_its_tails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let lines = vec![
        serde_json::json!({
            "id": "chatty",
            "cmd": format!(
                "head -c {CHATTER} /dev/zero | tr '\\0' o; echo; echo OUT-END; \
                 head -c {CHATTER} /dev/zero | tr '\\0' e >&2; echo ERR-SEEN >&2"
            ),
        })
        .to_string(),
        serde_json::json!({
            "id": "chatty-failing",
            "cmd": format!(
                "head -c {CHATTER} /dev/zero | tr '\\0' e >&2; echo; echo ERR-END >&2; \
                 head -c {CHATTER} /dev/zero | tr '\\0' o; exit 4"
            ),
            "max_attempts": 1,
        })
        .to_string(),
    ];
    let jobs = dir.join("jobs.jsonl");
    write_jobs(&jobs, &lines);
    let store = dir.join("store");
    let s = store.to_str().unwrap();
    let out = run(&["run", jobs.to_str().unwrap(), "--store", s, "--agents", "2"]);
    let err = stderr(&out);
    let peak = children_peak_rss_bytes();
    assert!(
        peak < MAX_RSS_BYTES,
        "`swarm run` peaked at {} MB resident for jobs printing {} MB",
        peak / 1_000_000,
        CHATTER / 1_000_000
    );
    // The failing job is dead-lettered with its stderr's last line, bounded.
    assert_eq!(code(&out), 1, "{err}");
    let dead = err
        .lines()
        .find(|l| l.starts_with("dead-lettered: job \"chatty-failing\""))
        .unwrap_or_else(|| panic!("no dead letter line in {err}"));
    assert!(
        dead.contains("exit status 4") && dead.ends_with("ERR-END"),
        "{dead}"
    );
    assert!(dead.len() < 4096, "the error kept {} bytes", dead.len());

    // The completed job's output is its stdout's tail, ending in its last line.
    let out = run(&["events", "--store", s, "--event", "task:completed"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let event: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let output = event["event"]["data"]["output"].as_str().unwrap();
    assert_eq!(output.len(), 2048, "the kept stdout tail");
    assert!(output.ends_with("ooo\nOUT-END\n"), "{output:?}");
}
