//! Charts with plotters, each as PNG and SVG: loss curves, and trajectories over contour
//! lines. Text uses the DejaVu Sans font shipped in `examples/assets/`, so no system fonts
//! are needed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;

use crate::surfaces::Surface;

type Result<T> = std::result::Result<T, String>;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let font: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        plotters::style::register_font("sans-serif", FontStyle::Normal, font)
            .map_err(|_| "invalid font")
            .expect("the bundled font is valid");
    });
}

/// A named line.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 9] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(23, 190, 207),
    ];
    COLORS[i % COLORS.len()]
}

/// A line chart with a log-scaled y axis and a legend.
pub fn line_chart(
    stem: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<Vec<PathBuf>> {
    let points = || series.iter().flat_map(|s| s.points.iter().copied());
    let x_max = points().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let y_min = points()
        .map(|p| p.1)
        .filter(|y| *y > 0.0)
        .fold(f64::INFINITY, f64::min);
    let y_max = points().map(|p| p.1).fold(0.0, f64::max);
    if !y_min.is_finite() || y_max <= 0.0 {
        return Err(format!("{title}: nothing to plot"));
    }
    let (y_lo, y_hi) = (y_min * 0.8, y_max * 1.25);
    macro_rules! draw {
        ($root:expr) => {{
            let root = $root;
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 24))
                .margin(16)
                .x_label_area_size(48)
                .y_label_area_size(70)
                .build_cartesian_2d(0f64..x_max, (y_lo..y_hi).log_scale())
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .x_label_formatter(&|v| {
                    if x_max >= 100.0 {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.1}")
                    }
                })
                .y_label_formatter(&|v| format!("{v:.2}"))
                .label_style(("sans-serif", 15))
                .draw()
                .map_err(|e| e.to_string())?;
            for (i, s) in series.iter().enumerate() {
                let style = color(i).stroke_width(2);
                let pts: Vec<_> = s.points.iter().copied().filter(|p| p.1 > 0.0).collect();
                chart
                    .draw_series(LineSeries::new(pts, style))
                    .map_err(|e| e.to_string())?
                    .label(s.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
            }
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| e.to_string())?;
            root.present().map_err(|e| e.to_string())?;
            Ok(())
        }};
    }
    register_font();
    let (png, svg) = (stem.with_extension("png"), stem.with_extension("svg"));
    let size = (1100, 700);
    let r: Result<()> = draw!(BitMapBackend::new(&png, size).into_drawing_area());
    r?;
    let r: Result<()> = draw!(SVGBackend::new(&svg, size).into_drawing_area());
    r?;
    Ok(vec![png, svg])
}

/// Marching squares: line segments where `value` crosses `level` on a grid.
fn contour_segments(
    value: impl Fn(f64, f64) -> f64,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    n: usize,
    level: f64,
) -> Vec<[(f64, f64); 2]> {
    let (dx, dy) = ((x1 - x0) / n as f64, (y1 - y0) / n as f64);
    let grid: Vec<Vec<f64>> = (0..=n)
        .map(|i| {
            (0..=n)
                .map(|j| value(x0 + i as f64 * dx, y0 + j as f64 * dy))
                .collect()
        })
        .collect();
    let mut segments = Vec::new();
    for i in 0..n {
        for j in 0..n {
            let corners = [
                (x0 + i as f64 * dx, y0 + j as f64 * dy, grid[i][j]),
                (x0 + (i + 1) as f64 * dx, y0 + j as f64 * dy, grid[i + 1][j]),
                (
                    x0 + (i + 1) as f64 * dx,
                    y0 + (j + 1) as f64 * dy,
                    grid[i + 1][j + 1],
                ),
                (x0 + i as f64 * dx, y0 + (j + 1) as f64 * dy, grid[i][j + 1]),
            ];
            // Crossing points on the four edges, in order; pair them up.
            let mut crossings = Vec::new();
            for k in 0..4 {
                let (a, b) = (corners[k], corners[(k + 1) % 4]);
                if (a.2 < level) != (b.2 < level) {
                    let t = (level - a.2) / (b.2 - a.2);
                    crossings.push((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)));
                }
            }
            for pair in crossings.chunks_exact(2) {
                segments.push([pair[0], pair[1]]);
            }
        }
    }
    segments
}

/// Contour levels: log-spaced between the function's values at the minimum's neighbourhood
/// and the view's corners.
fn levels(surface: Surface) -> Vec<f64> {
    match surface {
        Surface::Quadratic => (0..14).map(|k| 0.25 * 1.6f64.powi(k)).collect(),
        Surface::Rosenbrock => (0..13).map(|k| 0.4 * 2.2f64.powi(k)).collect(),
    }
}

/// Trajectories over contour lines, one colour per optimizer, start and end marked.
pub fn trajectories(stem: &Path, surface: Surface, paths: &[Series]) -> Result<Vec<PathBuf>> {
    let ((x0, x1), (y0, y1)) = surface.view();
    let contours: Vec<_> = levels(surface)
        .into_iter()
        .flat_map(|l| contour_segments(|x, y| surface.value(x, y), (x0, x1), (y0, y1), 160, l))
        .collect();
    let clamp = |(x, y): (f64, f64)| (x.clamp(x0, x1), y.clamp(y0, y1));
    let size = match surface {
        Surface::Quadratic => (1200, 560),
        Surface::Rosenbrock => (1000, 900),
    };
    macro_rules! draw {
        ($root:expr) => {{
            let root = $root;
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let mut chart = ChartBuilder::on(&root)
                .caption(surface.title(), ("sans-serif", 22))
                .margin(16)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .disable_mesh()
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(
                    contours
                        .iter()
                        .map(|s| PathElement::new(vec![s[0], s[1]], RGBColor(200, 200, 200))),
                )
                .map_err(|e| e.to_string())?;
            let m = surface.minimum();
            chart
                .draw_series(std::iter::once(Cross::new(
                    (m[0], m[1]),
                    8,
                    BLACK.stroke_width(2),
                )))
                .map_err(|e| e.to_string())?;
            for (i, s) in paths.iter().enumerate() {
                let style = color(i).stroke_width(2);
                let pts: Vec<_> = s.points.iter().copied().map(clamp).collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), style))
                    .map_err(|e| e.to_string())?
                    .label(s.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
                chart
                    .draw_series(
                        pts.iter()
                            .take(60)
                            .map(|&p| Circle::new(p, 2, color(i).filled())),
                    )
                    .map_err(|e| e.to_string())?;
                if let Some(&end) = pts.last() {
                    chart
                        .draw_series(std::iter::once(Circle::new(end, 5, color(i).filled())))
                        .map_err(|e| e.to_string())?;
                }
            }
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(|e| e.to_string())?;
            root.present().map_err(|e| e.to_string())?;
            Ok(())
        }};
    }
    register_font();
    let (png, svg) = (stem.with_extension("png"), stem.with_extension("svg"));
    let r: Result<()> = draw!(BitMapBackend::new(&png, size).into_drawing_area());
    r?;
    let r: Result<()> = draw!(SVGBackend::new(&svg, size).into_drawing_area());
    r?;
    Ok(vec![png, svg])
}
