//! `--plot`: latency over time as an SVG chart (p50 and p99 per second of every latency kind).

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::stats::Point;

/// Drawing the chart failed.
#[derive(Debug, thiserror::Error)]
#[error("drawing {path}: {detail}")]
pub struct PlotError {
    path: String,
    detail: String,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
];

/// Draws `series` (kind -> per-second points) to `path`. Kinds listed in `kinds` are drawn, in
/// that order, when present; `warmup_s` is marked.
pub fn latency_chart(
    path: &Path,
    title: &str,
    series: &BTreeMap<String, Vec<Point>>,
    kinds: &[&str],
    warmup_s: f64,
) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let lines: Vec<(&str, &Vec<Point>)> = kinds
        .iter()
        .filter_map(|k| series.get(*k).map(|s| (*k, s)))
        .filter(|(_, s)| s.iter().any(|p| p.count > 0))
        .collect();
    let seconds = lines.iter().map(|(_, s)| s.len()).max().unwrap_or(0).max(1);
    let max_us = lines
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.p99))
        .max()
        .unwrap_or(1000)
        .max(10);
    let min_us = lines
        .iter()
        .flat_map(|(_, s)| s.iter().filter(|p| p.count > 0).map(|p| p.p50))
        .min()
        .unwrap_or(1)
        .max(1);
    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    // Start at a power of ten so the log axis gets labels (they are placed from one upwards).
    let y_lo = 10f64.powf((min_us as f64 / 1.5).max(1.0).log10().floor());
    let y_hi = max_us as f64 * 1.5;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..seconds as f64, (y_lo..y_hi).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds since start (by intended send time)")
        .y_desc("latency, µs (log scale)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    if warmup_s > 0.0 {
        chart
            .draw_series(DashedLineSeries::new(
                [(warmup_s, y_lo), (warmup_s, y_hi)],
                6,
                4,
                ShapeStyle::from(&BLACK.mix(0.5)).stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label("end of warm-up")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.5)));
    }
    for (i, (kind, points)) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for (quantile, dashed) in [("p50", false), ("p99", true)] {
            let data: Vec<(f64, f64)> = points
                .iter()
                .enumerate()
                .filter(|(_, p)| p.count > 0)
                .map(|(s, p)| {
                    let v = if dashed { p.p99 } else { p.p50 };
                    (s as f64 + 0.5, (v.max(1)) as f64)
                })
                .collect();
            let style = ShapeStyle::from(&color).stroke_width(2);
            let drawn = if dashed {
                chart.draw_series(DashedLineSeries::new(data, 8, 5, style))
            } else {
                chart.draw_series(LineSeries::new(data, style))
            };
            drawn
                .map_err(|e| err(&e))?
                .label(format!("{kind} {quantile}"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lat.svg");
        let mut series = BTreeMap::new();
        let pts: Vec<Point> = (0..5)
            .map(|i| Point {
                count: 10,
                p50: 300 + i * 10,
                p99: 900 + i * 50,
            })
            .collect();
        series.insert("ack".to_owned(), pts.clone());
        series.insert("deliver".to_owned(), pts);
        latency_chart(&path, "test", &series, &["ack", "deliver"], 1.0).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("deliver p99"));
    }
}
