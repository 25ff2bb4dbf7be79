//! Bad manifests and bad trees: clear errors with line numbers, never a panic or a hang.

use std::path::{Path, PathBuf};

use secure_core::manifest::{
    CreateOptions, Digest, Entry, LineError, Manifest, ManifestError, NameError, Outcome,
    SkipReason, VerifyOptions,
};

const H: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn load_text(text: &str) -> (tempfile::TempDir, Result<Manifest, ManifestError>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("SUMS"), text).unwrap();
    let m = Manifest::load(dir.path().join("SUMS"));
    (dir, m)
}

fn err_text(text: &str) -> (ManifestError, String) {
    let (dir, m) = load_text(text);
    let e = m.unwrap_err();
    let msg = e
        .to_string()
        .replace(&dir.path().display().to_string(), "DIR");
    (e, msg)
}

#[test]
fn malformed_line_reports_its_number() {
    let (e, msg) = err_text(&format!(
        "# header\n{H}  a\n{H}  b\nthis is not a checksum\n"
    ));
    assert!(matches!(
        e,
        ManifestError::Malformed {
            ref at,
            reason: LineError::Digest(_)
        } if at.line == 4
    ));
    assert_eq!(
        msg,
        "DIR/SUMS:4: improperly formatted SHA-256 checksum line: digest has 4 characters, expected 64 hex digits"
    );
}

#[test]
fn wrong_digest_length_and_bad_hex() {
    let (_, msg) = err_text(&format!("{}  a\n", &H[..63]));
    assert_eq!(
        msg,
        "DIR/SUMS:1: improperly formatted SHA-256 checksum line: digest has 63 characters, expected 64 hex digits"
    );
    // A SHA-512 line (128 digits) is not silently taken for SHA-256.
    let (_, msg) = err_text(&format!("{H}{H}  a\n"));
    assert!(msg.contains("digest has 128 characters"), "{msg}");
    let (_, msg) = err_text(&format!("{}z  a\n", &H[..63]));
    assert_eq!(
        msg,
        "DIR/SUMS:1: improperly formatted SHA-256 checksum line: digest has a non-hex character at position 63"
    );
    let (_, msg) = err_text(&format!("{H}  a\n{H} b\n"));
    assert_eq!(
        msg,
        "DIR/SUMS:2: improperly formatted SHA-256 checksum line: one separator character between \
         the digest and the file name, after lines with two (\"  \" or \" *\"); sha256sum \
         refuses this mix too"
    );
    let (_, msg) = err_text(&format!("MD5 (a) = {}\n", &H[..32]));
    assert!(
        msg.ends_with("not a SHA-256 line (BSD tag \"MD5\")"),
        "{msg}"
    );
    let (_, msg) = err_text(&format!("\\{H}  a\\x\n"));
    assert!(
        msg.ends_with("unknown escape sequence in file name (only \\\\, \\n and \\r are allowed)")
    );
}

#[test]
fn traversal_and_absolute_paths_are_refused() {
    let (e, msg) = err_text(&format!("{H}  ok\n{H}  ../../etc/passwd\n"));
    assert!(matches!(
        e,
        ManifestError::UnsafeName {
            reason: NameError::EscapesRoot,
            ..
        }
    ));
    assert_eq!(
        msg,
        "DIR/SUMS:2: refusing entry \"../../etc/passwd\": `..` escapes the manifest root"
    );
    let (_, msg) = err_text(&format!("SHA256 (/etc/shadow) = {H}\n"));
    assert_eq!(
        msg,
        "DIR/SUMS:1: refusing entry \"/etc/shadow\": absolute path (entries must be relative to the manifest root)"
    );
    let (_, msg) = err_text(&format!("{H}  sub/../../x\n"));
    assert!(msg.contains("escapes the manifest root"), "{msg}");
    // `..` that stays inside the root is normalised, not refused.
    let (_, m) = load_text(&format!("{H}  sub/../x\n"));
    assert_eq!(m.unwrap().entries()[0].name(), Path::new("x"));
    assert_eq!(
        Entry::new("/abs", Digest::of(b"")).unwrap_err(),
        NameError::Absolute
    );
}

#[test]
fn duplicates_are_refused_even_when_spelled_differently() {
    let (e, msg) = err_text(&format!("{H}  a/b\n# c\n{H} *./a//b\n"));
    assert!(matches!(e, ManifestError::Duplicate { first_line: 1, .. }));
    assert_eq!(
        msg,
        "DIR/SUMS:3: duplicate entry for \"a/b\" (first listed on line 1)"
    );
    let mut m = Manifest::new("/tmp");
    m.push(Entry::new("x", Digest::of(b"1")).unwrap()).unwrap();
    assert!(m
        .push(Entry::new("./x", Digest::of(b"2")).unwrap())
        .is_err());
    assert_eq!(m.len(), 1);
}

#[test]
fn empty_and_comment_only_manifests_are_refused() {
    for text in ["", "\n\n", "# nothing here\n"] {
        let (e, msg) = err_text(text);
        assert!(matches!(e, ManifestError::NoEntries { .. }));
        assert_eq!(
            msg,
            "DIR/SUMS: no properly formatted SHA-256 checksum lines found"
        );
    }
    let e = Manifest::load("/nonexistent/dir/SUMS").unwrap_err();
    assert!(matches!(e, ManifestError::Read { .. }));
    assert!(e
        .to_string()
        .starts_with("cannot read manifest /nonexistent/dir/SUMS: "));
}

#[test]
fn missing_and_unreadable_files_are_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("good"), "x").unwrap();
    std::fs::create_dir(root.join("a-directory")).unwrap();
    let fifo = root.join("a-fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink("self-loop", root.join("self-loop")).unwrap();

    let mut m = Manifest::new(root);
    for name in ["good", "gone", "a-directory", "a-fifo", "self-loop"] {
        m.push(Entry::new(name, Digest::of(b"x")).unwrap()).unwrap();
    }
    let report = m.verify();
    assert!(!report.is_ok());
    let outcomes: Vec<String> = report
        .files
        .iter()
        .map(|f| format!("{}: {}", f.name.display(), f.outcome))
        .collect();
    assert_eq!(outcomes[0], "good: OK");
    assert_eq!(outcomes[1], "gone: missing");
    assert_eq!(
        outcomes[2],
        "a-directory: unreadable: is a directory, not a regular file"
    );
    assert_eq!(
        outcomes[3],
        "a-fifo: unreadable: is a FIFO, not a regular file"
    );
    assert!(
        outcomes[4].starts_with("self-loop: unreadable: Too many levels of symbolic links"),
        "{}",
        outcomes[4]
    );
    let c = report.counts();
    assert_eq!((c.ok, c.missing, c.unreadable, c.mismatched), (1, 1, 3, 0));
}

#[test]
fn symlinks_are_skipped_unless_followed_and_loops_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("d/e")).unwrap();
    std::fs::write(root.join("d/e/f"), "f").unwrap();
    std::os::unix::fs::symlink("e/f", root.join("d/link-to-file")).unwrap();

    let created = CreateOptions::new().create(root, ["."]).unwrap();
    let names: Vec<_> = created
        .manifest
        .entries()
        .iter()
        .map(|e| e.name())
        .collect();
    assert_eq!(names, [Path::new("d/e/f")]);
    assert_eq!(created.skipped.len(), 1);
    assert_eq!(created.skipped[0].name, Path::new("d/link-to-file"));
    assert_eq!(created.skipped[0].reason, SkipReason::Symlink);

    let followed = CreateOptions::new()
        .follow_symlinks(true)
        .create(root, ["."])
        .unwrap();
    let names: Vec<_> = followed
        .manifest
        .entries()
        .iter()
        .map(|e| e.name())
        .collect();
    assert_eq!(names, [Path::new("d/e/f"), Path::new("d/link-to-file")]);
    assert_eq!(
        followed.manifest.entries()[0].digest(),
        followed.manifest.entries()[1].digest()
    );

    std::os::unix::fs::symlink("..", root.join("d/e/up")).unwrap();
    let err = CreateOptions::new()
        .follow_symlinks(true)
        .create(root, ["d"])
        .unwrap_err();
    match &err {
        ManifestError::SymlinkLoop { path, ancestor } => {
            assert_eq!(path, &root.join("d/e/up"));
            assert_eq!(ancestor, &root.join("d"));
        }
        other => panic!("expected a loop error, got {other}"),
    }
    // Not following, the loop is just a skipped link.
    let created = CreateOptions::new().create(root, ["d"]).unwrap();
    assert_eq!(created.skipped.len(), 2);

    std::os::unix::fs::symlink("dangling-target", root.join("dangling")).unwrap();
    let err = CreateOptions::new()
        .follow_symlinks(true)
        .create(root, ["dangling"])
        .unwrap_err();
    assert!(matches!(err, ManifestError::Walk { .. }));
}

#[test]
fn create_refuses_paths_outside_the_root_and_errors_on_missing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    let err = Manifest::create(dir.path().join("root"), ["../elsewhere"]).unwrap_err();
    assert!(matches!(err, ManifestError::OutsideRoot { .. }));
    assert!(err.to_string().contains("is outside the manifest root"));
    let err = Manifest::create(dir.path().join("root"), ["nope"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read {}: No such file or directory (os error 2)",
            dir.path().join("root/nope").display()
        )
    );
}

#[test]
fn strict_mode_finds_unlisted_files_but_not_the_manifest_itself() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("lib/real")).unwrap();
    std::fs::write(root.join("lib/real/a.so"), "a").unwrap();
    std::fs::write(root.join("app"), "app").unwrap();
    std::os::unix::fs::symlink("real", root.join("lib/current")).unwrap();

    let m = CreateOptions::new()
        .follow_symlinks(true)
        .create(root, ["."])
        .unwrap()
        .manifest;
    m.save(root.join("SHA256SUMS")).unwrap();
    let m = Manifest::load(root.join("SHA256SUMS")).unwrap();
    assert_eq!(m.len(), 3, "app, lib/current/a.so, lib/real/a.so");
    // Made following links, so verified following links: the link where a listed directory
    // is (lib/current) is then covered. Without following, it is an unlisted file.
    let strict = VerifyOptions::new().strict(true).follow_symlinks(true);
    let report = m.verify_with(&strict);
    assert!(report.is_ok(), "{}", report.describe_failures());
    let report = m.verify_with(&VerifyOptions::new().strict(true));
    assert_eq!(report.extra, [PathBuf::from("lib/current")]);
    assert_eq!(
        report.failures().count(),
        0,
        "lib/current stays inside the root"
    );

    std::fs::write(root.join("lib/real/evil.so"), "evil").unwrap();
    std::fs::write(root.join(".hidden"), "h").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("lib/new-link")).unwrap();
    let report = m.verify_with(&strict);
    assert!(!report.is_ok());
    assert_eq!(
        report.extra,
        [
            PathBuf::from(".hidden"),
            PathBuf::from("lib/new-link"),
            PathBuf::from("lib/real/evil.so"),
        ]
    );
    // Listed files are all still fine, and non-strict mode does not look.
    assert_eq!(report.failures().count(), 0);
    assert!(m.verify().is_ok());
    let report = m.verify_with(&strict.exclude(".hidden"));
    assert_eq!(report.extra.len(), 2);
    assert_eq!(
        report.describe_failures(),
        "lib/new-link: not listed in the manifest\nlib/real/evil.so: not listed in the manifest\n"
    );
}

#[test]
fn mismatch_reports_both_digests() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), "abc").unwrap();
    let m = Manifest::parse(
        format!("{}  f\n", Digest::of(b"abd")).as_bytes(),
        dir.path(),
    )
    .unwrap();
    let report = m.verify();
    match &report.files[0].outcome {
        Outcome::Mismatch { expected, actual } => {
            assert_eq!(*expected, Digest::of(b"abd"));
            assert_eq!(actual.to_hex(), H);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        report.describe_failures(),
        format!(
            "f: digest mismatch (expected {}, got {H})\n",
            Digest::of(b"abd")
        )
    );
}

#[test]
fn many_files_hash_in_parallel_with_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..200 {
        let sub = dir.path().join(format!("d{}", i % 7));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i}")), vec![i as u8; i * 37]).unwrap();
    }
    let one = CreateOptions::new()
        .threads(1)
        .create(dir.path(), ["."])
        .unwrap()
        .manifest;
    let four = CreateOptions::new()
        .threads(4)
        .create(dir.path(), ["."])
        .unwrap()
        .manifest;
    assert_eq!(one.len(), 200);
    assert_eq!(
        one.to_bytes(Default::default()),
        four.to_bytes(Default::default())
    );
    for e in one.entries() {
        let data = std::fs::read(one.path_of(e)).unwrap();
        assert_eq!(*e.digest(), Digest::of(&data));
    }
    let report = four.verify_with(&VerifyOptions::new().threads(3));
    assert_eq!(report.counts().ok, 200);
}
