//! Round-trip cost of `SecAlloc` against `System`, by configuration, in one run.
//!
//! `cargo bench --bench roundtrip` runs this binary once per configuration (a process has
//! one global allocator, and the configuration is read once, from `SECALLOC_*`), each child
//! timing the same loops through `System` and through `SecAlloc`, and prints ns/op and the
//! ratio. Also times the allocator's building blocks: a 16-frame stack walk, a live-set
//! insert+remove, and the wipe against one `memset`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

const ROUNDS: usize = 7;

/// Best-of-ROUNDS nanoseconds per iteration of `f` (which runs `iters` iterations).
fn best_ns(iters: usize, mut f: impl FnMut(usize)) -> f64 {
    f(iters / 10); // warm up
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f(iters);
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Calls `f` from `depth` frames down, so stack walks see a realistic depth.
#[inline(never)]
fn at_depth<R>(depth: usize, f: &mut dyn FnMut() -> R) -> R {
    if depth == 0 {
        f()
    } else {
        black_box(at_depth(depth - 1, f))
    }
}

fn roundtrip(a: &dyn GlobalAlloc, size: usize, iters: usize) {
    let layout = Layout::from_size_align(size, 8).unwrap();
    for _ in 0..iters {
        // SAFETY: non-zero layout; the block is freed with the same layout.
        unsafe {
            let p = a.alloc(layout);
            p.write_volatile(1);
            a.dealloc(black_box(p), layout);
        }
    }
}

fn child(config: &str) {
    for size in [64usize, 4096] {
        let iters = if size == 64 { 2_000_000 } else { 500_000 };
        let sys = at_depth(20, &mut || best_ns(iters, |n| roundtrip(&System, size, n)));
        let sec = at_depth(20, &mut || best_ns(iters, |n| roundtrip(&GLOBAL, size, n)));
        println!("{config:<14} {size:>6} B round trip   System {sys:7.1} ns   SecAlloc {sec:7.1} ns   ratio {:5.2}x", sec / sys);
    }
}

fn parts() {
    let mut buf = [0usize; 16];
    let walk = at_depth(24, &mut || {
        best_ns(2_000_000, |n| {
            for _ in 0..n {
                black_box(secalloc::__bench::walk_stack(black_box(&mut buf)));
            }
        })
    });
    let frames = at_depth(24, &mut || secalloc::__bench::walk_stack(&mut buf));
    println!("stack walk         {frames:>2} frames      {walk:7.1} ns");
    let live = best_ns(5_000_000, |n| {
        for i in 0..n {
            black_box(secalloc::__bench::live_insert_remove(
                0x6000_0000_0000 + (i % 4096) * 16,
            ));
        }
    });
    println!("live set insert+remove           {live:7.1} ns");
    for size in [64usize, 4096, 65536, 1 << 20, 16 << 20] {
        let mut b = vec![0u8; size];
        let iters = (64 << 20) / size + 100;
        let memset = best_ns(iters, |n| {
            for _ in 0..n {
                // SAFETY: b is a live exclusive buffer of `size` bytes.
                unsafe { std::ptr::write_bytes(black_box(b.as_mut_ptr()), 0, size) };
                black_box(&b);
            }
        });
        let wipe = best_ns(iters, |n| {
            for _ in 0..n {
                secalloc::__bench::wipe(black_box(&mut b), secalloc::Wipe::FourPass);
            }
        });
        println!(
            "4-pass wipe {size:>9} B   memset {memset:10.1} ns   wipe {wipe:10.1} ns   {:4.2}x memset   {:6.2} GB/s",
            wipe / memset,
            4.0 * size as f64 / wipe
        );
    }
}

fn main() {
    if let Ok(cfg) = std::env::var("ROUNDTRIP_CHILD") {
        if cfg == "parts" {
            parts();
        } else {
            child(&cfg);
        }
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let configs: [(&str, &[(&str, &str)]); 4] = [
        ("full", &[]),
        ("tracking-only", &[("SECALLOC_WIPE", "0")]),
        ("wipe-only", &[("SECALLOC_STACK_DEPTH", "0")]),
        (
            "bare",
            &[("SECALLOC_WIPE", "0"), ("SECALLOC_STACK_DEPTH", "0")],
        ),
    ];
    for (name, env) in configs.iter().chain(std::iter::once(&("parts", &[][..]))) {
        let mut cmd = Command::new(&exe);
        cmd.env("ROUNDTRIP_CHILD", name)
            .env("SECALLOC_REPORT", "off");
        for (k, v) in env.iter() {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("bench child runs");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
}
