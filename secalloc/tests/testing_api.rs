//! `secalloc::testing`: many tests measuring in parallel in one binary.

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

fn work(n: usize) -> usize {
    let v: Vec<String> = (0..n).map(|i| format!("item-{i}")).collect();
    v.iter().map(|s| s.len()).sum()
}

macro_rules! parallel_tests {
    ($($name:ident = $n:expr;)*) => {$(
        #[test]
        fn $name() {
            for _ in 0..200 {
                let d = secalloc::testing::measure(|| { std::hint::black_box(work($n)); });
                assert_eq!(d.live_blocks, 0);
                assert_eq!(d.live_bytes, 0);
                assert_eq!(d.allocations, $n as u64 + 1);
            }
        }
    )*};
}

parallel_tests! {
    measure_a = 10;
    measure_b = 50;
    measure_c = 100;
    measure_d = 7;
    measure_e = 33;
    measure_f = 64;
}

#[test]
fn measure_sees_what_is_left() {
    let (kept, d) = secalloc::testing::measure_with(|| vec![0u8; 1234]);
    assert_eq!(d.live_bytes, 1234);
    assert_eq!(d.live_blocks, 1);
    drop(kept);
}

#[inline(never)]
fn leaky_helper() {
    std::mem::forget(std::hint::black_box(vec![1u8; 4321]));
}

#[test]
fn assert_no_leaks_names_the_leaking_callsite() {
    let r = std::panic::catch_unwind(|| secalloc::testing::assert_no_leaks(leaky_helper));
    let msg = match r {
        Ok(()) => panic!("a leak was not reported"),
        Err(e) => e.downcast::<String>().map(|s| *s).unwrap_or_default(),
    };
    assert!(
        msg.contains("left 4321 byte(s) in 1 block(s) live"),
        "{msg}"
    );
    assert!(msg.contains("testing_api::leaky_helper"), "{msg}");
    assert!(msg.contains("tests/testing_api.rs"), "{msg}");
}

#[test]
fn assert_no_leaks_passes_clean_code_through() {
    assert_eq!(
        secalloc::testing::assert_no_leaks(|| work(20)),
        (0..20).map(|i| format!("item-{i}").len()).sum::<usize>()
    );
}
