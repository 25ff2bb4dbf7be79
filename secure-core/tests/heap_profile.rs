//! `secure_core::heap_profile`: a real dhat-rs profile (tests/data/dhat-heap.json, written by
//! tests/heap_profile_dhat.rs), secalloc's DHAT output without lifetimes, malformed files, and
//! the HTML report's well-formedness and escaping.

use quick_xml::events::Event;
use secure_core::heap_profile::{HeapProfile, Metric, ProfileError};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/dhat-heap.json");

fn fixture() -> HeapProfile {
    HeapProfile::read(FIXTURE.as_ref()).expect("the dhat-rs fixture reads")
}

/// A small profile with lifetimes; `pps` and `ftbl` are JSON text.
fn with_lifetimes(pps: &str, ftbl: &str) -> String {
    format!(
        r#"{{"dhatFileVersion": 2, "mode": "rust-heap", "verb": "Allocated", "bklt": true,
        "bkacc": false, "tu": "µs", "Mtu": "s", "tuth": 10, "cmd": "demo --flag", "pid": 42,
        "tg": 40, "te": 90, "pps": {pps}, "ftbl": {ftbl}}}"#
    )
}

fn pp(tb: u64, tbk: u64, gb: u64, eb: u64, mb: u64, fs: &str) -> String {
    format!(
        r#"{{"tb": {tb}, "tbk": {tbk}, "tl": {}, "mb": {mb}, "mbk": 1, "gb": {gb}, "gbk": {},
        "eb": {eb}, "ebk": {}, "fs": {fs}}}"#,
        tbk * 5,
        u64::from(gb > 0),
        u64::from(eb > 0)
    )
}

fn err(text: &str) -> String {
    match HeapProfile::from_json(text) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => {
            assert!(matches!(e, ProfileError::Invalid(_)), "{e:?}");
            e.to_string()
        }
    }
}

#[test]
fn the_dhat_rs_fixture_reads_with_every_figure() {
    let p = fixture();
    assert_eq!(
        (
            p.mode.as_str(),
            p.verb.as_str(),
            p.has_lifetimes,
            p.has_accesses
        ),
        ("rust-heap", "Allocated", true, false)
    );
    assert_eq!(
        (p.time_unit.as_str(), p.long_time_unit.as_str()),
        ("µs", "s")
    );
    assert_eq!(
        (p.short_lived_threshold, p.peak_time, p.end_time, p.pid),
        (Some(10), Some(51), 147, 1108)
    );
    assert_eq!((p.points.len(), p.frame_table.len()), (5, 47));
    assert_eq!(p.frame(0), "[root]");
    // What dhat-rs printed when it wrote the file: "Total: 71,952 bytes in 24 blocks",
    // "At t-gmax: 69,632 bytes in 2 blocks", "At t-end: 4,896 bytes in 2 blocks".
    assert_eq!(p.total(), (71952, 24));
    assert_eq!(p.at_peak(), Some((69632, 2)));
    assert_eq!(p.at_end(), Some((4896, 2)));

    let site = |m: Metric, n: usize| -> Vec<(u64, String)> {
        p.top(m, n)
            .unwrap()
            .into_iter()
            .map(|pp| {
                let site = secure_core::heap_profile::frame_function(p.allocation_site(pp));
                (m.of(pp).unwrap(), site.to_string())
            })
            .collect()
    };
    let s = |v: &[(u64, &str)]| -> Vec<(u64, String)> {
        v.iter().map(|&(n, f)| (n, f.to_string())).collect()
    };
    assert_eq!(
        site(Metric::TotalBytes, 10),
        s(&[
            (65536, "heap_profile_dhat::peak_buffer"),
            (4096, "heap_profile_dhat::load_table"),
            (800, "heap_profile_dhat::main"),
            (
                800,
                "<heap_profile_dhat::Table as core::clone::Clone>::clone"
            ),
            (720, "heap_profile_dhat::parse_lines"),
        ])
    );
    assert_eq!(
        site(Metric::TotalBlocks, 1),
        s(&[(20, "heap_profile_dhat::parse_lines")])
    );
    assert_eq!(
        site(Metric::PeakBytes, 10),
        s(&[
            (65536, "heap_profile_dhat::peak_buffer"),
            (4096, "heap_profile_dhat::load_table"),
        ])
    );
    assert_eq!(
        site(Metric::EndBytes, 10),
        s(&[
            (4096, "heap_profile_dhat::load_table"),
            (
                800,
                "<heap_profile_dhat::Table as core::clone::Clone>::clone"
            ),
        ])
    );
    assert_eq!(
        site(Metric::MaxBytes, 10)[4],
        (48, "heap_profile_dhat::parse_lines".into())
    );
    assert_eq!(
        p.metric_total(Metric::MaxBytes).unwrap(),
        65536 + 4096 + 800 + 800 + 48
    );

    let alloc_path = "alloc::vec::from_elem;<u8 as alloc::vec::spec_from_elem::SpecFromElem>::\
        from_elem;alloc::vec::Vec<T,A>::with_capacity_in;alloc::raw_vec::RawVec<T,A>::\
        with_capacity_in;alloc::raw_vec::RawVecInner<A>::with_capacity_in;alloc::raw_vec::\
        RawVecInner<A>::try_allocate_in;<dhat::Alloc as core::alloc::global::GlobalAlloc>::alloc";
    assert_eq!(
        p.folded(Metric::PeakBytes).unwrap(),
        [
            format!("heap_profile_dhat::main;heap_profile_dhat::load_table;{alloc_path} 4096"),
            format!("heap_profile_dhat::main;heap_profile_dhat::peak_buffer;{alloc_path} 65536"),
        ]
    );
    let folded = p.folded(Metric::TotalBytes).unwrap();
    assert_eq!(folded.len(), 5);
    let sum: u64 = folded
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(sum, 71952);
}

#[test]
fn top_breaks_ties_by_total_bytes_then_file_order_and_leaves_out_zeros() {
    let text = with_lifetimes(
        &format!(
            "[{}, {}, {}, {}]",
            pp(10, 1, 5, 0, 5, "[1]"),
            pp(30, 1, 5, 0, 5, "[2]"),
            pp(10, 1, 5, 0, 5, "[3]"),
            pp(99, 1, 0, 0, 5, "[4]")
        ),
        r#"["[root]", "a", "b", "c", "d"]"#,
    );
    let p = HeapProfile::from_json(&text).unwrap();
    let order: Vec<usize> = p
        .top(Metric::PeakBytes, 10)
        .unwrap()
        .into_iter()
        .map(|pp| pp.frames[0])
        .collect();
    assert_eq!(order, [2, 1, 3]);
    assert_eq!(p.top(Metric::EndBytes, 10).unwrap(), Vec::<&_>::new());
    assert_eq!(p.top(Metric::TotalBytes, 2).unwrap().len(), 2);
}

#[test]
fn folded_stacks_merge_equal_names_and_keep_separators_out() {
    // Two points whose frames differ only in address and line fold into one stack; `;` in
    // a function name becomes `,`.
    let text = with_lifetimes(
        &format!(
            "[{}, {}, {}]",
            pp(10, 1, 0, 0, 10, "[1, 3]"),
            pp(5, 1, 0, 0, 5, "[2, 3]"),
            pp(7, 1, 0, 0, 7, "[]")
        ),
        r#"["[root]", "0x10: demo::alloc_here (src/main.rs:3:5)",
            "0x18: demo::alloc_here (src/main.rs:4:5)", "0x20: demo::main; [u8; 4] (src/main.rs:9:1)"]"#,
    );
    let p = HeapProfile::from_json(&text).unwrap();
    assert_eq!(
        p.folded(Metric::TotalBytes).unwrap(),
        ["[no frames] 7", "demo::main, [u8, 4];demo::alloc_here 15"]
    );
    assert_eq!(p.folded(Metric::EndBytes).unwrap(), Vec::<String>::new());
}

#[test]
fn secalloc_dhat_output_without_lifetimes_reads_and_says_what_it_lacks() {
    let report = secure_core::leak_report::from_json(SECALLOC_REPORT).unwrap();
    let mut out = Vec::new();
    report.write_dhat(&mut out).unwrap();
    let p = HeapProfile::from_json(std::str::from_utf8(&out).unwrap()).unwrap();
    assert!(!p.has_lifetimes);
    assert_eq!((p.mode.as_str(), p.command.as_str()), ("heap", "demo"));
    assert_eq!(p.total(), (1040, 2));
    assert_eq!((p.at_peak(), p.at_end(), p.peak_time), (None, None, None));
    assert!(p.points.iter().all(|pp| pp.lifetimes.is_none()));
    assert_eq!(
        p.folded(Metric::TotalBytes).unwrap(),
        ["demo::main;demo::load_cache 1000", "demo::node 40"]
    );
    for m in [Metric::PeakBytes, Metric::EndBytes, Metric::MaxBytes] {
        let e = p.top(m, 5).unwrap_err();
        assert!(matches!(e, ProfileError::NoLifetimes(x) if x == m));
        assert!(p.folded(m).is_err());
    }
    assert_eq!(
        p.top(Metric::PeakBytes, 5).unwrap_err().to_string(),
        "this profile has no block lifetimes (bklt: false), so it has no bytes at the global \
         peak (t-gmax); use total bytes or total blocks (--by total, --by blocks), or record a \
         profile with lifetimes (dhat-rs, or secalloc with SECALLOC_PROFILE=1)"
    );
    let mut html = Vec::new();
    p.write_html(&mut html).unwrap();
    let html = String::from_utf8(html).unwrap();
    check_well_formed(&html);
    assert!(html.contains("<p class=\"note\">This profile has no block lifetimes"));
    assert!(html.contains("<h2>Live at the global peak (t-gmax)</h2>\n<p>Not available: the profile has no block lifetimes.</p>"));
    assert_eq!(
        html.matches("<iframe").count(),
        1,
        "only the total-bytes graph"
    );
    assert!(!html.contains("bytes at t-gmax</th>"));
    assert!(html
        .contains("<th class=\"sortable sorted\" title=\"sort by total bytes\">total bytes</th>"));
}

/// A secalloc JSON leak report (the one tests/cli_report.rs converts).
const SECALLOC_REPORT: &str = r#"{
  "format": "secalloc-report", "version": 1, "command": "demo", "pid": 7, "elapsed_us": 1500,
  "at_exit": true, "stacks_recorded": true, "total_bytes": 1040, "total_blocks": 2,
  "callsites": [
    {"bytes": 1000, "blocks": 1, "largest_block": 1000, "scopes": [], "kind": "definitely_lost",
     "frames": [
       {"ip": 4096, "function": "demo::load_cache", "file": "src/main.rs", "line": 12, "column": 5, "inlined": false},
       {"ip": 8192, "function": "demo::main", "file": "src/main.rs", "line": 30, "column": 9, "inlined": false}]},
    {"bytes": 40, "blocks": 1, "largest_block": 40, "scopes": [], "kind": "indirectly_lost",
     "frames": [{"ip": 12288, "function": "demo::node", "file": null, "line": null, "column": null, "inlined": false}]}
  ],
  "scopes": [],
  "stats": {"live_bytes": 1040, "live_blocks": 2, "total_allocated_bytes": 9000, "total_allocations": 30,
            "total_freed_bytes": 7960, "total_frees": 28, "reallocations": 2, "peak_live_bytes": 5000,
            "wiped_bytes": 7600, "unique_stacks": 9, "frame_pointers": true, "short_stacks": 0,
            "corruptions_detected": 0, "metadata_bytes": 65536}
}"#;

#[test]
fn malformed_files_are_clear_errors() {
    let good = std::fs::read_to_string(FIXTURE).unwrap();
    // Truncated anywhere: never a panic, always an error.
    for cut in (0..good.len())
        .step_by(97)
        .filter(|&c| good.is_char_boundary(c))
    {
        assert!(
            HeapProfile::from_json(&good[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let cut = good.find("\"pps\"").unwrap() + 20;
    assert!(
        err(&good[..cut]).starts_with("invalid DHAT file: EOF while parsing"),
        "{}",
        err(&good[..cut])
    );
    assert_eq!(
        err(""),
        "invalid DHAT file: EOF while parsing a value at line 1 column 0"
    );
    assert_eq!(
        err("not json"),
        "invalid DHAT file: expected ident at line 1 column 2"
    );
    assert_eq!(
        err("[1, 2]"),
        "invalid DHAT file: not a JSON object: not a DHAT file"
    );
    assert_eq!(
        err("{}"),
        "invalid DHAT file: no dhatFileVersion: not a DHAT file"
    );
    assert_eq!(
        err(&good.replacen("\"dhatFileVersion\": 2", "\"dhatFileVersion\": 3", 1)),
        "invalid DHAT file: unsupported dhatFileVersion 3 (expected 2)"
    );
    assert_eq!(
        err(&good.replacen("\"dhatFileVersion\": 2", "\"dhatFileVersion\": \"2\"", 1)),
        "invalid DHAT file: unsupported dhatFileVersion \"2\" (expected 2)"
    );
    assert_eq!(
        err(&good.replacen("\"te\": 147", "\"te\": -1", 1)),
        "invalid DHAT file: invalid value: integer `-1`, expected u64 at line 13 column 8"
    );
    assert_eq!(
        err(&good.replacen("\"cmd\":", "\"command\":", 1)),
        "invalid DHAT file: missing field `cmd` at line 179 column 1"
    );
    assert_eq!(
        err(SECALLOC_REPORT),
        "invalid DHAT file: this is a secalloc leak report, not a DHAT file; convert it with \
         `secure report convert --to dhat`, or write a heap profile with SECALLOC_PROFILE=1"
    );

    let ftbl = r#"["[root]", "a", "b"]"#;
    assert_eq!(
        err(&with_lifetimes(
            &format!("[{}]", pp(1, 1, 0, 0, 1, "[1, 3]")),
            ftbl
        )),
        "invalid DHAT file: program point 0: frame index 3 is out of range (ftbl has 3 entries)"
    );
    assert_eq!(
        err(&with_lifetimes(
            &format!(
                "[{}, {}, {}]",
                pp(1, 1, 0, 0, 1, "[1, 2]"),
                pp(1, 1, 0, 0, 1, "[2]"),
                pp(1, 1, 0, 0, 1, "[1, 2]")
            ),
            ftbl
        )),
        "invalid DHAT file: program points 0 and 2 have the same frames (fs), which dh_view.html \
         refuses"
    );
    assert_eq!(
        err(&with_lifetimes("[]", r#"["a"]"#)),
        "invalid DHAT file: ftbl[0] is \"a\", expected \"[root]\""
    );
    assert_eq!(
        err(&with_lifetimes("[]", "[]")),
        "invalid DHAT file: the frame table (ftbl) is empty, expected \"[root]\" first"
    );
    assert_eq!(
        err(&with_lifetimes(
            r#"[{"tb": 1, "tbk": 1, "tl": 1, "mb": 1, "mbk": 1, "gbk": 0, "eb": 0, "ebk": 0, "fs": [1]}]"#,
            ftbl
        )),
        "invalid DHAT file: program point 0: gb is missing (required when bklt is true)"
    );
    assert_eq!(
        err(&with_lifetimes("[]", ftbl).replacen("\"tg\": 40,", "", 1)),
        "invalid DHAT file: bklt is true but the time of the global peak (tg) is missing"
    );
    assert_eq!(
        err(&with_lifetimes("[]", ftbl).replacen("\"tuth\": 10,", "", 1)),
        "invalid DHAT file: bklt is true but the short-lived threshold (tuth) is missing"
    );
}

#[test]
fn unreadable_files_name_the_file_and_the_reason() {
    let e = HeapProfile::read("/nonexistent/dhat-heap.json".as_ref()).unwrap_err();
    assert!(matches!(e, ProfileError::Read { .. }));
    assert_eq!(
        e.to_string(),
        "cannot read /nonexistent/dhat-heap.json: No such file or directory (os error 2)"
    );
    let e = HeapProfile::read("/dev/zero".as_ref()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot read /dev/zero: is a character device, not a regular file"
    );
}

/// Parses `xml` with quick-xml (end tags must match their start tags, entities must be
/// known) and returns the text of every element named `name`, unescaped, and every value of
/// the attribute `attr`, unescaped.
fn check_well_formed_collect(xml: &str, name: &[u8], attr: &[u8]) -> (Vec<String>, Vec<String>) {
    let mut r = quick_xml::Reader::from_str(xml);
    let mut texts = Vec::new();
    let mut attrs = Vec::new();
    let mut depth_in_name = 0usize;
    let mut open = 0isize;
    loop {
        match r.read_event() {
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                open += 1;
                if e.name().as_ref() == name {
                    depth_in_name += 1;
                    texts.push(String::new());
                }
                for a in e.attributes() {
                    let a = a.expect("well-formed attribute");
                    if a.key.as_ref() == attr {
                        let raw = std::str::from_utf8(&a.value).expect("UTF-8 attribute");
                        attrs.push(
                            quick_xml::escape::unescape(raw)
                                .expect("known entities")
                                .into_owned(),
                        );
                    }
                    let key = a.key.as_ref();
                    if key == b"src" || key == b"href" || key == b"xlink:href" {
                        panic!("an attribute that could fetch something: {a:?}");
                    }
                }
            }
            Ok(Event::End(e)) => {
                open -= 1;
                if e.name().as_ref() == name {
                    depth_in_name -= 1;
                }
            }
            Ok(Event::Text(t)) if depth_in_name > 0 => {
                let t = t.decode().expect("UTF-8 text");
                let t = quick_xml::escape::unescape(&t).expect("known entities");
                texts.last_mut().unwrap().push_str(&t);
            }
            Ok(Event::GeneralRef(g)) if depth_in_name > 0 => {
                let g = g.decode().expect("UTF-8");
                let c = match &*g {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "#39" | "apos" => "'",
                    other => panic!("unexpected entity {other}"),
                };
                texts.last_mut().unwrap().push_str(c);
            }
            Ok(_) => {}
            Err(e) => panic!("not well-formed at {}: {e}", r.buffer_position()),
        }
    }
    assert_eq!(open, 0, "unclosed elements");
    (texts, attrs)
}

/// The page and each flame graph document in it are well-formed, and fetch nothing.
fn check_well_formed(html: &str) -> Vec<String> {
    let (_, docs) = check_well_formed_collect(html, b"li", b"srcdoc");
    for d in &docs {
        check_well_formed_collect(d, b"title", b"-");
    }
    docs
}

#[test]
fn the_html_report_is_well_formed_self_contained_and_escapes_every_frame() {
    let nasty = "0x10: <Vec<u8> as Clone>::clone & \"quoted\" 'single' </script><b> (src/a.rs:1:2)";
    let text = with_lifetimes(
        &format!(
            "[{}, {}]",
            pp(4096, 2, 4096, 0, 4096, "[1, 2]"),
            pp(100, 10, 0, 50, 60, "[3, 2]")
        ),
        &serde_json::to_string(&[
            "[root]",
            nasty,
            "0x20: demo::main (src/main.rs:9:5)",
            "0x30: demo::parse (src/main.rs:5:9)",
        ])
        .unwrap(),
    )
    .replace(
        "\"cmd\": \"demo --flag\"",
        "\"cmd\": \"demo <script>alert(1)</script> & more\"",
    );
    let p = HeapProfile::from_json(&text).unwrap();
    let mut out = Vec::new();
    p.write_html(&mut out).unwrap();
    let html = String::from_utf8(out).unwrap();
    assert!(html
        .starts_with("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"));
    assert!(html.ends_with("</body>\n</html>\n"));
    // Nothing unescaped from the file: the only scripts are the report's own.
    assert!(!html.contains("<Vec<u8>") && !html.contains("<b>"));
    assert_eq!(html.matches("<script>").count(), 1);
    assert!(html.contains(
        "<title>Heap profile of demo &lt;script&gt;alert(1)&lt;/script&gt; &amp; more</title>"
    ));
    assert!(!html.contains("<link") && !html.contains("@import"));

    let docs = check_well_formed(&html);
    let (frames, _) = check_well_formed_collect(&html, b"li", b"-");
    assert_eq!(
        frames,
        [
            nasty,
            "0x20: demo::main (src/main.rs:9:5)",
            "0x30: demo::parse (src/main.rs:5:9)",
            "0x20: demo::main (src/main.rs:9:5)"
        ]
    );
    let (summaries, _) = check_well_formed_collect(&html, b"summary", b"-");
    assert_eq!(summaries, [nasty, "0x30: demo::parse (src/main.rs:5:9)"]);

    // Two flame graphs, live at t-gmax then totals, with the function names inferno escaped.
    assert_eq!(docs.len(), 2);
    let (titles, _) = check_well_formed_collect(&docs[0], b"title", b"-");
    assert!(
        titles.contains(
            &"<Vec<u8> as Clone>::clone & \"quoted\" 'single' </script><b> (4,096 bytes, 100.00%)"
                .to_string()
        ),
        "{titles:#?}"
    );
    assert!(docs[0].contains("Bytes live at the global peak (t-gmax)"));
    let (titles, _) = check_well_formed_collect(&docs[1], b"title", b"-");
    assert!(
        titles.contains(&"demo::parse (100 bytes, 2.38%)".to_string()),
        "{titles:#?}"
    );
    assert!(docs[1].contains("Total bytes allocated"));
    for d in &docs {
        assert!(d.starts_with("<!DOCTYPE html><html><head>"));
        assert_eq!(d.matches("<svg version=").count(), 1);
        assert!(!d.contains("<?xml"));
    }

    // The table: one row per point, each metric a sortable column with its figure.
    assert_eq!(html.matches("<tr data-i=").count(), 2);
    for h in [
        "total bytes",
        "total blocks",
        "bytes at t-gmax",
        "bytes at t-end",
        "max live bytes",
    ] {
        assert!(html.contains(&format!(">{h}</th>")), "{h}");
    }
    assert!(html.contains("<td class=\"num\" data-v=\"4096\" title=\"97.6% of 4196\">4096</td>"));
    assert!(html.contains("<tr><th>At t-gmax</th><td>4096 bytes in 1 blocks (at 40 µs)</td></tr>"));
    assert!(html.contains("<tr><th>At t-end</th><td>50 bytes in 1 blocks (at 90 µs)</td></tr>"));
    assert!(!html.contains("no block lifetimes"));
}

/// `Total:     229,076 bytes in 2,049 blocks` in Valgrind DHAT's summary: (bytes, blocks).
fn dhat_summary_figure(stderr: &str, label: &str) -> Option<(u64, u64)> {
    let line = stderr.lines().find(|l| l.contains(label))?;
    let rest = &line[line.find(label)? + label.len()..];
    let nums: Vec<u64> = rest
        .split(|c: char| !c.is_ascii_digit() && c != ',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace(',', "").parse().unwrap())
        .collect();
    Some((nums[0], nums[1]))
}

#[test]
fn valgrind_dhat_profiles_read_with_valgrinds_own_totals() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dhat.out.json");
    // Valgrind's DHAT profiling the `secure` tool itself, reading the dhat-rs fixture.
    let out = match std::process::Command::new("valgrind")
        .arg("--tool=dhat")
        .arg(format!("--dhat-out-file={}", file.display()))
        .args([env!("CARGO_BIN_EXE_secure"), "report", "folded", FIXTURE])
        .output()
    {
        Ok(o) => o,
        Err(_) => {
            eprintln!("valgrind is not installed: skipping the comparison with Valgrind's DHAT");
            return;
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let p = HeapProfile::read(&file).expect("Valgrind's profile reads");
    assert_eq!(
        (p.mode.as_str(), p.has_lifetimes, p.has_accesses),
        ("heap", true, true)
    );
    assert_eq!(p.time_unit, "instrs");
    assert_eq!(
        Some(p.total()),
        dhat_summary_figure(&stderr, "Total:"),
        "{stderr}"
    );
    assert_eq!(
        p.at_peak(),
        dhat_summary_figure(&stderr, "At t-gmax:"),
        "{stderr}"
    );
    assert_eq!(
        p.at_end(),
        dhat_summary_figure(&stderr, "At t-end:"),
        "{stderr}"
    );
    assert!(p.frame_table.iter().any(|f| f.contains(": malloc (")));
    let mut html = Vec::new();
    p.write_html(&mut html).unwrap();
    check_well_formed(&String::from_utf8(html).unwrap());
}

#[test]
fn an_empty_profile_has_nothing_to_draw_and_says_so() {
    let p = HeapProfile::from_json(&with_lifetimes("[]", r#"["[root]"]"#)).unwrap();
    assert_eq!(
        (p.total(), p.at_peak(), p.at_end()),
        ((0, 0), Some((0, 0)), Some((0, 0)))
    );
    for m in Metric::ALL {
        assert_eq!(p.top(m, 10).unwrap(), Vec::<&_>::new());
        assert_eq!(p.folded(m).unwrap(), Vec::<String>::new());
        let e = p.write_flamegraph(m, "t", &mut Vec::new()).unwrap_err();
        assert!(
            matches!(e, ProfileError::NothingToDraw(x) if x == m),
            "{e:?}"
        );
    }
    assert_eq!(
        p.write_flamegraph(Metric::PeakBytes, "t", &mut Vec::new())
            .unwrap_err()
            .to_string(),
        "no program point has any bytes at the global peak (t-gmax): nothing to draw"
    );
    let mut out = Vec::new();
    p.write_html(&mut out).unwrap();
    let html = String::from_utf8(out).unwrap();
    assert!(check_well_formed(&html).is_empty());
    assert!(html.contains(
        "<h2>Live at the global peak (t-gmax)</h2>\n<p>Nothing to draw: no program point has any \
         bytes at the global peak (t-gmax).</p>"
    ));
    assert!(html.contains(
        "<h2>Total bytes allocated</h2>\n<p>Nothing to draw: no program point has any total \
         bytes.</p>"
    ));
    assert!(html.contains("<p>0 of 0 program points: the top 50 by each of"));
    assert!(!html.contains("<table id=\"top\""));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Any byte of the dhat-rs fixture changed to any ASCII character: an error or a
    /// profile, never a panic, and every view of a profile that reads works.
    #[test]
    fn a_changed_byte_is_an_error_or_a_profile_never_a_panic(
        at in 0usize..100_000,
        c in 0x20u8..0x7f,
    ) {
        let good = std::fs::read_to_string(FIXTURE).unwrap();
        let at = (0..=at % good.len()).rev().find(|&i| good.is_char_boundary(i)).unwrap();
        let end = (at + 1..=good.len()).find(|&i| good.is_char_boundary(i)).unwrap();
        let text = format!("{}{}{}", &good[..at], c as char, &good[end..]);
        if let Ok(p) = HeapProfile::from_json(&text) {
            for m in Metric::ALL {
                let _ = p.top(m, 3).unwrap();
                let _ = p.folded(m).unwrap();
                let mut out = Vec::new();
                p.write_top(m, 3, &mut out).unwrap();
            }
            let mut out = Vec::new();
            p.write_html(&mut out).unwrap();
            check_well_formed(&String::from_utf8(out).unwrap());
        }
    }
}
