//! `secure audit verify|report`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use secure_core::audit::{self, AuditKey, Report};

use crate::{CmdResult, EXIT_FAILED, EXIT_OK};

const VERIFY_HELP: &str = "\
Recomputes every record's hash and checks the chain, including rotated segments
(LOG.1, LOG.2, ...). With an anchor (record count and head hash written at each flush) a
removed tail is detected too; without --anchor, LOG.anchor is used when it exists
(--no-anchor skips it).

With --key (the log's initial key, epoch 0, kept off the writer's machine) every record's
MAC is checked under its epoch's key, and every epoch's seal: this catches a log rewritten
with all its hashes and its anchor recomputed, replayed or removed epochs, and a tail cut
after the last seal. --writer-key (the writer's current key file, which it rewrites at each
epoch and which cannot be moved back) also catches a log cut at an epoch boundary.

Prints one line: `LOG: intact: N records verified (unkeyed ...)`, `LOG: authentic: ...`, or
what is wrong (MAC invalid, hash chain broken, records missing, out of order, epochs missing
or replayed, truncated, unanchored or unsealed tail, malformed line).

Exit status:
  0  the log is intact (authentic, with --key)
  1  the log is not intact (the verdict says how)
  2  the log, anchor or key could not be read, or is malformed; bad arguments";

const KEYGEN_HELP: &str = "\
Writes a new random audit key (64 hex digits) to FILE, readable by its owner only; FILE must
not exist. Copy it off the machine before a logger uses it (AuditConfig::with_key_file): the
logger rewrites the file with each new epoch's key, and verifying needs the initial one.

Exit status:
  0  the key was written
  2  the file exists or cannot be written";

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
    /// Make a new key for a keyed audit log
    #[command(after_help = KEYGEN_HELP)]
    Keygen(KeygenArgs),
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
    /// The log's initial key file (epoch 0): check every record's MAC and every epoch seal
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The writer's current key file: also detect epochs cut from the end (needs --key)
    #[arg(long, value_name = "FILE", requires = "key")]
    writer_key: Option<PathBuf>,
}

/// Arguments of `secure audit keygen`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the key (must not exist)
    #[arg(value_name = "FILE")]
    file: PathBuf,
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
        AuditCommand::Keygen(a) => keygen(a),
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
    let verdict = match &a.key {
        Some(key) => {
            let key = AuditKey::from_file(key).map_err(|e| e.to_string())?;
            let writer = a
                .writer_key
                .as_ref()
                .map(AuditKey::from_file)
                .transpose()
                .map_err(|e| e.to_string())?;
            audit::verify_keyed(&a.log, anchor.as_deref(), &key, writer.as_ref())
        }
        None => audit::verify(&a.log, anchor.as_deref()),
    }
    .map_err(|e| e.to_string())?;
    if anchor.is_none() {
        eprintln!(
            "secure: note: verified without an anchor: records removed from the end of the log \
             cannot be detected"
        );
    }
    if verdict.is_intact() {
        let note = match (&verdict, a.key.is_some(), audit::is_keyed_log(&a.log)) {
            (audit::Verdict::Intact { .. }, false, Ok(true)) => {
                " (keyed log: MACs not checked; pass --key to check them)"
            }
            (audit::Verdict::Intact { .. }, false, _) => {
                " (unkeyed: hashes only; anyone with write access could have rewritten them)"
            }
            _ => "",
        };
        println!("{}: {verdict}{note}", a.log.display());
        Ok(EXIT_OK)
    } else {
        println!("{}: NOT INTACT: {verdict}", a.log.display());
        Ok(EXIT_FAILED)
    }
}

fn keygen(a: KeygenArgs) -> CmdResult {
    let key = AuditKey::generate().map_err(|e| e.to_string())?;
    key.create_file(&a.file).map_err(|e| e.to_string())?;
    println!(
        "{}: new audit key written; copy it off this machine before a logger uses it (the \
         logger rewrites it at each epoch, and `secure audit verify --key` needs this initial \
         key)",
        a.file.display()
    );
    Ok(EXIT_OK)
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
