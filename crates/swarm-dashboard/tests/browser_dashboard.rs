//! The dashboard in headless Chromium, driven over WebDriver (chromedriver)
//! with fantoccini: a demo workload with failures runs, the page shows the
//! completed counter rising, a dead letter is retried through the page with
//! the token until it completes.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test
//! prints that it is skipped, except under `SWARM_CI=1`, where it fails.
//! With `SWARM_DASHBOARD_SCREENSHOT=PATH` it saves a screenshot there
//! (docs/img/dashboard.png is made that way).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use support::{Harness, TOKEN};
use swarm::{DurationDist, Priority, RetryPolicy, SimConfig, Swarm, Task};
use swarm_dashboard::{DashboardConfig, Token};

const CHROMIUM: &[&str] = &["/usr/bin/chromium", "/usr/bin/chromium-browser"];
const CHROMEDRIVER: &[&str] = &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];

fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Both binaries, or `None` (the test is skipped) unless `SWARM_CI=1`.
fn browser() -> Option<(PathBuf, PathBuf)> {
    match (find(CHROMIUM), find(CHROMEDRIVER)) {
        (Some(chromium), Some(driver)) => Some((chromium, driver)),
        _ => {
            assert!(
                std::env::var("SWARM_CI").as_deref() != Ok("1"),
                "chromium or chromedriver not found but SWARM_CI=1: apt-get install chromium chromium-driver"
            );
            println!(
                "skipped: chromium or chromedriver not found (apt-get install chromium chromium-driver)"
            );
            None
        }
    }
}

/// chromedriver on a free loopback port; killed when dropped.
async fn start_driver(driver: &Path) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (child, url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on {url}");
}

async fn open_browser(chromium: &Path, driver_url: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1440,1800", "--hide-scrollbars", "--force-device-scale-factor=1"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(driver_url)
        .await
        .expect("a WebDriver session in headless chromium")
}

/// The number in an element, such as `1,234`.
async fn number(client: &Client, css: &str) -> Option<u64> {
    let text = client
        .find(Locator::Css(css))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.replace(',', "").trim().parse().ok()
}

/// Polls `check` every 100 ms, at most `tries` times.
async fn eventually<T, F, Fut>(what: &str, tries: usize, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..tries {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting for {what}");
}

/// The demo's workload: mixed priorities at a steady rate until `stop`.
fn workload(swarm: Swarm, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let kinds = ["summarize", "embed", "classify", "translate"];
        for i in 0u64..20_000 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let priority = match i % 20 {
                0 => Priority::Critical,
                1..=4 => Priority::High,
                5..=14 => Priority::Normal,
                _ => Priority::Low,
            };
            let task = Task::builder(kinds[(i % 4) as usize])
                .priority(priority)
                .payload(format!("doc-{i}"))
                .build()
                .unwrap();
            if swarm.submit(task).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(8)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_live_demo_and_retries_a_dead_letter_with_the_token() {
    let Some((chromium, driver)) = browser() else {
        return;
    };
    // A demo with failures: a fifth of the attempts fail, two attempts each.
    let sim = SimConfig::fixed(Duration::ZERO)
        .with_duration(DurationDist::Uniform {
            min: Duration::from_millis(5),
            max: Duration::from_millis(40),
        })
        .with_error_rate(0.2)
        .with_seed(7);
    let builder = Swarm::builder()
        .sim_agents(6, sim)
        .max_agents(12)
        .autoscale(false)
        .retry(RetryPolicy {
            max_attempts: 2,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        })
        .memory_store();
    let h = Harness::build(builder, |c: DashboardConfig| {
        c.token(Token::new(TOKEN).unwrap())
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = workload(h.swarm.clone(), Arc::clone(&stop));

    let (_driver, driver_url) = start_driver(&driver).await;
    let client = open_browser(&chromium, &driver_url).await;
    client.goto(&h.url("/")).await.unwrap();
    assert_eq!(client.title().await.unwrap(), "swarm dashboard");

    // The completed counter rises while the page is open.
    let first = eventually("a first completion on the page", 300, || async {
        number(&client, "#count-completed").await.filter(|n| *n > 0)
    })
    .await;
    eventually("the completed counter to rise", 300, || async {
        number(&client, "#count-completed")
            .await
            .filter(|n| *n > first)
    })
    .await;
    eventually("the live feed to show events", 300, || async {
        let items = client.find_all(Locator::Css("#feed li")).await.ok()?;
        (items.len() > 5).then_some(())
    })
    .await;

    // A dead letter appears in its table.
    let id = eventually("a dead letter in the table", 600, || async {
        let row = client
            .find(Locator::Css("#dead tbody tr[data-id]"))
            .await
            .ok()?;
        row.attr("data-id").await.ok()?
    })
    .await;
    // Look it up: its status and timeline show.
    let input = client.find(Locator::Id("lookup-input")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(&id).await.unwrap();
    client
        .find(Locator::Id("lookup-go"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let status = eventually("the lookup of the dead letter", 100, || async {
        let s = client
            .find(Locator::Id("lookup-status"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(status, "dead_lettered");

    // Retry it through the page: the first action asks for the token. A
    // retry may fail again (a fifth of the attempts do); retry until it
    // completes, a bounded number of times.
    let mut asked = false;
    let mut completed = false;
    for _round in 0..12 {
        let retry = format!(r#"#dead tbody tr[data-id="{id}"] button.retry"#);
        eventually("a click on the dead letter's retry button", 300, || async {
            let button = client.find(Locator::Css(&retry)).await.ok()?;
            button.is_enabled().await.ok()?.then_some(())?;
            button.click().await.ok()
        })
        .await;
        if !asked {
            let field = client
                .wait()
                .for_element(Locator::Id("token-input"))
                .await
                .unwrap();
            eventually("the token dialog", 100, || async {
                field.is_displayed().await.ok()?.then_some(())
            })
            .await;
            field.send_keys(TOKEN).await.unwrap();
            client
                .find(Locator::Id("token-save"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            asked = true;
        }
        // The outcome, as the page's lookup shows it.
        let outcome = eventually("the retried task to finish", 300, || async {
            client
                .find(Locator::Id("lookup-go"))
                .await
                .ok()?
                .click()
                .await
                .ok()?;
            let s = client
                .find(Locator::Id("lookup-status"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            matches!(s.as_str(), "completed" | "dead_lettered").then_some(s)
        })
        .await;
        if outcome == "completed" {
            completed = true;
            break;
        }
    }
    assert!(
        completed,
        "the dead letter retried through the page completed"
    );
    let (_, task) = h.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(task["task"]["status"], "completed", "{task}");
    let names: Vec<&str> = task["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"task:dead_letter_retried"), "{names:?}");
    let token_state = client
        .find(Locator::Id("token-btn"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(token_state, "Token set ✓");

    if let Ok(path) = std::env::var("SWARM_DASHBOARD_SCREENSHOT") {
        // Let the chart gather some history for the picture.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let png = client.screenshot().await.unwrap();
        std::fs::write(&path, png).unwrap();
        println!("screenshot saved to {path}");
    }
    stop.store(true, Ordering::SeqCst);
    let _ = load.await;
    client.close().await.unwrap();
    h.stop().await;
}
