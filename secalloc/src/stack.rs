//! Callsite stacks: a validated frame-pointer walk, and interning of unique stacks.
//!
//! Capturing walks the chain of saved frame pointers (`[fp]` = caller's fp, `[fp+8]` =
//! return address on x86-64 and AArch64), starting at or above the stack pointer and
//! following a pointer only when it is strictly increasing and inside the current thread's
//! stack, so a binary without frame pointers gets short stacks instead of a crash. It costs under 1 ns a frame. Unique stacks are interned
//! once: the 64-bit hash of the return addresses maps to a 32-bit id, first through a
//! per-thread direct-mapped cache, then a lock-free open-addressing table (a spin lock is
//! taken only to insert a stack never seen before). Symbolisation happens only in reports.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::config::MAX_STACK_DEPTH;
use crate::sys::{map_zeroed, SpinLock};

/// Id of "no stack recorded" (depth 0, or a stack that could not be stored).
pub(crate) const NO_STACK: u32 = 0;
/// Id marking the allocator's own (untracked) blocks.
pub(crate) const INTERNAL: u32 = u32::MAX;
/// The largest id a stack gets: ids fit in 23 bits, as the own heap's slot records keep
/// them (`heap::slots`), with room for `INTERNAL`'s stand-in (8 million stacks, most of a
/// gigabyte of stack table). Past it, stacks are recorded as `NO_STACK`.
pub(crate) const MAX_ID: u32 = (1 << 23) - 2;

/// The frame pointer and stack pointer registers (0 and `usize::MAX` on architectures the
/// walk does not support, so that no walk starts).
#[inline(always)]
fn frame_and_stack_pointers() -> (usize, usize) {
    let (fp, sp): (usize, usize);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads two registers; no memory access.
    unsafe {
        core::arch::asm!(
            "mov {fpv}, rbp",
            "mov {spv}, rsp",
            fpv = out(reg) fp,
            spv = out(reg) sp,
            options(nomem, nostack, preserves_flags)
        )
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads two registers; no memory access.
    unsafe {
        core::arch::asm!(
            "mov {fpv}, x29",
            "mov {spv}, sp",
            fpv = out(reg) fp,
            spv = out(reg) sp,
            options(nomem, nostack, preserves_flags)
        )
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        (fp, sp) = (0, usize::MAX);
    }
    (fp, sp)
}

/// splitmix64's finaliser: a bijection, so it spreads a walk's hash over all bits without
/// adding collisions. Needed only where bits are used as a table index.
#[inline(always)]
fn finalise(raw: u64) -> u64 {
    let mut h = (raw ^ (raw >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^= h >> 31;
    if h == 0 {
        1
    } else {
        h
    }
}

/// Result of a walk.
pub(crate) struct Walk {
    /// Frames stored at the start of the walk's buffer: never more than its length.
    pub len: usize,
    /// Hash of the return addresses and their count, before [`finalise`]; never 0.
    pub hash: u64,
    /// The frame pointer that failed validation and ended the walk before it reached the
    /// outermost frame or the depth limit; 0 when it reached either. (Kept as the value,
    /// not a flag, so the loop's exit costs nothing: most callers never look at it.)
    pub stop: usize,
}

impl Walk {
    /// The walk stopped at a frame pointer that failed validation.
    #[inline(always)]
    pub(crate) fn broke_off(&self) -> bool {
        self.stop != 0
    }
}

/// Walks up to `buf.len()` return addresses, starting with the caller of the function this is
/// inlined into. `stack_hi` is the top (highest address) of the current thread's stack.
#[inline(always)]
pub(crate) fn walk(buf: &mut [usize], stack_hi: usize) -> Walk {
    let (fp, sp) = frame_and_stack_pointers();
    let hi = record_limit(stack_hi);
    // Code built without frame pointers may hold any value in the register: the walk
    // starts only from an address in the live part of the stack, at or above the stack
    // pointer and below the top (one unsigned compare for both bounds; an unknown top, 0,
    // leaves no room), and then only moves up. A start anywhere else is a broken chain.
    if fp.wrapping_sub(sp) >= hi.saturating_sub(sp) || buf.is_empty() {
        return finish(0, SEED, if buf.is_empty() { 0 } else { usize::MAX });
    }
    // SAFETY: `sp <= fp < hi` (checked above; the loop's first frame record lies between
    // the stack pointer and the top of this thread's stack, all of it mapped and readable),
    // and `buf` is not empty.
    unsafe { walk_valid(fp, buf, hi) }
}

/// The hash a walk starts from.
const SEED: u64 = 0x243F_6A88_85A3_08D3;

/// The highest frame pointer whose 16-byte record still lies inside a stack whose top is
/// `stack_hi` (0 when unknown: no frame pointer is below it).
#[inline(always)]
fn record_limit(stack_hi: usize) -> usize {
    stack_hi.saturating_sub(16)
}

/// Walks the frame records from `fp` ([`walk_valid`] after checking the start): a start at
/// or above the limit is a broken chain, a null one an empty chain.
///
/// # Safety
/// Unless `stack_hi` is 0 or at most `fp`, every address from `fp` up to `stack_hi` is
/// mapped, readable memory.
#[cfg(test)]
unsafe fn walk_from(fp: usize, buf: &mut [usize], stack_hi: usize) -> Walk {
    let hi = record_limit(stack_hi);
    if fp == 0 || fp >= hi || buf.is_empty() {
        return finish(0, SEED, if fp >= hi { fp } else { 0 });
    }
    // SAFETY: forwarded contract, with `fp < hi` and `buf` not empty checked above.
    unsafe { walk_valid(fp, buf, hi) }
}

/// Walks the frame records from `fp`: each frame costs two loads, a store, three hash steps
/// and two compares. A saved frame pointer is followed only when it lies strictly between
/// the current one and `hi` (the stack's top less a record), so the walk always moves up
/// the stack and stays inside it, and ends at the outermost frame's null pointer. Records
/// are read unaligned: code without frame pointers may leave any value in the register,
/// and an unaligned read inside the stack is as safe as an aligned one (x86-64 and AArch64
/// allow it on normal memory). A zero return address is kept where it appears, except as
/// the last frame, where it marks the outermost frame and is dropped.
///
/// # Safety
/// `0 < fp < hi`, `buf` is not empty, and every address from `fp` up to `hi + 16` is
/// mapped, readable memory.
#[inline(always)]
unsafe fn walk_valid(mut fp: usize, buf: &mut [usize], hi: usize) -> Walk {
    let max = buf.len();
    let out = buf.as_mut_ptr();
    let mut len = 0;
    let mut hash: u64 = SEED;
    let mut stop = 0;
    loop {
        // SAFETY: `fp < hi`, so `fp..fp + 16` lies between this walk's first frame and the
        // top of the stack (guaranteed readable by the caller); reads are unaligned.
        let (next, ret) = unsafe {
            (
                ptr::read_unaligned(fp as *const usize),
                ptr::read_unaligned((fp + 8) as *const usize),
            )
        };
        // SAFETY: `len < max`: it starts at 0 with `max > 0`, and the loop ends when it
        // reaches `max`.
        unsafe { out.add(len).write(ret) };
        len += 1;
        // One xor, rotate and add per frame (no multiply in the serial chain); the carries
        // of the add keep it from being linear, and the mix below spreads it.
        hash = (hash ^ ret as u64).rotate_left(23).wrapping_add(ret as u64);
        if len == max {
            break;
        }
        if next <= fp || next >= hi {
            // A null saved frame pointer ends the chain normally.
            stop = next;
            break;
        }
        fp = next;
    }
    // SAFETY: `len >= 1` here, and `buf[..len]` was written above.
    if unsafe { *out.add(len - 1) } == 0 {
        // The outermost frame's zero return address: undo its hash step, `(h ^ 0)
        // .rotate_left(23) + 0`. (Rare: a branch, so the loop need not keep `len - 1`.)
        len = core::hint::black_box(len) - 1;
        hash = hash.rotate_right(23);
    }
    finish(len, hash, stop)
}

/// A walk's result from its frame count, its running hash and where it stopped.
#[inline(always)]
fn finish(len: usize, hash: u64, stop: usize) -> Walk {
    // Not yet mixed (see `finalise`): the thread's cache compares this as it is.
    let mut hash = hash ^ len as u64;
    if hash == 0 {
        hash = 1;
    }
    Walk { len, hash, stop }
}

/// The top of the calling thread's stack, or 0 when unknown. May allocate (glibc reads
/// `/proc/self/maps` for the main thread): call with the re-entrancy guard set.
pub(crate) fn current_stack_top() -> usize {
    // SAFETY: pthread_attr_t is plain data; it is initialised by pthread_getattr_np before use
    // and destroyed afterwards.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return 0;
        }
        let mut addr: *mut libc::c_void = ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            return 0;
        }
        addr as usize + size
    }
}

// ---- calibration: does this build keep frame pointers? ----

#[inline(never)]
fn calib_inner(buf: &mut [usize; 4], top: usize) -> usize {
    let w = walk(buf, top);
    core::hint::black_box(w.len)
}

#[inline(never)]
fn calib_outer(buf: &mut [usize; 4], top: usize) -> usize {
    let n = calib_inner(buf, top);
    core::hint::black_box(n) + 1
}

/// Checks that a frame-pointer walk finds the known caller: true when the build keeps frame
/// pointers (`-C force-frame-pointers=yes`).
pub(crate) fn frame_pointers_work(stack_top: usize) -> bool {
    if stack_top == 0 {
        return false;
    }
    let mut buf = [0usize; 4];
    let n = core::hint::black_box(calib_outer as fn(&mut [usize; 4], usize) -> usize)(
        &mut buf, stack_top,
    );
    // The first return address must lie in this library's code, near `calib_outer` (code
    // layout may place the call site some way from the symbol, never megabytes away).
    let outer = calib_outer as *const () as usize;
    n >= 2 && buf[0].abs_diff(outer) < (16 << 20) && buf[1].abs_diff(outer) < (16 << 20)
}

/// Whether stack walks show that the program lacks frame pointers, though the start-up
/// probe found them in the allocator's own code (built at `opt-level = 0`, where frame
/// pointers are kept): over half of `walks` broke off within the first frames (`short`).
/// With frame pointers, only allocations made straight from code built without them (parts
/// of a prebuilt standard library, C code) break off.
pub(crate) fn walks_break_off(short: u64, walks: u64) -> bool {
    short >= 4 && short.saturating_mul(2) > walks
}

// ---- interning ----

/// Entries in each thread's stack cache (direct-mapped): 32 KiB a thread, of which a
/// thread's memory holds only the pages its stacks' entries fall in. Enough for thousands
/// of distinct stacks in a working set (ast: 6,832 stacks; 512 entries missed 43% of
/// lookups, each a probe of the global table; 4,096 miss 13%).
pub(crate) const CACHE_ENTRIES: usize = 4096;

/// A thread's cache of recently seen stack hashes: one 8-byte key an entry, a check of the
/// hash in its high 41 bits and the stack's id in the low 23 (as the global table's keys),
/// so a lookup reads one cache line. The entry and the check come from the walk's hash
/// multiplied by two different odd constants (two independent multiplies), so two hashes
/// that share an entry and a check agree in 53 bits of two functions of all their bits
/// (the global table compares 41).
#[repr(C)]
pub(crate) struct StackCache {
    keys: [u64; CACHE_ENTRIES],
}

impl StackCache {
    /// Entry of a walk's (unfinalised) hash: the top bits of one multiply, off the walk's
    /// critical path as far as possible (the full finaliser is two more dependent
    /// multiplies). Not the hash's own low bits: the walk's last steps add the outermost
    /// frames' return addresses, the same for most of a thread's stacks (as entries, they
    /// made ast's cache miss twice as often); nor the high half of a 128-bit product, whose
    /// top bits depend on the hash's top bits alone.
    #[inline(always)]
    fn slot(hash: u64) -> usize {
        (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - CACHE_ENTRIES.trailing_zeros())) as usize
    }
    /// The bits of an entry's key that must equal those of the hash's check value: the
    /// high bits of a second multiply, each a function of every bit of the hash below it.
    #[inline(always)]
    fn check(hash: u64) -> u64 {
        hash.wrapping_mul(0xD6E8_FEB8_6659_FD93) & !ID_BITS
    }
    /// The id cached for `hash`, or `NO_STACK` (an empty entry holds id 0, `NO_STACK`).
    #[inline]
    pub(crate) fn get(&self, hash: u64) -> u32 {
        let k = self.keys[Self::slot(hash)];
        if (k ^ Self::check(hash)) & !ID_BITS == 0 {
            (k & ID_BITS) as u32
        } else {
            NO_STACK
        }
    }
    /// Remembers `id` (at most `MAX_ID`) for `hash`, in place of its entry's last stack.
    #[inline]
    pub(crate) fn put(&mut self, hash: u64, id: u32) {
        debug_assert!(id <= MAX_ID);
        self.keys[Self::slot(hash)] = Self::check(hash) | u64::from(id);
    }
}

const RECORDS_PER_CHUNK: usize = 1 << 16;
const RECORD_CHUNKS: usize = 256;
const FRAME_CHUNK_BYTES: usize = 4 << 20;

/// Where an interned stack's frames are: `len` bytes at `frames`, in the compact form of
/// [`encode_frames`].
#[repr(C)]
struct Record {
    frames: AtomicPtr<u8>,
    len: AtomicU32,
}

/// One entry of the table: the stack's hash with its low bits replaced by its id (0: an
/// empty entry; ids start at 1). Two stacks are told apart by the 41 high bits of their
/// hashes, some of which also choose where a probe starts (so that a grown table can place
/// the entries again from their keys); 8 bytes an entry instead of 16 (a table at most half
/// full: 16 bytes of table per stack, not 32, BENCHMARKS.md session 11).
#[repr(C)]
struct Slot {
    key: AtomicU64,
}

/// The bits of a slot's key that hold the id.
const ID_BITS: u64 = (1 << 23) - 1;
const _: () = assert!(MAX_ID as u64 <= ID_BITS);

/// Where the probe for `hash` starts in a table of `cap` entries (a power of two, at most
/// 2^24): bits from the 40th up, which a key keeps.
fn home(hash: u64, cap: usize) -> usize {
    (hash >> 40) as usize & (cap - 1)
}

/// The key of stack `id` with hash `hash`.
fn key(hash: u64, id: u32) -> u64 {
    (hash & !ID_BITS) | u64::from(id)
}

#[repr(C)]
struct Table {
    cap: usize,
    slots: [Slot; 0],
}

struct Arena {
    chunk: *mut u8,
    used: usize,
}

// SAFETY: the raw chunk pointer refers to process-global mmap'd memory, not thread-owned data.
unsafe impl Send for Arena {}

static TABLE: AtomicPtr<Table> = AtomicPtr::new(ptr::null_mut());
static RECORDS: [AtomicPtr<Record>; RECORD_CHUNKS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; RECORD_CHUNKS];
static COUNT: AtomicU32 = AtomicU32::new(0);
static INSERT: SpinLock<Arena> = SpinLock::new(Arena {
    chunk: ptr::null_mut(),
    used: 0,
});
/// Bytes of metadata mapped for stacks (table, records, frames).
pub(crate) static STACK_BYTES: AtomicUsize = AtomicUsize::new(0);

fn slots(t: *mut Table) -> (&'static [Slot], usize) {
    // SAFETY: tables are mapped with room for `cap` slots after the header and never unmapped.
    unsafe {
        let cap = (*t).cap;
        (core::slice::from_raw_parts((*t).slots.as_ptr(), cap), cap)
    }
}

fn find(t: *mut Table, hash: u64) -> u32 {
    if t.is_null() {
        return NO_STACK;
    }
    let (s, cap) = slots(t);
    let mut i = home(hash, cap);
    loop {
        let k = s[i].key.load(Ordering::Acquire);
        if k == 0 {
            return NO_STACK;
        }
        if (k ^ hash) & !ID_BITS == 0 {
            return (k & ID_BITS) as u32;
        }
        i = (i + 1) & (cap - 1);
    }
}

fn new_table(cap: usize) -> *mut Table {
    let bytes = core::mem::size_of::<Table>() + cap * core::mem::size_of::<Slot>();
    let t = map_zeroed(bytes).cast::<Table>();
    if !t.is_null() {
        // SAFETY: freshly mapped, large enough for the header.
        unsafe { (*t).cap = cap };
        STACK_BYTES.fetch_add(bytes, Ordering::Relaxed);
    }
    t
}

fn place(t: *mut Table, hash: u64, id: u32) {
    let (s, cap) = slots(t);
    let mut i = home(hash, cap);
    while s[i].key.load(Ordering::Relaxed) != 0 {
        i = (i + 1) & (cap - 1);
    }
    s[i].key.store(key(hash, id), Ordering::Release);
}

fn record(id: u32) -> Option<&'static Record> {
    let i = id as usize;
    let chunk = RECORDS.get(i / RECORDS_PER_CHUNK)?.load(Ordering::Acquire);
    if chunk.is_null() {
        return None;
    }
    // SAFETY: record chunks hold RECORDS_PER_CHUNK records and are never unmapped.
    Some(unsafe { &*chunk.add(i % RECORDS_PER_CHUNK) })
}

/// Returns the id of `frames` (hash `hash`), interning it if new. `NO_STACK` when out of room.
#[inline]
pub(crate) fn intern(frames: &[usize], hash: u64, cache: &mut StackCache) -> u32 {
    let id = cache.get(hash);
    if id != NO_STACK {
        return id;
    }
    intern_uncached(frames, hash, cache)
}

#[inline(never)]
fn intern_uncached(frames: &[usize], raw: u64, cache: &mut StackCache) -> u32 {
    let hash = finalise(raw);
    let id = find(TABLE.load(Ordering::Acquire), hash);
    let id = if id != NO_STACK {
        id
    } else {
        intern_slow(frames, hash)
    };
    if id != NO_STACK {
        cache.put(raw, id);
    }
    id
}

#[cold]
fn intern_slow(frames: &[usize], hash: u64) -> u32 {
    let mut arena = INSERT.lock();
    let mut t = TABLE.load(Ordering::Acquire);
    let id = find(t, hash);
    if id != NO_STACK {
        return id;
    }
    let next = COUNT.load(Ordering::Relaxed) + 1;
    if next as usize >= RECORDS_PER_CHUNK * RECORD_CHUNKS || next > MAX_ID {
        return NO_STACK;
    }
    // Grow the table at half load. The old table stays mapped: readers may still probe it.
    let cap = if t.is_null() { 0 } else { slots(t).1 };
    if (next as usize) * 2 > cap {
        let bigger = new_table((cap * 2).max(4096));
        if bigger.is_null() {
            return NO_STACK;
        }
        if !t.is_null() {
            for s in slots(t).0 {
                let k = s.key.load(Ordering::Relaxed);
                if k != 0 {
                    place(bigger, k & !ID_BITS, (k & ID_BITS) as u32);
                }
            }
        }
        TABLE.store(bigger, Ordering::Release);
        if !t.is_null() {
            release_table(t);
        }
        t = bigger;
    }
    // Store the frames.
    let mut packed = [0u8; MAX_PACKED];
    let bytes = encode_frames(frames, &mut packed);
    if arena.chunk.is_null() || arena.used + bytes > FRAME_CHUNK_BYTES {
        let c = map_zeroed(FRAME_CHUNK_BYTES);
        if c.is_null() {
            return NO_STACK;
        }
        STACK_BYTES.fetch_add(FRAME_CHUNK_BYTES, Ordering::Relaxed);
        arena.chunk = c;
        arena.used = 0;
    }
    // SAFETY: `used + bytes <= FRAME_CHUNK_BYTES`, inside the mapped chunk.
    let dst = unsafe { arena.chunk.add(arena.used) };
    // SAFETY: dst has room for `bytes` bytes (checked above) and does not overlap `packed`.
    unsafe { ptr::copy_nonoverlapping(packed.as_ptr(), dst, bytes) };
    arena.used += bytes;
    // Publish the record, then the hash.
    let ci = next as usize / RECORDS_PER_CHUNK;
    if RECORDS[ci].load(Ordering::Acquire).is_null() {
        let bytes = RECORDS_PER_CHUNK * core::mem::size_of::<Record>();
        let c = map_zeroed(bytes).cast::<Record>();
        if c.is_null() {
            return NO_STACK;
        }
        STACK_BYTES.fetch_add(bytes, Ordering::Relaxed);
        RECORDS[ci].store(c, Ordering::Release);
    }
    let rec = record(next).expect("record chunk was just mapped");
    rec.len.store(bytes as u32, Ordering::Relaxed);
    rec.frames.store(dst, Ordering::Release);
    COUNT.store(next, Ordering::Release);
    place(t, hash, next);
    next
}

/// The return addresses of an interned stack (empty for `NO_STACK`, `INTERNAL` or unknown ids).
pub(crate) fn frames(id: u32) -> Frames {
    let mut out = Frames {
        ips: [0; MAX_STACK_DEPTH],
        len: 0,
    };
    if id == NO_STACK || id == INTERNAL {
        return out;
    }
    if let Some(r) = record(id) {
        let p = r.frames.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: published frames are immutable and never unmapped; len was stored
            // before the pointer was published with Release.
            let bytes =
                unsafe { core::slice::from_raw_parts(p, r.len.load(Ordering::Relaxed) as usize) };
            out.len = decode_frames(bytes, &mut out.ips);
        }
    }
    out
}

/// An interned stack's return addresses, innermost first (see [`frames`]); derefs to the
/// slice of them.
pub(crate) struct Frames {
    ips: [usize; MAX_STACK_DEPTH],
    len: usize,
}

impl core::ops::Deref for Frames {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        &self.ips[..self.len]
    }
}

/// Most bytes [`encode_frames`] writes: ten a frame (a 64-bit LEB128 number).
const MAX_PACKED: usize = MAX_STACK_DEPTH * 10;

/// Writes `frames` (at most [`MAX_STACK_DEPTH`]) into `out` compactly and returns the bytes
/// written: each frame as its difference from the frame before it (the first from 0),
/// zigzag-mapped and written in LEB128 (seven bits a byte). Return addresses of one binary
/// lie within a few megabytes of each other, so most frames take 3 or 4 bytes instead of
/// 8; in a program with thousands of callsites the frames are most of the stack table's
/// memory (BENCHMARKS.md).
fn encode_frames(frames: &[usize], out: &mut [u8; MAX_PACKED]) -> usize {
    let mut n = 0;
    let mut prev = 0usize;
    for &f in frames.iter().take(MAX_STACK_DEPTH) {
        let d = f.wrapping_sub(prev) as i64;
        let mut z = ((d << 1) ^ (d >> 63)) as u64;
        prev = f;
        loop {
            let byte = (z & 0x7F) as u8;
            z >>= 7;
            if z == 0 {
                out[n] = byte;
                n += 1;
                break;
            }
            out[n] = byte | 0x80;
            n += 1;
        }
    }
    n
}

/// Reads frames written by [`encode_frames`] into `out`; returns how many. Stops at the end
/// of `bytes` or when `out` is full (a truncated last number is dropped).
fn decode_frames(bytes: &[u8], out: &mut [usize]) -> usize {
    let mut n = 0;
    let mut prev = 0usize;
    let mut z: u64 = 0;
    let mut shift = 0;
    for &b in bytes {
        if shift < 64 {
            z |= u64::from(b & 0x7F) << shift;
        }
        shift += 7;
        if b & 0x80 != 0 {
            continue;
        }
        if n == out.len() {
            break;
        }
        let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
        prev = prev.wrapping_add(d as usize);
        out[n] = prev;
        n += 1;
        z = 0;
        shift = 0;
    }
    n
}

/// Gives the pages of a table that has been replaced back to the kernel, all but the
/// first (which holds its `cap`): a reader still probing it then reads zeros, an empty
/// slot or a zero id, both "not found", and takes the insert path, which looks in the
/// current table under the lock.
fn release_table(t: *mut Table) {
    let (_, cap) = slots(t);
    let bytes = core::mem::size_of::<Table>() + cap * core::mem::size_of::<Slot>();
    let start = 4096;
    let end = bytes & !4095;
    if end > start {
        // SAFETY: `t..t + bytes` is one mapping of `new_table`, never unmapped; the range
        // lies inside it, page-aligned, past its first page. MADV_DONTNEED on private
        // anonymous memory only replaces the pages with zero-filled ones.
        unsafe {
            libc::madvise(
                t.cast::<u8>().add(start).cast(),
                end - start,
                libc::MADV_DONTNEED,
            )
        };
    }
}

/// Number of unique stacks interned so far.
pub(crate) fn unique_stacks() -> u32 {
    COUNT.load(Ordering::Acquire)
}

/// Fork support: take the insert lock before `fork`, release it in parent and child.
pub(crate) fn lock_for_fork() {
    INSERT.raw_lock();
}

/// # Safety
/// Only after [`lock_for_fork`] on this thread.
pub(crate) unsafe fn unlock_after_fork() {
    // SAFETY: forwarded: the lock was taken by lock_for_fork.
    unsafe { INSERT.raw_unlock() };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fabricated stack: `words` of memory, in which frame records are written at word
    /// offsets; the walk's top is the end of the memory.
    struct FakeStack {
        words: Vec<usize>,
    }

    impl FakeStack {
        fn new(n: usize) -> Self {
            FakeStack { words: vec![0; n] }
        }
        fn addr(&self, word: usize) -> usize {
            self.words.as_ptr() as usize + word * 8
        }
        fn top(&self) -> usize {
            self.addr(self.words.len())
        }
        /// A record at word `at`: saved frame pointer `next`, return address `ret`.
        fn record(&mut self, at: usize, next: usize, ret: usize) {
            self.words[at] = next;
            self.words[at + 1] = ret;
        }
        fn walk(&self, from: usize, depth: usize) -> (Vec<usize>, Walk) {
            let mut buf = vec![0; depth];
            // SAFETY: `from` and every record lie inside `words`, readable up to `top`.
            let w = unsafe { walk_from(from, &mut buf, self.top()) };
            buf.truncate(w.len);
            (buf, w)
        }
    }

    #[test]
    fn walk_follows_a_chain_to_its_null_end() {
        let mut s = FakeStack::new(32);
        let (a, b, c) = (s.addr(2), s.addr(8), s.addr(20));
        s.record(2, b, 0x11);
        s.record(8, c, 0x22);
        s.record(20, 0, 0x33);
        let (frames, w) = s.walk(a, 16);
        assert_eq!(frames, [0x11, 0x22, 0x33]);
        assert!(!w.broke_off());
        // The depth limit ends the walk early, and changes the hash.
        let (two, w2) = s.walk(a, 2);
        assert_eq!(two, [0x11, 0x22]);
        assert!(!w2.broke_off());
        assert_ne!(w.hash, w2.hash);
    }

    #[test]
    fn walk_drops_the_outermost_zero_return_address() {
        let mut s = FakeStack::new(32);
        let (a, b, c) = (s.addr(2), s.addr(8), s.addr(20));
        s.record(2, b, 0x11);
        s.record(8, c, 0x22);
        s.record(20, 0, 0);
        let (frames, w) = s.walk(a, 16);
        assert_eq!(frames, [0x11, 0x22]);
        // The same hash as a walk of the same two frames that ends without a zero.
        s.record(8, 0, 0x22);
        let (frames2, w2) = s.walk(a, 16);
        assert_eq!(frames2, [0x11, 0x22]);
        assert_eq!(w.hash, w2.hash);
        assert!(!w.broke_off() && !w2.broke_off());
    }

    #[test]
    fn walk_stops_at_pointers_that_go_down_loop_or_leave_the_stack() {
        let mut s = FakeStack::new(32);
        let (a, b) = (s.addr(4), s.addr(10));
        s.record(4, b, 0x11);
        for bad in [a, s.addr(2), s.top(), s.top() - 8, usize::MAX, 8] {
            s.record(10, bad, 0x22);
            let (frames, w) = s.walk(a, 16);
            assert_eq!(frames, [0x11, 0x22], "next = {bad:#x}");
            assert!(w.broke_off(), "next = {bad:#x}");
        }
        // A start outside the stack walks nothing.
        let (frames, w) = s.walk(s.top(), 16);
        assert!(frames.is_empty() && w.broke_off());
        let (frames, w) = s.walk(0, 16);
        assert!(frames.is_empty() && !w.broke_off());
    }

    #[test]
    fn walk_reads_unaligned_records() {
        let mut s = FakeStack::new(32);
        let a = s.addr(2);
        let odd = s.addr(9) + 3;
        s.record(2, odd, 0x11);
        // SAFETY: `odd..odd + 16` lies inside `words`.
        unsafe {
            ptr::write_unaligned(odd as *mut usize, 0);
            ptr::write_unaligned((odd + 8) as *mut usize, 0x22);
        }
        let (frames, w) = s.walk(a, 16);
        assert_eq!(frames, [0x11, 0x22]);
        assert!(!w.broke_off());
    }

    #[test]
    fn the_thread_cache_keeps_one_stack_an_entry_and_tells_hashes_apart() {
        // SAFETY: StackCache is plain integers; zero is a valid empty cache.
        let mut cache: Box<StackCache> = unsafe { Box::new(core::mem::zeroed()) };
        // An empty cache misses, also for a hash whose check bits are all zero (0).
        for h in [0u64, 1, 0xAAAA_0001, u64::MAX] {
            assert_eq!(cache.get(h), NO_STACK);
        }
        // Two hashes that fall in one entry: the later put replaces the earlier.
        let a = 0x1234_5678_9ABC_DEF1u64;
        let b = (a + 1..)
            .find(|&h| StackCache::slot(h) == StackCache::slot(a))
            .unwrap();
        cache.put(a, 7);
        assert_eq!(cache.get(a), 7);
        assert_eq!(cache.get(b), NO_STACK, "same entry, different check");
        cache.put(b, MAX_ID);
        assert_eq!(cache.get(b), MAX_ID);
        assert_eq!(cache.get(a), NO_STACK, "replaced");
        // Hashes that differ in one bit anywhere never read each other's entry.
        for bit in 0..64 {
            let h = a ^ (1 << bit);
            cache.put(a, 9);
            assert_eq!(cache.get(h), NO_STACK, "bit {bit}");
        }
        // Many stacks at once: each hit returns the id put for exactly that hash.
        let hashes: Vec<u64> = (1..=3000u64)
            .map(|i| i.wrapping_mul(0x2545_F491_4F6C_DD1D))
            .collect();
        for (i, &h) in hashes.iter().enumerate() {
            cache.put(h, i as u32 + 1);
        }
        let mut hits = 0;
        for (i, &h) in hashes.iter().enumerate() {
            let id = cache.get(h);
            if id != NO_STACK {
                assert_eq!(id, i as u32 + 1);
                hits += 1;
            }
        }
        assert!(
            hits > 2000,
            "{hits} of 3000 kept in {CACHE_ENTRIES} entries"
        );
    }

    #[test]
    fn interning_is_stable_and_deduplicated() {
        // SAFETY: StackCache is plain integers; zero is a valid empty cache.
        let mut cache: Box<StackCache> = unsafe { Box::new(core::mem::zeroed()) };
        let a = [0x1000usize, 0x2000, 0x3000];
        let b = [0x1000usize, 0x2000, 0x3001];
        let ia = intern(&a, 0xAAAA_0001, &mut cache);
        let ib = intern(&b, 0xBBBB_0002, &mut cache);
        assert_ne!(ia, NO_STACK);
        assert_ne!(ia, ib);
        assert_eq!(intern(&a, 0xAAAA_0001, &mut cache), ia);
        // SAFETY: as above.
        let mut other: Box<StackCache> = unsafe { Box::new(core::mem::zeroed()) };
        assert_eq!(
            intern(&a, 0xAAAA_0001, &mut other),
            ia,
            "global table finds it"
        );
        assert_eq!(*frames(ia), a);
        assert_eq!(*frames(ib), b);
    }

    #[test]
    fn many_stacks_grow_the_table() {
        // SAFETY: as above.
        let mut cache: Box<StackCache> = unsafe { Box::new(core::mem::zeroed()) };
        let ids: Vec<u32> = (0..20_000u64)
            .map(|i| {
                intern(
                    &[i as usize + 1],
                    0x5555_0000_0000 + i * 7919 + 1,
                    &mut cache,
                )
            })
            .collect();
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(*frames(id), [i + 1]);
        }
        // Found again with an empty thread cache: through the current table, the ones it
        // replaced having been given back.
        // SAFETY: as above.
        let mut fresh: Box<StackCache> = unsafe { Box::new(core::mem::zeroed()) };
        for (i, &id) in ids.iter().enumerate() {
            let i = i as u64;
            assert_eq!(
                intern(
                    &[i as usize + 1],
                    0x5555_0000_0000 + i * 7919 + 1,
                    &mut fresh
                ),
                id
            );
        }
    }

    /// Stacks of every shape round-trip through the compact form exactly: near and far
    /// neighbours, addresses at both ends of the range, repeats, the full depth; and near
    /// frames take far fewer bytes than eight.
    #[test]
    fn frames_round_trip_through_the_compact_form() {
        let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as usize
        };
        let mut cases: Vec<Vec<usize>> = vec![
            vec![],
            vec![0],
            vec![usize::MAX],
            vec![0, usize::MAX, 0, usize::MAX],
            vec![1, 2, 3, 2, 1],
            vec![0x5555_5555_8000; MAX_STACK_DEPTH],
            vec![0x5555_5555_8000, 0x7fff_f7c0_1234, 0x5555_5555_9000, 0x10],
        ];
        for len in [1, 2, 15, 16, 17, MAX_STACK_DEPTH] {
            // One binary's code: within 16 MiB of a base.
            let base = 0x5555_5550_0000usize;
            cases.push((0..len).map(|_| base + next() % (16 << 20)).collect());
            // Anywhere at all.
            cases.push((0..len).map(|_| next()).collect());
        }
        for frames in &cases {
            let mut packed = [0u8; MAX_PACKED];
            let n = encode_frames(frames, &mut packed);
            let mut out = [0usize; MAX_STACK_DEPTH];
            let got = decode_frames(&packed[..n], &mut out);
            assert_eq!(&out[..got], &frames[..], "{frames:x?}");
        }
        let near: Vec<usize> = (0..16).map(|i| 0x5555_5555_0000 + i * 0x1234).collect();
        let mut packed = [0u8; MAX_PACKED];
        let n = encode_frames(&near, &mut packed);
        assert!(n <= 7 + 15 * 3, "{n} bytes for 16 near frames");
        // A number cut short is dropped; a full buffer stops the decoding.
        let mut out = [0usize; 4];
        assert_eq!(decode_frames(&packed[..n - 1], &mut out), 15.min(out.len()));
        assert_eq!(out, near[..4]);
        assert_eq!(decode_frames(&[0x80, 0x80], &mut out), 0);
    }

    /// A replaced table's pages past its first are given back: what they held reads as
    /// "not found", what the first holds is still found.
    #[test]
    fn a_replaced_table_is_given_back_past_its_first_page() {
        let t = new_table(4096);
        assert!(!t.is_null());
        // Hashes whose probes start at slot 1, in the first page, and at slot 4000, in the
        // last (8-byte slots after an 8-byte header).
        let (first, last) = (1u64 << 40 | 0xABC, 4000u64 << 40 | 0xDEF);
        place(t, first, 7);
        place(t, last, 9);
        assert_eq!(find(t, first), 7);
        assert_eq!(find(t, last), 9);
        assert_eq!(find(t, 2u64 << 40), NO_STACK);
        release_table(t);
        assert_eq!(slots(t).1, 4096);
        assert_eq!(find(t, first), 7);
        assert_eq!(find(t, last), NO_STACK);
    }

    #[inline(never)]
    fn depth3(buf: &mut [usize; 8]) -> usize {
        let top = current_stack_top();
        core::hint::black_box(walk(buf, top).len)
    }

    #[test]
    fn a_walk_without_the_stack_top_reads_nothing() {
        let mut buf = [0usize; 8];
        let w = walk(&mut buf, 0);
        assert_eq!(w.len, 0);
        assert!(w.broke_off());
        let w = walk(&mut [], current_stack_top());
        assert_eq!(w.len, 0);
        assert!(!w.broke_off());
    }

    #[test]
    fn walk_finds_frames() {
        if !frame_pointers_work(current_stack_top()) {
            eprintln!("skipping: this test build has no frame pointers");
            return;
        }
        let mut buf = [0usize; 8];
        let n = depth3(&mut buf);
        assert!(n >= 3, "walked {n} frames");
    }
}
