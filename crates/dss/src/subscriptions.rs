//! Explicit subscriptions: query (the caller's own only), get, create/update, delete.

use std::sync::Arc;

use geo4d::{TimeWindow, Volume4D};
use model::{Subscription, Uuid};
use store::{Key, Kind, Precondition, Store, Txn, Write};

use crate::{Caller, ConstraintView, Dss, DssError, IntentView, Scope, SubscriptionView};

use crate::scopes::SUBSCRIPTIONS as SCOPES;
use model::PutSubscriptionRequest;

/// The stored subscription and the entities in its area at the time of the change.
#[derive(Debug, Clone)]
pub struct SubscriptionChange {
    pub subscription: SubscriptionView,
    pub intents: Vec<IntentView>,
    pub constraints: Vec<ConstraintView>,
}

fn not_found(id: Uuid) -> DssError {
    DssError::NotFound(format!("subscription {id} not found"))
}

impl<S: Store> Dss<S> {
    async fn subscription_view(&self, subscription: Arc<Subscription>) -> Result<SubscriptionView, DssError> {
        let mut dependent_intents = self.store.dependent_intents(subscription.id).await?;
        dependent_intents.sort();
        Ok(SubscriptionView { subscription, dependent_intents })
    }

    /// The caller's own subscriptions intersecting `area`.
    pub async fn query_subscriptions(
        &self,
        caller: &Caller,
        area: &Volume4D,
    ) -> Result<Vec<SubscriptionView>, DssError> {
        caller.require_any(SCOPES)?;
        self.fresh().await?;
        let area = std::slice::from_ref(area);
        let found = self.store.search_subscriptions(area, self.config.discovery()).await?;
        // Notification indexes move without marking the subscription's area: wait for all.
        self.store.durable_barrier().await?;
        let now = self.now();
        let mut out = Vec::new();
        // An expired subscription (end in the past) is never listed, though GET by id may still
        // return it until the expiry sweep removes it.
        let live = |s: &Subscription| s.end().is_none_or(|e| e >= now);
        for r in found.into_iter().filter(|r| r.value.manager == caller.manager && live(&r.value)) {
            out.push(self.subscription_view(r.value).await?);
        }
        Ok(out)
    }

    pub async fn get_subscription(&self, caller: &Caller, id: Uuid) -> Result<SubscriptionView, DssError> {
        caller.require_any(SCOPES)?;
        self.fresh().await?;
        let found = self.store.get_subscription(id).await?;
        self.store.durable_barrier().await?;
        let r = found.ok_or_else(|| not_found(id))?;
        if r.value.manager != caller.manager {
            return Err(DssError::Forbidden(format!("subscription {id} is managed by another USS")));
        }
        self.subscription_view(r.value).await
    }

    /// Creates (`version` is `None`) or updates a subscription.
    pub async fn put_subscription(
        &self,
        caller: &Caller,
        id: Uuid,
        version: Option<&str>,
        req: PutSubscriptionRequest,
    ) -> Result<SubscriptionChange, DssError> {
        caller.require_any(SCOPES)?;
        if req.notify_for_operational_intents && !caller.has(Scope::StrategicCoordination) {
            return Err(DssError::Forbidden(
                "notify_for_operational_intents requires the utm.strategic_coordination scope".into(),
            ));
        }
        // The spec asks for utm.constraint_processing; the reference DSS accepts
        // utm.strategic_coordination alone and clients rely on it: only --strict-scopes enforces.
        if self.config.strict_scopes && req.notify_for_constraints && !caller.has(Scope::ConstraintProcessing) {
            return Err(DssError::Forbidden(
                "notify_for_constraints requires the utm.constraint_processing scope".into(),
            ));
        }
        if !req.notify_for_operational_intents && !req.notify_for_constraints {
            return Err(DssError::BadRequest(
                "at least one of notify_for_operational_intents and notify_for_constraints must be true".into(),
            ));
        }
        self.check_base_url(&req.uss_base_url, "uss_base_url")?;
        let now = self.now();
        let start = req.extents.time.start().unwrap_or(now);
        let end = req.extents.time.end().unwrap_or(start.plus_seconds(self.config.default_subscription_s));
        let time = TimeWindow::new(Some(start), Some(end))?;
        if end.micros() - start.micros() > self.config.max_subscription_s * 1_000_000 {
            // The reference DSS refuses subscriptions over 24 hours (its maxSubscriptionDuration).
            return Err(DssError::BadRequest(format!(
                "a subscription may last at most {} hours (end minus start)",
                self.config.max_subscription_s / 3600
            )));
        }
        let extents = Volume4D { time, ..req.extents.clone() };
        self.check_entity_extents_times(&extents)?;
        self.retrying(|view| self.try_put_subscription(view, caller, id, version, &req, &extents)).await
    }

    fn check_entity_extents_times(&self, v: &Volume4D) -> Result<(), DssError> {
        let now = self.now();
        let end = v.time.end().unwrap_or(now);
        if end < now {
            return Err(DssError::BadRequest("a subscription may not end in the past".into()));
        }
        if end > now.plus_seconds(self.config.max_horizon_s) {
            return Err(DssError::BadRequest(format!(
                "a subscription may end at most {} days from now",
                self.config.max_horizon_s / 86_400
            )));
        }
        Ok(())
    }

    async fn try_put_subscription(
        &self,
        view: store::View,
        caller: &Caller,
        id: Uuid,
        version: Option<&str>,
        req: &PutSubscriptionRequest,
        extents: &Volume4D,
    ) -> Result<SubscriptionChange, DssError> {
        let old = self.store.get_subscription(id).await?;
        match (&old, version) {
            (Some(o), _) if o.value.manager != caller.manager => {
                return Err(DssError::Forbidden(format!("subscription {id} is managed by another USS")))
            }
            (Some(_), None) => {
                return Err(DssError::Conflict(format!(
                    "subscription {id} already exists; update it with PUT .../subscriptions/{id}/{{version}}"
                )))
            }
            (Some(o), Some(v)) if o.value.version_string() != v => {
                return Err(DssError::Conflict(format!(
                    "version `{v}` is not the current version of subscription {id}"
                )))
            }
            (None, Some(_)) => return Err(not_found(id)),
            _ => {}
        }
        let mut pre =
            vec![Precondition::Revision { key: Key::Subscription(id), revision: old.as_ref().map(|o| o.revision) }];
        let subscription = Subscription {
            id,
            manager: caller.manager.clone(),
            version: old.as_ref().map_or(1, |o| o.value.version + 1),
            notification_index: old.as_ref().map_or(0, |o| o.value.notification_index),
            extents: vec![extents.clone()],
            uss_base_url: req.uss_base_url.clone(),
            notify_for_operational_intents: req.notify_for_operational_intents,
            notify_for_constraints: req.notify_for_constraints,
            // Written through the subscriptions endpoint by its manager, it is explicit from now
            // on: deleting its last operational intent leaves it in place (the reference DSS's
            // rule; the standard's prober relies on it).
            implicit: false,
        };
        // The standard requires each intent to stay covered by its subscription: its footprint
        // contained (not merely met) by the new area, as well as its times and altitudes.
        let deps = self.store.dependent_intents(id).await?;
        for dep in &deps {
            if let Some(intent) = self.store.get_intent(*dep).await? {
                // The reference DSS lets a changed subscription start up to 5 minutes after a
                // dependent intent (clock skew); everything else must cover exactly.
                let tolerance = self.config.subscription_start_tolerance_s;
                if !subscription.notify_for_operational_intents
                    || !subscription.covers_with_start_tolerance(&intent.value.extents, tolerance)
                {
                    return Err(DssError::BadRequest(format!(
                        "this change would leave operational intent {dep} without subscription coverage"
                    )));
                }
                pre.push(Precondition::Revision { key: Key::OperationalIntent(*dep), revision: Some(intent.revision) });
            }
        }
        let how = self.config.discovery();
        pre.push(Precondition::AreaUnchanged {
            kinds: vec![Kind::OperationalIntent],
            envelopes: extents.envelopes_for(how).collect(),
            since: view.revision,
        });
        let area = std::slice::from_ref(extents);
        // The entities listed with a subscription are those relevant to it, as its
        // notifications will be.
        let intents =
            if req.notify_for_operational_intents { self.store.search_intents(area, how).await? } else { vec![] };
        let constraints =
            if req.notify_for_constraints { self.store.search_constraints(area, how).await? } else { vec![] };
        let writes = vec![Write::PutSubscription(subscription.clone())];
        self.check_quota(&caller.manager, &writes).await?;
        self.store.commit(Txn { preconditions: pre, writes }).await?;
        let mut cache = Vec::new();
        let mut intent_views = Vec::with_capacity(intents.len());
        for r in intents {
            let availability = self.availability_of(&mut cache, &r.value.manager).await?;
            let show_ovn = r.value.manager == caller.manager;
            intent_views.push(IntentView { intent: r.value, availability, show_ovn });
        }
        let mut constraint_views = Vec::with_capacity(constraints.len());
        for r in constraints {
            let availability = self.availability_of(&mut cache, &r.value.manager).await?;
            let show_ovn = r.value.manager == caller.manager;
            constraint_views.push(ConstraintView { constraint: r.value, availability, show_ovn });
        }
        let mut dependent_intents = deps;
        dependent_intents.sort();
        Ok(SubscriptionChange {
            subscription: SubscriptionView { subscription: Arc::new(subscription), dependent_intents },
            intents: intent_views,
            constraints: constraint_views,
        })
    }

    pub async fn delete_subscription(
        &self,
        caller: &Caller,
        id: Uuid,
        version: &str,
    ) -> Result<SubscriptionView, DssError> {
        caller.require_any(SCOPES)?;
        self.retrying(|view| self.try_delete_subscription(view, caller, id, version)).await
    }

    async fn try_delete_subscription(
        &self,
        _view: store::View,
        caller: &Caller,
        id: Uuid,
        version: &str,
    ) -> Result<SubscriptionView, DssError> {
        let old = self.store.get_subscription(id).await?.ok_or_else(|| not_found(id))?;
        if old.value.manager != caller.manager {
            return Err(DssError::Forbidden(format!("subscription {id} is managed by another USS")));
        }
        if old.value.version_string() != version {
            return Err(DssError::Conflict(format!(
                "version `{version}` is not the current version of subscription {id}"
            )));
        }
        let deps = self.store.dependent_intents(id).await?;
        if !deps.is_empty() {
            return Err(DssError::BadRequest(format!(
                "subscription {id} is used by {} operational intent(s) and cannot be deleted",
                deps.len()
            )));
        }
        let pre = vec![Precondition::Revision { key: Key::Subscription(id), revision: Some(old.revision) }];
        self.store.commit(Txn { preconditions: pre, writes: vec![Write::DeleteSubscription(id)] }).await?;
        Ok(SubscriptionView { subscription: old.value, dependent_intents: vec![] })
    }
}
