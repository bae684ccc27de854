//! The text of the report: a markdown table (printed as is on the terminal)
//! and `report.md`.

use std::fmt::Write as _;

use serde_json::Value;

use super::SCENARIOS;

/// A goal from the issue or DESIGN.md's performance budgets.
struct Aim {
    scenario: &'static str,
    key: &'static str,
    text: &'static str,
    met: fn(f64, &Value) -> bool,
}

const AIMS: &[Aim] = &[
    Aim {
        scenario: "throughput",
        key: "event_tasks_per_sec",
        text: ">= 1 M/s (DESIGN)",
        met: |v, _| v >= 1e6,
    },
    Aim {
        scenario: "throughput",
        key: "ratio_vs_spawn",
        text: ">= 0.7",
        met: |v, _| v >= 0.7,
    },
    Aim {
        scenario: "dispatch_latency",
        key: "ratio_p50",
        text: "<= 1.5",
        met: |v, _| v <= 1.5,
    },
    Aim {
        scenario: "dispatch_latency",
        key: "ratio_p99",
        text: "<= 2 (DESIGN)",
        met: |v, _| v <= 2.0,
    },
    Aim {
        scenario: "priority",
        key: "critical_wait_ms",
        text: "<= task duration + 0.1",
        met: |v, details| {
            let aim = details
                .pointer("/priority/aim_ms")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            v <= aim
        },
    },
    Aim {
        scenario: "fairness",
        key: "small_tenant_p99_wait_ms",
        text: "<= 100 (fair share on)",
        met: |v, _| v <= 100.0,
    },
    Aim {
        scenario: "delay",
        key: "start_error_p99_ms",
        text: "<= 2 late",
        met: |v, _| v <= 2.0,
    },
    Aim {
        scenario: "delay",
        key: "early_starts",
        text: "0",
        met: |v, _| v == 0.0,
    },
    Aim {
        scenario: "delay",
        key: "idle_wakeups",
        text: "<= distinct_due_ms",
        met: |v, details| {
            details
                .pointer("/delay/distinct_due_ms")
                .and_then(Value::as_f64)
                .is_some_and(|due| v <= due)
        },
    },
    Aim {
        scenario: "idle_cpu",
        key: "event_cpu_ms_per_s",
        text: "<= 1",
        met: |v, _| v <= 1.0,
    },
    Aim {
        scenario: "idle_cpu",
        key: "event_wakeups",
        text: "0 (DESIGN)",
        met: |v, _| v == 0.0,
    },
    Aim {
        scenario: "work_stealing",
        key: "speedup",
        text: ">= 5",
        met: |v, _| v >= 5.0,
    },
    Aim {
        scenario: "store",
        key: "file_fsync_appends_per_sec",
        text: ">= 1 M/s",
        met: |v, _| v >= 1e6,
    },
    Aim {
        scenario: "store",
        key: "fsync_ratio",
        text: ">= 0.8 (of the disk's own bound, same run)",
        met: |v, _| v >= 0.8,
    },
    Aim {
        scenario: "store",
        key: "replay_events_per_sec",
        text: ">= 2 M/s",
        met: |v, _| v >= 2e6,
    },
    Aim {
        scenario: "store",
        key: "replay_from_snapshot_ms",
        text: "<= 50",
        met: |v, _| v <= 50.0,
    },
    Aim {
        scenario: "memory",
        key: "bytes_per_queued_task",
        text: "<= 96",
        met: |v, _| v <= 96.0,
    },
    Aim {
        scenario: "distributed",
        key: "tasks_per_sec_1_worker",
        text: ">= 17 000/s (1.5 x BullMQ here)",
        met: |v, _| v >= 17_000.0,
    },
    Aim {
        scenario: "distributed",
        key: "tasks_per_sec_2_workers",
        text: ">= 1 node's (same run)",
        met: |v, details| {
            details
                .pointer("/distributed/tasks_per_sec_1_worker")
                .and_then(Value::as_f64)
                .is_some_and(|one| v >= one)
        },
    },
    Aim {
        scenario: "soak",
        key: "retained_bytes_per_finished_task",
        text: "<= 16",
        met: |v, _| v <= 16.0,
    },
    Aim {
        scenario: "soak",
        key: "max_snapshot_lag_events",
        text: "<= 20 000",
        met: |v, _| v <= 20_000.0,
    },
    Aim {
        scenario: "soak",
        key: "covered_max_segments",
        text: "<= 2",
        met: |v, _| v <= 2.0,
    },
    Aim {
        scenario: "soak",
        key: "restart_ms",
        text: "<= restart_ms_fresh + 100",
        met: |v, details| {
            details
                .pointer("/soak/restart_ms_fresh")
                .and_then(Value::as_f64)
                .is_some_and(|fresh| v <= fresh + 100.0)
        },
    },
    Aim {
        scenario: "rate_limit",
        key: "max_window_rate",
        text: "<= 500 + burst",
        met: |v, details| {
            details
                .pointer("/rate_limit/aim_max_window_rate")
                .and_then(Value::as_f64)
                .is_some_and(|aim| v <= aim)
        },
    },
    Aim {
        scenario: "rate_limit",
        key: "other_kind_ratio",
        text: ">= 0.9 x baseline",
        met: |v, _| v >= 0.9,
    },
];

/// Why `name` was skipped, if it was (`details.<name>.skipped`, e.g. no NATS server).
pub(crate) fn skip_reason(report: &Value, name: &str) -> Option<String> {
    let details = report.pointer(&format!("/details/{name}"))?;
    if details.get("skipped").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    Some(
        details
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("no reason given")
            .to_owned(),
    )
}

fn flatten(prefix: &str, value: &Value, rows: &mut Vec<(String, f64)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, rows);
            }
        }
        Value::Number(n) => rows.push((prefix.to_owned(), n.as_f64().unwrap_or(f64::NAN))),
        _ => {}
    }
}

/// Human formatting: thousands separators for big numbers, 3 significant decimals for small.
pub(crate) fn fmt_value(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        let n = v.round() as i64;
        let s = n.abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 { format!("-{out}") } else { out }
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The results as a markdown table, one row per measured key.
pub(crate) fn table(report: &Value) -> String {
    let details = report.get("details").cloned().unwrap_or(Value::Null);
    let mut rows: Vec<[String; 4]> = Vec::new();
    for name in SCENARIOS {
        let Some(values) = report.pointer(&format!("/scenarios/{name}")) else {
            if let Some(reason) = skip_reason(report, name) {
                // The gist in the table; the whole reason is in report.md and report.json.
                let gist = reason.split(": ").next().unwrap_or_default();
                let reason = format!("skipped: {}", gist.replace('|', "/").replace('\n', " "));
                rows.push([
                    (*name).to_owned(),
                    "(skipped)".to_owned(),
                    "-".to_owned(),
                    reason,
                ]);
            }
            continue;
        };
        let mut flat = Vec::new();
        flatten("", values, &mut flat);
        for (key, v) in flat {
            let (aim, met) = match AIMS.iter().find(|a| a.scenario == *name && a.key == key) {
                Some(a) => (
                    a.text.to_owned(),
                    if (a.met)(v, &details) {
                        "yes"
                    } else {
                        "**no**"
                    },
                ),
                None => (String::new(), ""),
            };
            let aim = if met.is_empty() {
                aim
            } else {
                format!("{aim}: {met}")
            };
            rows.push([(*name).to_owned(), key, fmt_value(v), aim]);
        }
    }
    let header = ["scenario", "key", "value", "aim: met?"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |cells: [&str; 4], out: &mut String| {
        let _ = writeln!(
            out,
            "| {:<w0$} | {:<w1$} | {:>w2$} | {:<w3$} |",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
    };
    line(header, &mut out);
    let _ = writeln!(
        out,
        "|{}|{}|{}:|{}|",
        "-".repeat(widths[0] + 2),
        "-".repeat(widths[1] + 2),
        "-".repeat(widths[2] + 1),
        "-".repeat(widths[3] + 2)
    );
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3]], &mut out);
    }
    out
}

/// `report.md`: the machine, the table, the seed comparison beside the
/// reference's numbers, and the charts.
pub(crate) fn markdown(report: &Value, table: &str) -> String {
    let mut md = String::new();
    let quick = report
        .get("quick")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let _ = writeln!(
        md,
        "# swarm bench report{}\n",
        if quick { " (--quick)" } else { "" }
    );
    if let Some(m) = report.get("machine") {
        let s = |k: &str| {
            m.get(k)
                .map(|v| v.to_string().trim_matches('"').to_owned())
                .unwrap_or_default()
        };
        let _ = writeln!(
            md,
            "Machine: {} cores ({}), {} GiB, {}, Linux {}; load average at the end: {}.\n",
            s("nproc"),
            s("cpu_model"),
            s("memory_gib"),
            s("rustc"),
            s("kernel"),
            s("load_average_at_end")
        );
    }
    md.push_str(table);
    for name in SCENARIOS {
        if let Some(reason) = skip_reason(report, name) {
            let _ = writeln!(
                md,
                "\nSkipped: `{name}` ({reason}); its values are not in this report."
            );
        }
    }
    if let Some(seed) = report.pointer("/scenarios/seed_comparison") {
        let scale = report
            .pointer("/details/seed_comparison/time_scale")
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN);
        let get = |mode: &str, key: &str| {
            seed.pointer(&format!("/{mode}/{key}"))
                .and_then(Value::as_f64)
                .map_or_else(|| "-".to_owned(), fmt_value)
        };
        let _ = writeln!(
            md,
            "\n## Seed comparison beside the reference\n\n\
             Time-scaled {scale}x: every duration ran {scale} times shorter; latencies and \
             throughput are converted back to reference time. CPU is measured during the \
             compressed run.\n\n\
             | | reference polling | swarm polling | reference event | swarm event |\n\
             |---|---:|---:|---:|---:|\n\
             | avg latency (ms) | 1000 | {} | 50 | {} |\n\
             | max latency (ms) | - | {} | - | {} |\n\
             | CPU (%) | 15 | {} | 9 | {} |\n\
             | throughput (tasks/min) | 50 | {} | 150 | {} |",
            get("polling", "avg_latency_ms"),
            get("event", "avg_latency_ms"),
            get("polling", "max_latency_ms"),
            get("event", "max_latency_ms"),
            get("polling", "cpu_percent"),
            get("event", "cpu_percent"),
            get("polling", "throughput_per_min"),
            get("event", "throughput_per_min"),
        );
    }
    md.push_str("\n## Charts\n\n");
    for (file, title) in super::charts::CHARTS {
        let _ = writeln!(md, "![{title}]({file})\n");
    }
    md.push_str(
        "Settings and extra figures of every scenario are under `details` in `report.json`.\n",
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_formatted_for_people() {
        assert_eq!(fmt_value(1_234_567.8), "1,234,568");
        assert_eq!(fmt_value(-20_000.0), "-20,000");
        assert_eq!(fmt_value(512.4), "512");
        assert_eq!(fmt_value(3.25), "3.25");
        assert_eq!(fmt_value(0.1234), "0.123");
        assert_eq!(fmt_value(0.0), "0");
    }

    #[test]
    fn the_table_flattens_nested_keys_and_judges_aims() {
        let report = json!({
            "scenarios": {
                "dispatch_latency": {"event": {"p50_us": 10.0}, "ratio_p50": 1.2},
                "priority": {"critical_wait_ms": 7.0, "backlog": 100000},
            },
            "details": {"priority": {"aim_ms": 5.1}},
        });
        let table = table(&report);
        let row = |key: &str| {
            table
                .lines()
                .find(|l| l.contains(&format!(" {key} ")))
                .unwrap_or_default()
                .to_owned()
        };
        assert!(row("event.p50_us").contains("10"));
        assert!(row("ratio_p50").contains("yes"));
        assert!(row("critical_wait_ms").contains("**no**"));
        assert!(row("backlog").contains("100,000"));
        // Scenarios keep the run order, whatever the JSON order.
        assert!(table.find("dispatch_latency") < table.find("priority"));
    }

    #[test]
    fn a_skipped_scenario_gets_a_row_with_its_reason_and_no_values() {
        let report = json!({
            "scenarios": {"memory": {"bytes_per_queued_task": 100.0}},
            "details": {
                "memory": {},
                "distributed": {"skipped": true, "reason": "no NATS JetStream server at nats://127.0.0.1:4222"},
            },
        });
        let table = table(&report);
        let row = table
            .lines()
            .find(|l| l.contains("distributed"))
            .unwrap_or_default();
        assert!(row.contains("(skipped)"), "{table}");
        assert!(row.contains("no NATS JetStream server"), "{table}");
        assert!(!table.contains("tasks_per_sec"));
        assert!(table.contains("bytes_per_queued_task"));
        let md = markdown(&report, &table);
        assert!(md.contains("Skipped: `distributed` (no NATS JetStream server"));
        // Not skipped: no note.
        assert!(skip_reason(&report, "memory").is_none());
    }

    #[test]
    fn the_distributed_aims_are_judged() {
        let report = json!({
            "scenarios": {"distributed": {"tasks_per_sec_1_worker": 6000.0, "tasks_per_sec_2_workers": 4000.0}},
            "details": {"distributed": {"tasks_per_sec_1_worker": 6000.0}},
        });
        let table = table(&report);
        let row = |key: &str| {
            table
                .lines()
                .find(|l| l.contains(&format!(" {key} ")))
                .unwrap_or_default()
                .to_owned()
        };
        assert!(row("tasks_per_sec_1_worker").contains("**no**"), "{table}");
        // 4 000 is below the 1-node rate of the same run (6 000).
        assert!(
            row("tasks_per_sec_2_workers").contains(">= 1 node's (same run): **no**"),
            "{table}"
        );
        let report = json!({
            "scenarios": {"distributed": {"tasks_per_sec_1_worker": 18000.0, "tasks_per_sec_2_workers": 18500.0}},
            "details": {"distributed": {"tasks_per_sec_1_worker": 18000.0}},
        });
        let met = super::table(&report);
        assert!(met.contains("1.5 x BullMQ here): yes"), "{met}");
        assert!(met.contains(">= 1 node's (same run): yes"), "{met}");
        assert!(skip_reason(&report, "distributed").is_none());
    }

    #[test]
    fn the_soak_restart_aim_is_judged_against_the_fresh_start() {
        let row = |restart: f64| {
            let report = json!({
                "scenarios": {"soak": {"restart_ms": restart, "restart_ms_fresh": 40.0}},
                "details": {"soak": {"restart_ms_fresh": 40.0}},
            });
            table(&report)
                .lines()
                .find(|l| l.contains(" restart_ms "))
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            row(130.0).contains("<= restart_ms_fresh + 100: yes"),
            "{}",
            row(130.0)
        );
        assert!(row(5600.0).contains("**no**"), "{}", row(5600.0));
    }

    #[test]
    fn the_markdown_puts_the_reference_beside_the_run() {
        let report = json!({
            "quick": true,
            "scenarios": {"seed_comparison": {
                "polling": {"avg_latency_ms": 900.0, "max_latency_ms": 1.0, "cpu_percent": 2.0, "throughput_per_min": 48.0},
                "event": {"avg_latency_ms": 40.0, "max_latency_ms": 1.0, "cpu_percent": 1.0, "throughput_per_min": 149.0},
            }},
            "details": {"seed_comparison": {"time_scale": 20.0}},
        });
        let md = markdown(&report, &table(&report));
        assert!(md.contains("(--quick)"));
        assert!(md.contains("| avg latency (ms) | 1000 | 900 | 50 | 40 |"));
        assert!(md.contains("| throughput (tasks/min) | 50 | 48 | 150 | 149 |"));
        assert!(md.contains("queue_wait_cdf.svg"));
    }
}
