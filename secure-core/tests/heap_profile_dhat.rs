//! A real dhat-rs profile read back: this program runs a small workload under dhat-rs (its
//! global allocator), writes `dhat-heap.json`, and checks that `secure_core::heap_profile`
//! reads the same totals, peak and end figures that dhat-rs's own `HeapStats` report, and
//! that every view of it works.
//!
//! `HEAP_PROFILE_FIXTURE=secure-core/tests/data/dhat-heap.json cargo test -p secure-core
//! --test heap_profile_dhat` also copies the profile there: that is how the checked-in
//! fixture the other tests read was made.

use std::hint::black_box;

use secure_core::heap_profile::{HeapProfile, Metric};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// A type whose `Clone` impl allocates, so that a frame reads `<... as Clone>::clone`.
struct Table(Vec<u64>);

impl Clone for Table {
    #[inline(never)]
    fn clone(&self) -> Table {
        Table(black_box(self.0.clone()))
    }
}

/// 4096 bytes, kept to the end.
#[inline(never)]
fn load_table() -> Vec<u8> {
    black_box(vec![7u8; 4096])
}

/// 65536 bytes live at the global peak, freed before the end.
#[inline(never)]
fn peak_buffer() {
    let v = black_box(vec![1u8; 65536]);
    drop(v);
}

/// Ten short-lived strings.
#[inline(never)]
fn parse_lines() {
    for i in 0..10 {
        black_box(format!("line number {i:>20}"));
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("dhat-heap.json");
    let profiler = dhat::Profiler::builder().file_name(&file).build();
    let kept = load_table();
    peak_buffer();
    parse_lines();
    let t = Table(vec![3u64; 100]);
    let copy = t.clone();
    drop(t);
    let stats = dhat::HeapStats::get();
    drop(profiler);
    black_box((&kept, &copy));

    let profile = HeapProfile::read(&file).expect("dhat-rs's profile reads back");
    assert!(profile.has_lifetimes);
    assert_eq!(profile.mode, "rust-heap");
    assert_eq!(profile.time_unit, "µs");
    assert_eq!(
        profile.total(),
        (stats.total_bytes, stats.total_blocks),
        "total bytes and blocks"
    );
    assert_eq!(
        profile.at_peak(),
        Some((stats.max_bytes as u64, stats.max_blocks as u64)),
        "at t-gmax"
    );
    assert_eq!(
        profile.at_end(),
        Some((stats.curr_bytes as u64, stats.curr_blocks as u64)),
        "at t-end"
    );

    // The workload's program points, found by their functions.
    let point_of = |name: &str| {
        profile
            .points
            .iter()
            .find(|p| p.frames.iter().any(|&f| profile.frame(f).contains(name)))
            .unwrap_or_else(|| panic!("no program point allocated in {name}"))
    };
    let peak = point_of("heap_profile_dhat::peak_buffer");
    assert_eq!(peak.total_bytes, 65536);
    let l = peak.lifetimes.unwrap();
    assert_eq!((l.peak_bytes, l.end_bytes, l.max_bytes), (65536, 0, 65536));
    let table = point_of("heap_profile_dhat::load_table");
    let l = table.lifetimes.unwrap();
    assert_eq!(
        (table.total_bytes, l.peak_bytes, l.end_bytes),
        (4096, 4096, 4096)
    );
    // Each string is at least one block (formatting may grow it), none left at the end.
    let lines: Vec<_> = profile
        .points
        .iter()
        .filter(|p| {
            p.frames
                .iter()
                .any(|&f| profile.frame(f).contains("heap_profile_dhat::parse_lines"))
        })
        .collect();
    assert!(lines.iter().map(|p| p.total_blocks).sum::<u64>() >= 10);
    assert!(lines.iter().all(|p| p.lifetimes.unwrap().end_blocks == 0));
    let clone = point_of("<heap_profile_dhat::Table as core::clone::Clone>::clone");
    assert_eq!(clone.total_bytes, 800);

    let top = profile.top(Metric::PeakBytes, 1).unwrap();
    assert_eq!(top[0], peak);
    let top = profile.top(Metric::EndBytes, 2).unwrap();
    assert_eq!(top, [table, clone]);
    let folded = profile.folded(Metric::EndBytes).unwrap();
    assert!(
        folded.iter().any(
            |l| l.contains("heap_profile_dhat::main;heap_profile_dhat::load_table;")
                && l.ends_with(" 4096")
        ),
        "{folded:#?}"
    );
    let mut html = Vec::new();
    profile.write_html(&mut html).unwrap();
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains("&lt;heap_profile_dhat::Table as core::clone::Clone&gt;::clone"));
    assert!(!html.contains("<heap_profile_dhat::Table"));

    if let Some(dest) = std::env::var_os("HEAP_PROFILE_FIXTURE") {
        std::fs::copy(&file, &dest).expect("copy the profile to HEAP_PROFILE_FIXTURE");
        eprintln!("copied the profile to {}", dest.to_string_lossy());
    }
    println!("heap_profile_dhat: dhat-rs's profile reads back with dhat-rs's own figures");
}
