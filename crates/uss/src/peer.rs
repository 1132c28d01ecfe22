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

use crate::db::{notification_write, Table, Write};
use crate::domain::{Kind, Reference};
use crate::entities::{verify_constraint, verify_intent, Received};
use crate::error::UssError;
use crate::{Uss, MAX_REQUEST_BYTES};

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
        .route("/healthy", get(|| async { "ok" }))
        .merge(crate::rid_sp::routes());
    // Off unless asked for: its scopes let a test director plan for this organization.
    let router = if flight_planning { router.merge(crate::flight_planning::routes()) } else { router };
    // Off unless asked for: injected flights become real flights of ours.
    let router = if uss.config.rid_testing { router.merge(crate::rid_testing::routes()) } else { router };
    router
        .fallback(|| async { UssError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(axum::middleware::from_fn(otel::serve))
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
    let oi = uss.serve_intent(&id).await?;
    Ok(Json(api::GetOperationalIntentDetailsResponse { operational_intent: oi }).into_response())
}

async fn get_telemetry(State(uss): St, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, UssError> {
    uss.peer(&headers, &[Scope::ConformanceMonitoringSa])?;
    Ok(Json(uss.telemetry(&id)?).into_response())
}

async fn get_constraint(State(uss): St, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, UssError> {
    uss.peer(&headers, &[Scope::ConstraintProcessing])?;
    let c = uss.serve_constraint(&id)?;
    Ok(Json(api::GetConstraintDetailsResponse { constraint: c }).into_response())
}

/// A peer tells us an operational intent changed. Accepted only from the authenticated sender
/// that the DSS records as its manager, with details matching the DSS's reference; otherwise
/// 403 (or 400 for details that do not match) and nothing we know changes.
async fn notify_intent(State(uss): St, headers: HeaderMap, body: Body) -> Result<Response, UssError> {
    let caller = uss.peer(&headers, &[Scope::StrategicCoordination])?;
    let p: api::PutOperationalIntentDetailsParameters = parse(&crate::error::body_bytes(body)?)?;
    uss.intent_notified(&caller.manager, p).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A peer tells us a constraint changed; the same rules as for intents.
async fn notify_constraint(State(uss): St, headers: HeaderMap, body: Body) -> Result<Response, UssError> {
    let caller = uss.peer(&headers, &[Scope::ConstraintManagement])?;
    let p: api::PutConstraintDetailsParameters = parse(&crate::error::body_bytes(body)?)?;
    uss.constraint_notified(&caller.manager, p).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

impl Uss {
    /// Our intent's details as peers are served them.
    async fn serve_intent(&self, id: &str) -> Result<api::OperationalIntent, UssError> {
        let n = self.details_served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some((every, delay)) = self.config.slow_answers {
            if every > 0 && n % every == every - 1 {
                tokio::time::sleep(delay).await;
            }
        }
        let found = self.records.read(|m| m.own_intents.get(id).map(|o| o.to_wire()));
        found.ok_or_else(|| UssError::NotFound(format!("operational intent {id} is not managed here")))
    }

    fn serve_constraint(&self, id: &str) -> Result<api::Constraint, UssError> {
        let found = self.records.read(|m| m.own_constraints.get(id).map(|c| c.to_wire()));
        found.ok_or_else(|| UssError::NotFound(format!("constraint {id} is not managed here")))
    }

    /// The latest position of our off-nominal intent `id`, in the standard's shape.
    pub(crate) fn telemetry(&self, id: &str) -> Result<api::GetOperationalIntentTelemetryResponse, UssError> {
        match self.own_intent_state(id) {
            None => Err(UssError::NotFound(format!("operational intent {id} is not managed here"))),
            // The standard serves telemetry of off-nominal operations only (409 otherwise).
            Some(s @ (OperationalIntentState::Accepted | OperationalIntentState::Activated)) => {
                Err(UssError::WrongState(format!(
                    "operational intent {id} is {}: telemetry is provided only for Nonconforming or Contingent operations",
                    s.as_str()
                )))
            }
            Some(_) => match self.latest_position(id) {
                // 412 only while no position has arrived, as the standard allows.
                None => Err(UssError::NotProvided(format!(
                    "no position of operational intent {id} has been received yet"
                ))),
                Some((p, _)) => Ok(api::GetOperationalIntentTelemetryResponse {
                    operational_intent_id: id.to_owned(),
                    telemetry: Some(p.to_vehicle_telemetry()),
                    // Positions stream about once a second while flying.
                    next_telemetry_opportunity: Some(api::time_to_wire(self.now().plus_seconds(1))),
                }),
            },
        }
    }

    async fn record_received(&self, n: Received) {
        tracing::info!(from = %n.from, id = %n.entity_id, accepted = n.accepted, "notification received");
        let accepted = if n.accepted { "accepted" } else { "not_accepted" };
        metrics::counter!("uss_notifications_received_total", "kind" => n.kind.clone(), "verdict" => accepted)
            .increment(1);
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
        let saved = match notification_write(self.now().micros(), &n) {
            Ok(w) => self.records.apply(vec![w]).await,
            Err(e) => Err(e),
        };
        if let Err(e) = saved {
            tracing::warn!(error = %e, "could not record a received notification");
        }
    }

    /// The DSS's reference of an entity a peer notified us of (`None` when it holds no such
    /// entity): one look-up per entity in flight, within the peer's and everyone's budget
    /// (`lookups`).
    async fn dss_reference(&self, kind: Kind, peer: &str, id: &str) -> Result<Option<Reference>, UssError> {
        let lookups = match kind {
            Kind::Intent => &self.intent_lookups,
            Kind::Constraint => &self.constraint_lookups,
        };
        lookups
            .run(peer, id, || async {
                self.dss.get(kind, id).await.map_err(|e| UssError::from_dss("the DSS could not confirm the sender", e))
            })
            .await
    }

    /// The sender's claim about entity `id`: only its manager as the DSS records it may
    /// notify; details must name it and the sender, and be at least the DSS's version.
    /// Returns the DSS's reference for details to be verified against, or `None` when the
    /// notification is stale (recorded as such).
    async fn check_sender(
        &self,
        kind: Kind,
        sender: &str,
        id: &str,
        claimed: (&str, &str, i32),
        received: &mut Received,
    ) -> Result<Option<Reference>, UssError> {
        let (claimed_id, claimed_manager, claimed_version) = claimed;
        let what = match kind {
            Kind::Intent => "operational_intent",
            Kind::Constraint => "constraint",
        };
        if claimed_id != id {
            return Err(UssError::BadRequest(format!(
                "{what}.reference.id `{claimed_id}` differs from {what}_id `{id}`"
            )));
        }
        if claimed_manager != sender {
            let noun = match kind {
                Kind::Intent => "an intent",
                Kind::Constraint => "a constraint",
            };
            return Err(UssError::Forbidden(format!(
                "the sender {sender} may not notify {noun} naming {claimed_manager} as its manager"
            )));
        }
        let dss_ref = self.dss_reference(kind, sender, id).await?.ok_or_else(|| {
            UssError::Forbidden(match kind {
                Kind::Intent => format!("the DSS holds no operational intent {id}"),
                Kind::Constraint => format!("the DSS holds no constraint {id}"),
            })
        })?;
        if dss_ref.manager != sender {
            return Err(not_manager(sender, id, &dss_ref.manager));
        }
        if dss_ref.manager == self.client_id() {
            return Err(UssError::Forbidden("this participant manages that intent itself".into()));
        }
        if claimed_version < dss_ref.version {
            // Stale: a newer version exists; keep nothing from this one.
            received.note = format!("stale: the DSS holds version {}", dss_ref.version);
            return Ok(None);
        }
        Ok(Some(dss_ref))
    }

    /// A removal notified by `sender`: forgotten if we knew it from that sender; refused if
    /// another manager is recorded for it.
    async fn removal_notified(
        &self,
        kind: Kind,
        sender: &str,
        id: &str,
        received: &mut Received,
    ) -> Result<(), UssError> {
        let cached_manager = self.records.read(|m| match kind {
            Kind::Intent => m.others_intents.get(id).map(|k| k.reference.manager.clone()),
            Kind::Constraint => m.others_constraints.get(id).map(|k| k.reference.manager.clone()),
        });
        match cached_manager {
            Some(m) if m != sender => Err(not_manager(sender, id, &m)),
            Some(_) => {
                self.records.forget_known(kind, id).await?;
                received.accepted = true;
                Ok(())
            }
            None => {
                if let Some(r) = self.dss_reference(kind, sender, id).await? {
                    if r.manager != sender {
                        return Err(not_manager(sender, id, &r.manager));
                    }
                }
                received.note = "nothing was known of it here".into();
                Ok(())
            }
        }
    }

    async fn intent_notified(
        &self,
        sender: &str,
        p: api::PutOperationalIntentDetailsParameters,
    ) -> Result<(), UssError> {
        let id = p.operational_intent_id.clone();
        api::parse_uuid_v4(&id, "operational_intent_id").map_err(|e| UssError::BadRequest(e.message))?;
        let reference = p.operational_intent.as_ref().map(|o| &o.reference);
        let mut received = Received::heard(
            self.now_text(),
            sender,
            Kind::Intent,
            &id,
            reference.map(|r| r.version),
            reference.map(|r| r.state.clone()),
        );
        if id == self.client_id() {
            return Err(UssError::BadRequest("operational_intent_id is not an entity id".into()));
        }
        match p.operational_intent {
            Some(oi) => {
                let claimed = (oi.reference.id.as_str(), oi.reference.manager.as_str(), oi.reference.version);
                if let Some(dss_ref) = self.check_sender(Kind::Intent, sender, &id, claimed, &mut received).await? {
                    let known = verify_intent(&dss_ref, oi).map_err(|why| {
                        UssError::BadRequest(format!("the details do not match the DSS's reference: {why}"))
                    })?;
                    let theirs = known.to_planner();
                    self.remember_intent(known).await;
                    self.notice_conflicts_with(&theirs).await;
                    received.accepted = true;
                }
            }
            None => self.removal_notified(Kind::Intent, sender, &id, &mut received).await?,
        }
        self.record_received(received).await;
        Ok(())
    }

    async fn constraint_notified(&self, sender: &str, p: api::PutConstraintDetailsParameters) -> Result<(), UssError> {
        let id = p.constraint_id.clone();
        api::parse_uuid_v4(&id, "constraint_id").map_err(|e| UssError::BadRequest(e.message))?;
        let version = p.constraint.as_ref().map(|c| c.reference.version);
        let mut received = Received::heard(self.now_text(), sender, Kind::Constraint, &id, version, None);
        match p.constraint {
            Some(c) => {
                let claimed = (c.reference.id.as_str(), c.reference.manager.as_str(), c.reference.version);
                if let Some(dss_ref) = self.check_sender(Kind::Constraint, sender, &id, claimed, &mut received).await? {
                    let known = verify_constraint(&dss_ref, c).map_err(|why| {
                        UssError::BadRequest(format!("the details do not match the DSS's reference: {why}"))
                    })?;
                    self.remember_constraint(known).await;
                    received.accepted = true;
                }
            }
            None => self.removal_notified(Kind::Constraint, sender, &id, &mut received).await?,
        }
        self.record_received(received).await;
        Ok(())
    }

    /// Keeps a peer's report durably as sent (the reporter from the token, never from the
    /// body), bounded in number; returns its id.
    async fn keep_report(&self, reporter: &str, sent: serde_json::Value) -> Result<String, UssError> {
        let id = self.ids.new_id();
        let at = self.now().micros();
        let stored =
            serde_json::json!({"reporter": reporter, "received_at": self.now_text(), "report_id": id, "report": sent});
        let body = serde_json::to_string(&stored).map_err(|e| UssError::Storage(e.to_string()))?;
        self.records
            .apply(vec![
                Write::Put(Table::Reports, format!("{at:020}-{id}"), body),
                Write::KeepNewest(Table::Reports, MAX_REPORTS),
            ])
            .await?;
        Ok(id)
    }
}

fn not_manager(sender: &str, what: &str, manager: &str) -> UssError {
    UssError::Forbidden(format!("{sender} may not notify changes of {what}: the DSS records {manager} as its manager"))
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
    let id = uss.keep_report(&caller.manager, sent).await?;
    report.report_id = Some(id.clone());
    tracing::info!(from = %caller.manager, report_id = %id, bytes = bytes.len(), "report stored");
    Ok((StatusCode::CREATED, Json(report)).into_response())
}
