//! Block layout: `[padding][header: 16 bytes][user bytes][canary: 8 bytes]`.
//!
//! The user pointer is aligned to `max(16, align)`; the header sits in the 16 bytes before it
//! and the canary right after the last user byte (unaligned). The inner allocator sees one
//! allocation of `offset + size + canary` bytes aligned to `max(16, align)`.
//!
//! Header words (little-endian `u64`s):
//! - `w0` = size (48 bits) | log2(align) (6 bits) | check (10 bits)
//! - `w1` = stack id (32 bits) | scope id (16 bits) | unused (16 bits)
//!
//! The check bits are a keyed hash of the address and both words, so an underflow that
//! overwrites the header is caught on free with probability 1023/1024.
//!
//! In profile mode (fixed at initialisation) the prefix is 32 bytes, `[born: u64][unused:
//! u64][header]`: the block's allocation time (see `profile::now_ticks`) sits 32 bytes before
//! the user pointer, so blocks can be given lifetimes. The header stays right before the user
//! bytes either way.

use core::alloc::Layout;
use core::sync::atomic::Ordering;

use crate::config::RUNTIME;

pub(crate) const HEADER: usize = 16;
/// The prefix before the user bytes in profile mode: the allocation time, then the header.
pub(crate) const PROFILE_PREFIX: usize = 32;
pub(crate) const CANARY: usize = 8;
pub(crate) const MAX_SIZE: usize = (1 << 48) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub size: usize,
    pub align_log2: u32,
    pub stack: u32,
    pub scope: u16,
    /// Allocation time in `profile::now_ticks` units; stored only in profile mode (0 otherwise).
    pub born: u64,
}

impl Meta {
    #[inline(always)]
    pub(crate) fn align(&self) -> usize {
        1usize << self.align_log2
    }
}

/// Offset from the inner allocation to the user pointer.
#[inline(always)]
pub(crate) fn offset(align: usize) -> usize {
    let prefix = if RUNTIME.profile() {
        PROFILE_PREFIX
    } else {
        HEADER
    };
    if align > prefix {
        align
    } else {
        prefix
    }
}

/// The inner allocator's layout for a user block of `size` bytes aligned to `align`.
#[inline(always)]
pub(crate) fn inner_layout(size: usize, align: usize, canary: bool) -> Option<Layout> {
    if size > MAX_SIZE {
        return None;
    }
    let total = offset(align)
        .checked_add(size)?
        .checked_add(if canary { CANARY } else { 0 })?;
    Layout::from_size_align(total, align.max(HEADER)).ok()
}

#[inline(always)]
fn check_bits(user: usize, w0_low: u64, w1: u64) -> u64 {
    let key = RUNTIME.header_key.load(Ordering::Relaxed);
    let mut h = (user as u64 ^ key).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= w0_low.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    h ^= w1.rotate_left(23).wrapping_mul(0x1656_67B1_9E37_79F9);
    h >> 54
}

/// Writes the header for the block at `user`.
///
/// # Safety
/// `user - 16 .. user` must be writable memory of this block (in profile mode,
/// `user - 32 .. user`).
#[inline(always)]
pub(crate) unsafe fn write_header(user: *mut u8, m: &Meta) {
    let w0_low = m.size as u64 | (u64::from(m.align_log2) << 48);
    let w1 = u64::from(m.stack) | (u64::from(m.scope) << 32);
    let w0 = w0_low | (check_bits(user as usize, w0_low, w1) << 54);
    // SAFETY: the caller guarantees the 16 header bytes are writable; user is 16-aligned so
    // the header words are 8-aligned.
    unsafe {
        let h = user.sub(HEADER).cast::<u64>();
        h.write(w0);
        h.add(1).write(w1);
    }
    if RUNTIME.profile() {
        // SAFETY: in profile mode every block has a 32-byte prefix (`offset`), 16-aligned.
        unsafe { user.sub(PROFILE_PREFIX).cast::<u64>().write(m.born) };
    }
}

/// Reads and validates the header of the block at `user`. `None` if the check bits fail.
///
/// # Safety
/// `user - 16 .. user` must be readable (in profile mode, `user - 32 .. user`).
#[inline(always)]
pub(crate) unsafe fn read_header(user: *const u8) -> Option<Meta> {
    // SAFETY: the caller guarantees the header is readable and 8-aligned.
    let (w0, w1) = unsafe {
        let h = user.sub(HEADER).cast::<u64>();
        (h.read(), h.add(1).read())
    };
    let mut m = decode_header(user as usize, w0, w1)?;
    if RUNTIME.profile() {
        // SAFETY: in profile mode every block has a 32-byte prefix (`offset`), 16-aligned;
        // the caller guarantees the block's header is readable, and so is its prefix.
        m.born = unsafe { user.sub(PROFILE_PREFIX).cast::<u64>().read() };
    }
    Some(m)
}

/// Validates header words `w0`, `w1` read (by any means) from before `user`. `None` if the
/// check bits fail: not the header of a block of ours.
#[inline(always)]
pub(crate) fn decode_header(user: usize, w0: u64, w1: u64) -> Option<Meta> {
    let w0_low = w0 & ((1 << 54) - 1);
    if w0 >> 54 != check_bits(user, w0_low, w1) {
        return None;
    }
    Some(Meta {
        size: (w0 & MAX_SIZE as u64) as usize,
        align_log2: ((w0 >> 48) & 63) as u32,
        stack: w1 as u32,
        scope: (w1 >> 32) as u16,
        born: 0,
    })
}

/// The canary value for this process: random, first byte in memory zero (so string
/// over-reads stop before revealing it).
#[inline(always)]
pub(crate) fn canary_value() -> u64 {
    RUNTIME.canary.load(Ordering::Relaxed)
}

/// # Safety
/// `user + size .. + 8` must be writable.
#[inline(always)]
pub(crate) unsafe fn write_canary(user: *mut u8, size: usize) {
    // SAFETY: forwarded contract.
    unsafe { write_canary_value(user, size, canary_value()) };
}

/// [`write_canary`] with the canary `value`.
///
/// # Safety
/// `user + size .. + 8` must be writable.
#[inline(always)]
pub(crate) unsafe fn write_canary_value(user: *mut u8, size: usize, value: u64) {
    // SAFETY: guaranteed by the caller; unaligned write.
    unsafe { user.add(size).cast::<u64>().write_unaligned(value) };
}

/// # Safety
/// `user + size .. + 8` must be readable.
#[inline(always)]
pub(crate) unsafe fn read_canary(user: *const u8, size: usize) -> u64 {
    // SAFETY: guaranteed by the caller; unaligned read.
    unsafe { user.add(size).cast::<u64>().read_unaligned() }
}
