//! Verification never follows a symbolic link out of the manifest root unless asked to: a link
//! planted inside the root (for a file, or for a directory on a listed path) makes the listed
//! name fail, and no digest of the outside file appears in any report, error, lockout marker
//! or audit event. Links that stay inside the root keep working.

#![cfg(unix)]

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::Command;

use secure_core::audit::{self, AuditConfig};
use secure_core::integrity::{IntegrityLock, Problem};
use secure_core::manifest::{Digest, Entry, Manifest, Outcome, VerifyOptions};

const SECRET: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n";
const APP: &[u8] = b"the application\n";

/// `base/outside/secret.txt` outside the root `base/root`, which holds a real file, links out
/// of it (relative, absolute, to a directory) and a link that stays inside.
struct Tree {
    base: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let base = tempfile::tempdir().unwrap();
        let b = base.path();
        std::fs::create_dir_all(b.join("outside")).unwrap();
        std::fs::write(b.join("outside/secret.txt"), SECRET).unwrap();
        std::fs::create_dir_all(b.join("root/releases/v2")).unwrap();
        std::fs::write(b.join("root/releases/v2/app.bin"), APP).unwrap();
        std::fs::write(b.join("root/app.conf"), b"port = 1\n").unwrap();
        symlink("releases/v2", b.join("root/current")).unwrap();
        symlink("../outside/secret.txt", b.join("root/link.txt")).unwrap();
        symlink(b.join("outside/secret.txt"), b.join("root/abs.txt")).unwrap();
        symlink("../outside", b.join("root/linkdir")).unwrap();
        Tree { base }
    }

    fn root(&self) -> PathBuf {
        self.base.path().join("root")
    }

    /// A manifest listing `names`, each with the digest an attacker would want to match: the
    /// outside secret's for the links out, the real content's for the rest.
    fn manifest(&self, names: &[&str]) -> Manifest {
        let mut m = Manifest::new(self.root());
        for name in names {
            let digest = match *name {
                "current/app.bin" | "releases/v2/app.bin" => Digest::of(APP),
                "app.conf" => Digest::of(b"port = 1\n"),
                _ => Digest::of(SECRET),
            };
            m.push(Entry::new(name, digest).unwrap()).unwrap();
        }
        m
    }
}

fn secret_hex() -> String {
    Digest::of(SECRET).to_hex()
}

#[test]
fn links_out_of_the_root_fail_links_inside_verify() {
    let t = Tree::new();
    let m = t.manifest(&[
        "app.conf",
        "current/app.bin",
        "link.txt",
        "abs.txt",
        "linkdir/secret.txt",
    ]);
    let report = m.verify();
    let outcomes: Vec<String> = report
        .files
        .iter()
        .map(|f| format!("{}: {}", f.name.display(), f.outcome))
        .collect();
    let abs = t.base.path().join("outside/secret.txt");
    assert_eq!(
        outcomes,
        [
            "app.conf: OK".to_owned(),
            "current/app.bin: OK".to_owned(),
            "link.txt: refused: link.txt is a symbolic link to ../outside/secret.txt, outside the manifest root".to_owned(),
            format!("abs.txt: refused: abs.txt is a symbolic link to {}, outside the manifest root", abs.display()),
            "linkdir/secret.txt: refused: linkdir is a symbolic link to ../outside, outside the manifest root".to_owned(),
        ]
    );
    assert!(!report.is_ok());
    assert_eq!(report.counts().outside_root, 3);
    assert!(matches!(report.files[2].outcome, Outcome::OutsideRoot(_)));

    // Asked for explicitly, links are followed anywhere (as `sha256sum -c` does).
    let followed = m.verify_with(&VerifyOptions::new().follow_symlinks(true));
    assert!(followed.is_ok(), "{}", followed.describe_failures());
}

#[test]
fn no_digest_of_an_outside_file_is_ever_reported() {
    let t = Tree::new();
    // The manifest was made when link.txt was a real file; it was then swapped for a link.
    let mut m = Manifest::new(t.root());
    m.push(Entry::new("link.txt", Digest::of(b"original\n")).unwrap())
        .unwrap();
    m.push(Entry::new("linkdir/secret.txt", Digest::of(b"original\n")).unwrap())
        .unwrap();
    let report = m.verify_with(&VerifyOptions::new().strict(true));
    let text = format!("{}{report:?}", report.describe_failures());
    assert!(!text.contains(&secret_hex()), "{text}");
    assert!(
        text.contains("link.txt: refused: link.txt is a symbolic link"),
        "{text}"
    );
}

#[test]
fn strict_reports_a_link_where_a_listed_directory_was() {
    let t = Tree::new();
    let root = t.root();
    // releases/v2 was a listed directory; it is replaced by a link to a copy inside the root.
    std::fs::create_dir_all(root.join("copy")).unwrap();
    std::fs::write(root.join("copy/app.bin"), APP).unwrap();
    for name in ["current", "link.txt", "abs.txt", "linkdir"] {
        std::fs::remove_file(root.join(name)).unwrap();
    }
    let m = t.manifest(&["app.conf", "releases/v2/app.bin"]);
    std::fs::remove_dir_all(root.join("releases/v2")).unwrap();
    symlink("../copy", root.join("releases/v2")).unwrap();
    let report = m.verify_with(&VerifyOptions::new().strict(true));
    assert_eq!(
        report.extra,
        [PathBuf::from("copy/app.bin"), PathBuf::from("releases/v2")]
    );
    let followed = m.verify_with(&VerifyOptions::new().strict(true).follow_symlinks(true));
    assert_eq!(followed.extra, [PathBuf::from("copy/app.bin")]);
}

#[test]
fn cli_verify_fails_each_link_out_with_its_reason() {
    let t = Tree::new();
    let root = t.root();
    let m = t.manifest(&[
        "app.conf",
        "current/app.bin",
        "link.txt",
        "linkdir/secret.txt",
    ]);
    m.save(root.join("SHA256SUMS")).unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_secure"))
            .args(args)
            .current_dir(&root)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        )
    };
    let (code, out, err) = run(&["manifest", "verify", "--no-progress", "SHA256SUMS"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        out,
        "app.conf: OK\ncurrent/app.bin: OK\nlink.txt: FAILED outside the root\n\
         linkdir/secret.txt: FAILED outside the root\n"
    );
    assert_eq!(
        err,
        "secure: link.txt: link.txt is a symbolic link to ../outside/secret.txt, outside the \
         manifest root; not followed (use --follow-symlinks to follow links out of the root)\n\
         secure: linkdir/secret.txt: linkdir is a symbolic link to ../outside, outside the \
         manifest root; not followed (use --follow-symlinks to follow links out of the root)\n\
         secure: WARNING: 2 listed files lead out of the root through a symbolic link\n"
    );
    let (code, out, _) = run(&["manifest", "verify", "--follow-symlinks", "SHA256SUMS"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("link.txt: OK\n"), "{out}");
}

#[test]
fn integrity_lock_refuses_a_listed_file_swapped_for_a_link_out() {
    let t = Tree::new();
    let root = t.root();
    // Not in the temporary directory: the logger flushes once more at exit, after it is gone.
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("manifest_symlinks-{}.jsonl", std::process::id()));
    audit::init(AuditConfig::jsonl(&log)).unwrap();
    std::fs::write(root.join("secrets.toml"), b"original\n").unwrap();
    let mut m = t.manifest(&["app.conf"]);
    m.push(Entry::new("secrets.toml", Digest::of(b"original\n")).unwrap())
        .unwrap();
    m.save(root.join("SHA256SUMS")).unwrap();
    let m = Manifest::load(root.join("SHA256SUMS")).unwrap();
    let lock = IntegrityLock::new(m);
    assert!(lock.check().is_ok());
    std::fs::remove_file(root.join("secrets.toml")).unwrap();
    symlink("../outside/secret.txt", root.join("secrets.toml")).unwrap();

    // A verified read of the swapped file is refused without reading outside.
    let reader = IntegrityLock::new(Manifest::load(root.join("SHA256SUMS")).unwrap())
        .lockout_marker(t.base.path().join("reader.lockout"));
    let e = reader.read_verified("secrets.toml").unwrap_err();
    assert_eq!(
        e.violation().failures[0].problem,
        Problem::OutsideRoot(
            "secrets.toml is a symbolic link to ../outside/secret.txt, outside the manifest root"
                .into()
        )
    );

    let e = lock.check().unwrap_err();
    let text = e.to_string();
    assert_eq!(
        text,
        "integrity violation in a pre-operation check: secrets.toml: refused: secrets.toml is a \
         symbolic link to ../outside/secret.txt, outside the manifest root"
    );
    audit::flush().unwrap();
    let marker = std::fs::read_to_string(lock.marker_path()).unwrap();
    assert!(marker.contains(r#""problem":"outside_root""#), "{marker}");
    let audit_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        audit_log.contains(r#""problem":"outside_root""#),
        "{audit_log}"
    );
    for (what, text) in [
        ("error", &text),
        ("marker", &marker),
        ("audit log", &audit_log),
    ] {
        assert!(
            !text.contains(&secret_hex()),
            "{what} discloses the outside digest: {text}"
        );
    }

    // Following links is an explicit choice of the program.
    let follows = IntegrityLock::new(Manifest::load(root.join("SHA256SUMS")).unwrap())
        .follow_symlinks(true)
        .lockout_marker(t.base.path().join("follow.lockout"));
    let e = follows.check().unwrap_err();
    assert!(e.to_string().contains("digest mismatch"), "{e}");
}
