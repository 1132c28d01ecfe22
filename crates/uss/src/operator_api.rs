//! The operator interface (`/operator/...`) on its own listener: every request carries a
//! bearer token with the `deconflict.operator` scope, bodies must be `application/json` (so no
//! web page can post a form or text to it), and handlers only convert and call a workflow.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use model::OperationalIntentState;
use serde::Deserialize;

use crate::error::UssError;
use crate::operator::{FlightRequest, Outcome, PlanOutcome};
use crate::{Uss, MAX_REQUEST_BYTES};

type St = State<Arc<Uss>>;
type Body = Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>;

/// The operator interface, with the map page at `/` drawing `basemap` under the airspace.
pub fn app(uss: Arc<Uss>, basemap: Arc<map::Basemap>) -> Router {
    Router::new()
        .route("/operator/plan", post(plan))
        .route("/operator/intents/{id}/activate", post(activate))
        .route("/operator/intents/{id}/modify", post(modify))
        .route("/operator/intents/{id}/nonconforming", post(nonconforming))
        .route("/operator/intents/{id}/contingent", post(contingent))
        .route("/operator/intents/{id}/end", post(end))
        .route("/operator/intents/{id}/positions", post(positions))
        .route("/operator/constraints", post(publish_constraint))
        .route("/operator/constraints/{id}/end", post(end_constraint))
        .route("/operator/status", get(status))
        .route("/operator/rid/flights", get(rid_flights))
        .route("/operator/notifications", get(notifications))
        .route("/operator/subscribe", post(subscribe))
        .route("/operator/map", get(crate::map_view::view))
        .route("/operator/events", get(crate::map_view::events))
        .merge(map::router(basemap, "/"))
        .route("/healthy", get(|| async { "ok" }))
        .fallback(|| async { UssError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(axum::middleware::from_fn(otel::serve))
        .with_state(uss)
}

/// An authenticated operator's JSON body, parsed.
fn json_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, UssError> {
    require_json(headers)?;
    api::parse_json(body).map_err(|e| UssError::BadRequest(e.message))
}

/// Bodies come as `application/json` only (no web page can post a form or text here).
fn require_json(headers: &HeaderMap) -> Result<(), UssError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mime = ct.split(';').next().unwrap_or_default().trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(UssError::UnsupportedMediaType(format!(
            "the body must be sent as Content-Type: application/json (got `{ct}`)"
        )));
    }
    Ok(())
}

fn flight(uss: &Uss, headers: &HeaderMap, body: &[u8]) -> Result<(Vec<geo4d::Volume4D>, i32), UssError> {
    let req: FlightRequest = json_body(headers, body)?;
    Ok((req.to_domain(uss.now())?, req.priority))
}

fn outcome(o: PlanOutcome) -> Response {
    let status = if o.outcome == Outcome::Refused { StatusCode::CONFLICT } else { StatusCode::OK };
    (status, Json(o)).into_response()
}

async fn plan(State(uss): St, headers: HeaderMap, body: Body) -> Result<Response, UssError> {
    uss.operator(&headers)?;
    let (volumes, priority) = flight(&uss, &headers, &crate::error::body_bytes(body)?)?;
    Ok(outcome(uss.plan_new(volumes, priority).await?))
}

async fn modify(State(uss): St, headers: HeaderMap, Path(id): Path<String>, body: Body) -> Result<Response, UssError> {
    uss.operator(&headers)?;
    let (volumes, priority) = flight(&uss, &headers, &crate::error::body_bytes(body)?)?;
    Ok(outcome(uss.modify(&id, volumes, priority).await?))
}

async fn activate(State(uss): St, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, UssError> {
    uss.operator(&headers)?;
    Ok(outcome(uss.transition(&id, OperationalIntentState::Activated).await?))
}

async fn nonconforming(State(uss): St, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, UssError> {
    uss.operator(&headers)?;
    Ok(outcome(uss.transition(&id, OperationalIntentState::Nonconforming).await?))
}

async fn contingent(State(uss): St, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, UssError> {
    uss.operator(&headers)?;
    Ok(outcome(uss.transition(&id, OperationalIntentState::Contingent).await?))
}

async fn end(State(uss): St, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, UssError> {
    uss.operator(&headers)?;
    Ok(outcome(uss.end(&id).await?))
}

/// Positions of our flight: one or an array of up to 1,000, from the operator or a ground
/// station (`deconflict.telemetry`); all valid or none taken.
async fn positions(
    State(uss): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, UssError> {
    uss.reporter(&headers)?;
    let bytes = crate::error::body_bytes(body)?;
    require_json(&headers)?;
    let positions = uss.parse_positions(&bytes)?;
    Ok(Json(uss.positions(&id, positions).await?).into_response())
}

async fn publish_constraint(State(uss): St, headers: HeaderMap, body: Body) -> Result<Response, UssError> {
    uss.operator(&headers)?;
    let (volumes, _) = flight(&uss, &headers, &crate::error::body_bytes(body)?)?;
    Ok(Json(uss.publish_constraint(volumes).await?).into_response())
}

async fn end_constraint(State(uss): St, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, UssError> {
    uss.operator(&headers)?;
    Ok(Json(uss.end_constraint(&id).await?).into_response())
}

async fn subscribe(State(uss): St, headers: HeaderMap, body: Body) -> Result<Response, UssError> {
    uss.operator(&headers)?;
    let (volumes, _) = flight(&uss, &headers, &crate::error::body_bytes(body)?)?;
    Ok(Json(uss.subscribe(volumes).await?).into_response())
}

#[derive(Deserialize)]
struct RidView {
    view: Option<String>,
}

/// Network Remote ID traffic in a view, from every service provider (ours included): flights
/// up to 2 km across, clusters beyond, 413 beyond 7 km.
async fn rid_flights(
    State(uss): St,
    headers: HeaderMap,
    query: Result<Query<RidView>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, UssError> {
    uss.operator(&headers)?;
    let Query(q) = query.map_err(|e| UssError::BadRequest(format!("query parameters: {e}")))?;
    let view = crate::rid_sp::View::parse(
        q.view.as_deref().ok_or_else(|| UssError::BadRequest("view (lat1,lng1,lat2,lng2) is required".into()))?,
    )?;
    Ok(Json(uss.rid_display(view).await?).into_response())
}

async fn status(State(uss): St, headers: HeaderMap) -> Result<Response, UssError> {
    uss.operator(&headers)?;
    Ok(Json(uss.status().await?).into_response())
}

#[derive(Deserialize)]
struct Window {
    /// RFC 3339; received at or after.
    after: Option<String>,
    /// RFC 3339; received before.
    before: Option<String>,
    limit: Option<i64>,
}

fn micros(t: &Option<String>, field: &str, default: i64) -> Result<i64, UssError> {
    match t {
        None => Ok(default),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_micros())
            .map_err(|e| UssError::BadRequest(format!("{field}: `{s}` is not an RFC 3339 time ({e})"))),
    }
}

/// The notification history, oldest first, in a time window.
async fn notifications(
    State(uss): St,
    headers: HeaderMap,
    query: Result<Query<Window>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, UssError> {
    uss.operator(&headers)?;
    let Query(w) = query.map_err(|e| UssError::BadRequest(format!("query parameters: {e}")))?;
    let after = micros(&w.after, "after", i64::MIN)?;
    let before = micros(&w.before, "before", i64::MAX)?;
    let limit = w.limit.unwrap_or(1000).clamp(1, 10_000);
    Ok(Json(serde_json::json!({"notifications": uss.notifications(after, before, limit, false).await?}))
        .into_response())
}
