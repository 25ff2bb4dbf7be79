//! `SECALLOC_*` configuration mistakes are not silent, checked on child processes: an unknown
//! name is warned about once, naming the closest known one; keywords are read whatever their
//! case; a report file that cannot be written is named and the report goes to stderr instead.

mod common;
use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A report with addresses and every number masked, to compare two runs of one case whose
/// figures (still-reachable bytes, timings) may differ by a few bytes.
fn shape(text: &str) -> String {
    regex::Regex::new(r"\d+")
        .unwrap()
        .replace_all(&normalise(text), "N")
        .into_owned()
}

#[test]
fn unknown_names_are_warned_about_once_with_the_closest_known_name() {
    let o = run_case(
        "clean",
        &[
            ("SECALLOC_WIPES", "0"),
            ("SECALLOC_REPORT_FORMATS", "json"),
            ("SECALLOC_REPORT_TOP", "5"),
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    let text = stderr(&o);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "secalloc: ignoring unknown environment variable SECALLOC_REPORT_FORMATS (did you mean SECALLOC_REPORT_FORMAT?)",
            "secalloc: ignoring unknown environment variable SECALLOC_WIPES (did you mean SECALLOC_WIPE?)",
        ],
        "{text}"
    );
    assert!(text.ends_with('\n'));
}

#[test]
fn report_keywords_ignore_case() {
    let dir = temp_path("keywords");
    std::fs::create_dir_all(&dir).unwrap();
    let reference = run_case_in(&dir, "two-leaks", &[("SECALLOC_REPORT", "stderr")]);
    assert!(!stderr(&reference).is_empty());
    for value in ["Stderr", "STDERR"] {
        let o = run_case_in(&dir, "two-leaks", &[("SECALLOC_REPORT", value)]);
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(shape(&stderr(&o)), shape(&stderr(&reference)), "{value}");
    }
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(
        files.is_empty(),
        "a keyword was taken for a file name: {files:?}"
    );

    let o = run_case_in(&dir, "two-leaks", &[("SECALLOC_REPORT", "Off")]);
    assert_eq!(stderr(&o), "");

    let json = run_case("two-leaks", &[("SECALLOC_REPORT_FORMAT", "json")]);
    let o = run_case("two-leaks", &[("SECALLOC_REPORT_FORMAT", "JSON")]);
    serde_json::from_str::<serde_json::Value>(&stderr(&o)).expect("a JSON report");
    assert_eq!(shape(&stderr(&o)), shape(&stderr(&json)));
}

#[test]
fn unwritable_report_file_is_named_and_the_report_goes_to_stderr() {
    let path = temp_path("no-such-dir").join("report.txt");
    let reference = run_case("two-leaks", &[]);
    let o = run_case("two-leaks", &[("SECALLOC_REPORT", path.to_str().unwrap())]);
    assert_eq!(o.status.code(), Some(0));
    let text = stderr(&o);
    let (first, rest) = text.split_once('\n').unwrap();
    assert_eq!(
        first,
        format!(
            "secalloc: could not write the exit report to {}: No such file or directory (os error 2); writing it to standard error instead",
            path.display()
        )
    );
    assert!(!rest.is_empty());
    assert_eq!(
        shape(rest),
        shape(&stderr(&reference)),
        "the whole report, on stderr"
    );
}
