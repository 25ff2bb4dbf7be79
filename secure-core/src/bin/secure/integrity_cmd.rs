//! `secure integrity unlock|status`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use secure_core::integrity::{self, Lockout};

use crate::{CmdResult, EXIT_FAILED, EXIT_OK};

const UNLOCK_HELP: &str = "\
A program guarded by secure_core's IntegrityLock that detects tampering writes a lockout
marker (by default `<manifest>.lockout`) recording what failed, and refuses to start again
(exit status 87) while it exists. Investigate, restore the files (or re-create the
manifest), then clear the marker with this command. What the marker recorded is printed to
standard output first, so it can be kept.

Exit status:
  0  the marker was cleared
  1  there was no marker at that path
  2  the marker could not be read or removed, bad arguments";

const STATUS_HELP: &str = "\
Exit status:
  0  no lockout marker: the program may start
  1  a lockout marker exists (its records are printed)
  2  the marker could not be read, bad arguments";

/// `secure integrity ...`
#[derive(Subcommand, Debug)]
pub enum IntegrityCommand {
    /// Clear a lockout marker after an integrity violation has been dealt with
    #[command(after_help = UNLOCK_HELP)]
    Unlock(MarkerArgs),
    /// Show whether a lockout marker is in place, and what it records
    #[command(after_help = STATUS_HELP)]
    Status(MarkerArgs),
}

/// Which marker: given directly, or derived from the manifest.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct MarkerArgs {
    /// The lockout marker file
    #[arg(long, value_name = "FILE")]
    marker: Option<PathBuf>,
    /// The manifest the program loads; its default marker `<FILE>.lockout` is used
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
}

impl MarkerArgs {
    fn path(&self) -> PathBuf {
        match (&self.marker, &self.manifest) {
            (Some(m), _) => m.clone(),
            (None, Some(manifest)) => {
                let mut s = manifest.as_os_str().to_owned();
                s.push(".lockout");
                PathBuf::from(s)
            }
            // clap's group makes one of the two required.
            (None, None) => PathBuf::from(".integrity-lockout"),
        }
    }
}

/// Runs a `secure integrity` command.
pub fn run(cmd: IntegrityCommand) -> CmdResult {
    match cmd {
        IntegrityCommand::Unlock(a) => unlock(a),
        IntegrityCommand::Status(a) => status(a),
    }
}

fn print_records(lockout: &Lockout) {
    for r in &lockout.records {
        println!(
            "{} {} pid {}{}: {} of {} checked file(s) failed (manifest {}, root {})",
            r.time,
            r.context,
            r.pid,
            r.executable
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default(),
            r.failures.len(),
            r.checked,
            r.manifest.as_deref().unwrap_or("-"),
            r.root
        );
        for f in &r.failures {
            println!("  {}: {}", f.path, f.detail);
        }
    }
    for line in &lockout.unparsed {
        println!("unreadable record: {line}");
    }
}

fn unlock(a: MarkerArgs) -> CmdResult {
    let path = a.path();
    match integrity::unlock(&path) {
        Ok(Some(lockout)) => {
            println!("lockout marker {} recorded:", path.display());
            print_records(&lockout);
            eprintln!("secure: lockout cleared: {}", path.display());
            Ok(EXIT_OK)
        }
        Ok(None) => {
            eprintln!(
                "secure: no lockout marker at {} (nothing to unlock)",
                path.display()
            );
            Ok(EXIT_FAILED)
        }
        Err(e) => Err(format!("cannot clear {}: {e}", path.display())),
    }
}

fn status(a: MarkerArgs) -> CmdResult {
    let path = a.path();
    match integrity::read_lockout(&path) {
        Ok(Some(lockout)) => {
            println!("LOCKED: {}", path.display());
            print_records(&lockout);
            Ok(EXIT_FAILED)
        }
        Ok(None) => {
            println!("not locked: no marker at {}", path.display());
            Ok(EXIT_OK)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}
