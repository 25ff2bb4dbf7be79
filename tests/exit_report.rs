//! The report at exit, checked on child processes: after a normal return and after
//! `process::exit`, turned off, written to a file, in each format (parsed back), with the
//! threshold and top-N settings, and while other threads still allocate.

mod common;
use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Checks the text report of the `two-leaks` case line by line.
fn assert_two_leaks_text(text: &str) {
    let t = normalise(text);
    let lines: Vec<&str> = t.lines().collect();
    let header = regex::Regex::new(
        r"^secalloc: 1046 bytes in 2 blocks lost at exit \(definitely lost: 1046 bytes in 2 blocks; indirectly lost: 0 bytes in 0 blocks; still reachable: \d+ bytes in \d+ blocks\)$",
    )
    .unwrap();
    assert!(header.is_match(lines[0]), "{t}");
    assert_eq!(lines[1], "");
    assert_eq!(
        lines[2],
        "Direct leak of 1000 byte(s) in 1 block(s) allocated from:"
    );
    let frame = |n: usize, func: &str, line: usize| {
        regex::Regex::new(&format!(
            r"^    #{n} ADDR in leak_cases::cases::{func} src/bin/\.\./leak_cases_impl\.rs:{line}:\d+$"
        ))
        .unwrap()
    };
    assert!(
        frame(0, "forget_vec", site_line("forget_vec")).is_match(lines[3]),
        "{t}"
    );
    assert!(
        lines[4]
            .starts_with("    #1 ADDR in leak_cases::cases::run src/bin/../leak_cases_impl.rs:"),
        "{t}"
    );
    assert!(
        lines[5].starts_with("    #2 ADDR in leak_cases::main src/bin/leak_cases.rs:"),
        "{t}"
    );
    assert_eq!(lines[6], "");
    assert_eq!(
        lines[7],
        "Direct leak of 46 byte(s) in 1 block(s) allocated from:"
    );
    assert!(
        frame(0, "leak_session_token", site_line("leak_session_token")).is_match(lines[8]),
        "{t}"
    );
    let reachable = regex::Regex::new(r"^\d+ byte\(s\) in \d+ block\(s\) still reachable \(SECALLOC_REPORT_REACHABLE=1 lists them\)\.$").unwrap();
    let n = lines.len();
    assert!(reachable.is_match(lines[n - 3]), "{t}");
    assert_eq!(lines[n - 2], "");
    assert_eq!(
        lines[n - 1],
        "SUMMARY: secalloc: 1046 byte(s) leaked in 2 allocation(s)."
    );
}

#[test]
fn text_report_after_normal_return() {
    let o = run_case("two-leaks", &[]);
    assert_eq!(o.status.code(), Some(0));
    assert_two_leaks_text(&stderr(&o));
}

#[test]
fn text_report_after_process_exit() {
    let o = run_case("two-leaks-exit", &[]);
    assert_eq!(o.status.code(), Some(3), "process::exit(3) keeps its code");
    // The frames that called `exit` are never unwound, and they are roots (as for memcheck):
    // what only they hold (`main`'s copy of its argument) is still reachable, not lost.
    let t = normalise(&stderr(&o));
    let lines: Vec<&str> = t.lines().collect();
    assert!(lines[0].starts_with("secalloc: 1046 bytes in 2 blocks lost at exit (definitely lost: 1046 bytes in 2 blocks; indirectly lost: 0 bytes in 0 blocks; still reachable: "), "{t}");
    assert_eq!(
        lines[2],
        "Direct leak of 1000 byte(s) in 1 block(s) allocated from:"
    );
    assert!(
        lines[3].contains(&format!(
            "in leak_cases::cases::forget_vec src/bin/../leak_cases_impl.rs:{}:",
            site_line("forget_vec")
        )),
        "{t}"
    );
    assert!(t.contains("Direct leak of 46 byte(s) in 1 block(s) allocated from:\n    #0 ADDR in leak_cases::cases::leak_session_token"), "{t}");
    assert!(!t.contains("Direct leak of 14 byte(s)"), "{t}");
    assert_eq!(
        *lines.last().unwrap(),
        "SUMMARY: secalloc: 1046 byte(s) leaked in 2 allocation(s)."
    );
}

#[test]
fn report_off_prints_nothing() {
    let o = run_case("two-leaks", &[("SECALLOC_REPORT", "off")]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stderr(&o), "");
}

#[test]
fn clean_program_prints_nothing() {
    let o = run_case("clean", &[]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stderr(&o),
        "",
        "std's own buffers are still reachable, not leaks"
    );
}

#[test]
fn report_to_a_file() {
    let path = temp_path("report.txt");
    let o = run_case("two-leaks", &[("SECALLOC_REPORT", path.to_str().unwrap())]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stderr(&o),
        "",
        "nothing on stderr when the report goes to a file"
    );
    assert_two_leaks_text(&std::fs::read_to_string(&path).unwrap());
}

#[test]
fn json_report_parses_and_names_the_leaking_functions() {
    let path = temp_path("report.json");
    let o = run_case(
        "two-leaks",
        &[
            ("SECALLOC_REPORT", path.to_str().unwrap()),
            ("SECALLOC_REPORT_FORMAT", "json"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["format"], "secalloc-report");
    assert_eq!(v["version"], 1);
    assert_eq!(v["at_exit"], true);
    assert_eq!(v["leak_check"]["definitely_lost_bytes"], 1046);
    assert_eq!(v["leak_check"]["definitely_lost_blocks"], 2);
    let callsites = v["callsites"].as_array().unwrap();
    assert_eq!(
        callsites.len(),
        2,
        "still-reachable callsites are summarised, not listed"
    );
    assert_eq!(callsites[0]["bytes"], 1000);
    assert_eq!(callsites[0]["kind"], "definitely_lost");
    assert_eq!(
        callsites[0]["frames"][0]["function"],
        "leak_cases::cases::forget_vec"
    );
    assert_eq!(callsites[0]["frames"][0]["line"], site_line("forget_vec"));
    assert_eq!(
        callsites[1]["frames"][0]["function"],
        "leak_cases::cases::leak_session_token"
    );
    // The library reads its own JSON back.
    let r = secure_core::leak_report::from_json(&text).expect("round trip");
    assert_eq!(r.leak_check.unwrap().definitely_lost_bytes, 1046);
    assert!(secure_core::leak_report::from_json("{\"format\": \"other\"}").is_err());
}

/// The rules Valgrind's `dh_view.html` applies when it loads a file.
fn check_dhat_viewer_rules(v: &serde_json::Value) {
    for f in [
        "dhatFileVersion",
        "mode",
        "verb",
        "bklt",
        "bkacc",
        "tu",
        "Mtu",
        "cmd",
        "pid",
        "te",
        "pps",
        "ftbl",
    ] {
        assert!(v.get(f).is_some(), "data file is missing a field: {f}");
    }
    assert_eq!(v["dhatFileVersion"], 2);
    if v["bklt"].as_bool().unwrap() {
        assert!(v.get("tg").is_some() && v.get("tuth").is_some());
    }
    let ftbl = v["ftbl"].as_array().unwrap();
    assert_eq!(ftbl[0], "[root]");
    let mut seen = std::collections::HashSet::new();
    for pp in v["pps"].as_array().unwrap() {
        for f in ["tb", "tbk", "fs"] {
            assert!(pp.get(f).is_some(), "program point is missing {f}");
        }
        if v["bklt"].as_bool().unwrap() {
            for f in ["mb", "mbk", "gb", "gbk", "eb", "ebk"] {
                assert!(pp.get(f).is_some());
            }
        }
        let fs: Vec<u64> = pp["fs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert!(
            fs.iter().all(|&i| (i as usize) < ftbl.len() && i != 0),
            "frame index out of range"
        );
        assert!(seen.insert(fs), "data file contains a repeated location");
    }
}

#[test]
fn dhat_report_follows_the_viewer_rules() {
    let path = temp_path("report.dhat.json");
    let o = run_case(
        "all",
        &[
            ("SECALLOC_REPORT", path.to_str().unwrap()),
            ("SECALLOC_REPORT_FORMAT", "dhat"),
            ("SECALLOC_REPORT_REACHABLE", "1"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    check_dhat_viewer_rules(&v);
    let frame = regex::Regex::new(r"^0x[0-9a-f]+: leak_cases::cases::forget_vec \(src/bin/\.\./leak_cases_impl\.rs:\d+:\d+\)$").unwrap();
    assert!(v["ftbl"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| frame.is_match(f.as_str().unwrap())));
    let total: u64 = v["pps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["tb"].as_u64().unwrap())
        .sum();
    assert!(total >= 1496 + 1344);
}

#[test]
fn folded_report_one_stack_per_line() {
    let path = temp_path("report.folded");
    let o = run_case(
        "two-leaks",
        &[
            ("SECALLOC_REPORT", path.to_str().unwrap()),
            ("SECALLOC_REPORT_FORMAT", "folded"),
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    let text = std::fs::read_to_string(&path).unwrap();
    let line = regex::Regex::new(r"^([^;]+;)*[^;]+ (\d+)$").unwrap();
    let mut total = 0;
    let mut leaves = Vec::new();
    for l in text.lines() {
        let c = line
            .captures(l)
            .unwrap_or_else(|| panic!("not a folded line: {l:?}"));
        total += c[2].parse::<u64>().unwrap();
        leaves.push(
            l.rsplit_once(' ')
                .unwrap()
                .0
                .rsplit(';')
                .next()
                .unwrap()
                .to_string(),
        );
        assert!(
            l.starts_with("leak_cases::main;"),
            "outermost frame first: {l}"
        );
    }
    assert_eq!(total, 1046);
    leaves.sort();
    assert_eq!(
        leaves,
        [
            "leak_cases::cases::forget_vec",
            "leak_cases::cases::leak_session_token"
        ]
    );
}

#[test]
fn threshold_and_top() {
    let o = run_case("two-leaks", &[("SECALLOC_REPORT_MIN_BYTES", "5000")]);
    assert_eq!(stderr(&o), "", "below the threshold nothing is printed");
    let o = run_case("two-leaks", &[("SECALLOC_REPORT_TOP", "1")]);
    let t = stderr(&o);
    assert!(t.contains("Direct leak of 1000 byte(s)"), "{t}");
    assert!(!t.contains("Direct leak of 46 byte(s)"), "{t}");
    assert!(
        t.contains("... and 1 more callsite(s) with 46 byte(s) (SECALLOC_REPORT_TOP shows more)"),
        "{t}"
    );
}

#[test]
fn bad_report_settings_keep_defaults() {
    let o = run_case(
        "two-leaks",
        &[
            ("SECALLOC_REPORT_FORMAT", "xml"),
            ("SECALLOC_REPORT_TOP", "-3"),
        ],
    );
    let t = stderr(&o);
    let mut lines = t.lines();
    assert_eq!(
        lines.next().unwrap(),
        "secalloc: ignoring SECALLOC_REPORT_FORMAT=\"xml\": expected text, json, dhat or folded; keeping the configured value"
    );
    assert_eq!(
        lines.next().unwrap(),
        "secalloc: ignoring SECALLOC_REPORT_TOP=\"-3\": expected a positive number; keeping the configured value"
    );
    assert_two_leaks_text(&t.lines().skip(2).collect::<Vec<_>>().join("\n"));
}

#[test]
fn report_while_other_threads_allocate() {
    let o = run_case("busy-threads", &[]);
    assert_eq!(o.status.code(), Some(0));
    let t = stderr(&o);
    assert!(
        t.starts_with("secalloc: 1000 bytes in 1 blocks lost at exit"),
        "{t}"
    );
    assert!(t.contains("in leak_cases::cases::forget_vec "), "{t}");
}

/// The program point of the DHAT file `v` whose innermost frame is `func` of leak_cases.
fn dhat_pp<'a>(v: &'a serde_json::Value, func: &str) -> &'a serde_json::Value {
    let ftbl = v["ftbl"].as_array().unwrap();
    let name = format!(": leak_cases::cases::{func} (");
    v["pps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pp| {
            let first = pp["fs"][0].as_u64().unwrap() as usize;
            ftbl[first].as_str().unwrap().contains(&name)
        })
        .unwrap_or_else(|| panic!("no program point for {func}"))
}

#[test]
fn profile_mode_writes_a_full_dhat_file_and_keeps_the_leak_report() {
    let path = temp_path("profile.dhat.json");
    let o = run_case(
        "two-leaks",
        &[
            ("SECALLOC_PROFILE", "1"),
            ("SECALLOC_PROFILE_FILE", path.to_str().unwrap()),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    // The profile summary first, then the leak report as without profile mode.
    let (profile, leaks) = err
        .split_once("\nsecalloc: 1046 bytes in 2 blocks lost")
        .unwrap_or_else(|| panic!("no leak report after the profile:\n{err}"));
    assert_two_leaks_text(&format!("secalloc: 1046 bytes in 2 blocks lost{leaks}"));
    let lines: Vec<&str> = profile.lines().collect();
    let head = regex::Regex::new(r"^secalloc: heap profile: \d+ bytes in \d+ blocks allocated; at t-gmax \(\d+ µs\): \d+ bytes in \d+ blocks; at t-end: \d+ bytes in \d+ block\(s\)$").unwrap();
    assert!(head.is_match(lines[0]), "{profile}");
    assert_eq!(lines[1], "");
    // A small program: fewer callsites than SECALLOC_REPORT_TOP.
    let top = regex::Regex::new(r"^top (\d+) callsite\(s\) by total bytes:$").unwrap();
    let n = &top.captures(lines[2]).expect(lines[2])[1];
    assert!(lines.contains(&format!("top {n} callsite(s) by bytes at t-gmax:").as_str()));
    assert_eq!(
        lines[lines.len() - 1],
        format!(
            "secalloc: heap profile written to {} (open it in Valgrind's dh_view.html)",
            path.display()
        )
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    check_dhat_viewer_rules(&v);
    assert_eq!(v["bklt"], true);
    assert_eq!(v["mode"], "rust-heap");
    assert!(v["tg"].as_u64().unwrap() <= v["te"].as_u64().unwrap());
    let pp = dhat_pp(&v, "forget_vec");
    for (k, want) in [
        ("tb", 1000),
        ("tbk", 1),
        ("mb", 1000),
        ("mbk", 1),
        ("eb", 1000),
        ("ebk", 1),
    ] {
        assert_eq!(pp[k], want, "{k} of forget_vec: {pp}");
    }
    let pp = dhat_pp(&v, "leak_session_token");
    assert_eq!((pp["tb"].as_u64(), pp["eb"].as_u64()), (Some(46), Some(46)));
    // The figures at the peak add up to the first line's.
    let sum = |k: &str| {
        v["pps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[k].as_u64().unwrap())
            .sum::<u64>()
    };
    let figures: Vec<u64> = regex::Regex::new(r"\d+")
        .unwrap()
        .find_iter(lines[0])
        .map(|m| m.as_str().parse().unwrap())
        .collect();
    assert_eq!(sum("tb"), figures[0]);
    assert_eq!(sum("tbk"), figures[1]);
    assert_eq!((sum("gb"), sum("gbk")), (figures[3], figures[4]));
    assert_eq!((sum("eb"), sum("ebk")), (figures[5], figures[6]));
}

#[test]
fn profile_mode_with_busy_threads_and_bad_values() {
    let path = temp_path("profile-threads.dhat.json");
    let o = run_case(
        "busy-threads",
        &[
            ("SECALLOC_PROFILE", "yes"),
            ("SECALLOC_PROFILE_FILE", path.to_str().unwrap()),
            ("SECALLOC_REPORT", "off"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "SECALLOC_REPORT=off prints no summary");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    check_dhat_viewer_rules(&v);
    let o = run_case(
        "clean",
        &[("SECALLOC_PROFILE", "maybe"), ("SECALLOC_PROFILE_FILE", "")],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stderr(&o),
        "secalloc: ignoring SECALLOC_PROFILE=\"maybe\": expected 0 or 1; keeping the configured value\n\
         secalloc: ignoring SECALLOC_PROFILE_FILE=\"\": expected a UTF-8 file path; keeping the configured value\n"
    );
}

/// Loads `file` with Valgrind's own `dh_view.js` under node (tests/dh_view_load.js) and
/// returns what it displayed; `None` (saying so) where valgrind's viewer or node is missing.
fn load_in_dh_view(file: &std::path::Path) -> Option<String> {
    let viewer = [
        "/usr/libexec/valgrind/dh_view.js",
        "/usr/lib/valgrind/dh_view.js",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists());
    let Some(viewer) = viewer else {
        eprintln!("skipping the dh_view.js check: Valgrind's viewer is not installed");
        return None;
    };
    let Ok(o) = std::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/dh_view_load.js"
        ))
        .arg(viewer)
        .arg(file)
        .output()
    else {
        eprintln!("skipping the dh_view.js check: node is not installed");
        return None;
    };
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "dh_view.js rejected {}:\n{out}\n{}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    Some(out)
}

#[test]
fn dh_view_loads_profile_and_leak_files_and_sorts_by_every_lifetime_metric() {
    let profile = temp_path("view-profile.json");
    let leaks = temp_path("view-leaks.json");
    let o = run_case(
        "two-leaks",
        &[
            ("SECALLOC_PROFILE", "1"),
            ("SECALLOC_PROFILE_FILE", profile.to_str().unwrap()),
            ("SECALLOC_REPORT", leaks.to_str().unwrap()),
            ("SECALLOC_REPORT_FORMAT", "dhat"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let Some(shown) = load_in_dh_view(&profile) else {
        return;
    };
    // Every metric that block lifetimes enable (the others need access counts).
    for m in [
        "Total (bytes)",
        "Total (blocks)",
        "Total (blocks), tiny",
        "Total (blocks), short-lived",
        "At t-gmax (bytes)",
        "At t-end (bytes)",
    ] {
        assert!(shown.contains(&format!("enabled: {m}\n")), "{m}:\n{shown}");
    }
    assert!(shown.contains("dh_view.js: loaded, 6 of 14 sort metrics displayed"));
    let pp = regex::Regex::new(r"Total: +1,000 bytes \([\d.]+%, [\d,.]+/s\) in 1 blocks \([\d.]+%, [\d,.]+/s\), avg size 1,000 bytes, avg lifetime [\d,.]+ µs").unwrap();
    assert!(pp.is_match(&shown), "{shown}");
    assert!(shown.contains("At t-gmax: 1,000 bytes"), "{shown}");
    let shown = load_in_dh_view(&leaks).unwrap();
    assert!(
        shown.contains("dh_view.js: loaded, 3 of 14 sort metrics displayed"),
        "{shown}"
    );
}

#[test]
fn profile_file_named_folded_gets_stacks_by_total_bytes() {
    let path = temp_path("profile.folded");
    let o = run_case(
        "two-leaks",
        &[
            ("SECALLOC_PROFILE", "1"),
            ("SECALLOC_PROFILE_FILE", path.to_str().unwrap()),
            ("SECALLOC_REPORT", "off"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&path).unwrap();
    // Outermost frame first, total bytes after the last space.
    assert!(
        text.lines()
            .any(|l| l
                == "leak_cases::main;leak_cases::cases::run;leak_cases::cases::forget_vec 1000"),
        "{text}"
    );
    assert!(text.lines().all(|l| l
        .rsplit_once(' ')
        .is_some_and(|(_, n)| n.parse::<u64>().is_ok_and(|n| n > 0))));
}
