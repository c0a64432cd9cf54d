//! Draws the side-by-side chart: one group of bars per benchmark, one bar per server, showing
//! median received msgs/s either absolute or normalised to a baseline server (= 1.0).

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{RECEIVE_RATE, Summary};

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 640;
/// Fraction of each benchmark's slot covered by its bars.
const GROUP_WIDTH: f64 = 0.8;
/// natrix gets the warm colour; nats-server versions get blues.
const SUBJECT_COLOUR: RGBColor = RGBColor(230, 85, 13);
const OTHER_COLOURS: [RGBColor; 4] = [
    RGBColor(33, 113, 181),
    RGBColor(107, 174, 214),
    RGBColor(8, 48, 107),
    RGBColor(158, 202, 225),
];
const SUBJECT_LABEL: &str = "natrix";
/// The y axis reaches this multiple of the tallest bar, leaving room for the legend.
const HEADROOM: f64 = 1.35;

pub fn draw(input: &Path, output: &Path, baseline: Option<&str>) -> Result<()> {
    let summary = Summary::load(input)?;
    let baseline_idx = match baseline {
        Some(name) => Some(
            summary
                .servers
                .iter()
                .position(|s| s == name)
                .ok_or_else(|| anyhow!("baseline {name:?} not in {}", input.display()))?,
        ),
        None => None,
    };
    // values[bench][server]: median msgs/s, or its ratio to the baseline's median.
    let values: Vec<Vec<Option<f64>>> = (0..summary.benchmarks.len())
        .map(|b| {
            let base = baseline_idx.and_then(|i| summary.median(b, i, &RECEIVE_RATE));
            (0..summary.servers.len())
                .map(|s| {
                    let v = summary.median(b, s, &RECEIVE_RATE)?;
                    match (baseline_idx, base) {
                        (None, _) => Some(v),
                        (Some(_), Some(base)) if base > 0.0 => Some(v / base),
                        (Some(_), _) => None,
                    }
                })
                .collect()
        })
        .collect();
    let top = values
        .iter()
        .flatten()
        .flatten()
        .copied()
        .fold(0.0_f64, f64::max);
    if top <= 0.0 {
        bail!(
            "nothing to draw: no positive throughput in {}",
            input.display()
        );
    }
    render(&summary, &values, baseline, top, output)
        .map_err(|e| anyhow!("drawing {}: {e}", output.display()))
        .with_context(|| format!("writing chart {}", output.display()))
}

fn render(
    summary: &Summary,
    values: &[Vec<Option<f64>>],
    baseline: Option<&str>,
    top: f64,
    output: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(output, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let n_bench = summary.benchmarks.len();
    let n_servers = summary.servers.len();
    let (caption, y_desc) = match baseline {
        Some(b) => (
            format!(
                "Received msgs/s, median of rounds, normalised to {b} (= 1.0); * = messages lost"
            ),
            format!("throughput relative to {b}"),
        ),
        None => (
            "Received msgs/s, median of rounds".to_owned(),
            "msgs/s".to_owned(),
        ),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..n_bench as f64 - 0.5, 0.0..top * HEADROOM)?;
    // Benchmark names go under each group; plotters' own x labels would sit at round numbers.
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .y_label_formatter(&|y| {
            if baseline.is_some() {
                format!("{y:.1}")
            } else {
                short_count(*y)
            }
        })
        .label_style(("sans-serif", 16))
        .draw()?;

    let bar_width = GROUP_WIDTH / n_servers as f64;
    let mut other = 0;
    for (s, server) in summary.servers.iter().enumerate() {
        let colour = if server == SUBJECT_LABEL {
            SUBJECT_COLOUR
        } else {
            other += 1;
            OTHER_COLOURS[(other - 1) % OTHER_COLOURS.len()]
        };
        let left_of = |b: usize| b as f64 - GROUP_WIDTH / 2.0 + s as f64 * bar_width;
        let bars: Vec<(usize, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(b, row)| row[s].map(|v| (b, v)))
            .collect();
        chart
            .draw_series(bars.iter().map(|&(b, v)| {
                let x0 = left_of(b);
                Rectangle::new(
                    [(x0 + 0.01, 0.0), (x0 + bar_width - 0.01, v)],
                    colour.filled(),
                )
            }))?
            .label(server.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], colour.filled()));
        let label_font = ("sans-serif", 12)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(bars.iter().map(|&(b, v)| {
            let mark = if summary.lossy(b, s) { "*" } else { "" };
            let text = if baseline.is_some() {
                format!("{v:.2}")
            } else {
                short_count(v)
            };
            Text::new(
                format!("{text}{mark}"),
                (left_of(b) + bar_width / 2.0, v),
                label_font.clone(),
            )
        }))?;
    }
    let name_font = ("sans-serif", 16)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (b, name) in summary.benchmarks.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(b as f64, 0.0));
        root.draw(&Text::new(name.clone(), (px, py + 8), name_font.clone()))?;
    }
    if baseline.is_some() {
        chart.draw_series(LineSeries::new(
            [(-0.5, 1.0), (n_bench as f64 - 0.5, 1.0)],
            BLACK.mix(0.4).stroke_width(1),
        ))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 16))
        .draw()?;
    root.present()?;
    Ok(())
}

/// 1234567 -> "1.23M", 45600 -> "45.6k".
fn short_count(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_shortened_for_axis_labels() {
        assert_eq!(short_count(1_234_567.0), "1.23M");
        assert_eq!(short_count(45_600.0), "45.6k");
        assert_eq!(short_count(12.0), "12");
    }
}
