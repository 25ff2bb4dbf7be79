//! The self-contained HTML report: summary, two flame graphs, the sortable top table.
//!
//! Nothing is fetched: the CSS and the sorting script are inline, and each flame graph is
//! inferno's SVG (with its own zoom and search script) in an `<iframe srcdoc>`, so that the
//! two graphs' element ids and scripts do not collide. The page is also well-formed XML (the
//! tests parse it as such).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write;

use super::text::{one_decimal, percent};
use super::{HeapProfile, Metric, ProfileError};

/// The width the flame graphs are drawn at, in pixels (the page scales them to fit).
const FLAME_WIDTH: usize = 1200;

/// How many of the top program points by each metric the table lists.
pub(super) const ROWS_PER_METRIC: usize = 50;

/// `s` with `&`, `<`, `>`, `"` and `'` written as character references, for text and
/// attribute values alike.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; }
th, td { padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
table.summary th { font-weight: 600; }
table.top { width: 100%; }
table.top th { background: #eee; border-bottom: 1px solid #aaa; white-space: nowrap; }
table.top th.sortable { cursor: pointer; }
table.top th.sorted::after { content: ' \\25BC'; }
table.top td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.top tr:nth-child(even) td { background: #f7f7f7; }
td.stack { font-family: ui-monospace, monospace; font-size: 0.85em; word-break: break-all; }
td.stack ol { margin: 0.3em 0; padding-left: 2em; }
p.note { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5em 0.8em; }
iframe.flame { width: 100%; border: 1px solid #ccc; }
";

/// Sorts the top table by the clicked column (largest first), keeping file rank on ties.
const SORT_SCRIPT: &str = "
(function () {
  var table = document.getElementById('top');
  if (!table) return;
  var heads = table.tHead.rows[0].cells;
  function sortBy(col) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var d = Number(b.cells[col].getAttribute('data-v')) - Number(a.cells[col].getAttribute('data-v'));
      return d !== 0 ? d : Number(a.getAttribute('data-i')) - Number(b.getAttribute('data-i'));
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var j = 0; j < heads.length; j++) heads[j].classList.toggle('sorted', j === col);
  }
  for (var i = 0; i < heads.length; i++) {
    if (heads[i].classList.contains('sortable')) heads[i].addEventListener('click', sortBy.bind(null, i));
  }
})();
";

pub(super) fn write(p: &HeapProfile, w: &mut dyn Write) -> Result<(), ProfileError> {
    let mut h = String::new();
    let title = format!("Heap profile of {}", p.command);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    let _ = writeln!(h, "<title>{}</title>", escape(&title));
    let _ = writeln!(h, "<style>/*<![CDATA[*/{STYLE}/*]]>*/</style>");
    h.push_str("</head>\n<body>\n");
    let _ = writeln!(h, "<h1>{}</h1>", escape(&title));
    summary(p, &mut h);
    if !p.has_lifetimes {
        h.push_str(
            "<p class=\"note\">This profile has no block lifetimes (<code>bklt: false</code>): \
             it holds total bytes and blocks per program point only, so there is nothing here \
             about the global peak, the end, maximum live bytes or lifetimes. (secalloc's \
             leak-report DHAT output, <code>SECALLOC_REPORT_FORMAT=dhat</code>, is such a file, \
             and its totals are the bytes live at exit.) Record a full profile with dhat-rs or \
             with <code>SECALLOC_PROFILE=1</code>.</p>\n",
        );
    }

    h.push_str("<h2>Live at the global peak (t-gmax)</h2>\n");
    if p.has_lifetimes {
        flame(
            p,
            Metric::PeakBytes,
            "Bytes live at the global peak (t-gmax)",
            &mut h,
        )?;
    } else {
        h.push_str("<p>Not available: the profile has no block lifetimes.</p>\n");
    }
    h.push_str("<h2>Total bytes allocated</h2>\n");
    flame(p, Metric::TotalBytes, "Total bytes allocated", &mut h)?;

    h.push_str("<h2>Top program points</h2>\n");
    top_table(p, &mut h);
    let _ = writeln!(h, "<script>//<![CDATA[{SORT_SCRIPT}//]]></script>");
    h.push_str("</body>\n</html>\n");
    w.write_all(h.as_bytes()).map_err(ProfileError::Write)
}

fn summary(p: &HeapProfile, h: &mut String) {
    let row = |h: &mut String, k: &str, v: &str| {
        let _ = writeln!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
    };
    let amount = |(bytes, blocks): (u64, u64)| {
        escape(&format!(
            "{bytes} {} in {blocks} {}",
            p.bytes_unit, p.blocks_unit
        ))
    };
    h.push_str("<table class=\"summary\">\n");
    row(
        h,
        "Program",
        &format!("<code>{}</code>", escape(&p.command)),
    );
    row(h, "Process id", &p.pid.to_string());
    row(
        h,
        "Mode",
        &escape(&format!(
            "{} ({}), {}",
            p.mode,
            p.verb,
            if p.has_lifetimes {
                "with block lifetimes"
            } else {
                "without block lifetimes"
            }
        )),
    );
    row(h, "Total", &amount(p.total()));
    if let (Some(peak), Some(tg)) = (p.at_peak(), p.peak_time) {
        row(
            h,
            "At t-gmax",
            &format!(
                "{} (at {})",
                amount(peak),
                escape(&format!("{tg} {}", p.time_unit))
            ),
        );
    }
    if let Some(end) = p.at_end() {
        row(
            h,
            "At t-end",
            &format!(
                "{} (at {})",
                amount(end),
                escape(&format!("{} {}", p.end_time, p.time_unit))
            ),
        );
    } else {
        row(
            h,
            "Ended at",
            &escape(&format!("{} {}", p.end_time, p.time_unit)),
        );
    }
    let mut units = format!("{} (larger unit: {})", p.time_unit, p.long_time_unit);
    if let Some(t) = p.short_lived_threshold {
        let _ = write!(units, "; short-lived: under {t} {}", p.time_unit);
    }
    row(h, "Time unit", &escape(&units));
    row(
        h,
        "Program points",
        &format!(
            "{} ({} distinct frames)",
            p.points.len(),
            p.frame_table.len().saturating_sub(1)
        ),
    );
    h.push_str("</table>\n");
}

/// An inferno flame graph of `metric`, or a line saying there is nothing to draw.
fn flame(p: &HeapProfile, metric: Metric, title: &str, h: &mut String) -> Result<(), ProfileError> {
    if p.metric_total(metric)? == 0 {
        let _ = writeln!(
            h,
            "<p>Nothing to draw: no program point has any {}.</p>",
            escape(metric.description())
        );
        return Ok(());
    }
    // Drawn at a fixed width and scaled to the frame by its viewBox. A fluid graph (inferno's
    // default) sizes itself from `svg.width.baseVal`, which for an `<svg>` inside an HTML
    // document is 0 in Chromium: the script then sets a negative width (a console error in
    // the browser check, scripts/browser-check.js) and truncates labels to nothing.
    let mut svg = Vec::new();
    p.write_flamegraph_sized(metric, title, Some(FLAME_WIDTH), &mut svg)?;
    let svg = String::from_utf8_lossy(&svg);
    // The XML declaration and the SVG doctype are for a standalone file; in the frame's HTML
    // document the `<svg>` element stands alone.
    let svg = svg.find("<svg").map_or(&svg[..], |i| &svg[i..]);
    let height = svg_height(svg).unwrap_or(400);
    // The graph's script records its zoom and search in the page's URL with
    // `history.replaceState`, which an `about:srcdoc` document may not do (it throws, and the
    // search stops half-way): the frame makes it a no-op. The graph's `onload="init(evt)"`
    // names its event `evt`, as SVG documents do; a global `evt` keeps that call working
    // where an HTML document names it `event`.
    let doc = format!(
        "<!DOCTYPE html><html><head><style>html, body {{ margin: 0; }} \
         svg {{ display: block; width: 100%; }}</style>\
         <script>var evt; history.replaceState = function () {{}};</script></head>\
         <body>{svg}</body></html>"
    );
    let _ = writeln!(
        h,
        "<iframe class=\"flame\" title=\"{}\" style=\"height: {}px\" srcdoc=\"{}\"></iframe>",
        escape(title),
        height + 4,
        escape(&doc)
    );
    Ok(())
}

/// The `height` attribute of the `<svg>` start tag.
fn svg_height(svg: &str) -> Option<usize> {
    let tag = &svg[..svg.find('>')?];
    let at = tag.find(" height=\"")? + " height=\"".len();
    let rest = &tag[at..];
    rest[..rest.find('"')?].parse().ok()
}

fn top_table(p: &HeapProfile, h: &mut String) {
    let metrics: Vec<Metric> = Metric::ALL
        .into_iter()
        .filter(|m| p.has_lifetimes || !m.needs_lifetimes())
        .collect();
    // The rows: the top points by each metric, listed by total bytes first.
    let mut rows: BTreeSet<usize> = BTreeSet::new();
    for &m in &metrics {
        if let Ok(r) = p.ranked(m) {
            rows.extend(r.into_iter().take(ROWS_PER_METRIC));
        }
    }
    let mut rows: Vec<usize> = rows.into_iter().collect();
    rows.sort_by_key(|&i| (std::cmp::Reverse(p.points[i].total_bytes), i));
    let _ = writeln!(
        h,
        "<p>{} of {} program points: the top {ROWS_PER_METRIC} by each of {}. Click a column \
         heading to sort by it.</p>",
        rows.len(),
        p.points.len(),
        escape(
            &metrics
                .iter()
                .map(|m| m.description())
                .collect::<Vec<_>>()
                .join(", ")
        )
    );
    if rows.is_empty() {
        return;
    }
    let totals: Vec<u64> = metrics
        .iter()
        .map(|&m| p.metric_total(m).unwrap_or(0))
        .collect();
    h.push_str("<table id=\"top\" class=\"top\">\n<thead><tr>");
    for (k, m) in metrics.iter().enumerate() {
        let _ = write!(
            h,
            "<th class=\"sortable{}\" title=\"{}\">{}</th>",
            if k == 0 { " sorted" } else { "" },
            escape(&format!("sort by {}", m.description())),
            escape(heading(*m))
        );
    }
    if p.has_lifetimes {
        let _ = write!(
            h,
            "<th class=\"sortable\" title=\"sort by average lifetime\">avg lifetime ({})</th>",
            escape(&p.time_unit)
        );
    }
    h.push_str("<th>allocated at</th></tr></thead>\n<tbody>\n");
    for (rank, &i) in rows.iter().enumerate() {
        let pp = &p.points[i];
        let _ = write!(h, "<tr data-i=\"{rank}\">");
        for (k, &m) in metrics.iter().enumerate() {
            let v = m.of(pp).unwrap_or(0);
            let _ = write!(
                h,
                "<td class=\"num\" data-v=\"{v}\" title=\"{} of {}\">{v}</td>",
                percent(v, totals[k]),
                totals[k]
            );
        }
        if p.has_lifetimes {
            let avg = p.average_lifetime(pp).unwrap_or(0.0);
            let _ = write!(
                h,
                "<td class=\"num\" data-v=\"{avg}\">{}</td>",
                one_decimal(avg)
            );
        }
        let _ = write!(
            h,
            "<td class=\"stack\"><details><summary>{}</summary><ol>",
            escape(p.allocation_site(pp))
        );
        for &f in &pp.frames {
            let _ = write!(h, "<li>{}</li>", escape(p.frame(f)));
        }
        h.push_str("</ol></details></td></tr>\n");
    }
    h.push_str("</tbody>\n</table>\n");
}

/// A column heading.
fn heading(m: Metric) -> &'static str {
    match m {
        Metric::TotalBytes => "total bytes",
        Metric::TotalBlocks => "total blocks",
        Metric::PeakBytes => "bytes at t-gmax",
        Metric::EndBytes => "bytes at t-end",
        Metric::MaxBytes => "max live bytes",
    }
}
