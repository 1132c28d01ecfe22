//! What is in the airspace around a plan: the DSS's references there, then each manager's
//! details (in parallel, with a timeout and a size cap, cached by version), each verified
//! against its DSS reference. The result is the planner's [`planner::Airspace`] and the key of
//! OVNs that proves we saw it; anything that could not be verified is an
//! [`planner::Unverifiable`] entry, never free airspace.

use std::collections::BTreeMap;

use api::{ConstraintReference, OperationalIntentReference};
use client::DssClient;
use futures_util::future::join_all;
use geo4d::{TimeWindow, Volume4D};
use model::OperationalIntentState;

use crate::db::Table;
use crate::error::UssError;
use crate::records::{verify_constraint, verify_intent, KnownConstraint, KnownIntent};
use crate::{Uss, MAX_PEER_ANSWER_BYTES};

/// What a survey found.
#[derive(Default)]
pub(crate) struct Survey {
    pub airspace: planner::Airspace,
    /// OVNs of every verified entity found (ours included).
    pub key: Vec<String>,
    /// Some references are ours with a change of our own in flight: waiting may clear them.
    pub own_in_flight: bool,
}

fn reference_window(start: &api::Time, end: &api::Time) -> TimeWindow {
    let s = api::time_from_wire(start, "time_start").ok();
    let e = api::time_from_wire(end, "time_end").ok();
    // An unreadable bound is open: the entry then blocks more, never less.
    TimeWindow::new(s, e).unwrap_or_else(|_| TimeWindow::unbounded())
}

fn unverifiable_intent(r: &OperationalIntentReference, reason: String) -> planner::Unverifiable {
    planner::Unverifiable {
        kind: planner::EntryKind::OperationalIntent,
        id: r.id.clone(),
        manager: r.manager.clone(),
        state: OperationalIntentState::parse(&r.state),
        time: reference_window(&r.time_start, &r.time_end),
        reason,
    }
}

fn unverifiable_constraint(r: &ConstraintReference, reason: String) -> planner::Unverifiable {
    planner::Unverifiable {
        kind: planner::EntryKind::Constraint,
        id: r.id.clone(),
        manager: r.manager.clone(),
        state: None,
        time: reference_window(&r.time_start, &r.time_end),
        reason,
    }
}

impl Uss {
    pub(crate) async fn dss(&self) -> Result<DssClient, UssError> {
        let token = self
            .tokens
            .token_for(&self.config.dss_url)
            .await
            .map_err(|e| UssError::Upstream(format!("no token for the DSS: {e}")))?;
        Ok(DssClient::new(self.http.clone(), &self.config.dss_url, token))
    }

    /// Surveys `area`. `self_id` is the intent being changed (left out of the picture).
    pub(crate) async fn survey(&self, area: &[Volume4D], self_id: Option<&str>) -> Result<Survey, UssError> {
        let dss = self.dss().await?;
        let mut refs: BTreeMap<String, OperationalIntentReference> = BTreeMap::new();
        let mut crefs: BTreeMap<String, ConstraintReference> = BTreeMap::new();
        for v in area {
            let wire = api::volume_to_wire(v);
            let q = dss.query_intents(&wire).await.map_err(|e| UssError::from_dss("DSS query failed", e))?;
            for r in q.operational_intent_references {
                refs.insert(r.id.clone(), r);
            }
            if self.has_scope("utm.constraint_processing") {
                let q = dss
                    .query_constraints(&wire)
                    .await
                    .map_err(|e| UssError::from_dss("DSS constraint query failed", e))?;
                for r in q.constraint_references {
                    crefs.insert(r.id.clone(), r);
                }
            }
        }
        let mut survey = Survey::default();
        let mut intents_to_fetch = Vec::new();
        let mut constraints_to_fetch = Vec::new();
        {
            let mem = self.mem.read();
            for r in refs.into_values() {
                if Some(r.id.as_str()) == self_id {
                    continue;
                }
                if r.manager == self.client_id() {
                    match (mem.own_intents.get(&r.id), mem.pending.contains_key(&r.id)) {
                        (Some(own), false) if own.reference.version == r.version => {
                            survey.key.push(own.ovn().to_owned());
                            survey.airspace.intents.push(planner::KnownIntent {
                                id: r.id.clone(),
                                manager: r.manager.clone(),
                                state: own.state,
                                priority: own.priority,
                                volumes: own.volumes.iter().chain(&own.off_nominal_volumes).cloned().collect(),
                            });
                        }
                        (_, true) => {
                            survey.own_in_flight = true;
                            survey.airspace.unverifiable.push(unverifiable_intent(
                                &r,
                                "another change of this participant to it is in flight".into(),
                            ));
                        }
                        _ => survey.airspace.unverifiable.push(unverifiable_intent(
                            &r,
                            "the DSS holds a reference of ours that this participant has no current record of".into(),
                        )),
                    }
                    continue;
                }
                match mem.others_intents.get(&r.id) {
                    Some(k) if k.reference().manager == r.manager && k.reference().version == r.version => {
                        survey.key.extend(k.reference().ovn.clone());
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
                            survey.airspace.constraints.push(planner::KnownConstraint {
                                id: r.id.clone(),
                                manager: r.manager.clone(),
                                volumes: own.volumes.clone(),
                            });
                        }
                        _ => survey.airspace.unverifiable.push(unverifiable_constraint(
                            &r,
                            "the DSS holds a constraint of ours that this participant has no current record of".into(),
                        )),
                    }
                    continue;
                }
                match mem.others_constraints.get(&r.id) {
                    Some(k) if k.wire.reference.manager == r.manager && k.wire.reference.version == r.version => {
                        survey.key.extend(k.wire.reference.ovn.clone());
                        survey.airspace.constraints.push(planner::KnownConstraint {
                            id: r.id.clone(),
                            manager: r.manager.clone(),
                            volumes: k.volumes.clone(),
                        });
                    }
                    _ => constraints_to_fetch.push(r),
                }
            }
        }
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
                    survey.key.extend(k.reference().ovn.clone());
                    survey.airspace.intents.push(k.to_planner());
                    self.remember_intent(k);
                }
                // A Down USS's Accepted intents need not be deconflicted (the DSS does not ask
                // for them in keys either: F3548 availability arbitration); everything else
                // unverified blocks the plan.
                Err(_) if r.uss_availability == "Down" && r.state == "Accepted" => {}
                Err(why) => {
                    self.notify_user(
                        "Unknown",
                        format!(
                            "the details of operational intent {} of {} could not be obtained: {why}",
                            r.id, r.manager
                        ),
                    );
                    survey.airspace.unverifiable.push(unverifiable_intent(&r, why));
                }
            }
        }
        for (r, got) in fetched_constraints {
            match got {
                Ok(k) => {
                    survey.key.extend(k.wire.reference.ovn.clone());
                    survey.airspace.constraints.push(planner::KnownConstraint {
                        id: r.id.clone(),
                        manager: r.manager.clone(),
                        volumes: k.volumes.clone(),
                    });
                    self.remember_constraint(k);
                }
                Err(why) => survey.airspace.unverifiable.push(unverifiable_constraint(&r, why)),
            }
        }
        survey.key.sort();
        survey.key.dedup();
        Ok(survey)
    }

    /// Caches verified details (memory, then disk; the cache is an optimisation, so a failed
    /// disk write only costs a refetch).
    pub(crate) fn remember_intent(&self, k: KnownIntent) {
        if let Err(e) = self.db.put(Table::OthersIntents, &k.wire.reference.id, &k.wire) {
            tracing::warn!(error = %e, "could not cache a peer's details on disk");
        }
        let mut mem = self.mem.write();
        let newer = mem
            .others_intents
            .get(&k.wire.reference.id)
            .is_none_or(|c| c.wire.reference.version <= k.wire.reference.version);
        if newer {
            mem.others_intents.insert(k.wire.reference.id.clone(), k);
        }
    }

    pub(crate) fn remember_constraint(&self, k: KnownConstraint) {
        if let Err(e) = self.db.put(Table::OthersConstraints, &k.wire.reference.id, &k.wire) {
            tracing::warn!(error = %e, "could not cache a peer's constraint on disk");
        }
        self.mem.write().others_constraints.insert(k.wire.reference.id.clone(), k);
    }

    pub(crate) fn forget_intent(&self, id: &str) -> Result<(), UssError> {
        self.db.delete(Table::OthersIntents, id)?;
        self.mem.write().others_intents.remove(id);
        Ok(())
    }

    pub(crate) fn forget_constraint(&self, id: &str) -> Result<(), UssError> {
        self.db.delete(Table::OthersConstraints, id)?;
        self.mem.write().others_constraints.remove(id);
        Ok(())
    }

    /// GETs `url` from a peer: bounded in time (connect and whole answer) and in size.
    pub(crate) async fn peer_get<T: serde::de::DeserializeOwned>(&self, base: &str, path: &str) -> Result<T, String> {
        // Appended to the base URL's path, its query kept; a base URL with a fragment, user
        // information or another scheme is never called (the entity stays unverifiable).
        let url = model::peer_url(base, path).map_err(|e| format!("its uss_base_url {e}"))?;
        let token = self.tokens.token_for(&url).await?;
        let timeout = self.config.peer_timeout;
        let work = async {
            let mut resp =
                self.http.get(&url).bearer_auth(token).send().await.map_err(|e| format!("unreachable: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("its USS answered HTTP {}", resp.status().as_u16()));
            }
            if resp.content_length().is_some_and(|n| n > MAX_PEER_ANSWER_BYTES as u64) {
                return Err(format!("its USS's answer is larger than {MAX_PEER_ANSWER_BYTES} bytes and was refused"));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| format!("its USS's answer broke off: {e}"))? {
                if body.len() + chunk.len() > MAX_PEER_ANSWER_BYTES {
                    return Err(format!("its USS's answer exceeded {MAX_PEER_ANSWER_BYTES} bytes and was cut off"));
                }
                body.extend_from_slice(&chunk);
            }
            serde_json::from_slice(&body).map_err(|e| format!("its USS sent details that cannot be read: {e}"))
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| format!("its USS did not answer within {} s", timeout.as_secs()))?
    }

    async fn fetch_intent(&self, r: &OperationalIntentReference) -> Result<KnownIntent, String> {
        let got: api::GetOperationalIntentDetailsResponse =
            self.peer_get(&r.uss_base_url, &format!("/uss/v1/operational_intents/{}", r.id)).await?;
        verify_intent(r, got.operational_intent)
    }

    async fn fetch_constraint(&self, r: &ConstraintReference) -> Result<KnownConstraint, String> {
        let got: api::GetConstraintDetailsResponse =
            self.peer_get(&r.uss_base_url, &format!("/uss/v1/constraints/{}", r.id)).await?;
        verify_constraint(r, got.constraint)
    }
}
