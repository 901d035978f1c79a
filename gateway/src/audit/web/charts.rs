//! Bar charts drawn on the server as inline SVG with `plotters`: only
//! presentation attributes, no `style` attribute and no script, so the
//! pages' Content-Security-Policy holds. Every bar carries its value as a
//! text label, so what is drawn can be read (and checked) as numbers.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::text::visible;

/// One series of a stacked bar chart: its name and a value per category.
pub struct Series {
    /// The legend's label.
    pub name: String,
    /// One value per category (same order as the categories).
    pub values: Vec<i64>,
}

const WIDTH: u32 = 720;
const HEIGHT: u32 = 280;

/// Text that plotters writes escaped; control characters made visible too.
fn label(s: &str) -> String {
    visible(s, &[])
}

/// A stacked bar chart: one bar per category, one segment per series, the
/// bar's total written above it. `None` if plotters fails (logged).
pub fn stacked(categories: &[String], series: &[Series], y_label: &str) -> Option<String> {
    let mut svg = String::new();
    let totals: Vec<i64> = (0..categories.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let top = totals.iter().copied().max().unwrap_or(0).max(1);
    let r =
        (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
            root.fill(&WHITE)?;
            let n = categories.len().max(1) as i32;
            let mut chart = ChartBuilder::on(&root)
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d((0..n).into_segmented(), 0..(top + top / 5 + 1))?;
            let names: Vec<String> = categories.iter().map(|c| label(c)).collect();
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(categories.len().clamp(1, 16))
                .x_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(i) => {
                        names.get(*i as usize).cloned().unwrap_or_default()
                    }
                    _ => String::new(),
                })
                .y_desc(label(y_label))
                .draw()?;
            let mut base = vec![0i64; categories.len()];
            for (k, s) in series.iter().enumerate() {
                let color = Palette99::pick(k).to_rgba();
                let bars: Vec<_> = s
                    .values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| **v > 0)
                    .map(|(i, v)| {
                        let y0 = base[i];
                        base[i] += v;
                        let (x0, x1) = (
                            SegmentValue::Exact(i as i32),
                            SegmentValue::Exact(i as i32 + 1),
                        );
                        let mut bar = Rectangle::new([(x0, y0), (x1, y0 + v)], color.filled());
                        bar.set_margin(0, 0, 6, 6);
                        bar
                    })
                    .collect();
                chart
                    .draw_series(bars)?
                    .label(label(&s.name))
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                    });
            }
            let total_style = TextStyle::from(("sans-serif", 13).into_font())
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            chart.draw_series(totals.iter().enumerate().filter(|(_, t)| **t > 0).map(
                |(i, t)| {
                    let at = (SegmentValue::CenterOf(i as i32), *t);
                    Text::new(t.to_string(), at, total_style.clone())
                },
            ))?;
            if series.len() > 1 {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()?;
            }
            root.present()?;
            Ok(())
        })();
    match r {
        Ok(()) => Some(svg),
        Err(e) => {
            tracing::error!(error = %e, "audit web: cannot draw a chart");
            None
        }
    }
}

/// A bar chart of one series.
pub fn bars(items: &[(String, i64)], y_label: &str) -> Option<String> {
    let categories: Vec<String> = items.iter().map(|(c, _)| c.clone()).collect();
    let series = [Series {
        name: y_label.to_string(),
        values: items.iter().map(|(_, v)| *v).collect(),
    }];
    stacked(&categories, &series, y_label)
}

/// The text of every `<text>` element of `svg`, trimmed (what a test reads
/// off a chart).
pub fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = t.split_once('>')?.1;
            Some(body.split("</text>").next()?.trim().to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(svg: &str, text: &str) -> bool {
        texts(svg).iter().any(|t| t == text)
    }

    #[test]
    fn bars_carry_their_values_and_no_style() {
        let svg = bars(
            &[("bad-signature".into(), 7), ("<b>x</b>".into(), 3)],
            "refusals",
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(has(&svg, "7") && has(&svg, "3"), "{svg}");
        assert!(has(&svg, "bad-signature"), "{svg}");
        assert!(has(&svg, "&lt;b&gt;x&lt;/b&gt;"), "{svg}");
        assert!(!svg.contains("<b>"), "labels are escaped: {svg}");
        assert!(
            !svg.contains("style="),
            "the CSP allows no inline style: {svg}"
        );
        assert!(!svg.contains("<script"), "{svg}");
    }

    #[test]
    fn stacked_sums_each_bar() {
        let days = vec!["01-01".to_string(), "01-02".to_string()];
        let s = [
            Series {
                name: "aa".into(),
                values: vec![3, 0],
            },
            Series {
                name: "bb".into(),
                values: vec![2, 4],
            },
        ];
        let svg = stacked(&days, &s, "messages").unwrap();
        assert!(has(&svg, "5") && has(&svg, "4"), "{svg}");
        assert!(has(&svg, "aa") && has(&svg, "bb"), "legend: {svg}");
        assert!(has(&svg, "01-02"), "{svg}");
        assert!(bars(&[], "none").is_some());
    }
}
