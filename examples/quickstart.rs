//! Quickstart: install `SecAlloc`, do some ordinary work, leave two things behind, exit.
//!
//! Run with `cargo run --release --example quickstart`. The leak report printed at exit
//! names `load_config_cache` and `remember_session` and the lines that allocated.

use std::collections::HashMap;

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

/// Builds a cache and forgets to free it.
#[inline(never)]
fn load_config_cache() -> &'static mut Vec<u64> {
    let cache: Vec<u64> = (0..512).collect();
    Box::leak(Box::new(cache))
}

/// Keeps a session token alive by accident.
#[inline(never)]
fn remember_session(user: &str) {
    let token = format!("session-for-{user}-{}", 0x5eed_u32);
    std::mem::forget(token);
}

/// Ordinary work: everything here is freed (and wiped) before it returns.
#[inline(never)]
fn count_words(text: &str) -> usize {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for w in text.split_whitespace() {
        *counts.entry(w.to_lowercase()).or_default() += 1;
    }
    counts.len()
}

fn main() {
    let _op = secalloc::scope("quickstart");
    let distinct = count_words("the quick brown fox jumps over the lazy dog The End");
    let cache = load_config_cache();
    remember_session("alice");
    let s = secalloc::stats();
    println!(
        "{distinct} distinct words; cache of {} entries; {} bytes live in {} blocks, {} bytes wiped so far",
        cache.len(),
        s.live_bytes,
        s.live_blocks,
        s.wiped_bytes
    );
}
