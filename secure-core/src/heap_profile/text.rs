//! The text views: the header summary and the top program points (`secure report top`).

use std::io::Write;

use super::{HeapProfile, Metric, ProfileError};
use crate::sanitize::{sanitize_str, SanitizePolicy};

pub(super) fn write_top(
    p: &HeapProfile,
    metric: Metric,
    n: usize,
    w: &mut dyn Write,
) -> Result<(), ProfileError> {
    let ranked = p.ranked(metric)?;
    // Strings from the file (command line, frames) go to a terminal: control characters and
    // bidi overrides are written as visible escapes, nothing is cut.
    let policy = SanitizePolicy::default().with_max_string_len(usize::MAX);
    let mut out = String::new();
    summary(p, &policy, &mut out);
    out.push('\n');
    let total = p.metric_total(metric)?;
    let unit = unit_of(p, metric);
    if ranked.is_empty() {
        out.push_str(&format!(
            "no program point of {} has any {}\n",
            p.points.len(),
            metric.description()
        ));
    } else {
        let shown = ranked.len().min(n);
        out.push_str(&format!(
            "top {shown} of {} program points by {}:\n",
            p.points.len(),
            metric.description()
        ));
        for (rank, &i) in ranked.iter().take(n).enumerate() {
            let pp = &p.points[i];
            let v = metric.of(pp).unwrap_or(0);
            out.push_str(&format!(
                "\n#{}: {v} {unit} ({} of {total})\n",
                rank + 1,
                percent(v, total)
            ));
            out.push_str(&format!(
                "    total:     {} {} in {} {}",
                pp.total_bytes, p.bytes_unit, pp.total_blocks, p.blocks_unit
            ));
            if let Some(avg) = p.average_lifetime(pp) {
                out.push_str(&format!(
                    ", average lifetime {} {}",
                    one_decimal(avg),
                    p.time_unit
                ));
            }
            out.push('\n');
            if let Some(l) = pp.lifetimes {
                for (label, bytes, blocks) in [
                    ("max live: ", l.max_bytes, l.max_blocks),
                    ("at t-gmax:", l.peak_bytes, l.peak_blocks),
                    ("at t-end: ", l.end_bytes, l.end_blocks),
                ] {
                    out.push_str(&format!(
                        "    {label} {bytes} {} in {blocks} {}\n",
                        p.bytes_unit, p.blocks_unit
                    ));
                }
            }
            if pp.frames.is_empty() {
                out.push_str("    (no frames)\n");
            }
            for &f in &pp.frames {
                out.push_str(&format!("    {}\n", sanitize_str(p.frame(f), &policy)));
            }
        }
    }
    w.write_all(out.as_bytes()).map_err(ProfileError::Write)
}

/// The header lines: program, totals, peak and end.
fn summary(p: &HeapProfile, policy: &SanitizePolicy, out: &mut String) {
    out.push_str(&format!(
        "heap profile of \"{}\" (pid {}, mode {}, {})\n",
        sanitize_str(&p.command, policy),
        p.pid,
        sanitize_str(&p.mode, policy),
        if p.has_lifetimes {
            "with block lifetimes"
        } else {
            "without block lifetimes: totals only"
        }
    ));
    let (tb, tbk) = p.total();
    out.push_str(&format!(
        "total:     {tb} {} in {tbk} {}\n",
        p.bytes_unit, p.blocks_unit
    ));
    if let (Some((gb, gbk)), Some(tg)) = (p.at_peak(), p.peak_time) {
        out.push_str(&format!(
            "at t-gmax: {gb} {} in {gbk} {} (at {tg} {})\n",
            p.bytes_unit, p.blocks_unit, p.time_unit
        ));
    }
    if let Some((eb, ebk)) = p.at_end() {
        out.push_str(&format!(
            "at t-end:  {eb} {} in {ebk} {} (at {} {})\n",
            p.bytes_unit, p.blocks_unit, p.end_time, p.time_unit
        ));
    }
}

/// The unit a metric counts in, from the file's units.
pub(super) fn unit_of(p: &HeapProfile, metric: Metric) -> &str {
    if metric == Metric::TotalBlocks {
        &p.blocks_unit
    } else {
        &p.bytes_unit
    }
}

/// `v` as a share of `total`: `45.5%` (`-` when the total is 0).
pub(super) fn percent(v: u64, total: u64) -> String {
    if total == 0 {
        "-".to_string()
    } else {
        format!("{}%", one_decimal(v as f64 * 100.0 / total as f64))
    }
}

/// One decimal, without a trailing `.0`: `12.5`, `3`.
pub(super) fn one_decimal(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}
