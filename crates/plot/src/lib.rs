//! Small PNG charts for sekator's reports: a heat map, a line chart and a labelled scatter plot.
//!
//! Every function writes one PNG (plotters' bitmap backend) and returns `Ok(())` or a [`PlotError`] naming
//! the file. Text is drawn with DejaVu Sans from [`FONT_PATH`] when that file exists; on a machine without
//! it the charts are still drawn, only without any text (titles, tick labels, legends), instead of failing.
//!
//! ```no_run
//! sekator_plot::lines(
//!     std::path::Path::new("loss.png"),
//!     "distillation loss",
//!     "step",
//!     "loss",
//!     &[("train", vec![(0.0, 1.0), (1.0, 0.5)]), ("dev", vec![(0.0, 1.1), (1.0, 0.7)])],
//! )
//! .unwrap();
//! ```

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The font used for all text, when present.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FAMILY: &str = "sans-serif";

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Nonsensical input (shape mismatch, no data), named by the output file.
    #[error("{}: {msg}", path.display())]
    Input { path: PathBuf, msg: String },
    /// plotters failed to draw or encode the image.
    #[error("{}: cannot draw chart: {msg}", path.display())]
    Draw { path: PathBuf, msg: String },
}

pub type Result<T> = std::result::Result<T, PlotError>;

/// Whether text can be drawn (DejaVu Sans found and registered; loaded once per process).
pub fn has_font() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        let Ok(bytes) = std::fs::read(FONT_PATH) else {
            return false;
        };
        // plotters keeps fonts for the life of the process; leaking one font file once is intended.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok()
    })
}

/// Draws with `draw` into a hidden temporary sibling of `path` (same extension, so the backend picks the
/// same format), fsyncs it and renames it into place: a chart is never seen half-written.
fn atomically(path: &Path, draw: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}.{ext}", std::process::id()));
    let io = |e: std::io::Error| PlotError::Draw {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    let result = draw(&tmp).and_then(|()| {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn draw_err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> PlotError + '_ {
    move |e| PlotError::Draw {
        path: path.to_path_buf(),
        msg: format!("{e:?}"),
    }
}

fn font(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

/// Matplotlib's viridis, linearly interpolated between 8 anchors; `t` in `[0, 1]`.
pub fn viridis(t: f64) -> RGBColor {
    const A: [(u8, u8, u8); 8] = [
        (68, 1, 84),
        (70, 50, 127),
        (54, 92, 141),
        (39, 127, 143),
        (31, 162, 136),
        (74, 194, 110),
        (160, 219, 57),
        (254, 232, 37),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (A.len() - 1) as f64;
    let i = (x.floor() as usize).min(A.len() - 2);
    let f = x - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    RGBColor(
        mix(A[i].0, A[i + 1].0),
        mix(A[i].1, A[i + 1].1),
        mix(A[i].2, A[i + 1].2),
    )
}

/// A short number for cell annotations and colour-bar ends.
fn short(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.abs() < 0.01 {
        format!("{v:.1e}")
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Heat map of a `rows x cols` matrix given row-major in `values` (row 0 at the top, column 0 at the left),
/// coloured with viridis from the smallest to the largest finite value, with a colour bar. Non-finite
/// values (use `f64::NAN` for "absent", e.g. a pruned head) are drawn light grey. Cells are annotated with
/// their values when the matrix is at most 16 x 16.
pub fn heatmap(
    path: &Path,
    title: &str,
    rows: usize,
    cols: usize,
    values: &[f64],
    row_label: &str,
    col_label: &str,
) -> Result<()> {
    if rows == 0 || cols == 0 || values.len() != rows * cols {
        return Err(PlotError::Input {
            path: path.to_path_buf(),
            msg: format!(
                "heat map of {rows} x {cols} needs {} values, got {}",
                rows * cols,
                values.len()
            ),
        });
    }
    let text = has_font();
    let cell = (640 / cols.max(rows)).clamp(8, 56) as i32;
    let (left, top, right, bottom) = if text {
        (70, 50, 110, 60)
    } else {
        (10, 10, 50, 10)
    };
    let (w, h) = (
        left + cell * cols as i32 + right,
        top + cell * rows as i32 + bottom,
    );
    atomically(path, |tmp| {
        let root = BitMapBackend::new(tmp, (w as u32, h as u32)).into_drawing_area();
        let err = draw_err(path);
        root.fill(&WHITE).map_err(&err)?;

        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let norm = |v: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        let grey = RGBColor(215, 215, 215);

        for r in 0..rows {
            for c in 0..cols {
                let v = values[r * cols + c];
                let (x0, y0) = (left + c as i32 * cell, top + r as i32 * cell);
                let color = if v.is_finite() {
                    viridis(norm(v))
                } else {
                    grey
                };
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell, y0 + cell)],
                    color.filled(),
                ))
                .map_err(&err)?;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell, y0 + cell)],
                    WHITE.stroke_width(1),
                ))
                .map_err(&err)?;
                if text && rows <= 16 && cols <= 16 && cell >= 28 && v.is_finite() {
                    let ink = if norm(v) > 0.6 { BLACK } else { WHITE };
                    let style = font((cell / 3).min(13) as u32)
                        .color(&ink)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    root.draw_text(&short(v), &style, (x0 + cell / 2, y0 + cell / 2))
                        .map_err(&err)?;
                }
            }
        }

        // colour bar
        let (bx, by, bh) = (left + cell * cols as i32 + 20, top, cell * rows as i32);
        for i in 0..bh {
            let t = 1.0 - i as f64 / (bh - 1).max(1) as f64;
            root.draw(&Rectangle::new(
                [(bx, by + i), (bx + 16, by + i + 1)],
                viridis(t).filled(),
            ))
            .map_err(&err)?;
        }

        if text {
            let center = Pos::new(HPos::Center, VPos::Center);
            root.draw_text(
                title,
                &font(18).pos(Pos::new(HPos::Center, VPos::Top)),
                (w / 2, 12),
            )
            .map_err(&err)?;
            let tick = (cell / 3).clamp(9, 13) as u32;
            let every_c = (14 / cell as usize).max(1).max(cols.div_ceil(40));
            for c in (0..cols).step_by(every_c) {
                let x = left + c as i32 * cell + cell / 2;
                root.draw_text(
                    &c.to_string(),
                    &font(tick).pos(Pos::new(HPos::Center, VPos::Top)),
                    (x, top + rows as i32 * cell + 4),
                )
                .map_err(&err)?;
            }
            let every_r = (14 / cell as usize).max(1).max(rows.div_ceil(40));
            for r in (0..rows).step_by(every_r) {
                let y = top + r as i32 * cell + cell / 2;
                root.draw_text(
                    &r.to_string(),
                    &font(tick).pos(Pos::new(HPos::Right, VPos::Center)),
                    (left - 6, y),
                )
                .map_err(&err)?;
            }
            root.draw_text(
                col_label,
                &font(14).pos(center),
                (left + cell * cols as i32 / 2, h - 18),
            )
            .map_err(&err)?;
            let vertical = font(14).transform(FontTransform::Rotate270).pos(center);
            root.draw_text(row_label, &vertical, (18, top + cell * rows as i32 / 2))
                .map_err(&err)?;
            if !finite.is_empty() {
                let lab = font(11).pos(Pos::new(HPos::Left, VPos::Center));
                root.draw_text(&short(hi), &lab, (bx + 20, by + 4))
                    .map_err(&err)?;
                root.draw_text(&short(lo), &lab, (bx + 20, by + bh - 4))
                    .map_err(&err)?;
            }
        }
        root.present().map_err(&err)?;
        Ok(())
    })
}

/// Bounds of `values` padded by 5% (or by 1 when all are equal); `(0, 1)` when empty.
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 1.0, hi + 1.0)
    } else {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    }
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn chart<'a, 'b: 'a>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    path: &Path,
) -> Result<
    ChartContext<
        'a,
        BitMapBackend<'b>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
> {
    let text = has_font();
    let err = draw_err(path);
    let mut b = ChartBuilder::on(root);
    b.margin(15);
    if text {
        b.caption(title, font(20))
            .x_label_area_size(45)
            .y_label_area_size(65);
    }
    let mut c = b.build_cartesian_2d(x0..x1, y0..y1).map_err(&err)?;
    let mut mesh = c.configure_mesh();
    mesh.light_line_style(RGBColor(235, 235, 235));
    if text {
        mesh.x_desc(x_label)
            .y_desc(y_label)
            .label_style(font(12))
            .axis_desc_style(font(14));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(&err)?;
    Ok(c)
}

/// Line chart of named series of `(x, y)` points (drawn in the given order), with a legend when there is
/// more than one series. Non-finite points are dropped.
pub fn lines<S: AsRef<str>>(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(S, Vec<(f64, f64)>)],
) -> Result<()> {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    if series
        .iter()
        .all(|(_, pts)| pts.iter().filter(finite).count() == 0)
    {
        return Err(PlotError::Input {
            path: path.to_path_buf(),
            msg: "line chart without any finite point".into(),
        });
    }
    let xs = padded(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)));
    let ys = padded(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)));
    atomically(path, |tmp| {
        let root = BitMapBackend::new(tmp, (900, 560)).into_drawing_area();
        let err = draw_err(path);
        root.fill(&WHITE).map_err(&err)?;
        let mut c = chart(&root, title, x_label, y_label, xs, ys, path)?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let s = c
                .draw_series(LineSeries::new(
                    pts.iter().filter(finite).copied(),
                    color.stroke_width(2),
                ))
                .map_err(&err)?;
            if has_font() && series.len() > 1 {
                s.label(name.as_ref()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            }
        }
        if has_font() && series.len() > 1 {
            c.configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(font(13))
                .draw()
                .map_err(&err)?;
        }
        root.present().map_err(&err)?;
        Ok(())
    })
}

/// Scatter plot of `(label, x, y)` points, each labelled next to its marker (e.g. models by size and
/// score). Non-finite points are dropped.
pub fn scatter_labeled<S: AsRef<str>>(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(S, f64, f64)],
) -> Result<()> {
    let pts: Vec<(&str, f64, f64)> = points
        .iter()
        .filter(|p| p.1.is_finite() && p.2.is_finite())
        .map(|p| (p.0.as_ref(), p.1, p.2))
        .collect();
    if pts.is_empty() {
        return Err(PlotError::Input {
            path: path.to_path_buf(),
            msg: "scatter plot without any finite point".into(),
        });
    }
    let xs = padded(pts.iter().map(|p| p.1));
    let ys = padded(pts.iter().map(|p| p.2));
    // room on the right for the labels of the rightmost points
    let xs = (xs.0, xs.1 + (xs.1 - xs.0) * 0.15);
    atomically(path, |tmp| {
        let root = BitMapBackend::new(tmp, (900, 600)).into_drawing_area();
        let err = draw_err(path);
        root.fill(&WHITE).map_err(&err)?;
        let mut c = chart(&root, title, x_label, y_label, xs, ys, path)?;
        c.draw_series(
            pts.iter()
                .enumerate()
                .map(|(i, p)| Circle::new((p.1, p.2), 5, PALETTE[i % PALETTE.len()].filled())),
        )
        .map_err(&err)?;
        if has_font() {
            let style = font(12).pos(Pos::new(HPos::Left, VPos::Center));
            c.draw_series(pts.iter().map(|p| {
                EmptyElement::at((p.1, p.2)) + Text::new(p.0.to_string(), (8, 0), style.clone())
            }))
            .map_err(&err)?;
        }
        root.present().map_err(&err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_png(p: &Path) -> bool {
        std::fs::read(p)
            .map(|b| b.len() > 100 && b.starts_with(b"\x89PNG"))
            .unwrap_or(false)
    }

    #[test]
    fn draws_all_three_kinds() {
        let d = tempfile::tempdir().unwrap();
        let hm = d.path().join("h.png");
        let mut v: Vec<f64> = (0..12 * 12)
            .map(|i| (i as f64 * 0.37).sin().abs())
            .collect();
        v[5] = f64::NAN;
        heatmap(&hm, "head importance", 12, 12, &v, "layer", "head").unwrap();
        assert!(is_png(&hm));
        let big = d.path().join("big.png");
        heatmap(&big, "ffn", 6, 300, &vec![1.0; 1800], "layer", "neuron").unwrap();
        assert!(is_png(&big));
        let l = d.path().join("l.png");
        lines(
            &l,
            "loss",
            "step",
            "loss",
            &[
                ("train", vec![(0.0, 2.0), (1.0, 1.0)]),
                ("dev", vec![(0.0, 2.5), (1.0, f64::NAN)]),
            ],
        )
        .unwrap();
        assert!(is_png(&l));
        let s = d.path().join("s.png");
        scatter_labeled(
            &s,
            "size vs score",
            "params (M)",
            "score",
            &[("teacher", 118.0, 0.8), ("pruned", 60.0, 0.75)],
        )
        .unwrap();
        assert!(is_png(&s));
        // drawn beside and renamed into place: no temporary file is left
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["big.png", "h.png", "l.png", "s.png"]);
    }

    #[test]
    fn bad_input_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.png");
        let e = heatmap(&p, "t", 2, 2, &[1.0, 2.0, 3.0], "r", "c").unwrap_err();
        assert!(e.to_string().contains("needs 4 values, got 3"), "{e}");
        assert!(lines::<&str>(&p, "t", "x", "y", &[]).is_err());
        assert!(scatter_labeled(&p, "t", "x", "y", &[("a", f64::NAN, 1.0)]).is_err());
    }

    #[test]
    fn viridis_ends() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(254, 232, 37));
        assert_eq!(viridis(f64::NAN), RGBColor(68, 1, 84));
    }
}
