//! Training curves as PNG, drawn pixel by pixel: axes with ticks, polylines and labels in
//! a built-in 3×5 bitmap font (no system fonts or libraries).

use super::{Evaluation, StepMetrics};
use beit_engine::{Error, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

const WIDTH: u32 = 640;
const PANEL: u32 = 320;
const LEFT: i64 = 70;
const RIGHT: i64 = 20;
const TOP: i64 = 28;
const BOTTOM: i64 = 30;
const SCALE: i64 = 2;
const INK: Rgb<u8> = Rgb([40, 40, 40]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

/// 3×5 glyphs, one row per 3 bits (most significant bit on the left).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c.to_ascii_uppercase() {
        '0' | 'O' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' | 'S' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        '/' => [1, 1, 2, 4, 4],
        'A' => [2, 5, 7, 5, 5],
        'C' => [7, 4, 4, 4, 7],
        'E' => [7, 4, 7, 4, 7],
        'F' => [7, 4, 7, 4, 4],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'P' => [7, 5, 7, 4, 4],
        'R' => [6, 5, 6, 5, 5],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'X' => [5, 5, 2, 5, 5],
        _ => return None,
    })
}

struct Canvas(RgbImage);

impl Canvas {
    fn put(&mut self, x: i64, y: i64, c: Rgb<u8>) {
        if x >= 0 && y >= 0 && (x as u32) < self.0.width() && (y as u32) < self.0.height() {
            self.0.put_pixel(x as u32, y as u32, c);
        }
    }

    /// A line by Bresenham's algorithm.
    fn line(&mut self, (mut x0, mut y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            self.put(x0, y0, c);
            if x0 == x1 && y0 == y1 {
                return;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }

    /// `text` with its top-left corner at (x, y); returns its width.
    fn text(&mut self, x: i64, y: i64, text: &str) -> i64 {
        for (i, ch) in text.chars().enumerate() {
            let Some(rows) = glyph(ch) else { continue };
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..3 {
                    if bits >> (2 - col) & 1 == 1 {
                        for (ox, oy) in (0..SCALE).flat_map(|a| (0..SCALE).map(move |b| (a, b))) {
                            self.put(x + (i as i64 * 4 + col) * SCALE + ox, y + r as i64 * SCALE + oy, INK);
                        }
                    }
                }
            }
        }
        text_width(text)
    }
}

fn text_width(text: &str) -> i64 {
    text.chars().count() as i64 * 4 * SCALE
}

/// A tick label with about three significant digits.
fn tick(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

/// One panel: `series` of (x, y) points with colours, framed at vertical offset `top`.
/// Points of one curve and its colour.
type Series<'a> = (&'a [(f64, f64)], Rgb<u8>);

fn panel(canvas: &mut Canvas, top: i64, title: &str, x_label: &str, series: &[Series]) {
    let finite = series.iter().flat_map(|(s, _)| s.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in finite {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        (y0, y1) = (y0 - 0.5, y1 + 0.5);
    }
    let (left, right, bottom) = (LEFT, WIDTH as i64 - RIGHT, top + PANEL as i64 - BOTTOM);
    let plot_top = top + TOP;
    let px = |x: f64| left + ((x - x0) / (x1 - x0) * (right - left) as f64).round() as i64;
    let py = |y: f64| bottom - ((y - y0) / (y1 - y0) * (bottom - plot_top) as f64).round() as i64;
    for i in 0..=4 {
        let (fx, fy) = (x0 + (x1 - x0) * i as f64 / 4.0, y0 + (y1 - y0) * i as f64 / 4.0);
        let (gx, gy) = (px(fx), py(fy));
        canvas.line((left, gy), (right, gy), GRID);
        canvas.line((left - 4, gy), (left, gy), INK);
        let label = tick(fy);
        canvas.text(left - 8 - text_width(&label), gy - SCALE * 2, &label);
        canvas.line((gx, bottom), (gx, bottom + 4), INK);
        let label = if x1 - x0 >= 4.0 { format!("{fx:.0}") } else { tick(fx) };
        canvas.text(gx - text_width(&label) / 2, bottom + 8, &label);
    }
    canvas.line((left, plot_top), (left, bottom), INK);
    canvas.line((left, bottom), (right, bottom), INK);
    canvas.text(left, top + 8, title);
    canvas.text(right - text_width(x_label), top + 8, x_label);
    for (points, colour) in series {
        let mut prev: Option<(i64, i64)> = None;
        for &(x, y) in points.iter() {
            if !(x.is_finite() && y.is_finite()) {
                prev = None;
                continue;
            }
            let p = (px(x), py(y));
            match prev {
                Some(q) => canvas.line(q, p, *colour),
                None => canvas.put(p.0, p.1, *colour),
            }
            prev = Some(p);
        }
    }
}

/// Draw the loss per step (and, when `evals` has any, their two scores per epoch in a
/// second panel: top-1/top-5 accuracy, or mIoU/pixel accuracy) into a PNG at `path`.
pub fn plot_curves(path: &Path, title: &str, steps: &[StepMetrics], evals: &[Evaluation]) -> Result<()> {
    let panels = if evals.is_empty() { 1 } else { 2 };
    let mut canvas = Canvas(RgbImage::from_pixel(WIDTH, PANEL * panels, Rgb([255, 255, 255])));
    let loss: Vec<(f64, f64)> = steps.iter().map(|m| (m.step as f64, m.loss)).collect();
    panel(&mut canvas, 0, title, "step", &[(&loss, Rgb([31, 119, 180]))]);
    if !evals.is_empty() {
        let curve = |k: usize| -> Vec<(f64, f64)> { evals.iter().enumerate().map(|(i, e)| (e.epoch().map_or(i as f64, |x| x as f64 + 1.0), e.scores()[k].1)).collect() };
        let names = evals[0].scores().map(|(name, _)| name);
        let title = format!("{} / {}", names[0], names[1]);
        panel(&mut canvas, PANEL as i64, &title, "epoch", &[(&curve(0), Rgb([214, 39, 40])), (&curve(1), Rgb([44, 160, 44]))]);
    }
    canvas.0.save(path).map_err(|e| Error::Format { file: path.display().to_string(), msg: format!("cannot write the plot: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_axes_curve_and_labels() {
        let steps: Vec<StepMetrics> = (0..50)
            .map(|i| StepMetrics { step: i, epoch: 0, loss: 5.0 - i as f64 * 0.05, lr: 1e-3, grad_norm: None, samples_per_sec: 1.0, skipped: false, parts: Default::default() })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curve.png");
        plot_curves(&path, "pretrain loss", &steps, &[]).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, PANEL));
        // The curve falls linearly from the top-left to the bottom-right of the plot area.
        let blue = |x: u32, y: u32| img.get_pixel(x, y) == &Rgb([31, 119, 180]);
        let (bottom, right) = ((PANEL as i64 - BOTTOM) as u32, WIDTH - RIGHT as u32);
        assert!(blue(LEFT as u32, TOP as u32) && blue(right, bottom), "curve ends");
        let mid_y = (TOP as u32 + bottom) / 2;
        assert!((mid_y - 2..=mid_y + 2).any(|y| blue((LEFT as u32 + right) / 2, y)), "curve middle");
        // Axes and some text ink.
        assert!((TOP as u32..bottom).all(|y| img.get_pixel(LEFT as u32, y) == &INK || blue(LEFT as u32, y)));
        let ink = img.pixels().filter(|&&p| p == INK).count();
        assert!(ink > 800, "labels drawn ({ink} ink pixels)");
        assert!(glyph('L').is_some() && glyph('%').is_none());
    }
}
