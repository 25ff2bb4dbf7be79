//! The workloads of the benchmark suite, shared by the three workload binaries
//! (`system.rs`, `secalloc.rs`, `dhat.rs`), which differ only in their global allocator.
//!
//! A workload binary is run by the driver (`benches/suite.rs`) as
//! `suite-<alloc> <workload> <threads> <scale>` and prints one line,
//! `result <wall ns> <cpu ns> <ops> <checksum>`: the wall-clock and process CPU time of the
//! workload alone (set-up such as generating the input document is outside it), the number
//! of operations it did, and a
//! checksum of what it computed. The checksum depends only on the work, never on the
//! allocator, so the driver can check that every configuration did the same work.
//!
//! Workloads (after mimalloc-bench, plus real Rust code):
//! - `rt-fifo-<size>` / `rt-lifo-<size>`: batches of blocks of one size, freed in
//!   allocation order (FIFO) or in reverse (LIFO);
//! - `churn`: glibc's bench-malloc-thread: per thread a 1024-slot live set, each step frees a
//!   random slot and refills it with an inverse-square-distributed size;
//! - `larson`: per thread a set of slots churned like `churn`, handed at the end of every
//!   round to a fresh thread, so most blocks are freed by a thread other than their
//!   allocator's;
//! - `xmalloc`: producer threads allocate blocks in batches and send them to consumer threads,
//!   which free them (`threads` = producer/consumer pairs);
//! - `cache-scratch`: Hoard's false-sharing test: each thread frees a small block the main
//!   thread allocated next to the others' and then allocates, writes and frees small blocks;
//! - `json`: serde_json parse + serialize of a generated multi-MB document;
//! - `maps`: build, query and drop a large `HashMap<String, Vec<u64>>` and `BTreeMap`;
//! - `text`: string-heavy text processing (split, lowercase, count, format, sort, join);
//! - `ast`: a compiler front end in miniature: lex generated source, parse it by recursive
//!   descent into boxed expression trees, fold constants into new trees, render them (deep
//!   and varied stacks: thousands of distinct callsite stacks).
//! - `exit-clean` / `exit-leak`: for `benches/exit_cost.rs`, what the exit handler costs: 20 000
//!   small blocks (times `scale`) left live at exit and reachable from a static, of which
//!   `exit-leak` loses 100. With `EXIT_COST_SCAN` set, each also prints `scan <bytes> <ns>`:
//!   the process's writable memory and the time one linear read of it takes (the floor of
//!   any leak check).
//!
//! `scale` multiplies the amount of work (1 = the default, sized for a 2-core machine).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::mpsc;
use std::time::Instant;

/// What a workload run measured.
pub struct Outcome {
    /// Wall-clock and process CPU time the workload took.
    pub time: Elapsed,
    /// Operations done (allocations, or documents, or words: per workload).
    pub ops: u64,
    /// A checksum of the results, independent of the allocator.
    pub checksum: u64,
}

/// Wall-clock and CPU nanoseconds.
#[derive(Clone, Copy)]
pub struct Elapsed {
    /// Wall-clock nanoseconds.
    pub wall: u128,
    /// CPU nanoseconds of the whole process (all threads), user + system.
    pub cpu: u128,
}

/// Starts both clocks. CPU time is what single-threaded ratios use on a shared machine:
/// unlike wall time, it does not count the time the process waited for a core.
pub struct Timer {
    wall: Instant,
    cpu: u128,
}

fn process_cpu_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; CLOCK_PROCESS_CPUTIME_ID always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

impl Timer {
    pub fn start() -> Timer {
        Timer {
            cpu: process_cpu_ns(),
            wall: Instant::now(),
        }
    }
    pub fn elapsed(&self) -> Elapsed {
        let wall = self.wall.elapsed().as_nanos();
        Elapsed {
            wall,
            cpu: process_cpu_ns() - self.cpu,
        }
    }
}

/// Deterministic, allocation-free PRNG (SplitMix64).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }
    /// Uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Workload names the binaries accept (thread counts and scale come separately).
pub const ROUNDTRIP_SIZES: [usize; 7] = [8, 64, 512, 4096, 65536, 1 << 20, 4 << 20];

/// Blocks `exit-clean` and `exit-leak` leave live for the exit handler.
static KEPT_AT_EXIT: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

fn exit_case(leak: bool, scale: u64) -> Outcome {
    let t = Timer::start();
    let n = 20_000 * scale as usize;
    let mut rng = Rng::new(12);
    let mut keep: Vec<Vec<u8>> = Vec::with_capacity(n);
    let mut checksum = 0u64;
    for i in 0..n {
        let size = 16 + rng.below(240) as usize;
        let mut v = vec![0u8; size];
        v[0] = i as u8;
        checksum = checksum.wrapping_add(size as u64);
        keep.push(v);
    }
    if leak {
        for v in keep.drain(..100) {
            std::mem::forget(v);
        }
    }
    *KEPT_AT_EXIT.lock().unwrap() = keep;
    let time = t.elapsed();
    if std::env::var_os("EXIT_COST_SCAN").is_some() {
        let (bytes, ns) = secalloc::__bench::scan_writable_memory();
        println!("scan {bytes} {ns}");
    }
    Outcome {
        time,
        ops: n as u64,
        checksum,
    }
}

/// Runs workload `name` with `threads` threads and work multiplier `scale`.
pub fn run(name: &str, threads: usize, scale: u64) -> Result<Outcome, String> {
    let threads = threads.max(1);
    let scale = scale.max(1);
    if let Some(rest) = name.strip_prefix("rt-") {
        let (order, size) = rest
            .split_once('-')
            .ok_or_else(|| format!("bad round-trip workload `{name}`"))?;
        let size: usize = size.parse().map_err(|_| format!("bad size in `{name}`"))?;
        let lifo = match order {
            "fifo" => false,
            "lifo" => true,
            _ => return Err(format!("bad order in `{name}` (fifo or lifo)")),
        };
        return Ok(roundtrip(size, lifo, scale));
    }
    match name {
        "churn" => Ok(churn(threads, scale)),
        "larson" => Ok(larson(threads, scale)),
        "xmalloc" => Ok(xmalloc(threads, scale)),
        "cache-scratch" => Ok(cache_scratch(threads, scale)),
        "json" => Ok(json(scale)),
        "maps" => Ok(maps(scale)),
        "text" => Ok(text(scale)),
        "ast" => Ok(ast(scale)),
        "exit-clean" => Ok(exit_case(false, scale)),
        "exit-leak" => Ok(exit_case(true, scale)),
        _ => Err(format!("unknown workload `{name}`")),
    }
}

fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x100_0000_01B3).rotate_left(17)
}

/// A raw heap block, as `malloc` would hand out: allocated through the global allocator,
/// its first and last byte written (as a program using the memory would), freed on drop.
pub struct Block {
    ptr: std::ptr::NonNull<u8>,
    size: usize,
}

// SAFETY: a Block owns its allocation exclusively, like a Box<[u8]>.
unsafe impl Send for Block {}

impl Block {
    #[inline]
    fn layout(size: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(size, 8).expect("block sizes are small")
    }

    /// Allocates `size` (> 0) bytes and writes `tag` into the first and last.
    #[inline]
    pub fn new(size: usize, tag: u8) -> Block {
        let layout = Block::layout(size);
        // SAFETY: size > 0.
        let p = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = std::ptr::NonNull::new(p) else {
            std::alloc::handle_alloc_error(layout)
        };
        // SAFETY: both bytes lie inside the `size`-byte block.
        unsafe {
            ptr.as_ptr().write(tag);
            ptr.as_ptr().add(size - 1).write(tag);
        }
        Block { ptr, size }
    }

    /// Writes `tag` into every byte, as a program using the whole block would.
    #[inline]
    pub fn fill(&mut self, tag: u8) {
        // SAFETY: the block holds `size` bytes, exclusively ours.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr(), tag, self.size) }
    }

    /// The sum of the first and last byte.
    #[inline]
    pub fn first_last(&self) -> u64 {
        // SAFETY: both bytes were written in `new`.
        unsafe {
            u64::from(self.ptr.as_ptr().read())
                + u64::from(self.ptr.as_ptr().add(self.size - 1).read())
        }
    }
}

impl Drop for Block {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Block::layout(self.size)) }
    }
}

#[inline]
fn block(size: usize, tag: u8) -> Block {
    Block::new(size, tag)
}

#[inline]
fn first_last(b: &Block) -> u64 {
    b.first_last()
}

/// Round trip: batches of `size`-byte blocks, freed FIFO or LIFO.
fn roundtrip(size: usize, lifo: bool, scale: u64) -> Outcome {
    // About 256 MiB of blocks per run, at least 64 and at most 2 M blocks. Every block is
    // filled (written whole) before it is freed, as a program uses the memory it asks for.
    let total = ((256usize << 20) / size).clamp(64, 2_000_000) * scale as usize;
    let batch = total.min(if size <= 4096 { 1000 } else { 16 });
    let batches = total / batch;
    let mut held: Vec<Block> = Vec::with_capacity(batch);
    let mut sum = 0u64;
    let t = Timer::start();
    for i in 0..batches {
        for j in 0..batch {
            let mut b = block(size, 0);
            b.fill((i + j) as u8);
            held.push(b);
        }
        if lifo {
            while let Some(b) = held.pop() {
                sum = sum.wrapping_add(first_last(&b));
            }
        } else {
            for b in held.drain(..) {
                sum = sum.wrapping_add(first_last(&b));
            }
        }
    }
    Outcome {
        time: t.elapsed(),
        ops: (batches * batch) as u64,
        checksum: sum,
    }
}

/// 4096 sizes in `[16, 32768]` with P(size) proportional to 1/size² (as glibc's
/// bench-malloc-thread draws them).
fn inverse_square_sizes(seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let (lo, hi) = (16.0f64, 32768.0f64);
    (0..4096)
        .map(|_| {
            let u = rng.unit();
            (1.0 / (1.0 / lo - u * (1.0 / lo - 1.0 / hi))) as usize
        })
        .collect()
}

/// Runs `f(thread_index)` on `threads` threads at once and returns the wall time and the
/// results.
fn on_threads<R: Send>(threads: usize, f: impl Fn(usize) -> R + Sync) -> (Elapsed, Vec<R>) {
    let barrier = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        barrier.wait();
        let t = Timer::start();
        let out: Vec<R> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (t.elapsed(), out)
    })
}

/// glibc-thread-style churn: each thread does the same number of steps (weak scaling).
fn churn(threads: usize, scale: u64) -> Outcome {
    let steps = 400_000 * scale;
    let sizes = inverse_square_sizes(7);
    let (time, sums) = on_threads(threads, |ti| {
        let mut rng = Rng::new(ti as u64 + 1);
        let mut slots: Vec<Option<Block>> = (0..1024).map(|_| None).collect();
        let mut sum = 0u64;
        for step in 0..steps {
            let i = rng.below(1024) as usize;
            if let Some(b) = slots[i].take() {
                sum = sum.wrapping_add(first_last(&b));
            }
            let size = sizes[rng.below(sizes.len() as u64) as usize];
            slots[i] = Some(block(size, step as u8));
        }
        sum
    });
    Outcome {
        time,
        ops: steps * threads as u64,
        checksum: sums.into_iter().fold(0, mix),
    }
}

/// Larson: slots churned for a round, then handed to a fresh thread.
fn larson(threads: usize, scale: u64) -> Outcome {
    const SLOTS: usize = 1000;
    let rounds = 20;
    let steps = 15_000 * scale;
    let mut sets: Vec<Vec<Option<Block>>> = (0..threads)
        .map(|_| (0..SLOTS).map(|_| None).collect())
        .collect();
    let mut sum = 0u64;
    let t = Timer::start();
    for round in 0..rounds {
        let (rest, sums): (Vec<_>, Vec<u64>) = std::thread::scope(|s| {
            let handles: Vec<_> = sets
                .drain(..)
                .enumerate()
                .map(|(ti, mut set)| {
                    s.spawn(move || {
                        let mut rng = Rng::new((round * 1000 + ti) as u64);
                        let mut sum = 0u64;
                        for step in 0..steps {
                            let i = rng.below(SLOTS as u64) as usize;
                            if let Some(b) = set[i].take() {
                                sum = sum.wrapping_add(first_last(&b));
                            }
                            let size = 16 + rng.below(1009) as usize;
                            set[i] = Some(block(size, step as u8));
                        }
                        (set, sum)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).unzip()
        });
        // Rotate: thread i's set goes to thread i+1 next round.
        sets = rest;
        sets.rotate_right(1);
        sum = sums.into_iter().fold(sum, mix);
    }
    drop(sets);
    Outcome {
        time: t.elapsed(),
        ops: rounds as u64 * steps * threads as u64,
        checksum: sum,
    }
}

/// xmalloc-test: `pairs` producers allocate, `pairs` consumers free.
fn xmalloc(pairs: usize, scale: u64) -> Outcome {
    const BATCH: usize = 256;
    let batches = 1_200 * scale as usize;
    let barrier = std::sync::Barrier::new(2 * pairs + 1);
    let (time, sum) = std::thread::scope(|s| {
        let mut consumers = Vec::new();
        for p in 0..pairs {
            let (tx, rx) = mpsc::sync_channel::<Vec<Block>>(16);
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                let mut rng = Rng::new(p as u64 + 99);
                for b in 0..batches {
                    let batch: Vec<Block> = (0..BATCH)
                        .map(|j| block(8 + rng.below(249) as usize, (b + j) as u8))
                        .collect();
                    tx.send(batch).unwrap();
                }
            });
            consumers.push(s.spawn(move || {
                barrier.wait();
                let mut sum = 0u64;
                for batch in rx {
                    for b in batch {
                        sum = sum.wrapping_add(first_last(&b));
                    }
                }
                sum
            }));
        }
        barrier.wait();
        let t = Timer::start();
        let sum = consumers
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold(0, mix);
        (t.elapsed(), sum)
    });
    Outcome {
        time,
        ops: (batches * BATCH * pairs) as u64,
        checksum: sum,
    }
}

/// cache-scratch (Hoard): false sharing induced by the allocator.
fn cache_scratch(threads: usize, scale: u64) -> Outcome {
    const OBJ: usize = 8;
    let iterations = 50_000 * scale;
    let repetitions = 50;
    // The main thread allocates one small block per thread, back to back.
    let initial: Vec<Block> = (0..threads).map(|i| block(OBJ, i as u8)).collect();
    let slots: Vec<std::sync::Mutex<Option<Block>>> = initial
        .into_iter()
        .map(|b| std::sync::Mutex::new(Some(b)))
        .collect();
    let (time, sums) = on_threads(threads, |ti| {
        let mut sum = 0u64;
        if let Some(b) = slots[ti].lock().unwrap().take() {
            sum += first_last(&b);
        }
        for it in 0..iterations {
            let mut b = vec![0u8; OBJ].into_boxed_slice();
            for r in 0..repetitions {
                for (k, byte) in b.iter_mut().enumerate() {
                    *byte = byte.wrapping_add((r + k) as u8 ^ it as u8);
                }
                black_box(&mut b);
            }
            sum = sum.wrapping_add(b.iter().map(|&x| u64::from(x)).sum::<u64>());
        }
        sum
    });
    Outcome {
        time,
        ops: iterations * threads as u64,
        checksum: sums.into_iter().fold(0, mix),
    }
}

/// Generates a JSON document of about `records` × 200 bytes.
fn generate_json(records: usize) -> String {
    let mut rng = Rng::new(42);
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
    ];
    let mut out = String::with_capacity(records * 220);
    out.push_str("{\"version\":3,\"records\":[");
    for i in 0..records {
        if i > 0 {
            out.push(',');
        }
        let name = format!(
            "{}-{}-{}",
            words[rng.below(16) as usize],
            words[rng.below(16) as usize],
            i
        );
        let tags: Vec<String> = (0..rng.below(5))
            .map(|_| format!("\"{}\"", words[rng.below(16) as usize]))
            .collect();
        let values: Vec<String> = (0..1 + rng.below(8))
            .map(|_| (rng.below(1_000_000) as f64 / 100.0).to_string())
            .collect();
        out.push_str(&format!(
            "{{\"id\":{i},\"name\":\"{name}\",\"active\":{},\"score\":{},\"tags\":[{}],\
             \"values\":[{}],\"owner\":{{\"user\":\"{}\",\"group\":{}}}}}",
            rng.below(2) == 1,
            rng.below(1000),
            tags.join(","),
            values.join(","),
            words[rng.below(16) as usize],
            rng.below(64)
        ));
    }
    out.push_str("]}");
    out
}

/// serde_json: parse a generated multi-MB document into a `Value` and serialize it back.
fn json(scale: u64) -> Outcome {
    let doc = generate_json(10_000);
    let reps = 2 * scale;
    let mut sum = 0u64;
    let t = Timer::start();
    for _ in 0..reps {
        let v: serde_json::Value = serde_json::from_str(&doc).expect("generated JSON parses");
        let records = v["records"].as_array().map_or(0, |a| a.len());
        let text = serde_json::to_string(&v).expect("Value serializes");
        sum = mix(sum, records as u64);
        sum = mix(sum, text.len() as u64);
        drop(v);
        drop(text);
    }
    Outcome {
        time: t.elapsed(),
        ops: reps * doc.len() as u64,
        checksum: sum,
    }
}

/// Builds, queries and drops a `HashMap<String, Vec<u64>>` and a `BTreeMap<String, u64>`.
fn maps(scale: u64) -> Outcome {
    let keys = 50_000 * scale as usize;
    let mut rng = Rng::new(5);
    let mut sum = 0u64;
    let t = Timer::start();
    let mut h: HashMap<String, Vec<u64>> = HashMap::new();
    for i in 0..keys {
        let k = format!("key-{:x}-{}", rng.next() & 0xFFFF_FFFF, i);
        let mut v = Vec::new();
        for j in 0..rng.below(24) {
            v.push(j * i as u64);
        }
        h.insert(k, v);
    }
    let mut b: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in &h {
        b.insert(k.clone(), v.iter().sum());
    }
    for (k, v) in b.range("key-8".to_string().."key-9".to_string()) {
        sum = mix(sum, k.len() as u64 ^ *v);
    }
    // Remove half, grow the rest.
    let doomed: Vec<String> = b.keys().step_by(2).cloned().collect();
    for k in &doomed {
        b.remove(k);
        h.remove(k);
    }
    for v in h.values_mut() {
        v.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    }
    sum = mix(sum, h.values().map(|v| v.len() as u64).sum());
    sum = mix(sum, b.len() as u64);
    drop(h);
    drop(b);
    drop(doomed);
    Outcome {
        time: t.elapsed(),
        ops: keys as u64,
        checksum: sum,
    }
}

/// Text processing: tokenise a generated text, normalise, count, format a report.
fn text(scale: u64) -> Outcome {
    let mut rng = Rng::new(11);
    let syllables = [
        "ka", "Lo", "mi", "Ne", "ru", "SA", "to", "vi", "Xe", "zu", "pa", "Qi",
    ];
    let mut corpus = String::new();
    for i in 0..200_000 {
        let n = 1 + rng.below(4);
        for _ in 0..n {
            corpus.push_str(syllables[rng.below(12) as usize]);
        }
        corpus.push(if i % 13 == 12 { '\n' } else { ' ' });
    }
    let reps = scale;
    let mut sum = 0u64;
    let mut words = 0u64;
    let t = Timer::start();
    for _ in 0..reps {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut lines_out: Vec<String> = Vec::new();
        for line in corpus.lines() {
            let tokens: Vec<String> = line.split_whitespace().map(str::to_lowercase).collect();
            words += tokens.len() as u64;
            for tok in &tokens {
                *counts.entry(tok.clone()).or_insert(0) += 1;
            }
            let title: String = tokens
                .iter()
                .map(|w| {
                    let mut c = w.chars();
                    match c.next() {
                        Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                        None => String::new(),
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            lines_out.push(title.replace("Ka", "ca"));
        }
        let mut freq: Vec<(String, usize)> = counts.into_iter().collect();
        freq.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let report: String = freq
            .iter()
            .take(1000)
            .map(|(w, n)| format!("{w}\t{n}\n"))
            .collect();
        let joined = lines_out.join("\n");
        sum = mix(sum, report.len() as u64);
        sum = mix(sum, joined.len() as u64);
        sum = mix(sum, freq.len() as u64);
    }
    Outcome {
        time: t.elapsed(),
        ops: words,
        checksum: sum,
    }
}

/// A token of the `ast` workload's little language.
#[derive(Clone, Debug, PartialEq)]
enum Token {
    Num(i64),
    Ident(String),
    Op(char),
    Open,
    Close,
    Comma,
    Let,
    Semi,
}

/// An expression tree: every node its own heap block, as a compiler's front end has them.
#[derive(Clone, Debug)]
enum Expr {
    Num(i64),
    Var(String),
    Bin(char, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
}

fn ast_lex(src: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Token::Num(src[start..i].parse().unwrap_or(0)));
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &src[start..i];
            out.push(if word == "let" {
                Token::Let
            } else {
                Token::Ident(word.to_string())
            });
        } else {
            out.push(match c {
                b'(' => Token::Open,
                b')' => Token::Close,
                b',' => Token::Comma,
                b';' => Token::Semi,
                _ => Token::Op(c as char),
            });
            i += 1;
        }
    }
    out
}

/// Recursive descent over the tokens: `let x = expr;` statements.
struct AstParser<'a> {
    toks: &'a [Token],
    pos: usize,
}

impl AstParser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn statement(&mut self) -> Option<(String, Expr)> {
        if self.next()? != Token::Let {
            return None;
        }
        let Some(Token::Ident(name)) = self.next() else {
            return None;
        };
        if self.next()? != Token::Op('=') {
            return None;
        }
        let e = self.expr(0)?;
        (self.next()? == Token::Semi).then_some((name, e))
    }
    fn expr(&mut self, min_prec: u8) -> Option<Expr> {
        let mut lhs = self.atom()?;
        while let Some(Token::Op(op)) = self.peek() {
            let op = *op;
            let prec = match op {
                '+' | '-' => 1,
                '*' | '/' | '%' => 2,
                _ => return None,
            };
            if prec < min_prec {
                break;
            }
            self.pos += 1;
            let rhs = self.expr(prec + 1)?;
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        Some(lhs)
    }
    fn atom(&mut self) -> Option<Expr> {
        match self.next()? {
            Token::Num(n) => Some(Expr::Num(n)),
            Token::Open => {
                let e = self.expr(0)?;
                (self.next()? == Token::Close).then_some(e)
            }
            Token::Ident(name) => {
                if self.peek() != Some(&Token::Open) {
                    return Some(Expr::Var(name));
                }
                self.pos += 1;
                let mut args = Vec::new();
                if self.peek() == Some(&Token::Close) {
                    self.pos += 1;
                    return Some(Expr::Call(name, args));
                }
                loop {
                    args.push(self.expr(0)?);
                    match self.next()? {
                        Token::Comma => {}
                        Token::Close => return Some(Expr::Call(name, args)),
                        _ => return None,
                    }
                }
            }
            _ => None,
        }
    }
}

/// Constant folding into a new tree (the old one is dropped by the caller): known
/// variables replaced by their values, operations on two numbers computed.
fn ast_fold(e: &Expr, env: &BTreeMap<String, i64>) -> Expr {
    match e {
        Expr::Num(n) => Expr::Num(*n),
        Expr::Var(v) => env
            .get(v)
            .map_or_else(|| Expr::Var(v.clone()), |&n| Expr::Num(n)),
        Expr::Bin(op, a, b) => match (ast_fold(a, env), ast_fold(b, env)) {
            (Expr::Num(x), Expr::Num(y)) => Expr::Num(match op {
                '+' => x.wrapping_add(y),
                '-' => x.wrapping_sub(y),
                '*' => x.wrapping_mul(y),
                '/' if y != 0 => x / y,
                '%' if y != 0 => x % y,
                _ => 0,
            }),
            (a, b) => Expr::Bin(*op, Box::new(a), Box::new(b)),
        },
        Expr::Call(f, args) => {
            Expr::Call(f.clone(), args.iter().map(|a| ast_fold(a, env)).collect())
        }
    }
}

fn ast_render(e: &Expr, out: &mut String) {
    match e {
        Expr::Num(n) => out.push_str(&n.to_string()),
        Expr::Var(v) => out.push_str(v),
        Expr::Bin(op, a, b) => {
            out.push('(');
            ast_render(a, out);
            out.push(' ');
            out.push(*op);
            out.push(' ');
            ast_render(b, out);
            out.push(')');
        }
        Expr::Call(f, args) => {
            let parts: Vec<String> = args
                .iter()
                .map(|a| {
                    let mut s = String::new();
                    ast_render(a, &mut s);
                    s
                })
                .collect();
            out.push_str(&format!("{f}({})", parts.join(", ")));
        }
    }
}

/// Generates `n` statements: `let vN = <random expression over earlier names>;`.
fn ast_source(n: usize, rng: &mut Rng) -> String {
    fn gen(rng: &mut Rng, depth: u32, defined: usize, out: &mut String) {
        let pick = if depth == 0 {
            rng.below(3)
        } else {
            rng.below(7)
        };
        match pick {
            0 => out.push_str(&rng.below(1000).to_string()),
            1 if defined > 0 => out.push_str(&format!("v{}", rng.below(defined as u64))),
            1 | 2 => out.push_str(&format!("input_{}", rng.below(50))),
            3 => {
                out.push_str(["max", "min", "clamp", "hash"][rng.below(4) as usize]);
                out.push('(');
                for k in 0..1 + rng.below(3) {
                    if k > 0 {
                        out.push_str(", ");
                    }
                    gen(rng, depth - 1, defined, out);
                }
                out.push(')');
            }
            _ => {
                out.push('(');
                gen(rng, depth - 1, defined, out);
                out.push_str([" + ", " - ", " * ", " / ", " % "][rng.below(5) as usize]);
                gen(rng, depth - 1, defined, out);
                out.push(')');
            }
        }
    }
    let mut src = String::new();
    for i in 0..n {
        src.push_str(&format!("let v{i} = "));
        gen(rng, 5, i, &mut src);
        src.push_str(";\n");
    }
    src
}

/// A compiler front end in miniature: lex generated source into tokens, parse it into
/// boxed expression trees, fold constants into new trees, render them back to text.
fn ast(scale: u64) -> Outcome {
    let mut rng = Rng::new(23);
    let src = ast_source(6_000, &mut rng);
    let reps = 2 * scale;
    let mut sum = 0u64;
    let mut nodes = 0u64;
    let t = Timer::start();
    for _ in 0..reps {
        let toks = ast_lex(&src);
        nodes += toks.len() as u64;
        let mut p = AstParser {
            toks: &toks,
            pos: 0,
        };
        let mut env: BTreeMap<String, i64> = BTreeMap::new();
        let mut rendered = Vec::new();
        while p.pos < toks.len() {
            let Some((name, e)) = p.statement() else {
                break;
            };
            let folded = ast_fold(&e, &env);
            drop(e);
            if let Expr::Num(n) = folded {
                env.insert(name.clone(), n);
            }
            let mut line = format!("let {name} = ");
            ast_render(&folded, &mut line);
            rendered.push(line);
        }
        let out = rendered.join("\n");
        sum = mix(sum, out.len() as u64);
        sum = mix(sum, env.len() as u64);
        sum = mix(sum, rendered.len() as u64);
    }
    Outcome {
        time: t.elapsed(),
        ops: nodes,
        checksum: sum,
    }
}

/// The wipe sweep: for 64 B … 16 MiB, the time of one `memset` of a block and of
/// `secalloc::wipe_bytes(FourPass)` on it; prints `wipe <size> <memset ns> <wipe ns>` lines.
/// Samples of the two alternate (so a busy neighbour slows both alike) and the best of 9
/// is kept for each, as microbenchmarks do on a shared machine.
fn wipe_sweep(scale: u64) {
    let mut size = 64usize;
    while size <= 16 << 20 {
        let mut buf = vec![1u8; size];
        // Each sample covers about 8 MiB of memset (2 MiB of wipe), at least 4 calls.
        let iters = ((8usize << 20) * scale as usize / size).max(4);
        let mut sample = |f: &dyn Fn(&mut [u8])| -> f64 {
            let t = Instant::now();
            for _ in 0..iters {
                f(black_box(&mut buf[..]));
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        };
        let memset = |b: &mut [u8]| {
            // SAFETY: b is a live, exclusive buffer of b.len() bytes.
            unsafe { std::ptr::write_bytes(b.as_mut_ptr(), 0, b.len()) }
        };
        let wipe = |b: &mut [u8]| secalloc::wipe_bytes(b, secalloc::Wipe::FourPass);
        sample(&memset); // warm up: pages faulted in, caches in steady state
        sample(&wipe);
        let (mut best_m, mut best_w) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..9 {
            best_m = best_m.min(sample(&memset));
            best_w = best_w.min(sample(&wipe));
        }
        println!("wipe {size} {best_m:.2} {best_w:.2}");
        size *= 4;
    }
}

/// Prints the outcome line the driver parses, or an error and a failing exit status.
///
/// `before` runs right before the workload; `after` right after it, and may return an error
/// (a configuration that did not measure what it claims) which fails the run.
pub fn main_with(
    alloc_name: &str,
    before: impl FnOnce(),
    after: impl FnOnce() -> Result<(), String>,
) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` runs every bench target with `--bench`: this binary is only meant to be
    // run by the driver, so say so and succeed.
    if args.is_empty() || args[0].starts_with("--") {
        println!(
            "suite-{alloc_name}: a workload binary of the benchmark suite; run `cargo bench --bench suite`"
        );
        return;
    }
    if args.len() != 3 {
        eprintln!("usage: suite-{alloc_name} <workload> <threads> <scale>");
        std::process::exit(2);
    }
    let (Ok(threads), Ok(scale)) = (args[1].parse::<usize>(), args[2].parse::<u64>()) else {
        eprintln!("suite-{alloc_name}: threads and scale must be whole numbers");
        std::process::exit(2);
    };
    if args[0] == "wipe-sweep" {
        wipe_sweep(scale);
        return;
    }
    before();
    match run(&args[0], threads, scale) {
        Ok(o) => {
            if let Err(e) = after() {
                eprintln!("suite-{alloc_name}: {e}");
                std::process::exit(3);
            }
            println!(
                "result {} {} {} {}",
                o.time.wall, o.time.cpu, o.ops, o.checksum
            )
        }
        Err(e) => {
            eprintln!("suite-{alloc_name}: {e}");
            std::process::exit(2);
        }
    }
}

/// Before a SecAlloc workload: the binary really runs on SecAlloc.
#[allow(dead_code)] // used by the SecAlloc binaries only
pub fn assert_secalloc_installed() {
    assert!(secalloc::is_installed(), "SecAlloc is the global allocator");
}

/// After a SecAlloc workload: the configuration did what it is named for — callsite stacks
/// recorded unless `SECALLOC_STACK_DEPTH=0`, bytes wiped unless `SECALLOC_WIPE=0`. (A build
/// whose frame-pointer check fails records no stacks, and "full" would then measure "wipe
/// only".)
#[allow(dead_code)] // used by the SecAlloc binaries only
pub fn check_secalloc_config() -> Result<(), String> {
    let env_is = |name: &str, value: &str| std::env::var(name).is_ok_and(|v| v == value);
    let s = secalloc::stats();
    if !env_is("SECALLOC_STACK_DEPTH", "0") && (!s.frame_pointers || s.unique_stacks == 0) {
        return Err(format!(
            "callsite stacks are on but none were recorded (frame pointers detected: {}, \
             unique stacks: {}): this run would not measure stack capture",
            s.frame_pointers, s.unique_stacks
        ));
    }
    if !env_is("SECALLOC_WIPE", "0") && s.wiped_bytes == 0 {
        return Err("the wipe is on but no byte was wiped".into());
    }
    if std::env::var_os("SUITE_STATS").is_some() {
        eprintln!("{s:?}");
    }
    Ok(())
}
