//! Network Remote ID (ASTM F3411) in the DSS, in domain terms: identification service areas
//! (ISAs) written by service providers and searched by display providers, and the Remote ID
//! subscriptions through which display providers learn of every ISA change in their area. Both
//! versions of the standard (F3411-19 and F3411-22a) share these operations: the API version
//! only decides which scopes a caller needs ([`RidApi`]) and what the stored URL means.
//!
//! Every change is decided like the F3548 ones: on a view of the store, committed with the
//! preconditions of what it read (the entity's revision; for the subscribers notified of an ISA
//! change and for the per-area subscription limit, that no Remote ID subscription changed in
//! the area since), and retried on a lost race. Subscribers are chosen by exact 4D geometry
//! plus the relevance margin (`Config::discovery`), never by cells. Where F3411 is silent
//! (time defaults, the clock-skew allowance, the 24-hour subscription window, the limit of
//! subscriptions per area), this follows the reference DSS (interuss/dss `pkg/rid`), as each
//! place says.

use geo4d::{TimeWindow, Timestamp, Volume4D};
use model::rid::{Isa, RidApi, RidSubscription, MAX_RID_CLOCK_SKEW_S, MAX_RID_DURATION_S};
use model::Uuid;
use store::{Key, Kind, Precondition, Store, Txn, Write};

use crate::{Caller, Dss, DssError, Scope};

/// Remote ID subscriptions one manager may hold over any one area (the reference DSS's
/// `maxSubscriptionsPerArea`, requirement DSS0030); a create or update past it is refused
/// with 429. Counted exactly: the manager's other subscriptions whose volume meets the new one.
pub const MAX_SUBSCRIPTIONS_PER_AREA: usize = 10;

/// The scopes each F3411 version's API asks for.
pub fn write_scopes(api: RidApi) -> &'static [Scope] {
    match api {
        RidApi::V19 => &[Scope::RidWrite],
        RidApi::V22a => &[Scope::RidServiceProvider],
    }
}

/// Searching ISAs and managing one's own subscriptions.
pub fn read_scopes(api: RidApi) -> &'static [Scope] {
    match api {
        RidApi::V19 => &[Scope::RidRead],
        RidApi::V22a => &[Scope::RidDisplayProvider],
    }
}

/// Reading a subscription by id: either role (both versions' text).
pub fn subscription_get_scopes(api: RidApi) -> &'static [Scope] {
    match api {
        RidApi::V19 => &[Scope::RidRead, Scope::RidWrite],
        RidApi::V22a => &[Scope::RidDisplayProvider, Scope::RidServiceProvider],
    }
}

/// An ISA or a subscription as its writer asks for it: footprint and altitudes, and a time
/// window whose ends may be left for the DSS to choose.
#[derive(Debug, Clone)]
pub struct RidRequest {
    pub extents: Volume4D,
    /// F3411-19: the flights URL (ISA) or ISA callback URL (subscription); F3411-22a: the
    /// provider's or subscriber's base URL.
    pub url: String,
    pub api: RidApi,
}

/// One subscriber to tell of an ISA change: its URL and, for each of its subscriptions that
/// the change concerns, the notification index after the change.
#[derive(Debug, Clone, PartialEq)]
pub struct RidSubscriber {
    pub url: String,
    pub subscriptions: Vec<(Uuid, i32)>,
}

/// An ISA as written (or as it was, for a deletion) and whom to tell.
#[derive(Debug, Clone)]
pub struct IsaChange {
    pub isa: Isa,
    pub subscribers: Vec<RidSubscriber>,
}

/// A subscription as written (or as it was, for a deletion) and the ISAs it now covers.
#[derive(Debug, Clone)]
pub struct RidSubscriptionChange {
    pub subscription: RidSubscription,
    pub service_areas: Vec<Isa>,
}

/// How the reference DSS completes and checks a written time window (`AdjustTimeRange`): an
/// omitted start is now (a new entity) or the current one (an update); a given start may lie
/// at most [`MAX_RID_CLOCK_SKEW_S`] in the past; an omitted end is the current one, or for a
/// new subscription start + 24 h (a new ISA must give one); the end may not precede the start;
/// a subscription lasts at most [`MAX_RID_DURATION_S`].
fn adjust_time(
    asked: &TimeWindow,
    old: Option<&Volume4D>,
    now: Timestamp,
    what: &str,
    default_duration: Option<i64>,
) -> Result<TimeWindow, DssError> {
    let start = match asked.start() {
        Some(start) => {
            if now.micros() - start.micros() > MAX_RID_CLOCK_SKEW_S * 1_000_000 {
                return Err(DssError::BadRequest(format!("{what} time_start must not be in the past")));
            }
            start
        }
        None => old.and_then(|o| o.time.start()).unwrap_or(now),
    };
    let end = match asked.end().or_else(|| old.and_then(|o| o.time.end())) {
        Some(end) => end,
        None => match default_duration {
            Some(s) => start.plus_seconds(s),
            None => return Err(DssError::BadRequest(format!("{what} must have a time_end"))),
        },
    };
    if end < start {
        return Err(DssError::BadRequest(format!("{what} time_end must be after time_start")));
    }
    if default_duration.is_some() && end.micros() - start.micros() > MAX_RID_DURATION_S * 1_000_000 {
        return Err(DssError::BadRequest(format!("{what} window exceeds 24 hours")));
    }
    TimeWindow::new(Some(start), Some(end)).map_err(|e| DssError::BadRequest(format!("{what} time: {e}")))
}

/// A fresh opaque version, different from `old` (random: a version says nothing of content).
fn next_version(old: Option<u64>) -> u64 {
    loop {
        let v = Uuid::new_v4().as_u64_pair().0;
        if Some(v) != old && v != 0 {
            return v;
        }
    }
}

fn not_found(what: &str, id: Uuid) -> DssError {
    DssError::NotFound(format!("{what} {id} not found"))
}

/// Which the reference DSS checks first when both the owner and the version are wrong.
#[derive(Clone, Copy)]
enum First {
    Owner,
    Version,
}

/// A write or deletion of `what` `id` by `caller` at `version` (`None`: a creation), against the
/// entity as stored (`current`: its manager and version): 409 for a creation of an existing
/// one or a stale version, 400 for an update of a missing one, 403 for another manager's.
fn check_named_version(
    what: &str,
    id: Uuid,
    caller: &Caller,
    current: Option<(&str, u64)>,
    version: Option<&str>,
    first: First,
) -> Result<(), DssError> {
    let ((manager, stored), version) = match (current, version) {
        (Some(_), None) => return Err(DssError::Conflict(format!("{what} {id} already exists"))),
        // An update of a missing entity: 400, not 404. Neither F3411 API lists a 404 for
        // these PUTs, and the reference DSS answers 400 (its update handlers map NotFound
        // to 400).
        (None, Some(v)) => {
            return Err(DssError::BadRequest(format!(
                "{what} {id} does not exist: there is nothing to update at version `{v}`"
            )))
        }
        (None, None) => return Ok(()),
        (Some(current), Some(version)) => (current, version),
    };
    let owner = || match manager == caller.manager {
        true => Ok(()),
        false => Err(DssError::Forbidden(format!("{what} {id} is managed by another USS"))),
    };
    let current_version = || match model::rid::version_text(stored) == version {
        true => Ok(()),
        false => Err(DssError::Conflict(format!("`{version}` is not the current version of {what} {id}"))),
    };
    match first {
        First::Owner => owner().and_then(|()| current_version()),
        First::Version => current_version().and_then(|()| owner()),
    }
}

impl<S: Store> Dss<S> {
    /// Creates ISA `id` (`version` `None`) or updates it at `version`; returns it with the
    /// subscribers of the area it leaves and enters, their indexes bumped in the same commit.
    pub async fn put_isa(
        &self,
        caller: &Caller,
        id: Uuid,
        version: Option<&str>,
        req: RidRequest,
    ) -> Result<IsaChange, DssError> {
        caller.require_any(write_scopes(req.api))?;
        self.check_base_url(&req.url, if req.api == RidApi::V19 { "flights_url" } else { "uss_base_url" })?;
        self.retrying(|view| self.try_put_isa(view, caller, id, version, &req)).await
    }

    async fn try_put_isa(
        &self,
        view: store::View,
        caller: &Caller,
        id: Uuid,
        version: Option<&str>,
        req: &RidRequest,
    ) -> Result<IsaChange, DssError> {
        let old = self.store.get_isa(id).await?;
        // The reference DSS's order for an ISA write: existence, then owner, then version.
        let current = old.as_ref().map(|o| (o.value.manager.as_str(), o.value.version));
        check_named_version("ISA", id, caller, current, version, First::Owner)?;
        let time = adjust_time(&req.extents.time, old.as_ref().map(|o| &o.value.extents), self.now(), "ISA", None)?;
        let isa = Isa {
            id,
            manager: caller.manager.clone(),
            version: next_version(old.as_ref().map(|o| o.value.version)),
            url: req.url.clone(),
            writer: req.api,
            extents: Volume4D { time, ..req.extents.clone() },
        };
        let mut area = vec![isa.extents.clone()];
        area.extend(old.as_ref().map(|o| o.value.extents.clone()));
        let write = Write::PutIsa(isa.clone());
        self.check_quota(&caller.manager, std::slice::from_ref(&write)).await?;
        let pre = Precondition::Revision { key: Key::Isa(id), revision: old.as_ref().map(|o| o.revision) };
        self.commit_isa_change(view, write, pre, &area, isa).await
    }

    /// Deletes ISA `id` at `version`; returns it as it was with the subscribers of its area.
    pub async fn delete_isa(
        &self,
        caller: &Caller,
        api: RidApi,
        id: Uuid,
        version: &str,
    ) -> Result<IsaChange, DssError> {
        caller.require_any(write_scopes(api))?;
        self.retrying(|view| async move {
            let old = self.store.get_isa(id).await?.ok_or_else(|| not_found("ISA", id))?;
            // The reference DSS's order for a deletion: version, then owner.
            let current = Some((old.value.manager.as_str(), old.value.version));
            check_named_version("ISA", id, caller, current, Some(version), First::Version)?;
            let pre = Precondition::Revision { key: Key::Isa(id), revision: Some(old.revision) };
            let area = [old.value.extents.clone()];
            self.commit_isa_change(view, Write::DeleteIsa(id), pre, &area, (*old.value).clone()).await
        })
        .await
    }

    /// Commits an ISA write with a bump of every live Remote ID subscription relevant to
    /// `area`, on the condition that none changed there since the view.
    async fn commit_isa_change(
        &self,
        view: store::View,
        write: Write,
        pre: Precondition,
        area: &[Volume4D],
        isa: Isa,
    ) -> Result<IsaChange, DssError> {
        let how = self.config.discovery();
        let now = self.now();
        let mut subscriptions = self.store.search_rid_subscriptions(area, how).await?;
        subscriptions.retain(|s| s.value.end().is_none_or(|end| end >= now));
        let mut writes = vec![write];
        writes.extend(subscriptions.iter().map(|s| Write::BumpRidNotificationIndex(s.value.id)));
        let area_unchanged = Precondition::AreaUnchanged {
            kinds: vec![Kind::RidSubscription],
            envelopes: area.iter().flat_map(|v| v.envelopes_for(how)).collect(),
            since: view.revision,
        };
        let committed = self.store.commit(Txn { preconditions: vec![pre, area_unchanged], writes }).await?;
        let mut subscribers: Vec<RidSubscriber> = Vec::new();
        for (sub, (id, index)) in subscriptions.iter().zip(committed.notification_indexes) {
            match subscribers.iter_mut().find(|s| s.url == sub.value.url) {
                Some(s) => s.subscriptions.push((id, index)),
                None => {
                    subscribers.push(RidSubscriber { url: sub.value.url.clone(), subscriptions: vec![(id, index)] })
                }
            }
        }
        Ok(IsaChange { isa, subscribers })
    }

    pub async fn get_isa(&self, caller: &Caller, api: RidApi, id: Uuid) -> Result<Isa, DssError> {
        caller.require_any(read_scopes(api))?;
        self.fresh().await?;
        let found = self.store.get_isa(id).await?.ok_or_else(|| not_found("ISA", id))?;
        self.store.settle(found.revision).await?;
        Ok((*found.value).clone())
    }

    /// The live ISAs relevant to `footprint` between `earliest` and `latest`; an earliest
    /// time before now (or none) is now, as the reference DSS reads it.
    pub async fn search_isas(
        &self,
        caller: &Caller,
        api: RidApi,
        footprint: geo4d::Footprint,
        earliest: Option<Timestamp>,
        latest: Option<Timestamp>,
    ) -> Result<Vec<Isa>, DssError> {
        caller.require_any(read_scopes(api))?;
        let now = self.now();
        let earliest = earliest.filter(|t| *t >= now).unwrap_or(now);
        let time = TimeWindow::new(Some(earliest), latest)
            .map_err(|e| DssError::BadRequest(format!("earliest_time and latest_time: {e}")))?;
        let area = [Volume4D { footprint, altitude: geo4d::AltitudeBand::new(None, None).expect("open band"), time }];
        self.fresh().await?;
        let how = self.config.discovery();
        let found = self.store.search_isas(&area, how).await?;
        self.store.settle_area(&[Kind::Isa], &area, how).await?;
        Ok(found.into_iter().map(|r| (*r.value).clone()).collect())
    }

    /// Creates Remote ID subscription `id` (`version` `None`) or updates it at `version`;
    /// returns it with the live ISAs relevant to it.
    pub async fn put_rid_subscription(
        &self,
        caller: &Caller,
        id: Uuid,
        version: Option<&str>,
        req: RidRequest,
    ) -> Result<RidSubscriptionChange, DssError> {
        caller.require_any(read_scopes(req.api))?;
        self.check_base_url(
            &req.url,
            if req.api == RidApi::V19 { "identification_service_area_url" } else { "uss_base_url" },
        )?;
        self.retrying(|view| self.try_put_rid_subscription(view, caller, id, version, &req)).await
    }

    async fn try_put_rid_subscription(
        &self,
        view: store::View,
        caller: &Caller,
        id: Uuid,
        version: Option<&str>,
        req: &RidRequest,
    ) -> Result<RidSubscriptionChange, DssError> {
        let old = self.store.get_rid_subscription(id).await?;
        // The reference DSS's order for a subscription: existence, then version, then owner.
        let current = old.as_ref().map(|o| (o.value.manager.as_str(), o.value.version));
        check_named_version("subscription", id, caller, current, version, First::Version)?;
        let now = self.now();
        let old_extents = old.as_ref().map(|o| &o.value.extents);
        let time = adjust_time(&req.extents.time, old_extents, now, "subscription", Some(MAX_RID_DURATION_S))?;
        let subscription = RidSubscription {
            id,
            manager: caller.manager.clone(),
            version: next_version(old.as_ref().map(|o| o.value.version)),
            notification_index: old.as_ref().map_or(0, |o| o.value.notification_index),
            url: req.url.clone(),
            writer: req.api,
            extents: Volume4D { time, ..req.extents.clone() },
        };
        let area = std::slice::from_ref(&subscription.extents);
        // The manager's other live subscriptions meeting this one (exactly, in 4D).
        let mine = self.store.search_rid_subscriptions(area, geo4d::Match::Exact).await?;
        let others = mine
            .iter()
            .filter(|s| s.value.manager == caller.manager && s.value.id != id)
            .filter(|s| s.value.end().is_none_or(|end| end >= now))
            .count();
        if others >= MAX_SUBSCRIPTIONS_PER_AREA {
            return Err(DssError::QuotaExceeded(format!(
                "too many existing subscriptions in this area already ({others}; at most {MAX_SUBSCRIPTIONS_PER_AREA} per USS)"
            )));
        }
        let how = self.config.discovery();
        let mut service_areas = self.store.search_isas(area, how).await?;
        service_areas.retain(|i| i.value.end().is_none_or(|end| end >= now));
        let preconditions = vec![
            Precondition::Revision { key: Key::RidSubscription(id), revision: old.as_ref().map(|o| o.revision) },
            // The count above, and the ISAs listed, hold at the commit.
            Precondition::AreaUnchanged {
                kinds: vec![Kind::RidSubscription, Kind::Isa],
                envelopes: subscription.extents.envelopes_for(how).collect(),
                since: view.revision,
            },
        ];
        let writes = vec![Write::PutRidSubscription(subscription.clone())];
        self.check_quota(&caller.manager, &writes).await?;
        self.store.commit(Txn { preconditions, writes }).await?;
        Ok(RidSubscriptionChange {
            subscription,
            service_areas: service_areas.into_iter().map(|r| (*r.value).clone()).collect(),
        })
    }

    /// Deletes Remote ID subscription `id` at `version`; returns it as it was.
    pub async fn delete_rid_subscription(
        &self,
        caller: &Caller,
        api: RidApi,
        id: Uuid,
        version: &str,
    ) -> Result<RidSubscription, DssError> {
        caller.require_any(read_scopes(api))?;
        self.retrying(|_view| async move {
            let old = self.store.get_rid_subscription(id).await?.ok_or_else(|| not_found("subscription", id))?;
            let current = Some((old.value.manager.as_str(), old.value.version));
            check_named_version("subscription", id, caller, current, Some(version), First::Version)?;
            let pre = Precondition::Revision { key: Key::RidSubscription(id), revision: Some(old.revision) };
            self.store.commit(Txn { preconditions: vec![pre], writes: vec![Write::DeleteRidSubscription(id)] }).await?;
            Ok((*old.value).clone())
        })
        .await
    }

    /// One of the caller's own Remote ID subscriptions (another manager's is refused, as the
    /// reference DSS does).
    pub async fn get_rid_subscription(
        &self,
        caller: &Caller,
        api: RidApi,
        id: Uuid,
    ) -> Result<RidSubscription, DssError> {
        caller.require_any(subscription_get_scopes(api))?;
        self.fresh().await?;
        let found = self.store.get_rid_subscription(id).await?.ok_or_else(|| not_found("subscription", id))?;
        if found.value.manager != caller.manager {
            return Err(DssError::Forbidden(format!("subscription {id} is managed by another USS")));
        }
        self.store.settle(found.revision).await?;
        Ok((*found.value).clone())
    }

    /// The caller's own live Remote ID subscriptions relevant to `footprint`.
    pub async fn search_rid_subscriptions(
        &self,
        caller: &Caller,
        api: RidApi,
        footprint: geo4d::Footprint,
    ) -> Result<Vec<RidSubscription>, DssError> {
        caller.require_any(read_scopes(api))?;
        let now = self.now();
        let time = TimeWindow::new(Some(now), None).map_err(|e| DssError::BadRequest(e.to_string()))?;
        let area = [Volume4D { footprint, altitude: geo4d::AltitudeBand::new(None, None).expect("open band"), time }];
        self.fresh().await?;
        let how = self.config.discovery();
        let found = self.store.search_rid_subscriptions(&area, how).await?;
        self.store.settle_area(&[Kind::RidSubscription], &area, how).await?;
        Ok(found.into_iter().filter(|r| r.value.manager == caller.manager).map(|r| (*r.value).clone()).collect())
    }
}
