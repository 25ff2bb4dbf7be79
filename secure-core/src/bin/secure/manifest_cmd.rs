//! `secure manifest create|verify`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use secure_core::manifest::{
    display_name, CreateOptions, Format, Manifest, Mode, Outcome, SkipReason, VerifyOptions,
};

use crate::progress::Bar;
use crate::{CmdResult, EXIT_FAILED, EXIT_OK};

const VERIFY_HELP: &str = "\
Output (like `sha256sum -c`), one line per listed file, in manifest order:
  NAME: OK                      the digest matches (omitted with --quiet)
  NAME: FAILED                  the digest differs
  NAME: FAILED open or read     missing or unreadable (the reason goes to stderr)
  NAME: FAILED outside the root a symbolic link on its path leads out of the root (which
                                link, to where, goes to stderr); nothing outside is read
  NAME: FAILED not listed       --strict: present under the root but not in the manifest
                                (a symbolic link where a listed directory was, too, unless
                                --follow-symlinks)
Symbolic links that stay inside the root are followed; --follow-symlinks follows them
anywhere, as `sha256sum -c` does (and as `secure manifest create --follow-symlinks` records).
Names holding a backslash, newline or carriage return are printed escaped, with a leading
backslash, as sha256sum writes them. A summary of failures goes to stderr.

Exit status:
  0  every listed file verified (and, with --strict, nothing unlisted was found)
  1  at least one file failed, was missing or unreadable, or (--strict) was unlisted
  2  the manifest could not be read or is malformed (the error names the line), bad arguments";

const CREATE_HELP: &str = "\
Names are recorded relative to the root: by default the directory of the output file
(-o), or the current directory when writing to standard output; `secure manifest verify`
and secure_core's Manifest::load take the manifest's own directory as root, so the two
agree. Directories are walked recursively; entries are sorted by byte order. Symbolic links
are skipped (with a note on stderr) unless --follow-symlinks is given. The output file
itself is never listed. The result passes `sha256sum -c` run from the root.

On a terminal, a progress bar shows after 0.3 s (SECURE_PROGRESS_DELAY_MS=N sets the delay
in milliseconds); its rate and time left appear after a second. --no-progress or --quiet
hide it.

Exit status:
  0  the manifest was written
  2  a path could not be read, lies outside the root, or the output cannot be written";

/// `secure manifest ...`
#[derive(Subcommand, Debug)]
pub enum ManifestCommand {
    /// Hash files and directories into a manifest (GNU `sha256sum` format)
    #[command(after_help = CREATE_HELP)]
    Create(CreateArgs),
    /// Verify the files listed in a manifest (GNU or BSD `sha256sum` format)
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
}

/// Arguments of `secure manifest create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Files and directories to hash (directories recursively)
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Write the manifest here (atomically) instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Record names relative to this directory (see below for the default)
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Follow symbolic links (loops are reported as errors)
    #[arg(short = 'L', long)]
    follow_symlinks: bool,
    /// Mark entries as binary (`HEX *NAME`), like `sha256sum --binary`
    #[arg(short, long)]
    binary: bool,
    /// Write BSD-style lines (`SHA256 (NAME) = HEX`), like `sha256sum --tag`
    #[arg(long)]
    tag: bool,
    /// Hashing threads (default: one per core)
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    threads: usize,
    /// Print nothing on stderr except errors
    #[arg(short, long)]
    quiet: bool,
    /// Never show a progress bar
    #[arg(long)]
    no_progress: bool,
}

/// Arguments of `secure manifest verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The manifest file
    #[arg(value_name = "FILE")]
    manifest: PathBuf,
    /// Resolve names against this directory instead of the manifest's directory
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Also fail on files under the root that the manifest does not list
    #[arg(long)]
    strict: bool,
    /// Follow symbolic links even out of the root (default: a name whose path leads out of
    /// the root through a link fails)
    #[arg(short = 'L', long)]
    follow_symlinks: bool,
    /// Do not print a line for each file that verifies
    #[arg(short, long)]
    quiet: bool,
    /// Hashing threads (default: one per core)
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    threads: usize,
    /// Never show a progress bar
    #[arg(long)]
    no_progress: bool,
}

/// Runs a `secure manifest` command.
pub fn run(cmd: ManifestCommand) -> CmdResult {
    match cmd {
        ManifestCommand::Create(a) => create(a),
        ManifestCommand::Verify(a) => verify(a),
    }
}

fn absolute(p: &Path) -> Result<PathBuf, String> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .map_err(|e| format!("cannot find the current directory: {e}"))
    }
}

fn create(a: CreateArgs) -> CmdResult {
    let to_stdout = a.output.is_none() || a.output.as_deref() == Some(Path::new("-"));
    let root = match (&a.root, &a.output) {
        (Some(r), _) => absolute(r)?,
        (None, Some(out)) if !to_stdout => {
            let out = absolute(out)?;
            out.parent().map(Path::to_path_buf).unwrap_or(out)
        }
        _ => absolute(Path::new("."))?,
    };
    let bar = Bar::new(a.quiet || a.no_progress);
    let progress = |p| bar.update(p);
    let mut opts = CreateOptions::new()
        .follow_symlinks(a.follow_symlinks)
        .mode(if a.binary { Mode::Binary } else { Mode::Text })
        .threads(a.threads)
        .progress(&progress);
    if let (false, Some(out)) = (to_stdout, &a.output) {
        opts = opts.exclude(absolute(out)?);
    }
    let paths: Vec<PathBuf> = a
        .paths
        .iter()
        .map(|p| absolute(p))
        .collect::<Result<_, _>>()?;
    let created = opts.create(&root, &paths);
    bar.finish();
    let created = created.map_err(|e| e.to_string())?;
    if !a.quiet {
        for s in &created.skipped {
            match s.reason {
                SkipReason::Symlink => eprintln!(
                    "secure: skipped symbolic link {} (use --follow-symlinks to follow links)",
                    display_name(&s.name)
                ),
                SkipReason::NotRegular => eprintln!(
                    "secure: skipped {}: not a regular file",
                    display_name(&s.name)
                ),
            }
        }
    }
    let format = if a.tag { Format::Bsd } else { Format::Gnu };
    let manifest = created.manifest;
    if to_stdout {
        let stdout = std::io::stdout();
        manifest
            .write_to(stdout.lock(), format)
            .map_err(|e| format!("cannot write to standard output: {e}"))?;
    } else {
        let out = a.output.as_deref().unwrap_or(Path::new("-"));
        manifest.save_as(out, format).map_err(|e| e.to_string())?;
        if !a.quiet {
            eprintln!(
                "secure: {} file(s) listed in {} (root {})",
                manifest.len(),
                out.display(),
                root.display()
            );
        }
    }
    Ok(EXIT_OK)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn verify(a: VerifyArgs) -> CmdResult {
    let mut manifest = Manifest::load(&a.manifest).map_err(|e| e.to_string())?;
    if let Some(root) = &a.root {
        manifest = manifest.with_root(root);
    }
    let bar = Bar::new(a.quiet || a.no_progress);
    let progress = |p| bar.update(p);
    let opts = VerifyOptions::new()
        .strict(a.strict)
        .follow_symlinks(a.follow_symlinks)
        .threads(a.threads)
        .progress(&progress);
    let report = manifest.verify_with(&opts);
    bar.finish();

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut lines = Vec::new();
    for f in &report.files {
        let name = display_name(&f.name);
        match &f.outcome {
            Outcome::Ok if a.quiet => {}
            Outcome::Ok => lines.push(format!("{name}: OK\n")),
            Outcome::Mismatch { .. } => lines.push(format!("{name}: FAILED\n")),
            Outcome::Missing | Outcome::Unreadable(_) => {
                let why = match &f.outcome {
                    Outcome::Unreadable(e) => e.to_string(),
                    _ => "No such file or directory".to_owned(),
                };
                // Flush what is queued so stderr and stdout interleave in order.
                write_all(&mut out, &lines)?;
                lines.clear();
                eprintln!("secure: {name}: {why}");
                lines.push(format!("{name}: FAILED open or read\n"));
            }
            Outcome::OutsideRoot(why) => {
                write_all(&mut out, &lines)?;
                lines.clear();
                eprintln!(
                    "secure: {name}: {why}; not followed (use --follow-symlinks to follow links \
                     out of the root)"
                );
                lines.push(format!("{name}: FAILED outside the root\n"));
            }
        }
    }
    for e in &report.extra {
        lines.push(format!("{}: FAILED not listed\n", display_name(e)));
    }
    write_all(&mut out, &lines)?;
    drop(out);
    for (dir, e) in &report.walk_errors {
        let dir = if dir.as_os_str().is_empty() {
            ".".to_owned()
        } else {
            display_name(dir)
        };
        eprintln!("secure: {dir}: cannot list directory: {e}");
    }
    let c = report.counts();
    if c.mismatched > 0 {
        eprintln!(
            "secure: WARNING: {} did NOT match",
            plural(c.mismatched, "computed checksum", "computed checksums")
        );
    }
    if c.missing + c.unreadable > 0 {
        eprintln!(
            "secure: WARNING: {} could not be read",
            plural(c.missing + c.unreadable, "listed file", "listed files")
        );
    }
    if c.outside_root > 0 {
        eprintln!(
            "secure: WARNING: {} out of the root through a symbolic link",
            plural(c.outside_root, "listed file leads", "listed files lead")
        );
    }
    if c.extra > 0 {
        eprintln!(
            "secure: WARNING: {} not listed in the manifest (--strict)",
            plural(c.extra, "file is", "files are")
        );
    }
    if c.walk_errors > 0 {
        eprintln!(
            "secure: WARNING: {} could not be listed (--strict)",
            plural(c.walk_errors, "directory", "directories")
        );
    }
    Ok(if report.is_ok() { EXIT_OK } else { EXIT_FAILED })
}

fn write_all(out: &mut impl Write, lines: &[String]) -> Result<(), String> {
    for l in lines {
        out.write_all(l.as_bytes())
            .map_err(|e| format!("cannot write to standard output: {e}"))?;
    }
    out.flush()
        .map_err(|e| format!("cannot write to standard output: {e}"))
}
