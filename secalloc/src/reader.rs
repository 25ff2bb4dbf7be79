//! Reading live blocks while other threads allocate and free, from both places the tracker
//! keeps them: the live set of the header layout (`SecAlloc::with_inner`) and the slot
//! records of the own heap (`SecAlloc::new()`). Reports and the reachability scan use only
//! this interface.
//!
//! How a reader *holds* a block, so it is not freed under it:
//! - header layout: the live set's pin (a free waits until it is released);
//! - own-heap slots: none needed for safety (slot memory is never unmapped); the record's
//!   record word is noted at the snapshot and checked again after reading
//!   ([`Reader::still_the_same`]): a block freed meanwhile is left out;
//! - own-heap directly mapped blocks: a pin in the large table (a free waits for it, as the
//!   block is unmapped when freed).

use crate::heap::tracked::{self, LiveBlock};
use crate::live;
use crate::report::Block;
use crate::stack::INTERNAL;

/// Where a block of a snapshot lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The header layout's live set.
    Header,
    /// A slot of the own heap, with its record word (the block's identity) when it was read.
    Slot(u64),
    /// A directly mapped block of the own heap, with its generation.
    Large(u64),
}

/// A reader's session over both sources (see the module documentation).
pub(crate) struct Reader {
    session: live::ReadSession,
}

impl Reader {
    /// Starts reading: from here on, header-layout frees wait for the blocks this reader
    /// pins.
    pub(crate) fn new() -> Reader {
        Reader {
            session: live::read_session(),
        }
    }

    /// Calls `f` with every live block and whether it is the allocator's own (`INTERNAL`):
    /// the header layout's in address order, then the own heap's.
    pub(crate) fn for_each(&self, mut f: impl FnMut(Block, bool)) {
        live::for_each_live(|addr| {
            if self.session.pin(addr) {
                // SAFETY: the block is live and pinned: it cannot be freed until unpin, so
                // its header is readable.
                let meta = unsafe { crate::block::read_header(addr as *const u8) };
                self.session.unpin(addr);
                if let Some(m) = meta {
                    let b = Block {
                        addr,
                        size: m.size,
                        stack: m.stack,
                        scope: m.scope,
                        source: Source::Header,
                        born: m.born,
                    };
                    f(b, m.stack == INTERNAL);
                }
            }
        });
        tracked::for_each_live(|lb| {
            let b = Block {
                addr: lb.addr,
                size: lb.meta.size,
                stack: lb.meta.stack,
                scope: lb.meta.scope,
                born: lb.meta.born,
                source: if lb.large {
                    Source::Large(lb.gen)
                } else {
                    Source::Slot(lb.gen)
                },
            };
            f(b, lb.meta.stack == INTERNAL);
        });
    }

    /// Runs `f` with the bytes of `b` while it is held; false (and `f` not run) if `b` is
    /// no longer live. For an own-heap slot, the bytes may change under `f` if the block is
    /// freed meanwhile: [`still_the_same`](Self::still_the_same) afterwards says.
    pub(crate) fn with_block(&self, b: &Block, f: impl FnOnce(*mut u8, usize)) -> bool {
        match b.source {
            Source::Header => {
                if !self.session.pin(b.addr) {
                    return false;
                }
                f(b.addr as *mut u8, b.size);
                self.session.unpin(b.addr);
                true
            }
            Source::Slot(_) => {
                if !self.still_the_same(b) {
                    return false;
                }
                f(b.addr as *mut u8, b.size);
                true
            }
            Source::Large(gen) => {
                let lb = live_block(b, gen, true);
                if !tracked::pin_large(&lb) {
                    return false;
                }
                f(b.addr as *mut u8, b.size);
                tracked::unpin_large(b.addr);
                true
            }
        }
    }

    /// Whether `b` is still live and still the same allocation (not freed and another one
    /// made at its address).
    pub(crate) fn still_the_same(&self, b: &Block) -> bool {
        match b.source {
            Source::Header => {
                if !self.session.pin(b.addr) {
                    return false;
                }
                // SAFETY: the block is live and pinned, so its header is readable.
                let meta = unsafe { crate::block::read_header(b.addr as *const u8) };
                self.session.unpin(b.addr);
                meta.is_some_and(|m| m.size == b.size && m.stack == b.stack && m.scope == b.scope)
            }
            Source::Slot(gen) => tracked::still_live(&live_block(b, gen, false)),
            Source::Large(gen) => tracked::still_live(&live_block(b, gen, true)),
        }
    }
}

fn live_block(b: &Block, gen: u64, large: bool) -> LiveBlock {
    LiveBlock {
        addr: b.addr,
        meta: crate::block::Meta {
            size: b.size,
            align_log2: 0,
            stack: b.stack,
            scope: b.scope,
            born: b.born,
        },
        gen,
        large,
    }
}
