//! `secure manifest create`'s progress bar, with standard error on a pseudo-terminal (the bar
//! only ever shows on a terminal): shown when asked for, never with `--no-progress` or
//! `--quiet`, and no rate or time left over the first moments of a run.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

/// A pseudo-terminal: (master, slave).
fn pty() -> (File, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the pointed-to ints; the name, termios and
    // window-size pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Runs `secure` with standard error on a terminal (a bar shows at once); returns the exit
/// status, standard output, and what reached the terminal.
fn run_on_tty(dir: &Path, delay_ms: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let (mut master, slave) = pty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_secure"))
        .args(args)
        .current_dir(dir)
        .env("SECURE_PROGRESS_DELAY_MS", delay_ms)
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    // Our copy of the slave went to the child (and was closed here when the Command was
    // dropped after spawning); read the terminal until the child's copy closes too.
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break, // EIO once no process holds the slave
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    (status.code(), stdout, reader.join().unwrap())
}

fn files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    for i in 0..4 {
        std::fs::write(
            dir.path().join(format!("data/{i}.bin")),
            vec![i as u8; 1 << 20],
        )
        .unwrap();
    }
    dir
}

#[test]
fn create_shows_a_bar_on_a_terminal_without_a_rate_at_first() {
    let dir = files();
    let (code, stdout, tty) = run_on_tty(
        dir.path(),
        "0",
        &["manifest", "create", "data", "--threads", "1"],
    );
    assert_eq!(code, Some(0), "{tty}");
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    assert!(tty.contains("/4 files"), "no bar drawn: {tty:?}");
    assert!(
        tty.contains("MiB/4.00 MiB") || tty.contains("B/4.00 MiB"),
        "{tty:?}"
    );
    // A run this short never has enough time behind it for a rate or a time left.
    assert!(!tty.contains("/s") && !tty.contains("eta"), "{tty:?}");
}

#[test]
fn create_no_progress_and_quiet_draw_nothing() {
    let dir = files();
    for flag in ["--no-progress", "--quiet"] {
        let (code, stdout, tty) = run_on_tty(
            dir.path(),
            "0",
            &["manifest", "create", "data", "--threads", "1", flag],
        );
        assert_eq!(code, Some(0), "{flag}: {tty}");
        assert_eq!(stdout.lines().count(), 4, "{flag}: {stdout}");
        assert_eq!(tty, "", "{flag}");
    }
    // And with an output file, --no-progress keeps the closing summary line.
    let (code, _, tty) = run_on_tty(
        dir.path(),
        "0",
        &[
            "manifest",
            "create",
            "data",
            "-o",
            "SHA256SUMS",
            "--no-progress",
        ],
    );
    assert_eq!(code, Some(0), "{tty}");
    assert!(
        tty.starts_with("secure: 4 file(s) listed in SHA256SUMS"),
        "{tty:?}"
    );
    assert!(!tty.contains("files"), "{tty:?}");
}

#[test]
fn a_bad_delay_is_reported_and_the_default_kept() {
    let dir = files();
    let (code, stdout, tty) = run_on_tty(dir.path(), "soon", &["manifest", "create", "data"]);
    assert_eq!(code, Some(0), "{tty}");
    assert_eq!(stdout.lines().count(), 4);
    // The default delay (300 ms) is longer than this run: the warning and nothing else.
    assert_eq!(
        tty.replace("\r\n", "\n"),
        "secure: ignoring SECURE_PROGRESS_DELAY_MS=\"soon\": expected a number of milliseconds\n"
    );
}
