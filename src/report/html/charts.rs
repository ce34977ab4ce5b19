//! The report's charts, drawn with plotters into SVG strings: the forest plot of speedups, the roofline,
//! the whole-model waterfall and, for `calibrate`, speedup against size. Each returns the `<svg>` element
//! to put inline; elements the page links to (one per instance) are added over the drawing with the
//! positions plotters maps the data to.

use std::fmt::Write;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::escape;
use crate::estimate::Estimate;

const FONT: &str = "sans-serif";
pub const GREEN: RGBColor = RGBColor(46, 125, 50);
pub const RED: RGBColor = RGBColor(198, 40, 40);
pub const GREY: RGBColor = RGBColor(150, 150, 150);
pub const BLUE: RGBColor = RGBColor(21, 101, 192);
pub const PURPLE: RGBColor = RGBColor(123, 31, 162);
const BAND: RGBColor = RGBColor(236, 236, 236);

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// Draw on an SVG of `w`×`h` and return it with `id` on its root and `extra` (overlays) inside it.
fn svg(
    id: &str,
    w: u32,
    h: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<String>,
) -> Result<String> {
    let mut buf = String::new();
    let extra;
    {
        let root = SVGBackend::with_string(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        extra = draw(&root)?;
        root.present().map_err(err)?;
    }
    let Some(end) = buf.rfind("</svg>") else { return Err(anyhow!("drawing a chart: no SVG came out")) };
    buf.insert_str(end, &extra);
    Ok(buf.replacen("<svg ", &format!("<svg id=\"{id}\" class=\"chart\" role=\"img\" "), 1))
}

fn text_left(size: u32) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Right, VPos::Center))
}

/// The range of a log axis that holds every value in `xs` and `always`, with a margin.
fn log_range(xs: impl Iterator<Item = f64>, always: &[f64]) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in xs.chain(always.iter().copied()).filter(|x| x.is_finite() && *x > 0.0) {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if !lo.is_finite() {
        return (0.5, 2.0);
    }
    let pad = (hi / lo).powf(0.04).max(1.01);
    (lo / pad, hi * pad)
}

/// Round speedups to label a log axis from `lo` to `hi` with: the coarsest set that puts at least four in
/// the range.
pub fn ratio_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let sets: [&[f64]; 3] = [
        &[0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 10.0, 20.0, 50.0, 100.0],
        &[0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0],
        &[0.8, 0.85, 0.9, 0.95, 0.98, 1.0, 1.02, 1.05, 1.1, 1.15, 1.2, 1.3],
    ];
    let inside = |set: &[f64]| -> Vec<f64> { set.iter().copied().filter(|t| *t >= lo && *t <= hi).collect() };
    for set in sets {
        let t = inside(set);
        if t.len() >= 4 {
            return t;
        }
    }
    inside(sets[2])
}

/// One row of the forest plot.
#[derive(Clone, Debug)]
pub struct ForestRow {
    pub signature: String,
    /// Table row the mark links to (`#row-…`).
    pub anchor: String,
    pub label: String,
    /// Headline (runtime-fused) speedup; `None` when there is none to show.
    pub runtime: Option<Estimate>,
    pub explicit: Option<Estimate>,
    pub aa: Option<Estimate>,
    /// Half-width of the noise band around 1.00.
    pub band: f64,
    /// Why the row is drawn grey (untrustworthy, outputs differ, skipped), or `None`.
    pub grey: Option<String>,
    pub faster: Option<bool>,
    /// A second run's headline speedup (`fuseval report A B`).
    pub other: Option<Estimate>,
    pub tooltip: String,
}

/// The forest plot: one row per distinct instance, the runtime-fused speedup (circle) and the explicit
/// one (triangle) with their 95% CIs, the A/A control (grey, below), the noise band (shaded); a second
/// run's speedup (square) when comparing. `<svg id="forest">`, one `data-signature` element per row.
pub fn forest(rows: &[ForestRow], names: (&str, &str)) -> Result<String> {
    let n = rows.len().max(1);
    let row_h = 26;
    let (w, h) = (980u32, (90 + row_h * n) as u32);
    let values = rows
        .iter()
        .flat_map(|r| [r.runtime, r.explicit, r.aa, r.other].into_iter().flatten().flat_map(|e| [e.lo, e.hi, e.point]));
    let band_max = rows.iter().map(|r| r.band).fold(0.0, f64::max);
    let (lo, hi) = log_range(values, &[1.0 - band_max, 1.0 + band_max]);
    svg("forest", w, h, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin_top(10)
            .margin_right(20)
            .margin_left(330)
            .margin_bottom(22)
            .x_label_area_size(40)
            .build_cartesian_2d((lo..hi).log_scale(), -0.5f64..(n as f64 - 0.5))
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .y_labels(0)
            .x_labels(0)
            .x_label_formatter(&|_| String::new())
            .x_desc("speedup = unfused / fused latency (log scale); right of 1.00 is faster")
            .draw()
            .map_err(err)?;
        // ticks at round ratios (plotters' log axis gives one or two on a range like 0.8..1.5)
        for t in ratio_ticks(lo, hi) {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(t, -0.5), (t, n as f64 - 0.5)],
                    RGBColor(232, 232, 232).stroke_width(1),
                )))
                .map_err(err)?;
            let (px, py) = chart.backend_coord(&(t, -0.5));
            let style = TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
            root.draw(&Text::new(format!("{t}"), (px, py + 4), style)).map_err(err)?;
        }
        let y_of = |i: usize| (n - 1 - i) as f64;
        for (i, r) in rows.iter().enumerate() {
            let y = y_of(i);
            let band = ShapeStyle::from(&BAND).filled();
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(1.0 - r.band, y - 0.42), (1.0 + r.band, y + 0.42)],
                    band,
                )))
                .map_err(err)?;
        }
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(1.0, -0.5), (1.0, n as f64 - 0.5)],
                BLACK.stroke_width(1),
            )))
            .map_err(err)?;
        for (i, r) in rows.iter().enumerate() {
            let y = y_of(i);
            let main = match (&r.grey, r.faster) {
                (Some(_), _) => GREY,
                (None, Some(true)) => GREEN,
                (None, Some(false)) => RED,
                (None, None) => RGBColor(90, 90, 90),
            };
            let whisker = |e: &Estimate, dy: f64, c: RGBColor| {
                PathElement::new(vec![(e.lo.max(lo), y + dy), (e.hi.min(hi), y + dy)], c.stroke_width(2))
            };
            if let Some(a) = &r.aa {
                chart.draw_series(std::iter::once(whisker(a, -0.3, GREY))).map_err(err)?;
                chart.draw_series(std::iter::once(Circle::new((a.point, y - 0.3), 2, GREY.filled()))).map_err(err)?;
            }
            if let Some(e) = &r.runtime {
                chart.draw_series(std::iter::once(whisker(e, 0.0, main))).map_err(err)?;
                let style = if r.grey.is_some() { main.stroke_width(2) } else { main.filled() };
                chart.draw_series(std::iter::once(Circle::new((e.point, y), 5, style))).map_err(err)?;
            }
            if let Some(e) = &r.explicit {
                let c = if r.grey.is_some() { GREY } else { PURPLE };
                chart.draw_series(std::iter::once(whisker(e, 0.22, c))).map_err(err)?;
                chart
                    .draw_series(std::iter::once(TriangleMarker::new((e.point, y + 0.22), 5, c.filled())))
                    .map_err(err)?;
            }
            if let Some(e) = &r.other {
                chart.draw_series(std::iter::once(whisker(e, 0.22, BLUE))).map_err(err)?;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(e.point / 1.004, y + 0.12), (e.point * 1.004, y + 0.32)],
                        BLUE.filled(),
                    )))
                    .map_err(err)?;
            }
        }
        // the row labels, in the left margin
        let mut overlay = String::from("<g class=\"marks\">");
        let (x0, _) = chart.backend_coord(&(lo, 0.0));
        let (x1, _) = chart.backend_coord(&(hi, 0.0));
        for (i, r) in rows.iter().enumerate() {
            let (_, py) = chart.backend_coord(&(lo, y_of(i)));
            let mut label = r.label.clone();
            if let Some(why) = &r.grey {
                label = format!("{label} ({why})");
            }
            let label: String =
                if label.chars().count() > 60 { label.chars().take(59).collect::<String>() + "…" } else { label };
            root.draw(&Text::new(label, (x0 - 8, py), text_left(11))).map_err(err)?;
            let _ = write!(
                overlay,
                "<a href=\"#{}\"><rect class=\"mark\" data-signature=\"{}\" x=\"0\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"transparent\"><title>{}</title></rect></a>",
                escape(&r.anchor),
                escape(&r.signature),
                py - row_h as i32 / 2,
                x1,
                row_h,
                escape(&r.tooltip)
            );
        }
        overlay.push_str("</g>");
        // legend
        let ly = h as i32 - 12;
        let legend = [
            ("● runtime-fused (ORT)", GREEN),
            ("▲ explicit fused kernel", PURPLE),
            ("• A/A control", GREY),
            ("shaded: noise band", RGBColor(120, 120, 120)),
        ];
        let mut x = 10;
        for (t, c) in legend.iter().chain(if rows.iter().any(|r| r.other.is_some()) {
            [("■ ", BLUE)].iter()
        } else {
            [].iter()
        }) {
            let t = if t.starts_with('■') { format!("■ {} (and ● {})", names.1, names.0) } else { t.to_string() };
            let style = TextStyle::from((FONT, 11).into_font()).color(c);
            root.draw(&Text::new(t.clone(), (x, ly), style)).map_err(err)?;
            x += 8 * t.chars().count() as i32 + 20;
        }
        Ok(overlay)
    })
}

/// One instance on the roofline: its unfused and fused points.
pub struct RoofPoint {
    pub signature: String,
    pub label: String,
    /// (arithmetic intensity in FLOP/byte, achieved GFLOP/s), unfused then fused.
    pub unfused: (f64, f64),
    pub fused: (f64, f64),
    pub faster: Option<bool>,
}

/// The roofline: the measured ceilings (compute peak, bandwidth × intensity) and every instance, an arrow
/// from unfused to fused. Fusion moves a point right (fewer bytes) and, when it pays, up.
pub fn roofline(points: &[RoofPoint], peak_gflops: f64, bandwidth_gbs: f64) -> Result<String> {
    let ridge = peak_gflops / bandwidth_gbs;
    let (xlo, xhi) = log_range(points.iter().flat_map(|p| [p.unfused.0, p.fused.0]), &[ridge]);
    let (ylo, _) = log_range(points.iter().flat_map(|p| [p.unfused.1, p.fused.1]), &[peak_gflops]);
    let (xlo, xhi, ylo, yhi) = (xlo / 2.0, xhi * 2.0, ylo / 2.0, peak_gflops * 2.0);
    svg("roofline", 980, 520, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((xlo..xhi).log_scale(), (ylo..yhi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("arithmetic intensity (FLOP per byte moved, log)")
            .y_desc("achieved GFLOP/s (log)")
            .x_label_formatter(&|x| format!("{x:.3}"))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .light_line_style(RGBColor(245, 245, 245))
            .draw()
            .map_err(err)?;
        let steps = 200;
        let roof: Vec<(f64, f64)> = (0..=steps)
            .map(|i| {
                let x = xlo * (xhi / xlo).powf(i as f64 / steps as f64);
                (x, (bandwidth_gbs * x).min(peak_gflops))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(roof, BLACK.stroke_width(2)))
            .map_err(err)?
            .label(format!("ceilings: {peak_gflops:.0} GFLOP/s, {bandwidth_gbs:.1} GB/s (ridge {ridge:.1} FLOP/B)"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(2)));
        for p in points {
            let c = match p.faster {
                Some(true) => GREEN,
                Some(false) => RED,
                None => GREY,
            };
            chart
                .draw_series(std::iter::once(PathElement::new(vec![p.unfused, p.fused], c.mix(0.7).stroke_width(1))))
                .map_err(err)?;
            chart.draw_series(std::iter::once(Circle::new(p.unfused, 3, c.stroke_width(1)))).map_err(err)?;
            chart.draw_series(std::iter::once(Circle::new(p.fused, 4, c.filled()))).map_err(err)?;
        }
        chart
            .draw_series(std::iter::once(Circle::new((xlo, ylo), 0, WHITE.filled())))
            .map_err(err)?
            .label("○ unfused → ● fused (green faster, red slower, grey within noise)")
            .legend(|(x, y)| Circle::new((x + 8, y), 4, GREEN.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(GREY)
            .label_font((FONT, 11))
            .draw()
            .map_err(err)?;
        let mut overlay = String::from("<g class=\"marks\">");
        for p in points {
            let (x, y) = chart.backend_coord(&p.fused);
            let _ = write!(
                overlay,
                "<circle class=\"roof-mark\" data-signature=\"{}\" cx=\"{x}\" cy=\"{y}\" r=\"6\" fill=\"transparent\"><title>{}</title></circle>",
                escape(&p.signature),
                escape(&p.label)
            );
        }
        overlay.push_str("</g>");
        Ok(overlay)
    })
}

/// One bar of the waterfall, in ms per inference.
pub struct Step {
    pub label: String,
    /// Where the bar starts and ends (a total starts at 0).
    pub from: f64,
    pub to: f64,
    /// The CI of the bar's length (a saving) or of its end (a total).
    pub ci: Option<(f64, f64)>,
    pub total: bool,
    pub tooltip: String,
}

/// The whole model's waterfall: from ORT_DISABLE_ALL down to ORT's default, a bar per step (a saving
/// shortens the latency: green; a cost lengthens it: red; totals blue), each with its CI.
pub fn waterfall(steps: &[Step]) -> Result<String> {
    let n = steps.len().max(1);
    let hi = steps.iter().flat_map(|s| [s.from, s.to]).fold(0.0, f64::max) * 1.08;
    let hi = if hi > 0.0 { hi } else { 1.0 };
    let (w, h) = (980u32, (60 + 30 * n) as u32);
    svg("waterfall", w, h, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin_top(10)
            .margin_right(30)
            .margin_left(300)
            .x_label_area_size(40)
            .build_cartesian_2d(0.0..hi, -0.5f64..(n as f64 - 0.5))
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc("latency per inference, ms")
            .light_line_style(RGBColor(245, 245, 245))
            .draw()
            .map_err(err)?;
        let mut overlay = String::from("<g class=\"marks\">");
        let (x0, _) = chart.backend_coord(&(0.0, 0.0));
        for (i, s) in steps.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            let c = if s.total {
                BLUE
            } else if s.to <= s.from {
                GREEN
            } else {
                RED
            };
            let (a, b) = (s.from.min(s.to), s.from.max(s.to));
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(a, y - 0.33), (b.max(a + hi * 0.002), y + 0.33)],
                    c.mix(0.8).filled(),
                )))
                .map_err(err)?;
            if let Some((lo, hi_ci)) = s.ci {
                // a saving's CI is drawn around the bar's end, where it leaves the latency
                let (l, r) = if s.total { (lo, hi_ci) } else { (s.from - hi_ci, s.from - lo) };
                let (l, r) = (l.min(r).max(0.0), l.max(r));
                chart
                    .draw_series(std::iter::once(PathElement::new(vec![(l, y), (r, y)], BLACK.stroke_width(1))))
                    .map_err(err)?;
                for x in [l, r] {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(x, y - 0.15), (x, y + 0.15)],
                            BLACK.stroke_width(1),
                        )))
                        .map_err(err)?;
                }
            }
            let (_, py) = chart.backend_coord(&(0.0, y));
            root.draw(&Text::new(s.label.clone(), (x0 - 8, py), text_left(11))).map_err(err)?;
            let _ = write!(
                overlay,
                "<rect class=\"step\" x=\"0\" y=\"{}\" width=\"{w}\" height=\"30\" fill=\"transparent\"><title>{}</title></rect>",
                py - 15,
                escape(&s.tooltip)
            );
        }
        overlay.push_str("</g>");
        Ok(overlay)
    })
}

/// One size of a calibrate sweep.
pub struct SweepPoint {
    pub size: String,
    pub flops: f64,
    pub speedup: Estimate,
    pub grey: bool,
}

/// Speedup against size for one pattern of `calibrate`: the points with their CIs over the work (FLOPs,
/// log), the noise band, and the sizes where fusion pays marked in green.
pub fn sweep(id: &str, title: &str, points: &[SweepPoint], band: f64) -> Result<String> {
    let (xlo, xhi) = log_range(points.iter().map(|p| p.flops), &[]);
    let (ylo, yhi) = log_range(points.iter().flat_map(|p| [p.speedup.lo, p.speedup.hi]), &[1.0 - band, 1.0 + band]);
    svg(id, 480, 300, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 13))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((xlo..xhi).log_scale(), (ylo..yhi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("FLOPs (log)")
            .y_desc("speedup")
            .x_label_formatter(&|x| format!("{x:.0e}"))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .light_line_style(RGBColor(245, 245, 245))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Rectangle::new([(xlo, 1.0 - band), (xhi, 1.0 + band)], BAND.filled())))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(xlo, 1.0), (xhi, 1.0)], BLACK.stroke_width(1))))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(points.iter().map(|p| (p.flops, p.speedup.point)), GREY.stroke_width(1)))
            .map_err(err)?;
        let mut overlay = String::from("<g class=\"marks\">");
        for p in points {
            let c = if p.grey {
                GREY
            } else if p.speedup.lo > 1.0 + band {
                GREEN
            } else if p.speedup.hi < 1.0 - band {
                RED
            } else {
                RGBColor(90, 90, 90)
            };
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(p.flops, p.speedup.lo), (p.flops, p.speedup.hi)],
                    c.stroke_width(2),
                )))
                .map_err(err)?;
            chart.draw_series(std::iter::once(Circle::new((p.flops, p.speedup.point), 4, c.filled()))).map_err(err)?;
            let (x, y) = chart.backend_coord(&(p.flops, p.speedup.point));
            let _ = write!(
                overlay,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"6\" fill=\"transparent\"><title>{}: {:.2}× [{:.2}, {:.2}]</title></circle>",
                escape(&p.size),
                p.speedup.point,
                p.speedup.lo,
                p.speedup.hi
            );
        }
        overlay.push_str("</g>");
        Ok(overlay)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sig: &str, s: f64) -> ForestRow {
        ForestRow {
            signature: sig.into(),
            anchor: format!("row-{sig}"),
            label: format!("pattern {sig}"),
            runtime: Some(Estimate { point: s, lo: s * 0.97, hi: s * 1.03 }),
            explicit: None,
            aa: Some(Estimate { point: 1.0, lo: 0.99, hi: 1.01 }),
            band: 0.02,
            grey: None,
            faster: Some(s > 1.02),
            other: None,
            tooltip: "t <&>".into(),
        }
    }

    #[test]
    fn the_forest_has_one_mark_per_row_and_escapes_text() {
        let svg = forest(&[row("a", 1.1), row("b<", 0.9), row("c", 1.0)], ("A", "B")).unwrap();
        assert!(svg.starts_with("<svg id=\"forest\""), "{}", &svg[..100]);
        assert_eq!(svg.matches("data-signature=").count(), 3);
        assert!(svg.contains("data-signature=\"b&lt;\""));
        assert!(svg.contains("t &lt;&amp;&gt;"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn ratio_ticks_fit_the_range() {
        assert_eq!(ratio_ticks(0.75, 1.6), vec![0.8, 0.9, 1.0, 1.1, 1.25, 1.5]);
        assert_eq!(ratio_ticks(0.05, 120.0), vec![0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 10.0, 20.0, 50.0, 100.0]);
        assert_eq!(ratio_ticks(0.96, 1.06), vec![0.98, 1.0, 1.02, 1.05]);
    }

    #[test]
    fn the_roofline_and_waterfall_draw() {
        let p = RoofPoint {
            signature: "s".into(),
            label: "x".into(),
            unfused: (5.0, 50.0),
            fused: (9.0, 60.0),
            faster: Some(true),
        };
        let svg = roofline(&[p], 500.0, 20.0).unwrap();
        assert!(svg.contains("id=\"roofline\"") && svg.contains("roof-mark"));
        let steps = vec![
            Step {
                label: "Disable".into(),
                from: 0.0,
                to: 90.0,
                ci: Some((88.0, 92.0)),
                total: true,
                tooltip: String::new(),
            },
            Step {
                label: "NCHWc".into(),
                from: 90.0,
                to: 65.0,
                ci: Some((20.0, 30.0)),
                total: false,
                tooltip: String::new(),
            },
        ];
        assert!(waterfall(&steps).unwrap().contains("id=\"waterfall\""));
    }
}
