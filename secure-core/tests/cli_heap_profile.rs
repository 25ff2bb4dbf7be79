//! `secure report html|top|folded`: DHAT heap profiles shown by the `secure` tool, run as a
//! real process: exact output and exit statuses.

use std::path::Path;
use std::process::{Command, Output};

/// Three program points with lifetimes; one frame holds an escape sequence.
const PROFILE: &str = r#"{"dhatFileVersion": 2, "mode": "rust-heap", "verb": "Allocated", "bklt": true, "bkacc": false,
 "tu": "µs", "Mtu": "s", "tuth": 10, "cmd": "demo --serve", "pid": 42, "tg": 40, "te": 90,
 "pps": [
  {"tb": 4096, "tbk": 1, "tl": 50, "mb": 4096, "mbk": 1, "gb": 4096, "gbk": 1, "eb": 0, "ebk": 0, "fs": [1, 2]},
  {"tb": 300, "tbk": 30, "tl": 60, "mb": 40, "mbk": 4, "gb": 20, "gbk": 2, "eb": 10, "ebk": 1, "fs": [3, 2]},
  {"tb": 1000, "tbk": 2, "tl": 7, "mb": 1000, "mbk": 2, "gb": 0, "gbk": 0, "eb": 1000, "ebk": 2, "fs": [4, 3, 2]}],
 "ftbl": ["[root]", "0x10: demo::load_table (src/main.rs:3:5)", "0x20: demo::main (src/main.rs:9:5)",
          "0x30: <demo::Parser as core::iter::Iterator>::next (src/parse.rs:5:9)",
          "0x40: demo::cache \u001b[31m (src/cache.rs:1:1)"]}"#;

/// secalloc's leak-report DHAT output: live bytes only, no lifetimes.
const NO_LIFETIMES: &str = r#"{"dhatFileVersion": 2, "mode": "heap", "verb": "Allocated", "bklt": false,
 "bkacc": false, "bu": "byte", "bsu": "bytes", "bksu": "blocks", "tu": "µs", "Mtu": "s",
 "cmd": "demo", "pid": 7, "te": 1500,
 "pps": [{"tb": 1000, "tbk": 1, "fs": [1, 2]}, {"tb": 40, "tbk": 1, "fs": [3]}],
 "ftbl": ["[root]", "0x1000: demo::load_cache (src/main.rs:12:5)", "0x2000: demo::main (src/main.rs:30:9)",
          "0x3000: demo::node"]}"#;

const HEADER: &str = "\
heap profile of \"demo --serve\" (pid 42, mode rust-heap, with block lifetimes)
total:     5396 bytes in 33 blocks
at t-gmax: 4116 bytes in 3 blocks (at 40 µs)
at t-end:  1010 bytes in 3 blocks (at 90 µs)
";

fn secure(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let o: Output = Command::new(env!("CARGO_BIN_EXE_secure"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dhat.json"), PROFILE).unwrap();
    std::fs::write(dir.path().join("live.json"), NO_LIFETIMES).unwrap();
    dir
}

#[test]
fn top_lists_points_by_each_metric() {
    let dir = files();
    let (code, out, err) = secure(dir.path(), &["report", "top", "dhat.json", "-n", "2"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        format!(
            "{HEADER}
top 2 of 3 program points by total bytes:

#1: 4096 bytes (75.9% of 5396)
    total:     4096 bytes in 1 blocks, average lifetime 50 µs
    max live:  4096 bytes in 1 blocks
    at t-gmax: 4096 bytes in 1 blocks
    at t-end:  0 bytes in 0 blocks
    0x10: demo::load_table (src/main.rs:3:5)
    0x20: demo::main (src/main.rs:9:5)

#2: 1000 bytes (18.5% of 5396)
    total:     1000 bytes in 2 blocks, average lifetime 3.5 µs
    max live:  1000 bytes in 2 blocks
    at t-gmax: 0 bytes in 0 blocks
    at t-end:  1000 bytes in 2 blocks
    0x40: demo::cache \\u{{1b}}[31m (src/cache.rs:1:1)
    0x30: <demo::Parser as core::iter::Iterator>::next (src/parse.rs:5:9)
    0x20: demo::main (src/main.rs:9:5)
"
        )
    );
    // The first line of each entry, by every metric.
    let heads = |by: &str| -> Vec<String> {
        let (code, out, _) = secure(dir.path(), &["report", "top", "dhat.json", "--by", by]);
        assert_eq!(code, 0);
        out.lines()
            .filter(|l| l.starts_with("top ") || l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        heads("blocks"),
        [
            "top 3 of 3 program points by total blocks:",
            "#1: 30 blocks (90.9% of 33)",
            "#2: 2 blocks (6.1% of 33)",
            "#3: 1 blocks (3% of 33)"
        ]
    );
    assert_eq!(
        heads("peak"),
        [
            "top 2 of 3 program points by bytes at the global peak (t-gmax):",
            "#1: 4096 bytes (99.5% of 4116)",
            "#2: 20 bytes (0.5% of 4116)"
        ]
    );
    assert_eq!(
        heads("end"),
        [
            "top 2 of 3 program points by bytes at the end (t-end):",
            "#1: 1000 bytes (99% of 1010)",
            "#2: 10 bytes (1% of 1010)"
        ]
    );
    assert_eq!(
        heads("max"),
        [
            "top 3 of 3 program points by maximum live bytes:",
            "#1: 4096 bytes (79.8% of 5136)",
            "#2: 1000 bytes (19.5% of 5136)",
            "#3: 40 bytes (0.8% of 5136)"
        ]
    );
}

#[test]
fn folded_weighs_stacks_by_the_metric() {
    let dir = files();
    let (code, out, err) = secure(
        dir.path(),
        &["report", "folded", "dhat.json", "--by", "peak"],
    );
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "demo::main;<demo::Parser as core::iter::Iterator>::next 20\ndemo::main;demo::load_table 4096\n"
    );
    let (code, out, _) = secure(dir.path(), &["report", "folded", "dhat.json"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "demo::main;<demo::Parser as core::iter::Iterator>::next 300\n\
         demo::main;<demo::Parser as core::iter::Iterator>::next;demo::cache \u{1b}[31m 1000\n\
         demo::main;demo::load_table 4096\n"
    );
    let (code, _, _) = secure(
        dir.path(),
        &[
            "report",
            "folded",
            "dhat.json",
            "--by",
            "end",
            "-o",
            "end.folded",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("end.folded")).unwrap(),
        "demo::main;<demo::Parser as core::iter::Iterator>::next 10\n\
         demo::main;<demo::Parser as core::iter::Iterator>::next;demo::cache \u{1b}[31m 1000\n"
    );
}

#[test]
fn html_writes_one_self_contained_page() {
    let dir = files();
    let (code, out, err) = secure(
        dir.path(),
        &["report", "html", "dhat.json", "-o", "report.html"],
    );
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>\n"));
    assert_eq!(html.matches("<iframe class=\"flame\"").count(), 2);
    assert!(html.contains("<summary>0x40: demo::cache \u{1b}[31m (src/cache.rs:1:1)</summary>"));
    assert!(html.contains("<summary>0x30: &lt;demo::Parser as core::iter::Iterator&gt;::next (src/parse.rs:5:9)</summary>"));
    let (code, stdout, _) = secure(dir.path(), &["report", "html", "dhat.json"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, html);
    // The checked-in dhat-rs profile too.
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/dhat-heap.json");
    let (code, stdout, _) = secure(dir.path(), &["report", "html", fixture]);
    assert_eq!(code, 0);
    assert!(stdout.contains("<tr><th>Total</th><td>71952 bytes in 24 blocks</td></tr>"));
}

#[test]
fn a_profile_without_lifetimes_shows_totals_and_refuses_the_rest() {
    let dir = files();
    let (code, out, err) = secure(dir.path(), &["report", "top", "live.json"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "heap profile of \"demo\" (pid 7, mode heap, without block lifetimes: totals only)
total:     1040 bytes in 2 blocks

top 2 of 2 program points by total bytes:

#1: 1000 bytes (96.2% of 1040)
    total:     1000 bytes in 1 blocks
    0x1000: demo::load_cache (src/main.rs:12:5)
    0x2000: demo::main (src/main.rs:30:9)

#2: 40 bytes (3.8% of 1040)
    total:     40 bytes in 1 blocks
    0x3000: demo::node
"
    );
    for (cmd, by, what) in [
        ("top", "peak", "bytes at the global peak (t-gmax)"),
        ("folded", "end", "bytes at the end (t-end)"),
        ("folded", "max", "maximum live bytes"),
    ] {
        let (code, out, err) = secure(dir.path(), &["report", cmd, "live.json", "--by", by]);
        assert_eq!((code, out.as_str()), (2, ""));
        assert_eq!(
            err,
            format!(
                "secure: live.json: this profile has no block lifetimes (bklt: false), so it has \
                 no {what}; use total bytes or total blocks (--by total, --by blocks), or record \
                 a profile with lifetimes (dhat-rs, or secalloc with SECALLOC_PROFILE=1)\n"
            )
        );
    }
    let (code, out, _) = secure(dir.path(), &["report", "html", "live.json"]);
    assert_eq!(code, 0);
    assert!(out.contains("This profile has no block lifetimes"));
}

#[test]
fn bad_input_is_a_clear_error_with_status_2() {
    let dir = files();
    let bad = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).unwrap();
        let (code, out, err) = secure(dir.path(), &["report", "top", name]);
        assert_eq!((code, out.as_str()), (2, ""), "{err}");
        err
    };
    assert_eq!(
        bad("truncated.json", &PROFILE[..PROFILE.len() / 2]),
        "secure: truncated.json: invalid DHAT file: EOF while parsing a value at line 5 column 81\n"
    );
    assert_eq!(
        bad(
            "v1.json",
            &PROFILE.replacen("\"dhatFileVersion\": 2", "\"dhatFileVersion\": 1", 1)
        ),
        "secure: v1.json: invalid DHAT file: unsupported dhatFileVersion 1 (expected 2)\n"
    );
    assert_eq!(
        bad(
            "range.json",
            &PROFILE.replacen("\"fs\": [3, 2]", "\"fs\": [3, 9]", 1)
        ),
        "secure: range.json: invalid DHAT file: program point 1: frame index 9 is out of range \
         (ftbl has 5 entries)\n"
    );
    assert_eq!(
        bad(
            "dup.json",
            &PROFILE.replacen("\"fs\": [3, 2]", "\"fs\": [1, 2]", 1)
        ),
        "secure: dup.json: invalid DHAT file: program points 0 and 1 have the same frames (fs), \
         which dh_view.html refuses\n"
    );
    let (code, out, err) = secure(dir.path(), &["report", "html", "missing.json"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err,
        "secure: cannot read missing.json: No such file or directory (os error 2)\n"
    );
    let (code, _, err) = secure(dir.path(), &["report", "folded", "/dev/zero"]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "secure: cannot read /dev/zero: is a character device, not a regular file\n"
    );
    let (code, out, err) = secure(dir.path(), &["report", "top", "dhat.json", "--by", "speed"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(
        err.starts_with("error: invalid value 'speed' for '--by <BY>'\n  [possible values: total, blocks, peak, end, max]\n"),
        "{err}"
    );
}
