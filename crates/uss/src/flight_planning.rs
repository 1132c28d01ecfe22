//! InterUSS's flight_planning v1 automated-testing interface (`flight_planning.yaml`), served on
//! the peer listener at `/flight_planning/v1` when `--flight-planning` is given. Qualification
//! tools act through it as a virtual user (scope `interuss.flight_planning.plan`) and as the
//! test director (`interuss.flight_planning.direct_automated_test`); only the subjects listed
//! with `--flight-planning-subject` (or tokens of `--flight-planning-jwt-public-key`) are
//! heard, and a peer's `utm.*` token never suffices. Clearing an area ends only the flights this
//! interface created, never the operator's. Every action goes through the same workflows as the operator interface.
//!
//! Mapping of the user's states to F3548 (as the standard's tools expect): `Planned` ->
//! Accepted; `InUse` + `Nominal` (or `NotSpecified`) -> Activated; `InUse` + `OffNominal` ->
//! Nonconforming; `InUse` + `Contingent` -> Contingent; `Closed` -> removed; `Planned` with an
//! off-nominal or contingent UAS is rejected (OPIN0015).
//! Results: a plan refused for a conflict is `Rejected` with the reason in `notes`; a failure of
//! ours, the DSS's or a peer's is `Failed`; `Hypothetical` execution and priorities beyond
//! `--max-priority` are `NotSupported`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use model::OperationalIntentState;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::db::{Table, Write};
use crate::entities::OwnIntent;
use crate::error::UssError;
use crate::operator::{Outcome, PlanOutcome};
use crate::Uss;

type St = State<Arc<Uss>>;
type Body = Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>;

pub const API_NAME: &str = "Flight Planning Automated Testing Interface";
pub const API_VERSION: &str = "v0.5.0";

/// Most user notifications kept.
const MAX_USER_NOTIFICATIONS: usize = 10_000;

pub(crate) fn routes() -> Router<Arc<Uss>> {
    Router::new()
        .route("/flight_planning/v1/status", get(status))
        .route("/flight_planning/v1/flight_plans/{flight_plan_id}", put(upsert).delete(close))
        .route("/flight_planning/v1/user_notifications", get(user_notifications))
        .route("/flight_planning/v1/clear_area_requests", post(clear_area))
}

#[derive(Deserialize)]
struct UpsertRequest {
    flight_plan: FlightPlanIn,
    execution_style: String,
    request_id: String,
}

/// The flight plan as typed, and as sent (for `as_planned`, which echoes everything we do not
/// change).
struct FlightPlanIn {
    plan: FlightPlan,
    raw: serde_json::Value,
}

impl<'de> Deserialize<'de> for FlightPlanIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(d)?;
        let plan = FlightPlan::deserialize(&raw).map_err(serde::de::Error::custom)?;
        Ok(Self { plan, raw })
    }
}

#[derive(Deserialize)]
struct FlightPlan {
    basic_information: BasicInformation,
    #[serde(default)]
    astm_f3548_21: Option<AstmInformation>,
}

#[derive(Deserialize)]
struct BasicInformation {
    usage_state: String,
    uas_state: String,
    #[serde(default)]
    area: Vec<api::Volume4D>,
}

#[derive(Deserialize)]
struct AstmInformation {
    #[serde(default)]
    priority: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlanningResponse {
    planning_result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
    flight_plan_status: String,
    includes_advisories: String,
    /// The flight plan as planned, whenever a plan was made: its area is exactly the volumes
    /// served to peers as the operational intent's details (a start in the past moved to now,
    /// times and altitudes as we write them), so the user sees what others see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    as_planned: Option<serde_json::Value>,
}

fn answer(result: &str, status: &str, notes: Option<String>) -> PlanningResponse {
    PlanningResponse {
        planning_result: result.into(),
        notes,
        flight_plan_status: status.into(),
        includes_advisories: "Unknown".into(),
        as_planned: None,
    }
}

/// The user's flight plan with its area replaced by what was planned (the wire form served to
/// peers, from the same conversion).
fn as_planned(request: &FlightPlanIn, own: &OwnIntent) -> serde_json::Value {
    let mut plan = request.raw.clone();
    let area = serde_json::to_value(api::extents_to_wire(&own.volumes)).unwrap_or_default();
    if let Some(info) = plan.get_mut("basic_information").and_then(|b| b.as_object_mut()) {
        info.insert("area".into(), area);
    }
    plan
}

/// A flight plan and the intent that serves it, with the last upsert's answer (replayed for a
/// repeated `request_id`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FlightPlanRecord {
    intent_id: String,
    request_id: String,
    response: PlanningResponse,
}

/// A user notification as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UserNotice {
    pub at_us: i64,
    pub observed_at: String,
    /// `Unknown`, `None`, `Single` or `Multiple`.
    pub conflicts: String,
    pub message: String,
}

fn status_of(state: OperationalIntentState) -> &'static str {
    match state {
        OperationalIntentState::Accepted => "Planned",
        OperationalIntentState::Activated => "OkToFly",
        OperationalIntentState::Nonconforming | OperationalIntentState::Contingent => "OffNominal",
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, UssError> {
    api::parse_json(body).map_err(|e| UssError::BadRequest(e.message))
}

fn flight_plan_id(id: &str) -> Result<(), UssError> {
    api::parse_uuid_v4(id, "flight_plan_id").map(|_| ()).map_err(|e| UssError::BadRequest(e.message))
}

impl Uss {
    pub(crate) fn own_intent(&self, id: &str) -> Option<OwnIntent> {
        self.records.own::<OwnIntent>(id)
    }

    async fn flight_plan(&self, id: &str) -> Result<Option<FlightPlanRecord>, UssError> {
        Ok(self.records.get(Table::FlightPlans, id).await?)
    }

    async fn keep_flight_plan(&self, id: &str, record: &FlightPlanRecord) -> Result<(), UssError> {
        Ok(self.records.put(Table::FlightPlans, id, record).await?)
    }

    async fn forget_flight_plan(&self, id: &str) -> Result<(), UssError> {
        Ok(self.records.delete(Table::FlightPlans, id).await?)
    }

    /// What the user was told in `[after, before]` (microseconds), oldest first.
    async fn user_notices(&self, after: i64, before: i64) -> Result<Vec<UserNotice>, UssError> {
        let mut notices: Vec<UserNotice> = self
            .records
            .load_all::<UserNotice>(Table::UserNotifications)
            .await?
            .into_iter()
            .map(|(_, n)| n)
            .filter(|n| (after..=before).contains(&n.at_us))
            .collect();
        notices.sort_by_key(|n| n.at_us);
        Ok(notices)
    }

    /// Ends every intent this interface created that meets `extent` (never one the operator
    /// planned), removes any DSS reference of ours there that no record of ours explains, and
    /// closes the flight plans whose intent is gone. Returns how many intents were ended and
    /// what could not be.
    async fn clear_area(self: &Arc<Self>, extent: &geo4d::Volume4D) -> Result<(usize, Vec<String>), UssError> {
        let ours: std::collections::HashSet<String> = self
            .records
            .load_all::<FlightPlanRecord>(Table::FlightPlans)
            .await?
            .into_iter()
            .map(|(_, r)| r.intent_id)
            .collect();
        let doomed: Vec<String> = self.records.read(|m| {
            m.own_intents
                .values()
                .filter(|o| ours.contains(&o.reference.id))
                .filter(|o| o.all_volumes().any(|v| v.intersects(extent)))
                .map(|o| o.reference.id.clone())
                .collect()
        });
        let mut failures = Vec::new();
        for id in &doomed {
            if let Err(e) = self.end(id).await {
                failures.push(format!("{id}: {e}"));
            }
        }
        self.remove_orphans(std::slice::from_ref(extent)).await;
        let plans = self.records.load_all::<FlightPlanRecord>(Table::FlightPlans).await?;
        for (fp, r) in plans {
            if self.own_intent(&r.intent_id).is_none() {
                self.forget_flight_plan(&fp).await?;
            }
        }
        Ok((doomed.len(), failures))
    }

    /// Records something the user is told; bounded.
    pub(crate) async fn notify_user(&self, conflicts: &str, message: String) {
        let at = self.now();
        let notice = UserNotice {
            at_us: at.micros(),
            observed_at: self.now_text(),
            conflicts: conflicts.into(),
            message: message.clone(),
        };
        let key = format!("{:020}-{}", at.micros(), self.ids.new_id());
        tracing::info!(conflicts, %message, "user notification");
        self.feed("user", None, message.clone());
        let saved = match serde_json::to_string(&notice) {
            Ok(body) => {
                self.records
                    .apply(vec![
                        Write::Put(Table::UserNotifications, key, body),
                        Write::KeepNewest(Table::UserNotifications, MAX_USER_NOTIFICATIONS),
                    ])
                    .await
            }
            Err(e) => Err(crate::db::DbError::new(e.to_string())),
        };
        if let Err(e) = saved {
            tracing::warn!(error = %e, "could not record a user notification");
        }
    }

    /// Tells the user about own intents that `theirs` (another USS's, just learned) conflicts
    /// with: the planner's rule, called on each of our intents.
    pub(crate) async fn notice_conflicts_with(&self, theirs: &planner::KnownIntent) {
        let airspace = planner::Airspace { intents: vec![theirs.clone()], ..Default::default() };
        let mine: Vec<String> = self.records.read(|m| {
            m.own_intents
                .values()
                .filter(|own| {
                    !planner::assess(&own.volumes, own.priority, &airspace, Some(&own.reference.id)).is_empty()
                })
                .map(|own| own.reference.id.clone())
                .collect()
        });
        if mine.is_empty() {
            return;
        }
        let conflicts = if mine.len() == 1 { "Single" } else { "Multiple" };
        self.notify_user(
            conflicts,
            format!(
                "operational intent {} of {} (priority {}, {}) now conflicts with our {}",
                theirs.id,
                theirs.manager,
                theirs.priority,
                theirs.state.as_str(),
                mine.join(", ")
            ),
        )
        .await;
    }
}

async fn status(State(uss): St, headers: HeaderMap) -> Result<Response, UssError> {
    uss.flight_planner(&headers, &[auth::Scope::FlightPlanningDirect])?;
    Ok(Json(json!({"status": "Ready", "api_name": API_NAME, "api_version": API_VERSION})).into_response())
}

/// The user's area as our volumes; a start already past is taken as now (the tools send one
/// slightly in the past).
/// An empty area is left to the planner's rule (`Rejected`, like every plan invalid by its
/// times).
fn area(info: &BasicInformation, t: geo4d::Timestamp) -> Result<Vec<geo4d::Volume4D>, UssError> {
    if info.area.len() > crate::operator::MAX_VOLUMES {
        return Err(UssError::BadRequest(format!(
            "flight_plan.basic_information.area: at most {} volumes",
            crate::operator::MAX_VOLUMES
        )));
    }
    let mut out = Vec::new();
    for (i, v) in info.area.iter().enumerate() {
        let field = format!("flight_plan.basic_information.area[{i}]");
        let mut v = v.clone();
        if let (Some(start), Some(end)) = (&v.time_start, &v.time_end) {
            let s = api::time_from_wire(start, &format!("{field}.time_start"))
                .map_err(|e| UssError::BadRequest(e.message))?;
            let e =
                api::time_from_wire(end, &format!("{field}.time_end")).map_err(|e| UssError::BadRequest(e.message))?;
            if s < t && e > t {
                v.time_start = Some(api::time_to_wire(t));
            }
        }
        out.push(api::volume_from_wire(&v, &field).map_err(|e| UssError::BadRequest(e.message))?);
    }
    Ok(out)
}

/// What the user asks for: a state of the intent, closing it, or something the standard does
/// not allow (refused with the reason).
enum Wanted {
    State(OperationalIntentState),
    Closed,
    Invalid(String),
}

fn wanted(info: &BasicInformation) -> Result<Wanted, UssError> {
    use OperationalIntentState as S;
    Ok(match (info.usage_state.as_str(), info.uas_state.as_str()) {
        ("Closed", _) => Wanted::Closed,
        ("Planned", "Nominal" | "NotSpecified") => Wanted::State(S::Accepted),
        // An Accepted operational intent has no off-nominal volumes (ASTM F3548-21 OPIN0015):
        // a flight that is not in use cannot be off-nominal or contingent.
        ("Planned", s @ ("OffNominal" | "Contingent")) => Wanted::Invalid(format!(
            "a flight plan that is Planned (not in use) cannot have uas_state {s}: an Accepted operational intent has \
             no off-nominal volumes (ASTM F3548-21 OPIN0015)"
        )),
        ("InUse", "Nominal" | "NotSpecified") => Wanted::State(S::Activated),
        ("InUse", "OffNominal") => Wanted::State(S::Nonconforming),
        ("InUse", "Contingent") => Wanted::State(S::Contingent),
        (u, s) => {
            return Err(UssError::BadRequest(format!(
                "flight_plan.basic_information: usage_state `{u}` with uas_state `{s}` is not one of Planned, InUse, \
                 Closed with Nominal, OffNominal, Contingent, NotSpecified"
            )))
        }
    })
}

/// The answer for a workflow's outcome.
fn from_outcome(o: &PlanOutcome, before: &str) -> PlanningResponse {
    if o.outcome == Outcome::Refused {
        let mut notes = o.message.clone();
        if let Some(p) = &o.proposal {
            notes.push_str(&format!("; proposal: {}", serde_json::to_string(p).unwrap_or_default()));
        }
        return answer("Rejected", before, Some(notes));
    }
    let status = o.state.as_deref().and_then(OperationalIntentState::parse).map_or("Planned", status_of);
    answer("Completed", status, Some(o.message.clone()))
}

/// The answer for a failure of a workflow: input errors stay HTTP errors; our own or an
/// upstream failure is `Failed`; a priority we do not manage is `NotSupported`.
fn from_error(e: UssError, before: &str) -> Result<PlanningResponse, UssError> {
    match e {
        UssError::InvalidPlan(why) => Ok(answer("Rejected", before, Some(why.to_string()))),
        UssError::DssRefused(why) => Ok(answer("Rejected", before, Some(why))),
        UssError::PriorityNotAllowed(m) => Ok(answer("NotSupported", before, Some(m))),
        UssError::BadRequest(_) | UssError::Unauthenticated(_) => Err(e),
        UssError::Forbidden(m) => Ok(answer("NotSupported", before, Some(m))),
        other => Ok(answer("Failed", before, Some(other.to_string()))),
    }
}

async fn upsert(
    State(uss): St,
    headers: HeaderMap,
    Path(fp_id): Path<String>,
    body: Body,
) -> Result<Response, UssError> {
    uss.flight_planner(&headers, &[auth::Scope::FlightPlanningPlan])?;
    flight_plan_id(&fp_id)?;
    let req: UpsertRequest = parse(&crate::error::body_bytes(body)?)?;
    let _guard = uss.lock_entity(&format!("flight-plan/{fp_id}")).await;
    let record = uss.flight_plan(&fp_id).await?;
    if let Some(r) = record.as_ref().filter(|r| r.request_id == req.request_id) {
        return Ok(Json(r.response.clone()).into_response());
    }
    let own = record.as_ref().and_then(|r| uss.own_intent(&r.intent_id));
    let before = own.as_ref().map_or("NotPlanned", |o| status_of(o.state));
    let info = &req.flight_plan.plan.basic_information;
    let wanted = wanted(info)?;
    let response = match req.execution_style.as_str() {
        "Hypothetical" => {
            answer("NotSupported", before, Some("this participant does not evaluate hypothetical flight plans".into()))
        }
        "IfAllowed" | "InReality" => match wanted {
            Wanted::Invalid(why) => answer("Rejected", before, Some(why)),
            Wanted::Closed => match &own {
                Some(o) => match uss.end(&o.reference.id).await {
                    Ok(out) => answer("Completed", "Closed", Some(out.message)),
                    Err(e) => from_error(e, before)?,
                },
                None => answer("Completed", "Closed", Some("no flight was planned for this flight plan".into())),
            },
            Wanted::State(state) => {
                let volumes = area(info, uss.now())?;
                let priority = req.flight_plan.plan.astm_f3548_21.as_ref().map_or(0, |a| a.priority);
                let off_nominal = state.requires_conformance_monitoring();
                if own.is_none() && off_nominal {
                    answer(
                        "Rejected",
                        before,
                        Some(format!("a new flight cannot start {}: plan it first", state.as_str())),
                    )
                } else {
                    let intent_id = record
                        .as_ref()
                        .filter(|_| own.is_some())
                        .map_or_else(|| uss.ids.new_id(), |r| r.intent_id.clone());
                    // Activation of an unchanged plan is not re-judged (a conflict created
                    // since by a higher priority is theirs to resolve); a new or changed area
                    // is, except for off-nominal states, which report reality.
                    let unchanged = own.as_ref().is_some_and(|o| o.volumes == volumes && o.priority == priority);
                    let check = !(off_nominal || unchanged && state == OperationalIntentState::Activated);
                    match uss.upsert(&intent_id, volumes, priority, state, check).await {
                        Ok(out) => {
                            let mut r = from_outcome(&out, before);
                            if r.planning_result == "Completed" {
                                let planned = uss.own_intent(&intent_id);
                                r.as_planned = planned.map(|o| as_planned(&req.flight_plan, &o));
                            }
                            if r.planning_result == "Completed" || own.is_some() {
                                // Keep the mapping (a refused change leaves the flight as it was).
                                let keep = FlightPlanRecord {
                                    intent_id: intent_id.clone(),
                                    request_id: req.request_id.clone(),
                                    response: r.clone(),
                                };
                                uss.keep_flight_plan(&fp_id, &keep).await?;
                            }
                            r
                        }
                        Err(e) => from_error(e, before)?,
                    }
                }
            }
        },
        other => {
            return Err(UssError::BadRequest(format!(
                "execution_style `{other}` is not Hypothetical, IfAllowed or InReality"
            )))
        }
    };
    if matches!(response.flight_plan_status.as_str(), "Closed") {
        uss.forget_flight_plan(&fp_id).await?;
    }
    Ok(Json(response).into_response())
}

async fn close(State(uss): St, headers: HeaderMap, Path(fp_id): Path<String>) -> Result<Response, UssError> {
    // InterUSS's interface puts deletion under the planning scope, like creating and changing a
    // plan; the test director's scope is accepted too.
    uss.flight_planner(&headers, &[auth::Scope::FlightPlanningPlan, auth::Scope::FlightPlanningDirect])?;
    flight_plan_id(&fp_id)?;
    let _guard = uss.lock_entity(&format!("flight-plan/{fp_id}")).await;
    let record = uss
        .flight_plan(&fp_id)
        .await?
        .ok_or_else(|| UssError::NotFound(format!("flight plan {fp_id} is not known here")))?;
    let own = uss.own_intent(&record.intent_id);
    let response = match own {
        Some(o) => match uss.end(&o.reference.id).await {
            Ok(out) => answer("Completed", "Closed", Some(out.message)),
            Err(e) => from_error(e, status_of(o.state))?,
        },
        None => answer("Completed", "Closed", Some("the flight was no longer planned".into())),
    };
    if response.planning_result == "Completed" {
        uss.forget_flight_plan(&fp_id).await?;
    }
    Ok(Json(response).into_response())
}

#[derive(Deserialize)]
struct NoticeWindow {
    after: Option<String>,
    before: Option<String>,
}

fn time_param(s: &str, field: &str) -> Result<i64, UssError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .map_err(|e| UssError::BadRequest(format!("{field}: `{s}` is not an RFC 3339 time ({e})")))
}

async fn user_notifications(
    State(uss): St,
    headers: HeaderMap,
    query: Result<Query<NoticeWindow>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, UssError> {
    uss.flight_planner(&headers, &[auth::Scope::FlightPlanningPlan])?;
    let Query(w) = query.map_err(|e| UssError::BadRequest(format!("query parameters: {e}")))?;
    let after = time_param(
        w.after.as_deref().ok_or_else(|| UssError::BadRequest("the `after` query parameter is required".into()))?,
        "after",
    )?;
    let before = match w.before.as_deref() {
        Some(b) => time_param(b, "before")?,
        None => uss.now().micros(),
    };
    if before < after {
        return Err(UssError::BadRequest("`before` must be after `after`".into()));
    }
    let notices = uss.user_notices(after, before).await?;
    let list: Vec<serde_json::Value> = notices
        .iter()
        .map(|n| {
            json!({"observed_at": {"value": n.observed_at, "format": "RFC3339"}, "conflicts": n.conflicts,
                   "message": n.message})
        })
        .collect();
    Ok(Json(json!({"user_notifications": list})).into_response())
}

#[derive(Deserialize)]
struct ClearAreaRequest {
    #[allow(dead_code)]
    request_id: String,
    extent: api::Volume4D,
}

/// Ends every intent this interface created that meets the extent (never one the operator
/// planned), then removes any DSS reference of ours there that no record of ours explains.
async fn clear_area(State(uss): St, headers: HeaderMap, body: Body) -> Result<Response, UssError> {
    uss.flight_planner(&headers, &[auth::Scope::FlightPlanningDirect])?;
    let req: ClearAreaRequest = parse(&crate::error::body_bytes(body)?)?;
    let extent = api::volume_from_wire(&req.extent, "extent").map_err(|e| UssError::BadRequest(e.message))?;
    let (removed, failures) = uss.clear_area(&extent).await?;
    let outcome = if failures.is_empty() {
        json!({"success": true, "message": format!("{removed} operational intents removed")})
    } else {
        json!({"success": false, "message": format!("could not remove: {}", failures.join("; "))})
    };
    Ok(Json(json!({"outcome": outcome})).into_response())
}
