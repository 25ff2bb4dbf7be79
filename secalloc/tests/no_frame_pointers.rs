//! A program built without frame pointers gets no callsite stacks, and every report format
//! says so: text, JSON, DHAT and folded, and `stats().frame_pointers`. Built twice: with the
//! workspace's profile (the allocator at `opt-level = 3`: its start-up probe finds no frame
//! pointers) and with the allocator at `opt-level = 0`, what a user who only adds the
//! dependency gets, where the allocator's own frames keep frame pointers and the probe
//! passes; there the short stack walks must give it away.

use std::path::{Path, PathBuf};
use std::process::Command;

fn build(secalloc_opt_level: &str) -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = manifest
        .parent()
        .unwrap()
        .join("target")
        .join("no-frame-pointers");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "secalloc",
            "--example",
            "no_frame_pointers",
            "--config",
        ])
        .arg(format!(
            "profile.dev.package.secalloc.opt-level={secalloc_opt_level}"
        ))
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_ENCODED_RUSTFLAGS", "")
        .env_remove("RUSTFLAGS")
        .current_dir(&manifest)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "build without frame pointers failed");
    let built = target
        .join("debug")
        .join("examples")
        .join("no_frame_pointers");
    let copy = target.join(format!("no_frame_pointers-O{secalloc_opt_level}"));
    std::fs::copy(&built, &copy).unwrap();
    copy
}

fn run(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_remove("SECALLOC_REPORT")
        .env_remove("SECALLOC_REPORT_FORMAT")
        .env_remove("SECALLOC_REPORT_REACHABLE")
        .env_remove("SECALLOC_STACK_DEPTH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    (
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

/// Replaces the still-reachable figures (what the runtime keeps) with `N`.
fn reachable_as_n(text: &str) -> String {
    let re = regex::Regex::new(r"still reachable: \d+ bytes in \d+ blocks").unwrap();
    let t = re.replace(text, "still reachable: N bytes in N blocks");
    let re = regex::Regex::new(r"(?m)^\d+ byte\(s\) in \d+ block\(s\) still reachable").unwrap();
    re.replace(&t, "N byte(s) in N block(s) still reachable")
        .into_owned()
}

const TEXT: &str = "\
secalloc: 1046 bytes in 2 blocks lost at exit (definitely lost: 1046 bytes in 2 blocks; indirectly lost: 0 bytes in 0 blocks; still reachable: N bytes in N blocks)
secalloc: no callsite stacks: build with -C force-frame-pointers=yes (and SECALLOC_STACK_DEPTH > 0)

Direct leak of 1046 byte(s) in 2 block(s) allocated from:
    (no stack recorded)

N byte(s) in N block(s) still reachable (SECALLOC_REPORT_REACHABLE=1 lists them).

SUMMARY: secalloc: 1046 byte(s) leaked in 2 allocation(s).
";

fn check_every_format(bin: &Path) {
    let (out, err) = run(bin, &["stats"], &[]);
    assert_eq!(out, "frame_pointers=false\n");
    assert_eq!(reachable_as_n(&err), TEXT);

    let (_, folded) = run(bin, &[], &[("SECALLOC_REPORT_FORMAT", "folded")]);
    assert_eq!(
        folded,
        "[no callsite stacks: build with -C force-frame-pointers=yes] 1046\n"
    );

    let (_, json) = run(bin, &[], &[("SECALLOC_REPORT_FORMAT", "json")]);
    let r = json_fields::Doc::parse(&json);
    assert_eq!(r.get("stacks_recorded"), "false");
    assert_eq!(r.get("frame_pointers"), "false");
    assert!(json.contains("\"frames\": []"), "{json}");

    let (_, dhat) = run(bin, &[], &[("SECALLOC_REPORT_FORMAT", "dhat")]);
    assert!(
        dhat.contains(
            "\"ftbl\":[\"[root]\",\"[no callsite stacks: build with -C force-frame-pointers=yes]\"]"
        ),
        "{dhat}"
    );
}

/// The few fields the test reads, found by name in the pretty-printed JSON (this crate has
/// no JSON parser; `secure-core`'s tests parse full reports).
mod json_fields {
    pub struct Doc(String);
    impl Doc {
        pub fn parse(text: &str) -> Doc {
            assert!(
                text.starts_with('{') && text.trim_end().ends_with('}'),
                "{text}"
            );
            Doc(text.to_string())
        }
        pub fn get(&self, key: &str) -> &str {
            let pat = format!("\"{key}\": ");
            let at = self.0.find(&pat).unwrap_or_else(|| panic!("no {key}")) + pat.len();
            let rest = &self.0[at..];
            &rest[..rest.find([',', '\n']).unwrap()]
        }
    }
}

#[test]
fn no_frame_pointers_are_reported_in_every_format() {
    // The allocator at opt-level 0 keeps its own frame pointers: the probe passes, the
    // program's walks break off.
    check_every_format(&build("0"));
    // The workspace's profile: the probe itself finds none.
    check_every_format(&build("3"));
}
