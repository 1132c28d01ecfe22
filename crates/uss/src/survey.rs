//! What is in the airspace around a plan: the DSS's references there, then each manager's
//! details (in parallel, with a timeout and a size cap, cached by version), each verified
//! against its DSS reference. The result is the planner's [`planner::Airspace`] and the key of
//! OVNs that proves we saw it; anything that could not be verified is an
//! [`planner::Unverifiable`] entry, never free airspace.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use geo4d::Volume4D;

use crate::domain::{Kind, Reference};
use crate::entities::{verify_constraint, verify_intent, KnownConstraint, KnownIntent};
use crate::error::UssError;
use crate::Uss;

/// What a survey found.
#[derive(Default)]
pub(crate) struct Survey {
    pub airspace: planner::Airspace,
    /// OVNs of every verified entity found (ours included).
    pub key: Vec<String>,
    /// Some references are ours with a change of our own in flight: waiting may clear them.
    pub own_in_flight: bool,
}

fn unverifiable(r: &Reference, reason: String) -> planner::Unverifiable {
    planner::Unverifiable {
        kind: match r.kind {
            Kind::Intent => planner::EntryKind::OperationalIntent,
            Kind::Constraint => planner::EntryKind::Constraint,
        },
        id: r.id.clone(),
        manager: r.manager.clone(),
        state: r.state,
        time: r.time,
        reason,
    }
}

impl Uss {
    /// Surveys `area`. `self_id` is the intent being changed (left out of the picture).
    pub(crate) async fn survey(&self, area: &[Volume4D], self_id: Option<&str>) -> Result<Survey, UssError> {
        let mut refs: BTreeMap<String, Reference> = BTreeMap::new();
        let mut crefs: BTreeMap<String, Reference> = BTreeMap::new();
        for v in area {
            let found = self.dss.query(Kind::Intent, v).await.map_err(|e| UssError::from_dss("DSS query failed", e))?;
            refs.extend(found.into_iter().map(|r| (r.id.clone(), r)));
            if self.has_scope("utm.constraint_processing") {
                let found = self
                    .dss
                    .query(Kind::Constraint, v)
                    .await
                    .map_err(|e| UssError::from_dss("DSS constraint query failed", e))?;
                crefs.extend(found.into_iter().map(|r| (r.id.clone(), r)));
            }
        }
        let mut survey = Survey::default();
        let mut intents_to_fetch = Vec::new();
        let mut constraints_to_fetch = Vec::new();
        self.records.read(|mem| {
            for r in refs.into_values() {
                if Some(r.id.as_str()) == self_id {
                    continue;
                }
                if r.manager == self.client_id() {
                    match (mem.own_intents.get(&r.id), mem.pending.contains_key(&r.id)) {
                        (Some(own), false) if own.reference.version == r.version => {
                            survey.key.push(own.ovn().to_owned());
                            survey.airspace.intents.push(own.to_planner());
                        }
                        (_, true) => {
                            survey.own_in_flight = true;
                            survey
                                .airspace
                                .unverifiable
                                .push(unverifiable(&r, "another change of this participant to it is in flight".into()));
                        }
                        _ => survey.airspace.unverifiable.push(unverifiable(
                            &r,
                            "the DSS holds a reference of ours that this participant has no current record of".into(),
                        )),
                    }
                    continue;
                }
                match mem.others_intents.get(&r.id) {
                    Some(k) if k.reference.manager == r.manager && k.reference.version == r.version => {
                        survey.key.extend(k.reference.ovn.clone());
                        survey.airspace.intents.push(k.to_planner());
                    }
                    _ => intents_to_fetch.push(r),
                }
            }
            for r in crefs.into_values() {
                if r.manager == self.client_id() {
                    match mem.own_constraints.get(&r.id) {
                        Some(own) if own.reference.version == r.version => {
                            survey.key.extend(own.reference.ovn.clone());
                            survey.airspace.constraints.push(own.to_planner());
                        }
                        _ => survey.airspace.unverifiable.push(unverifiable(
                            &r,
                            "the DSS holds a constraint of ours that this participant has no current record of".into(),
                        )),
                    }
                    continue;
                }
                match mem.others_constraints.get(&r.id) {
                    Some(k) if k.reference.manager == r.manager && k.reference.version == r.version => {
                        survey.key.extend(k.reference.ovn.clone());
                        survey.airspace.constraints.push(k.to_planner());
                    }
                    _ => constraints_to_fetch.push(r),
                }
            }
        });
        let fetched = join_all(intents_to_fetch.into_iter().map(|r| async move {
            let got = self.fetch_intent(&r).await;
            (r, got)
        }));
        let fetched_constraints = join_all(constraints_to_fetch.into_iter().map(|r| async move {
            let got = self.fetch_constraint(&r).await;
            (r, got)
        }));
        let (fetched, fetched_constraints) = tokio::join!(fetched, fetched_constraints);
        for (r, got) in fetched {
            match got {
                Ok(k) => {
                    survey.key.extend(k.reference.ovn.clone());
                    survey.airspace.intents.push(k.to_planner());
                    self.remember_intent(k).await;
                }
                // Only what the DSS requires in keys must be deconflicted (F3548 availability
                // arbitration: a Down USS's Accepted intents do not block); everything else
                // unverified blocks the plan.
                Err(_) if !r.must_appear_in_keys() => {}
                Err(why) => {
                    self.notify_user(
                        "Unknown",
                        format!(
                            "the details of operational intent {} of {} could not be obtained: {why}",
                            r.id, r.manager
                        ),
                    )
                    .await;
                    survey.airspace.unverifiable.push(unverifiable(&r, why));
                }
            }
        }
        for (r, got) in fetched_constraints {
            match got {
                Ok(k) => {
                    survey.key.extend(k.reference.ovn.clone());
                    survey.airspace.constraints.push(k.to_planner());
                    self.remember_constraint(k).await;
                }
                Err(why) => survey.airspace.unverifiable.push(unverifiable(&r, why)),
            }
        }
        survey.key.sort();
        survey.key.dedup();
        Ok(survey)
    }

    /// Caches verified details (the cache is an optimisation, so a failed disk write only
    /// costs a refetch).
    pub(crate) async fn remember_intent(&self, k: KnownIntent) {
        if let Err(e) = self.records.remember_intent(k).await {
            tracing::warn!(error = %e, "could not cache a peer's details on disk");
        }
    }

    pub(crate) async fn remember_constraint(&self, k: KnownConstraint) {
        if let Err(e) = self.records.remember_constraint(k).await {
            tracing::warn!(error = %e, "could not cache a peer's constraint on disk");
        }
    }

    async fn fetch_intent(&self, r: &Reference) -> Result<KnownIntent, String> {
        verify_intent(r, self.peers.intent_details(r).await?)
    }

    async fn fetch_constraint(&self, r: &Reference) -> Result<KnownConstraint, String> {
        verify_constraint(r, self.peers.constraint_details(r).await?)
    }
}
