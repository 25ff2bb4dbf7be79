//! Size classes: 16-byte steps up to 128 bytes, then four classes per power of two up to
//! 256 KiB (at most 25% internal slack above 128 bytes). Each class lives in spans of one
//! power-of-two size (64 KiB to 4 MiB) that hold at least 16 of its blocks.

/// Number of size classes.
pub(crate) const NCLASSES: usize = 52;
/// The largest block a class serves; larger ones are mapped directly.
pub(crate) const MAX_CLASS_SIZE: usize = 256 << 10;
/// The largest alignment a class serves; larger ones are mapped directly.
pub(crate) const MAX_CLASS_ALIGN: usize = 64 << 10;
/// The smallest span: 64 KiB.
pub(crate) const MIN_SPAN_SHIFT: u32 = 16;
/// The largest span: a whole segment (4 MiB).
pub(crate) const MAX_SPAN_SHIFT: u32 = 22;
/// Span sizes in use (64 KiB, 128 KiB, ..., 4 MiB).
pub(crate) const SPAN_KINDS: usize = (MAX_SPAN_SHIFT - MIN_SPAN_SHIFT + 1) as usize;

/// The class of a block of `size` bytes (`1..=MAX_CLASS_SIZE`).
#[inline(always)]
pub(crate) const fn index_of(size: usize) -> usize {
    if size <= 128 {
        size.div_ceil(16) - 1
    } else {
        // size lies in (2^k, 2^(k+1)]; classes step by 2^(k-2) there.
        let k = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize;
        let r = (size + (1 << (k - 2)) - 1) >> (k - 2);
        8 + (k - 7) * 4 + (r - 5)
    }
}

/// The block size of class `idx`.
#[inline(always)]
pub(crate) const fn size_of(idx: usize) -> usize {
    if idx < 8 {
        (idx + 1) * 16
    } else {
        let j = idx - 8;
        let k = 7 + j / 4;
        (1 << (k - 2)) * (5 + j % 4)
    }
}

/// log2 of the span size for class `idx`: the smallest power of two that holds 32 blocks,
/// within 64 KiB..=4 MiB.
pub(crate) const fn span_shift_of(idx: usize) -> u32 {
    let want = size_of(idx) * 32;
    let mut shift = MIN_SPAN_SHIFT;
    while (1usize << shift) < want && shift < MAX_SPAN_SHIFT {
        shift += 1;
    }
    shift
}

/// The largest size [`SMALL_CLASS`] answers for.
const SMALL_MAX: usize = 2048;

/// The class of every size up to [`SMALL_MAX`] in 16-byte steps: entry `i` serves sizes
/// `16 * i - 15 ..= 16 * i` (entry 0: size 0). A load instead of the 60-odd instructions
/// of [`index_of`] and the alignment arithmetic, on every allocation and free.
static SMALL_CLASS: [u8; SMALL_MAX / 16 + 1] = {
    let mut t = [0u8; SMALL_MAX / 16 + 1];
    let mut i = 1;
    while i < t.len() {
        t[i] = index_of(i * 16) as u8;
        i += 1;
    }
    t
};

/// Block size of every class, by index.
static CLASS_SIZE: [u32; NCLASSES] = {
    let mut t = [0u32; NCLASSES];
    let mut i = 0;
    while i < NCLASSES {
        t[i] = size_of(i) as u32;
        i += 1;
    }
    t
};

/// The block size of class `idx` (`< NCLASSES`), from the table.
#[inline(always)]
pub(crate) fn size_of_class(idx: usize) -> usize {
    CLASS_SIZE[idx] as usize
}

/// The class for a block of `size` bytes aligned to `align`, or `None` when it is mapped
/// directly. Spans are aligned to at least 64 KiB and blocks sit at multiples of the class
/// size, so a class serves an alignment when its size is a multiple of it.
#[inline(always)]
pub(crate) fn for_layout(size: usize, align: usize) -> Option<usize> {
    if align <= 16 && size <= SMALL_MAX {
        // Every class up to SMALL_MAX is a multiple of 16, so it serves alignments to 16.
        return Some(SMALL_CLASS[size.div_ceil(16)] as usize);
    }
    for_other_layout(size, align)
}

/// [`for_layout`] for the layouts the table does not cover.
#[inline(never)]
fn for_other_layout(size: usize, align: usize) -> Option<usize> {
    let size = size.max(1);
    if align <= 16 {
        return (size <= MAX_CLASS_SIZE).then(|| index_of(size));
    }
    if align > MAX_CLASS_ALIGN {
        return None;
    }
    let size = (size.max(align) + align - 1) & !(align - 1);
    if size > MAX_CLASS_SIZE {
        return None;
    }
    let mut idx = index_of(size);
    while size_of(idx) % align != 0 {
        idx += 1;
        if idx == NCLASSES {
            return None;
        }
    }
    Some(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_size_with_bounded_slack() {
        let mut last = 0;
        for idx in 0..NCLASSES {
            let s = size_of(idx);
            assert!(s > last, "class sizes increase");
            assert_eq!(s % 16, 0);
            assert_eq!(index_of(s), idx, "a class size maps to its own class");
            assert_eq!(index_of(last + 1), idx, "the size after the previous class");
            if s > 128 {
                assert!(
                    (s - last) * 4 <= s,
                    "slack above 128 bytes stays within 25%"
                );
            }
            last = s;
        }
        assert_eq!(last, MAX_CLASS_SIZE);
    }

    #[test]
    fn spans_hold_enough_blocks_and_bitmaps_fit() {
        for idx in 0..NCLASSES {
            let shift = span_shift_of(idx);
            assert!((MIN_SPAN_SHIFT..=MAX_SPAN_SHIFT).contains(&shift));
            let cap = (1usize << shift) / size_of(idx);
            assert!(cap >= 16, "class {idx} holds {cap} blocks");
            assert!(cap <= super::super::MAX_SLOTS);
        }
    }

    #[test]
    fn the_small_size_table_agrees_with_the_formula() {
        for size in 0..=SMALL_MAX + 64 {
            for align in [1, 2, 4, 8, 16, 32] {
                let expected = if align <= 16 {
                    Some(index_of(size.max(1)))
                } else {
                    for_other_layout(size, align)
                };
                assert_eq!(
                    for_layout(size, align),
                    expected,
                    "size {size} align {align}"
                );
            }
        }
        for idx in 0..NCLASSES {
            assert_eq!(size_of_class(idx), size_of(idx));
        }
    }

    #[test]
    fn aligned_layouts_get_aligned_classes() {
        for align_shift in 0..=17 {
            let align = 1usize << align_shift;
            for size in [1, 7, 16, 100, 1000, 4096, 5000, 70_000, 200_000, 300_000] {
                match for_layout(size, align) {
                    Some(idx) => {
                        let s = size_of(idx);
                        assert!(s >= size);
                        assert_eq!(s % align.max(16), 0, "size {size} align {align}");
                        assert!(align <= MAX_CLASS_ALIGN);
                    }
                    None => assert!(
                        size > MAX_CLASS_SIZE || align > MAX_CLASS_ALIGN || {
                            let rounded = (size.max(align) + align - 1) & !(align - 1);
                            rounded > MAX_CLASS_SIZE
                        }
                    ),
                }
            }
        }
    }
}
