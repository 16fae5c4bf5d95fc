//! Server-rendered SVG plots of comparisons: score against budget with interval bars,
//! and score against a cost (trainable parameters, train time) with the Pareto front.
//! Plain strings, no client code: the plots are in the HTML the tests and the browser get.

use std::fmt::Write;

const COLORS: [&str; 7] = ["#0b5fff", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7a8a"];
const W: f64 = 560.0;
const H: f64 = 260.0;
const L: f64 = 60.0;
const R: f64 = 110.0;
const T: f64 = 12.0;
const B: f64 = 36.0;

/// A point: x, y and an optional interval `(lo, hi)` of y.
pub type Point = (f64, f64, Option<(f64, f64)>);

/// One series: a label and its points.
pub struct Series {
    pub label: String,
    pub points: Vec<Point>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

struct Axes {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    log_x: bool,
}

impl Axes {
    fn fit(series: &[Series], log_x: bool) -> Option<Axes> {
        let xs: Vec<f64> =
            series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).filter(|x| x.is_finite() && (!log_x || *x > 0.0)).collect();
        let ys: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().flat_map(|p| [Some(p.1), p.2.map(|i| i.0), p.2.map(|i| i.1)]))
            .flatten()
            .filter(|y| y.is_finite())
            .collect();
        if xs.is_empty() || ys.is_empty() {
            return None;
        }
        let f = |x: f64| if log_x { x.log10() } else { x };
        let (mut x0, mut x1) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(f(x)), b.max(f(x))));
        let (mut y0, mut y1) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
        if x1 - x0 < 1e-12 {
            x0 -= 0.5;
            x1 += 0.5;
        }
        let xpad = (x1 - x0) * 0.06;
        if y1 - y0 < 1e-12 {
            y0 -= 0.05;
            y1 += 0.05;
        }
        let ypad = (y1 - y0) * 0.08;
        Some(Axes { x0: x0 - xpad, x1: x1 + xpad, y0: y0 - ypad, y1: y1 + ypad, log_x })
    }

    fn sx(&self, x: f64) -> f64 {
        let x = if self.log_x { x.log10() } else { x };
        L + (x - self.x0) / (self.x1 - self.x0) * (W - L - R)
    }

    fn sy(&self, y: f64) -> f64 {
        T + (1.0 - (y - self.y0) / (self.y1 - self.y0)) * (H - T - B)
    }

    fn frame(&self, out: &mut String, x_label: &str, y_label: &str, x_ticks: &[f64]) {
        for i in 0..=4 {
            let y = self.y0 + (self.y1 - self.y0) * f64::from(i) / 4.0;
            let _ = write!(
                out,
                r##"<line x1="{L}" x2="{:.1}" y1="{y1:.1}" y2="{y1:.1}" stroke="#d0d7de"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11" fill="#57606a">{}</text>"##,
                W - R,
                L - 6.0,
                self.sy(y) + 4.0,
                tick(y),
                y1 = self.sy(y),
            );
        }
        for &x in x_ticks {
            let _ = write!(
                out,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#57606a">{}</text>"##,
                self.sx(x),
                H - B + 16.0,
                tick(x)
            );
        }
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12" fill="#24292f">{}</text><text x="14" y="{:.1}" text-anchor="middle" font-size="12" fill="#24292f" transform="rotate(-90 14 {:.1})">{}</text>"##,
            (L + W - R) / 2.0,
            H - 4.0,
            esc(x_label),
            (T + H - B) / 2.0,
            (T + H - B) / 2.0,
            esc(y_label)
        );
    }
}

fn legend(out: &mut String, labels: &[&str]) {
    for (i, l) in labels.iter().enumerate() {
        let y = T + 10.0 + i as f64 * 18.0;
        let _ = write!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="12" fill="#24292f">{}</text>"##,
            W - R + 10.0,
            y - 10.0,
            COLORS[i % COLORS.len()],
            W - R + 26.0,
            y,
            esc(l)
        );
    }
}

fn open(title: &str, aria: &str) -> String {
    format!(
        r##"<figure class="chart"><h3>{}</h3><svg viewBox="0 0 {W} {H}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"##,
        esc(title),
        esc(aria)
    )
}

/// The figure's opening, with every point in its accessible label, and the axes; or, with
/// nothing to draw, the whole (empty) figure.
fn start(title: &str, series: &[Series], log_x: bool) -> Result<(String, Axes), String> {
    let aria = series
        .iter()
        .map(|s| format!("{}: {}", s.label, s.points.iter().map(|p| format!("({}, {:.4})", tick(p.0), p.1)).collect::<Vec<_>>().join(" ")))
        .collect::<Vec<_>>()
        .join("; ");
    let mut out = open(title, &format!("{title}. {aria}"));
    match Axes::fit(series, log_x) {
        Some(ax) => Ok((out, ax)),
        None => {
            out.push_str("</svg><figcaption>No finished cells yet.</figcaption></figure>");
            Err(out)
        }
    }
}

/// A point's dot at screen x `x`, with its vertical interval bar when it has one.
fn marker(out: &mut String, ax: &Axes, x: f64, p: &Point, color: &str, radius: f64) {
    if let Some((lo, hi)) = p.2 {
        let _ = write!(
            out,
            r##"<line class="interval" x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="1.5"/>"##,
            ax.sy(lo),
            ax.sy(hi)
        );
    }
    let _ = write!(out, r##"<circle cx="{x:.1}" cy="{:.1}" r="{radius}" fill="{color}"/>"##, ax.sy(p.1));
}

/// Lines of y against x per series, with vertical interval bars where given.
pub fn lines(title: &str, x_label: &str, y_label: &str, series: &[Series], log_x: bool) -> String {
    let (mut out, ax) = match start(title, series, log_x) {
        Ok(started) => started,
        Err(empty) => return empty,
    };
    let mut xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    ax.frame(&mut out, x_label, y_label, &xs);
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let mut pts = s.points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Small horizontal offsets keep overlapping interval bars apart.
        let dx = (i as f64 - (series.len() as f64 - 1.0) / 2.0) * 4.0;
        let path: Vec<String> = pts.iter().map(|p| format!("{:.1},{:.1}", ax.sx(p.0) + dx, ax.sy(p.1))).collect();
        let _ = write!(out, r##"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"##, path.join(" "));
        for p in &pts {
            marker(&mut out, &ax, ax.sx(p.0) + dx, p, c, 3.5);
        }
    }
    legend(&mut out, &series.iter().map(|s| s.label.as_str()).collect::<Vec<_>>());
    out.push_str("</svg></figure>");
    out
}

/// Points of score (y, higher better) against a cost (x, lower better) per series, with
/// the Pareto front over all points drawn as a dashed step line.
pub fn pareto(title: &str, x_label: &str, y_label: &str, series: &[Series], log_x: bool) -> String {
    let (mut out, ax) = match start(title, series, log_x) {
        Ok(started) => started,
        Err(empty) => return empty,
    };
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().map(|p| (p.0, p.1))).collect();
    let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let ticks: Vec<f64> =
        if log_x { vec![lo, (lo * hi).sqrt(), hi] } else { (0..=4).map(|i| lo + (hi - lo) * f64::from(i) / 4.0).collect() };
    ax.frame(&mut out, x_label, y_label, &ticks);
    let front = pareto_front(&all);
    if front.len() > 1 {
        let path: Vec<String> = front.iter().map(|p| format!("{:.1},{:.1}", ax.sx(p.0), ax.sy(p.1))).collect();
        let _ =
            write!(out, r##"<polyline class="pareto" fill="none" stroke="#57606a" stroke-dasharray="4 3" points="{}"/>"##, path.join(" "));
    }
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        for p in &s.points {
            marker(&mut out, &ax, ax.sx(p.0), p, c, 4.0);
        }
    }
    legend(&mut out, &series.iter().map(|s| s.label.as_str()).collect::<Vec<_>>());
    out.push_str("</svg></figure>");
    out
}

/// The points no other point beats on both axes (lower x, higher y), by increasing x.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut front: Vec<(f64, f64)> = Vec::new();
    for p in pts {
        if front.last().is_none_or(|f| p.1 > f.1) {
            front.push(p);
        }
    }
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_front_keeps_undominated_points() {
        let f = pareto_front(&[(1.0, 0.5), (2.0, 0.4), (2.0, 0.7), (3.0, 0.6), (4.0, 0.9)]);
        assert_eq!(f, vec![(1.0, 0.5), (2.0, 0.7), (4.0, 0.9)]);
    }

    #[test]
    fn lines_draw_intervals_and_escape_labels() {
        let s = vec![Series { label: "A<b>".into(), points: vec![(2.0, 0.5, Some((0.4, 0.6))), (8.0, 0.7, None)] }];
        let svg = lines("t", "budget", "acc", &s, true);
        assert!(svg.contains("A&lt;b&gt;") && !svg.contains("A<b>"));
        assert_eq!(svg.matches("class=\"interval\"").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(lines("t", "x", "y", &[], false).contains("No finished cells"));
    }
}
