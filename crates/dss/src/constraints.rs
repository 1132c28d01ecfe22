//! Constraint references: query, get, create/update, delete. Constraints need no key; their
//! changes notify subscriptions that asked for constraint notifications.

use std::sync::Arc;

use geo4d::Volume4D;
use model::{Constraint, EntityKind, Ovn, UssAvailability, Uuid};
use store::{Key, Kind, Precondition, Store, Txn, Write};

use crate::{Caller, Change, ConstraintView, Dss, DssError};

use crate::scopes::CONSTRAINTS_READ as READ_SCOPES;

fn not_found(id: Uuid) -> DssError {
    DssError::NotFound(format!("constraint {id} not found"))
}

impl<S: Store> Dss<S> {
    fn constraint_view(
        &self,
        constraint: Arc<Constraint>,
        caller: &Caller,
        availability: UssAvailability,
    ) -> ConstraintView {
        let show_ovn = constraint.manager == caller.manager;
        ConstraintView { constraint, availability, show_ovn }
    }

    pub async fn query_constraints(&self, caller: &Caller, area: &Volume4D) -> Result<Vec<ConstraintView>, DssError> {
        caller.require_any(READ_SCOPES)?;
        let area = std::slice::from_ref(area);
        self.fresh().await?;
        let how = self.config.discovery();
        let found = self.store.search_constraints(area, how).await?;
        self.store.settle_area(&[store::Kind::Constraint], area, how).await?;
        let mut cache = Vec::new();
        let mut out = Vec::with_capacity(found.len());
        for r in found {
            let a = self.availability_of(&mut cache, &r.value.manager).await?;
            out.push(self.constraint_view(r.value, caller, a));
        }
        Ok(out)
    }

    pub async fn get_constraint(&self, caller: &Caller, id: Uuid) -> Result<ConstraintView, DssError> {
        caller.require_any(READ_SCOPES)?;
        self.fresh().await?;
        let found = self.store.get_constraint(id).await?;
        let r = self.shown(found).await?.ok_or_else(|| not_found(id))?;
        let a = self.availability_of(&mut Vec::new(), &r.value.manager).await?;
        Ok(self.constraint_view(r.value, caller, a))
    }

    /// Creates (`ovn` is `None`) or updates a constraint reference.
    pub async fn put_constraint(
        &self,
        caller: &Caller,
        id: Uuid,
        ovn: Option<&str>,
        extents: Vec<Volume4D>,
        uss_base_url: String,
    ) -> Result<Change<ConstraintView>, DssError> {
        caller.require_any(crate::scopes::CONSTRAINTS_WRITE)?;
        self.check_base_url(&uss_base_url, "uss_base_url")?;
        self.check_entity_extents(&extents, "a constraint")?;
        self.retrying(|view| self.try_put_constraint(view, caller, id, ovn, &extents, &uss_base_url)).await
    }

    async fn try_put_constraint(
        &self,
        view: store::View,
        caller: &Caller,
        id: Uuid,
        ovn: Option<&str>,
        extents: &[Volume4D],
        uss_base_url: &str,
    ) -> Result<Change<ConstraintView>, DssError> {
        let since = view.revision;
        let old = self.store.get_constraint(id).await?;
        match (&old, ovn) {
            (Some(o), _) if o.value.manager != caller.manager => {
                return Err(DssError::Forbidden(format!("constraint {id} is managed by another USS")))
            }
            (Some(_), None) => {
                return Err(DssError::Conflict(format!(
                    "constraint {id} already exists; update it with PUT .../constraint_references/{id}/{{ovn}}"
                )))
            }
            (Some(o), Some(given)) if o.value.ovn.as_str() != given => {
                return Err(DssError::Conflict(format!("OVN `{given}` is not the current OVN of constraint {id}")))
            }
            (None, Some(given)) => {
                return Err(DssError::BadRequest(format!(
                    "constraint {id} does not exist and therefore is not at OVN `{given}`"
                )))
            }
            _ => {}
        }
        let constraint = Constraint {
            id,
            manager: caller.manager.clone(),
            version: old.as_ref().map_or(1, |o| o.value.version + 1),
            ovn: Ovn::generate(),
            extents: extents.to_vec(),
            uss_base_url: uss_base_url.to_owned(),
        };
        let mut changed = extents.to_vec();
        if let Some(o) = &old {
            changed.extend(o.value.extents.iter().cloned());
        }
        let notify = self.subscribers_for(EntityKind::Constraint, &changed).await?;
        let mut txn = Txn {
            preconditions: vec![
                Precondition::Revision { key: Key::Constraint(id), revision: old.as_ref().map(|o| o.revision) },
                Precondition::AreaUnchanged {
                    kinds: vec![Kind::Subscription],
                    envelopes: changed.iter().flat_map(|v| v.envelopes_for(self.config.discovery())).collect(),
                    since,
                },
            ],
            writes: vec![Write::PutConstraint(constraint.clone())],
        };
        self.check_quota(&caller.manager, &txn.writes).await?;
        let subscribers = self.commit_with_notifications(&mut txn, &notify).await?;
        let a = self.availability_of(&mut Vec::new(), &caller.manager).await?;
        Ok(Change { entity: self.constraint_view(Arc::new(constraint), caller, a), subscribers })
    }

    pub async fn delete_constraint(
        &self,
        caller: &Caller,
        id: Uuid,
        ovn: &str,
    ) -> Result<Change<ConstraintView>, DssError> {
        caller.require_any(crate::scopes::CONSTRAINTS_WRITE)?;
        self.retrying(|view| self.try_delete_constraint(view, caller, id, ovn)).await
    }

    async fn try_delete_constraint(
        &self,
        view: store::View,
        caller: &Caller,
        id: Uuid,
        ovn: &str,
    ) -> Result<Change<ConstraintView>, DssError> {
        let since = view.revision;
        let old = self.store.get_constraint(id).await?.ok_or_else(|| not_found(id))?;
        if old.value.manager != caller.manager {
            return Err(DssError::Forbidden(format!("constraint {id} is managed by another USS")));
        }
        if old.value.ovn.as_str() != ovn {
            return Err(DssError::Conflict(format!("OVN `{ovn}` is not the current OVN of constraint {id}")));
        }
        let notify = self.subscribers_for(EntityKind::Constraint, &old.value.extents).await?;
        let mut txn = Txn {
            preconditions: vec![
                Precondition::Revision { key: Key::Constraint(id), revision: Some(old.revision) },
                Precondition::AreaUnchanged {
                    kinds: vec![Kind::Subscription],
                    envelopes: old
                        .value
                        .extents
                        .iter()
                        .flat_map(|v| v.envelopes_for(self.config.discovery()))
                        .collect(),
                    since,
                },
            ],
            writes: vec![Write::DeleteConstraint(id)],
        };
        let subscribers = self.commit_with_notifications(&mut txn, &notify).await?;
        let a = self.availability_of(&mut Vec::new(), &caller.manager).await?;
        Ok(Change { entity: self.constraint_view(old.value, caller, a), subscribers })
    }
}
