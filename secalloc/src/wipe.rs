//! The wipe: four passes (`0x00`, `0xFF`, random, `0x00`) that no optimiser may remove.
//!
//! Rust and LLVM assume a deallocator never reads freed memory, so stores into a block just
//! before it is freed are dead by definition and fat LTO deletes them (one zeroing allocator
//! lost its wipe entirely that way). Every pass is therefore followed by [`barrier`]: an empty
//! `asm!` block that receives the pointer and, lacking `nomem`/`readonly`, may read and write
//! any memory reachable from it. The compiler must assume each pass is observed, so none of
//! them can be merged or dropped. Each pass itself is a plain `write_bytes`/`copy` so it runs
//! at `memset` speed (volatile byte loops are ~36x slower). Blocks over [`CHUNK`] bytes are
//! wiped a chunk at a time, each chunk through all four passes while it sits in the cache.

use core::ptr;

/// Bytes in the per-thread random pool that feeds the random pass.
pub(crate) const POOL_BYTES: usize = 4096;
/// Times one filling of the pool is served over (from a moving offset, wrapping around) before
/// it is regenerated: 16 × 4 KiB = 64 KiB of random-pass bytes. Regenerating 4 KiB takes
/// ~0.2 µs (wyrand: independent multiplies, ~8 bytes a cycle), a few percent of wiping
/// 64 KiB four times.
const WRAPS_PER_FILL: usize = 16;

/// Tells the compiler the memory behind `p` may be read and written by code it cannot see.
#[inline(always)]
pub(crate) fn barrier(p: *const u8) {
    // SAFETY: the asm block is empty: it executes no instructions. It only makes `p` escape
    // and acts as an opaque read/write of memory for the optimiser.
    unsafe {
        core::arch::asm!("/* secalloc wipe barrier {0} */", in(reg) p, options(nostack, preserves_flags))
    };
}

/// A per-thread pool of random bytes for the random pass: seeded from the OS with
/// `getrandom`, refilled with the wyrand generator as it is consumed.
#[repr(C)]
pub(crate) struct RandPool {
    bytes: [u8; POOL_BYTES],
    pos: usize,
    /// Times the offset wrapped around since the last regeneration.
    wraps: usize,
    state: u64,
    seeded: bool,
}

impl RandPool {
    /// Seeds and fills the pool in place (it lives in mmap'd memory, so no constructor by value).
    pub(crate) fn init(&mut self) {
        let mut seed = [0u8; 8];
        if getrandom::getrandom(&mut seed).is_err() {
            // No OS randomness: fall back to addresses and time (the random pass then only
            // has to be unpredictable enough to differ from the data it overwrites).
            let t = now_ns();
            let a = self as *const _ as u64;
            seed = (t ^ a.rotate_left(29)).to_le_bytes();
        }
        self.state = u64::from_le_bytes(seed);
        self.refill();
        self.seeded = true;
    }

    /// wyrand: a counter step and one 64×64→128-bit multiply. Unlike xoshiro's state
    /// update, successive outputs do not wait on each other's multiplies, so a refill runs
    /// at the multiplier's throughput.
    #[inline(always)]
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xA076_1D64_78BD_642F);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xE703_7ED1_A0B4_28DB);
        (t >> 64) as u64 ^ t as u64
    }

    #[cold]
    fn refill(&mut self) {
        let mut state = self.state;
        for dst in self.bytes.chunks_exact_mut(8) {
            state = state.wrapping_add(0xA076_1D64_78BD_642F);
            let t = u128::from(state) * u128::from(state ^ 0xE703_7ED1_A0B4_28DB);
            dst.copy_from_slice(&((t >> 64) as u64 ^ t as u64).to_le_bytes());
        }
        self.state = state;
        self.pos = (self.next() as usize) % POOL_BYTES;
        self.wraps = 0;
    }

    /// The offset reached the pool's end: back to its start, regenerating the pool after
    /// every [`WRAPS_PER_FILL`] times round. (Counting wraps instead of bytes keeps the
    /// bookkeeping off the path of every small wipe.)
    #[cold]
    fn wrap(&mut self) {
        self.wraps += 1;
        if self.wraps >= WRAPS_PER_FILL {
            self.refill();
        }
        self.pos = 0;
    }

    /// `len` (at most [`POOL_BYTES`]) contiguous pool bytes for a small random pass.
    #[inline(always)]
    fn take_small(&mut self, len: usize) -> *const u8 {
        if self.pos + len > POOL_BYTES {
            self.wrap();
        }
        // SAFETY: pos + len <= POOL_BYTES: the range lies inside the pool.
        let src = unsafe { self.bytes.as_ptr().add(self.pos) };
        self.pos += len;
        src
    }

    /// Copies random bytes over `len` bytes at `dst`, from the pool at a moving offset
    /// (wrapping around it); the pool is regenerated every [`WRAPS_PER_FILL`] times round.
    ///
    /// # Safety
    /// `dst..dst+len` must be valid for writes.
    #[inline]
    pub(crate) unsafe fn fill(&mut self, dst: *mut u8, len: usize) {
        let mut off = 0;
        while off < len {
            let n = (len - off).min(POOL_BYTES - self.pos);
            // SAFETY: pos + n <= POOL_BYTES and off + n <= len: both ranges are in bounds, and
            // the pool never overlaps the caller's block.
            unsafe { ptr::copy_nonoverlapping(self.bytes.as_ptr().add(self.pos), dst.add(off), n) };
            off += n;
            self.pos += n;
            if self.pos == POOL_BYTES {
                self.wrap();
            }
        }
    }
}

/// Wipes with the thread's random pool, or the shared fallback pool when the thread has no
/// state (while it is being created, or after it was released at thread exit).
///
/// # Safety
/// `p..p+len` must be writable and not accessed by anyone else; `ts` is null or this
/// thread's own state.
#[inline(always)]
pub(crate) unsafe fn wipe_on_thread(
    ts: *mut crate::thread::ThreadState,
    p: *mut u8,
    len: usize,
    mode: crate::Wipe,
) {
    // SAFETY: forwarded contract; `ts` is null or exclusively this thread's.
    unsafe {
        match ts.as_mut() {
            Some(ts) => wipe(p, len, mode, &mut ts.pool),
            None => {
                let mut pool = FALLBACK_POOL.lock();
                if !pool.seeded {
                    // Only when the allocator never initialised (wipe_bytes without SecAlloc).
                    pool.init();
                }
                wipe(p, len, mode, &mut pool)
            }
        }
    }
}

/// Blocks larger than this are wiped a chunk at a time: all four passes over one chunk, then
/// the next. A chunk stays in the L1 cache through its four passes, so the block's memory
/// is written once (the last pass) instead of four times, and a block larger than the cache
/// costs about one `memset` of it plus three passes at cache speed instead of four passes
/// at memory speed. Every byte still goes through the four passes in order, each ended by a
/// barrier, as a small block's bytes do.
pub(crate) const CHUNK: usize = 16 << 10;

/// Wipes (and zeroing on allocation) up to this many bytes use inlined stores.
pub(crate) const SMALL: usize = 256;

/// Expands to `$m!(n)` for the power of two `n` with `n <= len < 2n` (`n = 128` for `len`
/// from 128 to 256, `n = 1` for 1): two `n`-byte operations, at the start and at the end,
/// cover `len` bytes, with constant sizes the compiler turns into a few moves.
macro_rules! by_pair_size {
    ($len:expr, $m:ident) => {
        match $len {
            128.. => $m!(128),
            64.. => $m!(64),
            32.. => $m!(32),
            16.. => $m!(16),
            8.. => $m!(8),
            4.. => $m!(4),
            2.. => $m!(2),
            _ => $m!(1),
        }
    };
}

/// Sets `len` (0..=256) bytes at `p` to `b` with two overlapping constant-size writes, which
/// the compiler turns into a few vector stores.
///
/// # Safety
/// `p..p+len` must be writable.
#[inline(always)]
pub(crate) unsafe fn set_small(p: *mut u8, b: u8, len: usize) {
    macro_rules! two {
        ($n:expr) => {{
            // SAFETY: len >= $n, so both ranges lie within `p..p+len`.
            unsafe {
                ptr::write_bytes(p, b, $n);
                ptr::write_bytes(p.add(len - $n), b, $n);
            }
        }};
    }
    if len != 0 {
        by_pair_size!(len, two);
    }
}

/// One step of the wipe, for tests that observe the passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    Zero1,
    Ones,
    Random,
    Zero2,
}

/// Wipes `len` bytes at `p` in the configured mode.
///
/// # Safety
/// `p..p+len` must be valid for writes and not be accessed concurrently.
#[inline]
pub(crate) unsafe fn wipe(p: *mut u8, len: usize, mode: crate::Wipe, pool: &mut RandPool) {
    // SAFETY: forwarded contract.
    unsafe { wipe_observed(p, len, mode, pool, |_, _, _| {}) }
}

/// [`wipe`] with a hook called after every pass (tests use it to see each pass's bytes).
///
/// # Safety
/// As for [`wipe`].
#[inline(always)]
pub(crate) unsafe fn wipe_observed(
    p: *mut u8,
    len: usize,
    mode: crate::Wipe,
    pool: &mut RandPool,
    mut after: impl FnMut(Pass, *const u8, usize),
) {
    if len == 0 {
        return;
    }
    match mode {
        crate::Wipe::Off => {}
        crate::Wipe::Zero => {
            // SAFETY: the caller guarantees `p..p+len` is writable.
            unsafe { ptr::write_bytes(p, 0x00, len) };
            barrier(p);
            after(Pass::Zero2, p, len);
        }
        crate::Wipe::FourPass if len <= SMALL => {
            // SAFETY: forwarded contract; 1 <= len <= SMALL.
            unsafe { four_pass_small(p, len, pool, after) }
        }
        crate::Wipe::FourPass => {
            // A chunk at a time, all four passes over one chunk before the next.
            let mut off = 0;
            while off < len {
                let n = (len - off).min(CHUNK);
                // SAFETY: `off + n <= len`: the chunk lies inside `p..p+len`.
                let q = unsafe { p.add(off) };
                // SAFETY: the caller guarantees `p..p+len` is writable and unshared; each
                // pass writes exactly the chunk `q..q+n` inside it.
                unsafe { ptr::write_bytes(q, 0x00, n) };
                barrier(q);
                after(Pass::Zero1, q, n);
                // SAFETY: as above.
                unsafe { ptr::write_bytes(q, 0xFF, n) };
                barrier(q);
                after(Pass::Ones, q, n);
                // SAFETY: as above.
                unsafe { pool.fill(q, n) };
                barrier(q);
                after(Pass::Random, q, n);
                // SAFETY: as above.
                unsafe { ptr::write_bytes(q, 0x00, n) };
                barrier(q);
                after(Pass::Zero2, q, n);
                off += n;
            }
        }
    }
}

/// The four passes over a small block (most frees): the size is dispatched once, and each
/// pass is two overlapping constant-size stores (or copies from the pool) that the compiler
/// turns into a few vector moves, instead of four calls into libc. Each pass still ends in
/// a barrier.
///
/// # Safety
/// `1 <= len <= SMALL`; `p..p+len` must be valid for writes and not be accessed
/// concurrently.
#[inline(always)]
unsafe fn four_pass_small(
    p: *mut u8,
    len: usize,
    pool: &mut RandPool,
    mut after: impl FnMut(Pass, *const u8, usize),
) {
    let src = pool.take_small(len);
    macro_rules! four {
        ($n:expr) => {{
            // One pass of byte `$b` over the block, then its barrier.
            macro_rules! set {
                ($b:expr, $pass:expr) => {
                    ptr::write_bytes(p, $b, $n);
                    ptr::write_bytes(p.add(len - $n), $b, $n);
                    barrier(p);
                    after($pass, p, len);
                };
            }
            // SAFETY: $n <= len <= 2 * $n, so both $n-byte ranges lie within `p..p+len`
            // (and within the pool's `len` bytes at `src`), together covering all of it.
            unsafe {
                set!(0x00, Pass::Zero1);
                set!(0xFF, Pass::Ones);
                ptr::copy_nonoverlapping(src, p, $n);
                ptr::copy_nonoverlapping(src.add(len - $n), p.add(len - $n), $n);
                barrier(p);
                after(Pass::Random, p, len);
                set!(0x00, Pass::Zero2);
            }
        }};
    }
    by_pair_size!(len, four);
}

/// Monotonic nanoseconds (for seeding fallbacks and timestamps); never allocates.
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The random pool for wipes done on a thread with no state of its own (while its state is
/// being created, or after it was released at thread exit). Seeded at initialisation.
pub(crate) static FALLBACK_POOL: crate::sys::SpinLock<RandPool> =
    crate::sys::SpinLock::new(RandPool {
        bytes: [0; POOL_BYTES],
        pos: 0,
        wraps: 0,
        seeded: false,
        state: 0x9E37_79B9_7F4A_7C15,
    });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Wipe;

    fn pool() -> Box<RandPool> {
        // SAFETY: RandPool is plain data (bytes and integers); all-zero is a valid value
        // that `init` then fills.
        let mut p: Box<RandPool> = unsafe { Box::new(core::mem::zeroed()) };
        p.init();
        p
    }

    #[test]
    fn four_passes_in_order() {
        let mut pool = pool();
        for len in [
            1usize,
            2,
            3,
            4,
            5,
            7,
            8,
            9,
            15,
            16,
            17,
            31,
            32,
            33,
            63,
            64,
            100,
            127,
            128,
            200,
            255,
            256,
            257,
            4096,
            4097,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 20_000,
        ] {
            let mut buf = vec![0xA5u8; len];
            let start = buf.as_ptr() as usize;
            let mut seen = Vec::new();
            // SAFETY: buf is a live, exclusively borrowed Vec of len bytes.
            unsafe {
                wipe_observed(
                    buf.as_mut_ptr(),
                    len,
                    Wipe::FourPass,
                    &mut pool,
                    |pass, p, n| {
                        let bytes = core::slice::from_raw_parts(p, n).to_vec();
                        seen.push((pass, p as usize - start, bytes));
                    },
                )
            };
            // The block is wiped a chunk at a time, in order: each chunk goes through the
            // four passes before the next one starts, and the chunks cover the block.
            assert_eq!(seen.len() % 4, 0, "len {len}");
            assert_eq!(seen.len() / 4, len.div_ceil(CHUNK), "len {len}");
            let mut covered = 0;
            for chunk in seen.chunks(4) {
                let passes: Vec<Pass> = chunk.iter().map(|(p, _, _)| *p).collect();
                assert_eq!(passes, [Pass::Zero1, Pass::Ones, Pass::Random, Pass::Zero2]);
                let (off, n) = (chunk[0].1, chunk[0].2.len());
                assert_eq!(off, covered, "len {len}: chunks in order, without gaps");
                assert!((1..=CHUNK).contains(&n), "len {len}: chunk of {n}");
                assert!(chunk.iter().all(|(_, o, b)| *o == off && b.len() == n));
                covered += n;
                assert!(
                    chunk[0].2.iter().all(|&b| b == 0x00),
                    "pass 1 must be all 0x00"
                );
                assert!(
                    chunk[1].2.iter().all(|&b| b == 0xFF),
                    "pass 2 must be all 0xFF"
                );
                let random = &chunk[2].2;
                if n >= 16 {
                    let distinct = {
                        let mut s = [false; 256];
                        random.iter().for_each(|&b| s[b as usize] = true);
                        s.iter().filter(|&&x| x).count()
                    };
                    assert!(
                        distinct >= 8.min(n / 2),
                        "random pass looks constant: {distinct} values"
                    );
                    assert!(
                        random.iter().any(|&b| b != 0xFF),
                        "random pass equals the 0xFF pass"
                    );
                }
                assert!(
                    chunk[3].2.iter().all(|&b| b == 0x00),
                    "last pass must be all 0x00"
                );
            }
            assert_eq!(covered, len);
            assert!(buf.iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn the_pool_is_regenerated_after_it_is_served_sixteen_times_over() {
        for small in [false, true] {
            let mut pool = pool();
            let first = pool.bytes;
            let mut sink = [0u8; 200];
            let mut served = 0;
            let mut regenerated_at = None;
            while served < (WRAPS_PER_FILL + 2) * POOL_BYTES {
                if small {
                    let src = pool.take_small(sink.len());
                    // SAFETY: `take_small` returns `sink.len()` readable pool bytes.
                    unsafe { ptr::copy_nonoverlapping(src, sink.as_mut_ptr(), sink.len()) };
                } else {
                    // SAFETY: `sink` is a live, exclusively borrowed array.
                    unsafe { pool.fill(sink.as_mut_ptr(), sink.len()) };
                }
                served += sink.len();
                if regenerated_at.is_none() && pool.bytes != first {
                    regenerated_at = Some(served);
                }
            }
            let at = regenerated_at.expect("the pool was never regenerated");
            // Not before it went round the pool many times, and once it had gone round
            // WRAPS_PER_FILL times (the first round starts at a random offset).
            assert!(
                at > (WRAPS_PER_FILL - 2) * POOL_BYTES,
                "small {small}: at {at}"
            );
            assert!(
                at <= (WRAPS_PER_FILL + 1) * POOL_BYTES,
                "small {small}: at {at}"
            );
        }
    }

    #[test]
    fn consecutive_random_passes_differ() {
        let mut pool = pool();
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        // SAFETY: both arrays are live and exclusively borrowed.
        unsafe {
            pool.fill(a.as_mut_ptr(), 64);
            pool.fill(b.as_mut_ptr(), 64);
        }
        assert_ne!(a, b);
    }

    #[test]
    fn zero_mode_is_one_pass_and_off_writes_nothing() {
        let mut pool = pool();
        let mut buf = [0x77u8; 33];
        let mut passes = 0;
        // SAFETY: buf is live and exclusively borrowed.
        unsafe {
            wipe_observed(buf.as_mut_ptr(), 33, Wipe::Zero, &mut pool, |_, _, _| {
                passes += 1
            })
        };
        assert_eq!(passes, 1);
        assert_eq!(buf, [0u8; 33]);
        let mut buf = [0x77u8; 33];
        // SAFETY: as above.
        unsafe { wipe(buf.as_mut_ptr(), 33, Wipe::Off, &mut pool) };
        assert_eq!(buf, [0x77u8; 33]);
    }
}
