//! Reading `secalloc`'s JSON leak reports back, and the allocator's statistics as JSON.
//!
//! The allocator writes its reports itself ([`secalloc::LeakReport::write_json`], or
//! `SECALLOC_REPORT_FORMAT=json` at exit) without a serialisation crate, so that installing it
//! adds no trait implementations to a program's world; parsing lives here, in the runtime
//! crate, which has `serde_json` anyway. The schema is documented in `docs/report-json.md`.
//!
//! ```
//! let text = {
//!     let mut out = Vec::new();
//!     secalloc::report().write_json(&mut out).unwrap();
//!     String::from_utf8(out).unwrap()
//! };
//! let back = secure_core::leak_report::from_json(&text).unwrap();
//! assert_eq!(back.format, "secalloc-report");
//! ```

use secalloc::{Callsite, Frame, LeakKind, LeakReport, LeakSummary, ScopeTotal, Stats};
use serde::Deserialize;

/// A report could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid secalloc report: {0}")]
pub struct ReportParseError(String);

/// Parses a report written by [`LeakReport::write_json`] (format `"secalloc-report"`,
/// version 1). A text report gets a hint to write JSON instead.
///
/// ```
/// let err = secure_core::leak_report::from_json("{\"format\": \"other\"}").unwrap_err();
/// assert!(err.to_string().starts_with("invalid secalloc report: "));
/// ```
pub fn from_json(text: &str) -> Result<LeakReport, ReportParseError> {
    let head: Head = serde_json::from_str(text).map_err(|e| {
        if looks_like_text_report(text) {
            ReportParseError(
                "this is a text report, which cannot be converted; write the report as JSON \
                 with SECALLOC_REPORT_FORMAT=json (or LeakReport::write_json) and convert that"
                    .to_string(),
            )
        } else {
            ReportParseError(e.to_string())
        }
    })?;
    if head.format.as_deref() != Some("secalloc-report") {
        return Err(ReportParseError(format!(
            "not a secalloc report (format is {}, expected \"secalloc-report\")",
            head.format
                .map_or_else(|| "missing".to_string(), |f| format!("{f:?}"))
        )));
    }
    if head.version != Some(1) {
        return Err(ReportParseError(match head.version {
            Some(v) => format!("unsupported report version {v}"),
            None => "the report has no version".to_string(),
        }));
    }
    let r: ReportDe = serde_json::from_str(text).map_err(|e| ReportParseError(e.to_string()))?;
    Ok(r.into())
}

/// A text report (or a program's stderr holding one).
fn looks_like_text_report(text: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with("secalloc: ") || l.starts_with("SUMMARY: secalloc: "))
}

/// A report as a JSON value: the document [`LeakReport::write_json`] writes.
///
/// ```
/// let v = secure_core::leak_report::to_json(&secalloc::report());
/// assert_eq!(v["format"], "secalloc-report");
/// ```
pub fn to_json(r: &LeakReport) -> serde_json::Value {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail, and the writer's output is valid JSON (tested below).
    match r.write_json(&mut out) {
        Ok(()) => serde_json::from_slice(&out)
            .unwrap_or_else(|e| serde_json::json!({ "error": format!("unreadable report: {e}") })),
        Err(e) => serde_json::json!({ "error": format!("cannot write the report: {e}") }),
    }
}

/// [`Stats`] as a JSON object, with the field names of the JSON report's `stats`.
///
/// ```
/// let v = secure_core::leak_report::stats_json(&secalloc::stats());
/// assert!(v["live_bytes"].is_u64());
/// ```
pub fn stats_json(s: &Stats) -> serde_json::Value {
    serde_json::json!({
        "live_bytes": s.live_bytes,
        "live_blocks": s.live_blocks,
        "total_allocated_bytes": s.total_allocated_bytes,
        "total_allocations": s.total_allocations,
        "total_freed_bytes": s.total_freed_bytes,
        "total_frees": s.total_frees,
        "reallocations": s.reallocations,
        "peak_live_bytes": s.peak_live_bytes,
        "wiped_bytes": s.wiped_bytes,
        "unique_stacks": s.unique_stacks,
        "frame_pointers": s.frame_pointers,
        "short_stacks": s.short_stacks,
        "corruptions_detected": s.corruptions_detected,
        "metadata_bytes": s.metadata_bytes,
    })
}

// The document as it is written, field for field; converted into secalloc's public types.

/// The fields that say what the document is, read first.
#[derive(Deserialize)]
struct Head {
    format: Option<String>,
    version: Option<u32>,
}

#[derive(Deserialize)]
struct ReportDe {
    format: String,
    version: u32,
    command: String,
    pid: u32,
    elapsed_us: u64,
    at_exit: bool,
    stacks_recorded: bool,
    total_bytes: u64,
    total_blocks: u64,
    callsites: Vec<CallsiteDe>,
    scopes: Vec<ScopeTotalDe>,
    #[serde(default)]
    leak_check: Option<SummaryDe>,
    #[serde(default)]
    roots_note: Option<String>,
    stats: StatsDe,
}

#[derive(Deserialize)]
struct CallsiteDe {
    bytes: u64,
    blocks: u64,
    largest_block: u64,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    kind: Option<KindDe>,
    frames: Vec<FrameDe>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum KindDe {
    DefinitelyLost,
    IndirectlyLost,
    StillReachable,
}

#[derive(Deserialize)]
struct FrameDe {
    ip: usize,
    function: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    column: Option<u32>,
    #[serde(default)]
    inlined: bool,
}

#[derive(Deserialize)]
struct ScopeTotalDe {
    name: String,
    bytes: u64,
    blocks: u64,
}

#[derive(Deserialize)]
struct SummaryDe {
    definitely_lost_bytes: u64,
    definitely_lost_blocks: u64,
    indirectly_lost_bytes: u64,
    indirectly_lost_blocks: u64,
    still_reachable_bytes: u64,
    still_reachable_blocks: u64,
}

#[derive(Deserialize)]
struct StatsDe {
    live_bytes: u64,
    live_blocks: u64,
    total_allocated_bytes: u64,
    total_allocations: u64,
    total_freed_bytes: u64,
    total_frees: u64,
    reallocations: u64,
    peak_live_bytes: u64,
    wiped_bytes: u64,
    unique_stacks: u64,
    frame_pointers: bool,
    short_stacks: u64,
    corruptions_detected: u64,
    metadata_bytes: u64,
}

impl From<ReportDe> for LeakReport {
    fn from(r: ReportDe) -> LeakReport {
        LeakReport {
            format: r.format,
            version: r.version,
            command: r.command,
            pid: r.pid,
            elapsed_us: r.elapsed_us,
            at_exit: r.at_exit,
            stacks_recorded: r.stacks_recorded,
            total_bytes: r.total_bytes,
            total_blocks: r.total_blocks,
            callsites: r.callsites.into_iter().map(Callsite::from).collect(),
            scopes: r
                .scopes
                .into_iter()
                .map(|s| ScopeTotal {
                    name: s.name,
                    bytes: s.bytes,
                    blocks: s.blocks,
                })
                .collect(),
            leak_check: r.leak_check.map(|s| LeakSummary {
                definitely_lost_bytes: s.definitely_lost_bytes,
                definitely_lost_blocks: s.definitely_lost_blocks,
                indirectly_lost_bytes: s.indirectly_lost_bytes,
                indirectly_lost_blocks: s.indirectly_lost_blocks,
                still_reachable_bytes: s.still_reachable_bytes,
                still_reachable_blocks: s.still_reachable_blocks,
            }),
            roots_note: r.roots_note,
            stats: Stats::from(r.stats),
        }
    }
}

impl From<CallsiteDe> for Callsite {
    fn from(c: CallsiteDe) -> Callsite {
        Callsite {
            bytes: c.bytes,
            blocks: c.blocks,
            largest_block: c.largest_block,
            scopes: c.scopes,
            kind: c.kind.map(|k| match k {
                KindDe::DefinitelyLost => LeakKind::DefinitelyLost,
                KindDe::IndirectlyLost => LeakKind::IndirectlyLost,
                KindDe::StillReachable => LeakKind::StillReachable,
            }),
            frames: c
                .frames
                .into_iter()
                .map(|f| Frame {
                    ip: f.ip,
                    function: f.function.map(Into::into),
                    file: f.file.map(Into::into),
                    line: f.line,
                    column: f.column,
                    inlined: f.inlined,
                })
                .collect(),
        }
    }
}

impl From<StatsDe> for Stats {
    fn from(s: StatsDe) -> Stats {
        Stats {
            live_bytes: s.live_bytes,
            live_blocks: s.live_blocks,
            total_allocated_bytes: s.total_allocated_bytes,
            total_allocations: s.total_allocations,
            total_freed_bytes: s.total_freed_bytes,
            total_frees: s.total_frees,
            reallocations: s.reallocations,
            peak_live_bytes: s.peak_live_bytes,
            wiped_bytes: s.wiped_bytes,
            unique_stacks: s.unique_stacks,
            frame_pointers: s.frame_pointers,
            short_stacks: s.short_stacks,
            corruptions_detected: s.corruptions_detected,
            metadata_bytes: s.metadata_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LeakReport {
        LeakReport {
            format: "secalloc-report".into(),
            version: 1,
            command: "prog \"quoted\" back\\slash\ttab\nnl \u{1} é 😀".into(),
            pid: 42,
            elapsed_us: 7,
            at_exit: true,
            stacks_recorded: true,
            total_bytes: 100,
            total_blocks: 2,
            callsites: vec![Callsite {
                bytes: 60,
                blocks: 1,
                largest_block: 60,
                scopes: vec!["a\"b".into()],
                kind: Some(LeakKind::IndirectlyLost),
                frames: vec![
                    Frame {
                        ip: usize::MAX,
                        function: Some(
                            "<alloc::vec::Vec<T> as core::iter::FromIterator<T>>::from_iter".into(),
                        ),
                        file: Some("src/ma\\in.rs".into()),
                        line: Some(3),
                        column: None,
                        inlined: true,
                    },
                    Frame {
                        ip: 1,
                        function: None,
                        file: None,
                        line: None,
                        column: None,
                        inlined: false,
                    },
                ],
            }],
            scopes: vec![ScopeTotal {
                name: "s".into(),
                bytes: 1,
                blocks: 1,
            }],
            leak_check: Some(LeakSummary {
                definitely_lost_bytes: 1,
                definitely_lost_blocks: 2,
                indirectly_lost_bytes: 3,
                indirectly_lost_blocks: 4,
                still_reachable_bytes: 5,
                still_reachable_blocks: 6,
            }),
            roots_note: Some("inner allocator \"x\": not known".into()),
            stats: Stats {
                live_bytes: u64::MAX,
                frame_pointers: true,
                short_stacks: 9,
                ..Stats::default()
            },
        }
    }

    #[test]
    fn written_reports_parse_back_identical() {
        let r = sample();
        let mut out = Vec::new();
        r.write_json(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(from_json(&text).unwrap(), r);
        // Any JSON reader takes it, and the strings come back exactly.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["command"], r.command.as_str());
        assert_eq!(
            v["callsites"][0]["frames"][1]["function"],
            serde_json::Value::Null
        );
        let mut no_check = r.clone();
        no_check.leak_check = None;
        no_check.roots_note = None;
        no_check.callsites[0].kind = None;
        let mut out = Vec::new();
        no_check.write_json(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("leak_check") && !text.contains("\"kind\""));
        assert_eq!(from_json(&text).unwrap(), no_check);
    }

    #[test]
    fn dhat_output_is_valid_json() {
        let mut out = Vec::new();
        sample().write_dhat(&mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["dhatFileVersion"], 2);
        assert_eq!(v["tu"], "µs");
        assert_eq!(v["cmd"], sample().command.as_str());
        assert_eq!(v["pps"][0]["tb"], 60);
    }

    #[test]
    fn text_reports_get_a_hint() {
        let mut out = Vec::new();
        sample().write_text(&mut out).unwrap();
        let err = from_json(&String::from_utf8(out).unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid secalloc report: this is a text report, which cannot be converted; write the \
             report as JSON with SECALLOC_REPORT_FORMAT=json (or LeakReport::write_json) and \
             convert that"
        );
    }

    #[test]
    fn bad_documents_are_errors() {
        assert!(from_json("").is_err());
        assert_eq!(
            from_json("{\"format\": \"other\"}").unwrap_err().to_string(),
            "invalid secalloc report: not a secalloc report (format is \"other\", expected \"secalloc-report\")"
        );
        assert!(from_json("[1, 2]").is_err());
        let mut out = Vec::new();
        sample().write_json(&mut out).unwrap();
        let text = String::from_utf8(out)
            .unwrap()
            .replace("\"version\": 1", "\"version\": 2");
        assert_eq!(
            from_json(&text).unwrap_err().to_string(),
            "invalid secalloc report: unsupported report version 2"
        );
    }
}
