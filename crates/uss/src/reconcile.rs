//! After a restart: every write-ahead record is finished or undone against the DSS, references
//! of ours that nothing here explains are removed, and our records take the DSS's current
//! references.
//!
//! For each kind of change, what the DSS holds decides:
//!
//! | write-ahead record | DSS holds it, ours, at a new version | at the previous version | holds none |
//! |---|---|---|---|
//! | put intent | record it with the details we meant | drop the record | drop the intent too |
//! | delete intent | keep the intent (removal did not happen) | (same) | drop the intent |
//! | put constraint | record it | (same) | drop the record |
//! | delete constraint | drop the record (keep the constraint) | (same) | drop the constraint |
//! | put subscription | record it for the map | (same) | drop the record |
//!
//! A reference naming another manager is refused (nothing here changes); a DSS that cannot be
//! asked leaves the record for the next round.

use std::time::Duration;

use crate::domain::Kind;
use crate::entities::{Change, OwnConstraint, OwnIntent, Pending};
use crate::error::UssError;
use crate::Uss;

impl Uss {
    /// Reconciles at start-up until no change that was in flight at the last stop remains,
    /// waiting 1 s after an attempt that left some (the DSS unreachable), doubling to 30 s.
    pub async fn reconcile_until_done(&self) {
        let mut delay = Duration::from_secs(1);
        while self.reconcile().await > 0 {
            self.clock.sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    /// Finishes or undoes every change that was in flight when the participant stopped, removes
    /// references of ours in their areas that nothing here explains, and refreshes our records
    /// from the DSS. Returns how many write-ahead records remain (the DSS could not be asked).
    pub async fn reconcile(&self) -> usize {
        let mut remaining = 0;
        for p in self.records.pendings() {
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
        let ask = |e| UssError::from_dss("the DSS could not be asked", e);
        let another = || UssError::Forbidden(format!("the DSS names another manager for {}", p.id));
        let me = self.client_id();
        match &p.change {
            Change::PutIntent { state, priority, volumes, off_nominal } => {
                match self.dss.get(Kind::Intent, &p.id).await.map_err(ask)? {
                    Some(r) if r.manager != me => return Err(another()),
                    // The DSS made the change: finish it with the details we meant.
                    Some(r) if Some(r.version) != p.previous_version => {
                        self.settle(
                            &OwnIntent::new(r, *state, *priority, volumes.clone())
                                .with_off_nominal(off_nominal.clone()),
                        )
                        .await?
                    }
                    Some(_) => self.drop_pending(&p.id).await?,
                    // Never made, or gone since: we hold nothing the DSS does not.
                    None => self.records.settle_removed(Kind::Intent, &p.id).await?,
                }
            }
            Change::DeleteIntent => match self.dss.get(Kind::Intent, &p.id).await.map_err(ask)? {
                // The removal did not happen: keep the intent, with the DSS's reference.
                Some(r) => match self.records.own::<OwnIntent>(&p.id) {
                    Some(own) => self.settle(&OwnIntent { reference: r, ..own }).await?,
                    None => self.drop_pending(&p.id).await?,
                },
                None => self.records.settle_removed(Kind::Intent, &p.id).await?,
            },
            Change::PutConstraint { volumes } => match self.dss.get(Kind::Constraint, &p.id).await.map_err(ask)? {
                Some(r) if r.manager != me => return Err(another()),
                Some(r) => {
                    self.settle(&OwnConstraint { reference: r, volumes: volumes.clone(), notified: vec![] }).await?
                }
                None => self.drop_pending(&p.id).await?,
            },
            Change::DeleteConstraint => match self.dss.get(Kind::Constraint, &p.id).await.map_err(ask)? {
                Some(_) => self.drop_pending(&p.id).await?,
                None => self.records.settle_removed(Kind::Constraint, &p.id).await?,
            },
            Change::PutSubscription { volume } => {
                if self.dss.has_subscription(&p.id).await.map_err(ask)? {
                    self.settle_subscription(&p.id, volume).await?;
                } else {
                    self.drop_pending(&p.id).await?;
                }
            }
        }
        self.remove_orphans(p.area()).await;
        Ok(())
    }

    async fn drop_pending(&self, id: &str) -> Result<(), UssError> {
        Ok(self.records.drop_pending(id).await?)
    }

    /// Removes from the DSS any reference of ours in `area` that this participant holds no
    /// record of: nobody could serve its details, so every peer would see it as unverifiable,
    /// and nobody flies it.
    pub(crate) async fn remove_orphans(&self, area: &[geo4d::Volume4D]) {
        for v in area {
            let Ok(found) = self.dss.query(Kind::Intent, v).await else { continue };
            for r in found {
                let known = self.records.read(|m| m.own_intents.contains_key(&r.id) || m.pending.contains_key(&r.id));
                if r.manager != self.client_id() || known {
                    continue;
                }
                let Some(ovn) = r.ovn.as_deref() else { continue };
                match self.dss.delete(Kind::Intent, &r.id, ovn).await {
                    Ok(_) => tracing::warn!(id = %r.id, "removed an orphaned reference of ours from the DSS"),
                    Err(e) => tracing::warn!(id = %r.id, error = %e, "could not remove an orphaned reference"),
                }
            }
        }
    }

    /// Takes the DSS's current reference of each of our intents (we may have stopped after it
    /// answered); drops records of intents the DSS no longer holds.
    async fn refresh_own(&self) {
        let ids: Vec<String> = self.records.read(|m| m.own_intents.keys().cloned().collect());
        for id in ids {
            match self.dss.get(Kind::Intent, &id).await {
                Ok(Some(r)) => {
                    let Some(own) = self.records.own::<OwnIntent>(&id) else { continue };
                    if own.reference.version != r.version || own.reference.ovn != r.ovn {
                        let state = own.state;
                        let mut refreshed = OwnIntent { reference: r, ..own };
                        refreshed.reference.state = Some(state);
                        if let Err(e) = self.settle(&refreshed).await {
                            tracing::warn!(error = %e, "could not refresh an own intent");
                        }
                    }
                }
                Ok(None) => {
                    if let Err(e) = self.records.remove_own(Kind::Intent, &id).await {
                        tracing::warn!(error = %e, %id, "could not drop an own intent the DSS no longer holds");
                    }
                }
                Err(_) => {}
            }
        }
    }
}
