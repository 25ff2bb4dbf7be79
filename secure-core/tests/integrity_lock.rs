//! The integrity lock in real processes: a program whose configuration was tampered with
//! halts with the documented exit status, the audit log holds the `Critical` event, and the
//! lockout marker blocks the next start until it is cleared.
//!
//! The "program" is this test binary re-run as a child with `--ignored --exact child_program`:
//! the ignored test `child_program` is a small guarded application driven by environment
//! variables.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use secure_core::audit::{self, AuditConfig, Verdict};
use secure_core::integrity::{
    self, HaltPolicy, IntegrityLock, Violation, EXIT_INTEGRITY_VIOLATION, EXIT_LOCKED_OUT,
};
use secure_core::manifest::{Digest, Entry, Manifest};

const MODE: &str = "SECURE_CORE_ITEST_MODE";
const DIR: &str = "SECURE_CORE_ITEST_DIR";
const DIGEST: &str = "SECURE_CORE_ITEST_DIGEST";

const CONFIG: &str = "threads = 4\nlisten = \"127.0.0.1:8080\"\n";

fn custom_halt(v: &Violation) -> ! {
    println!("CUSTOM HALT: {v}");
    std::process::exit(42)
}

/// The guarded program. Does nothing unless run as a child by the tests below.
#[test]
#[ignore = "run as a child process by the other tests in this file"]
fn child_program() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    if mode == "selfcheck" {
        let exe = std::env::current_exe().unwrap();
        let digest: Digest = std::env::var(DIGEST).unwrap().parse().unwrap();
        let mut manifest = Manifest::new(exe.parent().unwrap());
        manifest
            .push(Entry::new(exe.file_name().unwrap(), digest).unwrap())
            .unwrap();
        let lock = IntegrityLock::new(manifest)
            .self_check(true)
            .lockout_marker(dir.join("self.lockout"));
        lock.verify_or_halt();
        println!("STARTED");
        return;
    }
    audit::init(AuditConfig::jsonl(dir.join("audit.jsonl"))).unwrap();
    let manifest = Manifest::load(dir.join("app/SHA256SUMS")).unwrap();
    let policy = match mode.as_str() {
        "custom" => HaltPolicy::Custom(custom_halt),
        "abort" => HaltPolicy::Abort,
        _ => HaltPolicy::Exit,
    };
    let lock = IntegrityLock::new(manifest).halt_policy(policy);
    lock.verify_or_halt();
    println!("STARTED");
    let config = lock.read_verified("config.toml").unwrap();
    println!("CONFIG {}", String::from_utf8(config).unwrap().trim_end());
    if mode == "periodic" {
        let _guard = lock.start_periodic(Duration::from_millis(50));
        std::fs::write(dir.join("ready"), "").unwrap();
        for _ in 0..400 {
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("NOT DETECTED");
        std::process::exit(3);
    }
    audit::flush().unwrap();
}

struct App {
    dir: tempfile::TempDir,
}

impl App {
    fn new() -> App {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(app.join("models")).unwrap();
        std::fs::write(app.join("config.toml"), CONFIG).unwrap();
        std::fs::write(app.join("models/weights.bin"), vec![7u8; 100_000]).unwrap();
        Manifest::create(&app, ["."])
            .unwrap()
            .save(app.join("SHA256SUMS"))
            .unwrap();
        App { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn marker(&self) -> PathBuf {
        self.path("app/SHA256SUMS.lockout")
    }

    fn run(&self, mode: &str) -> Output {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["child_program", "--exact", "--ignored", "--nocapture"])
            .env(MODE, mode)
            .env(DIR, self.dir.path());
        cmd.output().unwrap()
    }

    fn audit_events(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.path("audit.jsonl")).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn untampered_program_starts_and_reads_its_config() {
    let app = App::new();
    let out = app.run("startup");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("STARTED\nCONFIG threads = 4\nlisten = \"127.0.0.1:8080\"\n"));
    assert_eq!(stderr(&out), "");
    assert!(!app.marker().exists());
    let events = app.audit_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["kind"], "integrity_verified");
    assert_eq!(events[0]["message"], "2 file(s) verified at startup");
}

#[test]
fn tampered_config_halts_is_audited_and_locks_out_the_next_start() {
    let app = App::new();
    let expected = Digest::of(CONFIG.as_bytes());
    let tampered = CONFIG.replace("127.0.0.1", "0.0.0.0");
    let actual = Digest::of(tampered.as_bytes());
    std::fs::write(app.path("app/config.toml"), &tampered).unwrap();

    // 1. The tampered program halts before doing anything.
    let out = app.run("startup");
    assert_eq!(out.status.code(), Some(EXIT_INTEGRITY_VIOLATION));
    assert_eq!(EXIT_INTEGRITY_VIOLATION, 86);
    assert!(!stdout(&out).contains("STARTED"));
    let sums = app.path("app/SHA256SUMS");
    let marker = app.marker();
    assert_eq!(
        stderr(&out),
        format!(
            "secure-core: INTEGRITY VIOLATION at startup: 1 of 2 checked file(s) failed (manifest {sums})\n\
             secure-core:   config.toml: digest mismatch (expected {expected}, got {actual})\n\
             secure-core: lockout marker {marker} blocks further starts until `secure integrity unlock --marker {marker}`\n\
             secure-core: halting (exit status 86)\n",
            sums = sums.display(),
            marker = marker.display(),
        )
    );

    // 2. The audit log holds the Critical event, flushed and anchored.
    let events = app.audit_events();
    assert_eq!(events.len(), 1, "{events:?}");
    let ev = &events[0];
    assert_eq!(ev["kind"], "integrity_violation");
    assert_eq!(ev["severity"], "critical");
    assert_eq!(ev["operation"], "integrity");
    assert_eq!(ev["fields"]["context"], "startup");
    assert_eq!(ev["fields"]["path"], "config.toml");
    assert_eq!(ev["fields"]["problem"], "mismatch");
    assert_eq!(ev["fields"]["expected"], expected.to_hex());
    assert_eq!(ev["fields"]["actual"], actual.to_hex());
    assert_eq!(ev["fields"]["lockout_marker"], marker.display().to_string());
    let log = app.path("audit.jsonl");
    assert_eq!(
        audit::verify(&log, Some(&audit::default_anchor_path(&log))).unwrap(),
        Verdict::Intact { records: 1 }
    );

    // 3. The lockout marker records what failed.
    let lockout = integrity::read_lockout(&marker).unwrap().unwrap();
    assert_eq!(lockout.records.len(), 1);
    let rec = &lockout.records[0];
    assert_eq!(rec.context, "startup");
    assert_eq!(rec.checked, 2);
    assert_eq!(rec.failures.len(), 1);
    assert_eq!(rec.failures[0].path, "config.toml");
    assert_eq!(rec.failures[0].problem, "mismatch");
    assert_eq!(
        rec.failures[0].expected.as_deref(),
        Some(&*expected.to_hex())
    );
    assert_eq!(rec.manifest.as_deref(), Some(&*sums.display().to_string()));
    let marker_bytes = std::fs::read(&marker).unwrap();

    // 4. Even with the file restored, the next start is refused while the marker exists.
    std::fs::write(app.path("app/config.toml"), CONFIG).unwrap();
    let out = app.run("startup");
    assert_eq!(out.status.code(), Some(EXIT_LOCKED_OUT));
    assert!(!stdout(&out).contains("STARTED"));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert_eq!(
        lines[0],
        format!(
            "secure-core: INTEGRITY LOCKOUT at startup: refusing to run: {} records an earlier violation",
            marker.display()
        )
    );
    assert!(lines[1].starts_with("secure-core:   20"), "{err}");
    assert!(
        lines[1].ends_with(&format!(
            " startup (pid {}): config.toml: digest mismatch (expected {expected}, got {actual})",
            rec.pid
        )),
        "{err}"
    );
    assert_eq!(
        lines[2],
        format!(
            "secure-core: after investigating, clear it with `secure integrity unlock --marker {}`",
            marker.display()
        )
    );
    assert_eq!(lines[3], "secure-core: halting (exit status 87)");
    // The refusal is audited too, and the marker is preserved as it was.
    let events = app.audit_events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["kind"], "integrity_violation");
    assert_eq!(events[1]["severity"], "critical");
    assert_eq!(events[1]["fields"]["problem"], "locked_out");
    assert_eq!(std::fs::read(&marker).unwrap(), marker_bytes);

    // 5. After an operator clears the marker, the program starts again.
    let cleared = integrity::unlock(&marker).unwrap().unwrap();
    assert_eq!(cleared.records, lockout.records);
    assert!(!marker.exists());
    let out = app.run("startup");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("STARTED\n"));
}

#[test]
fn missing_and_added_files_also_halt() {
    let app = App::new();
    std::fs::remove_file(app.path("app/models/weights.bin")).unwrap();
    let out = app.run("startup");
    assert_eq!(out.status.code(), Some(EXIT_INTEGRITY_VIOLATION));
    assert!(
        stderr(&out).contains("secure-core:   models/weights.bin: missing\n"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn periodic_check_halts_a_running_program_after_tampering() {
    let app = App::new();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["child_program", "--exact", "--ignored", "--nocapture"])
        .env(MODE, "periodic")
        .env(DIR, app.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ready = app.path("ready");
    for _ in 0..600 {
        if ready.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ready.exists(), "child never became ready");
    std::fs::write(app.path("app/models/weights.bin"), vec![8u8; 100_000]).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(EXIT_INTEGRITY_VIOLATION));
    assert!(stdout(&out).contains("STARTED\n"));
    assert!(!stdout(&out).contains("NOT DETECTED"));
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "secure-core: INTEGRITY VIOLATION during periodic re-verification: 1 of 2 checked file(s) failed"
        ),
        "{err}"
    );
    assert!(err.contains("secure-core:   models/weights.bin: digest mismatch (expected "));
    let events = app.audit_events();
    let crit: Vec<_> = events
        .iter()
        .filter(|e| e["severity"] == "critical")
        .collect();
    assert_eq!(crit.len(), 1);
    assert_eq!(crit[0]["fields"]["context"], "periodic");
    assert_eq!(crit[0]["fields"]["path"], "models/weights.bin");
    let lockout = integrity::read_lockout(app.marker()).unwrap().unwrap();
    assert_eq!(lockout.records[0].context, "periodic");
}

#[test]
fn custom_policy_receives_the_violation() {
    let app = App::new();
    std::fs::write(app.path("app/config.toml"), "evil").unwrap();
    let out = app.run("custom");
    assert_eq!(out.status.code(), Some(42));
    assert!(
        stdout(&out)
            .contains("CUSTOM HALT: integrity violation at startup: config.toml: digest mismatch"),
        "{}",
        stdout(&out)
    );
    // The record is made before the policy runs.
    assert!(app.marker().exists());
    assert_eq!(app.audit_events()[0]["severity"], "critical");
}

#[test]
fn abort_policy_aborts() {
    use std::os::unix::process::ExitStatusExt;
    let app = App::new();
    std::fs::write(app.path("app/config.toml"), "evil").unwrap();
    let out = app.run("abort");
    assert_eq!(out.status.signal(), Some(libc::SIGABRT));
    assert!(stderr(&out).ends_with("secure-core: halting (abort)\n"));
    assert!(app.marker().exists());
    assert_eq!(app.audit_events()[0]["severity"], "critical");
}

#[test]
fn executable_self_check() {
    let exe = std::env::current_exe().unwrap();
    let good = secure_core::manifest::hash_file(&exe).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |digest: &Digest| {
        Command::new(&exe)
            .args(["child_program", "--exact", "--ignored", "--nocapture"])
            .env(MODE, "selfcheck")
            .env(DIR, dir.path())
            .env(DIGEST, digest.to_hex())
            .output()
            .unwrap()
    };
    let out = run(&good);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("STARTED\n"));

    let wrong = Digest::of(b"some other build");
    let out = run(&wrong);
    assert_eq!(out.status.code(), Some(EXIT_INTEGRITY_VIOLATION));
    let name = exe.file_name().unwrap().to_str().unwrap();
    assert!(
        stderr(&out).contains(&format!(
            "secure-core:   {name}: digest mismatch (expected {wrong}, got {good})\n"
        )),
        "{}",
        stderr(&out)
    );
    // The file on disk and the running image are both checked.
    assert!(
        stderr(&out).contains(&format!(
            "secure-core:   {name} (running image): digest mismatch (expected {wrong}, got {good})\n"
        )),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out)
        .starts_with("secure-core: INTEGRITY VIOLATION at startup: 2 of 2 checked file(s) failed"));
    assert!(Path::new(&dir.path().join("self.lockout")).exists());
}
