//! Leak verdicts on small programs whose answers are known, compared with
//! `valgrind --leak-check=full` on the same cases (built on the system allocator).

mod common;
use common::*;
use std::process::Command;

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
struct Lost {
    definite: (u64, u64),
    indirect: (u64, u64),
}

/// The cases that end in `process::exit(3)`; the others return from `main`.
fn exit_code(case: &str) -> i32 {
    match case {
        "two-leaks-exit" | "exit-live-main" | "exit-live-caller" => 3,
        _ => 0,
    }
}

fn ours(case: &str) -> (Lost, serde_json::Value) {
    ours_with(common::CASES, case)
}

/// The verdict of the cases binary `bin` on `case`.
fn ours_with(bin: &str, case: &str) -> (Lost, serde_json::Value) {
    let path = temp_path(&format!("{}-{case}.json", bin.rsplit('/').next().unwrap()));
    let o = common::run_bin_case_in(
        bin,
        std::path::Path::new("."),
        case,
        &[
            ("SECALLOC_REPORT", path.to_str().unwrap()),
            ("SECALLOC_REPORT_FORMAT", "json"),
            ("SECALLOC_REPORT_REACHABLE", "1"),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(exit_code(case)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let s = &v["leak_check"];
    let n = |k: &str| s[k].as_u64().unwrap();
    (
        Lost {
            definite: (n("definitely_lost_bytes"), n("definitely_lost_blocks")),
            indirect: (n("indirectly_lost_bytes"), n("indirectly_lost_blocks")),
        },
        v,
    )
}

fn valgrind(case: &str) -> Option<Lost> {
    let out = Command::new("valgrind")
        .args([
            "--leak-check=full",
            "--errors-for-leak-kinds=none",
            CASES_SYSTEM,
            case,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let grab = |what: &str| common::memcheck_figure(&text, what);
    Some(Lost {
        definite: grab("definitely lost"),
        indirect: grab("indirectly lost"),
    })
}

fn reachable_sizes(v: &serde_json::Value) -> Vec<u64> {
    v["callsites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "still_reachable")
        .map(|c| c["largest_block"].as_u64().unwrap())
        .collect()
}

/// Bytes and blocks judged still reachable whose stacks' innermost frame in this
/// workspace (or the first frame) is `func`.
fn reachable_from(v: &serde_json::Value, func: &str) -> (u64, u64) {
    let mut t = (0, 0);
    for c in v["callsites"].as_array().unwrap() {
        if c["kind"] != "still_reachable" {
            continue;
        }
        let frames = c["frames"].as_array().unwrap();
        let first_ours = frames
            .iter()
            .find(|f| {
                f["file"]
                    .as_str()
                    .is_some_and(|p| !p.starts_with("/rustc/"))
            })
            .or(frames.first());
        if first_ours.is_some_and(|f| f["function"] == func) {
            t.0 += c["bytes"].as_u64().unwrap();
            t.1 += c["blocks"].as_u64().unwrap();
        }
    }
    t
}

fn check(case: &str, expect: Lost) -> serde_json::Value {
    let (got, v) = ours(case);
    assert_eq!(got, expect, "secalloc's verdict on {case}");
    match valgrind(case) {
        Some(vg) => assert_eq!(got, vg, "valgrind disagrees on {case}"),
        None => eprintln!("valgrind is not installed: skipping the comparison for {case}"),
    }
    v
}

#[test]
fn forgotten_vec_is_definitely_lost() {
    check(
        "forget-vec",
        Lost {
            definite: (1000, 1),
            indirect: (0, 0),
        },
    );
}

#[test]
fn box_leak_stored_in_a_static_is_reachable() {
    let v = check("static-box", Lost::default());
    assert!(reachable_sizes(&v).contains(&300), "{v}");
}

#[test]
fn forgotten_list_head_is_direct_rest_indirect() {
    check(
        "list",
        Lost {
            definite: (40, 1),
            indirect: (360, 9),
        },
    );
}

#[test]
fn dropped_rc_cycle_is_lost() {
    check(
        "rc-cycle",
        Lost {
            definite: (48, 1),
            indirect: (48, 1),
        },
    );
}

#[test]
fn oncelock_and_std_buffers_are_reachable() {
    let v = check("globals", Lost::default());
    assert!(reachable_sizes(&v).contains(&500), "{v}");
}

#[test]
fn all_cases_together() {
    check(
        "all",
        Lost {
            definite: (1088, 3),
            indirect: (408, 10),
        },
    );
}

#[test]
fn process_exit_keeps_mains_frame_live() {
    // `main` holds a Vec<String> (3 strings) when a callee calls `process::exit`: its frame
    // is a caller of `exit`, never unwound, so they are still reachable. The forgotten
    // vector, allocated in a frame that had returned, stays lost.
    let v = check(
        "exit-live-main",
        Lost {
            definite: (1000, 1),
            indirect: (0, 0),
        },
    );
    assert_eq!(reachable_from(&v, "leak_cases::cases::strings"), (72, 1));
    assert_eq!(
        reachable_from(&v, "leak_cases::cases::strings::{{closure}}"),
        (72, 3)
    );
}

#[test]
fn process_exit_keeps_every_callers_frame_live() {
    let v = check(
        "exit-live-caller",
        Lost {
            definite: (1000, 1),
            indirect: (0, 0),
        },
    );
    assert_eq!(reachable_from(&v, "leak_cases::cases::strings"), (96, 1));
    assert_eq!(
        reachable_from(&v, "leak_cases::cases::strings::{{closure}}"),
        (96, 4)
    );
}

#[test]
fn process_exit_with_two_leaks() {
    check(
        "two-leaks-exit",
        Lost {
            definite: (1046, 2),
            indirect: (0, 0),
        },
    );
}

#[test]
fn normal_return_leaves_mains_dead_frame_unscanned() {
    check(
        "two-leaks",
        Lost {
            definite: (1046, 2),
            indirect: (0, 0),
        },
    );
}

#[test]
fn thread_name_reached_through_a_handle_in_a_static() {
    // std allocates the handle's shared part with `System` directly: a heap object the
    // tracker never sees, between the static and the name (a tracked block).
    let v = check("named-thread-static", Lost::default());
    assert_eq!(
        reachable_from(&v, "leak_cases::cases::named_thread_in_static"),
        (15, 1),
        "{v}"
    );
}

#[test]
fn thread_name_reached_through_a_handle_made_on_another_thread() {
    // The handle's shared part lies in that thread's glibc arena, which the kernel may list
    // as one mapping with the thread stack below it.
    let v = check("named-thread-from-thread", Lost::default());
    assert_eq!(
        reachable_from(
            &v,
            "leak_cases::cases::named_thread_from_a_thread::{{closure}}"
        ),
        (15, 1),
        "{v}"
    );
}

#[test]
fn audit_init_loses_nothing() {
    // The writer thread's name, held like the case above (`Logger::new`, 20 bytes).
    let v = check(
        "audit-init",
        Lost {
            definite: (1000, 1),
            indirect: (0, 0),
        },
    );
    let spawn_line = include_str!("../secure-core/src/audit/logger.rs")
        .lines()
        .position(|l| l.contains(".spawn(move || s.writer_loop())"))
        .expect("the writer thread's spawn in logger.rs")
        + 1;
    // Spawning the writer thread (its name, 20 bytes, and its result packet while it runs).
    let spawn: Vec<&serde_json::Value> = v["callsites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["frames"][0]["function"] == "secure_core::audit::logger::Logger::new"
                && c["frames"][0]["line"] == spawn_line
        })
        .collect();
    assert!(
        !spawn.is_empty(),
        "no callsite for the writer thread's spawn: {v}"
    );
    for c in spawn {
        assert_eq!(c["kind"], "still_reachable", "{c}");
        assert!(c["bytes"].as_u64().unwrap() >= 20, "{c}");
    }
}

#[test]
fn same_program_same_verdict() {
    // A thread still frees blocks while the check runs at exit: a block freed after the
    // snapshot is not a leak, nor counted at all. 20 runs, one answer.
    let expect = Lost {
        definite: (1000, 1),
        indirect: (0, 0),
    };
    for run in 0..20 {
        let (got, v) = ours("thread-freeing-at-exit");
        assert_eq!(got, expect, "run {run}: {v}");
    }
    check("thread-freeing-at-exit", expect);
    // And a single-threaded program with every kind of verdict.
    let first = ours("all").1["leak_check"].clone();
    for run in 0..20 {
        assert_eq!(ours("all").1["leak_check"], first, "run {run}");
    }
}

#[test]
fn leak_exitcode_only_when_something_is_definitely_lost() {
    let o = run_case("forget-vec", &[("SECALLOC_LEAK_EXITCODE", "23")]);
    assert_eq!(o.status.code(), Some(23));
    let o = run_case("static-box", &[("SECALLOC_LEAK_EXITCODE", "23")]);
    assert_eq!(o.status.code(), Some(0));
    let o = run_case(
        "clean",
        &[("SECALLOC_LEAK_EXITCODE", "23"), ("SECALLOC_REPORT", "off")],
    );
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn wipe_at_exit_is_opt_in() {
    let o = run_case("wipe-at-exit", &[("SECALLOC_WIPE_AT_EXIT", "1")]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "after-exit: wiped=true\n"
    );
    let o = run_case("wipe-at-exit", &[]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "after-exit: wiped=false\n",
        "off by default"
    );
}

#[test]
fn the_header_layout_over_system_gives_the_same_verdicts() {
    // `SecAlloc::with_inner(System)` keeps headers before blocks and the live set in a radix
    // map, and its roots exclude glibc's heaps instead of the own heap's regions: the
    // verdicts must not depend on that.
    for case in [
        "forget-vec",
        "two-leaks",
        "static-box",
        "list",
        "rc-cycle",
        "globals",
        "named-thread-static",
        "named-thread-from-thread",
        "forget-777",
        "all",
    ] {
        let (own, _) = ours(case);
        let (header, v) = ours_with(common::CASES_HEADER, case);
        assert_eq!(header, own, "{case} over System: {v}");
    }
}
