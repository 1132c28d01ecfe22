//! The operator's changes: plan, modify, change state, end; publish and lift constraints;
//! subscribe to an area.
//!
//! Every change follows one protocol: decide on a fresh survey; record the intended change
//! durably (write-ahead); ask the DSS; record the outcome and drop the write-ahead record in one
//! transaction; answer; notify (`notify`). A failure to record is an error to the operator,
//! never "planned"; a crash anywhere leaves a write-ahead record that `reconcile` finishes or
//! undoes against the DSS. Intents and constraints share the generic steps (`OwnEntity`):
//! settling, ending (with both crash points), notifying.

use std::sync::Arc;
use std::time::Duration;

use geo4d::Volume4D;
use model::OperationalIntentState;

use crate::domain::Kind;
use crate::entities::{Change, Delivery, OwnConstraint, OwnIntent, Pending};
use crate::error::UssError;
use crate::operator::{ConflictItem, ConstraintOutcome, Outcome, PlanOutcome, Proposal, SubscriptionOutcome};
use crate::ports::{DssFailure, IntentWrite, SubscriptionWrite};
use crate::records::Held;
use crate::{CrashPoint, Uss};

/// How far ahead a time-shift proposal may move a plan.
pub const PROPOSAL_HORIZON_S: i64 = 2 * 3600;
/// Attempts at writing a plan when the airspace keeps changing under it.
pub(crate) const MAX_ATTEMPTS: usize = 6;

fn widened(volumes: &[Volume4D]) -> Vec<Volume4D> {
    // One survey also covers every time-shift proposal.
    volumes
        .iter()
        .map(|v| match v.time.end() {
            Some(end) => Volume4D {
                footprint: v.footprint.clone(),
                altitude: v.altitude,
                time: geo4d::TimeWindow::new(v.time.start(), Some(end.plus_seconds(PROPOSAL_HORIZON_S)))
                    .unwrap_or(v.time),
            },
            None => v.clone(),
        })
        .collect()
}

/// The off-nominal volumes a change to `state` keeps: the current ones while off-nominal, none
/// once back to a nominal state.
fn kept_off_nominal(current: Option<&OwnIntent>, state: OperationalIntentState) -> Vec<Volume4D> {
    match current {
        Some(c) if state.requires_conformance_monitoring() => c.off_nominal_volumes.clone(),
        _ => vec![],
    }
}

/// What a plan asks for.
pub(crate) struct Request {
    pub id: String,
    pub volumes: Vec<Volume4D>,
    /// Where an off-nominal aircraft actually is (empty in the nominal states).
    pub off_nominal: Vec<Volume4D>,
    pub priority: i32,
    pub state: OperationalIntentState,
    /// Whether conflicts are judged (activation and off-nominal states keep an accepted plan).
    pub check_conflicts: bool,
}

/// How each kind of own entity is named to the operator.
fn removal_words(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        // (what the DSS refused, what the feed says)
        Kind::Intent => ("the DSS refused to end it", "ended operation"),
        Kind::Constraint => ("the DSS refused to lift it", "lifted restricted zone"),
    }
}

impl Uss {
    /// Our entity `id` of type `E`, unless a change of it is in flight.
    fn own_for_change<E: Held>(&self, id: &str) -> Result<E, UssError> {
        if self.records.is_pending(id) {
            return Err(UssError::Busy(format!("a change of {id} is in flight or being reconciled; try again")));
        }
        self.records.own::<E>(id).ok_or_else(|| {
            UssError::NotFound(match E::KIND {
                Kind::Intent => format!("no operational intent {id} is managed here"),
                Kind::Constraint => format!("no constraint {id} is managed here"),
            })
        })
    }

    fn check_priority(&self, priority: i32) -> Result<(), UssError> {
        if !(0..=self.config.max_priority).contains(&priority) {
            return Err(UssError::PriorityNotAllowed(format!(
                "priority: {priority} is outside 0..={} allowed by this participant (--max-priority)",
                self.config.max_priority
            )));
        }
        Ok(())
    }

    fn check_conformance_scope(&self, state: OperationalIntentState) -> Result<(), UssError> {
        if state.requires_conformance_monitoring() && !self.has_scope("utm.conformance_monitoring_sa") {
            return Err(UssError::Forbidden(format!(
                "{} needs this participant to hold utm.conformance_monitoring_sa",
                state.as_str()
            )));
        }
        Ok(())
    }

    /// Durably records a change before the DSS is asked to make it.
    pub(crate) async fn write_ahead(
        &self,
        id: &str,
        change: Change,
        previous_version: Option<i32>,
    ) -> Result<(), UssError> {
        let pending = Pending { id: id.to_owned(), change, previous_version, recorded_at: self.now() };
        self.records.write_ahead(pending).await.map_err(|e| {
            UssError::Storage(format!(
                "the participant could not record the change durably, so the DSS was not asked to make it: {e}"
            ))
        })?;
        self.crash_point(CrashPoint::AfterWriteAhead);
        Ok(())
    }

    /// Drops a write-ahead record after the DSS refused the change. Should this fail, the
    /// record stays and reconciliation undoes it (the DSS still holds the previous version).
    pub(crate) async fn undo(&self, id: &str) {
        if let Err(e) = self.records.drop_pending(id).await {
            tracing::error!(error = %e, %id, "could not drop a write-ahead record; reconciliation will");
        }
    }

    /// Records the DSS's answer for our entity and drops its write-ahead record, atomically
    /// (the serving copy is updated even if the disk fails; see `Records::settle`).
    pub(crate) async fn settle<E: Held>(&self, own: &E) -> Result<(), UssError> {
        let id = own.reference().id.clone();
        let text = own.describe();
        let saved = self.records.settle(own).await;
        self.feed("change", Some(&id), text);
        saved.map_err(|e| {
            UssError::Storage(format!(
                "the DSS accepted the change of {id} but the participant could not record it durably ({e}); \
                 it is served as the DSS holds it and will be reconciled when the participant restarts"
            ))
        })
    }

    pub(crate) async fn plan_new(
        self: &Arc<Self>,
        volumes: Vec<Volume4D>,
        priority: i32,
    ) -> Result<PlanOutcome, UssError> {
        self.check_priority(priority)?;
        planner::check_plan_times(&volumes, self.now()).map_err(UssError::InvalidPlan)?;
        let id = self.ids.new_id();
        let _guard = self.lock_entity(&id).await;
        let req = Request {
            id,
            volumes,
            off_nominal: vec![],
            priority,
            state: OperationalIntentState::Accepted,
            check_conflicts: true,
        };
        self.plan(req, None).await
    }

    /// Creates or changes intent `id` to `volumes` at `priority` in `state`, judging conflicts
    /// when `check_conflicts` (the flight_planning interface's upsert).
    pub(crate) async fn upsert(
        self: &Arc<Self>,
        id: &str,
        volumes: Vec<Volume4D>,
        priority: i32,
        state: OperationalIntentState,
        check_conflicts: bool,
    ) -> Result<PlanOutcome, UssError> {
        self.check_priority(priority)?;
        // A new or changed plan must be valid in time; reporting reality (off-nominal states,
        // or activating the plan as it stands) is never refused for it.
        if check_conflicts {
            planner::check_plan_times(&volumes, self.now()).map_err(UssError::InvalidPlan)?;
        }
        self.check_conformance_scope(state)?;
        let _guard = self.lock_entity(id).await;
        if self.records.is_pending(id) {
            return Err(UssError::Busy(format!("a change of {id} is in flight or being reconciled; try again")));
        }
        let current = self.records.own::<OwnIntent>(id);
        let off_nominal = kept_off_nominal(current.as_ref(), state);
        let req = Request { id: id.to_owned(), volumes, off_nominal, priority, state, check_conflicts };
        self.plan(req, current).await
    }

    pub(crate) async fn modify(
        self: &Arc<Self>,
        id: &str,
        volumes: Vec<Volume4D>,
        priority: i32,
    ) -> Result<PlanOutcome, UssError> {
        self.check_priority(priority)?;
        planner::check_plan_times(&volumes, self.now()).map_err(UssError::InvalidPlan)?;
        let _guard = self.lock_entity(id).await;
        let current: OwnIntent = self.own_for_change(id)?;
        let req = Request {
            id: id.to_owned(),
            volumes,
            off_nominal: kept_off_nominal(Some(&current), current.state),
            priority,
            state: current.state,
            check_conflicts: true,
        };
        self.plan(req, Some(current)).await
    }

    /// Moves an intent to `state` with its current volumes. Activation proves knowledge of the
    /// airspace (a key) but a plan already accepted is not re-judged: conflicts created since by
    /// higher priorities are theirs to resolve; off-nominal states need no key at all.
    pub(crate) async fn transition(
        self: &Arc<Self>,
        id: &str,
        state: OperationalIntentState,
    ) -> Result<PlanOutcome, UssError> {
        self.check_conformance_scope(state)?;
        let _guard = self.lock_entity(id).await;
        let current: OwnIntent = self.own_for_change(id)?;
        let req = Request {
            id: id.to_owned(),
            volumes: current.volumes.clone(),
            off_nominal: kept_off_nominal(Some(&current), state),
            priority: current.priority,
            state,
            check_conflicts: false,
        };
        self.plan(req, Some(current)).await
    }

    /// The conformance monitor's change of our intent `id` to `state` with `off_nominal`
    /// volumes, if it is still in `from` (an operator's change in between wins). No conflict is
    /// judged: it reports reality.
    pub(crate) async fn monitor_transition(
        self: &Arc<Self>,
        id: &str,
        from: OperationalIntentState,
        state: OperationalIntentState,
        off_nominal: Vec<Volume4D>,
    ) -> Result<Option<PlanOutcome>, UssError> {
        self.check_conformance_scope(state)?;
        let _guard = self.lock_entity(id).await;
        let current: OwnIntent = self.own_for_change(id)?;
        if current.state != from {
            return Ok(None);
        }
        let req = Request {
            id: id.to_owned(),
            volumes: current.volumes.clone(),
            off_nominal,
            priority: current.priority,
            state,
            check_conflicts: false,
        };
        self.plan(req, Some(current)).await.map(Some)
    }

    /// Plans (creates or updates) an intent; the caller holds the entity's lock.
    async fn plan(self: &Arc<Self>, req: Request, current: Option<OwnIntent>) -> Result<PlanOutcome, UssError> {
        let started = std::time::Instant::now();
        let result = self.plan_attempts(req, current).await;
        let outcome = match &result {
            Ok(o) if o.outcome == crate::operator::Outcome::Refused => "refused",
            Ok(_) => "planned",
            Err(_) => "failed",
        };
        metrics::counter!("uss_plans_total", "outcome" => outcome).increment(1);
        metrics::histogram!("uss_plan_seconds", "outcome" => outcome).record(started.elapsed().as_secs_f64());
        result
    }

    /// [`Self::plan`]'s work: survey, judge, write, retrying a lost race.
    async fn plan_attempts(
        self: &Arc<Self>,
        req: Request,
        current: Option<OwnIntent>,
    ) -> Result<PlanOutcome, UssError> {
        let mut ovn = current.as_ref().map(|c| c.ovn().to_owned());
        let previous_version = current.as_ref().map(|c| c.reference.version);
        let area = widened(&req.volumes);
        for attempt in 1..=MAX_ATTEMPTS {
            // An off-nominal state needs no key and judges no conflict: reporting where the
            // aircraft is must not wait on peers' details.
            let survey = if req.check_conflicts || req.state.requires_key() {
                self.survey(&area, Some(&req.id)).await?
            } else {
                crate::survey::Survey::default()
            };
            if req.check_conflicts {
                let found = planner::assess(&req.volumes, req.priority, &survey.airspace, Some(&req.id));
                if !found.is_empty() {
                    let only_ours_in_flight = survey.own_in_flight
                        && found.iter().all(|c| {
                            matches!(&c.blocker, planner::Blocker::Unverifiable { manager, .. } if manager == self.client_id())
                        });
                    if only_ours_in_flight && attempt < MAX_ATTEMPTS {
                        self.clock.sleep(Duration::from_millis(50 * attempt as u64)).await;
                        continue;
                    }
                    return Ok(self.refusal(&req, &survey.airspace, &found, attempt).await);
                }
            }
            let change = Change::PutIntent {
                state: req.state,
                priority: req.priority,
                volumes: req.volumes.clone(),
                off_nominal: req.off_nominal.clone(),
            };
            self.write_ahead(&req.id, change, previous_version).await?;
            // The reference's extents bound every volume, nominal and off-nominal (utm.yaml).
            let extents: Vec<Volume4D> = req.volumes.iter().chain(&req.off_nominal).cloned().collect();
            let write = IntentWrite {
                volumes: &extents,
                state: req.state,
                key: &survey.key,
                base_url: &self.config.base_url,
                notify_for_constraints: self.has_scope("utm.constraint_processing"),
            };
            match self.dss.put_intent(&req.id, ovn.as_deref(), write).await {
                Ok(written) => {
                    self.crash_point(CrashPoint::AfterDssWrite);
                    let mut own = OwnIntent::new(written.reference, req.state, req.priority, req.volumes)
                        .with_off_nominal(req.off_nominal);
                    own.notified = self.starting_deliveries(&written.subscribers);
                    self.settle(&own).await?;
                    self.notify_change(&own, &written.subscribers);
                    let notified = own.notified.clone();
                    return Ok(PlanOutcome {
                        outcome: Outcome::Planned,
                        message: format!("operational intent {} is {}", own.reference.id, own.state.as_str()),
                        operational_intent_id: Some(own.reference.id.clone()),
                        state: Some(own.state.as_str().to_owned()),
                        version: Some(own.reference.version),
                        ovn: own.reference.ovn.clone(),
                        notified,
                        attempts: attempt,
                        ..Default::default()
                    });
                }
                Err(DssFailure::StaleOvn(_)) => {
                    self.undo(&req.id).await;
                    // Our OVN is stale: the DSS holds a newer version of our own intent (we
                    // stopped after it answered); take the current one and try again.
                    if current.is_some() {
                        if let Ok(Some(r)) = self.dss.get(Kind::Intent, &req.id).await {
                            ovn = r.ovn;
                        }
                    }
                }
                Err(DssFailure::KeyMissing(_)) => {
                    self.undo(&req.id).await;
                    // Someone changed the airspace after our survey: refresh and retry.
                    self.clock.sleep(Duration::from_millis(20 * attempt as u64)).await;
                }
                Err(e) => {
                    self.undo(&req.id).await;
                    return Err(UssError::from_dss("the DSS refused the plan", e));
                }
            }
        }
        Err(UssError::Upstream(format!("the airspace kept changing during {MAX_ATTEMPTS} attempts; try again")))
    }

    async fn refusal(
        &self,
        req: &Request,
        airspace: &planner::Airspace,
        found: &[planner::Conflict],
        attempts: usize,
    ) -> PlanOutcome {
        let mut proposal = None;
        for p in planner::proposals(&req.volumes, req.priority, airspace, Some(&req.id), PROPOSAL_HORIZON_S) {
            // Re-checked against a fresh picture of exactly the proposed volumes.
            let fresh = self.survey(&p.volumes, Some(&req.id)).await;
            if fresh.is_ok_and(|s| planner::assess(&p.volumes, req.priority, &s.airspace, Some(&req.id)).is_empty()) {
                proposal = Some(Proposal::from_planner(&p, PROPOSAL_HORIZON_S));
                break;
            }
        }
        let conflicts: Vec<ConflictItem> = found.iter().map(|c| ConflictItem::from_planner(c, req.priority)).collect();
        let mut who: Vec<String> =
            conflicts.iter().map(|c| format!("{} {} of {}", c.kind.replace('_', " "), c.id, c.manager)).collect();
        who.dedup();
        PlanOutcome {
            outcome: Outcome::Refused,
            message: format!("the plan conflicts with {}", who.join("; ")),
            operational_intent_id: Some(req.id.clone()),
            conflicts,
            proposal,
            attempts,
            ..Default::default()
        }
    }

    /// Removes our entity's reference from the DSS, then our record, and tells its
    /// subscribers: the same steps (and crash points) for intents and constraints.
    async fn remove<E: Held>(self: &Arc<Self>, id: &str) -> Result<Vec<Delivery>, UssError> {
        let (refused, ended) = removal_words(E::KIND);
        let _guard = self.lock_entity(id).await;
        let current: E = self.own_for_change(id)?;
        let change = match E::KIND {
            Kind::Intent => Change::DeleteIntent,
            Kind::Constraint => Change::DeleteConstraint,
        };
        self.write_ahead(id, change, Some(current.reference().version)).await?;
        let subscribers = match self.dss.delete(E::KIND, id, current.reference().ovn_text()).await {
            Ok(Some(subscribers)) => subscribers,
            // Already gone from the DSS (expired, or removed before a crash): nothing to tell.
            Ok(None) => vec![],
            Err(e) => {
                self.undo(id).await;
                return Err(UssError::from_dss(refused, e));
            }
        };
        self.crash_point(CrashPoint::AfterDssWrite);
        let saved = self.records.settle_removed(E::KIND, id).await;
        self.feed("change", Some(id), format!("{} {ended} {id}", self.client_id()));
        let notified = self.notify_removal::<E>(id, &subscribers);
        saved.map_err(|e| {
            UssError::Storage(format!(
                "the DSS removed {id} but the participant could not record it durably ({e}); \
                 it will be reconciled when the participant restarts"
            ))
        })?;
        Ok(notified)
    }

    /// Ends an intent: removes its reference from the DSS, then our record.
    pub(crate) async fn end(self: &Arc<Self>, id: &str) -> Result<PlanOutcome, UssError> {
        let notified = self.remove::<OwnIntent>(id).await?;
        Ok(PlanOutcome {
            outcome: Outcome::Planned,
            message: format!("operational intent {id} ended and removed from the DSS"),
            operational_intent_id: Some(id.to_owned()),
            state: Some("Ended".into()),
            notified,
            attempts: 1,
            ..Default::default()
        })
    }

    pub(crate) async fn end_constraint(self: &Arc<Self>, id: &str) -> Result<ConstraintOutcome, UssError> {
        let notified = self.remove::<OwnConstraint>(id).await?;
        Ok(ConstraintOutcome { outcome: Outcome::Ended, constraint_id: id.to_owned(), notified })
    }

    pub(crate) async fn publish_constraint(
        self: &Arc<Self>,
        volumes: Vec<Volume4D>,
    ) -> Result<ConstraintOutcome, UssError> {
        let id = self.ids.new_id();
        let _guard = self.lock_entity(&id).await;
        self.write_ahead(&id, Change::PutConstraint { volumes: volumes.clone() }, None).await?;
        let written = match self.dss.put_constraint(&id, &volumes, &self.config.base_url).await {
            Ok(w) => w,
            Err(e) => {
                self.undo(&id).await;
                return Err(UssError::from_dss("the DSS refused the constraint", e));
            }
        };
        self.crash_point(CrashPoint::AfterDssWrite);
        let own = OwnConstraint {
            reference: written.reference,
            volumes,
            notified: self.starting_deliveries(&written.subscribers),
        };
        self.settle(&own).await?;
        self.notify_change(&own, &written.subscribers);
        let notified = own.notified.clone();
        Ok(ConstraintOutcome { outcome: Outcome::Published, constraint_id: id, notified })
    }

    /// An explicit subscription over each area of interest (a planning area), so the operator
    /// hears of every operation and constraint there, not only those touching its own flights.
    /// Each goes through the write-ahead record like every other change to the DSS.
    pub(crate) async fn subscribe(&self, volumes: Vec<Volume4D>) -> Result<SubscriptionOutcome, UssError> {
        let mut ids = Vec::new();
        for volume in volumes {
            let id = self.ids.new_id();
            let _guard = self.lock_entity(&id).await;
            self.write_ahead(&id, Change::PutSubscription { volume: volume.clone() }, None).await?;
            let write = SubscriptionWrite {
                volume: &volume,
                base_url: &self.config.base_url,
                notify_for_intents: self.has_scope("utm.strategic_coordination"),
                notify_for_constraints: self.has_scope("utm.constraint_processing"),
            };
            if let Err(e) = self.dss.put_subscription(&id, write).await {
                self.undo(&id).await;
                return Err(UssError::from_dss("the DSS refused the subscription", e));
            }
            self.crash_point(CrashPoint::AfterDssWrite);
            self.settle_subscription(&id, &volume).await?;
            self.feed("change", Some(&id), format!("{} subscribed to an area ({id})", self.client_id()));
            ids.push(id);
        }
        self.forget_ended_subscriptions().await;
        Ok(SubscriptionOutcome { outcome: Outcome::Subscribed, subscription_ids: ids })
    }

    /// Records a subscription the DSS holds (for the map; the DSS is its record) and drops its
    /// write-ahead record, in one transaction.
    pub(crate) async fn settle_subscription(&self, id: &str, volume: &Volume4D) -> Result<(), UssError> {
        let record = crate::map_view::SubscriptionRecord { extents: api::volume_to_wire(volume) };
        let body = serde_json::to_string(&record).map_err(|e| UssError::Storage(e.to_string()))?;
        self.records
            .settle_with(id, vec![crate::db::Write::Put(crate::db::Table::Subscriptions, id.to_owned(), body)])
            .await
            .map_err(|e| {
                UssError::Storage(format!(
                    "the DSS made subscription {id} but the participant could not record it durably ({e}); \
                     it will be reconciled when the participant restarts"
                ))
            })?;
        Ok(())
    }
}
