//! Crash recovery in the style of sled's `test_crash_recovery.rs`: this test
//! binary re-runs itself as a child that appends with `Durability::Fsync` and
//! prints every acknowledged append; the parent SIGKILLs it at random moments,
//! then reopens the log and checks that every acknowledged event is there, in
//! order, with a gap-free sequence, and that nothing unwritten appears.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use swarm_core::Event;
use swarm_core::event::QueueBacklog;
use swarm_store::{EventStore, FileStore, FileStoreOptions};

const CHILD_ENV: &str = "SWARM_STORE_CRASH_CHILD_DIR";
const ROUND_ENV: &str = "SWARM_STORE_CRASH_ROUND";
const ROUNDS: u64 = 24;
const WRITERS: u64 = 4;

/// Event `n` of writer `w` in round `round`: the id says exactly who wrote it.
fn event(round: u64, w: u64, n: u64) -> Event {
    QueueBacklog {
        queued: round,
        threshold: (w << 32) | n,
    }
    .into()
}

fn options() -> FileStoreOptions {
    // Small segments, so crashes also land around segment rolls.
    FileStoreOptions::default().segment_size(16 * 1024)
}

/// The child: append forever from several tasks, print `w n first end` for
/// each acknowledged append (events `n..n+len` of writer `w` at `first..end`).
#[test]
#[ignore = "run by crash_recovery_keeps_every_acknowledged_append as its child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Arc::new(FileStore::open_with(&dir, options()).unwrap());
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = Arc::clone(&store);
            let out = Arc::clone(&out);
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    let len = 1 + (n % 5);
                    let batch = (n..n + len).map(|k| event(round, w, k)).collect();
                    let r = store.append(batch, None).await.unwrap();
                    let mut out = out.lock().unwrap();
                    // Written straight to stdout (not captured), one line per ack.
                    writeln!(out, "ack {w} {n} {} {}", r.start, r.end).unwrap();
                    out.flush().unwrap();
                    n += len;
                }
            }));
        }
        // The writers never stop: the parent kills this process.
        futures::future::join_all(tasks).await;
    });
}

struct Ack {
    w: u64,
    n: u64,
    start: u64,
    end: u64,
}

fn run_child_and_kill(dir: &Path, round: u64, kill_after: Duration) -> Vec<Ack> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let parts: Vec<&str> = line.split_whitespace().collect();
            // A line cut by the kill is not an acknowledgement we can trust to have been
            // complete; it is simply skipped (its append may or may not be in the log).
            if parts.len() == 5 && parts[0] == "ack" {
                let p = |i: usize| parts[i].parse::<u64>();
                if let (Ok(w), Ok(n), Ok(start), Ok(end)) = (p(1), p(2), p(3), p(4)) {
                    acks.push(Ack { w, n, start, end });
                }
            }
        }
        acks
    });
    std::thread::sleep(kill_after);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap()
}

#[test]
fn crash_recovery_keeps_every_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    // Every acknowledged event: seq -> (round, writer, n).
    let mut acked: HashMap<u64, Event> = HashMap::new();
    let mut total_acks = 0;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for round in 0..ROUNDS {
        let kill_after = Duration::from_millis(rng.random_range(20..400));
        let acks = run_child_and_kill(dir.path(), round, kill_after);
        total_acks += acks.len();
        for a in &acks {
            for (i, seq) in (a.start..a.end).enumerate() {
                let previous = acked.insert(seq, event(round, a.w, a.n + i as u64));
                assert!(previous.is_none(), "sequence {seq} acknowledged twice");
            }
        }

        // Reopen and check.
        runtime.block_on(async {
            let store = FileStore::open_with(dir.path(), options()).unwrap();
            let last = store.last_seq().await.unwrap();
            let mut events = store.read(1);
            let mut expected = 1;
            while let Some(e) = events.next().await {
                let e = e.unwrap();
                assert_eq!(e.seq, expected, "gap-free and in order");
                expected += 1;
                match acked.get(&e.seq) {
                    Some(want) => assert_eq!(&e.event, want, "acknowledged event changed"),
                    None => {
                        // Written but never acknowledged (the kill came before the ack
                        // line): it must still be an event some child really appended.
                        let Event::QueueBacklog(q) = &e.event else {
                            panic!("unknown event {:?}", e.event)
                        };
                        assert!(q.queued <= round, "event from a round that did not run");
                        assert!(q.threshold >> 32 < WRITERS);
                        // Later rounds must not ack this seq again with other content.
                        acked.insert(e.seq, e.event.clone());
                    }
                }
            }
            assert_eq!(expected - 1, last);
            let max_acked = acked.keys().max().copied().unwrap_or(0);
            assert!(
                last >= max_acked,
                "acknowledged sequence {max_acked} lost (log ends at {last})"
            );
            store.close().await.unwrap();
        });
    }
    assert!(total_acks > 0, "the children acknowledged nothing");
}
