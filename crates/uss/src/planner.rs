//! Strategic deconfliction: survey the airspace (DSS references, then each owner's details, in
//! parallel with a timeout), check conflicts exactly with the standard's priority rule, write the
//! reference with a complete key (refreshing and retrying after a 409), notify the subscribers
//! the DSS names, and explain refusals with a re-checked proposal.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use api::{
    OperationalIntent, OperationalIntentDetails, OperationalIntentReference, PutOperationalIntentReferenceParameters,
    Volume4D,
};
use client::{ClientError, DssClient};
use futures_util::future::join_all;
use geo4d::Timestamp;

use crate::operator::{ConflictItem, PlanOutcome, Proposal};
use crate::state::{Delivery, OwnIntent};
use crate::Uss;

/// How far ahead a time-shift proposal may move a plan.
pub const PROPOSAL_HORIZON_S: i64 = 2 * 3600;
/// Attempts at writing a plan when the airspace keeps changing under it.
const MAX_ATTEMPTS: usize = 5;

/// Another operation as this participant knows it.
pub struct Other {
    pub reference: OperationalIntentReference,
    pub priority: i32,
    pub volumes: Vec<geo4d::Volume4D>,
    pub ovn: Option<String>,
}

pub struct ConstraintSeen {
    pub reference: api::ConstraintReference,
    pub volumes: Vec<geo4d::Volume4D>,
    pub ovn: Option<String>,
}

/// What a survey found: others' operations with details, constraints, and what could not be
/// verified because its owner did not answer.
#[derive(Default)]
pub struct Survey {
    pub others: Vec<Other>,
    pub constraints: Vec<ConstraintSeen>,
    pub unverifiable: Vec<(OperationalIntentReference, String)>,
    pub own_ovns: Vec<String>,
}

impl Survey {
    fn key(&self) -> Vec<String> {
        let mut key: Vec<String> = self.own_ovns.clone();
        key.extend(self.others.iter().filter_map(|o| o.ovn.clone()));
        key.extend(self.constraints.iter().filter_map(|c| c.ovn.clone()));
        key.sort();
        key.dedup();
        key
    }
}

fn domain(vols: &[Volume4D]) -> Result<Vec<geo4d::Volume4D>, String> {
    vols.iter()
        .enumerate()
        .map(|(i, v)| api::volume_from_wire(v, &format!("volumes[{i}]")).map_err(|e| e.message))
        .collect()
}

fn ts(t: Option<Timestamp>) -> String {
    t.map(|t| api::time_to_wire(t).value).unwrap_or_default()
}

/// Shifts every volume by `seconds`.
fn shifted(vols: &[Volume4D], seconds: i64) -> Result<Vec<Volume4D>, String> {
    vols.iter()
        .map(|v| {
            let mv = |t: &Option<api::Time>| -> Result<Option<api::Time>, String> {
                t.as_ref()
                    .map(|t| {
                        api::time_from_wire(t, "time")
                            .map(|x| api::time_to_wire(x.plus_seconds(seconds)))
                            .map_err(|e| e.message)
                    })
                    .transpose()
            };
            Ok(Volume4D { volume: v.volume.clone(), time_start: mv(&v.time_start)?, time_end: mv(&v.time_end)? })
        })
        .collect()
}

fn raised(vols: &[Volume4D], metres: f64) -> Vec<Volume4D> {
    vols.iter()
        .map(|v| {
            let mut v = v.clone();
            for a in [&mut v.volume.altitude_lower, &mut v.volume.altitude_upper].into_iter().flatten() {
                a.value += metres;
            }
            v
        })
        .collect()
}

/// Extends each volume's end by the proposal horizon, so one survey also covers proposals.
fn widened(vols: &[Volume4D]) -> Vec<Volume4D> {
    vols.iter()
        .map(|v| {
            let mut v = v.clone();
            if let Some(t) = &v.time_end {
                if let Ok(end) = api::time_from_wire(t, "time_end") {
                    v.time_end = Some(api::time_to_wire(end.plus_seconds(PROPOSAL_HORIZON_S)));
                }
            }
            v
        })
        .collect()
}

/// Conflicts of `mine` (priority `priority`) with what the survey found. A plan may conflict
/// with lower-priority operations only (ASTM F3548 priority rule; equal priority conflicts are
/// refused, the conservative choice where the regulator allows neither).
pub fn conflicts(mine: &[geo4d::Volume4D], priority: i32, survey: &Survey, self_id: Option<&str>) -> Vec<ConflictItem> {
    let mut out = Vec::new();
    let overlap = |a: &geo4d::Volume4D, b: &geo4d::Volume4D| {
        let start = a.time.start().max(b.time.start());
        let end = match (a.time.end(), b.time.end()) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        let lo = a.altitude.lower_m().unwrap_or(f64::MIN).max(b.altitude.lower_m().unwrap_or(f64::MIN));
        let hi = a.altitude.upper_m().unwrap_or(f64::MAX).min(b.altitude.upper_m().unwrap_or(f64::MAX));
        (ts(start), ts(end), [lo, hi])
    };
    for o in &survey.others {
        if Some(o.reference.id.as_str()) == self_id || o.priority < priority {
            continue;
        }
        for (i, mv) in mine.iter().enumerate() {
            for (j, ov) in o.volumes.iter().enumerate() {
                if mv.intersects(ov) {
                    let (s, e, band) = overlap(mv, ov);
                    out.push(ConflictItem {
                        kind: "operational_intent".into(),
                        id: o.reference.id.clone(),
                        manager: o.reference.manager.clone(),
                        priority: Some(o.priority),
                        state: Some(o.reference.state.clone()),
                        my_volume: i,
                        their_volume: Some(j),
                        overlap_start: s,
                        overlap_end: e,
                        overlap_altitude_m: Some(band),
                        reason: format!(
                            "intersects volume {j} of {}'s operation (priority {} >= {priority})",
                            o.reference.manager, o.priority
                        ),
                    });
                }
            }
        }
    }
    for c in &survey.constraints {
        for (i, mv) in mine.iter().enumerate() {
            for (j, cv) in c.volumes.iter().enumerate() {
                if mv.intersects(cv) {
                    let (s, e, band) = overlap(mv, cv);
                    out.push(ConflictItem {
                        kind: "constraint".into(),
                        id: c.reference.id.clone(),
                        manager: c.reference.manager.clone(),
                        priority: None,
                        state: None,
                        my_volume: i,
                        their_volume: Some(j),
                        overlap_start: s,
                        overlap_end: e,
                        overlap_altitude_m: Some(band),
                        reason: format!("enters a restricted zone published by {}", c.reference.manager),
                    });
                }
            }
        }
    }
    for (r, why) in &survey.unverifiable {
        if Some(r.id.as_str()) == self_id {
            continue;
        }
        let (Ok(rs), Ok(re)) = (api::time_from_wire(&r.time_start, "t"), api::time_from_wire(&r.time_end, "t")) else {
            continue;
        };
        for (i, mv) in mine.iter().enumerate() {
            let window = geo4d::TimeWindow::new(Some(rs), Some(re));
            if window.is_ok_and(|w| w.overlaps(&mv.time)) {
                out.push(ConflictItem {
                    kind: "unverifiable".into(),
                    id: r.id.clone(),
                    manager: r.manager.clone(),
                    priority: None,
                    state: Some(r.state.clone()),
                    my_volume: i,
                    their_volume: None,
                    overlap_start: ts(Some(rs.max(mv.time.start().unwrap_or(rs)))),
                    overlap_end: ts(Some(re.min(mv.time.end().unwrap_or(re)))),
                    overlap_altitude_m: None,
                    reason: format!("cannot be verified: {why}"),
                });
            }
        }
    }
    out
}

impl Uss {
    pub(crate) async fn dss(&self) -> Result<DssClient, String> {
        let token = self.tokens.token_for(&self.config.dss_url).await?;
        Ok(DssClient::new(self.http.clone(), &self.config.dss_url, token))
    }

    fn has_scope(&self, scope: &str) -> bool {
        self.config.scopes.iter().any(|s| s == scope)
    }

    /// Asks the DSS what is in `area`, then each owner for details (cached by version).
    pub(crate) async fn survey(&self, area: &[Volume4D]) -> Result<Survey, String> {
        let dss = self.dss().await?;
        let mut refs: BTreeMap<String, OperationalIntentReference> = BTreeMap::new();
        let mut crefs: BTreeMap<String, api::ConstraintReference> = BTreeMap::new();
        for v in area {
            let q = dss.query_intents(v).await.map_err(|e| format!("DSS query failed: {e}"))?;
            for r in q.operational_intent_references {
                refs.insert(r.id.clone(), r);
            }
            if self.has_scope("utm.constraint_processing") {
                let q = dss.query_constraints(v).await.map_err(|e| format!("DSS constraint query failed: {e}"))?;
                for r in q.constraint_references {
                    crefs.insert(r.id.clone(), r);
                }
            }
        }
        let mut survey = Survey::default();
        let (own, cached) = {
            let s = self.state.lock().await;
            let own: HashMap<String, OwnIntent> = s.own_intents.clone().into_iter().collect();
            (own, s.others_intents.clone())
        };
        let mut to_fetch = Vec::new();
        for r in refs.into_values() {
            if r.manager == self.tokens.client_id() {
                if let Some(o) = own.get(&r.id).and_then(|o| o.intent.reference.ovn.clone()) {
                    survey.own_ovns.push(o);
                }
                if let Some(o) = own.get(&r.id) {
                    survey.others.push(Other {
                        volumes: domain(&o.intent.details.volumes).unwrap_or_default(),
                        priority: o.intent.details.priority,
                        ovn: o.intent.reference.ovn.clone(),
                        reference: r,
                    });
                }
                continue;
            }
            match cached.get(&r.id) {
                Some(c) if c.reference.version == r.version && c.reference.ovn.is_some() => {
                    survey.others.push(Other {
                        volumes: domain(&c.details.volumes).unwrap_or_default(),
                        priority: c.details.priority,
                        ovn: c.reference.ovn.clone(),
                        reference: r,
                    });
                }
                _ => to_fetch.push(r),
            }
        }
        let fetched = join_all(to_fetch.into_iter().map(|r| async move {
            let got = self.fetch_details(&r).await;
            (r, got)
        }))
        .await;
        let mut learned = Vec::new();
        for (r, got) in fetched {
            match got {
                Ok(oi) => {
                    let mut volumes = domain(&oi.details.volumes).unwrap_or_default();
                    volumes.extend(domain(&oi.details.off_nominal_volumes).unwrap_or_default());
                    survey.others.push(Other {
                        volumes,
                        priority: oi.details.priority,
                        ovn: oi.reference.ovn.clone(),
                        reference: r,
                    });
                    learned.push(oi);
                }
                // A Down USS's Accepted intents need not be deconflicted (the DSS does not ask
                // for them in keys either); everything else unverified blocks the plan.
                Err(_) if r.uss_availability == "Down" && r.state == "Accepted" => {}
                Err(why) => survey.unverifiable.push((r, why)),
            }
        }
        if !learned.is_empty() {
            let mut s = self.state.lock().await;
            for oi in learned {
                s.others_intents.insert(oi.reference.id.clone(), oi);
            }
        }
        for r in crefs.into_values() {
            let got = self.fetch_constraint(&r).await;
            match got {
                Ok(c) => survey.constraints.push(ConstraintSeen {
                    volumes: domain(&c.details.volumes).unwrap_or_default(),
                    ovn: c.reference.ovn.clone(),
                    reference: r,
                }),
                Err(_) => {
                    // Without details the reference's own extent is unknown: refuse the time
                    // window conservatively through the unverifiable list.
                    let as_oi = OperationalIntentReference {
                        id: r.id.clone(),
                        manager: r.manager.clone(),
                        uss_availability: r.uss_availability.clone(),
                        version: r.version,
                        state: "Constraint".into(),
                        ovn: None,
                        time_start: r.time_start.clone(),
                        time_end: r.time_end.clone(),
                        uss_base_url: r.uss_base_url.clone(),
                        subscription_id: String::new(),
                    };
                    survey.unverifiable.push((as_oi, "the constraint's manager did not provide its details".into()));
                }
            }
        }
        Ok(survey)
    }

    async fn peer_get<T: serde::de::DeserializeOwned>(&self, url: String) -> Result<T, String> {
        let token = self.tokens.token_for(&url).await?;
        let resp = tokio::time::timeout(self.config.peer_timeout, self.http.get(&url).bearer_auth(token).send())
            .await
            .map_err(|_| format!("no answer within {} s", self.config.peer_timeout.as_secs()))?
            .map_err(|e| format!("unreachable: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("answered HTTP {}", resp.status().as_u16()));
        }
        resp.json().await.map_err(|e| format!("sent an unreadable body: {e}"))
    }

    async fn fetch_details(&self, r: &OperationalIntentReference) -> Result<OperationalIntent, String> {
        let url = format!("{}/uss/v1/operational_intents/{}", r.uss_base_url, r.id);
        let got: api::GetOperationalIntentDetailsResponse = self.peer_get(url).await?;
        Ok(got.operational_intent)
    }

    async fn fetch_constraint(&self, r: &api::ConstraintReference) -> Result<api::Constraint, String> {
        if r.manager == self.tokens.client_id() {
            if let Some(c) = self.state.lock().await.own_constraints.get(&r.id) {
                return Ok(c.constraint.clone());
            }
        }
        let url = format!("{}/uss/v1/constraints/{}", r.uss_base_url, r.id);
        let got: api::GetConstraintDetailsResponse = self.peer_get(url).await?;
        let mut s = self.state.lock().await;
        s.others_constraints.insert(r.id.clone(), got.constraint.clone());
        Ok(got.constraint)
    }

    /// Plans (creates or modifies) an intent with these volumes. `existing` is `(id, ovn)` for
    /// a modification.
    pub(crate) async fn plan_volumes(
        &self,
        id: String,
        existing: Option<String>,
        volumes: Vec<Volume4D>,
        priority: i32,
        state: &str,
        check_conflicts: bool,
    ) -> PlanOutcome {
        let mine = match domain(&volumes) {
            Ok(m) => m,
            Err(e) => return failed(e, 0),
        };
        let mut ovn = existing;
        for attempt in 1..=MAX_ATTEMPTS {
            let survey = match self.survey(&widened(&volumes)).await {
                Ok(s) => s,
                Err(e) => return failed(e, attempt),
            };
            if check_conflicts {
                let found = conflicts(&mine, priority, &survey, Some(&id));
                if !found.is_empty() {
                    let proposal = self.propose(&volumes, &mine, priority, &survey, &id).await;
                    let mut who: Vec<String> = found
                        .iter()
                        .map(|c| format!("{} {} of {}", c.kind.replace('_', " "), c.id, c.manager))
                        .collect();
                    who.dedup();
                    return PlanOutcome {
                        outcome: "refused".into(),
                        message: format!("the plan conflicts with {}", who.join("; ")),
                        operational_intent_id: Some(id),
                        conflicts: found,
                        proposal,
                        attempts: attempt,
                        ..Default::default()
                    };
                }
            }
            let body = PutOperationalIntentReferenceParameters {
                extents: volumes.clone(),
                key: Some(survey.key()),
                state: state.into(),
                uss_base_url: self.config.base_url.clone(),
                subscription_id: None,
                new_subscription: Some(api::ImplicitSubscriptionParameters {
                    uss_base_url: self.config.base_url.clone(),
                    notify_for_constraints: Some(self.has_scope("utm.constraint_processing")),
                }),
            };
            // Keep the details before the reference exists, so peers can always fetch them.
            let details = OperationalIntentDetails { volumes: volumes.clone(), off_nominal_volumes: vec![], priority };
            let dss = match self.dss().await {
                Ok(d) => d,
                Err(e) => return failed(e, attempt),
            };
            match dss.put_intent(&id, ovn.as_deref(), &body).await {
                Ok(resp) => {
                    let intent = OperationalIntent { reference: resp.operational_intent_reference, details };
                    let notified = self.commit_and_notify(&intent, &resp.subscribers).await;
                    return PlanOutcome {
                        outcome: "planned".into(),
                        message: format!("operational intent {} is {}", id, intent.reference.state),
                        operational_intent_id: Some(id),
                        state: Some(intent.reference.state.clone()),
                        version: Some(intent.reference.version),
                        ovn: intent.reference.ovn.clone(),
                        notified,
                        attempts: attempt,
                        ..Default::default()
                    };
                }
                Err(ClientError::Conflict(c))
                    if c.missing_operational_intents.is_empty() && c.missing_constraints.is_empty() =>
                {
                    // Our OVN is stale: the DSS has a newer version of our own intent (we
                    // crashed after it answered); take the current one and try again.
                    if let Ok(cur) = dss.get_intent(&id).await {
                        ovn = cur.operational_intent_reference.ovn;
                    }
                }
                Err(ClientError::Conflict(_)) => {
                    // Someone changed the airspace after our survey: refresh and retry.
                    tokio::time::sleep(Duration::from_millis(20 * attempt as u64)).await;
                }
                Err(e) => return failed(format!("the DSS refused the plan: {e}"), attempt),
            }
        }
        failed(format!("the airspace kept changing during {MAX_ATTEMPTS} attempts; try again"), MAX_ATTEMPTS)
    }

    /// Durably records our intent, then tells every subscriber the DSS named (but ourselves).
    pub(crate) async fn commit_and_notify(
        &self,
        intent: &OperationalIntent,
        subscribers: &[api::SubscriberToNotify],
    ) -> Vec<Delivery> {
        let id = intent.reference.id.clone();
        {
            let mut s = self.state.lock().await;
            s.own_intents.insert(id.clone(), OwnIntent { intent: intent.clone(), notified: vec![] });
            self.save(&mut s);
        }
        let notified = self.notify_intent(&id, Some(intent), subscribers).await;
        let mut s = self.state.lock().await;
        if let Some(o) = s.own_intents.get_mut(&id) {
            o.notified = notified.clone();
        }
        self.save(&mut s);
        notified
    }

    pub(crate) async fn notify_intent(
        &self,
        id: &str,
        intent: Option<&OperationalIntent>,
        subscribers: &[api::SubscriberToNotify],
    ) -> Vec<Delivery> {
        self.notify_subscribers(subscribers, "/uss/v1/operational_intents", |s| {
            serde_json::to_value(api::PutOperationalIntentDetailsParameters {
                operational_intent_id: id.to_owned(),
                operational_intent: intent.cloned(),
                subscriptions: s.subscriptions.clone(),
            })
        })
        .await
    }

    /// Posts `body_for(subscriber)` to `path` of every subscribing peer (not to this USS), in
    /// parallel; one delivery record per peer.
    pub(crate) async fn notify_subscribers(
        &self,
        subscribers: &[api::SubscriberToNotify],
        path: &str,
        body_for: impl Fn(&api::SubscriberToNotify) -> serde_json::Result<serde_json::Value>,
    ) -> Vec<Delivery> {
        let sends = subscribers.iter().filter(|s| s.uss_base_url != self.config.base_url).map(|s| {
            let body = body_for(s).unwrap_or_default();
            self.post_notification(format!("{}{path}", s.uss_base_url), s.uss_base_url.clone(), body)
        });
        join_all(sends).await
    }

    async fn post_notification(&self, url: String, base: String, body: serde_json::Value) -> Delivery {
        let token = match self.tokens.token_for(&url).await {
            Ok(t) => t,
            Err(e) => return Delivery { uss_base_url: base, status: 0, acknowledged: false, detail: e },
        };
        match tokio::time::timeout(self.config.peer_timeout, self.http.post(&url).bearer_auth(token).json(&body).send())
            .await
        {
            Ok(Ok(r)) => {
                let status = r.status().as_u16();
                Delivery { uss_base_url: base, status, acknowledged: r.status().is_success(), detail: String::new() }
            }
            Ok(Err(e)) => {
                Delivery { uss_base_url: base, status: 0, acknowledged: false, detail: format!("unreachable: {e}") }
            }
            Err(_) => Delivery {
                uss_base_url: base,
                status: 0,
                acknowledged: false,
                detail: format!("no answer within {} s", self.config.peer_timeout.as_secs()),
            },
        }
    }

    /// The earliest delay within the horizon that clears every conflict, else the nearest
    /// altitude offset that does; each re-checked against a fresh survey before it is offered.
    async fn propose(
        &self,
        wire: &[Volume4D],
        mine: &[geo4d::Volume4D],
        priority: i32,
        survey: &Survey,
        id: &str,
    ) -> Option<Proposal> {
        let mut blocking: Vec<&geo4d::Volume4D> = Vec::new();
        for o in survey.others.iter().filter(|o| o.reference.id != id && o.priority >= priority) {
            blocking.extend(o.volumes.iter());
        }
        for c in &survey.constraints {
            blocking.extend(c.volumes.iter());
        }
        if !survey.unverifiable.iter().all(|(r, _)| r.id == id) {
            // Nothing can be proven clear while an owner does not answer.
            return None;
        }
        // A conflict clears only once a volume starts after the other ends: those are the
        // candidate delays, in order.
        let mut delays: Vec<i64> = Vec::new();
        for mv in mine {
            let Some(my_start) = mv.time.start() else { continue };
            for ov in &blocking {
                if let Some(end) = ov.time.end() {
                    let d = (end.micros() - my_start.micros()) / 1_000_000 + 1;
                    if d > 0 && d <= PROPOSAL_HORIZON_S {
                        delays.push(d);
                    }
                }
            }
        }
        delays.sort_unstable();
        delays.dedup();
        for d in delays.into_iter().take(32) {
            let Ok(moved) = shifted(wire, d) else { continue };
            let Ok(moved_dom) = domain(&moved) else { continue };
            if conflicts(&moved_dom, priority, survey, Some(id)).is_empty() && self.recheck(&moved, priority, id).await
            {
                return Some(Proposal {
                    shift_start_s: Some(d),
                    search_horizon_s: PROPOSAL_HORIZON_S,
                    ..Default::default()
                });
            }
        }
        // Altitude: just above or just below each blocking volume, nearest first.
        let mut offsets: Vec<f64> = Vec::new();
        for mv in mine {
            let (Some(lo), Some(hi)) = (mv.altitude.lower_m(), mv.altitude.upper_m()) else { continue };
            for ov in &blocking {
                if let (Some(olo), Some(ohi)) = (ov.altitude.lower_m(), ov.altitude.upper_m()) {
                    offsets.push(ohi + 1.0 - lo);
                    if olo - 1.0 - (hi - lo) >= 0.0 {
                        offsets.push(olo - 1.0 - hi);
                    }
                }
            }
        }
        offsets.retain(|o| o.abs() > 0.0);
        offsets.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
        for off in offsets.into_iter().take(32) {
            let moved = raised(wire, off);
            let Ok(moved_dom) = domain(&moved) else { continue };
            if conflicts(&moved_dom, priority, survey, Some(id)).is_empty() && self.recheck(&moved, priority, id).await
            {
                let band = moved_dom.first().and_then(|v| Some([v.altitude.lower_m()?, v.altitude.upper_m()?]));
                return Some(Proposal {
                    altitude_offset_m: Some(off),
                    altitude_band_m: band,
                    search_horizon_s: PROPOSAL_HORIZON_S,
                    ..Default::default()
                });
            }
        }
        None
    }

    /// A fresh survey of exactly these volumes finds no conflict.
    async fn recheck(&self, volumes: &[Volume4D], priority: i32, id: &str) -> bool {
        let (Ok(survey), Ok(dom)) = (self.survey(volumes).await, domain(volumes)) else { return false };
        conflicts(&dom, priority, &survey, Some(id)).is_empty()
    }
}

fn failed(message: String, attempts: usize) -> PlanOutcome {
    PlanOutcome { outcome: "failed".into(), message, attempts, ..Default::default() }
}
