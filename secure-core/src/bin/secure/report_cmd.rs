//! `secure report convert`: turn a secalloc JSON leak report into another format.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use secalloc::ReportFormat;

use crate::{CmdResult, EXIT_OK};

const CONVERT_HELP: &str = "\
Reads a leak report written with SECALLOC_REPORT_FORMAT=json (or LeakReport::write_json)
and writes it as text (LeakSanitizer style), DHAT JSON (for Valgrind's dh_view.html),
folded stacks (for flame graph tools) or an SVG flame graph of the listed bytes by stack.

Exit status:
  0  the report was converted
  2  the input could not be read or is not a secalloc JSON report, the output could not be
     written, or bad arguments";

/// `secure report ...`
#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// Convert a JSON leak report to text, DHAT, folded stacks or an SVG flame graph
    #[command(after_help = CONVERT_HELP)]
    Convert(ConvertArgs),
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
    match &a.output {
        Some(p) => {
            std::fs::write(p, &out).map_err(|e| format!("cannot write {}: {e}", p.display()))?
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&out)
                .and_then(|_| stdout.flush())
                .map_err(|e| format!("cannot write to standard output: {e}"))?;
        }
    }
    Ok(EXIT_OK)
}
