//! The `secure` command-line tool, run as a real process: exact output and exit statuses.

use std::path::Path;
use std::process::{Command, Output};

use secure_core::audit::{AuditConfig, Event, EventKind, Logger, Severity};
use secure_core::integrity::IntegrityLock;
use secure_core::manifest::{Digest, Manifest};

fn secure(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_secure"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir_all(app.join("conf")).unwrap();
    std::fs::write(app.join("conf/app.toml"), "port = 1\n").unwrap();
    std::fs::write(app.join("with space.bin"), [1u8; 3000]).unwrap();
    std::fs::write(app.join("new\nline"), "nl").unwrap();
    dir
}

#[test]
fn help_documents_exit_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let o = secure(dir.path(), &["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = out(&o);
    assert!(help.contains("Exit status:\n  0  success"), "{help}");
    assert!(help.contains("\n  1  a check failed"));
    assert!(help.contains("\n  2  the command could not run"));
    assert!(help.contains("exit with 86 on an integrity\nviolation and 87 when a lockout marker"));
    for sub in [
        &["manifest", "verify", "--help"][..],
        &["manifest", "create", "--help"],
        &["integrity", "unlock", "--help"],
        &["integrity", "status", "--help"],
        &["audit", "verify", "--help"],
        &["audit", "report", "--help"],
        &["audit", "keygen", "--help"],
    ] {
        let o = secure(dir.path(), sub);
        assert_eq!(o.status.code(), Some(0));
        assert!(out(&o).contains("\nExit status:\n  0  "), "{sub:?}");
    }
    let o = secure(dir.path(), &["manifest", "verify"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("required arguments were not provided"));
}

#[test]
fn create_writes_what_sha256sum_checks() {
    let dir = tree();
    let o = secure(
        dir.path(),
        &["manifest", "create", "app", "-o", "SHA256SUMS"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "");
    assert_eq!(
        err(&o),
        format!(
            "secure: 3 file(s) listed in SHA256SUMS (root {})\n",
            dir.path().display()
        )
    );
    let text = std::fs::read_to_string(dir.path().join("SHA256SUMS")).unwrap();
    let d = |data: &[u8]| Digest::of(data).to_hex();
    assert_eq!(
        text,
        format!(
            "{}  app/conf/app.toml\n\\{}  app/new\\nline\n{}  app/with space.bin\n",
            d(b"port = 1\n"),
            d(b"nl"),
            d(&[1u8; 3000])
        )
    );
    let check = Command::new("/usr/bin/sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", err(&check));

    // To stdout, in BSD and binary forms.
    let o = secure(dir.path(), &["manifest", "create", "--tag", "app/conf"]);
    assert_eq!(
        out(&o),
        format!("SHA256 (app/conf/app.toml) = {}\n", d(b"port = 1\n"))
    );
    let o = secure(
        dir.path(),
        &["manifest", "create", "-b", "app/conf", "-o", "-"],
    );
    assert_eq!(
        out(&o),
        format!("{} *app/conf/app.toml\n", d(b"port = 1\n"))
    );
    // Root-relative when written beside the tree.
    let o = secure(
        dir.path(),
        &["manifest", "create", "app", "-o", "app/SHA256SUMS", "-q"],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(err(&o), "");
    let inner = std::fs::read_to_string(dir.path().join("app/SHA256SUMS")).unwrap();
    assert!(inner.contains("  conf/app.toml\n") && !inner.contains("SHA256SUMS"));
}

#[test]
fn create_errors() {
    let dir = tree();
    let o = secure(dir.path(), &["manifest", "create", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        err(&o),
        format!(
            "secure: cannot read {}: No such file or directory (os error 2)\n",
            dir.path().join("nope").display()
        )
    );
    let o = secure(
        dir.path(),
        &["manifest", "create", "--root", "app/conf", "app"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("is outside the manifest root"),
        "{}",
        err(&o)
    );
    std::os::unix::fs::symlink("conf", dir.path().join("app/link")).unwrap();
    let o = secure(dir.path(), &["manifest", "create", "app"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        err(&o),
        "secure: skipped symbolic link app/link (use --follow-symlinks to follow links)\n"
    );
    let o = secure(dir.path(), &["manifest", "create", "-L", "app"]);
    assert!(out(&o).contains("  app/link/app.toml\n"));
}

#[test]
fn verify_prints_sha256sum_style_lines() {
    let dir = tree();
    let o = secure(
        dir.path(),
        &["manifest", "create", "app", "-o", "SUMS", "-q"],
    );
    assert_eq!(o.status.code(), Some(0));

    let o = secure(dir.path(), &["manifest", "verify", "SUMS"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        out(&o),
        "app/conf/app.toml: OK\n\\app/new\\nline: OK\napp/with space.bin: OK\n"
    );
    assert_eq!(err(&o), "");
    let o = secure(dir.path(), &["manifest", "verify", "--quiet", "SUMS"]);
    assert_eq!(
        (o.status.code(), out(&o), err(&o)),
        (Some(0), "".into(), "".into())
    );

    std::fs::write(dir.path().join("app/conf/app.toml"), "port = 2\n").unwrap();
    std::fs::remove_file(dir.path().join("app/with space.bin")).unwrap();
    std::fs::write(dir.path().join("app/dropped.so"), "x").unwrap();
    let o = secure(dir.path(), &["manifest", "verify", "SUMS"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        out(&o),
        "app/conf/app.toml: FAILED\n\\app/new\\nline: OK\napp/with space.bin: FAILED open or read\n"
    );
    assert_eq!(
        err(&o),
        "secure: app/with space.bin: No such file or directory\n\
         secure: WARNING: 1 computed checksum did NOT match\n\
         secure: WARNING: 1 listed file could not be read\n"
    );
    let o = secure(
        dir.path(),
        &["manifest", "verify", "--strict", "-q", "SUMS"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        out(&o),
        "app/conf/app.toml: FAILED\napp/with space.bin: FAILED open or read\napp/dropped.so: FAILED not listed\n"
    );
    assert!(err(&o).ends_with("secure: WARNING: 1 file is not listed in the manifest (--strict)\n"));
}

#[test]
fn verify_reads_sha256sum_manifests_and_resolves_against_the_manifest_directory() {
    let dir = tree();
    let made = Command::new("/usr/bin/sha256sum")
        .args(["--", "conf/app.toml", "new\nline", "with space.bin"])
        .current_dir(dir.path().join("app"))
        .output()
        .unwrap();
    assert!(made.status.success());
    std::fs::write(dir.path().join("app/CHECKSUMS"), &made.stdout).unwrap();
    // Run from elsewhere: names resolve against the manifest's directory.
    let o = secure(dir.path(), &["manifest", "verify", "app/CHECKSUMS"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        out(&o),
        "conf/app.toml: OK\n\\new\\nline: OK\nwith space.bin: OK\n"
    );
    // --root overrides.
    let o = secure(
        dir.path(),
        &["manifest", "verify", "--root", ".", "-q", "app/CHECKSUMS"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(out(&o).lines().count(), 3);
}

#[test]
fn malformed_or_missing_manifest_is_exit_2_with_line_number() {
    let dir = tree();
    let good = format!("{}  app/conf/app.toml\n", Digest::of(b"port = 1\n"));
    std::fs::write(
        dir.path().join("BAD"),
        format!("{good}# fine\n{}  ../../etc/passwd\n", Digest::of(b"")),
    )
    .unwrap();
    let o = secure(dir.path(), &["manifest", "verify", "BAD"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(out(&o), "");
    assert_eq!(
        err(&o),
        "secure: BAD:3: refusing entry \"../../etc/passwd\": `..` escapes the manifest root\n"
    );
    std::fs::write(dir.path().join("BAD"), format!("{good}{good}")).unwrap();
    let o = secure(dir.path(), &["manifest", "verify", "BAD"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        err(&o),
        "secure: BAD:2: duplicate entry for \"app/conf/app.toml\" (first listed on line 1)\n"
    );
    let o = secure(dir.path(), &["manifest", "verify", "MISSING"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        err(&o),
        "secure: cannot read manifest MISSING: No such file or directory (os error 2)\n"
    );
}

#[test]
fn integrity_status_and_unlock() {
    let dir = tree();
    let app = dir.path().join("app");
    Manifest::create(&app, ["."])
        .unwrap()
        .save(app.join("SHA256SUMS"))
        .unwrap();
    let o = secure(
        dir.path(),
        &["integrity", "status", "--manifest", "app/SHA256SUMS"],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(out(&o), "not locked: no marker at app/SHA256SUMS.lockout\n");

    // Trip a lock the way a guarded program would.
    std::fs::write(app.join("conf/app.toml"), "port = 666\n").unwrap();
    let lock = IntegrityLock::new(Manifest::load(app.join("SHA256SUMS")).unwrap());
    let e = lock.check().unwrap_err();
    let rec = &secure_core::integrity::read_lockout(lock.marker_path())
        .unwrap()
        .unwrap()
        .records[0];
    let detail = e.violation().failures[0].problem.to_string();

    let o = secure(
        dir.path(),
        &["integrity", "status", "--manifest", "app/SHA256SUMS"],
    );
    assert_eq!(o.status.code(), Some(1));
    let header = format!(
        "{} check pid {} ({}): 1 of 3 checked file(s) failed (manifest {}, root {})\n",
        rec.time,
        rec.pid,
        rec.executable.as_deref().unwrap(),
        app.join("SHA256SUMS").display(),
        app.display()
    );
    assert_eq!(
        out(&o),
        format!("LOCKED: app/SHA256SUMS.lockout\n{header}  conf/app.toml: {detail}\n")
    );

    let o = secure(
        dir.path(),
        &["integrity", "unlock", "--marker", "app/SHA256SUMS.lockout"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        out(&o),
        format!(
            "lockout marker app/SHA256SUMS.lockout recorded:\n{header}  conf/app.toml: {detail}\n"
        )
    );
    assert_eq!(err(&o), "secure: lockout cleared: app/SHA256SUMS.lockout\n");
    assert!(!lock.marker_path().exists());

    let o = secure(
        dir.path(),
        &["integrity", "unlock", "--manifest", "app/SHA256SUMS"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        err(&o),
        "secure: no lockout marker at app/SHA256SUMS.lockout (nothing to unlock)\n"
    );
    let o = secure(dir.path(), &["integrity", "unlock"]);
    assert_eq!(o.status.code(), Some(2));
    let o = secure(
        dir.path(),
        &["integrity", "unlock", "--marker", "a", "--manifest", "b"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("cannot be used with"));
}

fn write_log(path: &Path) {
    let logger = Logger::new(AuditConfig::jsonl(path)).unwrap();
    logger.log(Event::new(
        EventKind::IntegrityVerified,
        Severity::Info,
        "integrity",
        "3 file(s) verified at startup",
    ));
    logger.log(
        Event::new(
            EventKind::IntegrityViolation,
            Severity::Critical,
            "integrity",
            "conf/app.toml changed",
        )
        .field("path", "conf/app.toml"),
    );
    logger.log(Event::new(
        EventKind::OperationComplete,
        Severity::Info,
        "main",
        "done",
    ));
    logger.shutdown().unwrap();
}

#[test]
fn audit_verify_detects_modification_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    write_log(&log);
    let o = secure(dir.path(), &["audit", "verify", "audit.jsonl"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        out(&o),
        "audit.jsonl: intact: 3 records verified (unkeyed: hashes only; anyone with write access could have rewritten them)\n"
    );
    assert_eq!(err(&o), "");

    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(
        &log,
        text.replace("conf/app.toml changed", "nothing happened"),
    )
    .unwrap();
    let o = secure(dir.path(), &["audit", "verify", "audit.jsonl"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).starts_with("audit.jsonl: NOT INTACT: record 1 was modified"),
        "{}",
        out(&o)
    );

    let first_two: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, first_two).unwrap();
    let o = secure(dir.path(), &["audit", "verify", "audit.jsonl"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        out(&o),
        "audit.jsonl: NOT INTACT: log truncated: it holds 2 records, its anchor vouches for 3\n"
    );
    let o = secure(
        dir.path(),
        &[
            "audit",
            "verify",
            "--anchor",
            "audit.jsonl.anchor",
            "audit.jsonl",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    // Without the anchor the shorter chain verifies, and the tool says what that means.
    let o = secure(
        dir.path(),
        &["audit", "verify", "--no-anchor", "audit.jsonl"],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        out(&o),
        "audit.jsonl: intact: 2 records verified (unkeyed: hashes only; anyone with write access could have rewritten them)\n"
    );
    assert!(err(&o).contains("records removed from the end of the log cannot be detected"));

    let o = secure(
        dir.path(),
        &["audit", "verify", "missing.jsonl", "--no-anchor"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).starts_with("secure: cannot "), "{}", err(&o));
}

#[test]
fn audit_verify_with_key() {
    let dir = tempfile::tempdir().unwrap();
    let o = secure(dir.path(), &["audit", "keygen", "initial.key"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).starts_with("initial.key: new audit key written; copy it off"));
    let o = secure(dir.path(), &["audit", "keygen", "initial.key"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("cannot create key file initial.key"),
        "{}",
        err(&o)
    );
    std::fs::copy(
        dir.path().join("initial.key"),
        dir.path().join("writer.key"),
    )
    .unwrap();
    let log = dir.path().join("audit.jsonl");
    {
        let logger =
            Logger::new(AuditConfig::jsonl(&log).with_key_file(dir.path().join("writer.key")))
                .unwrap();
        logger.log(
            Event::new(
                EventKind::OperationError,
                Severity::Error,
                "login",
                "denied",
            )
            .field("user", "ada"),
        );
    }
    let verify = |extra: &[&str]| {
        let mut args = vec!["audit", "verify", "audit.jsonl"];
        args.extend_from_slice(extra);
        secure(dir.path(), &args)
    };
    let o = verify(&["--key", "initial.key", "--writer-key", "writer.key"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        out(&o),
        "audit.jsonl: authentic: 2 records in 1 sealed epoch(s), every MAC verified\n"
    );
    let o = verify(&[]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        out(&o),
        "audit.jsonl: intact: 2 records verified (keyed log: MACs not checked; pass --key to \
         check them)\n"
    );
    // The writer's key is not the verifier's.
    let o = verify(&["--key", "writer.key"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("verifying needs the initial key (epoch 0)"),
        "{}",
        err(&o)
    );
    // A bad key file.
    std::fs::write(dir.path().join("short.key"), "abc\n").unwrap();
    let o = verify(&["--key", "short.key"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        err(&o),
        "secure: audit key (key file short.key): expected 64 hex digits (a 32-byte key), found \
         3 character(s)\n"
    );
    let o = verify(&["--key", "none.key"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).starts_with("secure: audit key (key file none.key): cannot be read"));

    // Rewritten with every hash and the anchor recomputed: the chain is fooled, the MAC not.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut prev = secure_core::audit::chain::genesis();
    let mut forged = String::new();
    for line in text.lines() {
        let link = line.find(",\"prev\":\"").unwrap();
        let body = line[..link].replace("\"ada\"", "\"eve\"");
        let hash = secure_core::audit::chain::record_hash(&prev, body.as_bytes());
        forged.push_str(&format!(
            "{body},\"prev\":\"{}\",\"hash\":\"{}\"{}\n",
            secure_core::audit::chain::to_hex(&prev),
            secure_core::audit::chain::to_hex(&hash),
            &line[link + 148..]
        ));
        prev = hash;
    }
    std::fs::write(&log, forged).unwrap();
    secure_core::audit::Anchor::new(2, &prev, &log)
        .write(&dir.path().join("audit.jsonl.anchor"))
        .unwrap();
    assert_eq!(verify(&[]).status.code(), Some(0));
    let o = verify(&["--key", "initial.key"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).starts_with("audit.jsonl: NOT INTACT: MAC invalid: record 0 (audit.jsonl:1)"),
        "{}",
        out(&o)
    );
}

#[test]
fn audit_report_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    write_log(&dir.path().join("audit.jsonl"));
    let o = secure(dir.path(), &["audit", "report", "audit.jsonl"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(text.starts_with(
        "audit log audit.jsonl: 3 event(s)\nby severity:\n  critical   1\n  error      0\n  warning    0\n  info       2\nby kind:\n"
    ), "{text}");
    assert!(text.contains("  integrity_violation      1\n"));
    assert!(text.contains("  integrity_verified       1\n"));
    assert!(text.contains(" critical integrity_violation integrity: conf/app.toml changed\n      path = conf/app.toml\n"));

    let o = secure(dir.path(), &["audit", "report", "--json", "audit.jsonl"]);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["total_events"], 3);
    assert_eq!(v["by_severity"]["critical"], 1);
    assert_eq!(v["recent_critical"][0]["message"], "conf/app.toml changed");

    let o = secure(dir.path(), &["audit", "report", "nope.jsonl"]);
    assert_eq!(o.status.code(), Some(2));
}
