//! A participant (USS): keeps the full details of its organization's operations, serves them
//! to authorized peers, plans new operations around everyone else's through the DSS, and is
//! notified when something in its area changes. It knows the DSS only through its public API.
//!
//! Endpoints: the USS-to-USS API of `utm.yaml` (`/uss/v1/...`), authenticated with the same
//! JWT verifier as the DSS; and a small operator API (`/operator/...`) that the `deconflict
//! plan/activate/modify/end/status` commands call. Bind the operator API only where operators are
//! trusted: it carries no authentication of its own.

// Handlers short-circuit with a ready HTTP response as the error; its size does not matter here.
#![allow(clippy::result_large_err)]

pub mod operator;
pub mod planner;
pub mod state;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use server::auth::Verifier;
use tokio::sync::Mutex;

use crate::operator::{FlightRequest, PlanOutcome};
use crate::state::{Delivery, OwnConstraint, Received, Snapshot, StateFile};
use crate::tokens::TokenSource;

#[derive(Debug, Clone)]
pub struct UssConfig {
    /// Our public base URL (no trailing slash): what peers call.
    pub base_url: String,
    pub dss_url: String,
    /// Scopes requested for our tokens.
    pub scopes: Vec<String>,
    /// Time allowed to a peer (connect and answer).
    pub peer_timeout: Duration,
}

pub struct Uss {
    pub config: UssConfig,
    pub(crate) tokens: TokenSource,
    pub(crate) http: reqwest::Client,
    verifier: Verifier,
    pub(crate) state: Mutex<Snapshot>,
    file: StateFile,
    /// One operator change at a time: keeps our own records consistent.
    operator_lock: Mutex<()>,
}

type St = State<Arc<Uss>>;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(api::ErrorResponse { message: message.into() })).into_response()
}

impl Uss {
    pub fn open(
        config: UssConfig,
        tokens: TokenSource,
        verifier: Verifier,
        data_dir: &std::path::Path,
    ) -> std::io::Result<Arc<Uss>> {
        let (file, snapshot) = StateFile::open(data_dir)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(config.peer_timeout)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Arc::new(Uss {
            config,
            tokens,
            http,
            verifier,
            state: Mutex::new(snapshot),
            file,
            operator_lock: Mutex::new(()),
        }))
    }

    /// Writes the state durably; a failure is logged loudly (the in-memory state stays right).
    pub(crate) fn save(&self, s: &mut Snapshot) {
        if let Err(e) = self.file.save(s) {
            tracing::error!(error = %e, "could not save the participant's state");
        }
    }

    /// Brings our own records in line with the DSS after a restart: if the DSS holds a newer
    /// version of one of our intents (we stopped after it answered), take its reference.
    pub async fn reconcile(&self) {
        let Ok(dss) = self.dss().await else { return };
        let ids: Vec<String> = self.state.lock().await.own_intents.keys().cloned().collect();
        for id in ids {
            match dss.get_intent(&id).await {
                Ok(r) => {
                    let mut s = self.state.lock().await;
                    if let Some(o) = s.own_intents.get_mut(&id) {
                        o.intent.reference = r.operational_intent_reference;
                    }
                    self.save(&mut s);
                }
                Err(e) if e.status() == 404 => {
                    let mut s = self.state.lock().await;
                    s.own_intents.remove(&id);
                    self.save(&mut s);
                }
                Err(_) => {}
            }
        }
    }

    fn authorize(&self, headers: &HeaderMap, scope: &str) -> Result<dss::Caller, Response> {
        let header = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let caller = self.verifier.verify(header).map_err(|e| error(StatusCode::UNAUTHORIZED, e.to_string()))?;
        let needed =
            dss::Scope::parse(scope).ok_or_else(|| error(StatusCode::INTERNAL_SERVER_ERROR, "unknown scope"))?;
        caller.require_any(&[needed]).map_err(|e| error(StatusCode::FORBIDDEN, e.to_string()))?;
        Ok(caller)
    }
}

/// The participant's router: peer endpoints and the operator API.
pub fn app(uss: Arc<Uss>) -> Router {
    Router::new()
        .route("/uss/v1/operational_intents/{entityid}", get(get_details))
        .route("/uss/v1/operational_intents/{entityid}/telemetry", get(get_telemetry))
        .route("/uss/v1/operational_intents", post(notify_intent))
        .route("/uss/v1/constraints/{entityid}", get(get_constraint))
        .route("/uss/v1/constraints", post(notify_constraint))
        .route("/uss/v1/reports", post(report))
        .route("/healthy", get(|| async { "ok" }))
        .route("/operator/plan", post(op_plan))
        .route("/operator/intents/{id}/activate", post(op_activate))
        .route("/operator/intents/{id}/modify", post(op_modify))
        .route("/operator/intents/{id}/nonconforming", post(op_nonconforming))
        .route("/operator/intents/{id}/end", post(op_end))
        .route("/operator/constraints", post(op_publish_constraint))
        .route("/operator/constraints/{id}/end", post(op_end_constraint))
        .route("/operator/status", get(op_status))
        .route("/operator/subscribe", post(op_subscribe))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(uss)
}

// ---- USS-to-USS ----

async fn get_details(State(uss): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = uss.authorize(&headers, "utm.strategic_coordination") {
        return r;
    }
    match uss.state.lock().await.own_intents.get(&id) {
        Some(o) => {
            Json(api::GetOperationalIntentDetailsResponse { operational_intent: o.intent.clone() }).into_response()
        }
        None => error(StatusCode::NOT_FOUND, format!("operational intent {id} is not managed here")),
    }
}

async fn get_telemetry(State(uss): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = uss.authorize(&headers, "utm.conformance_monitoring_sa") {
        return r;
    }
    if uss.state.lock().await.own_intents.contains_key(&id) {
        error(StatusCode::PRECONDITION_FAILED, "this participant does not provide telemetry")
    } else {
        error(StatusCode::NOT_FOUND, format!("operational intent {id} is not managed here"))
    }
}

/// Authenticates a peer holding `scope` and parses its JSON body.
fn authorized_body<T: serde::de::DeserializeOwned>(
    uss: &Uss,
    headers: &HeaderMap,
    scope: &str,
    body: &[u8],
) -> Result<(dss::Caller, T), Response> {
    let caller = uss.authorize(headers, scope)?;
    let parsed = api::parse_json(body).map_err(|e| error(StatusCode::BAD_REQUEST, e.message))?;
    Ok((caller, parsed))
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn notify_intent(State(uss): St, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let (caller, p) = match authorized_body::<api::PutOperationalIntentDetailsParameters>(
        &uss,
        &headers,
        "utm.strategic_coordination",
        &body,
    ) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some(oi) = &p.operational_intent {
        if oi.reference.manager != caller.manager {
            return error(StatusCode::FORBIDDEN, "notifications are accepted only from the intent's manager");
        }
    }
    let mut s = uss.state.lock().await;
    let received = Received {
        received_at: now_text(),
        from: caller.manager.clone(),
        kind: "operational_intent".into(),
        entity_id: p.operational_intent_id.clone(),
        version: p.operational_intent.as_ref().map(|o| o.reference.version),
        state: p.operational_intent.as_ref().map(|o| o.reference.state.clone()),
    };
    tracing::info!(from = %received.from, id = %received.entity_id, state = ?received.state, "notification received");
    match p.operational_intent {
        Some(oi) => {
            s.others_intents.insert(p.operational_intent_id, oi);
        }
        None => {
            s.others_intents.remove(&p.operational_intent_id);
        }
    }
    s.notifications.push(received);
    uss.save(&mut s);
    StatusCode::NO_CONTENT.into_response()
}

async fn get_constraint(State(uss): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = uss.authorize(&headers, "utm.constraint_processing") {
        return r;
    }
    match uss.state.lock().await.own_constraints.get(&id) {
        Some(c) => Json(api::GetConstraintDetailsResponse { constraint: c.constraint.clone() }).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("constraint {id} is not managed here")),
    }
}

async fn notify_constraint(State(uss): St, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let (caller, p) = match authorized_body::<api::PutConstraintDetailsParameters>(
        &uss,
        &headers,
        "utm.constraint_management",
        &body,
    ) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut s = uss.state.lock().await;
    s.notifications.push(Received {
        received_at: now_text(),
        from: caller.manager,
        kind: "constraint".into(),
        entity_id: p.constraint_id.clone(),
        version: p.constraint.as_ref().map(|c| c.reference.version),
        state: None,
    });
    match p.constraint {
        Some(c) => {
            s.others_constraints.insert(p.constraint_id, c);
        }
        None => {
            s.others_constraints.remove(&p.constraint_id);
        }
    }
    uss.save(&mut s);
    StatusCode::NO_CONTENT.into_response()
}

async fn report(State(uss): St, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let header = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let caller = match uss.verifier.verify(header) {
        Ok(c) => c,
        Err(_) => return error(StatusCode::UNAUTHORIZED, "a valid bearer token is required"),
    };
    let mut report: serde_json::Map<String, serde_json::Value> = match api::parse_json(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.message),
    };
    let id = uuid::Uuid::new_v4().to_string();
    tracing::warn!(from = %caller.manager, report_id = %id, "report received");
    report.insert("report_id".into(), serde_json::Value::String(id));
    (StatusCode::CREATED, Json(report)).into_response()
}

// ---- operator API ----

fn outcome_response(o: PlanOutcome) -> Response {
    let status = match o.outcome.as_str() {
        "planned" => StatusCode::OK,
        "refused" => StatusCode::CONFLICT,
        _ => StatusCode::BAD_GATEWAY,
    };
    (status, Json(o)).into_response()
}

fn parse_flight(body: &[u8]) -> Result<(Vec<api::Volume4D>, i32), Response> {
    let req: FlightRequest = api::parse_json(body).map_err(|e| error(StatusCode::BAD_REQUEST, e.message))?;
    let vols = req.to_wire().map_err(|m| error(StatusCode::BAD_REQUEST, m))?;
    Ok((vols, req.priority))
}

async fn op_plan(State(uss): St, body: axum::body::Bytes) -> Response {
    let (volumes, priority) = match parse_flight(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let _guard = uss.operator_lock.lock().await;
    let id = uuid::Uuid::new_v4().to_string();
    outcome_response(uss.plan_volumes(id, None, volumes, priority, "Accepted", true).await)
}

async fn own(uss: &Uss, id: &str) -> Result<api::OperationalIntent, Response> {
    uss.state
        .lock()
        .await
        .own_intents
        .get(id)
        .map(|o| o.intent.clone())
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no operational intent {id} is managed here")))
}

/// Moves an intent to `state` with its current volumes. Activation proves knowledge of the
/// airspace (a key) but a plan already accepted is not re-judged: conflicts created since by
/// higher priorities are theirs to resolve; off-nominal states need no key at all.
async fn transition(uss: &Uss, id: String, state: &str) -> Response {
    let _guard = uss.operator_lock.lock().await;
    let cur = match own(uss, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    outcome_response(
        uss.plan_volumes(id, cur.reference.ovn, cur.details.volumes, cur.details.priority, state, false).await,
    )
}

async fn op_activate(State(uss): St, Path(id): Path<String>) -> Response {
    transition(&uss, id, "Activated").await
}

async fn op_modify(State(uss): St, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let (volumes, priority) = match parse_flight(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let _guard = uss.operator_lock.lock().await;
    let cur = match own(&uss, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let state = cur.reference.state.clone();
    outcome_response(uss.plan_volumes(id, cur.reference.ovn, volumes, priority, &state, true).await)
}

async fn op_nonconforming(State(uss): St, Path(id): Path<String>) -> Response {
    transition(&uss, id, "Nonconforming").await
}

async fn op_end(State(uss): St, Path(id): Path<String>) -> Response {
    let _guard = uss.operator_lock.lock().await;
    let cur = match own(&uss, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let dss = match uss.dss().await {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_GATEWAY, e),
    };
    let ovn = cur.reference.ovn.clone().unwrap_or_default();
    match dss.delete_intent(&id, &ovn).await {
        Ok(resp) => {
            let notified = uss.notify_intent(&id, None, &resp.subscribers).await;
            let mut s = uss.state.lock().await;
            s.own_intents.remove(&id);
            uss.save(&mut s);
            outcome_response(PlanOutcome {
                outcome: "planned".into(),
                message: format!("operational intent {id} ended and removed from the DSS"),
                operational_intent_id: Some(id),
                state: Some("Ended".into()),
                notified,
                attempts: 1,
                ..Default::default()
            })
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("the DSS refused to end it: {e}")),
    }
}

async fn op_publish_constraint(State(uss): St, body: axum::body::Bytes) -> Response {
    let (volumes, _) = match parse_flight(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let _guard = uss.operator_lock.lock().await;
    let dss = match uss.dss().await {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_GATEWAY, e),
    };
    let id = uuid::Uuid::new_v4().to_string();
    let body =
        api::PutConstraintReferenceParameters { extents: volumes.clone(), uss_base_url: uss.config.base_url.clone() };
    match dss.put_constraint(&id, None, &body).await {
        Ok(resp) => {
            let constraint = api::Constraint {
                reference: resp.constraint_reference,
                details: api::ConstraintDetails { volumes, constraint_type: Some("Restricted".into()) },
            };
            {
                let mut s = uss.state.lock().await;
                s.own_constraints
                    .insert(id.clone(), OwnConstraint { constraint: constraint.clone(), notified: vec![] });
                uss.save(&mut s);
            }
            let notified = notify_constraint_change(&uss, &id, Some(&constraint), &resp.subscribers).await;
            let mut s = uss.state.lock().await;
            if let Some(c) = s.own_constraints.get_mut(&id) {
                c.notified = notified.clone();
            }
            uss.save(&mut s);
            (
                StatusCode::OK,
                Json(serde_json::json!({"outcome": "published", "constraint_id": id, "notified": notified})),
            )
                .into_response()
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("the DSS refused the constraint: {e}")),
    }
}

async fn op_end_constraint(State(uss): St, Path(id): Path<String>) -> Response {
    let _guard = uss.operator_lock.lock().await;
    let Some(cur) = uss.state.lock().await.own_constraints.get(&id).cloned() else {
        return error(StatusCode::NOT_FOUND, format!("no constraint {id} is managed here"));
    };
    let dss = match uss.dss().await {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_GATEWAY, e),
    };
    match dss.delete_constraint(&id, cur.constraint.reference.ovn.as_deref().unwrap_or_default()).await {
        Ok(resp) => {
            let notified = notify_constraint_change(&uss, &id, None, &resp.subscribers).await;
            let mut s = uss.state.lock().await;
            s.own_constraints.remove(&id);
            uss.save(&mut s);
            Json(serde_json::json!({"outcome": "ended", "constraint_id": id, "notified": notified})).into_response()
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("the DSS refused: {e}")),
    }
}

async fn notify_constraint_change(
    uss: &Uss,
    id: &str,
    c: Option<&api::Constraint>,
    subscribers: &[api::SubscriberToNotify],
) -> Vec<Delivery> {
    uss.notify_subscribers(subscribers, "/uss/v1/constraints", |s| {
        serde_json::to_value(api::PutConstraintDetailsParameters {
            constraint_id: id.to_owned(),
            constraint: c.cloned(),
            subscriptions: s.subscriptions.clone(),
        })
    })
    .await
}

/// An explicit subscription over an area of interest (a planning area), so the operator hears
/// of every operation and constraint there, not only those touching its own flights.
async fn op_subscribe(State(uss): St, body: axum::body::Bytes) -> Response {
    let (volumes, _) = match parse_flight(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let dss = match uss.dss().await {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_GATEWAY, e),
    };
    let mut ids = Vec::new();
    for v in volumes {
        let id = uuid::Uuid::new_v4().to_string();
        let body = api::PutSubscriptionParameters {
            extents: v,
            uss_base_url: uss.config.base_url.clone(),
            notify_for_operational_intents: Some(uss.config.scopes.iter().any(|s| s == "utm.strategic_coordination")),
            notify_for_constraints: Some(uss.config.scopes.iter().any(|s| s == "utm.constraint_processing")),
        };
        match dss.put_subscription(&id, None, &body).await {
            Ok(_) => ids.push(id),
            Err(e) => return error(StatusCode::BAD_GATEWAY, format!("the DSS refused the subscription: {e}")),
        }
    }
    Json(serde_json::json!({"outcome": "subscribed", "subscription_ids": ids})).into_response()
}

async fn op_status(State(uss): St) -> Response {
    let s = uss.state.lock().await;
    Json(serde_json::json!({
        "participant": uss.tokens.client_id(),
        "base_url": uss.config.base_url,
        "own_intents": s.own_intents,
        "own_constraints": s.own_constraints,
        "others_intents": s.others_intents,
        "others_constraints": s.others_constraints,
        "notifications": s.notifications,
    }))
    .into_response()
}
