//! The DSS application layer: every ASTM F3548-21 DSS operation in domain terms, with the
//! authorization of its caller, over any [`store::Store`].
//!
//! Each mutating operation reads a snapshot, decides (ownership, OVN, key, subscriptions to
//! notify), and commits one transaction whose preconditions capture what the decision read. When
//! a concurrent change invalidates them the operation starts over, a bounded number of times.
//! Nothing here knows HTTP or JSON; the server maps [`DssError`] to status codes in one place.

mod airspace;
mod availability;
mod constraints;
mod intents;
pub mod rid;
mod subscriptions;

use std::sync::Arc;

use geo4d::{Timestamp, Volume4D};
use model::{Manager, UssAvailability};
use store::{Store, StoreError};

pub use airspace::{Airspace, MAX_MAP_CELLS};
pub use availability::ReportReceipt;
pub use model::{
    ConstraintView, ImplicitSubscriptionRequest, IntentView, PutIntentRequest, PutSubscriptionRequest, SubscriptionView,
};
pub use subscriptions::SubscriptionChange;

/// How many times an operation is retried when concurrent writes invalidate its snapshot.
const MAX_ATTEMPTS: usize = 16;

pub use auth::{AuthError, Caller, Scope};

/// The scopes each group of endpoints accepts (any one suffices), exactly as `utm.yaml` lists
/// them. The server checks them before reading a body; every operation checks them again.
pub mod scopes {
    use super::Scope::{self, *};
    pub const INTENTS: &[Scope] = &[StrategicCoordination, ConformanceMonitoringSa];
    pub const CONSTRAINTS_READ: &[Scope] = &[ConstraintManagement, ConstraintProcessing];
    pub const CONSTRAINTS_WRITE: &[Scope] = &[ConstraintManagement];
    pub const SUBSCRIPTIONS: &[Scope] = &[ConstraintProcessing, StrategicCoordination];
    pub const AVAILABILITY_READ: &[Scope] = &[AvailabilityArbitration, StrategicCoordination, ConformanceMonitoringSa];
    pub const AVAILABILITY_WRITE: &[Scope] = &[AvailabilityArbitration];
    pub const REPORTS: &[Scope] = &[
        ConstraintManagement,
        ConstraintProcessing,
        StrategicCoordination,
        ConformanceMonitoringSa,
        AvailabilityArbitration,
    ];
}

/// The closed set of outcomes other than success. The server maps each to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum DssError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The named version or OVN is not the current one, or the entity already exists.
    #[error("{0}")]
    Conflict(String),
    /// The key does not hold the current OVN of every relevant entity.
    #[error("{message}")]
    MissingOvns { message: String, intents: Vec<IntentView>, constraints: Vec<ConstraintView> },
    /// The caller is marked Down and may not make this change.
    #[error("{0}")]
    UssDown(String),
    /// Concurrent changes kept invalidating the operation.
    #[error("despite repeated attempts the DSS could not complete the change because of simultaneous changes; retry")]
    Contention,
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The store cannot make a write durable (a full disk): refused, not applied (503).
    #[error("{0}")]
    StorageFull(String),
    /// A per-manager quota would be exceeded (429).
    #[error("{0}")]
    QuotaExceeded(String),
}

impl From<AuthError> for DssError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(m) | AuthError::Forbidden(m) => DssError::Forbidden(m),
        }
    }
}

impl From<StoreError> for DssError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => DssError::Contention,
            StoreError::Full(m) => DssError::StorageFull(m),
            other => DssError::Unavailable(other.to_string()),
        }
    }
}

impl From<geo4d::GeoError> for DssError {
    fn from(e: geo4d::GeoError) -> Self {
        if e.is_too_large() {
            DssError::TooLarge(e.to_string())
        } else {
            DssError::BadRequest(e.to_string())
        }
    }
}

/// Managers' availabilities seen during one operation: a handful, so a list beats a map.
pub(crate) type AvailabilityCache = Vec<(Manager, UssAvailability)>;

/// Result of a change to an intent or constraint: the entity and who to notify.
#[derive(Debug, Clone)]
pub struct Change<V> {
    pub entity: V,
    pub subscribers: Vec<model::SubscriberToNotify>,
}

/// Source of the current time, injected so tests control it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(since_epoch.as_micros() as i64)
    }
}

/// Tunables with the defaults the issue and the reference DSS use.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long after its end an entity is kept (so its owner can still read, update or delete
    /// it after the flight).
    pub retention_s: i64,
    /// How far ahead of now a subscription may end (intents and constraints have no such
    /// limit: neither the standard nor the reference DSS sets one, and long-lived constraints are
    /// normal).
    pub max_horizon_s: i64,
    /// Default duration of a subscription created without an end time.
    pub default_subscription_s: i64,
    /// Longest a subscription may last (end minus start): 24 hours, as the reference DSS
    /// enforces (`maxSubscriptionDuration`).
    pub max_subscription_s: i64,
    /// Enforce the spec's text that `notify_for_constraints` needs `utm.constraint_processing`.
    /// Off by default: the reference DSS accepts it with `utm.strategic_coordination` alone and
    /// ecosystem clients rely on that.
    pub strict_scopes: bool,
    /// How far the time in a `requested_ovn_suffix` (a UUIDv7) may be from now.
    pub requested_ovn_tolerance_s: i64,
    /// How much later than a dependent intent's start an updated subscription may start (the
    /// reference DSS's allowance for clock skew).
    pub subscription_start_tolerance_s: i64,
    /// Discovery (area queries, subscribers to notify, the entities listed for a subscription)
    /// matches footprints' convex hulls padded by this many metres each; key checks stay exact.
    pub relevance_margin_m: f64,
    /// Most a single manager may hold at once.
    pub quotas: Quotas,
    /// The scope that may read the airspace map (`--map-scope`).
    pub map_scope: Scope,
    /// Accept `http://` base URLs from USSs (`--allow-http-base-urls`). Without it a base URL
    /// must be `https://`, the reference DSS's rule (`allow_http_base_urls`, applied to F3548
    /// and, in its newer versions, F3411 alike). The library's default accepts them (tests and
    /// embedded use); the `dss` command refuses them unless told otherwise.
    pub allow_http_base_urls: bool,
}

/// Per-manager limits on live entities and stored vertices: one USS cannot grow the DSS's
/// memory without bound. Checked when a change would add; changes that remove or keep are
/// always allowed. Under a pool two instances may admit concurrent creates of one manager
/// together, so the bound can be passed by the number of instances at most.
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    pub max_intents: usize,
    pub max_constraints: usize,
    pub max_subscriptions: usize,
    pub max_vertices: usize,
    pub max_isas: usize,
    pub max_rid_subscriptions: usize,
}

impl Default for Quotas {
    /// Generous: a busy USS plans tens of thousands of flights a day, and the retention keeps
    /// a day of them; 5 million vertices are a few hundred MB of memory.
    fn default() -> Self {
        Self {
            max_intents: 100_000,
            max_constraints: 10_000,
            max_subscriptions: 100_000,
            max_vertices: 5_000_000,
            max_isas: 100_000,
            max_rid_subscriptions: 100_000,
        }
    }
}

impl Config {
    /// How discovery matches (area queries, subscriber selection).
    pub fn discovery(&self) -> store::Match {
        store::Match::Relevant { margin_m: self.relevance_margin_m }
    }
}

/// Default relevance margin: 30 m each side. The standard's qualification tools treat
/// operations as relevant when the convex hulls of their footprints meet, whatever the gap
/// between the footprints themselves (two interlocking flights 8 m apart); the reference DSS
/// gets this from its ~1 km grid cells. 30 m each side (60 m between shapes) adds the typical
/// horizontal navigation error of a small UAS to that, so a USS hears of flights that close to
/// its own, without turning a dense city into everyone's neighbour.
pub const DEFAULT_RELEVANCE_MARGIN_M: f64 = 30.0;

impl Default for Config {
    fn default() -> Self {
        Self {
            retention_s: 24 * 3600,
            max_horizon_s: 90 * 24 * 3600,
            default_subscription_s: 24 * 3600,
            max_subscription_s: 24 * 3600,
            strict_scopes: false,
            requested_ovn_tolerance_s: 5 * 60,
            subscription_start_tolerance_s: 5 * 60,
            relevance_margin_m: DEFAULT_RELEVANCE_MARGIN_M,
            quotas: Quotas::default(),
            map_scope: Scope::MapRead,
            allow_http_base_urls: true,
        }
    }
}

/// The DSS over one store.
pub struct Dss<S: Store> {
    store: S,
    clock: Arc<dyn Clock>,
    config: Config,
}

impl<S: Store> Dss<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>, config: Config) -> Self {
        Self { store, clock, config }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Returns a record read by id once it (or, when absent, everything) is durable.
    async fn shown<T>(&self, found: Option<store::Stored<T>>) -> Result<Option<store::Stored<T>>, DssError> {
        match &found {
            Some(r) => self.store.settle(r.revision).await?,
            None => self.store.durable_barrier().await?,
        }
        Ok(found)
    }

    /// Availability of each manager, looked up once per operation.
    async fn availability_of(&self, cache: &mut AvailabilityCache, manager: &str) -> Result<UssAvailability, DssError> {
        if let Some((_, a)) = cache.iter().find(|(m, _)| m == manager) {
            return Ok(*a);
        }
        let a = self.store.get_availability(manager).await?.map(|r| r.value.availability).unwrap_or_default();
        cache.push((manager.to_owned(), a));
        Ok(a)
    }

    /// Checks the extents of an intent or constraint: every volume bounded in time and
    /// altitude, and the union ending in the future (some volumes may have ended already). No
    /// horizon: the standard and the reference DSS set none.
    fn check_entity_extents(&self, extents: &[Volume4D], what: &str) -> Result<(), DssError> {
        if extents.is_empty() {
            return Err(DssError::BadRequest(format!("{what} needs at least one volume in extents")));
        }
        let now = self.now();
        for (i, v) in extents.iter().enumerate() {
            if v.time.start().is_none() || v.time.end().is_none() {
                return Err(DssError::BadRequest(format!("extents[{i}]: time_start and time_end are required")));
            }
            if v.altitude.lower_m().is_none() || v.altitude.upper_m().is_none() {
                return Err(DssError::BadRequest(format!(
                    "extents[{i}]: volume.altitude_lower and volume.altitude_upper are required"
                )));
            }
        }
        let end = model::time_bounds(extents).end().unwrap_or(Timestamp::MAX);
        if end < now {
            return Err(DssError::BadRequest(format!("{what} may not end in the past")));
        }
        Ok(())
    }

    /// Runs the mutation `attempt` on a view of the store until it returns something other
    /// than [`DssError::Contention`], at most [`MAX_ATTEMPTS`] times. A success is durable (its
    /// commit waited); a refusal may describe what it read, so it waits for that to be durable
    /// too.
    ///
    /// The first attempt decides on the store's local view (free; on a store in one process it
    /// is already fresh); its commit's preconditions reject it if that view was stale, and any
    /// other outcome than success on a view that was not fresh is confirmed by an attempt on a
    /// fresh one, so no answer rests on state older than the request.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, DssError>
    where
        F: FnMut(store::View) -> Fut,
        Fut: std::future::Future<Output = Result<T, DssError>>,
    {
        let mut consistency = store::Consistency::Local;
        let mut outcome = Err(DssError::Contention);
        for _ in 0..MAX_ATTEMPTS {
            let view = self.store.view(consistency).await?;
            outcome = attempt(view).await;
            if outcome.is_ok() || (view.fresh && !matches!(outcome, Err(DssError::Contention))) {
                break;
            }
            consistency = store::Consistency::Fresh;
            tokio::task::yield_now().await;
        }
        if outcome.is_err() {
            self.store.durable_barrier().await?;
        }
        outcome
    }

    /// The consistency point at the start of an operation that only reads.
    pub(crate) async fn fresh(&self) -> Result<(), DssError> {
        self.store.view(store::Consistency::Fresh).await?;
        Ok(())
    }

    /// Refuses `writes` by `manager` if they would take it past a quota.
    pub(crate) async fn check_quota(&self, manager: &str, writes: &[store::Write]) -> Result<(), DssError> {
        use store::Write;
        let count = |e: &[geo4d::Volume4D]| model::vertex_count(e) as i64;
        // Net change per kind: (intents, constraints, subscriptions, vertices, ISAs, Remote ID
        // subscriptions).
        let mut d = [0i64; 6];
        for w in writes {
            match w {
                Write::PutIntent(n) => {
                    let old = self.store.get_intent(n.id).await?;
                    d[0] += i64::from(old.is_none());
                    d[3] += count(&n.extents) - old.map_or(0, |o| count(&o.value.extents));
                }
                Write::PutConstraint(n) => {
                    let old = self.store.get_constraint(n.id).await?;
                    d[1] += i64::from(old.is_none());
                    d[3] += count(&n.extents) - old.map_or(0, |o| count(&o.value.extents));
                }
                Write::PutSubscription(n) => {
                    let old = self.store.get_subscription(n.id).await?;
                    d[2] += i64::from(old.is_none());
                    d[3] += count(&n.extents) - old.map_or(0, |o| count(&o.value.extents));
                }
                Write::DeleteIntent(id) => {
                    if let Some(o) = self.store.get_intent(*id).await? {
                        d[0] -= 1;
                        d[3] -= count(&o.value.extents);
                    }
                }
                Write::DeleteConstraint(id) => {
                    if let Some(o) = self.store.get_constraint(*id).await? {
                        d[1] -= 1;
                        d[3] -= count(&o.value.extents);
                    }
                }
                Write::DeleteSubscription(id) => {
                    if let Some(o) = self.store.get_subscription(*id).await? {
                        d[2] -= 1;
                        d[3] -= count(&o.value.extents);
                    }
                }
                Write::BumpNotificationIndex(_) | Write::PutAvailability(_) => {}
                // F3411 entities count apart from the F3548 ones (their vertices included).
                Write::PutIsa(n) => d[4] += i64::from(self.store.get_isa(n.id).await?.is_none()),
                Write::DeleteIsa(id) => d[4] -= i64::from(self.store.get_isa(*id).await?.is_some()),
                Write::PutRidSubscription(n) => {
                    d[5] += i64::from(self.store.get_rid_subscription(n.id).await?.is_none())
                }
                Write::DeleteRidSubscription(id) => {
                    d[5] -= i64::from(self.store.get_rid_subscription(*id).await?.is_some())
                }
                Write::BumpRidNotificationIndex(_) => {}
            }
        }
        if d.iter().all(|x| *x <= 0) {
            return Ok(());
        }
        let u = self.store.usage(manager).await?;
        let q = &self.config.quotas;
        let checks = [
            (d[0], u.intents, q.max_intents, "live operational intents", "--max-intents-per-manager"),
            (d[1], u.constraints, q.max_constraints, "live constraints", "--max-constraints-per-manager"),
            (d[2], u.subscriptions, q.max_subscriptions, "live subscriptions", "--max-subscriptions-per-manager"),
            (d[3], u.vertices, q.max_vertices, "vertices", "--max-vertices-per-manager"),
            (d[4], u.isas, q.max_isas, "live identification service areas", "--max-isas-per-manager"),
            (
                d[5],
                u.rid_subscriptions,
                q.max_rid_subscriptions,
                "live Remote ID subscriptions",
                "--max-rid-subscriptions-per-manager",
            ),
        ];
        for (delta, held, max, what, flag) in checks {
            if delta > 0 && held as i64 + delta > max as i64 {
                return Err(DssError::QuotaExceeded(format!(
                    "{manager} holds {held} {what} and this change would add {delta}: the limit per manager is {max} ({flag})"
                )));
            }
        }
        Ok(())
    }

    /// Sweeps expired records every `interval` for as long as the process runs. Idempotent
    /// across a pool: every deletion is conditional on the revision it read, so sweeps of
    /// several instances never delete twice or lose a later change.
    pub async fn expire_forever(&self, interval: std::time::Duration) {
        loop {
            tokio::time::sleep(interval).await;
            match self.expire_once().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "expired entities removed"),
                Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
            }
        }
    }

    /// Removes everything that ended more than the retention period ago; returns how many
    /// records were removed. Intents go first so implicit subscriptions lose their dependents.
    pub async fn expire_once(&self) -> Result<usize, DssError> {
        use store::{Key, Precondition, Txn, Write};
        let cutoff = Timestamp(self.now().micros().saturating_sub(self.config.retention_s.saturating_mul(1_000_000)));
        let mut removed = 0;
        let expired = self.store.expired(cutoff).await?;
        let (subs, others): (Vec<_>, Vec<_>) =
            expired.into_iter().partition(|(k, _)| matches!(k, Key::Subscription(_)));
        for (key, revision) in others.into_iter().chain(subs) {
            let write = match &key {
                Key::OperationalIntent(id) => Write::DeleteIntent(*id),
                Key::Constraint(id) => Write::DeleteConstraint(*id),
                Key::Subscription(id) => {
                    if !self.store.dependent_intents(*id).await?.is_empty() {
                        continue;
                    }
                    Write::DeleteSubscription(*id)
                }
                Key::Isa(id) => Write::DeleteIsa(*id),
                Key::RidSubscription(id) => Write::DeleteRidSubscription(*id),
                Key::Availability(_) => continue,
            };
            let pre = Precondition::Revision { key, revision: Some(revision) };
            match self.store.commit(Txn { preconditions: vec![pre], writes: vec![write] }).await {
                Ok(_) => removed += 1,
                // Changed meanwhile (refreshed by its owner, or removed): leave it.
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(removed)
    }
}

impl<S: Store> Dss<S> {
    /// Validates a USS base URL (`model::check_base_url`): absolute http(s), a host, no user
    /// information or fragment; a query is accepted, as the reference DSS does. `http://` only
    /// with `allow_http_base_urls`.
    pub(crate) fn check_base_url(&self, url: &str, field: &str) -> Result<(), DssError> {
        model::check_base_url(url).map_err(|why| DssError::BadRequest(format!("{field} {why}")))?;
        if !self.config.allow_http_base_urls && !url.starts_with("https://") {
            return Err(DssError::BadRequest(format!(
                "{field} must use https (this DSS was started without --allow-http-base-urls), got `{url}`"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
