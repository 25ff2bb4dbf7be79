//! Builds `examples/lto_wipe_check.rs` in release mode with fat LTO (the workspace's release
//! profile) and runs it: no freed byte may keep its old contents; with the wipe turned off
//! the same probe must find them (so the probe itself is proven to work).

use std::path::PathBuf;
use std::process::Command;

fn build() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = manifest
        .parent()
        .unwrap()
        .join("target")
        .join("lto-wipe-check");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "secalloc",
            "--example",
            "lto_wipe_check",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_PROFILE_RELEASE_LTO", "fat")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .current_dir(&manifest)
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "release build of the LTO wipe check failed"
    );
    target
        .join("release")
        .join("examples")
        .join("lto_wipe_check")
}

fn run(bin: &PathBuf, wipe: &str) -> (usize, usize, usize) {
    let out = Command::new(bin)
        .env("SECALLOC_WIPE", wipe)
        .env("SECALLOC_REPORT", "off")
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| -> usize {
        s.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {s:?}"))
    };
    (field("checked="), field("reused="), field("stale="))
}

#[test]
fn wipe_survives_fat_lto() {
    let bin = build();
    let (checked, reused, stale) = run(&bin, "0");
    assert!(
        reused > 50 && checked > 10_000,
        "the probe must see reused chunks: {reused}"
    );
    assert!(
        stale > checked / 2,
        "with the wipe off the probe sees old bytes: {stale}/{checked}"
    );
    for mode in ["4", "1"] {
        let (checked, reused, stale) = run(&bin, mode);
        assert!(reused > 50, "{reused}");
        assert_eq!(
            stale, 0,
            "SECALLOC_WIPE={mode}: {stale} of {checked} freed bytes kept their contents"
        );
    }
}
