//! A randomised multi-thread workout shared by the heap's test binaries: allocations of
//! random sizes (1 byte to 1 MiB) and alignments (to 128 KiB), reallocations, frees on the
//! allocating thread and on others, threads that exit with blocks still live. Every block is
//! filled with a pattern of its own and checked before it is resized or freed.

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::sync::mpsc;

/// A small deterministic generator (xorshift*), so a failing seed can be rerun.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Whether the allocator under test zeroes and wipes (the tracker: every fresh byte zero,
/// every freed byte of a slot wiped), so the workout checks that too.
pub static STRICT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn strict() -> bool {
    STRICT.load(std::sync::atomic::Ordering::Relaxed)
}

std::thread_local! {
    static THREAD_ID: u64 = {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    };
}

fn thread_id() -> u64 {
    THREAD_ID.with(|t| *t)
}

/// A block handed between threads.
pub struct Block {
    pub ptr: usize,
    pub layout: Layout,
    pub tag: u8,
    /// The thread that allocated it (its slot belongs to that thread's heap).
    pub thread: u64,
}

// SAFETY: the block is plain memory owned by whoever holds this value.
unsafe impl Send for Block {}

impl Block {
    fn fill(&self) {
        // SAFETY: the block is live and `layout.size()` bytes long.
        unsafe { std::ptr::write_bytes(self.ptr as *mut u8, self.tag, self.layout.size()) };
    }
    fn check(&self) {
        // SAFETY: as in fill.
        let bytes =
            unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.layout.size()) };
        if let Some(i) = bytes.iter().position(|&b| b != self.tag) {
            panic!(
                "block {:#x} ({} bytes): byte {i} is {:#x}, expected {:#x}",
                self.ptr,
                self.layout.size(),
                bytes[i],
                self.tag
            );
        }
    }
    fn free(self) {
        self.check();
        // SAFETY: allocated with this layout and not freed yet.
        unsafe { dealloc(self.ptr as *mut u8, self.layout) };
        // A slot of this thread's own heap (blocks this small, aligned to at most 64 KiB, are
        // never mapped directly) stays mapped and cannot be handed to another thread: read it back.
        if strict()
            && self.thread == thread_id()
            && self.layout.size() <= 200_000
            && self.layout.align() <= 64 << 10
        {
            let stale = (0..self.layout.size())
                // SAFETY: see above; volatile reads of freed memory are the check.
                .filter(|&i| unsafe { ((self.ptr + i) as *const u8).read_volatile() } != 0)
                .count();
            assert_eq!(
                stale,
                0,
                "freed block {:#x} ({} bytes): {stale} bytes not wiped",
                self.ptr,
                self.layout.size()
            );
        }
    }
}

fn random_layout(rng: &mut Rng) -> Layout {
    let size = match rng.below(100) {
        0..=69 => 1 + rng.below(256),
        70..=89 => 1 + rng.below(8192),
        90..=97 => 1 + rng.below(300_000),
        _ => 1 + rng.below(1 << 20),
    } as usize;
    let align = match rng.below(50) {
        0 => 1usize << rng.below(18),
        1..=4 => 1usize << rng.below(7),
        _ => 8,
    };
    Layout::from_size_align(size, align).unwrap()
}

fn new_block(rng: &mut Rng) -> Block {
    let layout = random_layout(rng);
    let zeroed = rng.below(4) == 0;
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe {
        if zeroed {
            alloc_zeroed(layout)
        } else {
            alloc(layout)
        }
    };
    assert!(!ptr.is_null(), "out of memory for {layout:?}");
    assert_eq!(
        ptr as usize % layout.align(),
        0,
        "misaligned block for {layout:?}"
    );
    if zeroed || strict() {
        // SAFETY: the block is live and `layout.size()` bytes long.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
        assert!(
            bytes.iter().all(|&b| b == 0),
            "alloc{} gave dirty memory ({layout:?})",
            if zeroed { "_zeroed" } else { "" }
        );
    }
    let b = Block {
        ptr: ptr as usize,
        layout,
        tag: (rng.next() as u8) | 1,
        thread: thread_id(),
    };
    b.fill();
    b
}

fn resize(b: Block, rng: &mut Rng) -> Block {
    b.check();
    let new_size = 1 + rng.below(b.layout.size() as u64 * 2 + 64) as usize;
    // SAFETY: `b` is live with this layout; the new size is non-zero and small.
    let p = unsafe { realloc(b.ptr as *mut u8, b.layout, new_size) };
    assert!(!p.is_null());
    assert_eq!(
        p as usize % b.layout.align(),
        0,
        "realloc lost the alignment"
    );
    let kept = b.layout.size().min(new_size);
    // SAFETY: the new block is live and at least `kept` bytes long.
    let bytes = unsafe { std::slice::from_raw_parts(p, kept) };
    assert!(
        bytes.iter().all(|&x| x == b.tag),
        "realloc lost the contents"
    );
    if strict() && new_size > kept {
        // SAFETY: the new block is live and `new_size` bytes long.
        let grown = unsafe { std::slice::from_raw_parts(p.add(kept), new_size - kept) };
        assert!(
            grown.iter().all(|&x| x == 0),
            "realloc from {} to {new_size} bytes gave dirty memory",
            b.layout.size()
        );
    }
    // A block that stayed in place keeps its allocating thread's slot; a moved one is this
    // thread's now.
    let thread = if p as usize == b.ptr {
        b.thread
    } else {
        thread_id()
    };
    let nb = Block {
        ptr: p as usize,
        layout: Layout::from_size_align(new_size, b.layout.align()).unwrap(),
        tag: b.tag.wrapping_add(2),
        thread,
    };
    nb.fill();
    nb
}

/// Runs `threads` threads for `rounds` operations each; each thread also receives blocks
/// from its neighbour and frees them. Some threads exit early with blocks still live (freed
/// later by the main thread), so their heaps are adopted by newer threads.
pub fn workout(seed: u64, threads: usize, rounds: usize) {
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..threads {
        let (tx, rx) = mpsc::channel::<Block>();
        senders.push(tx);
        receivers.push(rx);
    }
    let mut handles = Vec::new();
    for (t, rx) in receivers.into_iter().enumerate() {
        let tx = senders[(t + 1) % threads].clone();
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ ((t as u64 + 1) * 0x1000_0001));
            let mut mine: Vec<Block> = Vec::new();
            for _ in 0..rounds {
                match rng.below(10) {
                    0..=4 => mine.push(new_block(&mut rng)),
                    5 if !mine.is_empty() => {
                        let i = rng.below(mine.len() as u64) as usize;
                        let b = mine.swap_remove(i);
                        mine.push(resize(b, &mut rng));
                    }
                    6 | 7 if !mine.is_empty() => {
                        let i = rng.below(mine.len() as u64) as usize;
                        mine.swap_remove(i).free();
                    }
                    8 if !mine.is_empty() => {
                        let i = rng.below(mine.len() as u64) as usize;
                        // The neighbour may have finished: then the block comes back.
                        if let Err(back) = tx.send(mine.swap_remove(i)) {
                            back.0.free();
                        }
                    }
                    _ => {
                        while let Ok(b) = rx.try_recv() {
                            b.free();
                        }
                    }
                }
            }
            drop(tx);
            // Leave the rest to the main thread: this thread's heap is handed back while
            // its blocks are still live.
            let mut left: Vec<Block> = mine;
            while let Ok(b) = rx.try_recv() {
                left.push(b);
            }
            (left, rx)
        }));
    }
    drop(senders);
    let mut rest = Vec::new();
    let mut receivers = Vec::new();
    for h in handles {
        let (left, rx) = h.join().unwrap();
        rest.extend(left);
        receivers.push(rx);
    }
    // Every sender is gone now: what is still queued is all that was sent and not freed.
    for rx in receivers {
        rest.extend(rx.try_iter());
    }
    // A second generation of threads adopts the first one's heaps and frees the rest.
    let chunks: Vec<Vec<Block>> = {
        let mut v: Vec<Vec<Block>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, b) in rest.into_iter().enumerate() {
            v[i % threads].push(b);
        }
        v
    };
    let handles: Vec<_> = chunks
        .into_iter()
        .enumerate()
        .map(|(t, blocks)| {
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ 0xABCD ^ t as u64);
                let mut mine: Vec<Block> = (0..64).map(|_| new_block(&mut rng)).collect();
                for b in blocks {
                    b.free();
                }
                for b in mine.drain(..) {
                    b.free();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Minor page faults of the calling thread so far.
#[allow(dead_code)]
pub fn minor_faults_of_this_thread() -> i64 {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is a valid out-pointer.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut r) }, 0);
    r.ru_minflt
}

/// Writes one byte per page of `p[..len]` (a pattern from `seed`).
#[allow(dead_code)]
pub fn fill_pages(p: *mut u8, len: usize, seed: u8) {
    for off in (0..len).step_by(4096) {
        // SAFETY: the caller's block holds `len` bytes.
        unsafe { *p.add(off) = seed.wrapping_add((off / 4096) as u8) };
    }
}

/// Checks the bytes written by [`fill_pages`].
#[allow(dead_code)]
pub fn check_pages(p: *const u8, len: usize, seed: u8) {
    for off in (0..len).step_by(4096) {
        // SAFETY: as in fill_pages.
        let b = unsafe { *p.add(off) };
        assert_eq!(
            b,
            seed.wrapping_add((off / 4096) as u8),
            "page at offset {off}"
        );
    }
}

/// Frees a 48-byte block twice on this thread, printing its address first (a child case:
/// the heap must stop at the second free, whether the block sits in a quarantine or not).
#[allow(dead_code)]
#[inline(never)]
pub fn double_free_case() {
    let layout = Layout::from_size_align(48, 8).unwrap();
    // SAFETY: the second free is the bug under test; the heap must stop before reusing it.
    unsafe {
        let p = std::hint::black_box(alloc(layout));
        println!("block {:#x}", p as usize);
        dealloc(p, layout);
        dealloc(p, layout);
    }
}

/// As [`double_free_case`], with the second free from another thread.
#[allow(dead_code)]
#[inline(never)]
pub fn remote_double_free_case() {
    let layout = Layout::from_size_align(48, 8).unwrap();
    // SAFETY: a non-zero layout.
    let p = unsafe { std::hint::black_box(alloc(layout)) } as usize;
    println!("block {p:#x}");
    // SAFETY: the first free is valid.
    unsafe { dealloc(p as *mut u8, layout) };
    std::thread::spawn(move || {
        // SAFETY: the double free under test, from another thread.
        unsafe { dealloc(p as *mut u8, layout) }
    })
    .join()
    .unwrap();
}

/// Frees a 2 MiB mapped block, then allocates 1 MiB: the heap hands out the freed mapping
/// (cached), shrunk, all zero; then writes one byte past the new end, which must hit the
/// guard page (SIGSEGV). Panics (an exit, not a signal) if the mapping was not reused.
#[allow(dead_code)]
#[inline(never)]
pub fn large_guard_after_reuse_case() {
    const MIB: usize = 1 << 20;
    let big = Layout::from_size_align(2 * MIB, 8).unwrap();
    let small = Layout::from_size_align(MIB, 8).unwrap();
    // SAFETY: valid allocations, each freed with its layout; the write past the end is the
    // fault under test.
    unsafe {
        let p = alloc(big);
        std::ptr::write_bytes(p, 0xA5, 2 * MIB);
        dealloc(p, big);
        let q = alloc(small);
        assert_eq!(q, p, "the freed mapping is reused");
        let bytes = std::slice::from_raw_parts(q, MIB);
        assert!(bytes.iter().all(|&b| b == 0), "a reused mapping is zero");
        println!("reused block {:#x}", q as usize);
        std::ptr::write_volatile(q.add(MIB), 1);
    }
}

/// What a child process left: exit code, stdout, stderr, and the signal that ended it.
#[allow(dead_code)]
pub type ChildOutput = (Option<i32>, String, String, Option<i32>);

/// A command re-running this test binary's `child_entry` test alone, with `case` in the
/// environment variable `var` (its child cases read it there).
#[allow(dead_code)]
pub fn child_command(var: &str, case: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(var, case);
    cmd
}

/// Runs `cmd` (from [`child_command`]) to its end.
#[allow(dead_code)]
pub fn child_output(cmd: &mut std::process::Command) -> ChildOutput {
    use std::os::unix::process::ExitStatusExt;
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.signal(),
    )
}
