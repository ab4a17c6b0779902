//! Charts for the owner's page (issue 22): inline SVG drawn on the server, so the page needs
//! no script, no CDN and no network fetch. Each chart is a `<figure>` holding an `<svg>` with
//! an `id`, one element per value (`<rect>` for bars, `<circle>` for line points) carrying
//! `data-series`, `data-period` and `data-value` (the exact figure, for tests and for people
//! reading the source), and a legend. The SVG scales to the page's width (`viewBox`).

use crate::dashboard::esc;

/// Drawing area, in SVG units (scaled to the page's width).
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
/// Room for the axis labels.
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 10.0;

/// One series: its name (legend and `data-series`), colour and a value per period.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub values: Vec<u64>,
}

/// How a chart draws its series.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Bars side by side per period.
    Grouped,
    /// Bars stacked per period (parts of one total).
    Stacked,
    /// A line per series (levels, such as space in use).
    Lines,
}

/// A chart `id` titled `title` of `series` over `periods` (their labels), values shown with
/// `show`. Nothing to draw (no periods) gives a short note instead of an empty frame.
pub fn chart(
    id: &str,
    title: &str,
    periods: &[String],
    series: &[Series<'_>],
    style: Style,
    show: &dyn Fn(u64) -> String,
) -> String {
    let n = periods.len();
    if n == 0 || series.is_empty() {
        return format!(
            "<figure class=chart id=\"{id}\"><figcaption>{}</figcaption><p class=empty>No data \
             in this range yet.</p></figure>",
            esc(title)
        );
    }
    let top_value = match style {
        Style::Stacked => (0..n)
            .map(|i| {
                series
                    .iter()
                    .map(|s| s.values.get(i).copied().unwrap_or(0))
                    .fold(0u64, u64::saturating_add)
            })
            .max()
            .unwrap_or(0),
        _ => series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .max()
            .unwrap_or(0),
    }
    .max(1);
    let plot_w = WIDTH - LEFT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / n as f64;
    let y_of = |v: u64| TOP + plot_h - plot_h * (v as f64 / top_value as f64);
    let mut body = String::new();
    // Axes and the scale: the largest value at the top, 0 at the bottom.
    body.push_str(&format!(
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{y0}\" class=axis />\
         <line x1=\"{LEFT}\" y1=\"{y0}\" x2=\"{WIDTH}\" y2=\"{y0}\" class=axis />\
         <text x=\"{lx}\" y=\"{ty}\" class=scale text-anchor=end>{top}</text>\
         <text x=\"{lx}\" y=\"{y0}\" class=scale text-anchor=end>0</text>",
        y0 = TOP + plot_h,
        lx = LEFT - 4.0,
        ty = TOP + 8.0,
        top = esc(&show(top_value)),
    ));
    match style {
        Style::Grouped | Style::Stacked => {
            let groups = if style == Style::Grouped {
                series.len()
            } else {
                1
            };
            let bar_w = (slot * 0.8 / groups as f64).max(0.5);
            for (i, period) in periods.iter().enumerate() {
                let mut base = 0u64;
                for (k, s) in series.iter().enumerate() {
                    let v = s.values.get(i).copied().unwrap_or(0);
                    let (x, y_top, y_bottom) = if style == Style::Grouped {
                        let x = LEFT + slot * i as f64 + slot * 0.1 + bar_w * k as f64;
                        (x, y_of(v), y_of(0))
                    } else {
                        let x = LEFT + slot * i as f64 + slot * 0.1;
                        let (lo, hi) = (base, base.saturating_add(v));
                        base = hi;
                        (x, y_of(hi), y_of(lo))
                    };
                    body.push_str(&format!(
                        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" \
                         fill=\"{color}\" data-series=\"{name}\" data-period=\"{period}\" \
                         data-value=\"{v}\"><title>{period}: {name} {shown}</title></rect>",
                        y = y_top,
                        h = (y_bottom - y_top).max(0.0),
                        color = s.color,
                        name = esc(s.name),
                        period = esc(period),
                        shown = esc(&show(v)),
                    ));
                }
            }
        }
        Style::Lines => {
            for s in series {
                let points: Vec<(f64, f64, u64)> = (0..n)
                    .map(|i| {
                        let v = s.values.get(i).copied().unwrap_or(0);
                        (LEFT + slot * (i as f64 + 0.5), y_of(v), v)
                    })
                    .collect();
                let path: Vec<String> = points
                    .iter()
                    .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
                    .collect();
                body.push_str(&format!(
                    "<polyline points=\"{}\" fill=none stroke=\"{}\" stroke-width=2 />",
                    path.join(" "),
                    s.color
                ));
                for ((x, y, v), period) in points.iter().zip(periods) {
                    body.push_str(&format!(
                        "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=2.5 fill=\"{color}\" \
                         data-series=\"{name}\" data-period=\"{period}\" data-value=\"{v}\">\
                         <title>{period}: {name} {shown}</title></circle>",
                        color = s.color,
                        name = esc(s.name),
                        period = esc(period),
                        shown = esc(&show(*v)),
                    ));
                }
            }
        }
    }
    // The first and last periods under the axis.
    body.push_str(&format!(
        "<text x=\"{LEFT}\" y=\"{HEIGHT}\" class=scale>{}</text>\
         <text x=\"{WIDTH}\" y=\"{HEIGHT}\" class=scale text-anchor=end>{}</text>",
        esc(&periods[0]),
        esc(&periods[n - 1]),
    ));
    let legend: String = series
        .iter()
        .map(|s| {
            let total = s.values.iter().copied().fold(0u64, u64::saturating_add);
            let shown = if style == Style::Lines {
                // A level: its latest value, not a sum.
                show(s.values.last().copied().unwrap_or(0))
            } else {
                show(total)
            };
            format!(
                "<li><span class=swatch style=\"background:{}\"></span>{} <b>{}</b></li>",
                s.color,
                esc(s.name),
                esc(&shown)
            )
        })
        .collect();
    format!(
        "<figure class=chart><figcaption>{title}</figcaption>\
         <svg id=\"{id}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"100%\" role=img \
         aria-label=\"{title}\" preserveAspectRatio=\"none\">{body}</svg>\
         <ul class=legend>{legend}</ul></figure>",
        title = esc(title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn periods(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("d{i}")).collect()
    }

    #[test]
    fn every_value_is_an_element_with_its_exact_figure() {
        let s = [
            Series {
                name: "written",
                color: "#36c",
                values: vec![1, 0, 7],
            },
            Series {
                name: "read",
                color: "#c63",
                values: vec![2, 5, 0],
            },
        ];
        let svg = chart("bw", "Bandwidth", &periods(3), &s, Style::Grouped, &|v| {
            v.to_string()
        });
        assert_eq!(svg.matches("<rect").count(), 6);
        assert!(svg.contains("data-series=\"written\" data-period=\"d2\" data-value=\"7\""));
        assert!(svg.contains("id=\"bw\""));
        let stacked = chart("e", "Earned", &periods(3), &s, Style::Stacked, &|v| {
            v.to_string()
        });
        // The scale's top is the largest stack (0 + 7 or 5 + 0 or 1 + 2): 7.
        assert!(stacked.contains(">7</text>"), "{stacked}");
        let lines = chart("u", "Used", &periods(3), &s, Style::Lines, &|v| {
            v.to_string()
        });
        assert_eq!(lines.matches("<circle").count(), 6);
        assert_eq!(lines.matches("<polyline").count(), 2);
    }

    #[test]
    fn nothing_to_draw_says_so() {
        let empty = chart("x", "X", &[], &[], Style::Lines, &|v| v.to_string());
        assert!(empty.contains("No data"));
        assert!(!empty.contains("<svg"));
    }
}
