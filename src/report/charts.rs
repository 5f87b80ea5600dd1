//! PNG charts, drawn with plotters into memory and encoded as PNG.
//!
//! Text is rendered with the DejaVu Sans font compiled into the binary, so
//! charts need no system font library.

use std::sync::Once;

use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::engine::{IntervalRow, RunResult, INTERVAL};
use crate::metrics::SignedHistogram;

use super::Summary;

/// Width and height of every chart, in pixels.
pub const CHART_SIZE: (u32, u32) = (1200, 700);

/// The chart files `write_all` produces.
pub const CHART_FILES: [&str; 5] = [
    "latency_over_time.png",
    "latency_distribution.png",
    "throughput.png",
    "overhead.png",
    "endpoints.png",
];

const CLIENT_COLOR: RGBColor = RGBColor(31, 119, 180);
const SERVER_COLOR: RGBColor = RGBColor(44, 160, 44);
const ERROR_COLOR: RGBColor = RGBColor(214, 39, 40);
const CORRECTED_COLOR: RGBColor = RGBColor(255, 127, 14);
const OVERHEAD_COLOR: RGBColor = RGBColor(148, 103, 189);

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error>>;

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if plotters::style::register_font("sans-serif", style, dejavu::sans::regular()).is_err() {
                eprintln!("warning: the embedded chart font could not be loaded; charts will have no text");
            }
        }
    });
}

/// Renders every chart; returns file names with PNG bytes.
pub fn render_all(
    result: &RunResult,
    summary: &Summary,
) -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
    register_font();
    let subtitle = format!(
        "{} · {} model · {} users{}",
        summary.scenario.name,
        summary.scenario.load_model,
        summary.scenario.users,
        if summary.run.partial {
            " · PARTIAL RUN"
        } else {
            ""
        }
    );
    let all = result.totals.combined_requests();
    Ok(vec![
        (
            CHART_FILES[0],
            render(|area| latency_over_time(area, result, &subtitle))?,
        ),
        (
            CHART_FILES[1],
            render(|area| {
                let corrected = result
                    .plan
                    .load
                    .has_correction()
                    .then_some(&all.corrected_ok);
                latency_distribution(area, &all.client_ok, corrected, &all.server_ok, &subtitle)
            })?,
        ),
        (
            CHART_FILES[2],
            render(|area| throughput(area, result, &subtitle))?,
        ),
        (
            CHART_FILES[3],
            render(|area| overhead(area, result, &all.overhead, &subtitle))?,
        ),
        (
            CHART_FILES[4],
            render(|area| endpoints(area, result, summary))?,
        ),
    ])
}

fn render(draw: impl FnOnce(&Area<'_>) -> DrawResult) -> anyhow::Result<Vec<u8>> {
    let (width, height) = CHART_SIZE;
    let mut pixels = vec![0_u8; (width * height * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut pixels, CHART_SIZE).into_drawing_area();
        area.fill(&WHITE)
            .map_err(|error| anyhow::anyhow!("cannot draw a chart: {error}"))?;
        draw(&area).map_err(|error| anyhow::anyhow!("cannot draw a chart: {error}"))?;
        area.present()
            .map_err(|error| anyhow::anyhow!("cannot draw a chart: {error}"))?;
    }
    encode_png(&pixels, width, height)
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(bytes)
}

/// Upper bound for an axis: 10 % above the largest value, never zero.
fn axis_max(values: impl Iterator<Item = f64>) -> f64 {
    let max = values.fold(0.0_f64, f64::max);
    if max > 0.0 {
        max * 1.1
    } else {
        1.0
    }
}

/// One point per interval at its end. Intervals shorter than half the
/// usual length (the sliver at the end of a run) are left out: their few
/// samples make spikes, and they stay in `timeseries.csv`.
fn series(result: &RunResult, value: impl Fn(&IntervalRow, f64) -> Option<f64>) -> Vec<(f64, f64)> {
    let min_length_s = INTERVAL.as_secs_f64() / 2.0;
    result
        .intervals
        .iter()
        .filter(|snapshot| snapshot.end_s - snapshot.start_s >= min_length_s)
        .filter_map(|snapshot| {
            let length_s = snapshot.end_s - snapshot.start_s;
            value(&snapshot.all, length_s).map(|y| (snapshot.end_s, y))
        })
        .collect()
}

/// Writes a note in the middle of a chart that has nothing to plot.
fn note_no_data(area: &Area<'_>, what: &str) -> DrawResult {
    let (width, height) = CHART_SIZE;
    let text = format!("no {what} in this run");
    area.draw(&Text::new(
        text,
        (width as i32 / 2 - 150, height as i32 / 2),
        ("sans-serif", 24).into_font().color(&ERROR_COLOR),
    ))?;
    Ok(())
}

fn latency_over_time(area: &Area<'_>, result: &RunResult, subtitle: &str) -> DrawResult {
    let mut lines = vec![
        (
            "client raw p50",
            series(result, |row, _| row.client.p50_ms),
            CLIENT_COLOR,
            2,
        ),
        (
            "client raw p99",
            series(result, |row, _| row.client.p99_ms),
            CLIENT_COLOR,
            1,
        ),
        (
            "server p50",
            series(result, |row, _| row.server.p50_ms),
            SERVER_COLOR,
            2,
        ),
        (
            "server p99",
            series(result, |row, _| row.server.p99_ms),
            SERVER_COLOR,
            1,
        ),
    ];
    if result.plan.load.has_correction() {
        lines.push((
            "client corrected p50",
            series(result, |row, _| row.corrected.p50_ms),
            CORRECTED_COLOR,
            2,
        ));
        lines.push((
            "client corrected p99",
            series(result, |row, _| row.corrected.p99_ms),
            CORRECTED_COLOR,
            1,
        ));
    }
    let x_max = axis_max(result.intervals.iter().map(|snapshot| snapshot.end_s));
    let y_max = axis_max(
        lines
            .iter()
            .flat_map(|(_, points, _, _)| points.iter().map(|point| point.1)),
    );
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("Client vs server latency over time, successful requests ({subtitle})"),
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("elapsed time (s)")
        .y_desc("latency (ms)")
        .label_style(("sans-serif", 16))
        .draw()?;
    let empty = lines.iter().all(|(_, points, _, _)| points.is_empty());
    for (label, points, color, width) in lines {
        let style = color.stroke_width(width);
        chart
            .draw_series(LineSeries::new(points, style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()?;
    if empty {
        note_no_data(area, "successful request")?;
    }
    Ok(())
}

/// Percentile spectrum points: x = -log10(1 - q), so 1 is p90, 2 is p99, 3 is p99.9.
fn spectrum(histogram: &Histogram<u64>, x_max: f64) -> Vec<(f64, f64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let steps = 200;
    (0..=steps)
        .map(|step| {
            let x = x_max * f64::from(step) / f64::from(steps);
            let quantile = 1.0 - 10_f64.powf(-x);
            (x, histogram.value_at_quantile(quantile) as f64 / 1000.0)
        })
        .collect()
}

fn percentile_label(x: &f64) -> String {
    let percent = 100.0 * (1.0 - 10_f64.powf(-x));
    let digits = if *x <= 2.0 {
        0
    } else {
        (x.round() as usize).saturating_sub(2)
    };
    format!("{percent:.digits$}%")
}

fn latency_distribution(
    area: &Area<'_>,
    client: &Histogram<u64>,
    corrected: Option<&Histogram<u64>>,
    server: &Histogram<u64>,
    subtitle: &str,
) -> DrawResult {
    // Show the tail only as far as the sample count supports: p99.9 needs 1000 samples.
    let samples = client.len().max(server.len()).max(10);
    let x_max = (samples as f64).log10().floor().clamp(1.0, 5.0);
    let mut lines = vec![
        ("client raw", spectrum(client, x_max), CLIENT_COLOR),
        ("server (reported)", spectrum(server, x_max), SERVER_COLOR),
    ];
    if let Some(corrected) = corrected {
        lines.push((
            "client corrected",
            spectrum(corrected, x_max),
            CORRECTED_COLOR,
        ));
    }
    let y_max = axis_max(
        lines
            .iter()
            .flat_map(|(_, points, _)| points.iter().map(|point| point.1)),
    );
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("Latency distribution, client vs server ({subtitle})"),
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("percentile (log scale)")
        .y_desc("latency (ms)")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&percentile_label)
        .label_style(("sans-serif", 16))
        .draw()?;
    let empty = lines.iter().all(|(_, points, _)| points.is_empty());
    for (label, points, color) in lines {
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points, style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()?;
    if empty {
        note_no_data(area, "successful request")?;
    }
    Ok(())
}

/// Two panels: the overhead's percentile spectrum (negative values
/// included) and its p50 and p99 over time.
fn overhead(
    area: &Area<'_>,
    result: &RunResult,
    histogram: &SignedHistogram,
    subtitle: &str,
) -> DrawResult {
    let (title, panels) = area.split_vertically(50);
    title.titled(
        &format!("Overhead: client time minus server time, successful requests ({subtitle})"),
        ("sans-serif", 22),
    )?;
    let (left, right) = panels.split_horizontally(CHART_SIZE.0 / 2);

    let samples = histogram.len().max(10);
    let x_max = (samples as f64).log10().floor().clamp(1.0, 5.0);
    let spectrum: Vec<(f64, f64)> = if histogram.is_empty() {
        Vec::new()
    } else {
        (0..=200)
            .filter_map(|step| {
                let x = x_max * f64::from(step) / 200.0;
                let us = histogram.value_at_quantile(1.0 - 10_f64.powf(-x))?;
                Some((x, us as f64 / 1000.0))
            })
            .collect()
    };
    let (y_min, y_max) = signed_range(spectrum.iter().map(|point| point.1));
    let mut chart = ChartBuilder::on(&left)
        .caption("distribution", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0.0..x_max, y_min..y_max)?;
    chart
        .configure_mesh()
        .x_desc("percentile (log scale)")
        .y_desc("overhead (ms)")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&percentile_label)
        .label_style(("sans-serif", 14))
        .draw()?;
    chart.draw_series(LineSeries::new(
        spectrum.clone(),
        OVERHEAD_COLOR.stroke_width(2),
    ))?;

    let p50 = series(result, |row, _| row.overhead.p50_ms);
    let p99 = series(result, |row, _| row.overhead.p99_ms);
    let x_end = axis_max(result.intervals.iter().map(|snapshot| snapshot.end_s));
    let (y_min, y_max) = signed_range(p50.iter().chain(&p99).map(|point| point.1));
    let mut chart = ChartBuilder::on(&right)
        .caption("over time", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0.0..x_end, y_min..y_max)?;
    chart
        .configure_mesh()
        .x_desc("elapsed time (s)")
        .y_desc("overhead (ms)")
        .label_style(("sans-serif", 14))
        .draw()?;
    let empty = spectrum.is_empty() && p50.is_empty();
    for (label, points, width) in [("p50", p50, 2), ("p99", p99, 1)] {
        let style = OVERHEAD_COLOR.stroke_width(width);
        chart
            .draw_series(LineSeries::new(points, style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    if empty {
        note_no_data(area, "server time")?;
    }
    Ok(())
}

/// Returns an axis range that contains every value and zero, with a margin.
fn signed_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (min, max) = values.fold((0.0_f64, 0.0_f64), |(min, max), value| {
        (min.min(value), max.max(value))
    });
    let margin = ((max - min) * 0.1).max(0.1);
    (if min < 0.0 { min - margin } else { 0.0 }, max + margin)
}

/// Small multiples: client vs server percentile spectrum for each endpoint.
fn endpoints(area: &Area<'_>, result: &RunResult, summary: &Summary) -> DrawResult {
    let (title, grid) = area.split_vertically(50);
    title.titled(
        &format!(
            "Client vs server latency by endpoint, successful requests ({}{})",
            summary.scenario.name,
            if summary.run.partial {
                " · PARTIAL RUN"
            } else {
                ""
            }
        ),
        ("sans-serif", 22),
    )?;
    let count = result.endpoints.len();
    let columns = count.clamp(1, 3);
    let rows = count.div_ceil(columns);
    for ((info, stats), cell) in result
        .endpoints
        .iter()
        .zip(&result.totals.endpoints)
        .zip(grid.split_evenly((rows, columns)))
    {
        let samples = stats.client_ok.len().max(10);
        let x_max = (samples as f64).log10().floor().clamp(1.0, 4.0);
        let client = spectrum(&stats.client_ok, x_max);
        let server = spectrum(&stats.server_ok, x_max);
        let y_max = axis_max(client.iter().chain(&server).map(|point| point.1));
        let mut chart = ChartBuilder::on(&cell)
            .caption(
                format!("{} ({} {})", info.name, info.method, info.path),
                ("sans-serif", 15),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_labels(x_max as usize + 1)
            .x_label_formatter(&percentile_label)
            .label_style(("sans-serif", 12))
            .draw()?;
        for (label, points, color) in [
            ("client raw", client, CLIENT_COLOR),
            ("server", server, SERVER_COLOR),
        ] {
            let style = color.stroke_width(2);
            chart
                .draw_series(LineSeries::new(points, style))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()?;
    }
    Ok(())
}

fn throughput(area: &Area<'_>, result: &RunResult, subtitle: &str) -> DrawResult {
    let per_second = |count: fn(&IntervalRow) -> u64| {
        series(result, move |row, length_s| {
            Some(count(row) as f64 / length_s)
        })
    };
    let ok = per_second(|row| row.ok);
    let errors = per_second(|row| row.errors);
    let empty = ok.is_empty() && errors.is_empty();
    let x_max = axis_max(result.intervals.iter().map(|snapshot| snapshot.end_s));
    let y_max = axis_max(ok.iter().chain(&errors).map(|point| point.1));
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("Throughput and errors over time ({subtitle})"),
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("elapsed time (s)")
        .y_desc("responses per second (req/s)")
        .label_style(("sans-serif", 16))
        .draw()?;
    for (label, points, color) in [("ok", ok, CLIENT_COLOR), ("errors", errors, ERROR_COLOR)] {
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points, style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()?;
    if empty {
        note_no_data(area, "full interval")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels_read_as_percentiles() {
        assert_eq!(percentile_label(&0.0), "0%");
        assert_eq!(percentile_label(&1.0), "90%");
        assert_eq!(percentile_label(&2.0), "99%");
        assert_eq!(percentile_label(&3.0), "99.9%");
        assert_eq!(percentile_label(&4.0), "99.99%");
    }
}
