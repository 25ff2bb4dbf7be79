//! A small HTTP service that exposes the process's security state as JSON, built on axum and
//! tokio. Every handler is a `#[secure_operation]` async function: each request is audited
//! (start, completion or error), its allocations are attributed to it, and what it returns is
//! sanitized — the service's own admin token comes back as `***REDACTED***`.
//!
//! Endpoints (JSON unless asked otherwise; [`OPENAPI`], served at `GET /openapi.json`, is the
//! OpenAPI 3.1 description of every reply):
//!
//! | method and path | returns |
//! |---|---|
//! | `GET /api/security/status?top=N&frames=M&errors=E` | allocator figures, leak suspicion, the `N` (default 5) callsites holding the most live memory with `M` (default 3) frames each, the audit summary with the `E` (default 5) latest serious events, the (sanitized) configuration |
//! | `GET /api/security/memory` | the allocator's statistics (`secalloc::stats()`) |
//! | `GET /api/security/audit?count=N` | the `N` (1–1000, default 50) most recent audit events |
//! | `GET /api/security/report?top=N&frames=M&errors=E&format=json\|text` | a leak check now (definitely / indirectly lost, still reachable), its `N` (default 10) largest callsites with `M` (default 5) frames, the audit summary; `format=text` gives the allocator's text report |
//! | `POST /api/security/cleanup` | logs `ForceCleanupRequested`; needs `Authorization: Bearer <admin token>` |
//! | `GET /openapi.json` | the OpenAPI description |
//!
//! Every size is in bytes and every count a plain integer. Each reply is built from one
//! snapshot: its figures are taken at one moment and agree with each other (in a status,
//! `live_bytes = total_allocated_bytes - total_freed_bytes`; in a report, the leak check's
//! verdicts add up to `live_bytes`, and the audit counts by severity add up to
//! `total_events`). Replies are bounded: `top` is at most [`MAX_TOP`], `frames` at most
//! [`MAX_FRAMES`], `errors` at most [`MAX_ERRORS`]; each callsite says how many frames it has
//! (`frames_total`) and a reply how many callsites there are (`callsites_total`).
//!
//! A cleanup request never frees live memory (that would leave dangling pointers in the
//! program): it is recorded for the operators, and the reply says how much is live.
//!
//! Errors are JSON too: `{"error": "..."}` with status 400 (bad query), 401 (missing or
//! wrong token), 404 (no such endpoint), 405 (wrong method), 500 (a report failed) or 503
//! (no audit log, for the audit endpoint).
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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use secure_core::audit::{self, Event, EventKind, Severity};
use secure_core::monitor::CallsiteSummary;
use secure_core::{secure_operation, Sanitize};
use serde::Serialize;

/// The OpenAPI 3.1 description of the service (`GET /openapi.json`).
pub const OPENAPI: &str = include_str!("openapi.json");

/// The most callsites (and scopes) a reply lists (`top`).
pub const MAX_TOP: usize = 100;
/// The most frames a listed callsite shows (`frames`).
pub const MAX_FRAMES: usize = 64;
/// The most serious audit events a reply lists (`errors`).
pub const MAX_ERRORS: usize = 100;

/// The service's configuration. Its `admin_token` is a secret, marked `#[secure(redact)]`:
/// every reply is sanitized, so it is redacted wherever it would appear (in logs and in what
/// a handler returns).
#[derive(Clone, Debug, Serialize, Sanitize)]
pub struct ServiceConfig {
    /// The service's name, shown in the status.
    pub name: String,
    /// The token `POST /api/security/cleanup` requires (`Authorization: Bearer <token>`).
    #[secure(redact)]
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
    /// Building a reply failed (500).
    Internal(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::BadRequest(msg) | ApiError::Internal(msg) => f.write_str(msg),
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
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
        .route("/openapi.json", get(openapi))
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

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn json_error(status: StatusCode, msg: &str) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

/// Serves the routes on `listener` until `shutdown` completes, then finishes the requests
/// in flight. Each connection's peer address is available to the handlers, so failed
/// authentications are logged with the client's address.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ServiceConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(config).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The integer query parameter `name`: `default` when absent, else a value from `min` to
/// `max`.
fn int_param(
    query: &HashMap<String, String>,
    name: &str,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match query.get(name) {
        None => Ok(default),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("`{name}` must be an integer from {min} to {max}"))
            }),
    }
}

/// Fails on a query parameter the endpoint does not know (a typo would otherwise be ignored).
fn known_params(query: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    let mut unknown: Vec<&str> = query
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    Err(ApiError::BadRequest(format!(
        "unknown query parameter(s) {}; this endpoint takes {}",
        unknown.join(", "),
        known.join(", ")
    )))
}

/// The allocator's figures, all from one `secalloc::stats()` snapshot (bytes and counts).
#[derive(Debug, Serialize, Sanitize)]
pub struct AllocatorStatus {
    /// Whether `secalloc::SecAlloc` is the global allocator (the figures are all zero
    /// otherwise).
    pub installed: bool,
    /// `secalloc::Stats`, flattened: `live_bytes`, `live_blocks`, `total_allocated_bytes`,
    /// `total_freed_bytes`, `peak_live_bytes`, `wiped_bytes`, ...
    #[serde(flatten, serialize_with = "stats_fields")]
    #[secure(skip)] // numbers and flags only
    pub stats: secalloc::Stats,
}

/// `secalloc::Stats` as JSON fields (secalloc itself has no serde).
fn stats_fields<S: serde::Serializer>(s: &secalloc::Stats, ser: S) -> Result<S::Ok, S::Error> {
    secure_core::leak_report::stats_json(s).serialize(ser)
}

/// `secalloc::LeakSummary` as JSON fields (secalloc itself has no serde).
fn summary_fields<S: serde::Serializer>(
    s: &secalloc::LeakSummary,
    ser: S,
) -> Result<S::Ok, S::Error> {
    serde_json::json!({
        "definitely_lost_bytes": s.definitely_lost_bytes,
        "definitely_lost_blocks": s.definitely_lost_blocks,
        "indirectly_lost_bytes": s.indirectly_lost_bytes,
        "indirectly_lost_blocks": s.indirectly_lost_blocks,
        "still_reachable_bytes": s.still_reachable_bytes,
        "still_reachable_blocks": s.still_reachable_blocks,
    })
    .serialize(ser)
}

impl AllocatorStatus {
    fn of(stats: secalloc::Stats) -> AllocatorStatus {
        AllocatorStatus {
            installed: secalloc::is_installed(),
            stats,
        }
    }
}

/// A callsite holding live memory.
#[derive(Debug, Serialize, Sanitize)]
pub struct TopAllocation {
    /// Live bytes allocated here.
    pub bytes: u64,
    /// Live blocks allocated here.
    pub blocks: u64,
    /// The first frame with a name: `function (file:line)`.
    pub location: String,
    /// The first `frames` frames, innermost first, in the same form.
    pub frames: Vec<String>,
    /// How many frames the stack has (`frames` shows at most the query's `frames`).
    pub frames_total: usize,
}

impl TopAllocation {
    fn of(c: &secalloc::Callsite, frames: usize) -> TopAllocation {
        let mut s = CallsiteSummary::of(c);
        let frames_total = s.frames.len();
        s.frames.truncate(frames);
        TopAllocation {
            bytes: s.bytes,
            blocks: s.blocks,
            location: s.location,
            frames: s.frames,
            frames_total,
        }
    }
}

/// The audit log's figures, from one `secure_core::audit::report()`.
#[derive(Debug, Serialize, Sanitize)]
pub struct AuditSummary {
    /// Whether a process-wide audit log is running (the counts are 0 otherwise).
    pub active: bool,
    /// Events logged so far.
    pub total_events: u64,
    /// Events per severity (`info`, `warning`, `error`, `critical`); they add up to
    /// `total_events`.
    pub by_severity: BTreeMap<String, u64>,
    /// Events per kind (only in a report; every kind, with 0 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_kind: Option<BTreeMap<String, u64>>,
    /// The latest `Error` and `Critical` events, newest last (at most the query's `errors`).
    pub recent_errors: Vec<Event>,
}

impl AuditSummary {
    fn now(errors: usize, with_kinds: bool) -> AuditSummary {
        match audit::report(errors) {
            Some(r) => AuditSummary {
                active: true,
                total_events: r.total_events,
                by_severity: r.by_severity,
                by_kind: with_kinds.then_some(r.by_kind),
                recent_errors: r.recent_critical,
            },
            None => AuditSummary {
                active: false,
                total_events: 0,
                by_severity: Severity::ALL
                    .iter()
                    .map(|s| (s.as_str().to_owned(), 0))
                    .collect(),
                by_kind: with_kinds.then(|| {
                    EventKind::ALL
                        .iter()
                        .map(|k| (k.as_str().to_owned(), 0))
                        .collect()
                }),
                recent_errors: Vec::new(),
            },
        }
    }
}

/// The status snapshot.
#[derive(Debug, Serialize, Sanitize)]
pub struct StatusReply {
    /// The service's name.
    pub service: String,
    /// When the snapshot was taken (RFC 3339, UTC).
    pub timestamp: String,
    /// Seconds since the routes were built.
    pub uptime_secs: f64,
    /// The allocator's figures.
    pub allocator: AllocatorStatus,
    /// Whether a leak is suspected (`secure_core::status::leak_suspected`): a running leak
    /// monitor is alerted, or, with none running, the live heap is at least 100 MiB.
    pub is_leaking: bool,
    /// The callsites holding the most live bytes, largest first.
    pub top_allocations: Vec<TopAllocation>,
    /// How many callsites hold live memory (0 when `top=0`: none were listed).
    pub callsites_total: usize,
    /// The audit log's figures.
    pub audit: AuditSummary,
    /// The integrity status, when an integrity source is registered
    /// (`secure_core::status::set_integrity_source`).
    pub integrity: Option<serde_json::Value>,
    /// The configuration (the admin token redacted).
    pub config: ServiceConfig,
}

/// A snapshot of the live blocks, off the async worker (symbolising stacks takes a moment the
/// first time, scanning memory for a leak check longer).
async fn snapshot(leak_check: bool) -> Result<secalloc::LeakReport, ApiError> {
    tokio::task::spawn_blocking(move || {
        if leak_check {
            secalloc::leak_check()
        } else {
            secalloc::report()
        }
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the leak report failed: {e}")))
}

#[secure_operation("api.status", record(query))]
async fn status(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Reply<StatusReply>, ApiError> {
    known_params(&query, &["top", "frames", "errors"])?;
    let top = int_param(&query, "top", 5, 0, MAX_TOP)?;
    let frames = int_param(&query, "frames", 3, 0, MAX_FRAMES)?;
    let errors = int_param(&query, "errors", 5, 0, MAX_ERRORS)?;
    // One snapshot: with callsites, the statistics taken with the snapshot of live blocks.
    let (stats, mut callsites) = if top > 0 && secalloc::is_installed() {
        let r = snapshot(false).await?;
        (r.stats, r.callsites)
    } else {
        (secalloc::stats(), Vec::new())
    };
    callsites.sort_by_key(|c| std::cmp::Reverse(c.bytes));
    let allocator = AllocatorStatus::of(stats);
    Ok(Reply(StatusReply {
        service: state.config.name.clone(),
        timestamp: audit::now_rfc3339(),
        uptime_secs: state.started.elapsed().as_secs_f64(),
        is_leaking: secure_core::status::leak_suspected(allocator.installed.then_some(&stats)),
        allocator,
        top_allocations: callsites
            .iter()
            .take(top)
            .map(|c| TopAllocation::of(c, frames))
            .collect(),
        callsites_total: callsites.len(),
        audit: AuditSummary::now(errors, false),
        integrity: secure_core::status::integrity(),
        config: (*state.config).clone(),
    }))
}

#[secure_operation("api.memory")]
async fn memory() -> Result<Reply<AllocatorStatus>, ApiError> {
    Ok(Reply(AllocatorStatus::of(secalloc::stats())))
}

#[secure_operation("api.audit", record(query))]
async fn audit_events(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Reply<Vec<Event>>, ApiError> {
    known_params(&query, &["count"])?;
    let max = state.config.max_audit_events;
    let count = int_param(&query, "count", 50.min(max), 1, max)?;
    if !audit::is_active() {
        return Err(ApiError::AuditInactive);
    }
    Ok(Reply(audit::recent(count)))
}

/// A callsite of a leak check.
#[derive(Debug, Serialize, Sanitize)]
pub struct ReportCallsite {
    /// The leak check's verdict: `definitely_lost`, `indirectly_lost` or `still_reachable`.
    pub kind: String,
    /// Live bytes allocated here.
    pub bytes: u64,
    /// Live blocks allocated here.
    pub blocks: u64,
    /// The largest of those blocks, in bytes.
    pub largest_block: u64,
    /// Names of the scopes (operations) the blocks were allocated in.
    pub scopes: Vec<String>,
    /// The first frame with a name: `function (file:line)`.
    pub location: String,
    /// The first `frames` frames, innermost first.
    pub frames: Vec<String>,
    /// How many frames the stack has.
    pub frames_total: usize,
}

/// Live bytes of one scope (operation) name.
#[derive(Debug, Serialize, Sanitize)]
pub struct ReportScope {
    /// The scope's name.
    pub name: String,
    /// Live bytes allocated in scopes of this name.
    pub bytes: u64,
    /// Live blocks allocated in scopes of this name.
    pub blocks: u64,
}

/// A leak check now, and the audit summary.
#[derive(Debug, Serialize, Sanitize)]
pub struct ReportReply {
    /// When the check ran (RFC 3339, UTC).
    pub timestamp: String,
    /// Whether callsite stacks are recorded (false: the build lacks frame pointers).
    pub stacks_recorded: bool,
    /// Live bytes in the snapshot the check classified.
    pub live_bytes: u64,
    /// Live blocks in that snapshot.
    pub live_blocks: u64,
    /// Definitely plus indirectly lost bytes: memory nothing can free any more.
    pub potential_leak_bytes: u64,
    /// The verdicts' totals (they add up to `live_bytes` and `live_blocks`).
    #[serde(serialize_with = "summary_fields")]
    #[secure(skip)] // numbers only
    pub leak_check: secalloc::LeakSummary,
    /// The largest callsites, lost ones first, then by size.
    pub callsites: Vec<ReportCallsite>,
    /// How many callsites hold live memory.
    pub callsites_total: usize,
    /// The scopes holding the most live bytes, largest first (at most `top`).
    pub scopes: Vec<ReportScope>,
    /// The audit log's figures, with counts by kind.
    pub audit: AuditSummary,
}

/// What `GET /api/security/report` returns: JSON, or the allocator's text report.
#[derive(Debug, Sanitize)]
pub enum ReportBody {
    /// `format=json` (the default).
    Json(Box<ReportReply>),
    /// `format=text`: the leak report as the allocator prints it at exit, then an audit line.
    /// Not sanitized as a string (that would escape its newlines): it holds symbol names,
    /// source paths and counts only.
    Text(#[secure(skip)] String),
}

impl IntoResponse for ReportBody {
    fn into_response(self) -> Response {
        match self {
            ReportBody::Json(r) => Json(r).into_response(),
            ReportBody::Text(t) => {
                ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], t).into_response()
            }
        }
    }
}

fn kind_name(k: Option<secalloc::LeakKind>) -> String {
    match k {
        Some(secalloc::LeakKind::DefinitelyLost) => "definitely_lost",
        Some(secalloc::LeakKind::IndirectlyLost) => "indirectly_lost",
        Some(secalloc::LeakKind::StillReachable) | None => "still_reachable",
    }
    .to_owned()
}

fn report_text(
    mut leaks: secalloc::LeakReport,
    top: usize,
    frames: usize,
    audit: &AuditSummary,
) -> String {
    for c in &mut leaks.callsites {
        c.frames.truncate(frames);
    }
    leaks.scopes.truncate(top);
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = leaks.write_text_top(top, &mut out);
    let mut text = String::from_utf8_lossy(&out)
        .replace("(SECALLOC_REPORT_TOP shows more)", "(top=N shows more)");
    if audit.active {
        let counts: Vec<String> = audit
            .by_severity
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        text.push_str(&format!(
            "\naudit: {} event(s) ({})\n",
            audit.total_events,
            counts.join(", ")
        ));
    } else {
        text.push_str("\naudit: no audit log is active\n");
    }
    text
}

#[secure_operation("api.report", record(query))]
async fn report(Query(query): Query<HashMap<String, String>>) -> Result<ReportBody, ApiError> {
    known_params(&query, &["top", "frames", "errors", "format"])?;
    let top = int_param(&query, "top", 10, 0, MAX_TOP)?;
    let frames = int_param(&query, "frames", 5, 0, MAX_FRAMES)?;
    let errors = int_param(&query, "errors", 5, 0, MAX_ERRORS)?;
    let text = match query.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("text") => true,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`format` must be `json` or `text`".to_owned(),
            ))
        }
    };
    let leaks = snapshot(true).await?;
    let audit = AuditSummary::now(errors, true);
    if text {
        return Ok(ReportBody::Text(report_text(leaks, top, frames, &audit)));
    }
    let summary = leaks.leak_check.unwrap_or_default();
    Ok(ReportBody::Json(Box::new(ReportReply {
        timestamp: audit::now_rfc3339(),
        stacks_recorded: leaks.stacks_recorded,
        live_bytes: leaks.total_bytes,
        live_blocks: leaks.total_blocks,
        potential_leak_bytes: summary.lost_bytes(),
        leak_check: summary,
        callsites: leaks
            .callsites
            .iter()
            .take(top)
            .map(|c| {
                let t = TopAllocation::of(c, frames);
                ReportCallsite {
                    kind: kind_name(c.kind),
                    bytes: c.bytes,
                    blocks: c.blocks,
                    largest_block: c.largest_block,
                    scopes: c.scopes.clone(),
                    location: t.location,
                    frames: t.frames,
                    frames_total: t.frames_total,
                }
            })
            .collect(),
        callsites_total: leaks.callsites.len(),
        scopes: leaks
            .scopes
            .iter()
            .take(top)
            .map(|s| ReportScope {
                name: s.name.clone(),
                bytes: s.bytes,
                blocks: s.blocks,
            })
            .collect(),
        audit,
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
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Result<Reply<CleanupReply>, ApiError> {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented
        .is_some_and(|t| constant_time_eq(t.as_bytes(), state.config.admin_token.as_bytes()))
    {
        // Who tried: the peer's address (`unknown` when the router is served without
        // connect info, see `serve`).
        let client = client.map_or_else(|| "unknown".to_owned(), |c| c.0 .0.to_string());
        audit::log(
            Event::new(
                EventKind::AuthenticationFailed,
                Severity::Warning,
                "api.cleanup",
                format!("authentication failed for POST /api/security/cleanup from {client}"),
            )
            .field("client", client)
            .field(
                "reason",
                if presented.is_some() {
                    "wrong token"
                } else {
                    "no bearer token"
                },
            ),
        );
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
