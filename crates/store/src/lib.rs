//! The storage contract of the DSS: snapshot reads plus atomic, conditional commits.
//!
//! A backend never runs DSS logic and never holds a lock across a request. The DSS layer reads,
//! decides (key check, subscribers to notify), and then commits a [`Txn`] whose
//! [`Precondition`]s say what its decision depended on: the exact revision of each entity it
//! read, and that nothing of given kinds changed in the area it searched since the revision it
//! read at. A backend commits the writes atomically if and only if every precondition still
//! holds, otherwise it answers [`StoreError::Conflict`] and the DSS retries. An embedded backend
//! checks preconditions in memory; a distributed one (etcd) maps them to compare-and-set on key
//! revisions and on coarse area-cell keys. Neither needs a process-local lock to be correct.
//!
//! The module [`conformance`] is the behaviour every backend must show; each backend's tests run
//! it.

use std::future::Future;
use std::sync::Arc;

pub use geo4d::Match;
use geo4d::{Envelope4, Timestamp, Volume4D};
use model::rid::{Isa, RidSubscription};
use model::{AvailabilityRecord, Constraint, OperationalIntent, Subscription, Uuid};

pub mod conformance;
pub mod pool;

/// A monotonically increasing commit number. Every committed write gets a new one.
pub type Revision = u64;

/// How current the reads of an operation must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// After a consistency point: reads see at least every change committed (by anyone, through
    /// any instance sharing the store) before the view was opened.
    Fresh,
    /// This instance's view as it stands, without a consistency point: only for a decision whose
    /// commit's preconditions reject it if the view was stale (a lost race), and whose refusal
    /// is confirmed on a fresh view before anyone is told.
    Local,
}

/// A view opened by [`Store::view`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// The revision reads through the view see at least: every later change to an area is
    /// detected by [`Precondition::AreaUnchanged`] with `since` set to it.
    pub revision: Revision,
    /// Whether the view is fresh in the sense of [`Consistency::Fresh`] (asked for, or the
    /// store has no other view than its own).
    pub fresh: bool,
}

/// A value read from the store with the revision of its last change.
#[derive(Debug)]
pub struct Stored<T> {
    pub value: Arc<T>,
    pub revision: Revision,
}

impl<T> Clone for Stored<T> {
    fn clone(&self) -> Self {
        Self { value: self.value.clone(), revision: self.revision }
    }
}

/// The kinds of entity a precondition can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    OperationalIntent,
    Constraint,
    Subscription,
    Availability,
    /// F3411 identification service areas.
    Isa,
    /// F3411 subscriptions (a namespace of their own: an id may be both an F3548 and an F3411
    /// subscription's).
    RidSubscription,
}

/// Identifies one stored record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    OperationalIntent(Uuid),
    Constraint(Uuid),
    Subscription(Uuid),
    Availability(String),
    Isa(Uuid),
    RidSubscription(Uuid),
}

/// What a commit's decision depended on.
#[derive(Debug, Clone)]
pub enum Precondition {
    /// The record is at exactly this revision (`None`: it does not exist).
    Revision { key: Key, revision: Option<Revision> },
    /// No record of these kinds whose extents touch `envelopes` was created, changed or deleted
    /// after revision `since`. Backends may over-approximate (report a conflict for a nearby
    /// change) but never under-approximate.
    AreaUnchanged { kinds: Vec<Kind>, envelopes: Vec<Envelope4>, since: Revision },
}

/// One change inside a transaction.
#[derive(Debug, Clone)]
pub enum Write {
    PutIntent(OperationalIntent),
    DeleteIntent(Uuid),
    PutConstraint(Constraint),
    DeleteConstraint(Uuid),
    PutSubscription(Subscription),
    DeleteSubscription(Uuid),
    /// Increment a subscription's notification index; commutes with other increments, so it
    /// carries no precondition. The new index is reported in [`Committed::notification_indexes`].
    BumpNotificationIndex(Uuid),
    PutAvailability(AvailabilityRecord),
    PutIsa(Isa),
    DeleteIsa(Uuid),
    PutRidSubscription(RidSubscription),
    DeleteRidSubscription(Uuid),
    /// Increment a Remote ID subscription's notification index, as
    /// [`Write::BumpNotificationIndex`] does an F3548 subscription's; reported in
    /// [`Committed::notification_indexes`] too.
    BumpRidNotificationIndex(Uuid),
}

/// Writes applied atomically when every precondition holds.
#[derive(Debug, Clone, Default)]
pub struct Txn {
    pub preconditions: Vec<Precondition>,
    pub writes: Vec<Write>,
}

/// The result of a durable commit.
#[derive(Debug, Clone)]
pub struct Committed {
    pub revision: Revision,
    /// New notification index of each bumped subscription, in the order of the writes.
    pub notification_indexes: Vec<(Uuid, i32)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A precondition no longer holds; re-read and try again.
    #[error("a concurrent change invalidated this transaction")]
    Conflict,
    /// The backend cannot serve (disk full, cluster unreachable, ...).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The disk has no room: the write was refused and not applied; reads still work.
    #[error("{0}")]
    Full(String),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What one manager holds in the store, for quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub intents: usize,
    pub constraints: usize,
    pub subscriptions: usize,
    /// Vertices over all of the manager's intents, constraints and subscriptions.
    pub vertices: usize,
    /// F3411 identification service areas.
    pub isas: usize,
    /// F3411 subscriptions.
    pub rid_subscriptions: usize,
}

/// The storage contract. A commit returns only once its writes are durable. Reads may observe
/// commits still being synced (so a mutation's reads never wait on the disk: its own commit
/// orders after them); before data read is shown to anyone, call [`Store::durable_barrier`].
pub trait Store: Send + Sync + 'static {
    /// Waits until everything visible to reads at the time of the call is durable.
    fn durable_barrier(&self) -> impl Future<Output = Result<()>> + Send;
    /// Waits until every change up to `revision` is durable (for showing a record read at it).
    fn settle(&self, revision: Revision) -> impl Future<Output = Result<()>> + Send;
    /// Waits until every visible change of `kinds` touching `area` is durable (for showing search
    /// results); cheaper than a full barrier when the area is quiet.
    fn settle_area(&self, kinds: &[Kind], area: &[Volume4D], how: Match) -> impl Future<Output = Result<()>> + Send;

    /// Opens the view an operation reads through, as current as `consistency` asks: its
    /// revision, and whether it is fresh. The DSS opens one at the start of every operation and
    /// of every attempt of a mutation, so a shared backend pays for one consistency point (a
    /// quorum read) per operation, not one per read. A store in one process is always fresh.
    fn view(&self, consistency: Consistency) -> impl Future<Output = Result<View>> + Send;

    fn get_intent(&self, id: Uuid) -> impl Future<Output = Result<Option<Stored<OperationalIntent>>>> + Send;
    /// Intents any of whose volumes matches any of `area` as `how` says (exact intersection, or
    /// relevance for discovery).
    fn search_intents(
        &self,
        area: &[Volume4D],
        how: Match,
    ) -> impl Future<Output = Result<Vec<Stored<OperationalIntent>>>> + Send;

    fn get_constraint(&self, id: Uuid) -> impl Future<Output = Result<Option<Stored<Constraint>>>> + Send;
    fn search_constraints(
        &self,
        area: &[Volume4D],
        how: Match,
    ) -> impl Future<Output = Result<Vec<Stored<Constraint>>>> + Send;

    fn get_subscription(&self, id: Uuid) -> impl Future<Output = Result<Option<Stored<Subscription>>>> + Send;
    /// Subscriptions any of whose volumes matches any of `area` as `how` says.
    fn search_subscriptions(
        &self,
        area: &[Volume4D],
        how: Match,
    ) -> impl Future<Output = Result<Vec<Stored<Subscription>>>> + Send;
    /// Ids of the intents whose `subscription_id` is `id`.
    fn dependent_intents(&self, subscription: Uuid) -> impl Future<Output = Result<Vec<Uuid>>> + Send;

    fn get_isa(&self, id: Uuid) -> impl Future<Output = Result<Option<Stored<Isa>>>> + Send;
    /// ISAs whose volume matches any of `area` as `how` says.
    fn search_isas(&self, area: &[Volume4D], how: Match) -> impl Future<Output = Result<Vec<Stored<Isa>>>> + Send;
    fn get_rid_subscription(&self, id: Uuid) -> impl Future<Output = Result<Option<Stored<RidSubscription>>>> + Send;
    /// Remote ID subscriptions whose volume matches any of `area` as `how` says.
    fn search_rid_subscriptions(
        &self,
        area: &[Volume4D],
        how: Match,
    ) -> impl Future<Output = Result<Vec<Stored<RidSubscription>>>> + Send;

    fn get_availability(&self, uss: &str) -> impl Future<Output = Result<Option<Stored<AvailabilityRecord>>>> + Send;

    /// Why the store is degraded (for example refusing writes on a full disk), or `None`.
    fn degraded(&self) -> Option<String> {
        None
    }

    /// What `manager` holds now (as of the latest revision read).
    fn usage(&self, manager: &str) -> impl Future<Output = Result<Usage>> + Send;
    /// Live records of each kind over every manager, as this instance's index holds them now
    /// (for gauges: no consistency point is paid; `vertices` is left at zero).
    fn live(&self) -> Usage;

    /// Records whose whole time extent ended before `cutoff`, for expiry.
    fn expired(&self, cutoff: Timestamp) -> impl Future<Output = Result<Vec<(Key, Revision)>>> + Send;

    /// Atomically apply `txn.writes` if every precondition holds; returns once durable.
    fn commit(&self, txn: Txn) -> impl Future<Output = Result<Committed>> + Send;
}
