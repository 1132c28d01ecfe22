//! Operational intent references: query, get, create/update with the key check, delete.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use geo4d::Volume4D;
use model::{EntityKind, OperationalIntent, OperationalIntentState, Ovn, Subscription, UssAvailability, Uuid};
use store::{Key, Kind, Precondition, Store, Stored, Txn, Write};

use crate::{Caller, Change, ConstraintView, Dss, DssError, IntentView, Scope};
use model::PutIntentRequest;

use crate::scopes::INTENTS as READ_SCOPES;

/// What a successful attempt decided, before it is committed.
struct Plan {
    txn: Txn,
    intent: OperationalIntent,
    /// Subscriptions to notify, in order; their new indexes come back from the commit.
    notify: Vec<Subscription>,
}

impl<S: Store> Dss<S> {
    fn intent_view(
        &self,
        intent: Arc<OperationalIntent>,
        caller: &Caller,
        availability: UssAvailability,
    ) -> IntentView {
        let show_ovn = intent.manager == caller.manager;
        IntentView { intent, availability, show_ovn }
    }

    pub async fn query_intents(&self, caller: &Caller, area: &Volume4D) -> Result<Vec<IntentView>, DssError> {
        caller.require_any(READ_SCOPES)?;
        let area = std::slice::from_ref(area);
        self.fresh().await?;
        // Discovery is generous (relevance); decisions below stay exact.
        let how = self.config.discovery();
        let found = self.store.search_intents(area, how).await?;
        self.store.settle_area(&[store::Kind::OperationalIntent], area, how).await?;
        let mut cache = Vec::new();
        let mut out = Vec::with_capacity(found.len());
        for r in found {
            let a = self.availability_of(&mut cache, &r.value.manager).await?;
            out.push(self.intent_view(r.value, caller, a));
        }
        Ok(out)
    }

    pub async fn get_intent(&self, caller: &Caller, id: Uuid) -> Result<IntentView, DssError> {
        caller.require_any(READ_SCOPES)?;
        self.fresh().await?;
        let found = self.store.get_intent(id).await?;
        let r = self.shown(found).await?.ok_or_else(|| not_found(id))?;
        let a = self.availability_of(&mut Vec::new(), &r.value.manager).await?;
        Ok(self.intent_view(r.value, caller, a))
    }

    /// Creates (`ovn` is `None`) or updates an intent reference.
    pub async fn put_intent(
        &self,
        caller: &Caller,
        id: Uuid,
        ovn: Option<&str>,
        req: PutIntentRequest,
    ) -> Result<Change<IntentView>, DssError> {
        caller.require_any(crate::scopes::INTENTS)?;
        if req.state.requires_conformance_monitoring() && !caller.has(Scope::ConformanceMonitoringSa) {
            return Err(DssError::Forbidden(format!(
                "setting state {} requires the utm.conformance_monitoring_sa scope (SCD0100)",
                req.state.as_str()
            )));
        }
        // The spec asks for utm.constraint_processing; the reference DSS does not, and clients
        // rely on that, so only --strict-scopes enforces it.
        if self.config.strict_scopes
            && req.new_subscription.as_ref().is_some_and(|n| n.notify_for_constraints)
            && !caller.has(Scope::ConstraintProcessing)
        {
            return Err(DssError::Forbidden(
                "new_subscription.notify_for_constraints requires the utm.constraint_processing scope".into(),
            ));
        }
        self.check_base_url(&req.uss_base_url, "uss_base_url")?;
        if let Some(n) = &req.new_subscription {
            self.check_base_url(&n.uss_base_url, "new_subscription.uss_base_url")?;
        }
        self.check_entity_extents(&req.extents, "an operational intent")?;
        if ovn.is_none() && req.state != OperationalIntentState::Accepted {
            return Err(DssError::BadRequest(format!(
                "invalid state for initial version: `{}`; an operational intent is created Accepted",
                req.state.as_str()
            )));
        }
        if req.state.requires_subscription() && req.subscription_id.is_none() && req.new_subscription.is_none() {
            return Err(DssError::BadRequest(format!(
                "state {} requires either subscription_id or new_subscription",
                req.state.as_str()
            )));
        }
        if let Some(suffix) = &req.requested_ovn_suffix {
            self.check_requested_ovn_suffix(suffix)?;
        }
        let key: HashSet<&str> = req.key.iter().map(String::as_str).collect();
        self.retrying(|view| self.try_put_intent(view, caller, id, ovn, &req, &key)).await
    }

    /// The InterUSS requested-OVN extension (the reference DSS and its tools implement it; not
    /// in utm.yaml): a UUIDv7 whose embedded time is within the tolerance of now.
    fn check_requested_ovn_suffix(&self, suffix: &str) -> Result<(), DssError> {
        if suffix.is_empty() {
            return Err(DssError::BadRequest("requested_ovn_suffix is empty; give a UUIDv7 or omit it".into()));
        }
        let uuid = Uuid::parse_str(suffix).map_err(|_| {
            DssError::BadRequest(format!("requested_ovn_suffix `{suffix}` is not a UUID (a UUIDv7 is required)"))
        })?;
        if uuid.get_version_num() != 7 || suffix.len() != 36 {
            return Err(DssError::BadRequest(format!(
                "requested_ovn_suffix `{suffix}` is a version {} UUID; a UUIDv7 is required",
                uuid.get_version_num()
            )));
        }
        // A UUIDv7 starts with its Unix time in milliseconds (48 bits).
        let bytes = uuid.as_bytes();
        let ms = bytes[..6].iter().fold(0i64, |acc, b| (acc << 8) | i64::from(*b));
        let skew_s = (ms * 1000 - self.now().micros()).abs() / 1_000_000;
        if skew_s > self.config.requested_ovn_tolerance_s {
            return Err(DssError::BadRequest(format!(
                "requested_ovn_suffix `{suffix}` carries a time {skew_s} s from now; at most {} s is allowed",
                self.config.requested_ovn_tolerance_s
            )));
        }
        Ok(())
    }

    async fn try_put_intent(
        &self,
        view: store::View,
        caller: &Caller,
        id: Uuid,
        ovn: Option<&str>,
        req: &PutIntentRequest,
        key: &HashSet<&str>,
    ) -> Result<Change<IntentView>, DssError> {
        let since = view.revision;
        let old = self.store.get_intent(id).await?;
        check_existing(old.as_ref(), caller, id, ovn)?;
        let mut availability = Vec::new();
        let caller_availability = self.availability_of(&mut availability, &caller.manager).await?;
        if req.state.requires_key() && caller_availability == UssAvailability::Down {
            return Err(DssError::UssDown(format!(
                "USS {} is marked Down in the DSS and may not move an operational intent to {}",
                caller.manager,
                req.state.as_str()
            )));
        }

        let mut pre = vec![Precondition::Revision {
            key: Key::OperationalIntent(id),
            revision: old.as_ref().map(|o| o.revision),
        }];
        let mut writes = Vec::new();
        let old_sub_id = old.as_ref().and_then(|o| o.value.subscription_id);

        // Decide which subscription the intent will use.
        let attached: Option<Subscription> = match (req.subscription_id, &req.new_subscription) {
            (Some(sid), _) => {
                let sub = self
                    .store
                    .get_subscription(sid)
                    .await?
                    .ok_or_else(|| DssError::BadRequest(format!("specified subscription {sid} does not exist")))?;
                if sub.value.manager != caller.manager {
                    return Err(DssError::Forbidden(format!("subscription {sid} is managed by another USS")));
                }
                pre.push(Precondition::Revision { key: Key::Subscription(sid), revision: Some(sub.revision) });
                let mut s = (*sub.value).clone();
                if !s.covers(&req.extents) {
                    if !s.implicit {
                        return Err(DssError::BadRequest(format!(
                            "subscription {sid} does not cover the operational intent's extents in space, altitude and time"
                        )));
                    }
                    // An implicit subscription grows with the intents that use it.
                    s.extents.extend(req.extents.iter().cloned());
                    s.version += 1;
                    writes.push(Write::PutSubscription(s.clone()));
                }
                Some(s)
            }
            (None, Some(n)) => {
                let s = Subscription {
                    id: Uuid::new_v4(),
                    manager: caller.manager.clone(),
                    version: 1,
                    notification_index: 0,
                    extents: req.extents.clone(),
                    uss_base_url: n.uss_base_url.clone(),
                    notify_for_operational_intents: true,
                    notify_for_constraints: n.notify_for_constraints,
                    implicit: true,
                };
                pre.push(Precondition::Revision { key: Key::Subscription(s.id), revision: None });
                writes.push(Write::PutSubscription(s.clone()));
                Some(s)
            }
            (None, None) => None,
        };

        // A replaced implicit subscription that only served this intent goes away with it.
        let mut delete_old_sub = None;
        if let Some(old_sid) = old_sub_id.filter(|o| Some(*o) != attached.as_ref().map(|s| s.id)) {
            if let Some(old_sub) = self.store.get_subscription(old_sid).await? {
                let deps = self.store.dependent_intents(old_sid).await?;
                if old_sub.value.implicit && deps.iter().all(|d| *d == id) {
                    pre.push(Precondition::Revision {
                        key: Key::Subscription(old_sid),
                        revision: Some(old_sub.revision),
                    });
                    delete_old_sub = Some(old_sid);
                }
            }
        }

        let mut kinds = vec![Kind::OperationalIntent, Kind::Subscription];
        if req.state.requires_key() {
            let check_constraints = attached.as_ref().is_some_and(|s| s.notify_for_constraints);
            if check_constraints {
                kinds.push(Kind::Constraint);
            }
            self.check_key(caller, id, &req.extents, key, check_constraints, &mut availability).await?;
        }

        let intent = OperationalIntent {
            id,
            manager: caller.manager.clone(),
            version: old.as_ref().map_or(1, |o| o.value.version + 1),
            state: req.state,
            ovn: match &req.requested_ovn_suffix {
                Some(suffix) => Ovn::parse(&format!("{id}_{suffix}")).ok_or_else(|| {
                    DssError::BadRequest("requested_ovn_suffix gives an OVN of invalid length".into())
                })?,
                None => Ovn::generate(),
            },
            extents: req.extents.clone(),
            uss_base_url: req.uss_base_url.clone(),
            subscription_id: attached.as_ref().map(|s| s.id),
        };
        writes.push(Write::PutIntent(intent.clone()));

        let mut changed: Vec<Volume4D> = req.extents.clone();
        if let Some(o) = &old {
            changed.extend(o.value.extents.iter().cloned());
        }
        let mut notify = self.subscribers_for(EntityKind::OperationalIntent, &changed).await?;
        // The subscription created or grown in this change is not in the store yet.
        let how = self.config.discovery();
        if let Some(s) = attached.filter(|s| s.wants_as(EntityKind::OperationalIntent, &changed, how)) {
            if !notify.iter().any(|n| n.id == s.id) {
                notify.push(s);
            }
        }
        if let Some(sid) = delete_old_sub {
            writes.push(Write::DeleteSubscription(sid));
            notify.retain(|s| s.id != sid);
        }
        // Widened by discovery's reach: the subscribers chosen depend on relevance.
        pre.push(Precondition::AreaUnchanged {
            kinds,
            envelopes: changed.iter().flat_map(|v| v.envelopes_for(how)).collect(),
            since,
        });
        self.check_quota(&caller.manager, &writes).await?;
        let plan = Plan { txn: Txn { preconditions: pre, writes }, intent, notify };
        self.commit_intent(caller, plan, caller_availability).await
    }

    /// The key check: every relevant intersecting entity's current OVN must be in the key.
    async fn check_key(
        &self,
        caller: &Caller,
        id: Uuid,
        extents: &[Volume4D],
        key: &HashSet<&str>,
        check_constraints: bool,
        availability: &mut crate::AvailabilityCache,
    ) -> Result<(), DssError> {
        let mut missing_intents = Vec::new();
        for r in self.store.search_intents(extents, store::Match::Exact).await? {
            let other = &r.value;
            if other.id == id || key.contains(other.ovn.as_str()) {
                continue;
            }
            let a = self.availability_of(availability, &other.manager).await?;
            if other.must_appear_in_keys(a) {
                missing_intents.push(self.intent_view(r.value.clone(), caller, a));
            }
        }
        let mut missing_constraints = Vec::new();
        if check_constraints {
            for r in self.store.search_constraints(extents, store::Match::Exact).await? {
                if key.contains(r.value.ovn.as_str()) {
                    continue;
                }
                let a = self.availability_of(availability, &r.value.manager).await?;
                let show_ovn = r.value.manager == caller.manager;
                missing_constraints.push(ConstraintView { constraint: r.value, availability: a, show_ovn });
            }
        }
        if missing_intents.is_empty() && missing_constraints.is_empty() {
            return Ok(());
        }
        let mut names: Vec<String> =
            missing_intents.iter().map(|v| format!("operational intent {}", v.intent.id)).collect();
        names.extend(missing_constraints.iter().map(|v| format!("constraint {}", v.constraint.id)));
        Err(DssError::MissingOvns {
            message: format!(
                "current OVNs not provided for {} intersecting entities: {}; fetch their details from the managing USSs and put their OVNs in the key",
                names.len(),
                names.join(", ")
            ),
            intents: missing_intents,
            constraints: missing_constraints,
        })
    }

    /// Subscriptions interested in a change of `kind` over `extents`.
    pub(crate) async fn subscribers_for(
        &self,
        kind: EntityKind,
        extents: &[Volume4D],
    ) -> Result<Vec<Subscription>, DssError> {
        // The search already decided relevance; only the kind of interest remains.
        let found = self.store.search_subscriptions(extents, self.config.discovery()).await?;
        Ok(found.into_iter().filter(|s| s.value.interested_in(kind)).map(|s| (*s.value).clone()).collect())
    }

    async fn commit_intent(
        &self,
        caller: &Caller,
        mut plan: Plan,
        availability: UssAvailability,
    ) -> Result<Change<IntentView>, DssError> {
        let subscribers = self.commit_with_notifications(&mut plan.txn, &plan.notify).await?;
        let view = self.intent_view(Arc::new(plan.intent), caller, availability);
        Ok(Change { entity: view, subscribers })
    }

    /// Adds one index bump per subscription to notify, commits, and groups the subscribers.
    pub(crate) async fn commit_with_notifications(
        &self,
        txn: &mut Txn,
        notify: &[Subscription],
    ) -> Result<Vec<model::SubscriberToNotify>, DssError> {
        // Bumps go before any deletion in the same transaction so a subscription deleted with
        // its last intent still reports the index of this last notification.
        let first_delete =
            txn.writes.iter().position(|w| matches!(w, Write::DeleteSubscription(_))).unwrap_or(txn.writes.len());
        let bumps: Vec<Write> = notify.iter().map(|s| Write::BumpNotificationIndex(s.id)).collect();
        txn.writes.splice(first_delete..first_delete, bumps);
        let committed = self.store.commit(std::mem::take(txn)).await?;
        let indexes: HashMap<Uuid, i32> = committed.notification_indexes.into_iter().collect();
        let notified: Vec<(Subscription, i32)> =
            notify.iter().filter_map(|s| indexes.get(&s.id).map(|i| (s.clone(), *i))).collect();
        Ok(model::group_subscribers(&notified))
    }

    pub async fn delete_intent(&self, caller: &Caller, id: Uuid, ovn: &str) -> Result<Change<IntentView>, DssError> {
        caller.require_any(crate::scopes::INTENTS)?;
        self.retrying(|view| self.try_delete_intent(view, caller, id, ovn)).await
    }

    async fn try_delete_intent(
        &self,
        view: store::View,
        caller: &Caller,
        id: Uuid,
        ovn: &str,
    ) -> Result<Change<IntentView>, DssError> {
        let since = view.revision;
        let old = self.store.get_intent(id).await?.ok_or_else(|| not_found(id))?;
        if old.value.manager != caller.manager {
            return Err(DssError::Forbidden(format!("operational intent {id} is managed by another USS")));
        }
        if old.value.ovn.as_str() != ovn {
            return Err(DssError::Conflict(format!("OVN `{ovn}` is not the current OVN of operational intent {id}")));
        }
        let availability = self.availability_of(&mut Vec::new(), &caller.manager).await?;
        if availability == UssAvailability::Down {
            return Err(DssError::UssDown(format!(
                "USS {} is marked Down in the DSS and may not delete operational intents",
                caller.manager
            )));
        }
        let mut pre = vec![Precondition::Revision { key: Key::OperationalIntent(id), revision: Some(old.revision) }];
        let mut writes = vec![Write::DeleteIntent(id)];
        if let Some(sid) = old.value.subscription_id {
            if let Some(sub) = self.store.get_subscription(sid).await? {
                let deps = self.store.dependent_intents(sid).await?;
                if sub.value.implicit && deps.iter().all(|d| *d == id) {
                    pre.push(Precondition::Revision { key: Key::Subscription(sid), revision: Some(sub.revision) });
                    writes.push(Write::DeleteSubscription(sid));
                }
            }
        }
        let extents = &old.value.extents;
        let notify = self.subscribers_for(EntityKind::OperationalIntent, extents).await?;
        pre.push(Precondition::AreaUnchanged {
            kinds: vec![Kind::Subscription],
            envelopes: extents.iter().flat_map(|v| v.envelopes_for(self.config.discovery())).collect(),
            since,
        });
        let plan = Plan { txn: Txn { preconditions: pre, writes }, intent: (*old.value).clone(), notify };
        self.commit_intent(caller, plan, availability).await
    }
}

fn not_found(id: Uuid) -> DssError {
    DssError::NotFound(format!("operational intent {id} not found"))
}

/// Ownership and OVN rules for a create (`ovn` is `None`) or an update.
fn check_existing(
    old: Option<&Stored<OperationalIntent>>,
    caller: &Caller,
    id: Uuid,
    ovn: Option<&str>,
) -> Result<(), DssError> {
    match (old, ovn) {
        (Some(o), _) if o.value.manager != caller.manager => {
            Err(DssError::Forbidden(format!("operational intent {id} is managed by another USS")))
        }
        (Some(_), None) => Err(DssError::Conflict(format!(
            "operational intent {id} already exists; update it with PUT .../operational_intent_references/{id}/{{ovn}}"
        ))),
        (Some(o), Some(given)) if o.value.ovn.as_str() != given => Err(DssError::Conflict(format!(
            "OVN `{given}` is not the current OVN of operational intent {id}; read the reference again"
        ))),
        // The reference DSS answers 400 here: the update names a version that cannot exist.
        (None, Some(given)) => Err(DssError::BadRequest(format!(
            "operational intent {id} does not exist and therefore is not at OVN `{given}`"
        ))),
        _ => Ok(()),
    }
}
