//! Heap-corruption reports: printed on stderr from inside the allocator, then abort (or, if
//! configured, the damaged block is leaked and the program goes on).

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::config::{OnCorruption, RUNTIME};
use crate::sys::FdWriter;

/// Corruptions detected (and survived, with `OnCorruption::Continue`).
pub(crate) static DETECTED: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug)]
pub(crate) enum Corruption {
    /// Free of an address that is not a live block and was not freed recently.
    InvalidFree { size: usize },
    /// Free of a block that was already freed.
    DoubleFree { alloc_stack: u32, size: usize },
    /// The 16 bytes before the block (its header) were overwritten.
    HeaderOverwritten { size: usize },
    /// The canary after the block was overwritten.
    Overflow {
        alloc_stack: u32,
        size: usize,
        expected: u64,
        found: u64,
    },
    /// A free slot of the own heap was written to (found when handing it out again: its
    /// first word is no longer the zero the wipe left): an overflow out of the block before
    /// it, or a write after free.
    FreeSlotWritten {
        slot_size: usize,
        found: u64,
        before_stack: Option<u32>,
        before_size: usize,
    },
    /// Freed with a layout that differs from the one it was allocated with.
    LayoutMismatch {
        alloc_stack: u32,
        size: usize,
        align: usize,
        freed_size: usize,
        freed_align: usize,
    },
}

fn hex8(w: &mut FdWriter, v: u64) {
    for (i, b) in v.to_le_bytes().iter().enumerate() {
        if i > 0 {
            let _ = w.write_char(' ');
        }
        let _ = write!(w, "{b:02x}");
    }
}

/// Prints the report, then aborts unless configured to go on.
#[cold]
#[inline(never)]
pub(crate) fn report(kind: Corruption, addr: usize) {
    DETECTED.fetch_add(1, Ordering::Relaxed);
    // Capture the bad free's stack before anything else runs.
    let mut bad = [0usize; 32];
    let top = crate::thread::current_if_any();
    // SAFETY: top is null or this thread's own state.
    let stack_top = unsafe { top.as_ref() }.map_or(0, |t| t.stack_top);
    let n = if RUNTIME.frame_pointers.load(Ordering::Relaxed) && stack_top != 0 {
        crate::stack::walk(&mut bad, stack_top).len
    } else {
        0
    };

    let mut w = FdWriter::stderr();
    let _ = write!(w, "secalloc: heap corruption: ");
    let alloc_stack = match kind {
        Corruption::InvalidFree { size } => {
            let _ = writeln!(
                w,
                "invalid free of {addr:#x} ({size}-byte layout): not a block this allocator handed out, or freed long ago"
            );
            None
        }
        Corruption::DoubleFree { alloc_stack, size } => {
            let _ = writeln!(w, "double free of a {size}-byte block at {addr:#x}");
            Some(alloc_stack)
        }
        Corruption::HeaderOverwritten { size } => {
            let _ = writeln!(
                w,
                "the header before the {size}-byte block at {addr:#x} was overwritten (buffer underflow?)"
            );
            None
        }
        Corruption::Overflow {
            alloc_stack,
            size,
            expected,
            found,
        } => {
            let _ = write!(
                w,
                "buffer overflow past the end of the {size}-byte block at {addr:#x}: canary overwritten (expected "
            );
            hex8(&mut w, expected);
            let _ = write!(w, ", found ");
            hex8(&mut w, found);
            let _ = writeln!(w, ")");
            Some(alloc_stack)
        }
        Corruption::FreeSlotWritten {
            slot_size,
            found,
            before_stack,
            before_size,
        } => {
            let _ = write!(
                w,
                "the free {slot_size}-byte slot at {addr:#x} was written while free (an overflow out of the block before it, or a write after free): expected "
            );
            hex8(&mut w, 0);
            let _ = write!(w, ", found ");
            hex8(&mut w, found);
            let _ = writeln!(w, ")");
            if before_stack.is_some() {
                let _ = writeln!(
                    w,
                    "  the block before it ({before_size} bytes) was allocated at the stack below"
                );
            }
            before_stack
        }
        Corruption::LayoutMismatch {
            alloc_stack,
            size,
            align,
            freed_size,
            freed_align,
        } => {
            let _ = writeln!(
                w,
                "the block at {addr:#x} was allocated as {size} bytes (align {align}) but freed as {freed_size} bytes (align {freed_align})"
            );
            Some(alloc_stack)
        }
    };
    w.flush();
    // Symbolising allocates; the guard is set (we are inside the allocator), so those
    // allocations are the allocator's own.
    crate::thread::untracked(|| {
        let mut sym = crate::symbolize::Symbolizer::new();
        let mut out = String::new();
        match alloc_stack.map(crate::stack::frames) {
            Some(frames) if !frames.is_empty() => {
                out.push_str("  allocated at:\n");
                push_frames(&mut out, &sym.stack(&frames));
            }
            Some(_) => out.push_str("  allocated at: (no stack recorded)\n"),
            None => {}
        }
        out.push_str(if matches!(kind, Corruption::FreeSlotWritten { .. }) {
            "  detected at:\n"
        } else {
            "  bad free at:\n"
        });
        if n == 0 {
            out.push_str("    (no stack: this binary has no frame pointers)\n");
        } else {
            push_frames(&mut out, &sym.stack(&bad[..n]));
        }
        let mut w = FdWriter::stderr();
        let _ = w.write_str(&out);
    });
    let mut w = FdWriter::stderr();
    match RUNTIME.on_corruption() {
        OnCorruption::Abort => {
            let _ = writeln!(
                w,
                "secalloc: aborting (SECALLOC_ON_CORRUPTION=continue leaks the damaged block and goes on)"
            );
            w.flush();
            // SAFETY: abort has no preconditions; it does not return.
            unsafe { libc::abort() };
        }
        OnCorruption::Continue => {
            let _ = writeln!(w, "secalloc: leaking the damaged block and going on");
        }
    }
}

fn push_frames(out: &mut String, frames: &[crate::symbolize::Frame]) {
    if frames.is_empty() {
        out.push_str("    (no frames)\n");
    }
    for (i, f) in frames.iter().enumerate() {
        out.push_str(&format!("    #{i} {:#x} in {}\n", f.ip, f.location()));
    }
}
