//! The DSS HTTP server: axum routes for every `/dss/v1` endpoint of `utm.yaml`, `/healthy` and
//! `/metrics`. Handlers are thin: authenticate, check the endpoint's scopes, convert the body
//! from the wire, make one call into `dss`, convert the result to the wire. All failures go
//! through [`error::ApiError`].

pub mod auth;
pub mod error;
pub mod http;
mod map_view;
pub mod pool;
pub mod ratelimit;
pub mod reports;
mod rid;
pub mod tls;
pub mod token_server;

use std::sync::Arc;
use std::time::Instant;

use api::parse_json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use dss::{scopes, Caller, Dss, Scope};
use metrics_exporter_prometheus::PrometheusHandle;
use model::UssAvailability;
use store::Store;

use crate::auth::Verifier;
use crate::error::ApiError;

/// Largest request body accepted (a request with 100 volumes of 1000 vertices fits).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

pub struct AppState<S: Store> {
    pub dss: Dss<S>,
    pub verifier: Verifier,
    pub metrics: Option<PrometheusHandle>,
    /// `/metrics` is served on this listener (false with `--metrics-listen`: on its own).
    pub metrics_here: bool,
    /// What `GET /aux/v1/version` reports (the build's version and commit).
    pub version: String,
    /// This instance in its pool (a pool of one for the embedded store).
    pub pool: pool::Pool,
    pub limits: ratelimit::RateLimits,
    /// Where reports are kept.
    pub reports: Arc<reports::ReportArchive>,
    /// What the read-only map draws under the airspace (`--map-tiles`).
    pub basemap: Arc<map::Basemap>,
}

type St<S> = State<Arc<AppState<S>>>;
type Body = Result<Bytes, BytesRejection>;

/// The authenticated caller of a request.
pub struct Authed(pub Caller);

impl<S: Store> FromRequestParts<Arc<AppState<S>>> for Authed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState<S>>) -> Result<Self, Self::Rejection> {
        let ip = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        // The failed-authentication limit refuses only requests whose token is missing or fails
        // verification: a valid token is served (within its subject's own limit) however many
        // failures its address produced, so a flood of bad tokens behind a NAT or proxy cannot
        // lock out the good ones there. The CPU the limit protects is kept by the verifier's
        // caches: a verified token costs no signature check after its first use, and a refused
        // one none when sent again.
        let caller = match state.verifier.verify(header) {
            Ok(c) => c,
            Err(e) => {
                if let Some(ip) = ip {
                    state.limits.failed_auth_per_ip.take(&ip).map_err(|retry_after_s| ApiError::TooManyRequests {
                        message: "too many requests with invalid or missing access tokens from this address".into(),
                        retry_after_s,
                    })?;
                }
                return Err(e.into());
            }
        };
        state.limits.per_subject.take(&caller.manager).map_err(|retry_after_s| ApiError::TooManyRequests {
            message: format!("rate limit for `{}` exceeded (--rate-limit-per-sub)", caller.manager),
            retry_after_s,
        })?;
        Ok(Authed(caller))
    }
}

fn body_of<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("request body exceeds {MAX_BODY_BYTES} bytes"))
        } else {
            ApiError::Wire(api::WireError::bad(format!("could not read the request body: {e}")))
        }
    })?;
    Ok(parse_json(&bytes)?)
}

/// Builds the router; the caller binds it to a listener.
pub fn app<S: Store>(state: Arc<AppState<S>>) -> Router {
    let oir = "/dss/v1/operational_intent_references";
    let cr = "/dss/v1/constraint_references";
    let sub = "/dss/v1/subscriptions";
    Router::new()
        .route(&format!("{oir}/query"), post(query_intents::<S>))
        .route(&format!("{oir}/{{entityid}}"), get(get_intent::<S>).put(create_intent::<S>))
        .route(&format!("{oir}/{{entityid}}/{{ovn}}"), put(update_intent::<S>).delete(delete_intent::<S>))
        .route(&format!("{cr}/query"), post(query_constraints::<S>))
        .route(&format!("{cr}/{{entityid}}"), get(get_constraint::<S>).put(create_constraint::<S>))
        .route(&format!("{cr}/{{entityid}}/{{ovn}}"), put(update_constraint::<S>).delete(delete_constraint::<S>))
        .route(&format!("{sub}/query"), post(query_subscriptions::<S>))
        .route(&format!("{sub}/{{subscriptionid}}"), get(get_subscription::<S>).put(create_subscription::<S>))
        .route(
            &format!("{sub}/{{subscriptionid}}/{{version}}"),
            put(update_subscription::<S>).delete(delete_subscription::<S>),
        )
        // An empty `{ovn}` or `{version}` names a version that cannot match: 400, not 404.
        .route(&format!("{oir}/{{entityid}}/"), put(empty_version).delete(empty_version))
        .route(&format!("{cr}/{{entityid}}/"), put(empty_version).delete(empty_version))
        .route(&format!("{sub}/{{subscriptionid}}/"), put(empty_version).delete(empty_version))
        .route("/dss/v1/reports", post(make_report::<S>))
        .route("/dss/v1/uss_availability/{uss_id}", get(get_availability::<S>).put(set_availability::<S>))
        .route("/aux/v1/version", get(aux_version::<S>))
        .route("/aux/v1/validate_oauth", get(aux_validate_oauth::<S>))
        .route("/aux/v1/configuration/global_options", get(aux_global_options::<S>))
        .route("/aux/v1/pool", get(aux_pool::<S>))
        .route("/aux/v1/pool/dss_instances", get(aux_pool_instances::<S>))
        .route("/aux/v1/pool/dss_instances/heartbeat", put(aux_pool_heartbeat::<S>))
        .route(store::pool::APPLIED_PATH, get(pool_applied::<S>))
        .route("/healthy", get(healthy::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/map/data", get(map_data::<S>))
        .merge(map::router(state.basemap.clone(), "/map"))
        .merge(rid::routes::<S>())
        .fallback(|| async { ApiError::NotFound("no such endpoint; see the ASTM F3548-21 DSS API".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(record_metrics))
        .layer(axum::middleware::from_fn(otel::serve))
        .with_state(state)
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = metrics::SharedString::from(match *req.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::POST => "POST",
        axum::http::Method::DELETE => "DELETE",
        _ => "other",
    });
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(metrics::SharedString::from("unmatched"), |p| metrics::SharedString::from(p.as_str().to_owned()));
    let response = next.run(req).await;
    let status = metrics::SharedString::from(status_label(response.status()));
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("dss_http_requests_total", &labels).increment(1);
    metrics::histogram!("dss_http_request_duration_seconds", &labels).record(start.elapsed().as_secs_f64());
    response
}

/// Status label without formatting for the statuses this service answers.
fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        201 => "201",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        412 => "412",
        413 => "413",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

/// `200 ok` when serving everything; `503` with `{"status": "degraded", "message": ...}` when
/// the store serves reads but refuses writes (a full disk); `503 storage unavailable` when it
/// cannot serve at all.
async fn healthy<S: Store>(State(st): St<S>) -> Response {
    if let Some(why) = st.dss.store().degraded() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "degraded", "message": why})))
            .into_response();
    }
    match st.dss.store().view(store::Consistency::Fresh).await {
        Ok(_) => (StatusCode::OK, "ok").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable").into_response()
        }
    }
}

/// The Prometheus text; the live-entity gauges are read from this instance's index as it is
/// rendered (`dss_live_entities{kind=...}`: F3548 intents, constraints and subscriptions, and
/// F3411 ISAs and subscriptions, each kind apart).
async fn metrics<S: Store>(State(st): St<S>) -> Response {
    if !st.metrics_here {
        return (StatusCode::NOT_FOUND, "metrics are served on their own listener (--metrics-listen)").into_response();
    }
    render_metrics(&st)
}

/// A router serving only `/metrics`, for its own listener (`--metrics-listen`).
pub fn metrics_app<S: Store>(state: Arc<AppState<S>>) -> Router {
    Router::new().route("/metrics", get(|State(st): St<S>| async move { render_metrics(&st) })).with_state(state)
}

fn render_metrics<S: Store>(st: &AppState<S>) -> Response {
    match &st.metrics {
        Some(h) => {
            let live = st.dss.store().live();
            for (kind, n) in [
                ("operational_intent", live.intents),
                ("constraint", live.constraints),
                ("subscription", live.subscriptions),
                ("identification_service_area", live.isas),
                ("rid_subscription", live.rid_subscriptions),
            ] {
                metrics::gauge!("dss_live_entities", "kind" => kind).set(n as f64);
            }
            h.render().into_response()
        }
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

// ---- InterUSS's auxiliary API (aux_.yaml) ----

/// `aux_.yaml` declares no security for the version: anyone may ask.
async fn aux_version<S: Store>(State(st): St<S>) -> Response {
    Json(serde_json::json!({"version": st.version})).into_response()
}

#[derive(serde::Deserialize)]
struct OwnerQuery {
    owner: Option<String>,
}

/// 200 for a valid token holding one of the scopes `aux_.yaml` gives (the remote-ID ones);
/// 403 when `owner` is given and is not the token's `sub`.
async fn aux_validate_oauth<S: Store>(
    State(_): St<S>,
    Authed(c): Authed,
    query: Result<axum::extract::Query<OwnerQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    c.require_any(&[Scope::RidRead, Scope::RidWrite])?;
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::Wire(api::WireError::bad(format!("query parameters: {e}"))))?;
    if let Some(owner) = q.owner.filter(|o| !o.is_empty()) {
        if owner != c.manager {
            return Err(
                dss::DssError::Forbidden(format!("the token's owner (sub) is `{}`, not `{owner}`", c.manager)).into()
            );
        }
    }
    Ok(Json(serde_json::json!({})).into_response())
}

/// Our settings in the shape of `GlobalOptionsResponse`: no global lock and no hash lock
/// (decisions commit with preconditions instead), notification indexes counted per change.
async fn aux_global_options<S: Store>(State(_): St<S>, Authed(c): Authed) -> Result<Response, ApiError> {
    c.require_any(&[Scope::PoolStatusRead])?;
    Ok(Json(serde_json::json!({
        "scd_global_lock": false,
        "scd_hash_lock": false,
        "time_based_notification_index": false,
    }))
    .into_response())
}

async fn aux_pool<S: Store>(State(st): St<S>, Authed(c): Authed) -> Result<Response, ApiError> {
    c.require_any(&[Scope::PoolStatusRead])?;
    Ok(Json(serde_json::json!({"dar_id": st.pool.dar_id})).into_response())
}

#[derive(serde::Deserialize)]
struct AppliedQuery {
    revision: Option<String>,
}

/// Installs the process's Prometheus recorder (once per process: `None` if one already is)
/// and drains it every 5 s: the recorder keeps every histogram sample until upkeep folds it
/// into its summary, so without this memory grows with every request (about 0.5 MB/s at
/// 25,000 requests/s, seen in the soak benchmark) when nobody scrapes /metrics.
pub fn install_metrics() -> Option<PrometheusHandle> {
    // Histograms, not summaries: buckets add up across the instances of a pool (quantiles do
    // not), so `histogram_quantile(0.99, sum by (le) (rate(..._bucket[5m])))` is the pool's p99.
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS_S)
        .ok()?
        .install_recorder()
        .ok()?;
    describe_metrics();
    let draining = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            draining.run_upkeep();
        }
    });
    Some(handle)
}

/// Latency buckets of every histogram, in seconds: 250 µs to 10 s.
pub const LATENCY_BUCKETS_S: [f64; 16] =
    [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0];

/// `# HELP` text for every metric the DSS exports (the store's and the listener's included).
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("dss_http_requests_total", "HTTP requests answered, by method, route template and status");
    describe_histogram!(
        "dss_http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's head to its answer, by method, route template and status"
    );
    describe_gauge!("dss_live_entities", "Live entities in this instance's index, by kind");
    describe_histogram!(
        "dss_store_commit_seconds",
        Unit::Seconds,
        "Embedded store: a commit from its start to its durability, by outcome (committed, conflict, failed)"
    );
    describe_gauge!("dss_store_log_bytes", Unit::Bytes, "Embedded store: bytes in the current log segment");
    describe_gauge!("dss_store_snapshot_bytes", Unit::Bytes, "Embedded store: size of the last snapshot");
    describe_counter!("dss_store_compactions_total", "Embedded store: log compactions done");
    describe_histogram!("dss_store_compaction_seconds", Unit::Seconds, "Embedded store: time a compaction took");
    describe_counter!(
        "dss_etcd_transactions_total",
        "etcd pool: transactions by outcome (committed, lost_race: a compare failed, committed_unanswered)"
    );
    describe_histogram!("dss_etcd_commit_seconds", Unit::Seconds, "etcd pool: one transaction's round trip");
    describe_counter!("dss_etcd_commits_total", "etcd pool: commits asked of the store");
    describe_counter!("dss_etcd_commit_ops_total", "etcd pool: keys written by transactions");
    describe_counter!("dss_etcd_commit_compares_total", "etcd pool: compares checked by transactions");
    describe_histogram!(
        "dss_etcd_apply_wait_seconds",
        Unit::Seconds,
        "etcd pool: wait for this instance's index to apply a revision"
    );
    describe_histogram!(
        "dss_etcd_reader_wait_seconds",
        Unit::Seconds,
        "etcd pool: wait for the other instances' acknowledgements of a write (read leases)"
    );
    describe_gauge!(
        "dss_etcd_read_lease_held",
        "etcd pool: 1 while this instance holds its read lease and answers reads from its index, else 0"
    );
    describe_counter!(
        "dss_etcd_read_lease_lapses_total",
        "etcd pool: read leases lost (reads fell back to quorum reads)"
    );
    describe_gauge!("dss_etcd_other_readers", "etcd pool: other instances whose acknowledgement each write waits for");
    describe_counter!("dss_etcd_quorum_reads_total", "etcd pool: quorum reads made (one round trip each)");
    describe_counter!("http_connections_evicted_total", "Idle connections closed to admit new ones at the cap");
    describe_counter!("http_connections_refused_total", "Connections refused at the cap, every one busy");
    describe_counter!("http_header_timeouts_total", "Connections closed: request head or TLS handshake too slow");
    describe_counter!("http_body_timeouts_total", "Requests answered 408: body too slow");
    describe_counter!("http_requests_timed_out_total", "Requests answered 503: past --request-timeout-secs");
    describe_counter!("http_tls_handshakes_failed_total", "TLS handshakes that failed");
}

/// Between instances of a pool (not part of any standard): answers, as plain text, the etcd
/// revision this instance has applied once it covers `revision` (waiting under a second), so
/// that a writer may acknowledge its write to its client while this instance serves reads
/// from its index under a read lease (`store_etcd::leases`). Authorized by the pool's secret,
/// which only holders of etcd credentials can read; 409 when not there yet.
async fn pool_applied<S: Store>(
    State(st): St<S>,
    headers: axum::http::HeaderMap,
    q: Result<axum::extract::Query<AppliedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = q.map_err(|e| ApiError::Dss(dss::DssError::BadRequest(e.body_text())))?.0;
    let revision =
        q.revision.as_deref().and_then(|r| r.parse::<u64>().ok()).ok_or_else(|| {
            ApiError::Dss(dss::DssError::BadRequest("`revision` must be a non-negative integer".into()))
        })?;
    let secret = headers
        .get(store::pool::SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::Dss(dss::DssError::Forbidden("the pool's secret is required".into())))?
        .to_owned();
    match st.pool.registry.confirm_applied(revision, secret).await {
        Ok(Some(a)) if a.covers => Ok(a.revision.to_string().into_response()),
        Ok(Some(a)) => {
            Err(ApiError::Dss(dss::DssError::Conflict(format!("applied up to revision {} only", a.revision))))
        }
        Ok(None) => Err(ApiError::Dss(dss::DssError::Forbidden("not the pool's secret".into()))),
        Err(e) => Err(ApiError::NotFound(e)),
    }
}

fn pool_unavailable(e: String) -> ApiError {
    ApiError::Dss(dss::DssError::Unavailable(format!("the pool registry: {e}")))
}

async fn aux_pool_instances<S: Store>(State(st): St<S>, Authed(c): Authed) -> Result<Response, ApiError> {
    c.require_any(&[Scope::PoolStatusRead])?;
    let mut all = st.pool.registry.list().await.map_err(pool_unavailable)?;
    all.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(serde_json::json!({"dss_instances": all})).into_response())
}

#[derive(serde::Deserialize)]
struct HeartbeatQuery {
    source: Option<String>,
    timestamp: Option<String>,
    next_heartbeat_expected_before: Option<String>,
}

fn rfc3339_param(v: Option<String>, name: &str) -> Result<Option<String>, ApiError> {
    match v {
        None => Ok(None),
        Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
            .map(|_| Some(s.clone()))
            .map_err(|e| ApiError::Wire(api::WireError::bad(format!("{name} `{s}` is not an RFC 3339 time ({e})")))),
    }
}

/// Furthest ahead a heartbeat may announce the next one.
const MAX_HEARTBEAT_AHEAD_S: i64 = 3600;

/// Records a heartbeat of this instance, reported by the token's `sub` (`aux_.yaml`).
async fn aux_pool_heartbeat<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    query: Result<axum::extract::Query<HeartbeatQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    c.require_any(&[Scope::PoolHeartbeatWrite])?;
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::Wire(api::WireError::bad(format!("query parameters: {e}"))))?;
    let source = q
        .source
        .filter(|s| !s.is_empty() && s.len() <= 200)
        .ok_or_else(|| ApiError::Wire(api::WireError::bad("source is required (at most 200 characters)")))?;
    let timestamp = rfc3339_param(q.timestamp, "timestamp")?
        .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let next = rfc3339_param(q.next_heartbeat_expected_before, "next_heartbeat_expected_before")?;
    if let Some(n) = next.as_deref().and_then(|n| chrono::DateTime::parse_from_rfc3339(n).ok()) {
        // A heartbeat promising the next one far ahead would mask a dead instance that long.
        let limit = chrono::Utc::now() + chrono::Duration::seconds(MAX_HEARTBEAT_AHEAD_S);
        if n > limit {
            return Err(ApiError::Wire(api::WireError::bad(format!(
                "next_heartbeat_expected_before `{}` is more than {} hour ahead; a heartbeat may announce the next \
                 one at most {} hour ahead",
                next.as_deref().unwrap_or_default(),
                MAX_HEARTBEAT_AHEAD_S / 3600,
                MAX_HEARTBEAT_AHEAD_S / 3600
            ))));
        }
    }
    let all = st.pool.heartbeat(&source, &c.manager, timestamp, next).await.map_err(pool_unavailable)?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"dss_instances": all}))).into_response())
}

async fn empty_version() -> ApiError {
    ApiError::Wire(api::WireError::bad(
        "the version (OVN) in the path is empty; name the current version, or omit the segment to create",
    ))
}

fn uuid_path(s: &str, what: &str) -> Result<model::Uuid, ApiError> {
    Ok(api::parse_uuid_v4(s, what)?)
}

// ---- operational intent references ----

#[derive(serde::Deserialize)]
struct MapQuery {
    /// `west,south,east,north` in degrees.
    bbox: Option<String>,
    /// How far ahead, in hours (default 25: the slider's 24 h and a margin).
    hours: Option<u32>,
}

/// The airspace map's data: references only, for the `--map-scope` scope.
async fn map_data<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    query: Result<axum::extract::Query<MapQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let axum::extract::Query(q) = query.map_err(|e| ApiError::Wire(api::WireError::bad(format!("query: {e}"))))?;
    let bbox = map_view::parse_bbox(q.bbox.as_deref())?;
    let airspace = st.dss.airspace(&c, bbox, q.hours.unwrap_or(25)).await?;
    Ok(axum::Json(map_view::view(&c.manager, &airspace)))
}

async fn query_intents<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    c.require_any(scopes::INTENTS)?;
    let area = api::area_of_interest(&body_of(body)?)?;
    let views = st.dss.query_intents(&c, &area).await?;
    Ok(json_out(&api::IntentsOut(&views)))
}

async fn get_intent<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    c.require_any(scopes::INTENTS)?;
    let v = st.dss.get_intent(&c, uuid_path(&id, "entityid")?).await?;
    Ok(Json(api::GetOperationalIntentReferenceResponse { operational_intent_reference: api::intent_to_wire(&v) }))
}

async fn put_intent_common<S: Store>(
    st: &AppState<S>,
    c: &Caller,
    id: &str,
    ovn: Option<&str>,
    body: Body,
) -> Result<Json<api::ChangeOperationalIntentReferenceResponse>, ApiError> {
    c.require_any(scopes::INTENTS)?;
    let id = uuid_path(id, "entityid")?;
    let req = api::put_intent_request(body_of(body)?)?;
    let change = st.dss.put_intent(c, id, ovn, req).await?;
    Ok(Json(api::ChangeOperationalIntentReferenceResponse {
        subscribers: api::subscribers_to_wire(&change.subscribers),
        operational_intent_reference: api::intent_to_wire(&change.entity),
    }))
}

async fn create_intent<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(id): Path<String>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::CREATED, put_intent_common(&st, &c, &id, None, body).await?))
}

async fn update_intent<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path((id, ovn)): Path<(String, String)>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    put_intent_common(&st, &c, &id, Some(&ovn), body).await
}

async fn delete_intent<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path((id, ovn)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    c.require_any(scopes::INTENTS)?;
    let change = st.dss.delete_intent(&c, uuid_path(&id, "entityid")?, &ovn).await?;
    Ok(Json(api::ChangeOperationalIntentReferenceResponse {
        subscribers: api::subscribers_to_wire(&change.subscribers),
        operational_intent_reference: api::intent_to_wire(&change.entity),
    }))
}

// ---- constraint references ----

async fn query_constraints<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    c.require_any(scopes::CONSTRAINTS_READ)?;
    let area = api::area_of_interest(&body_of(body)?)?;
    let views = st.dss.query_constraints(&c, &area).await?;
    Ok(json_out(&api::ConstraintsOut(&views)))
}

async fn get_constraint<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    c.require_any(scopes::CONSTRAINTS_READ)?;
    let v = st.dss.get_constraint(&c, uuid_path(&id, "entityid")?).await?;
    Ok(Json(api::GetConstraintReferenceResponse { constraint_reference: api::constraint_to_wire(&v) }))
}

async fn put_constraint_common<S: Store>(
    st: &AppState<S>,
    c: &Caller,
    id: &str,
    ovn: Option<&str>,
    body: Body,
) -> Result<Json<api::ChangeConstraintReferenceResponse>, ApiError> {
    c.require_any(scopes::CONSTRAINTS_WRITE)?;
    let id = uuid_path(id, "entityid")?;
    let p: api::PutConstraintReferenceParameters = body_of(body)?;
    let extents = api::extents_from_wire(&p.extents)?;
    let change = st.dss.put_constraint(c, id, ovn, extents, p.uss_base_url).await?;
    Ok(Json(api::ChangeConstraintReferenceResponse {
        subscribers: api::subscribers_to_wire(&change.subscribers),
        constraint_reference: api::constraint_to_wire(&change.entity),
    }))
}

async fn create_constraint<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(id): Path<String>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::CREATED, put_constraint_common(&st, &c, &id, None, body).await?))
}

async fn update_constraint<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path((id, ovn)): Path<(String, String)>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    put_constraint_common(&st, &c, &id, Some(&ovn), body).await
}

async fn delete_constraint<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path((id, ovn)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    c.require_any(scopes::CONSTRAINTS_WRITE)?;
    let change = st.dss.delete_constraint(&c, uuid_path(&id, "entityid")?, &ovn).await?;
    Ok(Json(api::ChangeConstraintReferenceResponse {
        subscribers: api::subscribers_to_wire(&change.subscribers),
        constraint_reference: api::constraint_to_wire(&change.entity),
    }))
}

// ---- subscriptions ----

async fn query_subscriptions<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    c.require_any(scopes::SUBSCRIPTIONS)?;
    let area = api::area_of_interest(&body_of(body)?)?;
    let views = st.dss.query_subscriptions(&c, &area).await?;
    Ok(Json(api::QuerySubscriptionsResponse { subscriptions: views.iter().map(api::subscription_to_wire).collect() }))
}

async fn get_subscription<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    c.require_any(scopes::SUBSCRIPTIONS)?;
    let v = st.dss.get_subscription(&c, uuid_path(&id, "subscriptionid")?).await?;
    Ok(Json(api::GetSubscriptionResponse { subscription: api::subscription_to_wire(&v) }))
}

async fn put_subscription_common<S: Store>(
    st: &AppState<S>,
    c: &Caller,
    id: &str,
    version: Option<&str>,
    body: Body,
) -> Result<Json<api::PutSubscriptionResponse>, ApiError> {
    c.require_any(scopes::SUBSCRIPTIONS)?;
    let id = uuid_path(id, "subscriptionid")?;
    // The spec documents no 413 for subscription writes: an area over the limit is a 400 here.
    let req = api::put_subscription_request(body_of(body)?).map_err(|e| api::WireError { too_large: false, ..e })?;
    let change = st.dss.put_subscription(c, id, version, req).await.map_err(|e| match e {
        dss::DssError::TooLarge(m) => dss::DssError::BadRequest(m),
        other => other,
    })?;
    let s = &change.subscription.subscription;
    Ok(Json(api::PutSubscriptionResponse {
        subscription: api::subscription_to_wire(&change.subscription),
        operational_intent_references: s
            .notify_for_operational_intents
            .then(|| change.intents.iter().map(api::intent_to_wire).collect()),
        constraint_references: s
            .notify_for_constraints
            .then(|| change.constraints.iter().map(api::constraint_to_wire).collect()),
    }))
}

/// The spec answers a created subscription with 200 (not 201).
async fn create_subscription<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(id): Path<String>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    put_subscription_common(&st, &c, &id, None, body).await
}

async fn update_subscription<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path((id, version)): Path<(String, String)>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    put_subscription_common(&st, &c, &id, Some(&version), body).await
}

async fn delete_subscription<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path((id, version)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    c.require_any(scopes::SUBSCRIPTIONS)?;
    let v = st.dss.delete_subscription(&c, uuid_path(&id, "subscriptionid")?, &version).await?;
    Ok(Json(api::DeleteSubscriptionResponse { subscription: api::subscription_to_wire(&v) }))
}

// ---- reports and availability ----

async fn make_report<S: Store>(State(st): St<S>, Authed(c): Authed, body: Body) -> Result<impl IntoResponse, ApiError> {
    c.require_any(scopes::REPORTS)?;
    let bytes =
        body.map_err(|e| ApiError::Wire(api::WireError::bad(format!("could not read the request body: {e}"))))?;
    let max = st.reports.retention().max_report_bytes;
    if bytes.len() > max {
        return Err(ApiError::PayloadTooLarge(format!("a report may be at most {max} bytes")));
    }
    // Archive what was sent (unknown fields included); answer with the report as the schema
    // defines it.
    let mut typed = api::parse_error_report(&bytes)?;
    let receipt = st.dss.make_report(&c)?;
    let sent: serde_json::Value = parse_json(&bytes)?;
    let (archive, id, reporter) = (st.reports.clone(), receipt.report_id.clone(), c.manager.clone());
    let stored = tokio::task::spawn_blocking(move || archive.store(&id, &reporter, &sent))
        .await
        .map_err(|e| dss::DssError::Unavailable(e.to_string()))?;
    match stored {
        Ok(size) => {
            tracing::info!(reporter = %c.manager, report_id = %receipt.report_id, bytes = size, "DSS report stored")
        }
        Err(e) => {
            tracing::error!(reporter = %c.manager, error = %e, "could not store a DSS report");
            return Err(ApiError::StorageFull(format!("the report could not be stored ({e}); retry later")));
        }
    }
    typed.report_id = Some(receipt.report_id);
    Ok((StatusCode::CREATED, Json(typed)))
}

/// Most characters of a `uss_id`: token subjects are short identifiers.
const MAX_USS_ID_CHARS: usize = 255;

/// A `uss_id` from the path: 1 to 255 printable ASCII characters, no spaces or control codes
/// (it names a token subject; anything else would only grow the store).
fn uss_id(s: &str) -> Result<&str, ApiError> {
    let ok = !s.is_empty() && s.len() <= MAX_USS_ID_CHARS && s.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(ApiError::Wire(api::WireError::bad(format!(
            "uss_id must be 1 to {MAX_USS_ID_CHARS} printable ASCII characters without spaces"
        ))));
    }
    Ok(s)
}

fn availability_to_wire(r: model::AvailabilityRecord) -> api::UssAvailabilityStatusResponse {
    api::UssAvailabilityStatusResponse {
        version: r.version,
        status: api::UssAvailabilityStatus { uss: r.uss, availability: r.availability.as_str().into() },
    }
}

async fn get_availability<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(uss): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    c.require_any(scopes::AVAILABILITY_READ)?;
    Ok(Json(availability_to_wire(st.dss.get_availability(&c, uss_id(&uss)?).await?)))
}

/// A stale `old_version` gets 409, as the reference DSS answers (the spec lists no status for
/// it).
async fn set_availability<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(uss): Path<String>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    c.require_any(scopes::AVAILABILITY_WRITE)?;
    let p: api::SetUssAvailabilityStatusParameters = body_of(body)?;
    let availability = UssAvailability::parse(&p.availability).ok_or_else(|| {
        api::WireError::bad(format!("availability `{}` is not one of Unknown, Normal, Down", p.availability))
    })?;
    let r = st.dss.set_availability(&c, uss_id(&uss)?, &p.old_version, availability).await?;
    Ok(Json(availability_to_wire(r)))
}

/// A 200 JSON response written by [`api::JsonOut`] (query answers and 409s: the hot responses).
pub(crate) fn json_out(value: &impl api::JsonOut) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], value.to_json()).into_response()
}

#[cfg(test)]
mod dashboard_tests {
    /// The Grafana dashboard in the repository only graphs metrics the DSS and the participant
    /// export (and describe): a renamed metric breaks this test, not a chart nobody looks at.
    #[test]
    fn the_dashboard_graphs_metrics_the_dss_exports() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/grafana-dss.json")).expect("the dashboard is JSON");
        let described = [include_str!("lib.rs"), include_str!("../../uss/src/lib.rs")].concat();
        let mut n = 0;
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    let base = word.trim_end_matches("_bucket");
                    if ["dss_", "http_", "uss_"].iter().any(|p| base.starts_with(p)) {
                        assert!(described.contains(&format!("\"{base}\"")), "{base} (in `{expr}`) is not described");
                        n += 1;
                    }
                }
            }
        }
        assert!(n >= 15, "only {n} metric references");
    }
}
