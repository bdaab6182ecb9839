//! Line charts as SVG, for the plots docs/benchmarks.md links (`docs/plots/*.svg`): CPU and
//! memory against viewers, RSS and open file descriptors against time.
//!
//! Written by hand rather than with a plotting crate: what the docs need is a few hundred
//! lines of string formatting, where a plotting crate brings font loading, image backends
//! and their build dependencies into a crate that otherwise builds quickly. The output is
//! plain SVG 1.1 with no scripts, styles or external resources, which GitHub shows as an
//! image.
//!
//! The same chart always gives the same bytes (coordinates rounded to a tenth of a pixel,
//! no timestamps, no hash-ordered anything), so re-running a benchmark diffs cleanly.

use std::fmt::Write as _;

/// One line on a chart: `(x, y)` points, drawn in the order given. Points with a NaN or
/// infinite coordinate (or x ≤ 0 on a log axis) are skipped, and the line breaks there.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart. The y axis runs from 0 (or below, if the data does) to a round number at
/// or above the largest y; the x axis covers the data, with decade ticks if `log_x`.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub series: Vec<Series>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 68.0;
const RIGHT: f64 = WIDTH - 20.0;
const TOP: f64 = 40.0;
const LEGEND_ROW: f64 = 18.0;
/// Guessed width of a character of 12 px sans-serif, to wrap the legend (SVG cannot measure).
const CHAR_WIDTH: f64 = 7.0;

/// Okabe–Ito colours, told apart with the common forms of colour blindness.
const COLORS: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];
/// So that the lines can be told apart in grayscale too.
const DASHES: [&str; 6] = ["", "7 4", "2 3", "9 3 2 3", "4 4", "12 3 2 3 2 3"];

/// Ticks of an axis: their values and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticks {
    pub values: Vec<f64>,
    pub labels: Vec<String>,
}

impl Ticks {
    fn lo(&self) -> f64 {
        self.values[0]
    }
    fn hi(&self) -> f64 {
        self.values[self.values.len() - 1]
    }
}

/// 4 to 7 ticks at multiples of 1, 2 or 5 × 10^k, the first at or below `lo` and the last
/// at or above `hi`.
pub fn nice_ticks(lo: f64, hi: f64) -> Ticks {
    let (lo, hi) = widen(lo, hi);
    let span = hi - lo;
    if !span.is_finite() {
        return Ticks {
            values: vec![lo, hi],
            labels: vec![format!("{lo:e}"), format!("{hi:e}")],
        };
    }
    // Steps from a tenth of span/6 upwards: the first with at most 6 intervals has at
    // least 3 (the step before it had 7 or more, and this one is at most 2.5 times larger).
    let mut k = (span / 6.0).log10().floor() as i32 - 1;
    let mut m = 0;
    let (mut first, mut last, mut step, mut step_k);
    loop {
        let mantissa = [1.0, 2.0, 5.0][m];
        step_k = k;
        step = mantissa * 10f64.powi(k);
        first = (lo / step + 1e-9).floor();
        last = (hi / step - 1e-9).ceil();
        if last - first <= 6.0 || k > 400 {
            break;
        }
        m += 1;
        if m == 3 {
            m = 0;
            k += 1;
        }
    }
    let values: Vec<f64> = (first as i64..=last as i64)
        .map(|i| i as f64 * step)
        .collect();
    let largest = values.iter().fold(0f64, |a, v| a.max(v.abs()));
    let labels = values
        .iter()
        .map(|&v| number_label(v, step_k, largest))
        .collect();
    Ticks { values, labels }
}

/// Decade ticks (…, 10, 100, 1000, …) from the one at or below `lo` to the one at or above
/// `hi`, both > 0. Labelled every decade, or every few if there would be more than 7 labels.
pub fn log_ticks(lo: f64, hi: f64) -> Ticks {
    let (lo, hi) = if lo > 0.0 && hi >= lo && hi.is_finite() {
        (lo, hi)
    } else {
        (1.0, 10.0)
    };
    let first = (lo.log10() + 1e-9).floor() as i32;
    let mut last = (hi.log10() - 1e-9).ceil() as i32;
    if last <= first {
        last = first + 1;
    }
    let every = ((last - first) as usize).div_ceil(6).max(1);
    let values: Vec<f64> = (first..=last).map(|e| 10f64.powi(e)).collect();
    let labels = (first..=last)
        .enumerate()
        .map(|(i, e)| {
            if i % every != 0 {
                String::new()
            } else if e >= 15 {
                format!("1e{e}")
            } else {
                number_label(10f64.powi(e), e, 10f64.powi(e))
            }
        })
        .collect();
    Ticks { values, labels }
}

/// A range with some width: 0..1 for nothing or zero, half the value either side of a
/// single other value.
fn widen(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) || lo > hi {
        return (0.0, 1.0);
    }
    if hi - lo > hi.abs().max(lo.abs()) * 1e-12 {
        return (lo, hi);
    }
    if lo == 0.0 {
        return (0.0, 1.0);
    }
    let half = lo.abs() / 2.0;
    (lo - half, hi + half)
}

/// `v`, a multiple of 10^k, with as many decimals as that needs; millions and up as
/// "1.5M", "2G" (the largest tick, `largest`, chooses the unit for the whole axis).
fn number_label(v: f64, k: i32, largest: f64) -> String {
    let (scale, suffix, k) = if largest >= 1e9 {
        (1e9, "G", k - 9)
    } else if largest >= 1e6 {
        (1e6, "M", k - 6)
    } else {
        (1.0, "", k)
    };
    let decimals = (-k).clamp(0, 12) as usize;
    let s = format!("{:.*}", decimals, v / scale);
    if s.trim_start_matches('-')
        .trim_matches(['0', '.'])
        .is_empty()
    {
        // Zero, without a sign or a unit.
        return if suffix.is_empty() {
            format!("{:.*}", decimals, 0.0)
        } else {
            "0".to_string()
        };
    }
    format!("{s}{suffix}")
}

/// A pixel coordinate, to a tenth of a pixel, without "-0" or a trailing ".0".
fn px(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == 0.0 || !r.is_finite() {
        "0".to_string()
    } else {
        format!("{r}")
    }
}

/// Text for an XML text node or attribute value; characters XML 1.0 does not allow are dropped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

impl Chart {
    /// The points that can be drawn, per series, in runs between skipped points.
    fn runs(&self) -> Vec<Vec<Vec<(f64, f64)>>> {
        self.series
            .iter()
            .map(|s| {
                let mut runs = vec![Vec::new()];
                for &(x, y) in &s.points {
                    if x.is_finite() && y.is_finite() && (!self.log_x || x > 0.0) {
                        runs.last_mut().unwrap().push((x, y));
                    } else if !runs.last().unwrap().is_empty() {
                        runs.push(Vec::new());
                    }
                }
                runs.retain(|r| !r.is_empty());
                runs
            })
            .collect()
    }

    pub fn to_svg(&self) -> String {
        let runs = self.runs();
        let all = || runs.iter().flatten().flatten();
        let (mut x_min, mut x_max) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut y_min, mut y_max) = (0f64, 0f64);
        for &(x, y) in all() {
            x_min = x_min.min(x);
            x_max = x_max.max(x);
            y_min = y_min.min(y);
            y_max = y_max.max(y);
        }
        let x_ticks = if self.log_x {
            log_ticks(x_min, x_max)
        } else {
            nice_ticks(x_min, x_max)
        };
        let y_ticks = nice_ticks(y_min, y_max);

        // The legend wraps under the x axis label; the plot gets what height is left.
        let mut legend = Vec::new(); // (row, x) of each entry
        let (mut row, mut x) = (0usize, LEFT);
        for s in &self.series {
            let w = 28.0 + 6.0 + s.name.chars().count() as f64 * CHAR_WIDTH + 18.0;
            if x > LEFT && x + w > RIGHT {
                row += 1;
                x = LEFT;
            }
            legend.push((row, x));
            x += w;
        }
        let legend_h = if self.series.is_empty() {
            0.0
        } else {
            (row + 1) as f64 * LEGEND_ROW
        };
        let legend_top = HEIGHT - 8.0 - legend_h;
        let x_label_y = legend_top - 8.0;
        let bottom = (x_label_y - 30.0).max(TOP + 100.0);

        let (xlo, xhi) = (x_ticks.lo(), x_ticks.hi());
        let (ylo, yhi) = (y_ticks.lo(), y_ticks.hi());
        let map_x = |v: f64| {
            let f = if self.log_x {
                (v.log10() - xlo.log10()) / (xhi.log10() - xlo.log10())
            } else {
                (v - xlo) / (xhi - xlo)
            };
            LEFT + f * (RIGHT - LEFT)
        };
        let map_y = |v: f64| bottom - (v - ylo) / (yhi - ylo) * (bottom - TOP);

        let mut o = String::new();
        let _ = writeln!(o, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#,
            w = WIDTH,
            h = HEIGHT
        );
        let _ = writeln!(o, "<title>{}</title>", escape(&self.title));
        let _ = writeln!(
            o,
            r##"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##
        );

        // Grid.
        let _ = writeln!(o, r##"<g stroke="#e4e4e4" stroke-width="1">"##);
        for &v in &y_ticks.values {
            let y = px(map_y(v));
            let _ = writeln!(
                o,
                r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}"/>"#,
                px(LEFT),
                px(RIGHT)
            );
        }
        for &v in &x_ticks.values {
            let x = px(map_x(v));
            let _ = writeln!(
                o,
                r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#,
                px(TOP),
                px(bottom)
            );
        }
        let _ = writeln!(o, "</g>");
        if self.log_x {
            // Unlabelled marks at 2..9 × each decade.
            let _ = writeln!(o, r##"<g stroke="#444444" stroke-width="1">"##);
            for w in x_ticks.values.windows(2) {
                for m in 2..10 {
                    let x = px(map_x(w[0] * m as f64));
                    let _ = writeln!(
                        o,
                        r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#,
                        px(bottom),
                        px(bottom + 3.0)
                    );
                }
            }
            let _ = writeln!(o, "</g>");
        }

        // Axes, tick marks, tick labels.
        let _ = writeln!(
            o,
            r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#444444" stroke-width="1"/>"##,
            px(LEFT),
            px(TOP),
            px(RIGHT - LEFT),
            px(bottom - TOP)
        );
        let _ = writeln!(
            o,
            r##"<g fill="#222222" font-size="11" text-anchor="end">"##
        );
        for (v, label) in y_ticks.values.iter().zip(&y_ticks.labels) {
            let y = map_y(*v);
            let _ = writeln!(
                o,
                r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#444444"/><text x="{}" y="{}">{}</text>"##,
                px(LEFT - 5.0),
                px(LEFT),
                px(LEFT - 8.0),
                px(y + 4.0),
                escape(label),
                y = px(y)
            );
        }
        let _ = writeln!(o, "</g>");
        let _ = writeln!(
            o,
            r##"<g fill="#222222" font-size="11" text-anchor="middle">"##
        );
        for (v, label) in x_ticks.values.iter().zip(&x_ticks.labels) {
            let x = px(map_x(*v));
            let _ = write!(
                o,
                r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#444444"/>"##,
                px(bottom),
                px(bottom + 5.0)
            );
            if !label.is_empty() {
                let _ = write!(
                    o,
                    r#"<text x="{x}" y="{}">{}</text>"#,
                    px(bottom + 18.0),
                    escape(label)
                );
            }
            let _ = writeln!(o);
        }
        let _ = writeln!(o, "</g>");

        // Series: the line, then the markers on it.
        for (i, runs) in runs.iter().enumerate() {
            if runs.is_empty() {
                continue;
            }
            let (color, dash) = style(i);
            let mut d = String::new();
            for run in runs {
                for (j, &(x, y)) in run.iter().enumerate() {
                    if !d.is_empty() {
                        d.push(' ');
                    }
                    d.push(if j == 0 { 'M' } else { 'L' });
                    let _ = write!(d, "{} {}", px(map_x(x)), px(map_y(y)));
                }
            }
            let _ = writeln!(
                o,
                r#"<path d="{d}" fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round"{}/>"#,
                dash_attr(dash)
            );
            let _ = writeln!(o, r#"<g fill="{color}" stroke="{color}">"#);
            for &(x, y) in runs.iter().flatten() {
                let _ = writeln!(o, "{}", marker(i, map_x(x), map_y(y)));
            }
            let _ = writeln!(o, "</g>");
        }

        // Title, axis labels.
        let _ = writeln!(
            o,
            r##"<text x="{}" y="24" font-size="15" font-weight="bold" text-anchor="middle" fill="#111111">{}</text>"##,
            px((LEFT + RIGHT) / 2.0),
            escape(&self.title)
        );
        let _ = writeln!(
            o,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#111111">{}</text>"##,
            px((LEFT + RIGHT) / 2.0),
            px(x_label_y),
            escape(&self.x_label)
        );
        let _ = writeln!(
            o,
            r##"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle" fill="#111111">{}</text>"##,
            px((TOP + bottom) / 2.0),
            escape(&self.y_label)
        );

        // Legend: every series, the empty ones too.
        if !self.series.is_empty() {
            let _ = writeln!(o, r##"<g fill="#111111">"##);
            for (i, (s, &(row, x))) in self.series.iter().zip(&legend).enumerate() {
                let (color, dash) = style(i);
                let y = legend_top + LEGEND_ROW / 2.0 + row as f64 * LEGEND_ROW;
                let _ = writeln!(
                    o,
                    r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"{}/><g fill="{color}" stroke="{color}">{}</g><text x="{}" y="{}">{}</text>"#,
                    px(x),
                    px(x + 28.0),
                    dash_attr(dash),
                    marker(i, x + 14.0, y),
                    px(x + 34.0),
                    px(y + 4.0),
                    escape(&s.name),
                    y = px(y)
                );
            }
            let _ = writeln!(o, "</g>");
        }
        let _ = writeln!(o, "</svg>");
        o
    }
}

/// Colour and dash pattern of the `i`th series; past 6 series the pairs shift so that
/// the 7th does not look like the 1st.
fn style(i: usize) -> (&'static str, &'static str) {
    (COLORS[i % 6], DASHES[(i + i / 6) % 6])
}

fn dash_attr(dash: &str) -> String {
    if dash.is_empty() {
        String::new()
    } else {
        format!(r#" stroke-dasharray="{dash}""#)
    }
}

/// The `i`th series' point marker at (x, y): filled circle, square, triangle, diamond,
/// then open circle and square. Not a `<path>`, so that there is one of those per line.
fn marker(i: usize, x: f64, y: f64) -> String {
    let r = 3.5;
    let poly = |pts: &[(f64, f64)]| {
        let pts: Vec<String> = pts
            .iter()
            .map(|&(dx, dy)| format!("{},{}", px(x + dx), px(y + dy)))
            .collect();
        format!(r#"<polygon points="{}"/>"#, pts.join(" "))
    };
    match i % 6 {
        0 => format!(r#"<circle cx="{}" cy="{}" r="{r}"/>"#, px(x), px(y)),
        1 => format!(
            r#"<rect x="{}" y="{}" width="{w}" height="{w}"/>"#,
            px(x - r + 0.5),
            px(y - r + 0.5),
            w = px(2.0 * r - 1.0)
        ),
        2 => poly(&[(0.0, -r - 0.5), (r, r - 0.5), (-r, r - 0.5)]),
        3 => poly(&[
            (0.0, -r - 0.5),
            (r + 0.5, 0.0),
            (0.0, r + 0.5),
            (-r - 0.5, 0.0),
        ]),
        4 => format!(
            r##"<circle cx="{}" cy="{}" r="{r}" fill="#ffffff" stroke-width="1.5"/>"##,
            px(x),
            px(y)
        ),
        _ => format!(
            r##"<rect x="{}" y="{}" width="{w}" height="{w}" fill="#ffffff" stroke-width="1.5"/>"##,
            px(x - r + 0.5),
            px(y - r + 0.5),
            w = px(2.0 * r - 1.0)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An XML element: its name, attributes and text (entities replaced), and children.
    #[derive(Debug)]
    struct Element {
        name: String,
        attrs: Vec<(String, String)>,
        text: String,
        children: Vec<Element>,
    }

    impl Element {
        fn all(&self) -> Vec<&Element> {
            let mut out = vec![self];
            for c in &self.children {
                out.extend(c.all());
            }
            out
        }
        fn attr(&self, name: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// A small well-formedness check of the XML this module writes: an optional
    /// declaration, comments, one root element, matched tags, quoted and unique
    /// attributes, only the five named entities and character references, no `<` or `&`
    /// loose in text. No DTDs, CDATA or namespaces checks: the writer uses none of them.
    fn parse_xml(s: &str) -> Result<Element, String> {
        struct P<'a> {
            s: &'a str,
            i: usize,
        }
        impl<'a> P<'a> {
            fn rest(&self) -> &'a str {
                &self.s[self.i..]
            }
            fn err<T>(&self, what: &str) -> Result<T, String> {
                let around: String = self.rest().chars().take(40).collect();
                Err(format!("{what} at byte {}: {around:?}", self.i))
            }
            fn skip_ws(&mut self) {
                let n = self.rest().len() - self.rest().trim_start().len();
                self.i += n;
            }
            fn skip_misc(&mut self) -> Result<(), String> {
                loop {
                    self.skip_ws();
                    if self.rest().starts_with("<!--") {
                        match self.rest().find("-->") {
                            Some(n) => self.i += n + 3,
                            None => return self.err("unclosed comment"),
                        }
                    } else if self.rest().starts_with("<?") {
                        match self.rest().find("?>") {
                            Some(n) => self.i += n + 2,
                            None => return self.err("unclosed processing instruction"),
                        }
                    } else {
                        return Ok(());
                    }
                }
            }
            fn name(&mut self) -> Result<String, String> {
                let n = self
                    .rest()
                    .find(|c: char| !(c.is_alphanumeric() || "_-.:".contains(c)))
                    .unwrap_or(self.rest().len());
                let name = &self.rest()[..n];
                if n == 0 || name.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
                    return self.err("bad name");
                }
                self.i += n;
                Ok(name.to_string())
            }
            fn unescape(&self, raw: &str) -> Result<String, String> {
                if raw.contains('<') {
                    return self.err("'<' in text or attribute");
                }
                let mut out = String::new();
                let mut parts = raw.split('&');
                out.push_str(parts.next().unwrap());
                for part in parts {
                    let Some((entity, tail)) = part.split_once(';') else {
                        return self.err("'&' without ';'");
                    };
                    let c = match entity {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "quot" => '"',
                        "apos" => '\'',
                        e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or(format!("bad reference &{e};"))?,
                        e if e.starts_with('#') => e[1..]
                            .parse()
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or(format!("bad reference &{e};"))?,
                        e => return self.err(&format!("unknown entity &{e};")),
                    };
                    out.push(c);
                    out.push_str(tail);
                }
                Ok(out)
            }
            fn element(&mut self) -> Result<Element, String> {
                if !self.rest().starts_with('<') {
                    return self.err("expected '<'");
                }
                self.i += 1;
                let name = self.name()?;
                let mut attrs: Vec<(String, String)> = Vec::new();
                loop {
                    let had_ws = self.rest().starts_with(char::is_whitespace);
                    self.skip_ws();
                    if self.rest().starts_with("/>") {
                        self.i += 2;
                        return Ok(Element {
                            name,
                            attrs,
                            text: String::new(),
                            children: Vec::new(),
                        });
                    }
                    if self.rest().starts_with('>') {
                        self.i += 1;
                        break;
                    }
                    if !had_ws {
                        return self.err("expected whitespace before attribute");
                    }
                    let an = self.name()?;
                    self.skip_ws();
                    if !self.rest().starts_with('=') {
                        return self.err("expected '='");
                    }
                    self.i += 1;
                    self.skip_ws();
                    let Some(q) = self
                        .rest()
                        .chars()
                        .next()
                        .filter(|c| *c == '"' || *c == '\'')
                    else {
                        return self.err("unquoted attribute");
                    };
                    self.i += 1;
                    let Some(n) = self.rest().find(q) else {
                        return self.err("unclosed attribute");
                    };
                    let v = self.unescape(&self.rest()[..n])?;
                    self.i += n + 1;
                    if attrs.iter().any(|(n, _)| *n == an) {
                        return self.err(&format!("duplicate attribute {an}"));
                    }
                    attrs.push((an, v));
                }
                let mut text = String::new();
                let mut children = Vec::new();
                loop {
                    let n = self.rest().find('<').unwrap_or(self.rest().len());
                    text.push_str(&self.unescape(&self.rest()[..n])?);
                    self.i += n;
                    if self.rest().is_empty() {
                        return self.err(&format!("unclosed <{name}>"));
                    } else if self.rest().starts_with("</") {
                        self.i += 2;
                        let end = self.name()?;
                        self.skip_ws();
                        if end != name || !self.rest().starts_with('>') {
                            return self.err(&format!("</{end}> closing <{name}>"));
                        }
                        self.i += 1;
                        return Ok(Element {
                            name,
                            attrs,
                            text,
                            children,
                        });
                    } else if self.rest().starts_with("<!--") || self.rest().starts_with("<?") {
                        self.skip_misc()?;
                    } else {
                        children.push(self.element()?);
                    }
                }
            }
        }
        let mut p = P { s, i: 0 };
        p.skip_misc()?;
        let root = p.element()?;
        p.skip_misc()?;
        if !p.rest().is_empty() {
            return p.err("content after the root element");
        }
        Ok(root)
    }

    #[test]
    fn the_checker_rejects_what_it_should() {
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "<a><b></a></b>",
            "<a x=1/>",
            "<a x=\"1\" x=\"2\"/>",
            "<a>x & y</a>",
            "<a>&nbsp;</a>",
            "<a>1 < 2</a>",
            "<a/><b/>",
            "<a x=\"<\"/>",
        ] {
            assert!(parse_xml(bad).is_err(), "accepted {bad:?}");
        }
        let ok = parse_xml(
            "<?xml version=\"1.0\"?>\n<a k='v &amp; w'><!-- c --><b/>x &lt; y &#65;</a>\n",
        )
        .unwrap();
        assert_eq!(ok.attr("k"), Some("v & w"));
        assert_eq!(ok.text, "x < y A");
        assert_eq!(ok.children[0].name, "b");
    }

    fn sample() -> Chart {
        Chart {
            title: "CPU against viewers".into(),
            x_label: "viewers".into(),
            y_label: "CPU (% of one core)".into(),
            log_x: false,
            series: vec![
                Series {
                    name: "relay".into(),
                    points: vec![(0.0, 1.0), (100.0, 80.5), (500.0, 410.0), (1000.0, 937.0)],
                },
                Series {
                    name: "sendmmsg baseline".into(),
                    points: vec![(0.0, 0.0), (100.0, 50.0), (500.0, 260.0), (1000.0, 540.0)],
                },
                Series {
                    name: "nothing yet".into(),
                    points: vec![],
                },
            ],
        }
    }

    fn texts(root: &Element) -> Vec<String> {
        root.all()
            .into_iter()
            .filter(|e| e.name == "text")
            .map(|e| e.text.clone())
            .collect()
    }

    fn paths(root: &Element) -> usize {
        root.all()
            .into_iter()
            .filter(|e| e.name == "path" || e.name == "polyline")
            .count()
    }

    #[test]
    fn nice_ticks_from_zero() {
        assert_eq!(
            nice_ticks(0.0, 937.0).values,
            [0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]
        );
        assert_eq!(
            nice_ticks(0.0, 937.0).labels,
            ["0", "200", "400", "600", "800", "1000"]
        );
        let tenths = ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"];
        assert_eq!(nice_ticks(0.0, 1.0).labels, tenths);
        assert_eq!(nice_ticks(0.0, 0.0).labels, tenths);
        assert_eq!(
            nice_ticks(0.0, 100.0).labels,
            ["0", "20", "40", "60", "80", "100"]
        );
        assert_eq!(
            nice_ticks(0.0, 0.04).labels,
            ["0.00", "0.01", "0.02", "0.03", "0.04"]
        );
        assert_eq!(
            nice_ticks(0.0, 2.5e8).labels,
            ["0", "50M", "100M", "150M", "200M", "250M"]
        );
        assert_eq!(
            nice_ticks(-3.0, 7.0).labels,
            ["-4", "-2", "0", "2", "4", "6", "8"]
        );
        // Always 4 to 7, covering the range, whatever the range.
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let scale = 10f64.powi(rng.i32(-6..12));
            let hi = rng.f64() * scale;
            let lo = if rng.bool() {
                0.0
            } else {
                hi - rng.f64() * scale
            };
            let t = nice_ticks(lo, hi);
            assert!((4..=7).contains(&t.values.len()), "{lo}..{hi}: {t:?}");
            assert!(t.lo() <= lo && t.hi() >= hi, "{lo}..{hi}: {t:?}");
            let mut labels = t.labels.clone();
            labels.dedup();
            assert_eq!(labels.len(), t.labels.len(), "{lo}..{hi}: {t:?}");
        }
    }

    #[test]
    fn log_ticks_are_decades() {
        let t = log_ticks(10.0, 5000.0);
        assert_eq!(t.values, [10.0, 100.0, 1000.0, 10000.0]);
        assert_eq!(t.labels, ["10", "100", "1000", "10000"]);
        assert_eq!(log_ticks(100.0, 100.0).labels, ["100", "1000"]);
        assert_eq!(log_ticks(0.05, 2.0).labels, ["0.01", "0.1", "1", "10"]);
        assert_eq!(
            log_ticks(1.0, 1e6).labels,
            ["1", "10", "100", "1000", "10000", "100000", "1M"]
        );
        // Many decades: labels thinned to at most 7.
        let t = log_ticks(1.0, 1e12);
        assert_eq!(t.values.len(), 13);
        assert!(t.labels.iter().filter(|l| !l.is_empty()).count() <= 7);
    }

    #[test]
    fn the_chart_is_xml_with_a_line_per_series() {
        let svg = sample().to_svg();
        let root = parse_xml(&svg).unwrap();
        assert_eq!(root.name, "svg");
        assert_eq!(root.attr("xmlns"), Some("http://www.w3.org/2000/svg"));
        assert_eq!(paths(&root), 2);
        let texts = texts(&root);
        for t in [
            "0",
            "200",
            "400",
            "600",
            "800",
            "1000", // both axes
            "CPU against viewers",
            "viewers",
            "CPU (% of one core)",
            "relay",
            "sendmmsg baseline",
            "nothing yet",
        ] {
            assert!(texts.iter().any(|x| x == t), "no text {t:?} in {texts:?}");
        }
        // Every series is in the legend, the empty one too: three swatches.
        assert!(svg.contains("<circle") && svg.contains("<rect x"));
        assert_eq!(svg, sample().to_svg(), "not deterministic");
    }

    #[test]
    fn log_x_chart_has_decade_labels() {
        let mut chart = sample();
        chart.log_x = true;
        chart.series[0].points = vec![(10.0, 5.0), (100.0, 40.0), (1000.0, 300.0), (5000.0, 900.0)];
        chart.series[1].points = vec![(0.0, 1.0), (20.0, 3.0), (2000.0, 200.0)]; // 0: not on a log axis
        let root = parse_xml(&chart.to_svg()).unwrap();
        let texts = texts(&root);
        for t in ["10", "100", "1000", "10000"] {
            assert!(texts.iter().any(|x| x == t), "no {t:?} in {texts:?}");
        }
        assert_eq!(paths(&root), 2);
    }

    #[test]
    fn names_are_escaped() {
        let chart = Chart {
            title: "\"quotes\" & 'apostrophes'".into(),
            x_label: "x > 0".into(),
            y_label: "y\u{1}".into(),
            log_x: false,
            series: vec![Series {
                name: "a<b".into(),
                points: vec![(1.0, 2.0)],
            }],
        };
        let svg = chart.to_svg();
        assert!(svg.contains(">a&lt;b</text>"), "{svg}");
        let root = parse_xml(&svg).unwrap();
        let texts = texts(&root);
        assert!(texts.iter().any(|t| t == "a<b"));
        assert!(texts.iter().any(|t| t == "\"quotes\" & 'apostrophes'"));
        assert!(texts.iter().any(|t| t == "x > 0"));
        assert!(texts.iter().any(|t| t == "y"));
    }

    #[test]
    fn odd_data() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let cases: Vec<Vec<Series>> = vec![
            vec![],
            vec![Series {
                name: "one point".into(),
                points: vec![(3.0, 7.0)],
            }],
            vec![Series {
                name: "zeros".into(),
                points: vec![(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)],
            }],
            vec![Series {
                name: "x all the same".into(),
                points: vec![(5.0, 1.0), (5.0, 2.0)],
            }],
            vec![Series {
                name: "holes".into(),
                points: vec![
                    (0.0, 1.0),
                    (1.0, nan),
                    (2.0, 3.0),
                    (inf, 4.0),
                    (4.0, -inf),
                    (5.0, 2.0),
                ],
            }],
            vec![Series {
                name: "only junk".into(),
                points: vec![(nan, 1.0), (1.0, inf)],
            }],
            vec![Series {
                name: "negative".into(),
                points: vec![(-10.0, -5.0), (10.0, 3.0)],
            }],
            vec![Series {
                name: "huge".into(),
                points: vec![(0.0, 0.0), (1.0, 1e300), (2.0, -1e300)],
            }],
        ];
        for series in cases {
            for log_x in [false, true] {
                let chart = Chart {
                    title: "odd".into(),
                    log_x,
                    series: series.clone(),
                    ..Chart::default()
                };
                let svg = chart.to_svg();
                let root = parse_xml(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
                for bad in ["NaN", "inf"] {
                    assert!(!svg.contains(bad), "{bad} in {svg}");
                }
                let plottable = series
                    .iter()
                    .filter(|s| {
                        s.points
                            .iter()
                            .any(|&(x, y)| x.is_finite() && y.is_finite() && (!log_x || x > 0.0))
                    })
                    .count();
                assert_eq!(paths(&root), plottable, "{svg}");
            }
        }
        // The holes break the line: 0, 1 | 3, 4 | 6.
        let chart = Chart {
            series: vec![Series {
                name: "holes".into(),
                points: vec![
                    (0.0, 1.0),
                    (1.0, 2.0),
                    (2.0, nan),
                    (3.0, 3.0),
                    (4.0, 4.0),
                    (inf, 4.0),
                    (6.0, 2.0),
                ],
            }],
            ..Chart::default()
        };
        let root = parse_xml(&chart.to_svg()).unwrap();
        let d = root
            .all()
            .into_iter()
            .find(|e| e.name == "path")
            .unwrap()
            .attr("d")
            .unwrap()
            .to_string();
        assert_eq!(d.matches('M').count(), 3, "{d}");
        assert_eq!(d.matches('L').count(), 2, "{d}");
    }

    #[test]
    fn many_series_have_distinct_styles() {
        let styles: Vec<_> = (0..12).map(style).collect();
        for i in 0..12 {
            for j in 0..i {
                assert_ne!(styles[i], styles[j], "{i} and {j}");
            }
        }
    }

    /// Writes a sample chart for looking at:
    /// `cargo test -p relay-benches --release --lib plot::tests::write_sample -- --ignored`.
    #[test]
    #[ignore]
    fn write_sample() {
        let mut chart = sample();
        chart.series.push(Series {
            name: "a <weird> & long name".into(),
            points: vec![
                (50.0, 900.0),
                (300.0, 700.0),
                (600.0, f64::NAN),
                (800.0, 200.0),
            ],
        });
        for i in 0..3 {
            chart.series.push(Series {
                name: format!("series {i}"),
                points: (0..=10)
                    .map(|k| (k as f64 * 100.0, (k * k) as f64 * (i + 2) as f64))
                    .collect(),
            });
        }
        let path = std::env::temp_dir().join("plot-sample.svg");
        std::fs::write(&path, chart.to_svg()).unwrap();
        let mut log = chart.clone();
        log.log_x = true;
        log.title = "Log x".into();
        for s in &mut log.series {
            for p in &mut s.points {
                p.0 = p.0 * 5.0 + 10.0;
            }
        }
        std::fs::write(
            std::env::temp_dir().join("plot-sample-log.svg"),
            log.to_svg(),
        )
        .unwrap();
    }
}
