//! The operator's workflows (plan, modify, change state, end; publish and lift constraints;
//! subscribe), the notifications they send, and the reconciliation after a restart.
//!
//! Every change follows one protocol: decide on a fresh survey; record the intended change
//! durably (write-ahead); ask the DSS; record the outcome and drop the write-ahead record in one
//! transaction; notify. A failure to record is an error to the operator, never "planned"; a
//! crash anywhere leaves a write-ahead record that [`Uss::reconcile`] finishes or undoes
//! against the DSS.

use std::sync::Arc;
use std::time::Duration;

use api::{OperationalIntentDetails, PutOperationalIntentReferenceParameters};
use client::ClientError;
use futures_util::future::join_all;
use geo4d::Volume4D;
use model::OperationalIntentState;

use crate::db::{Table, Write};
use crate::error::UssError;
use crate::operator::{ConflictItem, PlanOutcome, Proposal};
use crate::records::{Delivery, OwnConstraint, OwnIntent, Pending, PendingChange};
use crate::{now, now_text, CrashPoint, Uss};

/// How far ahead a time-shift proposal may move a plan.
pub const PROPOSAL_HORIZON_S: i64 = 2 * 3600;
/// Attempts at writing a plan when the airspace keeps changing under it.
const MAX_ATTEMPTS: usize = 6;

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

fn dss_error(what: &str, e: ClientError) -> UssError {
    UssError::from_dss(what, e)
}

/// What a plan asks for.
pub(crate) struct Request {
    pub id: String,
    pub volumes: Vec<Volume4D>,
    pub priority: i32,
    pub state: OperationalIntentState,
    /// Whether conflicts are judged (activation and off-nominal states keep an accepted plan).
    pub check_conflicts: bool,
}

impl Uss {
    fn own_intent(&self, id: &str) -> Result<OwnIntent, UssError> {
        let mem = self.mem.read();
        if mem.pending.contains_key(id) {
            return Err(UssError::Busy(format!("a change of {id} is in flight or being reconciled; try again")));
        }
        mem.own_intents
            .get(id)
            .cloned()
            .ok_or_else(|| UssError::NotFound(format!("no operational intent {id} is managed here")))
    }

    fn check_priority(&self, priority: i32) -> Result<(), UssError> {
        if !(0..=self.config.max_priority).contains(&priority) {
            return Err(UssError::BadRequest(format!(
                "priority: {priority} is outside 0..={} allowed by this participant (--max-priority)",
                self.config.max_priority
            )));
        }
        Ok(())
    }

    /// Durably records a change before the DSS is asked to make it.
    fn write_ahead(&self, pending: Pending) -> Result<(), UssError> {
        self.db.put(Table::Pending, &pending.id, &pending).map_err(|e| {
            UssError::Storage(format!(
                "the participant could not record the change durably, so the DSS was not asked to make it: {e}"
            ))
        })?;
        self.mem.write().pending.insert(pending.id.clone(), pending);
        self.crash_point(CrashPoint::AfterWriteAhead);
        Ok(())
    }

    /// Drops a write-ahead record after the DSS refused the change. Should this fail, the
    /// record stays and reconciliation undoes it (the DSS still holds the previous version).
    fn undo(&self, id: &str) {
        match self.db.delete(Table::Pending, id) {
            Ok(()) => {
                self.mem.write().pending.remove(id);
            }
            Err(e) => tracing::error!(error = %e, %id, "could not drop a write-ahead record; reconciliation will"),
        }
    }

    /// A DSS client for a change whose write-ahead record is down; without one the change is
    /// undone (the DSS was not asked).
    async fn dss_or_undo(&self, id: &str) -> Result<client::DssClient, UssError> {
        let dss = self.dss().await;
        if dss.is_err() {
            self.undo(id);
        }
        dss
    }

    pub(crate) async fn plan_new(
        self: &Arc<Self>,
        volumes: Vec<Volume4D>,
        priority: i32,
    ) -> Result<PlanOutcome, UssError> {
        self.check_priority(priority)?;
        planner::check_plan_times(&volumes, now()).map_err(UssError::InvalidPlan)?;
        let id = uuid::Uuid::new_v4().to_string();
        let _guard = self.lock_entity(&id).await;
        let req = Request { id, volumes, priority, state: OperationalIntentState::Accepted, check_conflicts: true };
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
            planner::check_plan_times(&volumes, now()).map_err(UssError::InvalidPlan)?;
        }
        if state.requires_conformance_monitoring() && !self.has_scope("utm.conformance_monitoring_sa") {
            return Err(UssError::Forbidden(format!(
                "{} needs this participant to hold utm.conformance_monitoring_sa",
                state.as_str()
            )));
        }
        let _guard = self.lock_entity(id).await;
        if self.mem.read().pending.contains_key(id) {
            return Err(UssError::Busy(format!("a change of {id} is in flight or being reconciled; try again")));
        }
        let cur = self.mem.read().own_intents.get(id).cloned();
        let req = Request { id: id.to_owned(), volumes, priority, state, check_conflicts };
        self.plan(req, cur).await
    }

    pub(crate) async fn modify(
        self: &Arc<Self>,
        id: &str,
        volumes: Vec<Volume4D>,
        priority: i32,
    ) -> Result<PlanOutcome, UssError> {
        self.check_priority(priority)?;
        planner::check_plan_times(&volumes, now()).map_err(UssError::InvalidPlan)?;
        let _guard = self.lock_entity(id).await;
        let cur = self.own_intent(id)?;
        let req = Request { id: id.to_owned(), volumes, priority, state: cur.state, check_conflicts: true };
        self.plan(req, Some(cur)).await
    }

    /// Moves an intent to `state` with its current volumes. Activation proves knowledge of the
    /// airspace (a key) but a plan already accepted is not re-judged: conflicts created since by
    /// higher priorities are theirs to resolve; off-nominal states need no key at all.
    pub(crate) async fn transition(
        self: &Arc<Self>,
        id: &str,
        state: OperationalIntentState,
    ) -> Result<PlanOutcome, UssError> {
        if state.requires_conformance_monitoring() && !self.has_scope("utm.conformance_monitoring_sa") {
            return Err(UssError::Forbidden(format!(
                "{} needs this participant to hold utm.conformance_monitoring_sa",
                state.as_str()
            )));
        }
        let _guard = self.lock_entity(id).await;
        let cur = self.own_intent(id)?;
        let req = Request {
            id: id.to_owned(),
            volumes: cur.volumes.clone(),
            priority: cur.priority,
            state,
            check_conflicts: false,
        };
        self.plan(req, Some(cur)).await
    }

    /// Plans (creates or updates) an intent; the caller holds the entity's lock.
    async fn plan(self: &Arc<Self>, req: Request, current: Option<OwnIntent>) -> Result<PlanOutcome, UssError> {
        let mut ovn = current.as_ref().map(|c| c.ovn().to_owned());
        let previous_version = current.as_ref().map(|c| c.reference.version);
        let area = widened(&req.volumes);
        for attempt in 1..=MAX_ATTEMPTS {
            let survey = self.survey(&area, Some(&req.id)).await?;
            if req.check_conflicts {
                let found = planner::assess(&req.volumes, req.priority, &survey.airspace, Some(&req.id));
                if !found.is_empty() {
                    let only_ours_in_flight = survey.own_in_flight
                        && found.iter().all(|c| {
                            matches!(&c.blocker, planner::Blocker::Unverifiable { manager, .. } if manager == self.client_id())
                        });
                    if only_ours_in_flight && attempt < MAX_ATTEMPTS {
                        tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
                        continue;
                    }
                    return Ok(self.refusal(&req, &survey.airspace, &found, attempt).await);
                }
            }
            let details = OperationalIntentDetails {
                volumes: api::extents_to_wire(&req.volumes),
                off_nominal_volumes: vec![],
                priority: req.priority,
            };
            self.write_ahead(Pending {
                id: req.id.clone(),
                change: PendingChange::PutIntent { state: req.state.as_str().to_owned(), details: details.clone() },
                previous_version,
                recorded_at: now_text(),
            })?;
            let body = PutOperationalIntentReferenceParameters {
                extents: details.volumes.clone(),
                key: Some(survey.key.clone()),
                state: req.state.as_str().to_owned(),
                uss_base_url: self.config.base_url.clone(),
                subscription_id: None,
                new_subscription: Some(api::ImplicitSubscriptionParameters {
                    uss_base_url: self.config.base_url.clone(),
                    notify_for_constraints: Some(self.has_scope("utm.constraint_processing")),
                }),
                requested_ovn_suffix: None,
            };
            let dss = self.dss_or_undo(&req.id).await?;
            match dss.put_intent(&req.id, ovn.as_deref(), &body).await {
                Ok(resp) => {
                    self.crash_point(CrashPoint::AfterDssWrite);
                    let own = OwnIntent {
                        reference: resp.operational_intent_reference,
                        state: req.state,
                        priority: req.priority,
                        volumes: req.volumes.clone(),
                        off_nominal_volumes: vec![],
                        notified: vec![],
                    };
                    self.record_intent(&own)?;
                    let subscribers = resp.subscribers;
                    let notified = self.notify_intent_change(&own.reference.id, Some(own.clone()), &subscribers).await;
                    return Ok(PlanOutcome {
                        outcome: "planned".into(),
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
                Err(ClientError::Conflict(c))
                    if c.missing_operational_intents.is_empty() && c.missing_constraints.is_empty() =>
                {
                    self.undo(&req.id);
                    // Our OVN is stale: the DSS holds a newer version of our own intent (we
                    // stopped after it answered); take the current one and try again.
                    if let Some(id) = current.as_ref().map(|c| c.reference.id.clone()) {
                        if let Ok(cur) = dss.get_intent(&id).await {
                            ovn = cur.operational_intent_reference.ovn;
                        }
                    }
                }
                Err(ClientError::Conflict(_)) => {
                    self.undo(&req.id);
                    // Someone changed the airspace after our survey: refresh and retry.
                    tokio::time::sleep(Duration::from_millis(20 * attempt as u64)).await;
                }
                Err(e) => {
                    self.undo(&req.id);
                    return Err(dss_error("the DSS refused the plan", e));
                }
            }
        }
        Err(UssError::Upstream(format!("the airspace kept changing during {MAX_ATTEMPTS} attempts; try again")))
    }

    /// Records the DSS's answer for our intent and drops its write-ahead record, atomically.
    /// The serving copy is updated even if the disk fails, so peers can fetch what the DSS now
    /// references; the write-ahead record then stays for reconciliation and the operator is told.
    fn record_intent(&self, own: &OwnIntent) -> Result<(), UssError> {
        let id = own.reference.id.clone();
        self.feed(
            "change",
            Some(&id),
            format!(
                "{} operation {id} is {} (version {}, priority {})",
                own.reference.manager,
                own.state.as_str(),
                own.reference.version,
                own.priority
            ),
        );
        let body = serde_json::to_string(&own.to_record()).map_err(|e| UssError::Storage(e.to_string()))?;
        let saved = self.db.apply(&[Write::Put(Table::OwnIntents, &id, body), Write::Delete(Table::Pending, &id)]);
        let mut mem = self.mem.write();
        mem.own_intents.insert(id.clone(), own.clone());
        match saved {
            Ok(()) => {
                mem.pending.remove(&id);
                Ok(())
            }
            Err(e) => Err(UssError::Storage(format!(
                "the DSS accepted the change of {id} but the participant could not record it durably ({e}); \
                 it is served as the DSS holds it and will be reconciled when the participant restarts"
            ))),
        }
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
            outcome: "refused".into(),
            message: format!("the plan conflicts with {}", who.join("; ")),
            operational_intent_id: Some(req.id.clone()),
            conflicts,
            proposal,
            attempts,
            ..Default::default()
        }
    }

    /// Ends an intent: removes its reference from the DSS, then our record.
    pub(crate) async fn end(self: &Arc<Self>, id: &str) -> Result<PlanOutcome, UssError> {
        let _guard = self.lock_entity(id).await;
        let cur = self.own_intent(id)?;
        self.write_ahead(Pending {
            id: id.to_owned(),
            change: PendingChange::DeleteIntent,
            previous_version: Some(cur.reference.version),
            recorded_at: now_text(),
        })?;
        let dss = self.dss_or_undo(id).await?;
        let subscribers = match dss.delete_intent(id, cur.ovn()).await {
            Ok(resp) => resp.subscribers,
            // Already gone from the DSS (expired, or removed before a crash): nothing to tell.
            Err(e) if e.status() == 404 => vec![],
            Err(e) => {
                self.undo(id);
                return Err(dss_error("the DSS refused to end it", e));
            }
        };
        self.crash_point(CrashPoint::AfterDssWrite);
        let saved = self.db.apply(&[Write::Delete(Table::OwnIntents, id), Write::Delete(Table::Pending, id)]);
        self.feed("change", Some(id), format!("{} ended operation {id}", self.client_id()));
        {
            let mut mem = self.mem.write();
            mem.own_intents.remove(id);
            if saved.is_ok() {
                mem.pending.remove(id);
            }
        }
        let notified = self.notify_intent_change(id, None, &subscribers).await;
        saved.map_err(|e| {
            UssError::Storage(format!(
                "the DSS removed {id} but the participant could not record it durably ({e}); \
                 it will be reconciled when the participant restarts"
            ))
        })?;
        Ok(PlanOutcome {
            outcome: "planned".into(),
            message: format!("operational intent {id} ended and removed from the DSS"),
            operational_intent_id: Some(id.to_owned()),
            state: Some("Ended".into()),
            notified,
            attempts: 1,
            ..Default::default()
        })
    }

    pub(crate) async fn publish_constraint(
        self: &Arc<Self>,
        volumes: Vec<Volume4D>,
    ) -> Result<serde_json::Value, UssError> {
        let id = uuid::Uuid::new_v4().to_string();
        let _guard = self.lock_entity(&id).await;
        let details = api::ConstraintDetails {
            volumes: api::extents_to_wire(&volumes),
            constraint_type: Some("Restricted".into()),
        };
        self.write_ahead(Pending {
            id: id.clone(),
            change: PendingChange::PutConstraint { details: details.clone() },
            previous_version: None,
            recorded_at: now_text(),
        })?;
        let body = api::PutConstraintReferenceParameters {
            extents: details.volumes.clone(),
            uss_base_url: self.config.base_url.clone(),
        };
        let dss = self.dss_or_undo(&id).await?;
        let resp = match dss.put_constraint(&id, None, &body).await {
            Ok(r) => r,
            Err(e) => {
                self.undo(&id);
                return Err(dss_error("the DSS refused the constraint", e));
            }
        };
        self.crash_point(CrashPoint::AfterDssWrite);
        let own = OwnConstraint { reference: resp.constraint_reference, volumes, notified: vec![] };
        self.record_constraint(&own)?;
        let notified = self.notify_constraint_change(&id, Some(own), &resp.subscribers).await;
        Ok(serde_json::json!({"outcome": "published", "constraint_id": id, "notified": notified}))
    }

    fn record_constraint(&self, own: &OwnConstraint) -> Result<(), UssError> {
        let id = own.reference.id.clone();
        self.feed(
            "change",
            Some(&id),
            format!("{} published restricted zone {id} (version {})", own.reference.manager, own.reference.version),
        );
        let body = serde_json::to_string(&own.to_record()).map_err(|e| UssError::Storage(e.to_string()))?;
        let saved = self.db.apply(&[Write::Put(Table::OwnConstraints, &id, body), Write::Delete(Table::Pending, &id)]);
        let mut mem = self.mem.write();
        mem.own_constraints.insert(id.clone(), own.clone());
        match saved {
            Ok(()) => {
                mem.pending.remove(&id);
                Ok(())
            }
            Err(e) => Err(UssError::Storage(format!(
                "the DSS accepted constraint {id} but the participant could not record it durably ({e}); \
                 it will be reconciled when the participant restarts"
            ))),
        }
    }

    pub(crate) async fn end_constraint(self: &Arc<Self>, id: &str) -> Result<serde_json::Value, UssError> {
        let _guard = self.lock_entity(id).await;
        let cur = {
            let mem = self.mem.read();
            if mem.pending.contains_key(id) {
                return Err(UssError::Busy(format!("a change of {id} is in flight or being reconciled; try again")));
            }
            mem.own_constraints
                .get(id)
                .cloned()
                .ok_or_else(|| UssError::NotFound(format!("no constraint {id} is managed here")))?
        };
        self.write_ahead(Pending {
            id: id.to_owned(),
            change: PendingChange::DeleteConstraint,
            previous_version: Some(cur.reference.version),
            recorded_at: now_text(),
        })?;
        let dss = self.dss_or_undo(id).await?;
        let subscribers = match dss.delete_constraint(id, cur.reference.ovn.as_deref().unwrap_or_default()).await {
            Ok(resp) => resp.subscribers,
            Err(e) if e.status() == 404 => vec![],
            Err(e) => {
                self.undo(id);
                return Err(dss_error("the DSS refused to lift it", e));
            }
        };
        let saved = self.db.apply(&[Write::Delete(Table::OwnConstraints, id), Write::Delete(Table::Pending, id)]);
        self.feed("change", Some(id), format!("{} lifted restricted zone {id}", self.client_id()));
        {
            let mut mem = self.mem.write();
            mem.own_constraints.remove(id);
            if saved.is_ok() {
                mem.pending.remove(id);
            }
        }
        let notified = self.notify_constraint_change(id, None, &subscribers).await;
        saved.map_err(|e| {
            UssError::Storage(format!("the DSS lifted {id} but the participant could not record it: {e}"))
        })?;
        Ok(serde_json::json!({"outcome": "ended", "constraint_id": id, "notified": notified}))
    }

    /// An explicit subscription over an area of interest (a planning area), so the operator hears
    /// of every operation and constraint there, not only those touching its own flights.
    pub(crate) async fn subscribe(&self, volumes: Vec<Volume4D>) -> Result<serde_json::Value, UssError> {
        let dss = self.dss().await?;
        let mut ids = Vec::new();
        for v in volumes {
            let id = uuid::Uuid::new_v4().to_string();
            let body = api::PutSubscriptionParameters {
                extents: api::volume_to_wire(&v),
                uss_base_url: self.config.base_url.clone(),
                notify_for_operational_intents: Some(self.has_scope("utm.strategic_coordination")),
                notify_for_constraints: Some(self.has_scope("utm.constraint_processing")),
            };
            dss.put_subscription(&id, None, &body)
                .await
                .map_err(|e| dss_error("the DSS refused the subscription", e))?;
            // The DSS holds the subscription; this copy only lets the map draw it.
            let record = crate::map_view::SubscriptionRecord { extents: body.extents };
            if let Err(e) = self.db.put(Table::Subscriptions, &id, &record) {
                tracing::warn!(error = %e, %id, "could not record a subscription for the map");
            }
            self.feed("change", Some(&id), format!("{} subscribed to an area ({id})", self.client_id()));
            ids.push(id);
        }
        self.forget_ended_subscriptions();
        Ok(serde_json::json!({"outcome": "subscribed", "subscription_ids": ids}))
    }

    // ---- notifications ----

    async fn notify_intent_change(
        self: &Arc<Self>,
        id: &str,
        intent: Option<OwnIntent>,
        subscribers: &[api::SubscriberToNotify],
    ) -> Vec<Delivery> {
        let wire = intent.as_ref().map(|i| i.to_wire());
        let version = intent.as_ref().map(|i| i.reference.version);
        let id_owned = id.to_owned();
        let bodies = subscribers.iter().map(|s| {
            serde_json::to_value(api::PutOperationalIntentDetailsParameters {
                operational_intent_id: id_owned.clone(),
                operational_intent: wire.clone(),
                subscriptions: s.subscriptions.clone(),
            })
            .unwrap_or_default()
        });
        let targets: Vec<(String, serde_json::Value)> =
            subscribers.iter().map(|s| s.uss_base_url.clone()).zip(bodies).collect();
        let deliveries =
            self.deliver(Subject::Intent { id: id.to_owned(), version }, "/uss/v1/operational_intents", targets).await;
        deliveries
    }

    async fn notify_constraint_change(
        self: &Arc<Self>,
        id: &str,
        c: Option<OwnConstraint>,
        subscribers: &[api::SubscriberToNotify],
    ) -> Vec<Delivery> {
        let wire = c.as_ref().map(|c| c.to_wire());
        let version = c.as_ref().map(|c| c.reference.version);
        let targets: Vec<(String, serde_json::Value)> = subscribers
            .iter()
            .map(|s| {
                let body = serde_json::to_value(api::PutConstraintDetailsParameters {
                    constraint_id: id.to_owned(),
                    constraint: wire.clone(),
                    subscriptions: s.subscriptions.clone(),
                })
                .unwrap_or_default();
                (s.uss_base_url.clone(), body)
            })
            .collect();
        self.deliver(Subject::Constraint { id: id.to_owned(), version }, "/uss/v1/constraints", targets).await
    }

    /// Sends each body to `path` under its subscriber's base URL (never to ourselves) *after*
    /// the caller has its answer: the change is durable and accepted by the DSS, and no
    /// subscriber, hung or slow, delays it or the next plan. Returns the deliveries as started
    /// (`sending`); their outcomes are recorded on the entity as they come (the operator's
    /// status and the map's feed show them).
    async fn deliver(
        self: &Arc<Self>,
        subject: Subject,
        path: &'static str,
        targets: Vec<(String, serde_json::Value)>,
    ) -> Vec<Delivery> {
        let targets: Vec<_> =
            targets.into_iter().filter(|(base, _)| base.trim_end_matches('/') != self.config.base_url).collect();
        let started: Vec<Delivery> = targets.iter().map(|(base, _)| Delivery::sending(base)).collect();
        if targets.is_empty() {
            return started;
        }
        self.set_deliveries(&subject, |_| started.clone());
        let uss = self.clone();
        tokio::spawn(async move { uss.deliver_now(subject, path, targets).await });
        started
    }

    /// The first attempt at every delivery, in parallel (each bounded by the peer timeout);
    /// failures are retried in the background with backoff for `notify_retry_for`, and each
    /// outcome is recorded on the entity.
    async fn deliver_now(
        self: Arc<Self>,
        subject: Subject,
        path: &'static str,
        targets: Vec<(String, serde_json::Value)>,
    ) {
        let first = join_all(targets.iter().map(|(base, body)| self.post_notification(base, path, body))).await;
        let mut deliveries = Vec::new();
        for ((base, body), mut d) in targets.into_iter().zip(first) {
            self.feed_delivery(&subject, &d);
            if !d.acknowledged && retryable(&d) && !self.config.notify_retry_for.is_zero() {
                d.retrying = true;
                let uss = self.clone();
                let subject = subject.clone();
                tokio::spawn(async move { uss.retry_notification(subject, path, base, body).await });
            }
            deliveries.push(d);
        }
        self.set_deliveries(&subject, |_| deliveries.clone());
    }

    async fn retry_notification(
        self: Arc<Self>,
        subject: Subject,
        path: &'static str,
        base: String,
        body: serde_json::Value,
    ) {
        let deadline = tokio::time::Instant::now() + self.config.notify_retry_for;
        let mut delay = Duration::from_secs(1);
        let mut attempts = 1;
        loop {
            tokio::time::sleep(delay).await;
            if !self.still_current(&subject) {
                return; // superseded by a newer change, whose own notifications went out
            }
            attempts += 1;
            let mut d = self.post_notification(&base, path, &body).await;
            d.attempts = attempts;
            let give_up = d.acknowledged || !retryable(&d) || tokio::time::Instant::now() + delay * 2 > deadline;
            d.retrying = !give_up;
            self.feed_delivery(&subject, &d);
            self.set_deliveries(&subject, |list| {
                let mut list = list.to_vec();
                match list.iter_mut().find(|x| x.uss_base_url == base) {
                    Some(x) => *x = d.clone(),
                    None => list.push(d.clone()),
                }
                list
            });
            if give_up {
                if !d.acknowledged {
                    tracing::warn!(%base, detail = %d.detail, attempts, "notification not delivered; gave up");
                }
                return;
            }
            delay *= 2;
        }
    }

    /// One delivery outcome on the map's live feed.
    fn feed_delivery(&self, subject: &Subject, d: &Delivery) {
        let id = match subject {
            Subject::Intent { id, .. } | Subject::Constraint { id, .. } => id,
        };
        let outcome = if d.acknowledged {
            "acknowledged".to_owned()
        } else if d.retrying {
            format!("FAILED, retrying ({})", d.detail)
        } else {
            format!("FAILED ({})", d.detail)
        };
        let attempt = if d.attempts > 1 { format!(" (attempt {})", d.attempts) } else { String::new() };
        self.feed("delivery", Some(id), format!("notification of {id} to {}{attempt}: {outcome}", d.uss_base_url));
    }

    fn still_current(&self, subject: &Subject) -> bool {
        let mem = self.mem.read();
        match subject {
            Subject::Intent { id, version } => mem.own_intents.get(id).map(|o| o.reference.version) == *version,
            Subject::Constraint { id, version } => mem.own_constraints.get(id).map(|o| o.reference.version) == *version,
        }
    }

    /// Records deliveries on the entity (memory, then disk; a failure here loses only the
    /// record of a delivery, so it is logged).
    fn set_deliveries(&self, subject: &Subject, update: impl Fn(&[Delivery]) -> Vec<Delivery>) {
        let record = {
            let mut mem = self.mem.write();
            match subject {
                Subject::Intent { id, version } => match mem.own_intents.get_mut(id) {
                    Some(o) if Some(o.reference.version) == *version => {
                        o.notified = update(&o.notified);
                        serde_json::to_string(&o.to_record()).ok().map(|b| (Table::OwnIntents, id.clone(), b))
                    }
                    _ => None,
                },
                Subject::Constraint { id, version } => match mem.own_constraints.get_mut(id) {
                    Some(o) if Some(o.reference.version) == *version => {
                        o.notified = update(&o.notified);
                        serde_json::to_string(&o.to_record()).ok().map(|b| (Table::OwnConstraints, id.clone(), b))
                    }
                    _ => None,
                },
            }
        };
        if let Some((table, id, body)) = record {
            if let Err(e) = self.db.apply(&[Write::Put(table, &id, body)]) {
                tracing::warn!(error = %e, %id, "could not record notification deliveries");
            }
        }
    }

    async fn post_notification(&self, base: &str, path: &str, body: &serde_json::Value) -> Delivery {
        let failed = |status: u16, detail: String| Delivery {
            uss_base_url: base.to_owned(),
            status,
            acknowledged: false,
            detail,
            attempts: 1,
            retrying: false,
            sending: false,
        };
        let url = match model::peer_url(base, path) {
            Ok(url) => url,
            Err(e) => return failed(0, format!("not sent: the subscriber's uss_base_url {e}")),
        };
        let token = match self.tokens.token_for(&url).await {
            Ok(t) => t,
            Err(e) => return failed(0, e),
        };
        let timeout = self.config.peer_timeout;
        match tokio::time::timeout(timeout, self.http.post(&url).bearer_auth(token).json(body).send()).await {
            Ok(Ok(r)) if r.status().is_success() => Delivery {
                uss_base_url: base.to_owned(),
                status: r.status().as_u16(),
                acknowledged: true,
                detail: String::new(),
                attempts: 1,
                retrying: false,
                sending: false,
            },
            Ok(Ok(r)) => failed(r.status().as_u16(), format!("answered HTTP {}", r.status().as_u16())),
            Ok(Err(e)) => failed(0, format!("unreachable: {e}")),
            Err(_) => failed(0, format!("no answer within {} s", timeout.as_secs())),
        }
    }

    // ---- after a restart ----

    /// Finishes or undoes every change that was in flight when the participant stopped, removes
    /// references of ours in their areas that nothing here explains, and refreshes our records
    /// from the DSS. Returns how many write-ahead records remain (the DSS could not be asked).
    pub async fn reconcile(&self) -> usize {
        let pendings: Vec<Pending> = self.mem.read().pending.values().cloned().collect();
        let mut remaining = 0;
        for p in pendings {
            match self.reconcile_one(&p).await {
                Ok(()) => tracing::info!(id = %p.id, "in-flight change reconciled with the DSS"),
                Err(e) => {
                    remaining += 1;
                    tracing::warn!(id = %p.id, error = %e, "could not reconcile an in-flight change yet");
                }
            }
        }
        if remaining == 0 {
            self.refresh_own().await;
        }
        remaining
    }

    async fn reconcile_one(&self, p: &Pending) -> Result<(), UssError> {
        let dss = self.dss().await?;
        let me = self.client_id().to_owned();
        match &p.change {
            PendingChange::PutIntent { state, details } => match dss.get_intent(&p.id).await {
                Ok(r) if r.operational_intent_reference.manager == me => {
                    let r = r.operational_intent_reference;
                    if Some(r.version) != p.previous_version {
                        // The DSS made the change: finish it with the details we meant.
                        let state = OperationalIntentState::parse(state)
                            .ok_or_else(|| UssError::Storage(format!("write-ahead record with state `{state}`")))?;
                        let volumes =
                            api::extents_from_wire(&details.volumes).map_err(|e| UssError::Storage(e.message))?;
                        let own = OwnIntent {
                            reference: r,
                            state,
                            priority: details.priority,
                            volumes,
                            off_nominal_volumes: vec![],
                            notified: vec![],
                        };
                        self.record_intent(&own)?;
                    } else {
                        self.drop_pending(&p.id)?;
                    }
                }
                Ok(_) => return Err(UssError::Forbidden(format!("the DSS names another manager for {}", p.id))),
                Err(e) if e.status() == 404 => {
                    // Never made, or gone since: we hold nothing the DSS does not.
                    self.db.apply(&[Write::Delete(Table::OwnIntents, &p.id), Write::Delete(Table::Pending, &p.id)])?;
                    let mut mem = self.mem.write();
                    mem.own_intents.remove(&p.id);
                    mem.pending.remove(&p.id);
                }
                Err(e) => return Err(dss_error("the DSS could not be asked", e)),
            },
            PendingChange::DeleteIntent => match dss.get_intent(&p.id).await {
                Ok(r) => {
                    // The removal did not happen: keep the intent, with the DSS's reference.
                    let current = self.mem.read().own_intents.get(&p.id).cloned();
                    if let Some(mut own) = current {
                        own.reference = r.operational_intent_reference;
                        self.record_intent(&own)?;
                    } else {
                        self.drop_pending(&p.id)?;
                    }
                }
                Err(e) if e.status() == 404 => {
                    self.db.apply(&[Write::Delete(Table::OwnIntents, &p.id), Write::Delete(Table::Pending, &p.id)])?;
                    let mut mem = self.mem.write();
                    mem.own_intents.remove(&p.id);
                    mem.pending.remove(&p.id);
                }
                Err(e) => return Err(dss_error("the DSS could not be asked", e)),
            },
            PendingChange::PutConstraint { details } => match dss.get_constraint(&p.id).await {
                Ok(r) if r.constraint_reference.manager == me => {
                    let volumes = api::extents_from_wire(&details.volumes).map_err(|e| UssError::Storage(e.message))?;
                    self.record_constraint(&OwnConstraint {
                        reference: r.constraint_reference,
                        volumes,
                        notified: vec![],
                    })?;
                }
                Ok(_) => return Err(UssError::Forbidden(format!("the DSS names another manager for {}", p.id))),
                Err(e) if e.status() == 404 => self.drop_pending(&p.id)?,
                Err(e) => return Err(dss_error("the DSS could not be asked", e)),
            },
            PendingChange::DeleteConstraint => match dss.get_constraint(&p.id).await {
                Ok(_) => self.drop_pending(&p.id)?,
                Err(e) if e.status() == 404 => {
                    self.db
                        .apply(&[Write::Delete(Table::OwnConstraints, &p.id), Write::Delete(Table::Pending, &p.id)])?;
                    let mut mem = self.mem.write();
                    mem.own_constraints.remove(&p.id);
                    mem.pending.remove(&p.id);
                }
                Err(e) => return Err(dss_error("the DSS could not be asked", e)),
            },
        }
        self.remove_orphans(&p.area()).await;
        Ok(())
    }

    fn drop_pending(&self, id: &str) -> Result<(), UssError> {
        self.db.delete(Table::Pending, id)?;
        self.mem.write().pending.remove(id);
        Ok(())
    }

    /// Removes from the DSS any reference of ours in `area` that this participant holds no
    /// record of: nobody could serve its details, so every peer would see it as unverifiable,
    /// and nobody flies it.
    pub(crate) async fn remove_orphans(&self, area: &[api::Volume4D]) {
        let Ok(dss) = self.dss().await else { return };
        for v in area {
            let Ok(q) = dss.query_intents(v).await else { continue };
            for r in q.operational_intent_references {
                let known = {
                    let mem = self.mem.read();
                    mem.own_intents.contains_key(&r.id) || mem.pending.contains_key(&r.id)
                };
                if r.manager != self.client_id() || known {
                    continue;
                }
                let Some(ovn) = r.ovn.clone() else { continue };
                match dss.delete_intent(&r.id, &ovn).await {
                    Ok(_) => tracing::warn!(id = %r.id, "removed an orphaned reference of ours from the DSS"),
                    Err(e) => tracing::warn!(id = %r.id, error = %e, "could not remove an orphaned reference"),
                }
            }
        }
    }

    /// Takes the DSS's current reference of each of our intents (we may have stopped after it
    /// answered); drops records of intents the DSS no longer holds.
    async fn refresh_own(&self) {
        let Ok(dss) = self.dss().await else { return };
        let ids: Vec<String> = self.mem.read().own_intents.keys().cloned().collect();
        for id in ids {
            match dss.get_intent(&id).await {
                Ok(r) => {
                    let own = self.mem.read().own_intents.get(&id).cloned();
                    if let Some(mut own) = own {
                        if own.reference.version != r.operational_intent_reference.version
                            || own.reference.ovn != r.operational_intent_reference.ovn
                        {
                            own.reference = r.operational_intent_reference;
                            if let Err(e) = self.record_intent(&own) {
                                tracing::warn!(error = %e, "could not refresh an own intent");
                            }
                        }
                    }
                }
                Err(e) if e.status() == 404 => {
                    if self.db.delete(Table::OwnIntents, &id).is_ok() {
                        self.mem.write().own_intents.remove(&id);
                    }
                }
                Err(_) => {}
            }
        }
    }
}

/// The entity a notification is about, at the version it announced.
#[derive(Debug, Clone)]
enum Subject {
    Intent { id: String, version: Option<i32> },
    Constraint { id: String, version: Option<i32> },
}

/// Network failures, overload and server errors may pass; a 4xx answer will not.
fn retryable(d: &Delivery) -> bool {
    d.status == 0 && !d.detail.starts_with("not sent") || d.status == 429 || d.status >= 500
}
