//! Reachability: which live blocks are still reachable, definitely lost or indirectly lost.
//!
//! Classified like memcheck and LeakSanitizer. Roots are every readable and writable mapping
//! of the process (data and bss of loaded objects, thread stacks, TLS, anonymous mappings),
//! except the allocator's own metadata, the interiors of live blocks, and the part of the
//! calling thread's stack below its stack pointer. A block pointed to (at its start or
//! inside it) from a root is still reachable, and so is everything reachable from it. Of the
//! rest, a block reached from another unreachable block is indirectly lost; the remaining
//! ones — the heads of lost structures — are definitely lost. In a lost cycle the block with
//! the lowest address is the definite one, as in memcheck.
//!
//! Freed memory is wiped, so stale pointers left in freed chunks cannot make a lost block
//! look reachable; glibc's heap areas (where it keeps its free lists) are not roots either. Stale pointers in live memory and on stacks still can: the verdict errs
//! on the side of "reachable", never on the side of a false leak.

use crate::live;
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

/// Address ranges to leave out of root scanning.
struct Skips(Vec<(usize, usize)>);

impl Skips {
    fn sorted(mut v: Vec<(usize, usize)>) -> Skips {
        v.sort_unstable();
        Skips(v)
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

/// The tracked blocks sorted by address, for pointer lookups.
struct Index<'a> {
    blocks: &'a [Block],
    lo: usize,
    hi: usize,
}

impl<'a> Index<'a> {
    fn new(blocks: &'a [Block]) -> Self {
        let lo = blocks.first().map_or(0, |b| b.addr);
        let hi = blocks
            .iter()
            .map(|b| b.addr + b.size.max(1))
            .max()
            .unwrap_or(0);
        Index { blocks, lo, hi }
    }
    #[inline]
    fn find(&self, v: usize) -> Option<usize> {
        if v < self.lo || v >= self.hi {
            return None;
        }
        let i = self.blocks.partition_point(|b| b.addr <= v);
        if i == 0 {
            return None;
        }
        let b = &self.blocks[i - 1];
        (v < b.addr + b.size.max(1)).then_some(i - 1)
    }
}

/// Reads `[a, b)` of this process's memory through `process_vm_readv`, which reports an
/// unmapped page as an error instead of faulting, and calls `f` with each aligned word.
pub(crate) fn scan_remote(a: usize, b: usize, buf: &mut [u8], mut f: impl FnMut(usize)) {
    // Read into the word-aligned part of `buf` and go through it as words: a plain slice
    // loop, cheap even where the allocator is built without optimisation (a user's debug
    // build), unlike taking each word apart from bytes.
    // SAFETY: every bit pattern is a valid usize.
    let (_, words, _) = unsafe { buf.align_to_mut::<usize>() };
    if words.is_empty() {
        return;
    }
    let a = (a + 7) & !7;
    let mut cur = a;
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    while cur + 8 <= b {
        let n = (b - cur).min(words.len() * 8) & !7;
        let local = libc::iovec {
            iov_base: words.as_mut_ptr().cast(),
            iov_len: n,
        };
        let remote = libc::iovec {
            iov_base: cur as *mut libc::c_void,
            iov_len: n,
        };
        // SAFETY: `local` describes our own writable buffer of n bytes; the remote range is
        // only read by the kernel, which fails cleanly on unmapped pages.
        let got = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
        if got <= 0 {
            // Skip the unreadable page and go on.
            cur = (cur + 4096) & !4095;
            continue;
        }
        let got = got as usize & !7;
        for &w in &words[..got / 8] {
            f(w);
        }
        cur += got.max(8);
    }
}

/// The readable and writable mappings of this process, with their names.
pub(crate) fn rw_mappings() -> Vec<(usize, usize, String)> {
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
        if !perms.starts_with("rw")
            || name == "[vvar]"
            || name == "[vsyscall]"
            || name.starts_with("/dev/")
        {
            continue;
        }
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        if let (Ok(s), Ok(e)) = (usize::from_str_radix(s, 16), usize::from_str_radix(e, 16)) {
            out.push((s, e, name));
        }
    }
    out
}

/// glibc's own heap areas: the main arena (`[heap]`) and thread arenas (anonymous mappings
/// aligned to glibc's 64 MiB heap size). Every Rust heap object in them is a block of ours
/// (its interior is skipped anyway); the rest is free space, where glibc keeps free-list
/// pointers that it writes after our wipe and leaves behind when chunks merge. Scanning it
/// would let those stale pointers make lost blocks look reachable. Memory that C code
/// allocates with `malloc` directly lives there too and is therefore not a root.
/// The C library's and the dynamic loader's own data is skipped for the same reason: glibc's
/// arena state (`last_remainder`, bins) keeps pointers to chunks that have since become parts
/// of live blocks, and neither library holds pointers to Rust allocations.
fn is_malloc_heap(s: usize, e: usize, name: &str) -> bool {
    const GLIBC_HEAP_MAX: usize = 64 << 20;
    let file = name.rsplit('/').next().unwrap_or("");
    name == "[heap]"
        || (name.is_empty() && s % GLIBC_HEAP_MAX == 0 && e - s <= GLIBC_HEAP_MAX)
        || file.starts_with("libc.so")
        || file.starts_with("libc-")
        || file.starts_with("ld-linux")
}

/// Classifies `tracked` (sorted by address). `internal` are the allocator's own live blocks,
/// whose interiors are not roots. With `skip_own_stack` (at exit) the calling thread's stack
/// is not a root at all: after `main` returns its frames are dead, and values held only by
/// the frames of a `process::exit` caller are never dropped, so they are leaks.
/// Returns one kind per tracked block.
pub(crate) fn classify(
    tracked: &[Block],
    internal: &[Block],
    skip_own_stack: bool,
) -> Vec<LeakKind> {
    let index = Index::new(tracked);
    let mut state = vec![UNSEEN; tracked.len()];
    // Sized up front: growing it (and the buffer below) means fresh pages and a wipe of the
    // old buffer on every step.
    let mut work: Vec<usize> = Vec::with_capacity(tracked.len());
    let mut skips: Vec<(usize, usize)> = tracked
        .iter()
        .chain(internal)
        .map(|b| {
            (
                b.addr.saturating_sub(crate::block::HEADER),
                b.addr + b.size + crate::block::CANARY,
            )
        })
        .collect();
    // The calling thread's stack below its stack pointer is dead.
    let here = 0usize;
    let sp = core::hint::black_box(&here) as *const usize as usize;
    let mut buf = vec![0u8; 64 << 10];
    let maps = rw_mappings();
    // The allocator's own mappings, listed only now: the allocations above may have mapped
    // more (a live-set leaf of 128 MiB for a buffer in a new 4 GiB range). None is read.
    crate::sys::for_each_region(|s, l| skips.push((s, s + l)));
    let skips = Skips::sorted(skips);

    for (s, e, name) in maps {
        if is_malloc_heap(s, e, &name) {
            continue;
        }
        let own_stack = s <= sp && sp < e && (name == "[stack]" || name.is_empty());
        if own_stack && skip_own_stack {
            continue;
        }
        let s = if own_stack { sp & !7 } else { s };
        skips.gaps(s, e, |a, b| {
            scan_remote(a, b, &mut buf, |v| {
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
    let session = live::read_session();
    flood(&session, &index, &mut state, &mut work, REACHABLE, |s| {
        s == UNSEEN
    });

    // Lost structures: each unreached block not yet claimed leads a clique; blocks reached
    // from it are indirectly lost (a former leader reached this way becomes indirect too).
    for i in 0..tracked.len() {
        if state[i] != UNSEEN {
            continue;
        }
        state[i] = LEADER;
        work.push(i);
        flood(&session, &index, &mut state, &mut work, INDIRECT, |s| {
            s == UNSEEN || s == LEADER
        });
        state[i] = LEADER;
    }
    state
        .into_iter()
        .map(|s| match s {
            REACHABLE => LeakKind::StillReachable,
            INDIRECT => LeakKind::IndirectlyLost,
            _ => LeakKind::DefinitelyLost,
        })
        .collect()
}

/// Scans the blocks on `work`, marking the blocks they point to with `mark` when `take`
/// accepts their current state.
fn flood(
    session: &live::ReadSession,
    index: &Index<'_>,
    state: &mut [u8],
    work: &mut Vec<usize>,
    mark: u8,
    take: impl Fn(u8) -> bool,
) {
    let leader = work.last().copied();
    while let Some(i) = work.pop() {
        let b = index.blocks[i];
        if !session.pin(b.addr) {
            continue;
        }
        let words = b.size / 8;
        for k in 0..words {
            // SAFETY: the block is live and pinned (it cannot be freed meanwhile) and holds
            // `size` readable bytes; we read aligned words inside it.
            let v = unsafe { (b.addr as *const usize).add(k).read_volatile() };
            if let Some(j) = index.find(v) {
                if Some(j) != leader && take(state[j]) {
                    state[j] = mark;
                    work.push(j);
                }
            }
        }
        session.unpin(b.addr);
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
    fn index_finds_interior_pointers() {
        let blocks = [
            Block {
                addr: 100,
                size: 16,
                stack: 0,
                scope: 0,
            },
            Block {
                addr: 200,
                size: 8,
                stack: 0,
                scope: 0,
            },
        ];
        let ix = Index::new(&blocks);
        assert_eq!(ix.find(100), Some(0));
        assert_eq!(ix.find(115), Some(0));
        assert_eq!(ix.find(116), None);
        assert_eq!(ix.find(207), Some(1));
        assert_eq!(ix.find(99), None);
        assert_eq!(ix.find(208), None);
    }
}
