//! The 3-server cluster harness (`swarm_testkit::cluster`) itself, and
//! `swarm worker` against a cluster's server list.
//!
//! Root only (network namespaces): elsewhere the tests print that they are
//! skipped and pass, except under `SWARM_CI=1`, where they fail.
#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use swarm::EventStore;
use swarm::event::TaskCreated;
use swarm_store::{NatsStore, NatsStoreOptions};
use swarm_testkit::cluster::start_or_skip;

use support::swarm;

/// An R3 stream survives its leader's death (a new leader among the other
/// two, appends go on), the leader comes back, an isolated follower does
/// not stop the other two, and it catches up after the heal.
#[test]
fn cluster_harness_kills_restarts_isolates_and_heals() {
    let Some(mut cluster) = start_or_skip("harness") else {
        return;
    };
    assert_eq!(cluster.urls().split(',').count(), 3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let swarm_name = format!("harness_{}", std::process::id());
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    // Creating R3 streams on a fresh cluster can time out on a loaded
    // machine; creation is idempotent (create or bind), so try again.
    let connect = |i: usize| {
        let options = NatsStoreOptions::new(urls[i].as_str(), &swarm_name).replicas(3);
        let mut tries = 0;
        loop {
            tries += 1;
            match rt.block_on(NatsStore::connect(options.clone())) {
                Ok(store) => break store,
                Err(e) if tries < 3 => eprintln!("server {i}, try {tries}: {e}"),
                Err(e) => panic!("server {i}: {e}"),
            }
        }
    };
    let stream = NatsStoreOptions::new("", &swarm_name).stream_name();
    let first = connect(0);
    let append = |store: &NatsStore| {
        let task = swarm::Task::builder("k").build().unwrap();
        rt.block_on(store.append(vec![TaskCreated { task }.into()], None))
            .unwrap()
    };
    append(&first);
    let replicas = cluster.stream_replicas(&stream).unwrap();
    assert_eq!(replicas.len(), 3, "{replicas:?}");

    let leader = cluster.wait_stream_leader(&stream).unwrap();
    cluster.kill(leader).unwrap();
    assert!(!cluster.is_running(leader));
    let deadline = Instant::now() + Duration::from_secs(60);
    let new_leader = loop {
        match cluster.stream_leader(&stream) {
            Some(l) if l != leader => break l,
            _ => assert!(Instant::now() < deadline, "no new leader"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let other = connect(new_leader);
    append(&other);
    cluster.restart(leader).unwrap();
    cluster.wait_healthy().unwrap();

    let follower = (0..3)
        .find(|&i| Some(i) != cluster.stream_leader(&stream))
        .unwrap();
    cluster.isolate(follower).unwrap();
    // Unreachable from the root namespace while isolated.
    let addr: std::net::SocketAddr = urls[follower]["nats://".len()..].parse().unwrap();
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
    let leader_now = cluster.wait_stream_leader(&stream).unwrap();
    assert_ne!(leader_now, follower);
    append(&connect(leader_now));
    cluster.heal(follower).unwrap();
    cluster.wait_healthy().unwrap();
    // The healed follower serves the whole log, once the cluster settled:
    // right after a heal the isolated server's higher term forces an
    // election, and until a leader is back a stream info may be answered
    // from the healed server's own, older state (seen once on 2.15.1: 2 of
    // 3). What is promised is that it catches up, so wait for it (bounded).
    let healed = connect(follower);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let last = rt.block_on(healed.last_seq());
        let caught_up = matches!(last, Ok(3));
        seen.push(format!("{last:?}"));
        if caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the healed follower never served the whole log: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for store in [first, other, healed] {
        let _ = rt.block_on(store.close());
    }
    // Drop tears the namespaces down.
    let namespaces = cluster.namespaces();
    drop(cluster);
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    for ns in namespaces {
        assert!(
            !left
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns.as_str())),
            "{ns} left behind: {left}"
        );
    }
}

/// `swarm worker --nats` documents a comma-separated server list, the form
/// `Cluster::urls` gives; it should join the swarm with it.
#[test]
fn cluster_worker_joins_with_the_server_list() {
    let Some(cluster) = start_or_skip("urls") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let mut child = swarm()
        .args([
            "-v",
            "worker",
            "--nats",
            &cluster.urls(),
            "--swarm",
            &format!("urls_{}", std::process::id()),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("worker joined the swarm") {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("worker exited ({status}): {text}");
        }
        assert!(Instant::now() < deadline, "worker not ready: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A live `NatsStore::subscribe` keeps delivering the events appended after
/// the log stream's leader was killed under load (the stream has a new leader and
/// takes appends). Nodes rely on it: a node's follower resolves the handles
/// of the tasks it submitted from it, and `swarm demo --store nats://` waits
/// for its tasks' outcomes on it.
#[test]
fn cluster_subscription_survives_the_log_leader_dying() {
    let Some(mut cluster) = start_or_skip("subscribe") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let swarm_name = format!("subscribe_{}", std::process::id());
    let stream = NatsStoreOptions::new("", &swarm_name).stream_name();
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    let open = |i: usize| {
        let options = NatsStoreOptions::new(urls[i].as_str(), &swarm_name)
            .replicas(3)
            .shared_writers(true);
        let mut tries = 0;
        loop {
            tries += 1;
            match rt.block_on(NatsStore::connect(options.clone())) {
                Ok(store) => break store,
                Err(e) if tries < 3 => eprintln!("server {i}, try {tries}: {e}"),
                Err(e) => panic!("server {i}: {e}"),
            }
        }
    };
    let writer = open(0);
    let append = |store: &NatsStore| {
        let task = swarm::Task::builder("k").build().unwrap();
        rt.block_on(store.append(vec![TaskCreated { task }.into()], None))
    };
    append(&writer).unwrap();
    let leader = cluster.wait_stream_leader(&stream).unwrap();
    // The subscriber and the writer on servers that stay up.
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let subscriber = open(survivors[0]);
    let writer = open(survivors[1]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let follow = rt.spawn(async move {
        let mut live = subscriber.subscribe(1);
        while let Some(item) = futures::StreamExt::next(&mut live).await {
            if tx
                .send(item.map(|e| e.seq).map_err(|e| e.to_string()))
                .is_err()
            {
                return;
            }
        }
    });
    let first =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), rx.recv()).await });
    assert_eq!(
        first.ok().flatten(),
        Some(Ok(1)),
        "the subscription delivers"
    );
    // Under load: appends go on (errors ignored) while the leader dies.
    let busy = open(survivors[1]);
    let load = rt.spawn(async move {
        loop {
            let task = swarm::Task::builder("k").build().unwrap();
            let _ = busy.append(vec![TaskCreated { task }.into()], None).await;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while rt.block_on(writer.last_seq()).unwrap() < 2000 {
        assert!(Instant::now() < deadline, "the load does not append");
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.kill(leader).unwrap();
    let killed = Instant::now();
    // The load goes on through the failover (the nemesis's schedule).
    std::thread::sleep(Duration::from_secs(3));
    load.abort();
    // The log takes appends again through a new leader.
    let deadline = Instant::now() + Duration::from_secs(60);
    let appended = loop {
        if let Ok(range) = append(&writer) {
            break range;
        }
        assert!(Instant::now() < deadline, "no append after the leader died");
    };
    let last = appended.last().unwrap();
    let got = rt.block_on(async {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while seen.last() != Some(&Ok(last)) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(item)) => seen.push(item),
                Ok(None) | Err(_) => break,
            }
        }
        seen
    });
    follow.abort();
    let caught_up = killed.elapsed();
    eprintln!("subscription: caught up with the log {caught_up:?} after the leader died");
    assert_eq!(
        got.last(),
        Some(&Ok(last)),
        "the subscription delivered {got:?} within 60 s of the leader's death; \
         the log holds up to {last}"
    );
}
