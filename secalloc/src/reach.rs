//! Reachability: which live blocks are still reachable, definitely lost or indirectly lost.
//!
//! Classified like memcheck and LeakSanitizer. The graph's nodes are the tracked blocks and
//! the in-use chunks of glibc's heap that are not ours (objects std takes from `System`
//! directly, C code's `malloc`): found by walking the heap chunk by chunk, they are scanned
//! when reached, so a chain static -> foreign object -> tracked block holds. Only tracked
//! blocks get a verdict, and only they lead lost structures.
//!
//! Roots are every readable and writable mapping of the process (data and bss of loaded
//! objects, TLS, other threads' stacks, anonymous mappings) except: the C library's and
//! the loader's data; glibc's heaps; anonymous mappings holding blocks of ours (the inner
//! allocator's heap: mimalloc's segments, glibc's mmapped chunks), whose other bytes are
//! free space and metadata; the allocator's own metadata; the interiors of our blocks. Of
//! the calling thread's stack, [`OwnStack`] says which part: from the stack pointer up for
//! an on-demand check, and at exit the frames of the callers of `exit` only. Those start at
//! the return-address slot of the call into `exit`, found by searching up the stack for a
//! word that is a return address into code whose preceding instruction calls `exit`
//! (`call rel32` to it or to its PLT stub, or `call *slot(%rip)` through a GOT slot holding
//! it). glibc is built without frame pointers, so the frame-pointer chain cannot be walked
//! through `exit` and `__run_exit_handlers`; interposing `exit` from a library would
//! override the program's own `exit` symbol for every caller (C code, other libraries) and
//! miss a static one. Since `exit` never returns, that return address can sit nowhere else
//! below the callers. After `main` returns the caller is `__libc_start_call_main`, and
//! `main`'s dead frames lie below the slot.
//!
//! A block pointed to (at its start or inside it) from a root is still reachable, and so is
//! everything reachable from it. Of the rest, a block reached from another unreachable block
//! is indirectly lost; the remaining ones — the heads of lost structures — are definitely
//! lost. In a lost cycle the block with the lowest address is the definite one, as in
//! memcheck. Blocks freed by other threads while the check runs are left out.
//!
//! Freed memory is wiped, so stale pointers left in freed chunks cannot make a lost block
//! look reachable. Stale words in live memory can: memcheck skips stack words never written
//! (it tracks definedness), we read them, so the verdict errs on the side of "reachable".

use crate::reader::Reader;
use crate::report::Block;

/// How a block live at exit relates to the program's roots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeakKind {
    /// No pointer to it anywhere: nothing can free it.
    DefinitelyLost,
    /// Pointed to only from lost blocks.
    IndirectlyLost,
    /// Reachable from a global, a stack, TLS or another reachable block.
    StillReachable,
}

const UNSEEN: u8 = 0;
const REACHABLE: u8 = 1;
const INDIRECT: u8 = 2;
const LEADER: u8 = 3;

/// Address ranges to leave out of root scanning: sorted and disjoint, so both their starts
/// and their ends ascend (the lookup in [`Skips::gaps`] searches by end).
struct Skips(Vec<(usize, usize)>);

impl Skips {
    /// Sorts `v` and merges overlapping or nested ranges. Nesting is the rule, not the
    /// exception: the own heap's blocks lie inside its span reservation, itself one range.
    fn sorted(mut v: Vec<(usize, usize)>) -> Skips {
        v.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(v.len());
        for (s, e) in v {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        Skips(merged)
    }
    /// Calls `f` with the sub-ranges of `[a, b)` not covered by a skip range.
    fn gaps(&self, a: usize, b: usize, mut f: impl FnMut(usize, usize)) {
        let mut cur = a;
        let start = self.0.partition_point(|&(_, e)| e <= a);
        for &(s, e) in &self.0[start..] {
            if s >= b {
                break;
            }
            if s > cur {
                f(cur, s.min(b));
            }
            cur = cur.max(e);
            if cur >= b {
                return;
            }
        }
        if cur < b {
            f(cur, b);
        }
    }
}

/// A node of the reachability graph: a tracked block, or a heap object the tracker never
/// saw (memory that std or C code took from `malloc` directly, found by walking glibc's
/// heap). Only tracked blocks get a verdict; the others carry reachability through them.
#[derive(Clone, Copy, Debug)]
struct Node {
    addr: usize,
    size: usize,
    /// Index into the tracked blocks, or `FOREIGN`.
    tracked: usize,
}

const FOREIGN: usize = usize::MAX;

/// The graph's nodes sorted by address, for pointer lookups.
struct Index {
    nodes: Vec<Node>,
    lo: usize,
    hi: usize,
}

impl Index {
    fn new(mut nodes: Vec<Node>) -> Self {
        nodes.sort_unstable_by_key(|n| n.addr);
        let lo = nodes.first().map_or(0, |b| b.addr);
        let hi = nodes
            .iter()
            .map(|b| b.addr + b.size.max(1))
            .max()
            .unwrap_or(0);
        Index { nodes, lo, hi }
    }
    #[inline]
    fn find(&self, v: usize) -> Option<usize> {
        if v < self.lo || v >= self.hi {
            return None;
        }
        let i = self.nodes.partition_point(|b| b.addr <= v);
        if i == 0 {
            return None;
        }
        let b = &self.nodes[i - 1];
        (v < b.addr + b.size.max(1)).then_some(i - 1)
    }
}

/// Copies `out.len()` bytes at `addr` of this process's memory through `process_vm_readv`,
/// which reports an unmapped page as an error instead of faulting. Returns the bytes read.
fn read_mem(addr: usize, out: &mut [u8]) -> usize {
    if out.is_empty() {
        return 0;
    }
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: out.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: out.len(),
    };
    // SAFETY: `local` describes our own writable buffer; the remote range is only read by
    // the kernel, which fails cleanly on unmapped pages. getpid has no preconditions.
    let got = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    got.max(0) as usize
}

fn read_word(addr: usize) -> Option<usize> {
    let mut w = [0u8; 8];
    (read_mem(addr, &mut w) == 8).then(|| usize::from_ne_bytes(w))
}

/// Reads `[a, b)` of this process's memory and calls `f(address, word)` with each aligned
/// word; unreadable pages are skipped.
pub(crate) fn scan_remote(a: usize, b: usize, buf: &mut [u8], mut f: impl FnMut(usize, usize)) {
    // Read into the word-aligned part of `buf` and go through it as words: a plain slice
    // loop, cheap even where the allocator is built without optimisation (a user's debug
    // build), unlike taking each word apart from bytes.
    // SAFETY: every bit pattern is a valid usize.
    let (_, words, _) = unsafe { buf.align_to_mut::<usize>() };
    if words.is_empty() {
        return;
    }
    let mut cur = (a + 7) & !7;
    while cur + 8 <= b {
        let n = (b - cur).min(words.len() * 8) & !7;
        // SAFETY: the words are plain integers; viewing them as bytes to be filled is sound.
        let bytes = unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), n) };
        let got = read_mem(cur, bytes) & !7;
        if got == 0 {
            // Skip the unreadable page and go on.
            cur = (cur + 4096) & !4095;
            continue;
        }
        for (k, &w) in words[..got / 8].iter().enumerate() {
            f(cur + 8 * k, w);
        }
        cur += got;
    }
}

/// Forward reads of one range through a window buffer (for walking heap chunk headers).
struct Window<'a> {
    buf: &'a mut [u8],
    start: usize,
    len: usize,
    end: usize,
}

impl<'a> Window<'a> {
    fn new(buf: &'a mut [u8], end: usize) -> Self {
        Window {
            buf,
            start: 0,
            len: 0,
            end,
        }
    }
    fn word(&mut self, a: usize) -> Option<usize> {
        if a < self.start || a + 8 > self.start + self.len {
            if a + 8 > self.end {
                return None;
            }
            let n = (self.end - a).min(self.buf.len());
            self.start = a;
            self.len = read_mem(a, &mut self.buf[..n]);
            if self.len < 8 {
                return None;
            }
        }
        let o = a - self.start;
        let mut x = [0u8; 8];
        x.copy_from_slice(&self.buf[o..o + 8]);
        Some(usize::from_ne_bytes(x))
    }
}

/// One line of `/proc/self/maps`.
struct Mapping {
    start: usize,
    end: usize,
    writable: bool,
    readable: bool,
    exec: bool,
    name: String,
}

fn mappings() -> Vec<Mapping> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut it = line.split_whitespace();
        let (Some(range), Some(perms)) = (it.next(), it.next()) else {
            continue;
        };
        let name = it.nth(3).unwrap_or("").to_string();
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let p = perms.as_bytes();
        if let (Ok(s), Ok(e)) = (usize::from_str_radix(s, 16), usize::from_str_radix(e, 16)) {
            out.push(Mapping {
                start: s,
                end: e,
                readable: p.first() == Some(&b'r'),
                writable: p.get(1) == Some(&b'w'),
                exec: p.get(2) == Some(&b'x'),
                name,
            });
        }
    }
    out
}

/// The readable and writable mappings of this process, with their names (for the
/// exit-cost benchmark's reference scan).
pub(crate) fn rw_mappings() -> Vec<(usize, usize, String)> {
    mappings()
        .into_iter()
        .filter(|m| m.readable && m.writable)
        .map(|m| (m.start, m.end, m.name))
        .collect()
}

/// Whether `a` (64 MiB-aligned) starts a glibc thread heap: its `heap_info` holds a plausible
/// arena pointer, size and protected size. Returns the size of its read-write part.
fn glibc_heap_at(a: usize) -> Option<usize> {
    let ar_ptr = read_word(a)?;
    let size = read_word(a + 16)?;
    let mprotect = read_word(a + 24)?;
    let arena_ok = (ar_ptr > a && ar_ptr < a + 4096)
        || (ar_ptr % 16 == 0 && ar_ptr & (GLIBC_HEAP_MAX - 1) < 4096 && ar_ptr > 4096);
    (arena_ok
        && (4096..=GLIBC_HEAP_MAX).contains(&size)
        && (size..=GLIBC_HEAP_MAX).contains(&mprotect)
        && mprotect % 4096 == 0)
        .then_some(mprotect)
}

/// Splits anonymous mappings where a glibc thread heap starts or ends inside them: the
/// kernel shows adjacent mappings with the same permissions as one line, so a thread's
/// stack and the heap mapped right above it read as a single mapping.
fn split_glibc_heaps(maps: Vec<Mapping>) -> Vec<Mapping> {
    let mut out = Vec::with_capacity(maps.len());
    for m in maps {
        if !(m.name.is_empty() && m.readable && m.writable) {
            out.push(m);
            continue;
        }
        let mut cuts = Vec::new();
        let mut a = (m.start + GLIBC_HEAP_MAX - 1) & !(GLIBC_HEAP_MAX - 1);
        while a < m.end {
            if let Some(rw) = glibc_heap_at(a) {
                cuts.push(a);
                if a + rw < m.end {
                    cuts.push(a + rw);
                }
            }
            a += GLIBC_HEAP_MAX;
        }
        let mut start = m.start;
        for c in cuts.into_iter().chain([m.end]) {
            if c > start {
                out.push(Mapping {
                    start,
                    end: c,
                    name: String::new(),
                    ..m
                });
                start = c;
            }
        }
    }
    out
}

/// The C library's and the dynamic loader's own data. Neither holds pointers to Rust
/// allocations, and glibc's arena state (`last_remainder`, bins) keeps pointers to chunks
/// that have since become parts of live blocks: not roots.
fn is_libc_data(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or("");
    file.starts_with("libc.so") || file.starts_with("libc-") || file.starts_with("ld-linux")
}

/// glibc's chunk layout on 64-bit targets.
const CHUNK_HDR: usize = 16;
const PREV_INUSE: usize = 1;
const GLIBC_HEAP_MAX: usize = 64 << 20;
/// `sizeof(struct malloc_state)` on x86_64 since glibc 2.26.
const MALLOC_STATE_SIZE: usize = 2200;

/// `sizeof(tcache_perthread_struct)` (64 counts, 64 list heads) plus the chunk header.
const TCACHE_CHUNK: usize = 0x290;

/// Walks glibc's chunks in `[p, end)` and calls `f(user pointer, usable size)` for each chunk
/// in use that is not one of our blocks nor glibc's own tcache. True when the walk ended
/// exactly at `end` (the top chunk's end): a heap in a state we understand.
fn walk_chunks(mut p: usize, end: usize, buf: &mut [u8], mut f: impl FnMut(usize, usize)) -> bool {
    let mut w = Window::new(buf, end);
    let Some(mut size) = w.word(p + 8) else {
        return false;
    };
    loop {
        let csize = size & !7;
        if csize < CHUNK_HDR || csize % 16 != 0 || p + csize > end {
            return false;
        }
        let next = p + csize;
        if next == end {
            // The top chunk: free space.
            return true;
        }
        let Some(next_size) = w.word(next + 8) else {
            return false;
        };
        // A chunk is in use when the next one says so. Chunks in glibc's tcache and fast
        // bins look in use too: their link words are mangled (safe-linking), and nothing
        // but the tcache (skipped below) and the arena (not a root) points to them.
        if next_size & PREV_INUSE != 0
            && csize >= 32
            && !is_ours(&mut w, p, csize)
            && !(csize == TCACHE_CHUNK && is_tcache(&mut w, p))
        {
            f(p + CHUNK_HDR, csize - 8);
        }
        p = next;
        size = next_size;
    }
}

/// Whether the chunk at `p` holds a block of ours (of alignment up to 16, the others are
/// found by address): its first 16 bytes are a valid header. Our own blocks allocated while
/// the snapshot was taken (the classifier's scratch) are recognised this way too.
fn is_ours(w: &mut Window<'_>, p: usize, csize: usize) -> bool {
    // The prefix before the user bytes: the header, after the allocation time in profile mode.
    let prefix = crate::block::offset(1);
    let user = p + CHUNK_HDR + prefix;
    let (Some(w0), Some(w1)) = (w.word(user - 16), w.word(user - 8)) else {
        return false;
    };
    let Some(m) = crate::block::decode_header(user, w0 as u64, w1 as u64) else {
        return false;
    };
    // The chunk glibc gives for our request (header, bytes, canary if on) has this size:
    // 1 in 1024 random words pass the check bits, not also this.
    let request2size = |req: usize| ((req + 8 + 15) & !15).max(32);
    let req = prefix + m.size;
    m.align_log2 <= 4
        && (csize == request2size(req) || csize == request2size(req + crate::block::CANARY))
}

/// Whether the chunk at `p` looks like a thread's `tcache_perthread_struct`: small counts,
/// then list heads that are null or point into the heap. Its heads point to freed chunks,
/// whose stale bytes must not be scanned.
fn is_tcache(w: &mut Window<'_>, p: usize) -> bool {
    let user = p + CHUNK_HDR;
    for k in 0..16 {
        // 4 u16 counts per word.
        let Some(c) = w.word(user + 8 * k) else {
            return false;
        };
        if (0..4).any(|i| (c >> (16 * i)) & 0xffff > 0xff) {
            return false;
        }
    }
    (0..64).all(|k| {
        w.word(user + 128 + 8 * k)
            .is_some_and(|e| e == 0 || (e % 16 == 0 && e.abs_diff(p) < GLIBC_HEAP_MAX))
    })
}

/// If `[s, e)` is one of glibc's heaps, walks it: the main arena (`[heap]`, up to the
/// program break) or a thread arena's heap (64 MiB-aligned, starting with its `heap_info`).
/// `None`: not a glibc heap; `Some(walked)`: a glibc heap, walked completely or not.
fn walk_glibc_heap(m: &Mapping, buf: &mut [u8], mut f: impl FnMut(usize, usize)) -> Option<bool> {
    let (s, e) = (m.start, m.end);
    if m.name == "[heap]" {
        // SAFETY: sbrk(0) only reads the current program break.
        let brk = unsafe { libc::sbrk(0) } as usize;
        let end = if s < brk && brk <= e { brk } else { e };
        return Some(walk_chunks(s, end, buf, &mut f));
    }
    if !m.name.is_empty() || s % GLIBC_HEAP_MAX != 0 || e - s > GLIBC_HEAP_MAX {
        return None;
    }
    // heap_info: { ar_ptr, prev, size, mprotect_size, [pagesize,] pad }.
    let ar_ptr = read_word(s)?;
    let size = read_word(s + 16)?;
    if size < 4096 || size > e - s {
        return None;
    }
    let starts: &[usize] = if ar_ptr > s && ar_ptr < s + 4096 {
        // The arena's first heap: its malloc_state follows heap_info, then the chunks.
        &[(ar_ptr + MALLOC_STATE_SIZE + 15) & !15]
    } else if ar_ptr % 16 == 0 && ar_ptr & (GLIBC_HEAP_MAX - 1) < 4096 {
        // A later heap of an arena: chunks follow heap_info (48 bytes since glibc 2.35,
        // 32 before).
        &[s + 48, s + 32]
    } else {
        return None;
    };
    for &p in starts {
        let mut found = Vec::new();
        if walk_chunks(p, s + size, buf, |a, n| found.push((a, n))) {
            for (a, n) in found {
                f(a, n);
            }
            return Some(true);
        }
    }
    Some(false)
}

/// Whether the instruction ending at `ret` calls `exit` (`exit_fn`): a direct `call rel32`
/// to it or to a PLT stub jumping through a GOT slot that holds it, or a `call` through
/// such a GOT slot.
fn calls_exit(ret: usize, exit_fn: usize, is_exec: &impl Fn(usize) -> bool) -> bool {
    let mut b = [0u8; 6];
    if ret < 6 || !is_exec(ret - 6) || read_mem(ret - 6, &mut b) != 6 {
        return false;
    }
    let rel = |x: &[u8]| i32::from_le_bytes([x[0], x[1], x[2], x[3]]) as isize;
    if b[1] == 0xe8 {
        let target = ret.wrapping_add_signed(rel(&b[2..6]));
        if target == exit_fn {
            return true;
        }
        if !is_exec(target) {
            return false;
        }
        let mut plt = [0u8; 12];
        if read_mem(target, &mut plt) != 12 {
            return false;
        }
        // `jmp *slot(%rip)`, after an `endbr64` and a `bnd` prefix when present.
        let mut o = 0;
        if plt[..4] == [0xf3, 0x0f, 0x1e, 0xfa] {
            o = 4;
        }
        if plt[o] == 0xf2 {
            o += 1;
        }
        if plt[o] != 0xff || plt[o + 1] != 0x25 || o + 6 > plt.len() {
            return false;
        }
        let slot = (target + o + 6).wrapping_add_signed(rel(&plt[o + 2..o + 6]));
        return read_word(slot) == Some(exit_fn);
    }
    if b[0] == 0xff && b[1] == 0x15 {
        let slot = ret.wrapping_add_signed(rel(&b[2..6]));
        return read_word(slot) == Some(exit_fn);
    }
    false
}

/// The address of the return-address slot of the call into `exit` on this thread's stack,
/// searching upward from `sp` to `end`. `exit` never returns, so that return address can be
/// nowhere else below the caller's frames: everything from the slot up is the callers'
/// live frames (`main`'s, or `__libc_start_call_main`'s after `main` returned).
fn exit_call_slot(sp: usize, end: usize, maps: &[Mapping], buf: &mut [u8]) -> Option<usize> {
    let exit_fn = libc::exit as *const () as usize;
    let exec: Vec<(usize, usize)> = maps
        .iter()
        .filter(|m| m.exec)
        .map(|m| (m.start, m.end))
        .collect();
    let is_exec = |a: usize| {
        let i = exec.partition_point(|&(s, _)| s <= a);
        i > 0 && a < exec[i - 1].1
    };
    let mut found = None;
    scan_remote(sp, end, buf, |at, v| {
        if found.is_none() && is_exec(v) && calls_exit(v, exit_fn, &is_exec) {
            found = Some(at);
        }
    });
    found
}

/// Which part of the calling thread's stack is a root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OwnStack {
    /// From the caller's stack pointer up (a leak check taken by the program).
    FromHere,
    /// At exit: only the frames of the callers of `exit`, which are never unwound; the
    /// frames of `exit` itself and of its handlers (this one) are not, nor dead frames below.
    ExitCallers,
}

/// A leak check's verdicts, and what it could not know about its roots.
pub(crate) struct Verdicts {
    /// One kind per tracked block; `None` for a block freed while the check ran.
    pub kinds: Vec<Option<LeakKind>>,
    /// Why some verdicts may be off (none: the roots are exact, as memcheck takes them).
    pub roots_note: Option<String>,
}

/// The inner allocator's type name, recorded at initialisation.
static INNER: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// What [`set_inner`] records for `SecAlloc::new()`: the tracker over its own heap, with
/// block metadata out of line.
pub(crate) const OWN_HEAP: &str = "secalloc::SecHeap (own heap, metadata out of line)";

/// Records the inner allocator's type (for the report's note on unknown inners).
pub(crate) fn set_inner(name: &'static str) {
    let _ = INNER.set(name);
}

/// Inner allocators whose metadata is known not to hold roots: glibc (`System`), whose heaps
/// are walked chunk by chunk, mimalloc, whose statics point only at its own page and
/// segment headers, never at blocks, and secalloc's own heap, whose span reservation is one
/// of the allocator's own regions and whose metadata holds no block address.
fn inner_is_known(name: &str) -> bool {
    name == OWN_HEAP
        || name == "std::alloc::System"
        || name.starts_with("mimalloc::")
        || name == core::any::type_name::<crate::SecHeap>()
}

/// Classifies `tracked` (sorted by address). `internal` are the allocator's own live blocks,
/// whose interiors are neither roots nor scanned.
pub(crate) fn classify(tracked: &[Block], internal: &[Block], own: OwnStack) -> Verdicts {
    let mut notes: Vec<String> = Vec::new();
    if let Some(name) = INNER.get() {
        if !inner_is_known(name) {
            notes.push(format!(
                "inner allocator {name}: its metadata is not known to secalloc; mappings holding its blocks are taken as its heap, pointers it keeps elsewhere count as roots (lost blocks may show as still reachable)"
            ));
        }
    }
    let mut buf = vec![0u8; 64 << 10];
    let maps = split_glibc_heaps(mappings());
    // Every block of ours in an inner allocator's memory (the header layout), tracked or
    // the allocator's own, by address. The own heap's memory is known exactly instead: its
    // span reservation and metadata are the allocator's own regions (skipped below), its
    // directly mapped blocks are skipped block by block, so a mapping the kernel merged
    // with one of them is still scanned.
    let mut ours: Vec<usize> = tracked
        .iter()
        .chain(internal)
        .filter(|b| b.source == crate::reader::Source::Header)
        .map(|b| b.addr)
        .collect();
    ours.sort_unstable();
    let holds_ours = |s: usize, e: usize| {
        let i = ours.partition_point(|&a| a < s);
        i < ours.len() && ours[i] < e
    };

    // The nodes: tracked blocks, and the chunks of glibc's heaps that are not ours.
    let mut nodes: Vec<Node> = tracked
        .iter()
        .enumerate()
        .map(|(i, b)| Node {
            addr: b.addr,
            size: b.size,
            tracked: i,
        })
        .collect();
    let mut heaps: Vec<(usize, usize)> = Vec::new();
    for m in maps.iter().filter(|m| m.readable && m.writable) {
        let walked = walk_glibc_heap(m, &mut buf, |a, n| {
            if !holds_ours(a, a + n) {
                nodes.push(Node {
                    addr: a,
                    size: n,
                    tracked: FOREIGN,
                });
            }
        });
        match walked {
            None => {}
            Some(ok) => {
                heaps.push((m.start, m.end));
                if !ok {
                    notes.push(format!(
                        "glibc heap {:#x}-{:#x} could not be walked (it changed meanwhile, or its layout is not one secalloc knows): objects other code took from malloc there were not scanned",
                        m.start, m.end
                    ));
                }
            }
        }
    }
    let index = Index::new(nodes);
    let mut state = vec![UNSEEN; index.nodes.len()];
    // Sized up front: growing it means fresh pages and a wipe of the old buffer on every step.
    let mut work: Vec<usize> = Vec::with_capacity(index.nodes.len());

    let mut skips: Vec<(usize, usize)> = tracked
        .iter()
        .chain(internal)
        .map(|b| {
            (
                b.addr.saturating_sub(crate::block::offset(1)),
                b.addr + b.size + crate::block::CANARY,
            )
        })
        .collect();
    // The allocator's own mappings, listed after the mappings were read: one mapped since
    // (a live-set leaf for the buffers above) is in neither list, so none is read.
    crate::sys::for_each_region(|s, l| skips.push((s, s + l)));
    // Freed mappings the own heap keeps for reuse: no block's memory, not roots.
    crate::heap::tracked::for_each_cached_mapping(|s, l| skips.push((s, s + l)));
    let skips = Skips::sorted(skips);

    // The calling thread's stack below its stack pointer is dead.
    let here = 0usize;
    let sp = core::hint::black_box(&here) as *const usize as usize;

    let mut prev_file_backed_end = 0;
    for m in &maps {
        let file_backed = m.name.starts_with('/');
        let after_file = prev_file_backed_end == m.start;
        prev_file_backed_end = if file_backed { m.end } else { 0 };
        if !(m.readable && m.writable)
            || m.name == "[vvar]"
            || m.name == "[vsyscall]"
            || m.name.starts_with("/dev/")
            || is_libc_data(&m.name)
            || heaps.contains(&(m.start, m.end))
        {
            continue;
        }
        let (s, e) = (m.start, m.end);
        let own_stack = s <= sp && sp < e && (m.name == "[stack]" || m.name.is_empty());
        // An anonymous mapping holding blocks of ours is the inner allocator's heap: its
        // other bytes are free space and metadata (mimalloc's segments, glibc's mmapped
        // chunks), not roots. Not so for a program's bss, which an inner allocator might
        // carve blocks from.
        if !own_stack && m.name.is_empty() && !after_file && holds_ours(s, e) {
            continue;
        }
        let from = if own_stack {
            match own {
                OwnStack::FromHere => sp & !7,
                OwnStack::ExitCallers => match exit_call_slot(sp, e, &maps, &mut buf) {
                    Some(slot) => slot,
                    None => {
                        notes.push(
                            "the call into exit was not found on the exiting thread's stack: its frames were not scanned (values held only by the callers of exit show as lost)"
                                .to_string(),
                        );
                        continue;
                    }
                },
            }
        } else {
            s
        };
        skips.gaps(from, e, |a, b| {
            scan_remote(a, b, &mut buf, |_, v| {
                if let Some(i) = index.find(v) {
                    if state[i] == UNSEEN {
                        state[i] = REACHABLE;
                        work.push(i);
                    }
                }
            })
        });
    }
    // Everything reachable from the roots.
    let reader = Reader::new();
    let mut ctx = Flood {
        reader: &reader,
        index: &index,
        tracked,
        buf: &mut buf,
    };
    ctx.run(&mut state, &mut work, REACHABLE, |s| s == UNSEEN);

    // Lost structures: each unreached node not yet claimed leads a clique; nodes reached
    // from it are indirectly lost (a former leader reached this way becomes indirect too).
    // Only tracked blocks lead: an unreached foreign chunk may be a freed one sitting in a
    // fast bin, whose stale bytes say nothing.
    for i in 0..index.nodes.len() {
        if state[i] != UNSEEN || index.nodes[i].tracked == FOREIGN {
            continue;
        }
        state[i] = LEADER;
        work.push(i);
        ctx.run(&mut state, &mut work, INDIRECT, |s| {
            s == UNSEEN || s == LEADER
        });
        state[i] = LEADER;
    }
    let mut kinds = vec![Some(LeakKind::DefinitelyLost); tracked.len()];
    for (n, s) in index.nodes.iter().zip(state) {
        if n.tracked != FOREIGN {
            kinds[n.tracked] = Some(match s {
                REACHABLE => LeakKind::StillReachable,
                INDIRECT => LeakKind::IndirectlyLost,
                _ => LeakKind::DefinitelyLost,
            });
        }
    }
    // A block freed since the snapshot (by a thread still running, at exit typically a
    // runtime's workers tearing down) lost its pointers because it was freed: not a leak,
    // and no longer live.
    for (b, k) in tracked.iter().zip(kinds.iter_mut()) {
        if !reader.still_the_same(b) {
            *k = None;
        }
    }
    Verdicts {
        kinds,
        roots_note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

/// Scans nodes' interiors.
struct Flood<'a> {
    reader: &'a Reader,
    index: &'a Index,
    tracked: &'a [Block],
    buf: &'a mut [u8],
}

impl Flood<'_> {
    /// Scans the nodes on `work`, marking the nodes they point to with `mark` when `take`
    /// accepts their current state.
    fn run(
        &mut self,
        state: &mut [u8],
        work: &mut Vec<usize>,
        mark: u8,
        take: impl Fn(u8) -> bool,
    ) {
        let leader = work.last().copied();
        let index = self.index;
        while let Some(i) = work.pop() {
            let n = index.nodes[i];
            let mut visit = |v: usize| {
                if let Some(j) = index.find(v) {
                    if Some(j) != leader && take(state[j]) {
                        state[j] = mark;
                        work.push(j);
                    }
                }
            };
            if n.tracked == FOREIGN {
                // Not ours: it may be freed and unmapped meanwhile, so read it safely.
                scan_remote(n.addr, n.addr + n.size, self.buf, |_, v| visit(v));
                continue;
            }
            let b = self.tracked[n.tracked];
            self.reader.with_block(&b, |p, size| {
                for k in 0..size / 8 {
                    // SAFETY: the block is held (it stays mapped meanwhile) and holds `size`
                    // readable bytes; we read aligned words inside it.
                    let v = unsafe { (p as *const usize).add(k).read_volatile() };
                    visit(v);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_skip_covered_ranges() {
        let s = Skips::sorted(vec![(10, 20), (15, 30), (50, 60)]);
        let mut out = Vec::new();
        s.gaps(0, 100, |a, b| out.push((a, b)));
        assert_eq!(out, [(0, 10), (30, 50), (60, 100)]);
        out.clear();
        s.gaps(12, 55, |a, b| out.push((a, b)));
        assert_eq!(out, [(30, 50)]);
    }

    #[test]
    fn gaps_skip_ranges_nested_in_a_larger_one() {
        // A region holding blocks, as the own heap's reservation holds its blocks: a range
        // starting inside the region must not be scanned because a nested block ends
        // before it starts.
        let mut v = vec![(1000, 100_000), (100_500, 100_600)];
        v.extend((0..64).map(|i| (1100 + 100 * i, 1150 + 100 * i)));
        let s = Skips::sorted(v);
        let mut out = Vec::new();
        s.gaps(50_000, 200_000, |a, b| out.push((a, b)));
        assert_eq!(out, [(100_000, 100_500), (100_600, 200_000)]);
        out.clear();
        s.gaps(0, 2000, |a, b| out.push((a, b)));
        assert_eq!(out, [(0, 1000)]);
    }

    #[test]
    fn index_finds_interior_pointers() {
        let node = |addr, size| Node {
            addr,
            size,
            tracked: FOREIGN,
        };
        let ix = Index::new(vec![node(200, 8), node(100, 16)]);
        assert_eq!(ix.find(100), Some(0));
        assert_eq!(ix.find(115), Some(0));
        assert_eq!(ix.find(116), None);
        assert_eq!(ix.find(207), Some(1));
        assert_eq!(ix.find(99), None);
        assert_eq!(ix.find(208), None);
    }

    #[test]
    fn known_inner_allocators() {
        assert!(inner_is_known(OWN_HEAP));
        assert!(inner_is_known("std::alloc::System"));
        assert!(inner_is_known("mimalloc::MiMalloc"));
        assert!(inner_is_known(core::any::type_name::<crate::SecHeap>()));
        assert!(!inner_is_known("my_app::BumpArena"));
    }

    #[test]
    fn a_call_through_a_got_slot_holding_exit_is_recognised() {
        let exit_fn = libc::exit as *const () as usize;
        // [ff 15 rel32] then, 2 bytes on, an 8-byte slot: rel32 = 2 (from the end of the call).
        let mut code = [0u8; 24];
        code[0] = 0xff;
        code[1] = 0x15;
        code[2..6].copy_from_slice(&2i32.to_le_bytes());
        code[8..16].copy_from_slice(&exit_fn.to_ne_bytes());
        let ret = core::hint::black_box(&mut code).as_ptr() as usize + 6;
        assert!(calls_exit(ret, exit_fn, &|_| true));
        assert!(!calls_exit(ret, exit_fn + 1, &|_| true), "another function");
        assert!(!calls_exit(ret, exit_fn, &|_| false), "not code");
        code[1] = 0x25; // a jump, not a call
        core::hint::black_box(&mut code);
        assert!(!calls_exit(ret, exit_fn, &|_| true));
    }

    #[test]
    fn glibc_chunks_in_use_are_found_free_ones_and_ours_skipped() {
        // A fake heap: [in use 48][free 32][in use 64, ours][top 64]. Size words carry
        // PREV_INUSE for the chunk before.
        let mut heap = vec![0u64; 26];
        let base = heap.as_ptr() as usize;
        let p = |i: usize| base + 8 * i;
        heap[1] = 48 | 1; // chunk 0 at word 0, size 48
        heap[7] = 32 | 1; // chunk 1 at word 6 (free: the next size lacks PREV_INUSE)
        heap[11] = 64; // chunk 2 at word 10: in use (the top says so)
        heap[19] = 64 | 1; // top at word 18
        core::hint::black_box(&mut heap);
        let mut found = Vec::new();
        assert!(walk_chunks(p(0), p(26), &mut [0u8; 64], |a, n| found.push((a, n))));
        assert_eq!(found, [(p(2), 40), (p(12), 56)]);
        // Chunk 2 holds a block of ours: a valid header at its start, and the chunk size
        // glibc gives for it (16 + 24 + 8 bytes asked).
        let user = p(14);
        let meta = crate::block::Meta {
            size: 24,
            align_log2: 4,
            stack: 1,
            scope: 0,
            born: 0,
        };
        // SAFETY: words 12 and 13 (the header before `user`) lie inside `heap`.
        unsafe { crate::block::write_header(user as *mut u8, &meta) };
        core::hint::black_box(&mut heap);
        found.clear();
        assert!(walk_chunks(p(0), p(26), &mut [0u8; 64], |a, n| found.push((a, n))));
        assert_eq!(found, [(p(2), 40)]);
        // A heap whose sizes do not lead to its end is not understood.
        assert!(!walk_chunks(p(0), p(24), &mut [0u8; 64], |_, _| {}));
    }
}
