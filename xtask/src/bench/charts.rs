//! SVG charts with plotters: queue-wait CDF (polling vs event), throughput
//! against the baselines, makespan with stealing on and off.

use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

/// The chart files and their titles, in the order the report shows them.
pub(crate) const CHARTS: &[(&str, &str)] = &[
    ("queue_wait_cdf.svg", "Queue wait CDF, polling vs event"),
    (
        "throughput.svg",
        "No-op task throughput against the baselines",
    ),
    ("makespan.svg", "Makespan with work stealing on and off"),
];

type Result<T> = std::result::Result<T, String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("cannot draw a chart: {e}")
}

/// Draws every chart whose scenario ran; returns the files written.
pub(crate) fn draw(report: &Value, out: &Path) -> Result<Vec<&'static str>> {
    let mut written = Vec::new();
    if let Some(cdf) = report.pointer("/series/seed_comparison/queue_wait_cdf_ms") {
        queue_wait_cdf(cdf, &out.join(CHARTS[0].0))?;
        written.push(CHARTS[0].0);
    }
    if let Some(t) = report.pointer("/scenarios/throughput") {
        let bars = [
            ("swarm (event)", t.get("event_tasks_per_sec")),
            ("tokio::spawn", t.get("baseline_spawn_tasks_per_sec")),
            ("channel pool", t.get("baseline_channel_tasks_per_sec")),
        ];
        bar_chart(
            &bars_of(&bars),
            CHARTS[1].1,
            "tasks per second (median of rounds)",
            &out.join(CHARTS[1].0),
        )?;
        written.push(CHARTS[1].0);
    }
    if let Some(w) = report.pointer("/scenarios/work_stealing") {
        let bars = [
            ("stealing on", w.get("makespan_ms_steal_on")),
            ("stealing off", w.get("makespan_ms_steal_off")),
        ];
        bar_chart(
            &bars_of(&bars),
            CHARTS[2].1,
            "makespan (ms), lower is better",
            &out.join(CHARTS[2].0),
        )?;
        written.push(CHARTS[2].0);
    }
    Ok(written)
}

fn bars_of(bars: &[(&str, Option<&Value>)]) -> Vec<(String, f64)> {
    bars.iter()
        .map(|(name, v)| ((*name).to_owned(), v.and_then(Value::as_f64).unwrap_or(0.0)))
        .collect()
}

fn points(v: Option<&Value>) -> Vec<(f64, f64)> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn queue_wait_cdf(cdf: &Value, path: &Path) -> Result<()> {
    // A log axis cannot show 0: waits under 0.01 ms are drawn at 0.01 ms.
    const FLOOR: f64 = 0.01;
    let polling = points(cdf.get("polling"));
    let event = points(cdf.get("event"));
    let max = polling
        .iter()
        .chain(&event)
        .map(|p| p.0)
        .fold(1.0, f64::max)
        * 1.5;
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(CHARTS[0].1, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((FLOOR..max).log_scale(), 0f64..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("queue wait, submit → start (ms, reference time, log scale)")
        .y_desc("fraction of tasks")
        .draw()
        .map_err(err)?;
    for (name, data, color) in [("polling", &polling, RED), ("event", &event, BLUE)] {
        // A step from 0 to the first point, then the CDF.
        let line: Vec<(f64, f64)> =
            std::iter::once((data.first().map_or(FLOOR, |p| p.0.max(FLOOR)), 0.0))
                .chain(data.iter().map(|&(x, y)| (x.max(FLOOR), y)))
                .collect();
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

fn bar_chart(bars: &[(String, f64)], title: &str, y_desc: &str, path: &Path) -> Result<()> {
    let top = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1.0) * 1.2;
    let n = bars.len() as f64;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..n, 0f64..top)
        .map_err(err)?;
    let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len() * 2 + 1)
        .x_label_formatter(&|x| {
            // Labels only at bar centres (i + 0.5).
            let i = x.floor();
            if (x - i - 0.5).abs() < 1e-6 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .y_label_formatter(&|y| super::report::fmt_value(*y))
        .draw()
        .map_err(err)?;
    let colors = [BLUE, RED, GREEN, MAGENTA];
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let x = i as f64;
            Rectangle::new(
                [(x + 0.2, 0.0), (x + 0.8, *v)],
                colors[i % colors.len()].filled(),
            )
        }))
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            Text::new(
                super::report::fmt_value(*v),
                (i as f64 + 0.35, *v + top * 0.03),
                ("sans-serif", 16),
            )
        }))
        .map_err(err)?;
    root.present().map_err(err)
}
