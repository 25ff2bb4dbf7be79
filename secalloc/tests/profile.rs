//! Profile mode in one thread (no test harness: its threads would allocate meanwhile): the
//! whole-heap figures agree with dhat-rs's definitions, the per-callsite figures add up to
//! them, and the `testing` assertions on totals and peaks hold or fail as they should.

use std::hint::black_box;

use secalloc::profile::{HeapStats, Metric, Profile, ProfileSite};

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new().profile(true);

#[inline(never)]
fn make_peak(n: usize) -> Vec<u8> {
    black_box(vec![7u8; n])
}

#[inline(never)]
fn small_box() -> Box<[u8; 100]> {
    black_box(Box::new([1u8; 100]))
}

fn delta(a: &HeapStats, b: &HeapStats) -> (u64, u64) {
    (
        b.total_blocks - a.total_blocks,
        b.total_bytes - a.total_bytes,
    )
}

/// The callsite whose innermost frame is the function `function` (the first found, sites
/// being ranked by total bytes).
fn site_of<'a>(p: &'a Profile, function: &str) -> &'a ProfileSite {
    p.sites
        .iter()
        .find(|s| {
            s.frames
                .first()
                .and_then(|f| f.function.as_deref())
                .is_some_and(|f| f.ends_with(function))
        })
        .unwrap_or_else(|| panic!("no site for {function}: {:#?}", p.sites.first()))
}

fn whole_heap_figures() {
    assert!(secalloc::profile::enabled());
    let a = HeapStats::get();
    // A peak above anything before: 4 MiB live at once, then freed.
    let big = make_peak(4 << 20);
    let b = HeapStats::get();
    assert_eq!(delta(&a, &b), (1, 4 << 20));
    assert_eq!(b.curr_bytes, a.curr_bytes + (4 << 20));
    assert_eq!(b.max_bytes, b.curr_bytes, "a new maximum is the peak");
    assert_eq!(b.max_blocks, b.curr_blocks);
    drop(big);
    let c = HeapStats::get();
    assert_eq!(c.curr_bytes, a.curr_bytes);
    assert_eq!((c.max_bytes, c.max_blocks), (b.max_bytes, b.max_blocks));

    // A realloc counts as dhat-rs counts it: one block and the new size allocated, live
    // bytes by the difference (the moved copy is not a peak).
    let mut v: Vec<u8> = Vec::with_capacity(1 << 20);
    let d = HeapStats::get();
    v.reserve_exact(4 << 20); // 1 MiB -> 4 MiB: peak at exactly the previous maximum
    let e = HeapStats::get();
    assert_eq!(delta(&d, &e), (1, 4 << 20));
    assert_eq!(e.curr_blocks, d.curr_blocks);
    assert_eq!(e.curr_bytes, d.curr_bytes + (3 << 20));
    assert_eq!(
        e.max_bytes, b.max_bytes,
        "old and new copy are not live together"
    );
    v.shrink_to(1000); // in place (glibc) or moved: one more block either way
    let f = HeapStats::get();
    assert_eq!(delta(&e, &f), (1, 1000));
    assert_eq!(f.curr_bytes, d.curr_bytes - (1 << 20) + 1000);
    drop(v);
}

fn callsites_add_up() {
    let mut boxes = Vec::with_capacity(53);
    for _ in 0..53 {
        boxes.push(small_box());
    }
    let peak = make_peak(8 << 20); // the global peak: 53 boxes and 8 MiB live
    drop(peak);
    boxes.truncate(3);
    let p = secalloc::profile::snapshot().expect("profile mode");
    assert!(p.stacks_recorded, "this test builds with frame pointers");
    let sum = |f: fn(&ProfileSite) -> u64| p.sites.iter().map(f).sum::<u64>();
    assert_eq!(sum(|s| s.total_bytes), p.stats.total_bytes);
    assert_eq!(sum(|s| s.total_blocks), p.stats.total_blocks);
    assert_eq!(
        sum(|s| s.peak_bytes),
        p.stats.max_bytes,
        "gb adds up to the peak"
    );
    assert_eq!(sum(|s| s.peak_blocks), p.stats.max_blocks);
    assert_eq!(sum(|s| s.end_bytes), p.stats.curr_bytes);
    assert_eq!(sum(|s| s.end_blocks), p.stats.curr_blocks);
    assert!(p.peak_at_us <= p.end_at_us);
    let site = |name: &str| site_of(&p, name);
    let big = site("make_peak"); // the larger of its two callsites
    assert_eq!(big.total_blocks, 1);
    assert_eq!(big.total_bytes, 8 << 20);
    assert_eq!((big.peak_bytes, big.peak_blocks), (8 << 20, 1));
    assert_eq!((big.max_bytes, big.max_blocks), (8 << 20, 1));
    assert_eq!((big.end_bytes, big.end_blocks), (0, 0));
    let small = site("small_box");
    assert_eq!((small.total_blocks, small.total_bytes), (53, 5300));
    assert_eq!((small.peak_bytes, small.peak_blocks), (5300, 53));
    assert_eq!((small.max_bytes, small.max_blocks), (5300, 53));
    assert_eq!((small.end_bytes, small.end_blocks), (300, 3));
    drop(boxes);

    let mut folded = Vec::new();
    p.write_folded(Metric::TotalBytes, &mut folded).unwrap();
    let folded = String::from_utf8(folded).unwrap();
    let line = folded
        .lines()
        .find(|l| l.contains("small_box"))
        .expect("a folded line for small_box");
    assert!(line.ends_with(" 5300"), "{line}");
    let mut text = Vec::new();
    p.write_text(3, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.starts_with(&format!(
        "secalloc: heap profile: {} bytes in {} blocks allocated; at t-gmax (",
        p.stats.total_bytes, p.stats.total_blocks
    )));
    assert!(text.contains("\ntop 3 callsite(s) by total bytes:\n  1. 8388608 byte(s) in 1 block(s); at t-gmax 8388608 byte(s); max live 8388608 byte(s); at t-end 0 byte(s); avg lifetime "), "{text}");
    assert!(
        text.contains("\ntop 3 callsite(s) by bytes at t-gmax:\n  1. 8388608 byte(s)"),
        "{text}"
    );
}

#[inline(never)]
fn long_lived_small() -> Box<[u8; 200]> {
    black_box(Box::new([3u8; 200]))
}

#[inline(never)]
fn long_lived_large() -> Vec<u8> {
    black_box(vec![5u8; 1 << 20])
}

/// Block lifetimes come from each block's allocation time, kept beside its record: a slot's
/// in the heap's per-slot array, a directly mapped block's in the large table.
fn lifetimes() {
    // The process is older than the blocks by far: a lifetime measured from the start
    // instead of the block's allocation would show.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let small: Vec<_> = (0..4).map(|_| long_lived_small()).collect();
    let large = long_lived_large();
    std::thread::sleep(std::time::Duration::from_millis(40));
    drop(small);
    drop(large);
    let p = secalloc::profile::snapshot().expect("profile mode");
    for name in ["long_lived_small", "long_lived_large"] {
        let s = site_of(&p, name);
        let avg = s.average_lifetime_us();
        assert!(
            (40_000..250_000).contains(&avg),
            "{name}: average lifetime {avg} µs for blocks that lived 40 ms"
        );
        assert_eq!((s.end_bytes, s.end_blocks), (0, 0));
    }
}

#[inline(never)]
fn many_long_lived() -> Box<[u8; 32]> {
    black_box(Box::new([4u8; 32]))
}

/// A callsite with many blocks has some of them timed (the first ones, then one in eight):
/// its total lifetime is estimated from theirs, and reads as the blocks lived.
fn lifetimes_of_many_blocks() {
    let blocks: Vec<_> = (0..20_000).map(|_| many_long_lived()).collect();
    std::thread::sleep(std::time::Duration::from_millis(40));
    drop(blocks);
    let p = secalloc::profile::snapshot().expect("profile mode");
    let s = site_of(&p, "many_long_lived");
    assert_eq!(s.total_blocks, 20_000);
    let avg = s.average_lifetime_us();
    assert!(
        (40_000..250_000).contains(&avg),
        "average lifetime {avg} µs for blocks that lived 40 ms"
    );
}

#[inline(never)]
fn old_block() -> Box<[u8; 1000]> {
    black_box(Box::new([5u8; 1000]))
}

#[inline(never)]
fn young_block() -> Box<[u8; 1000]> {
    black_box(Box::new([6u8; 1000]))
}

/// Allocates `n` young blocks, then frees them.
#[inline(never)]
fn young_blocks(n: usize) {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(young_block());
    }
    drop(black_box(v));
}

/// A slot keeps no allocation time once its block is freed: a block handed the slot later,
/// and not timed itself (most blocks of a callsite after its first 64), lives from its own
/// allocation, not from the time the slot's earlier block was born.
fn reused_slots_start_without_a_time() {
    // A size class no other check uses; 600 blocks, the first 64 and one in 8 after timed.
    let old: Vec<_> = (0..600).map(|_| old_block()).collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(old);
    // The first 64 blocks of the young callsite are all timed: take them, so that the 600
    // below are mostly untimed, in the old blocks' slots.
    // One call site for both (the stack is the callsite; a loop the compiler cannot unroll).
    for &n in black_box(&[64, 600][..]) {
        young_blocks(n);
    }
    let p = secalloc::profile::snapshot().expect("profile mode");
    let old = site_of(&p, "old_block");
    let (blocks, avg) = (old.total_blocks, old.average_lifetime_us());
    assert_eq!(blocks, 600);
    assert!(
        (200_000..2_000_000).contains(&avg),
        "old blocks: average lifetime {avg} µs for blocks that lived 200 ms"
    );
    let young = site_of(&p, "young_block");
    let (blocks, avg) = (young.total_blocks, young.average_lifetime_us());
    assert_eq!(blocks, 664);
    assert!(
        avg < 20_000,
        "young blocks: average lifetime {avg} µs for blocks freed at once (an old block's \
         time left in its slot?)"
    );
}

fn testing_assertions() {
    // The panics below are expected: keep them off stderr.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let n = secalloc::testing::assert_allocations_at_most(3, || {
        let v: Vec<Box<u32>> = (0..2).map(Box::new).collect();
        v.len()
    });
    assert_eq!(n, 2);
    let r = std::panic::catch_unwind(|| {
        secalloc::testing::assert_allocations_at_most(3, || {
            let v: Vec<Box<u32>> = (0..4).map(Box::new).collect();
            v.len()
        })
    });
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert_eq!(
        msg,
        "secalloc: the closure made 5 allocation(s), more than the 3 allowed (48 byte(s) allocated)"
    );
    // Peaks: 1 MiB freed again counts at its peak; an outer measurement keeps the inner peak.
    let r = std::panic::catch_unwind(|| {
        secalloc::testing::assert_max_bytes_at_most(1 << 19, || drop(make_peak(1 << 20)))
    });
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert_eq!(
        msg,
        "secalloc: the closure held up to 1048576 byte(s) live at once, more than the 524288 allowed"
    );
    std::panic::set_hook(hook);
    let ((), outer) = secalloc::testing::measure_with(|| {
        let inner = secalloc::testing::measure(|| drop(make_peak(3000)));
        assert_eq!(inner.peak_bytes, 3000);
        drop(make_peak(1000));
    });
    assert_eq!(outer.peak_bytes, 3000);
    assert_eq!(outer.live_bytes, 0);
}

#[inline(never)]
fn site<const N: u8>() -> Box<[u8; 24]> {
    black_box(Box::new([N; 24]))
}

/// 80 callsite stacks, one function each (more than the 64 a thread's shares once held
/// before they were handed from stack to stack: each now keeps its own share).
macro_rules! sites {
    ($($n:literal)*) => {
        [$(site::<$n> as fn() -> Box<[u8; 24]>,)*]
    };
}

/// Many callsites taking turns in one thread: every site's figures stay exact, and the
/// sites add up to the whole-heap figures, at the peak too.
fn many_callsites() {
    let sites = sites!(
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
        32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60
        61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79
    );
    let mut kept = Vec::with_capacity(3 * sites.len());
    for round in 0..3 {
        for make in &sites {
            let b = make();
            if round < 2 {
                kept.push(b);
            }
        }
    }
    // The global peak: two boxes per site live and 16 MiB (above every earlier peak).
    drop(make_peak(16 << 20));
    kept.truncate(sites.len()); // one box per site left (from the first round)
    let p = secalloc::profile::snapshot().expect("profile mode");
    let sum = |f: fn(&ProfileSite) -> u64| p.sites.iter().map(f).sum::<u64>();
    assert_eq!(sum(|s| s.total_bytes), p.stats.total_bytes);
    assert_eq!(sum(|s| s.total_blocks), p.stats.total_blocks);
    assert_eq!(sum(|s| s.peak_bytes), p.stats.max_bytes);
    assert_eq!(sum(|s| s.peak_blocks), p.stats.max_blocks);
    assert_eq!(sum(|s| s.end_bytes), p.stats.curr_bytes);
    assert_eq!(sum(|s| s.end_blocks), p.stats.curr_blocks);
    // The sites of site::<N> (one per call of each function, or per call site where the
    // optimiser unrolled the loops), added up.
    let ours: Vec<_> = p
        .sites
        .iter()
        .filter(|s| {
            s.frames
                .first()
                .and_then(|f| f.function.as_deref())
                .is_some_and(|f| f.ends_with("profile::site"))
        })
        .collect();
    let n = sites.len() as u64;
    assert!(ours.len() as u64 >= n, "{} sites for site::<N>", ours.len());
    let sum =
        |f: fn(&secalloc::profile::ProfileSite) -> u64| ours.iter().map(|s| f(s)).sum::<u64>();
    assert_eq!(
        (sum(|s| s.total_blocks), sum(|s| s.total_bytes)),
        (3 * n, 72 * n)
    );
    assert_eq!(
        (sum(|s| s.peak_blocks), sum(|s| s.peak_bytes)),
        (2 * n, 48 * n)
    );
    assert_eq!((sum(|s| s.end_blocks), sum(|s| s.end_bytes)), (n, 24 * n));
    for s in ours {
        assert_eq!(s.max_bytes, 24 * s.max_blocks);
        assert!(s.max_blocks >= s.peak_blocks && s.max_blocks <= s.total_blocks.min(2));
    }
    drop(kept);
}

#[inline(never)]
fn churn_in_thread(n: usize) {
    let mut kept = Vec::with_capacity(n);
    for i in 0..n {
        let b = black_box(vec![0u8; 40 + i % 7]);
        if i % 3 == 0 {
            kept.push(b);
        }
    }
    drop(kept);
}

/// Four threads allocating from one callsite (and thread exits, whose slots are kept):
/// after they join, totals and live figures are exact, and the callsites add up to them.
fn threads_totals_exact_after_join() {
    let a = HeapStats::get();
    let n = 20_000;
    let hs: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || churn_in_thread(n)))
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let b = HeapStats::get();
    // Per thread: n vectors and the Vec keeping a third of them, plus what spawning allocates.
    let per_thread_bytes: u64 = (0..n as u64).map(|i| 40 + i % 7).sum();
    assert!(b.total_blocks - a.total_blocks >= 4 * (n as u64 + 1));
    assert!(b.total_bytes - a.total_bytes >= 4 * per_thread_bytes);
    assert_eq!(
        b.curr_bytes, a.curr_bytes,
        "everything the threads made is freed"
    );
    let p = secalloc::profile::snapshot().unwrap();
    assert_eq!(
        p.sites.iter().map(|s| s.total_blocks).sum::<u64>(),
        p.stats.total_blocks
    );
    assert_eq!(
        p.sites.iter().map(|s| s.end_bytes).sum::<u64>(),
        p.stats.curr_bytes
    );
    let site = p
        .sites
        .iter()
        .find(|s| {
            s.frames
                .first()
                .and_then(|f| f.function.as_deref())
                .is_some_and(|f| f.ends_with("churn_in_thread"))
                && s.total_blocks == 4 * n as u64
        })
        .expect("one site for the vectors of the four threads");
    assert_eq!(site.total_bytes, 4 * per_thread_bytes);
    assert_eq!((site.end_bytes, site.end_blocks), (0, 0));
}

#[inline(never)]
fn produced() -> Box<[u8; 64]> {
    black_box(Box::new([9u8; 64]))
}

/// Blocks allocated on one thread and freed on another: each thread's share of the callsite
/// runs one way (up on one, down on the other), and is published as it reaches 64 KiB, so
/// the callsite's maximum stays near what was live at once (a few blocks), not what one
/// thread allocated in all.
fn freed_on_another_thread() {
    let n = 50_000u64;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Box<[u8; 64]>>(16);
    let consumer = std::thread::spawn(move || {
        for b in rx {
            drop(b);
        }
    });
    for _ in 0..n {
        tx.send(produced()).unwrap();
    }
    drop(tx);
    consumer.join().unwrap();
    let p = secalloc::profile::snapshot().unwrap();
    let site = p
        .sites
        .iter()
        .find(|s| {
            s.frames
                .first()
                .and_then(|f| f.function.as_deref())
                .is_some_and(|f| f.ends_with("produced"))
        })
        .expect("a site for produced");
    assert_eq!((site.total_blocks, site.total_bytes), (n, 64 * n));
    assert_eq!((site.end_blocks, site.end_bytes), (0, 0));
    assert!(
        site.max_bytes <= 3 * (64 << 10),
        "max live {} bytes for at most 18 blocks of 64 bytes live at once",
        site.max_bytes
    );
}

fn main() {
    let dir = std::env::temp_dir().join(format!("secalloc-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("heap.json");
    let profiler = secalloc::profile::Profiler::new().file_name(&file);
    assert!(profiler.is_active());
    whole_heap_figures();
    callsites_add_up();
    lifetimes();
    lifetimes_of_many_blocks();
    reused_slots_start_without_a_time();
    testing_assertions();
    threads_totals_exact_after_join();
    many_callsites();
    freed_on_another_thread();
    // The guard writes the DHAT file (and the exit then writes none).
    let written = profiler.stop().expect("profile mode").unwrap();
    assert_eq!(written, file);
    let json = std::fs::read_to_string(&file).unwrap();
    assert!(
        json.starts_with(
            "{\"dhatFileVersion\":2,\"mode\":\"rust-heap\",\"verb\":\"Allocated\",\"bklt\":true,"
        ),
        "{json}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    println!("profile: 9 checks passed");
}
