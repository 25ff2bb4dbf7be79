//! Interoperability with GNU `sha256sum`, in both directions, including names with spaces,
//! backslashes, newlines and carriage returns.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use secure_core::manifest::{
    CreateOptions, Digest, Format, Manifest, Mode, Outcome, VerifyOptions,
};

/// Names chosen to exercise every escaping rule of the format.
const NAMES: &[&str] = &[
    "plain.txt",
    "with space",
    " leading space",
    "*star",
    "back\\slash",
    "new\nline",
    "cr\rname",
    "both\\and\nmore",
    "dir/sub/deep.bin",
    "ünïcode.txt",
];

fn sha256sum() -> &'static str {
    let path = "/usr/bin/sha256sum";
    assert!(
        Path::new(path).exists(),
        "these tests need GNU coreutils' {path}"
    );
    path
}

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, name) in NAMES.iter().enumerate() {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("content {i} of {name:?}\n").repeat(i * 50 + 1)).unwrap();
    }
    dir
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(sha256sum())
        .args(args)
        .current_dir(dir)
        .env("LC_ALL", "C")
        .output()
        .unwrap()
}

fn sorted_names() -> Vec<&'static str> {
    let mut names = NAMES.to_vec();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    names
}

#[test]
fn our_manifest_is_byte_identical_to_sha256sum_output() {
    let dir = tree();
    let ours = Manifest::create(dir.path(), ["."]).unwrap();
    let names: Vec<&str> = ours
        .entries()
        .iter()
        .map(|e| e.name().to_str().unwrap())
        .collect();
    assert_eq!(names, sorted_names(), "sorted, root-relative names");

    let mut args = vec!["--"];
    args.extend(sorted_names());
    let theirs = run(dir.path(), &args);
    assert!(theirs.status.success());
    assert_eq!(
        String::from_utf8(ours.to_bytes(Format::Gnu)).unwrap(),
        String::from_utf8(theirs.stdout).unwrap()
    );

    let mut args = vec!["--tag", "--"];
    args.extend(sorted_names());
    let theirs = run(dir.path(), &args);
    assert_eq!(
        String::from_utf8(ours.to_bytes(Format::Bsd)).unwrap(),
        String::from_utf8(theirs.stdout).unwrap()
    );

    let binary = CreateOptions::new()
        .mode(Mode::Binary)
        .create(dir.path(), ["."])
        .unwrap()
        .manifest;
    let mut args = vec!["--binary", "--"];
    args.extend(sorted_names());
    let theirs = run(dir.path(), &args);
    assert_eq!(binary.to_bytes(Format::Gnu), theirs.stdout);
}

#[test]
fn sha256sum_checks_our_manifest_and_finds_tampering() {
    let dir = tree();
    let manifest = Manifest::create(dir.path(), ["."]).unwrap();
    manifest.save(dir.path().join("SHA256SUMS")).unwrap();
    let out = run(dir.path(), &["-c", "SHA256SUMS"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches(": OK\n").count(), NAMES.len(), "{stdout}");
    assert!(stdout.contains("\\new\\nline: OK\n"), "{stdout}");
    // GNU escapes names in `-c` output only when they hold a newline.
    assert!(stdout.contains("back\\slash: OK\n"), "{stdout}");

    std::fs::write(dir.path().join("new\nline"), "tampered").unwrap();
    let out = run(dir.path(), &["-c", "SHA256SUMS"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("\\new\\nline: FAILED\n"), "{stdout}");
}

#[test]
fn we_verify_what_sha256sum_writes_in_every_form() {
    let dir = tree();
    for (flags, mode) in [
        (&[][..], Some(Mode::Text)),
        (&["--binary"][..], Some(Mode::Binary)),
        (&["--tag"][..], None),
    ] {
        let mut args: Vec<&str> = flags.to_vec();
        args.push("--");
        args.extend(NAMES);
        let out = run(dir.path(), &args);
        assert!(out.status.success());
        let manifest_path = dir.path().join("theirs.sha256");
        std::fs::write(&manifest_path, &out.stdout).unwrap();

        let manifest = Manifest::load(&manifest_path).unwrap();
        assert_eq!(manifest.len(), NAMES.len());
        for (entry, name) in manifest.entries().iter().zip(NAMES) {
            assert_eq!(entry.name(), Path::new(name));
            if let Some(mode) = mode {
                assert_eq!(entry.mode(), mode);
            }
        }
        let report = manifest.verify_with(&VerifyOptions::new().strict(true));
        assert!(report.is_ok(), "{flags:?}: {}", report.describe_failures());
    }
}

#[test]
fn crlf_comments_and_upper_case_hex_from_other_tools() {
    let dir = tree();
    let out = run(
        dir.path(),
        &["--", "with space", "back\\slash", "new\nline"],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut edited = String::from("# made on another system\r\n\r\n");
    for line in text.lines() {
        let (hex, rest) = line.split_at(line.find("  ").unwrap());
        edited.push_str(&hex.to_uppercase());
        edited.push_str(rest);
        edited.push_str("\r\n");
    }
    let manifest = Manifest::parse(edited.as_bytes(), dir.path()).unwrap();
    assert_eq!(manifest.len(), 3);
    assert!(manifest.verify().is_ok());
    // The edited file is still acceptable to sha256sum itself.
    std::fs::write(dir.path().join("EDITED"), &edited).unwrap();
    assert!(run(dir.path(), &["-c", "--quiet", "EDITED"])
        .status
        .success());
}

#[test]
fn tampering_found_by_both_tools_agrees() {
    let dir = tree();
    let manifest = Manifest::create(dir.path(), ["dir", "with space"]).unwrap();
    assert_eq!(
        manifest
            .entries()
            .iter()
            .map(|e| e.name().to_path_buf())
            .collect::<Vec<_>>(),
        [
            PathBuf::from("dir/sub/deep.bin"),
            PathBuf::from("with space")
        ]
    );
    std::fs::write(dir.path().join("dir/sub/deep.bin"), "changed").unwrap();
    let report = manifest.verify();
    assert!(!report.is_ok());
    let Outcome::Mismatch { expected, actual } = &report.files[0].outcome else {
        panic!("expected a mismatch, got {:?}", report.files[0].outcome)
    };
    assert_eq!(expected, manifest.entries()[0].digest());
    let theirs = run(dir.path(), &["dir/sub/deep.bin"]);
    let theirs = String::from_utf8(theirs.stdout).unwrap();
    assert_eq!(&theirs[..64], actual.to_hex());
    assert!(report.files[1].outcome.is_ok());
}

#[test]
fn non_utf8_names_round_trip_byte_for_byte() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let raw: &[u8] = b"latin1-caf\xe9\\x";
    std::fs::write(dir.path().join(OsStr::from_bytes(raw)), "bytes").unwrap();
    let ours = Manifest::create(dir.path(), ["."]).unwrap();
    let theirs = Command::new(sha256sum())
        .arg("--")
        .arg(OsStr::from_bytes(raw))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(theirs.status.success());
    assert_eq!(ours.to_bytes(Format::Gnu), theirs.stdout);
    let back = Manifest::parse(&theirs.stdout, dir.path()).unwrap();
    assert_eq!(back.entries()[0].name().as_os_str().as_bytes(), raw);
    assert!(back.verify().is_ok());
}

/// The separators between digest and name that GNU `sha256sum -c` accepts (a tab like a space;
/// one separator without a mode character, as `md5sum -r` writes) are read the same here:
/// for each text, the files both tools find OK are the same, and a text we refuse is one
/// sha256sum calls improperly formatted.
#[test]
fn separators_are_read_as_sha256sum_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let files = ["a", " a", "\ta", "*a", "b"];
    for name in files {
        std::fs::write(dir.path().join(name), format!("file {name:?}\n")).unwrap();
    }
    let hex = |name: &str| Digest::of(format!("file {name:?}\n").as_bytes()).to_hex();
    let (a, b) = (hex("a"), hex("b"));
    let (sa, ta) = (hex(" a"), hex("\ta"));
    let texts = [
        format!("{a}\ta\n"),
        format!("{a}\t a\n"),
        format!("{a}\t*a\n"),
        format!("{ta} \ta\n"),
        format!("{ta}\t\ta\n"),
        format!("{a} a\n{b} b\n"),
        format!("{a} a\n{sa}  a\n"),
        format!("{a}\ta\n{b}  b\n"),
        format!("{a}  a\n{b} b\n"),
        format!("{a}  a\n{b}\tb\n"),
    ];
    for text in &texts {
        std::fs::write(dir.path().join("SUMS"), text).unwrap();
        let theirs = run(dir.path(), &["-c", "SUMS"]);
        let stdout = String::from_utf8_lossy(&theirs.stdout);
        let mut their_ok: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_suffix(": OK"))
            .collect();
        their_ok.sort();
        let stderr = String::from_utf8_lossy(&theirs.stderr);
        match Manifest::parse(text.as_bytes(), dir.path()) {
            Ok(m) => {
                let report = m.verify();
                let mut ours: Vec<String> = report
                    .files
                    .iter()
                    .filter(|f| f.outcome.is_ok())
                    .map(|f| f.name.to_string_lossy().into_owned())
                    .collect();
                ours.sort();
                assert_eq!(ours, their_ok, "{text:?}");
                assert!(
                    !stderr.contains("improperly formatted"),
                    "{text:?}: {stderr}"
                );
            }
            Err(e) => assert!(
                stderr.contains("1 line is improperly formatted"),
                "{text:?}: we refuse ({e}) but sha256sum says {stderr:?}"
            ),
        }
    }
}
