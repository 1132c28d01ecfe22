//! The USS-to-USS API of `utm.yaml` (`/uss/v1/...`): details served to authenticated peers,
//! and notifications accepted only from the entity's manager as the DSS records it.

use std::sync::Arc;

use auth::Scope;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use model::OperationalIntentState;

use crate::db::Table;
use crate::error::UssError;
use crate::records::{verify_constraint, verify_intent, Received};
use crate::{now, now_text, Uss, MAX_REQUEST_BYTES};

type St = State<Arc<Uss>>;
type Body = Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>;

/// The peer listener's router. It has no operator route: those live on their own listener.
pub fn app(uss: Arc<Uss>) -> Router {
    let flight_planning = uss.config.flight_planning;
    let router = Router::new()
        .route("/uss/v1/operational_intents/{entityid}", get(get_details))
        .route("/uss/v1/operational_intents/{entityid}/telemetry", get(get_telemetry))
        .route("/uss/v1/operational_intents", post(notify_intent))
        .route("/uss/v1/constraints/{entityid}", get(get_constraint))
        .route("/uss/v1/constraints", post(notify_constraint))
        .route("/uss/v1/reports", post(report))
        .route("/healthy", get(|| async { "ok" }));
    // Off unless asked for: its scopes let a test director plan for this organization.
    let router = if flight_planning { router.merge(crate::flight_planning::routes()) } else { router };
    router
        .fallback(|| async { UssError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(uss)
}

/// Largest report accepted, and how many are kept.
const MAX_REPORT_BYTES: usize = 256 * 1024;
const MAX_REPORTS: usize = 10_000;

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, UssError> {
    api::parse_json(body).map_err(|e| UssError::BadRequest(e.message))
}

async fn get_details(State(uss): St, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, UssError> {
    uss.peer(&headers, &[Scope::StrategicCoordination])?;
    let n = uss.details_served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some((every, delay)) = uss.config.slow_answers {
        if every > 0 && n % every == every - 1 {
            tokio::time::sleep(delay).await;
        }
    }
    let found = uss.mem.read().own_intents.get(&id).map(|o| o.to_wire());
    let oi = found.ok_or_else(|| UssError::NotFound(format!("operational intent {id} is not managed here")))?;
    Ok(Json(api::GetOperationalIntentDetailsResponse { operational_intent: oi }).into_response())
}

async fn get_telemetry(State(uss): St, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, UssError> {
    uss.peer(&headers, &[Scope::ConformanceMonitoringSa])?;
    let state = uss.mem.read().own_intents.get(&id).map(|o| o.state);
    match state {
        None => Err(UssError::NotFound(format!("operational intent {id} is not managed here"))),
        // The standard asks for telemetry of off-nominal operations only (409 otherwise), and
        // lets a USS answer 412 when it has none: this participant receives no vehicle positions.
        Some(s @ (OperationalIntentState::Accepted | OperationalIntentState::Activated)) => {
            Err(UssError::WrongState(format!(
                "operational intent {id} is {}: telemetry is provided only for Nonconforming or Contingent operations",
                s.as_str()
            )))
        }
        Some(_) => Err(UssError::NotProvided(format!(
            "no telemetry data is available for operational intent {id}: this participant receives no vehicle positions"
        ))),
    }
}

async fn get_constraint(State(uss): St, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, UssError> {
    uss.peer(&headers, &[Scope::ConstraintProcessing])?;
    let found = uss.mem.read().own_constraints.get(&id).map(|c| c.to_wire());
    let c = found.ok_or_else(|| UssError::NotFound(format!("constraint {id} is not managed here")))?;
    Ok(Json(api::GetConstraintDetailsResponse { constraint: c }).into_response())
}

impl Uss {
    fn record_received(&self, n: Received) {
        tracing::info!(from = %n.from, id = %n.entity_id, accepted = n.accepted, "notification received");
        let what = n.kind.replace('_', " ");
        let change = match (&n.version, &n.state) {
            (None, _) => "removed".to_owned(),
            (Some(v), Some(s)) => format!("now {s}, version {v}"),
            (Some(v), None) => format!("now version {v}"),
        };
        let verdict = if n.accepted { String::new() } else { format!(" (not accepted: {})", n.note) };
        self.feed(
            "received",
            Some(&n.entity_id),
            format!("{} notified: {what} {} {change}{verdict}", n.from, n.entity_id),
        );
        if let Err(e) = self.db.add_notification(now().micros(), &n) {
            tracing::warn!(error = %e, "could not record a received notification");
        }
    }

    /// The DSS's reference of an intent a peer notified us of (`None` when it holds no such
    /// intent): one look-up per entity in flight, within the peer's and everyone's budget
    /// (`lookups`).
    async fn dss_intent(&self, peer: &str, id: &str) -> Result<Option<api::OperationalIntentReference>, UssError> {
        self.intent_lookups
            .run(peer, id, || async {
                match self.dss().await?.get_intent(id).await {
                    Ok(r) => Ok(Some(r.operational_intent_reference)),
                    Err(e) if e.status() == 404 => Ok(None),
                    Err(e) => Err(UssError::from_dss("the DSS could not confirm the sender", e)),
                }
            })
            .await
    }

    async fn dss_constraint(&self, peer: &str, id: &str) -> Result<Option<api::ConstraintReference>, UssError> {
        self.constraint_lookups
            .run(peer, id, || async {
                match self.dss().await?.get_constraint(id).await {
                    Ok(r) => Ok(Some(r.constraint_reference)),
                    Err(e) if e.status() == 404 => Ok(None),
                    Err(e) => Err(UssError::from_dss("the DSS could not confirm the sender", e)),
                }
            })
            .await
    }
}

fn not_manager(sender: &str, what: &str, manager: &str) -> UssError {
    UssError::Forbidden(format!("{sender} may not notify changes of {what}: the DSS records {manager} as its manager"))
}

/// A peer tells us an operational intent changed. Accepted only from the authenticated sender
/// that the DSS records as its manager, with details matching the DSS's reference; otherwise
/// 403 (or 400 for details that do not match) and nothing we know changes.
async fn notify_intent(State(uss): St, headers: HeaderMap, body: Body) -> Result<Response, UssError> {
    let caller = uss.peer(&headers, &[Scope::StrategicCoordination])?;
    let p: api::PutOperationalIntentDetailsParameters = parse(&crate::error::body_bytes(body)?)?;
    let id = p.operational_intent_id.clone();
    api::parse_uuid_v4(&id, "operational_intent_id").map_err(|e| UssError::BadRequest(e.message))?;
    let mut received = Received {
        received_at: now_text(),
        from: caller.manager.clone(),
        kind: "operational_intent".into(),
        entity_id: id.clone(),
        version: p.operational_intent.as_ref().map(|o| o.reference.version),
        state: p.operational_intent.as_ref().map(|o| o.reference.state.clone()),
        accepted: false,
        note: String::new(),
    };
    if id == uss.client_id() {
        return Err(UssError::BadRequest("operational_intent_id is not an entity id".into()));
    }
    match p.operational_intent {
        Some(oi) => {
            if oi.reference.id != id {
                return Err(UssError::BadRequest(format!(
                    "operational_intent.reference.id `{}` differs from operational_intent_id `{id}`",
                    oi.reference.id
                )));
            }
            if oi.reference.manager != caller.manager {
                return Err(UssError::Forbidden(format!(
                    "the sender {} may not notify an intent naming {} as its manager",
                    caller.manager, oi.reference.manager
                )));
            }
            let dss_ref = uss
                .dss_intent(&caller.manager, &id)
                .await?
                .ok_or_else(|| UssError::Forbidden(format!("the DSS holds no operational intent {id}")))?;
            if dss_ref.manager != caller.manager {
                return Err(not_manager(&caller.manager, &id, &dss_ref.manager));
            }
            if dss_ref.manager == uss.client_id() {
                return Err(UssError::Forbidden("this participant manages that intent itself".into()));
            }
            if oi.reference.version < dss_ref.version {
                // Stale: a newer version exists; keep nothing from this one.
                received.note = format!("stale: the DSS holds version {}", dss_ref.version);
                uss.record_received(received);
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            let known = verify_intent(&dss_ref, oi)
                .map_err(|why| UssError::BadRequest(format!("the details do not match the DSS's reference: {why}")))?;
            let theirs = known.to_planner();
            uss.remember_intent(known);
            uss.notice_conflicts_with(&theirs);
            received.accepted = true;
        }
        None => {
            let cached_manager = uss.mem.read().others_intents.get(&id).map(|k| k.reference().manager.clone());
            match cached_manager {
                Some(m) if m != caller.manager => return Err(not_manager(&caller.manager, &id, &m)),
                Some(_) => {
                    uss.forget_intent(&id)?;
                    received.accepted = true;
                }
                None => {
                    if let Some(r) = uss.dss_intent(&caller.manager, &id).await? {
                        if r.manager != caller.manager {
                            return Err(not_manager(&caller.manager, &id, &r.manager));
                        }
                    }
                    received.note = "nothing was known of it here".into();
                }
            }
        }
    }
    uss.record_received(received);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A peer tells us a constraint changed; the same rules as for intents.
async fn notify_constraint(State(uss): St, headers: HeaderMap, body: Body) -> Result<Response, UssError> {
    let caller = uss.peer(&headers, &[Scope::ConstraintManagement])?;
    let p: api::PutConstraintDetailsParameters = parse(&crate::error::body_bytes(body)?)?;
    let id = p.constraint_id.clone();
    api::parse_uuid_v4(&id, "constraint_id").map_err(|e| UssError::BadRequest(e.message))?;
    let mut received = Received {
        received_at: now_text(),
        from: caller.manager.clone(),
        kind: "constraint".into(),
        entity_id: id.clone(),
        version: p.constraint.as_ref().map(|c| c.reference.version),
        state: None,
        accepted: false,
        note: String::new(),
    };
    match p.constraint {
        Some(c) => {
            if c.reference.id != id {
                return Err(UssError::BadRequest(format!(
                    "constraint.reference.id `{}` differs from constraint_id `{id}`",
                    c.reference.id
                )));
            }
            if c.reference.manager != caller.manager {
                return Err(UssError::Forbidden(format!(
                    "the sender {} may not notify a constraint naming {} as its manager",
                    caller.manager, c.reference.manager
                )));
            }
            let dss_ref = uss
                .dss_constraint(&caller.manager, &id)
                .await?
                .ok_or_else(|| UssError::Forbidden(format!("the DSS holds no constraint {id}")))?;
            if dss_ref.manager != caller.manager {
                return Err(not_manager(&caller.manager, &id, &dss_ref.manager));
            }
            if c.reference.version < dss_ref.version {
                received.note = format!("stale: the DSS holds version {}", dss_ref.version);
                uss.record_received(received);
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            let known = verify_constraint(&dss_ref, c)
                .map_err(|why| UssError::BadRequest(format!("the details do not match the DSS's reference: {why}")))?;
            uss.remember_constraint(known);
            received.accepted = true;
        }
        None => {
            let cached_manager = uss.mem.read().others_constraints.get(&id).map(|k| k.wire.reference.manager.clone());
            match cached_manager {
                Some(m) if m != caller.manager => return Err(not_manager(&caller.manager, &id, &m)),
                Some(_) => {
                    uss.forget_constraint(&id)?;
                    received.accepted = true;
                }
                None => {
                    if let Some(r) = uss.dss_constraint(&caller.manager, &id).await? {
                        if r.manager != caller.manager {
                            return Err(not_manager(&caller.manager, &id, &r.manager));
                        }
                    }
                    received.note = "nothing was known of it here".into();
                }
            }
        }
    }
    uss.record_received(received);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn report(State(uss): St, headers: HeaderMap, body: Body) -> Result<Response, UssError> {
    let caller = uss.peer(
        &headers,
        &[
            Scope::StrategicCoordination,
            Scope::ConstraintManagement,
            Scope::ConstraintProcessing,
            Scope::ConformanceMonitoringSa,
            Scope::AvailabilityArbitration,
        ],
    )?;
    let bytes = crate::error::body_bytes(body)?;
    if bytes.len() > MAX_REPORT_BYTES {
        return Err(UssError::PayloadTooLarge(format!("a report may be at most {MAX_REPORT_BYTES} bytes")));
    }
    // Validated against the schema's `ErrorReport`; answered in its shape (report_id and
    // exchange), never echoing fields the schema does not have.
    let mut report = api::parse_error_report(&bytes).map_err(|e| UssError::BadRequest(e.message))?;
    let sent: serde_json::Value = parse(&bytes)?;
    let id = uuid::Uuid::new_v4().to_string();
    report.report_id = Some(id.clone());
    // Kept durably as sent (the reporter from the token, never from the body), bounded in number.
    let at = now().micros();
    let stored =
        serde_json::json!({"reporter": caller.manager, "received_at": now_text(), "report_id": id, "report": sent});
    uss.db.put(Table::Reports, &format!("{at:020}-{id}"), &stored)?;
    uss.db.keep_newest(Table::Reports, MAX_REPORTS)?;
    tracing::info!(from = %caller.manager, report_id = %id, bytes = bytes.len(), "report stored");
    Ok((StatusCode::CREATED, Json(report)).into_response())
}
