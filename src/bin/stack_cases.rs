//! Test helper for `tests/report_stacks.rs`: leaks from code run by an async executor, to
//! check that the report's stacks end at the user's code (the executor's frames trimmed).
//! `stack_cases CASE`, with CASE `tokio-block-on` or `tokio-spawn`.

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

#[inline(never)]
async fn load_table() -> Vec<u8> {
    vec![5u8; 777] // LEAK-SITE: load_table
}

async fn serve() {
    let table = load_table().await;
    std::mem::forget(table);
}

async fn start_worker() {
    tokio::spawn(async {
        std::mem::forget(vec![6u8; 555]); // LEAK-SITE: worker_task
    })
    .await
    .unwrap();
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    match std::env::args().nth(1).as_deref() {
        Some("tokio-block-on") => rt.block_on(serve()),
        Some("tokio-spawn") => rt.block_on(start_worker()),
        other => {
            eprintln!("stack_cases: unknown case {other:?}");
            std::process::exit(2);
        }
    }
}
