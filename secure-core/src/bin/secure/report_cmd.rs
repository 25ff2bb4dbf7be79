//! `secure report convert`: turn a secalloc JSON leak report into another format.
//! `secure report html|top|folded`: show a DHAT heap profile.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use secalloc::ReportFormat;
use secure_core::heap_profile::{HeapProfile, Metric, ProfileError};

use crate::{CmdResult, EXIT_OK};

const CONVERT_HELP: &str = "\
Reads a leak report written with SECALLOC_REPORT_FORMAT=json (or LeakReport::write_json)
and writes it as text (LeakSanitizer style), DHAT JSON (for Valgrind's dh_view.html),
folded stacks (for flame graph tools) or an SVG flame graph of the listed bytes by stack.

Exit status:
  0  the report was converted
  2  the input could not be read or is not a secalloc JSON report, the output could not be
     written, or bad arguments";

const PROFILE_HELP: &str = "\
Reads a DHAT heap profile (dhatFileVersion 2): dhat-heap.json from dhat-rs, a profile
written by secalloc (SECALLOC_PROFILE=1, or SECALLOC_REPORT_FORMAT=dhat for live bytes
only), or Valgrind's DHAT. Metrics (--by): total (total bytes), blocks (total blocks),
peak (bytes live at the global peak, t-gmax), end (bytes live at the end, t-end), max
(maximum live bytes). All but total and blocks need a profile with block lifetimes
(bklt: true).

Exit status:
  0  the view was written
  2  the input could not be read or is not a valid DHAT file, the metric needs block
     lifetimes the profile lacks, the output could not be written, or bad arguments";

/// `secure report ...`
#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// Convert a JSON leak report to text, DHAT, folded stacks or an SVG flame graph
    #[command(after_help = CONVERT_HELP)]
    Convert(ConvertArgs),
    /// Write a self-contained HTML report of a DHAT heap profile (flame graphs, top table)
    #[command(after_help = PROFILE_HELP)]
    Html(HtmlArgs),
    /// List the program points of a DHAT heap profile with the largest figures
    #[command(after_help = PROFILE_HELP)]
    Top(TopArgs),
    /// Write folded stacks of a DHAT heap profile, weighed by a metric
    #[command(after_help = PROFILE_HELP)]
    Folded(FoldedArgs),
}

/// The metrics of `--by`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// total bytes allocated
    Total,
    /// total blocks allocated
    Blocks,
    /// bytes live at the global peak (t-gmax)
    Peak,
    /// bytes live at the end (t-end)
    End,
    /// maximum live bytes
    Max,
}

impl From<By> for Metric {
    fn from(b: By) -> Metric {
        match b {
            By::Total => Metric::TotalBytes,
            By::Blocks => Metric::TotalBlocks,
            By::Peak => Metric::PeakBytes,
            By::End => Metric::EndBytes,
            By::Max => Metric::MaxBytes,
        }
    }
}

/// Arguments of `secure report html`.
#[derive(Args, Debug)]
pub struct HtmlArgs {
    /// The DHAT file
    #[arg(value_name = "DHAT.json")]
    input: PathBuf,
    /// Write here instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Arguments of `secure report top`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// The DHAT file
    #[arg(value_name = "DHAT.json")]
    input: PathBuf,
    /// Rank by this metric
    #[arg(long, value_enum, default_value = "total")]
    by: By,
    /// List this many program points
    #[arg(short = 'n', long = "count", value_name = "N", default_value_t = 10)]
    count: usize,
    /// Write here instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Arguments of `secure report folded`.
#[derive(Args, Debug)]
pub struct FoldedArgs {
    /// The DHAT file
    #[arg(value_name = "DHAT.json")]
    input: PathBuf,
    /// Weigh stacks by this metric
    #[arg(long, value_enum, default_value = "total")]
    by: By,
    /// Write here instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Output formats of `secure report convert`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum To {
    /// LeakSanitizer-style text
    Text,
    /// DHAT JSON (dh_view.html)
    Dhat,
    /// folded stacks, one line per stack
    Folded,
    /// SVG flame graph
    Svg,
    /// the JSON report again (normalised)
    Json,
}

/// Arguments of `secure report convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The JSON report
    #[arg(value_name = "REPORT.json")]
    input: PathBuf,
    /// Output format
    #[arg(long, value_enum)]
    to: To,
    /// Write here instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(cmd: ReportCommand) -> CmdResult {
    match cmd {
        ReportCommand::Convert(a) => convert(a),
        ReportCommand::Html(a) => {
            profile_view(&a.input, a.output.as_deref(), |p, out| p.write_html(out))
        }
        ReportCommand::Top(a) => profile_view(&a.input, a.output.as_deref(), |p, out| {
            p.write_top(a.by.into(), a.count, out)
        }),
        ReportCommand::Folded(a) => profile_view(&a.input, a.output.as_deref(), |p, out| {
            for line in p.folded(a.by.into())? {
                writeln!(out, "{line}").map_err(ProfileError::Write)?;
            }
            Ok(())
        }),
    }
}

/// Reads the DHAT file at `input`, renders a view of it, and writes that to `output` or
/// standard output (nothing is written when the view fails).
fn profile_view(
    input: &std::path::Path,
    output: Option<&std::path::Path>,
    view: impl FnOnce(&HeapProfile, &mut Vec<u8>) -> Result<(), ProfileError>,
) -> CmdResult {
    let profile = HeapProfile::read(input).map_err(|e| match e {
        ProfileError::Read { .. } => e.to_string(),
        e => format!("{}: {e}", input.display()),
    })?;
    let mut out: Vec<u8> = Vec::new();
    view(&profile, &mut out).map_err(|e| format!("{}: {e}", input.display()))?;
    write_output(output, &out)?;
    Ok(EXIT_OK)
}

/// Writes `bytes` to the file `output`, or to standard output.
fn write_output(output: Option<&std::path::Path>, bytes: &[u8]) -> Result<(), String> {
    match output {
        Some(p) => {
            std::fs::write(p, bytes).map_err(|e| format!("cannot write {}: {e}", p.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(bytes)
                .and_then(|_| stdout.flush())
                .map_err(|e| format!("cannot write to standard output: {e}"))
        }
    }
}

fn convert(a: ConvertArgs) -> CmdResult {
    let text = secure_core::input::read_regular_text(
        &a.input,
        secure_core::input::MAX_REPORT_BYTES,
        "a leak report",
    )
    .map_err(|e| format!("cannot read {}: {e}", a.input.display()))?;
    let report = secure_core::leak_report::from_json(&text)
        .map_err(|e| format!("{}: {e}", a.input.display()))?;
    let mut out: Vec<u8> = Vec::new();
    let written = match a.to {
        To::Text => report.write(ReportFormat::Text, usize::MAX, &mut out),
        To::Dhat => report.write(ReportFormat::Dhat, usize::MAX, &mut out),
        To::Folded => report.write(ReportFormat::Folded, usize::MAX, &mut out),
        To::Json => report.write(ReportFormat::Json, usize::MAX, &mut out),
        To::Svg => report.write_flamegraph(&mut out),
    };
    written.map_err(|e| format!("cannot convert {}: {e}", a.input.display()))?;
    write_output(a.output.as_deref(), &out)?;
    Ok(EXIT_OK)
}
