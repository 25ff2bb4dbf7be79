//! The security service over HTTP on the loopback interface.
//!
//! ```sh
//! cargo run --example server -- --port 8080      # or SECURE_SERVER_PORT=8080; 0 = any free port
//! curl -s localhost:8080/api/security/status | jq
//! curl -s 'localhost:8080/api/security/status?top=20&frames=8' | jq
//! curl -s localhost:8080/api/security/memory | jq
//! curl -s 'localhost:8080/api/security/audit?count=5' | jq
//! curl -s localhost:8080/api/security/report | jq
//! curl -s 'localhost:8080/api/security/report?format=text'
//! curl -s -X POST -H "Authorization: Bearer $SECURE_SERVER_TOKEN" localhost:8080/api/security/cleanup
//! curl -s localhost:8080/openapi.json | jq '.paths | keys'
//! ```
//!
//! The endpoints, their query parameters and every reply's fields are described in
//! `/openapi.json` (OpenAPI 3.1; `src/openapi.json` in the repository) and in the
//! `secalloc_workspace::server` module.
//!
//! The admin token for the cleanup endpoint comes from `SECURE_SERVER_TOKEN`; without it a
//! random one is made and printed once. The audit log is kept in memory (served by the audit
//! endpoint) and also written to `SECURE_SERVER_AUDIT_LOG` when that is set. Stop with Ctrl-C
//! (abrupt) or by closing standard input (clean: the audit log is flushed).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use secalloc_workspace::server::{self, ServiceConfig};
use secure_core::audit::{self, AuditConfig};

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

const USAGE: &str = "usage: server [--port N]   (or SECURE_SERVER_PORT=N; 0 picks a free port)";

fn port_from(args: &[String]) -> Result<u16, String> {
    let mut port: Option<String> = std::env::var("SECURE_SERVER_PORT").ok();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" | "-p" => match it.next() {
                Some(v) => port = Some(v.clone()),
                None => return Err("--port needs a value".to_owned()),
            },
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => match other.strip_prefix("--port=") {
                Some(v) => port = Some(v.to_owned()),
                None => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            },
        }
    }
    match port {
        None => Ok(8080),
        Some(p) => p
            .trim()
            .parse()
            .map_err(|_| format!("invalid port {p:?}: expected a number from 0 to 65535")),
    }
}

/// 128 random bits as hex, from the standard library's randomly keyed hasher.
fn random_token() -> String {
    (0..2)
        .map(|i| {
            let mut h = RandomState::new().build_hasher();
            h.write_u32(i);
            format!("{:016x}", h.finish())
        })
        .collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = match port_from(&args) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let mut config = AuditConfig::memory(10_000);
    if let Ok(path) = std::env::var("SECURE_SERVER_AUDIT_LOG") {
        config = config.with_jsonl(path);
    }
    if let Err(e) = audit::init(config) {
        eprintln!("server: cannot start the audit log: {e}");
        return ExitCode::FAILURE;
    }
    let token = match std::env::var("SECURE_SERVER_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => {
            let t = random_token();
            eprintln!("server: SECURE_SERVER_TOKEN is not set; admin token for this run: {t}");
            t
        }
    };

    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening on http://{}", listener.local_addr()?);
        // Stop when standard input closes (Ctrl-D, or the parent going away).
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            let _ = tx.send(());
        });
        server::serve(listener, ServiceConfig::new(token), async move {
            let _ = rx.await;
        })
        .await
    });
    if let Err(e) = audit::flush() {
        eprintln!("server: flushing the audit log failed: {e}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}
