//! `secure audit verify|report`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use secure_core::audit::{self, Report};

use crate::{CmdResult, EXIT_FAILED, EXIT_OK};

const VERIFY_HELP: &str = "\
Recomputes every record's hash and checks the chain, including rotated segments
(LOG.1, LOG.2, ...). With an anchor (record count and head hash written at each flush) a
removed tail is detected too; without --anchor, LOG.anchor is used when it exists
(--no-anchor skips it). Prints one line: `LOG: intact: N records verified`, or what is
wrong (record N modified, records missing, out of order, truncated, unanchored tail,
malformed line).

Exit status:
  0  the log is intact
  1  the log is not intact (the verdict says how)
  2  the log or anchor could not be read, or the anchor is malformed; bad arguments";

const REPORT_HELP: &str = "\
Counts the events of a JSON Lines audit log by severity and kind and lists the most recent
error and critical events. This does not check the hash chain (use `secure audit verify`).

Exit status:
  0  the report was printed
  2  the log could not be read; bad arguments";

/// `secure audit ...`
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Verify an audit log's hash chain (and its anchor)
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
    /// Summarize an audit log
    #[command(after_help = REPORT_HELP)]
    Report(ReportArgs),
}

/// Arguments of `secure audit verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The audit log (JSON Lines)
    #[arg(value_name = "LOG")]
    log: PathBuf,
    /// The anchor file (default: LOG.anchor when it exists)
    #[arg(long, value_name = "FILE", conflicts_with = "no_anchor")]
    anchor: Option<PathBuf>,
    /// Verify the chain alone, without an anchor
    #[arg(long)]
    no_anchor: bool,
}

/// Arguments of `secure audit report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The audit log (JSON Lines)
    #[arg(value_name = "LOG")]
    log: PathBuf,
    /// How many recent error/critical events to list
    #[arg(long, value_name = "N", default_value_t = 10)]
    recent: usize,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// Runs a `secure audit` command.
pub fn run(cmd: AuditCommand) -> CmdResult {
    match cmd {
        AuditCommand::Verify(a) => verify(a),
        AuditCommand::Report(a) => report(a),
    }
}

fn verify(a: VerifyArgs) -> CmdResult {
    let anchor = match (&a.anchor, a.no_anchor) {
        (Some(p), _) => Some(p.clone()),
        (None, true) => None,
        (None, false) => {
            let default = audit::default_anchor_path(&a.log);
            default.exists().then_some(default)
        }
    };
    let verdict = audit::verify(&a.log, anchor.as_deref()).map_err(|e| e.to_string())?;
    if anchor.is_none() {
        eprintln!(
            "secure: note: verified without an anchor: records removed from the end of the log \
             cannot be detected"
        );
    }
    if verdict.is_intact() {
        println!("{}: {verdict}", a.log.display());
        Ok(EXIT_OK)
    } else {
        println!("{}: NOT INTACT: {verdict}", a.log.display());
        Ok(EXIT_FAILED)
    }
}

fn report(a: ReportArgs) -> CmdResult {
    let r = Report::from_log(&a.log, a.recent).map_err(|e| e.to_string())?;
    if a.json {
        let text = serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", render(&a.log.display().to_string(), &r));
    }
    Ok(EXIT_OK)
}

fn render(name: &str, r: &Report) -> String {
    let mut s = format!("audit log {name}: {} event(s)\n", r.total_events);
    if r.malformed_lines > 0 {
        s.push_str(&format!(
            "  {} line(s) are not events (run `secure audit verify`)\n",
            r.malformed_lines
        ));
    }
    s.push_str("by severity:\n");
    for sev in audit::Severity::ALL.iter().rev() {
        let n = r.by_severity.get(sev.as_str()).copied().unwrap_or(0);
        s.push_str(&format!("  {:<10} {n}\n", sev.as_str()));
    }
    let kinds: Vec<_> = r.by_kind.iter().filter(|(_, n)| **n > 0).collect();
    if !kinds.is_empty() {
        s.push_str("by kind:\n");
        for (k, n) in kinds {
            s.push_str(&format!("  {k:<24} {n}\n"));
        }
    }
    if !r.recent_critical.is_empty() {
        s.push_str("recent error and critical events (oldest first):\n");
        for e in &r.recent_critical {
            s.push_str(&format!(
                "  #{} {} {} {} {}: {}\n",
                e.seq, e.timestamp, e.severity, e.kind, e.operation, e.message
            ));
            for (k, v) in &e.fields {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                s.push_str(&format!("      {k} = {v}\n"));
            }
        }
    }
    s
}
