//! `secure report convert`: a JSON leak report to text, DHAT, folded stacks and SVG.

use std::process::Command;

const REPORT: &str = r#"{
  "format": "secalloc-report", "version": 1, "command": "demo", "pid": 7, "elapsed_us": 1500,
  "at_exit": true, "stacks_recorded": true, "total_bytes": 1544, "total_blocks": 3,
  "callsites": [
    {"bytes": 1000, "blocks": 1, "largest_block": 1000, "scopes": ["load"], "kind": "definitely_lost",
     "frames": [
       {"ip": 4096, "function": "demo::load_cache", "file": "src/main.rs", "line": 12, "column": 5, "inlined": false},
       {"ip": 8192, "function": "demo::main", "file": "src/main.rs", "line": 30, "column": 9, "inlined": false}]},
    {"bytes": 40, "blocks": 1, "largest_block": 40, "scopes": [], "kind": "indirectly_lost",
     "frames": [{"ip": 12288, "function": "demo::node; with [u8; 4]", "file": null, "line": null, "column": null, "inlined": false}]}
  ],
  "scopes": [{"name": "load", "bytes": 1000, "blocks": 1}],
  "leak_check": {"definitely_lost_bytes": 1000, "definitely_lost_blocks": 1, "indirectly_lost_bytes": 40,
                 "indirectly_lost_blocks": 1, "still_reachable_bytes": 504, "still_reachable_blocks": 1},
  "stats": {"live_bytes": 1544, "live_blocks": 3, "total_allocated_bytes": 9000, "total_allocations": 30,
            "total_freed_bytes": 7456, "total_frees": 27, "reallocations": 2, "peak_live_bytes": 5000,
            "wiped_bytes": 7600, "unique_stacks": 9, "frame_pointers": true, "short_stacks": 0,
            "corruptions_detected": 0, "metadata_bytes": 65536}
}"#;

fn convert(to: &str, input: &std::path::Path) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_secure"))
        .args(["report", "convert"])
        .arg(input)
        .args(["--to", to])
        .output()
        .unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn converts_to_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("leaks.json");
    std::fs::write(&input, REPORT).unwrap();

    let (code, text, _) = convert("text", &input);
    assert_eq!(code, 0);
    assert!(text.starts_with("secalloc: 1040 bytes in 2 blocks lost at exit (definitely lost: 1000 bytes in 1 blocks;"), "{text}");
    assert!(text.contains("Direct leak of 1000 byte(s) in 1 block(s) allocated from: (scope: load)\n    #0 0x1000 in demo::load_cache src/main.rs:12:5\n    #1 0x2000 in demo::main src/main.rs:30:9\n"), "{text}");
    assert!(text.contains("Indirect leak of 40 byte(s)"), "{text}");
    assert!(
        text.ends_with("SUMMARY: secalloc: 1040 byte(s) leaked in 2 allocation(s).\n"),
        "{text}"
    );

    let (code, folded, _) = convert("folded", &input);
    assert_eq!(code, 0);
    assert_eq!(
        folded,
        "demo::main;demo::load_cache 1000\ndemo::node, with [u8, 4] 40\n"
    );

    let (code, dhat, _) = convert("dhat", &input);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&dhat).unwrap();
    assert_eq!(v["dhatFileVersion"], 2);
    assert_eq!(v["ftbl"][0], "[root]");
    assert_eq!(v["ftbl"][1], "0x1000: demo::load_cache (src/main.rs:12:5)");
    assert_eq!(v["pps"][0]["tb"], 1000);
    assert_eq!(v["pps"][0]["fs"], serde_json::json!([1, 2]));

    let (code, svg, _) = convert("svg", &input);
    assert_eq!(code, 0);
    assert!(
        svg.starts_with("<?xml") && svg.contains("<svg"),
        "{}",
        &svg[..200.min(svg.len())]
    );
    assert!(svg.contains("demo::load_cache"));

    let out = dir.path().join("copy.json");
    let o = Command::new(env!("CARGO_BIN_EXE_secure"))
        .args(["report", "convert"])
        .arg(&input)
        .args(["--to", "json", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success());
    let back =
        secure_core::leak_report::from_json(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(back, secure_core::leak_report::from_json(REPORT).unwrap());
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("not-a-report.json");
    std::fs::write(&p, r#"{"format": "something-else", "version": 1}"#).unwrap();
    let (code, out, err) = convert("text", &p);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(
        err.starts_with("secure: ") && err.contains("invalid secalloc report"),
        "{err}"
    );
    std::fs::write(&p, "not json at all").unwrap();
    let (code, _, err) = convert("text", &p);
    assert_eq!(code, 2);
    assert!(err.contains("invalid secalloc report"), "{err}");
    // A text report (as a program printed it at exit) gets a hint to write JSON.
    let text_report = "\
some output of the program
secalloc: 24 bytes in 1 blocks lost at exit (definitely lost: 24 bytes in 1 blocks; indirectly lost: 0 bytes in 0 blocks; still reachable: 0 bytes in 0 blocks)

Direct leak of 24 byte(s) in 1 block(s) allocated from:
    #0 0x1000 in demo::main src/main.rs:3:5

SUMMARY: secalloc: 24 byte(s) leaked in 1 allocation(s).
";
    std::fs::write(&p, text_report).unwrap();
    let (code, out, err) = convert("folded", &p);
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err,
        format!(
            "secure: {}: invalid secalloc report: this is a text report, which cannot be converted; \
             write the report as JSON with SECALLOC_REPORT_FORMAT=json (or LeakReport::write_json) \
             and convert that\n",
            p.display()
        )
    );
    let (code, _, err) = convert("text", &dir.path().join("missing.json"));
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"), "{err}");
}
