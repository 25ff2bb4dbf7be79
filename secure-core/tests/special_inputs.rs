//! User-named inputs that are not regular files (a FIFO with no writer, `/dev/zero`, a
//! directory) or are too large are refused at once with a clear error, by every `secure`
//! command and by the library: nothing blocks, nothing reads without bound.
//!
//! Each command runs as a child process under a deadline, so a command that blocks fails the
//! test instead of hanging it.

#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `secure ARGS` in `dir`; panics if it has not exited within 20 seconds (the commands
/// below take milliseconds when they do not block).
fn secure(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_secure"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`secure {}` blocked for 20 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

fn fifo_in(dir: &Path) -> PathBuf {
    let p = dir.join("fifo");
    mkfifo(&p);
    p
}

#[test]
fn manifest_verify_refuses_a_fifo_a_device_and_a_directory_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = fifo_in(dir.path());
    let (code, out, err) = secure(dir.path(), &["manifest", "verify", "fifo"]);
    assert_eq!((code, out.as_str()), (Some(2), ""));
    assert_eq!(
        err,
        "secure: cannot read manifest fifo: is a FIFO, not a regular file\n"
    );
    let (code, _, err) = secure(dir.path(), &["manifest", "verify", "/dev/zero"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "secure: cannot read manifest /dev/zero: is a character device, not a regular file\n"
    );
    let (code, _, err) = secure(dir.path(), &["manifest", "verify", "."]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "secure: cannot read manifest .: is a directory, not a regular file\n"
    );
    drop(fifo);
}

#[test]
fn manifest_larger_than_the_limit_is_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.sums");
    // Sparse: no disk space used, and nothing is read since the size alone is over the limit.
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(secure_core::manifest::MAX_MANIFEST_BYTES + 1)
        .unwrap();
    let (code, _, err) = secure(dir.path(), &["manifest", "verify", "big.sums"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "secure: cannot read manifest big.sums: is larger than the limit of 256 MiB for a manifest\n"
    );
    let e = secure_core::manifest::Manifest::load(&big).unwrap_err();
    assert!(e
        .to_string()
        .ends_with("is larger than the limit of 256 MiB for a manifest"));
}

#[test]
fn lockout_marker_that_is_a_fifo_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    fifo_in(dir.path());
    for cmd in ["status", "unlock"] {
        let (code, _, err) = secure(dir.path(), &["integrity", cmd, "--marker", "fifo"]);
        assert_eq!(code, Some(2), "{cmd}: {err}");
        let verb = if cmd == "status" { "read" } else { "clear" };
        assert_eq!(
            err,
            format!("secure: cannot {verb} fifo: is a FIFO, not a regular file\n")
        );
    }
    assert!(
        dir.path().join("fifo").exists(),
        "unlock must not remove what it cannot read"
    );
    let e = secure_core::integrity::read_lockout(dir.path().join("fifo")).unwrap_err();
    assert_eq!(e.to_string(), "is a FIFO, not a regular file");
}

#[test]
fn audit_log_and_anchor_that_are_fifos_are_errors_not_hangs() {
    let dir = tempfile::tempdir().unwrap();
    fifo_in(dir.path());
    let (code, _, err) = secure(dir.path(), &["audit", "verify", "--no-anchor", "fifo"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "secure: cannot open fifo: is a FIFO, not a regular file\n"
    );
    let (code, _, err) = secure(dir.path(), &["audit", "report", "fifo"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "secure: cannot open fifo: is a FIFO, not a regular file\n"
    );
    std::fs::write(dir.path().join("log"), "").unwrap();
    let (code, _, err) = secure(dir.path(), &["audit", "verify", "--anchor", "fifo", "log"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "secure: cannot read fifo: is a FIFO, not a regular file\n"
    );
    let (code, _, err) = secure(dir.path(), &["audit", "report", "/dev/zero"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "secure: cannot open /dev/zero: is a character device, not a regular file\n"
    );
}

#[test]
fn audit_logger_refuses_a_fifo_as_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = fifo_in(dir.path());
    let done = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let r = secure_core::audit::Logger::new(secure_core::audit::AuditConfig::jsonl(&path))
            .map(|_| ());
        let _ = done.0.send(r.map_err(|e| e.to_string()));
    });
    let r = done
        .1
        .recv_timeout(Duration::from_secs(20))
        .expect("opening a FIFO as the audit log blocked");
    assert_eq!(
        r,
        Err(format!(
            "cannot open {}: is a FIFO, not a regular file",
            fifo.display()
        ))
    );
}

#[test]
fn report_convert_refuses_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    fifo_in(dir.path());
    let (code, _, err) = secure(dir.path(), &["report", "convert", "--to", "text", "fifo"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "secure: cannot read fifo: is a FIFO, not a regular file\n"
    );
}

#[test]
fn audit_report_refuses_a_line_over_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let f = std::fs::File::create(&log).unwrap();
    // A sparse file of zero bytes and no newline, one byte over the line limit.
    f.set_len(secure_core::input::MAX_LOG_LINE_BYTES + 1)
        .unwrap();
    let e = secure_core::audit::Report::from_log(&log, 1).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "cannot read {}: has a line longer than the limit of 16 MiB for an audit log",
            log.display()
        )
    );
}
