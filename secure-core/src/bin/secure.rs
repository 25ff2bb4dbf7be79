//! The `secure` command-line tool: SHA-256 manifests, the integrity lockout, audit logs,
//! leak-report conversion, heap-profile views.
//!
//! Run `secure --help` (and `secure <command> --help`) for usage and exit statuses.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The subcommands live in `src/bin/secure/` (a binary's crate root looks for modules beside
// itself, hence the explicit paths).
#[path = "secure/audit_cmd.rs"]
mod audit_cmd;
#[path = "secure/integrity_cmd.rs"]
mod integrity_cmd;
#[path = "secure/manifest_cmd.rs"]
mod manifest_cmd;
#[path = "secure/progress.rs"]
mod progress;
#[path = "secure/report_cmd.rs"]
mod report_cmd;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: the check ran and found a problem (a file failed, a log is not intact, a
/// lockout is in place, there was nothing to unlock).
pub const EXIT_FAILED: u8 = 1;
/// Exit status: the command could not run (bad arguments, unreadable or malformed input,
/// output not writable). Also what clap uses for usage errors.
pub const EXIT_ERROR: u8 = 2;

const EXIT_CODES_HELP: &str = "\
Exit status:
  0  success: everything verified / the command did what it says
  1  a check failed: a file is missing, unreadable or changed, an unlisted file was found
     (--strict), an audit log is not intact, a lockout is in place (integrity status), or
     there was no lockout to clear (integrity unlock)
  2  the command could not run: bad arguments, a malformed or unreadable manifest or log,
     an output that cannot be written

Programs guarded by secure_core::integrity::IntegrityLock exit with 86 on an integrity
violation and 87 when a lockout marker blocks their start; `secure integrity unlock` clears it.";

/// Integrity and audit tooling for programs built on secure-core.
#[derive(Parser, Debug)]
#[command(name = "secure", version, after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create and verify SHA-256 manifests (GNU `sha256sum` format)
    #[command(subcommand)]
    Manifest(manifest_cmd::ManifestCommand),
    /// Inspect and clear the integrity lockout marker
    #[command(subcommand)]
    Integrity(integrity_cmd::IntegrityCommand),
    /// Verify and summarize tamper-evident audit logs
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Convert secalloc leak reports (JSON); show DHAT heap profiles (HTML, top, folded)
    #[command(subcommand)]
    Report(report_cmd::ReportCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Manifest(c) => manifest_cmd::run(c),
        Command::Integrity(c) => integrity_cmd::run(c),
        Command::Audit(c) => audit_cmd::run(c),
        Command::Report(c) => report_cmd::run(c),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            eprintln!("secure: {msg}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// A command's result: an exit status, or an error message (exit status 2).
pub type CmdResult = Result<u8, String>;
