//! A small HTTP service that exposes the process's security state as JSON, built on axum and
//! tokio. Every handler is a `#[secure_operation]` async function: each request is audited
//! (start, completion or error), its allocations are attributed to it, and what it returns is
//! sanitized — the service's own admin token comes back as `***REDACTED***`.
//!
//! Endpoints (all JSON):
//!
//! | method and path | returns |
//! |---|---|
//! | `GET /api/security/status` | allocator and audit status, uptime, the (sanitized) configuration |
//! | `GET /api/security/memory` | the allocator's statistics (`secalloc::stats()`) |
//! | `GET /api/security/audit?count=N` | the `N` (1–1000, default 50) most recent audit events |
//! | `GET /api/security/report?top=N` | the audit report and a leak report of the `N` (default 10) largest callsites |
//! | `POST /api/security/cleanup` | logs `ForceCleanupRequested`; needs `Authorization: Bearer <admin token>` |
//!
//! A cleanup request never frees live memory (that would leave dangling pointers in the
//! program): it is recorded for the operators, and the reply says how much is live.
//!
//! Errors are JSON too: `{"error": "..."}` with status 400 (bad query), 401 (missing or
//! wrong token), 404 (no such endpoint), 405 (wrong method) or 503 (no audit log).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use secalloc_workspace::server::{self, ServiceConfig};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let config = ServiceConfig::new("change-me");
//! server::serve(listener, config, std::future::pending()).await
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secure_core::audit::{self, Event, EventKind, Severity};
use secure_core::{secure_operation, Sanitize};
use serde::Serialize;

/// The service's configuration. Its `admin_token` is a secret: every reply is sanitized, so
/// it is redacted wherever it would appear.
#[derive(Clone, Debug, Serialize, Sanitize)]
pub struct ServiceConfig {
    /// The service's name, shown in the status.
    pub name: String,
    /// The token `POST /api/security/cleanup` requires (`Authorization: Bearer <token>`).
    pub admin_token: String,
    /// Largest `count` the audit endpoint accepts.
    pub max_audit_events: usize,
}

impl ServiceConfig {
    /// A configuration with the given admin token and default limits.
    pub fn new(admin_token: impl Into<String>) -> ServiceConfig {
        ServiceConfig {
            name: "secalloc security service".to_owned(),
            admin_token: admin_token.into(),
            max_audit_events: 1000,
        }
    }
}

#[derive(Clone)]
struct AppState {
    config: Arc<ServiceConfig>,
    started: Instant,
}

/// A JSON reply. The value is sanitized by the handler's `#[secure_operation]` before it is
/// serialized.
#[derive(Debug, Sanitize)]
pub struct Reply<T>(pub T);

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// A failed request.
#[derive(Debug, Sanitize)]
pub enum ApiError {
    /// A query parameter is missing or invalid (400).
    BadRequest(String),
    /// The admin token is missing or wrong (401).
    Unauthorized,
    /// No audit log was started (503).
    AuditInactive,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::BadRequest(msg) => f.write_str(msg),
            ApiError::Unauthorized => {
                f.write_str("this endpoint needs the header `Authorization: Bearer <admin token>`")
            }
            ApiError::AuditInactive => f.write_str("no audit log is active in this process"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::AuditInactive => StatusCode::SERVICE_UNAVAILABLE,
        };
        json_error(status, &self.to_string())
    }
}

/// The routes, for embedding in a larger application.
pub fn router(config: ServiceConfig) -> Router {
    let state = AppState {
        config: Arc::new(config),
        started: Instant::now(),
    };
    Router::new()
        .route("/api/security/status", get(status))
        .route("/api/security/memory", get(memory))
        .route("/api/security/audit", get(audit_events))
        .route("/api/security/report", get(report))
        .route("/api/security/cleanup", post(cleanup))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> Response {
    json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

fn json_error(status: StatusCode, msg: &str) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

/// Serves the routes on `listener` until `shutdown` completes, then finishes the requests
/// in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ServiceConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(config))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The status snapshot.
#[derive(Debug, Serialize, Sanitize)]
pub struct StatusReply {
    /// The service's name.
    pub service: String,
    /// Seconds since the routes were built.
    pub uptime_secs: f64,
    /// The allocator's state.
    pub allocator: AllocatorStatus,
    /// The audit log's state.
    pub audit: AuditStatus,
    /// The configuration (the admin token redacted).
    pub config: ServiceConfig,
    /// `secure_core::status()`: leak figures, top callsites, audit report, integrity.
    pub security: secure_core::status::Status,
}

/// The allocator's part of the status.
#[derive(Debug, Serialize, Sanitize)]
pub struct AllocatorStatus {
    /// Whether `secalloc::SecAlloc` is the global allocator.
    pub installed: bool,
    /// Bytes in live blocks.
    pub live_bytes: u64,
    /// Live blocks.
    pub live_blocks: u64,
    /// The highest `live_bytes` seen.
    pub peak_live_bytes: u64,
    /// Bytes wiped on free so far.
    pub wiped_bytes: u64,
    /// Heap corruptions detected and survived.
    pub corruptions_detected: u64,
    /// Whether the build keeps frame pointers (needed for callsite stacks).
    pub frame_pointers: bool,
}

/// The audit log's part of the status.
#[derive(Debug, Serialize, Sanitize)]
pub struct AuditStatus {
    /// Whether a process-wide audit log is running.
    pub active: bool,
    /// Events written to it so far.
    pub events_written: u64,
}

#[secure_operation("api.status")]
async fn status(State(state): State<AppState>) -> Result<Reply<StatusReply>, ApiError> {
    let s = secalloc::stats();
    Ok(Reply(StatusReply {
        service: state.config.name.clone(),
        uptime_secs: state.started.elapsed().as_secs_f64(),
        allocator: AllocatorStatus {
            installed: secalloc::is_installed(),
            live_bytes: s.live_bytes,
            live_blocks: s.live_blocks,
            peak_live_bytes: s.peak_live_bytes,
            wiped_bytes: s.wiped_bytes,
            corruptions_detected: s.corruptions_detected,
            frame_pointers: s.frame_pointers,
        },
        audit: AuditStatus {
            active: audit::is_active(),
            events_written: audit::global().map_or(0, |l| l.written()),
        },
        config: (*state.config).clone(),
        security: secure_core::status::status_with(5, 10),
    }))
}

#[secure_operation("api.memory")]
async fn memory() -> Result<Reply<serde_json::Value>, ApiError> {
    let mut v = secure_core::leak_report::stats_json(&secalloc::stats());
    v["installed"] = serde_json::Value::Bool(secalloc::is_installed());
    Ok(Reply(v))
}

#[secure_operation("api.audit", record(query))]
async fn audit_events(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Reply<Vec<Event>>, ApiError> {
    let max = state.config.max_audit_events;
    let count = match query.get("count") {
        None => 50.min(max),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "`count` must be an integer from 1 to {max}"
                )))
            }
        },
    };
    if !audit::is_active() {
        return Err(ApiError::AuditInactive);
    }
    Ok(Reply(audit::recent(count)))
}

#[secure_operation("api.report", record(query))]
async fn report(
    Query(query): Query<HashMap<String, String>>,
) -> Result<Reply<serde_json::Value>, ApiError> {
    let top = match query.get("top") {
        None => 10,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest("`top` must be an integer from 1 to 1000".to_owned())
            })?,
    };
    let audit_report = audit::report(20).ok_or(ApiError::AuditInactive)?;
    // Building a leak report symbolises stacks: keep it off the async worker.
    let mut leaks = tokio::task::spawn_blocking(secalloc::report)
        .await
        .map_err(|e| ApiError::BadRequest(format!("the leak report failed: {e}")))?;
    leaks.callsites.truncate(top);
    Ok(Reply(serde_json::json!({
        "audit": to_json(&audit_report),
        "allocator": secure_core::leak_report::to_json(&leaks),
    })))
}

/// The reply to a cleanup request.
#[derive(Debug, Serialize, Sanitize)]
pub struct CleanupReply {
    /// Always `true`: the request was logged.
    pub requested: bool,
    /// Always 0: live memory is never freed behind the program's back.
    pub freed_bytes: u64,
    /// Live bytes now.
    pub live_bytes: u64,
    /// Live blocks now.
    pub live_blocks: u64,
    /// What happened.
    pub note: String,
}

#[secure_operation("api.cleanup", level = "warn", redact(headers))]
async fn cleanup(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Reply<CleanupReply>, ApiError> {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented
        .is_some_and(|t| constant_time_eq(t.as_bytes(), state.config.admin_token.as_bytes()))
    {
        return Err(ApiError::Unauthorized);
    }
    let s = secalloc::stats();
    audit::log(
        Event::new(
            EventKind::ForceCleanupRequested,
            Severity::Warning,
            "api.cleanup",
            "cleanup requested over HTTP; live memory left in place",
        )
        .field("live_bytes", s.live_bytes)
        .field("live_blocks", s.live_blocks),
    );
    Ok(Reply(CleanupReply {
        requested: true,
        freed_bytes: 0,
        live_bytes: s.live_bytes,
        live_blocks: s.live_blocks,
        note: "logged as force_cleanup_requested; live memory is never freed by a request \
               (freed memory is wiped by the allocator as it is released)"
            .to_owned(),
    }))
}

/// Compares without an early exit, so the time taken does not tell how much of a guessed
/// token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
    // Serializing these plain data types cannot fail; a failure would be a bug worth
    // reporting in the reply rather than a panic.
    serde_json::to_value(v)
        .unwrap_or_else(|e| serde_json::json!({ "error": format!("serialization failed: {e}") }))
}
