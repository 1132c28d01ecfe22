//! The in-memory state of the embedded store: entity maps, one R*-tree per kind over volume
//! envelopes, and per-area-cell change revisions for [`Precondition::AreaUnchanged`].
//!
//! `apply` is the only mutator; the same function replays the log at start-up, so what is
//! recovered is exactly what was acknowledged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use geo4d::{Envelope4, Volume4D};
use model::rid::{Isa, RidSubscription};
use model::{AvailabilityRecord, Constraint, OperationalIntent, Subscription, Uuid};
use rstar::{ParentNode, RStarInsertionStrategy, RTree, RTreeNode, RTreeObject, RTreeParams, AABB};
use store::{Key, Kind, Precondition, Revision, Stored, Write};

use crate::cells::AreaCells;

/// One volume of one row in an R*-tree: its box and the row's handle, so a search reaches the
/// row without a map lookup (one cache miss fewer per candidate on a loaded server). The handle
/// is always the row's current one: `put` and `remove` replace entries, and a notification
/// index bump swaps the handle in place (see [`Table::refresh_handles`]).
pub(crate) struct IndexEntry<T> {
    envelope: AABB<[f32; 3]>,
    pub(crate) row: Stored<T>,
    volume_idx: u32,
}

impl<T> Clone for IndexEntry<T> {
    fn clone(&self) -> Self {
        Self { envelope: self.envelope, row: self.row.clone(), volume_idx: self.volume_idx }
    }
}

/// Entries are equal when they are the same volume of the same row version (pointer identity:
/// rows are immutable once shared).
impl<T> PartialEq for IndexEntry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.volume_idx == other.volume_idx
            && Arc::ptr_eq(&self.row.value, &other.row.value)
            && self.envelope == other.envelope
    }
}

#[cfg(test)]
impl<T> IndexEntry<T> {
    pub(crate) fn for_test(envelope: AABB<[f32; 3]>, value: T) -> Self {
        Self { envelope, row: Stored { value: Arc::new(value), revision: 0 }, volume_idx: 0 }
    }
}

impl<T> RTreeObject for IndexEntry<T> {
    type Envelope = AABB<[f32; 3]>;
    fn envelope(&self) -> Self::Envelope {
        self.envelope
    }
}

/// The envelope axes the index keeps: longitude, latitude and time. Altitude is left to the
/// exact test (checked first, in nanoseconds): bands of 0-400 m barely filter, and a smaller
/// 3D box makes a smaller, faster tree.
const AXES: [usize; 3] = [0, 1, 3];
/// Index units per envelope unit, per kept axis (longitude°, latitude°, seconds). The R*-tree
/// splits nodes by area and margin, so its axes must be of comparable scale: degrees become
/// ~1 m units and time counts 1 s as 1 m (a 1 h window weighs like a 3.6 km side). Without this
/// the tree partitions almost only by time and spatial queries visit most nodes.
const AXIS_SCALE: [f64; 3] = [1.0e5, 1.0e5, 1.0];

/// Index time is counted from here (2023-11-14), so f32 keeps ~16 s resolution for decades.
const TIME_ORIGIN_S: f64 = 1.7e9;

/// The index stores single-precision boxes (half the memory traffic of double precision, the
/// main cost of a search on a loaded server), each rounded outwards: a box can only grow, so
/// the index still returns every true candidate, and the exact test removes the few extra.
pub(crate) fn aabb(e: &Envelope4) -> AABB<[f32; 3]> {
    let origin = [0.0, 0.0, TIME_ORIGIN_S];
    let lo = std::array::from_fn(|i| round_down((e.min[AXES[i]] - origin[i]) * AXIS_SCALE[i]));
    let hi = std::array::from_fn(|i| round_up((e.max[AXES[i]] - origin[i]) * AXIS_SCALE[i]));
    AABB::from_corners(lo, hi)
}

fn round_down(v: f64) -> f32 {
    let f = v as f32;
    if f64::from(f) > v {
        f.next_down()
    } else {
        f
    }
}

fn round_up(v: f64) -> f32 {
    let f = v as f32;
    if f64::from(f) < v {
        f.next_up()
    } else {
        f
    }
}

/// A query box as plain arrays, for the traversal below.
pub(crate) struct Box3 {
    lo: [f32; 3],
    hi: [f32; 3],
}

impl Box3 {
    pub(crate) fn of(b: &AABB<[f32; 3]>) -> Self {
        Self { lo: b.lower(), hi: b.upper() }
    }
    #[inline(always)]
    fn meets(&self, b: &AABB<[f32; 3]>) -> bool {
        let (lo, hi) = (b.lower(), b.upper());
        // Non-short-circuit `&`: six compares and no branches.
        (lo[0] <= self.hi[0])
            & (self.lo[0] <= hi[0])
            & (lo[1] <= self.hi[1])
            & (self.lo[1] <= hi[1])
            & (lo[2] <= self.hi[2])
            & (self.lo[2] <= hi[2])
    }
}

/// The entries under `node` whose boxes meet `q`. Walks the children of each node in
/// place, descending only into those that meet the query: cheaper than rstar's selection
/// iterator, which pushes every child of a visited node on a stack and tests it again when
/// popped (the traversal was the largest single cost of a city query).
pub(crate) fn collect_intersecting<'t, T>(node: &'t ParentNode<IndexEntry<T>>, q: &Box3, out: &mut Vec<&'t Stored<T>>) {
    for child in node.children() {
        match child {
            RTreeNode::Leaf(e) => {
                if q.meets(&e.envelope) {
                    out.push(&e.row);
                }
            }
            RTreeNode::Parent(p) => {
                if q.meets(&p.envelope()) {
                    collect_intersecting(p, q, out);
                }
            }
        }
    }
}

/// Node sizes of the R*-trees. rstar's default (at most 6 children) makes deep trees whose
/// 4D nodes overlap a lot when built by inserts; 16 children measured 2-2.5x faster area queries
/// over 150,000 city volumes built by inserts (8.2 -> 3.8 us), for slightly dearer inserts.
pub(crate) struct IndexParams;
impl RTreeParams for IndexParams {
    const MIN_SIZE: usize = 6;
    const MAX_SIZE: usize = 16;
    const REINSERTION_COUNT: usize = 4;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

/// One kind of spatial entity: the records and their index.
pub(crate) struct Table<T> {
    pub(crate) rows: HashMap<Uuid, Stored<T>>,
    pub(crate) tree: RTree<IndexEntry<T>, IndexParams>,
    /// False while recovering: the tree is bulk-loaded once at the end instead.
    indexing: bool,
    /// Manager -> (rows, vertices), for quotas.
    usage: HashMap<String, (usize, usize)>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self { rows: HashMap::new(), tree: RTree::new_with_params(), indexing: true, usage: HashMap::new() }
    }
}

/// What the index and the exact search need of a row.
pub trait HasExtents {
    fn extents(&self) -> &[Volume4D];
    fn manager(&self) -> &str;
}
impl HasExtents for OperationalIntent {
    fn extents(&self) -> &[Volume4D] {
        &self.extents
    }
    fn manager(&self) -> &str {
        &self.manager
    }
}
impl HasExtents for Constraint {
    fn extents(&self) -> &[Volume4D] {
        &self.extents
    }
    fn manager(&self) -> &str {
        &self.manager
    }
}
impl HasExtents for Subscription {
    fn extents(&self) -> &[Volume4D] {
        &self.extents
    }
    fn manager(&self) -> &str {
        &self.manager
    }
}

impl HasExtents for Isa {
    fn extents(&self) -> &[Volume4D] {
        std::slice::from_ref(&self.extents)
    }
    fn manager(&self) -> &str {
        &self.manager
    }
}
impl HasExtents for RidSubscription {
    fn extents(&self) -> &[Volume4D] {
        std::slice::from_ref(&self.extents)
    }
    fn manager(&self) -> &str {
        &self.manager
    }
}

impl<T: HasExtents> Table<T> {
    /// One entry per envelope of each volume (two for a volume across the antimeridian).
    fn entries(row: &Stored<T>) -> impl Iterator<Item = IndexEntry<T>> + '_ {
        row.value.extents().iter().enumerate().flat_map(move |(i, v)| {
            v.envelopes().map(move |e| IndexEntry { envelope: aabb(&e), row: row.clone(), volume_idx: i as u32 })
        })
    }
    /// Inserts or replaces; returns the envelopes touched (old and new) for change tracking.
    fn put(&mut self, id: Uuid, value: T, revision: Revision) -> Vec<Envelope4> {
        let mut touched = self.remove(id);
        touched.extend(value.extents().iter().flat_map(Volume4D::envelopes));
        let u = self.usage.entry(value.manager().to_owned()).or_default();
        u.0 += 1;
        u.1 += model::vertex_count(value.extents());
        let row = Stored { value: Arc::new(value), revision };
        if self.indexing {
            for e in Self::entries(&row) {
                self.tree.insert(e);
            }
        }
        self.rows.insert(id, row);
        touched
    }
    fn remove(&mut self, id: Uuid) -> Vec<Envelope4> {
        let Some(old) = self.rows.remove(&id) else { return Vec::new() };
        if let Some(u) = self.usage.get_mut(old.value.manager()) {
            u.0 = u.0.saturating_sub(1);
            u.1 = u.1.saturating_sub(model::vertex_count(old.value.extents()));
            if u.0 == 0 {
                self.usage.remove(old.value.manager());
            }
        }
        if self.indexing {
            for e in Self::entries(&old) {
                self.tree.remove(&e);
            }
        }
        old.value.extents().iter().flat_map(Volume4D::envelopes).collect()
    }
    /// Changes row `id` in place with `f`, keeping its geometry and revision (a notification
    /// index bump): the index shares the row's handle, so this copies the value and points the
    /// row's index entries at the copy. `None` when there is no such row.
    fn update_in_place<R>(&mut self, id: Uuid, f: impl FnOnce(&mut T) -> R) -> Option<R>
    where
        T: Clone,
    {
        let row = self.rows.get_mut(&id)?;
        let old = row.clone();
        let result = f(Arc::make_mut(&mut row.value));
        let new = row.clone();
        self.refresh_handles(&old, &new);
        Some(result)
    }

    /// After a row's value was replaced by `new` with the same geometry (a notification index
    /// bump): points the row's index entries, which hold `old`, at `new`.
    fn refresh_handles(&mut self, old: &Stored<T>, new: &Stored<T>) {
        if !self.indexing {
            return;
        }
        for (i, v) in old.value.extents().iter().enumerate() {
            for part in v.envelopes() {
                for e in self.tree.locate_in_envelope_mut(&aabb(&part)) {
                    if e.volume_idx == i as u32 && Arc::ptr_eq(&e.row.value, &old.value) {
                        e.row = new.clone();
                    }
                }
            }
        }
    }
    /// Test invariant: the index holds exactly one entry per volume of every row, each with the
    /// row's current handle.
    #[cfg(test)]
    pub(crate) fn check_index(&self) {
        let parts: usize =
            self.rows.values().map(|r| r.value.extents().iter().flat_map(Volume4D::envelopes).count()).sum();
        assert_eq!(self.tree.size(), parts, "one index entry per envelope of every stored volume");
        for e in self.tree.iter() {
            let current = self.rows.values().find(|r| Arc::ptr_eq(&r.value, &e.row.value));
            assert!(current.is_some(), "an index entry holds a handle no row has");
        }
    }
    /// (rows, vertices) of `manager`.
    pub(crate) fn usage_of(&self, manager: &str) -> (usize, usize) {
        self.usage.get(manager).copied().unwrap_or_default()
    }
    /// Rebuilds the index in one bulk load (faster and better balanced than inserts).
    pub(crate) fn rebuild_index(&mut self) {
        let entries: Vec<IndexEntry<T>> =
            self.rows.values().flat_map(|r| Self::entries(r).collect::<Vec<_>>()).collect();
        self.tree = RTree::bulk_load_with_params(entries);
        self.indexing = true;
    }

    /// Rows with a volume matching a volume of `area` (exactly, or by relevance: the query's
    /// envelopes are then widened by its reach), each row once, as the store serves them: decided here, under the store's read lock, when its
    /// exact tests are cheap ([`Found::Hits`], the usual case: nothing is cloned but the hits);
    /// else the candidates, to be decided on the bounded pool for heavy work outside the lock
    /// ([`Found::Heavy`], see `heavy`).
    pub(crate) fn find(&self, area: &[Volume4D], how: geo4d::Match) -> Found<T> {
        let candidates = self.candidate_refs(area, how);
        if search_cost(area, &candidates) < crate::heavy::HEAVY_SEARCH_COST {
            Found::Hits(exact_matches(area, how, &candidates).into_iter().cloned().collect())
        } else {
            Found::Heavy(candidates.into_iter().cloned().collect())
        }
    }

    /// [`Self::find`], decided in place whatever its cost (the tests' view of a search).
    #[cfg(test)]
    pub(crate) fn search(&self, area: &[Volume4D], how: geo4d::Match) -> Vec<Stored<T>> {
        match self.find(area, how) {
            Found::Hits(hits) => hits,
            Found::Heavy(candidates) => {
                let refs: Vec<&Stored<T>> = candidates.iter().collect();
                exact_matches(area, how, &refs).into_iter().cloned().collect()
            }
        }
    }

    /// Rows whose index entries meet the envelopes of `area` (as [`Self::find`] widens them),
    /// each once, before any exact test.
    fn candidate_refs(&self, area: &[Volume4D], how: geo4d::Match) -> Vec<&Stored<T>> {
        // Hits are few (a handful per query): a sorted vector dedups them cheaper than a set.
        let mut candidates: Vec<&Stored<T>> = Vec::new();
        for e in area.iter().flat_map(|v| v.envelopes_for(how)) {
            let q = Box3::of(&aabb(&e));
            collect_intersecting(self.tree.root(), &q, &mut candidates);
        }
        candidates.sort_unstable_by_key(|c| Arc::as_ptr(&c.value));
        candidates.dedup_by(|a, b| Arc::ptr_eq(&a.value, &b.value));
        candidates
    }
}

/// What a search found: its hits, or candidates too costly to decide where it ran.
pub enum Found<T> {
    Hits(Vec<Stored<T>>),
    Heavy(Vec<Stored<T>>),
}

/// The work an exact search of `candidates` against `area` costs, in vertex visits: each
/// candidate volume is tested against the prepared area (its vertices and the area's).
pub fn search_cost<T: HasExtents>(area: &[Volume4D], candidates: &[&Stored<T>]) -> u64 {
    let area_vertices = model::vertex_count(area) as u64 + 8;
    candidates
        .iter()
        .map(|c| model::vertex_count(c.value.extents()) as u64 + area_vertices * c.value.extents().len() as u64)
        .sum()
}

/// The candidates that match `area` exactly, or by relevance (`how`).
pub fn exact_matches<'a, T: HasExtents>(
    area: &[Volume4D],
    how: geo4d::Match,
    candidates: &[&'a Stored<T>],
) -> Vec<&'a Stored<T>> {
    // Each candidate is a chain of cache misses (row, its volumes, their plane points) on a
    // loaded server. Touch every candidate's next link before testing any, so the misses of
    // independent candidates overlap instead of waiting one behind the other.
    let mut sink = 0.0;
    for c in candidates {
        sink += c.value.extents().len() as f64;
    }
    for c in candidates {
        sink += c.value.extents().first().map_or(0.0, |v| v.altitude.lower_m().unwrap_or(0.0));
    }
    for c in candidates {
        sink += c.value.extents().iter().map(|v| v.footprint.touch_plane()).sum::<f64>();
    }
    std::hint::black_box(sink);
    let prepared = geo4d::PreparedArea::new(area);
    match how {
        geo4d::Match::Exact => {
            candidates.iter().copied().filter(|r| prepared.intersects_any(r.value.extents())).collect()
        }
        // What intersects is relevant (the cheap prepared test first); the rest is decided by
        // the hulls.
        geo4d::Match::Relevant { margin_m } => candidates
            .iter()
            .copied()
            .filter(|r| {
                let extents = r.value.extents();
                prepared.intersects_any(extents)
                    || area.iter().any(|a| extents.iter().any(|v| a.relevant_beyond(v, margin_m)))
            })
            .collect(),
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) revision: Revision,
    pub(crate) intents: Table<OperationalIntent>,
    pub(crate) constraints: Table<Constraint>,
    pub(crate) subscriptions: Table<Subscription>,
    pub(crate) availability: HashMap<String, Stored<AvailabilityRecord>>,
    pub(crate) isas: Table<Isa>,
    pub(crate) rid_subscriptions: Table<RidSubscription>,
    /// Subscription id -> intents that depend on it.
    pub(crate) dependents: HashMap<Uuid, HashSet<Uuid>>,
    /// Revisions of the last change per area cell, per kind (bounded work at any size).
    cells: AreaCells,
}

fn kind_tag(kind: Kind) -> u8 {
    match kind {
        Kind::OperationalIntent => 0,
        Kind::Constraint => 1,
        Kind::Subscription => 2,
        Kind::Availability => 3,
        Kind::Isa => 4,
        Kind::RidSubscription => 5,
    }
}

impl State {
    pub(crate) fn revision_of(&self, key: &Key) -> Option<Revision> {
        match key {
            Key::OperationalIntent(id) => self.intents.rows.get(id).map(|r| r.revision),
            Key::Constraint(id) => self.constraints.rows.get(id).map(|r| r.revision),
            Key::Subscription(id) => self.subscriptions.rows.get(id).map(|r| r.revision),
            Key::Availability(uss) => self.availability.get(uss).map(|r| r.revision),
            Key::Isa(id) => self.isas.rows.get(id).map(|r| r.revision),
            Key::RidSubscription(id) => self.rid_subscriptions.rows.get(id).map(|r| r.revision),
        }
    }

    pub(crate) fn holds(&self, p: &Precondition) -> bool {
        match p {
            Precondition::Revision { key, revision } => self.revision_of(key) == *revision,
            Precondition::AreaUnchanged { kinds, envelopes, since } => {
                if *since >= self.revision {
                    return true;
                }
                kinds.iter().all(|k| {
                    let tag = kind_tag(*k);
                    envelopes.iter().all(|e| self.cells.last_change(tag, e) <= *since)
                })
            }
        }
    }

    /// The latest revision of any change of `kinds` in cells touching `envelopes`.
    pub(crate) fn last_change(&self, kinds: &[Kind], envelopes: &[Envelope4]) -> Revision {
        let mut latest = 0;
        for k in kinds {
            let tag = kind_tag(*k);
            for e in envelopes {
                latest = latest.max(self.cells.last_change(tag, e));
            }
        }
        latest
    }

    fn mark(&mut self, kind: Kind, touched: &[Envelope4], revision: Revision) {
        if !self.intents.indexing {
            return;
        }
        let tag = kind_tag(kind);
        for e in touched {
            self.cells.mark(tag, e, revision);
        }
    }

    /// Applies one committed transaction's writes at `revision`; returns bumped indexes.
    pub(crate) fn apply(&mut self, writes: Vec<Write>, revision: Revision) -> Vec<(Uuid, i32)> {
        let mut bumped = Vec::new();
        self.revision = self.revision.max(revision);
        for w in writes {
            match w {
                Write::PutIntent(oi) => {
                    let (id, sub) = (oi.id, oi.subscription_id);
                    self.unlink_dependent(id);
                    if let Some(sub) = sub {
                        self.dependents.entry(sub).or_default().insert(id);
                    }
                    let touched = self.intents.put(id, oi, revision);
                    self.mark(Kind::OperationalIntent, &touched, revision);
                }
                Write::DeleteIntent(id) => {
                    self.unlink_dependent(id);
                    let touched = self.intents.remove(id);
                    self.mark(Kind::OperationalIntent, &touched, revision);
                }
                Write::PutConstraint(c) => {
                    let touched = self.constraints.put(c.id, c, revision);
                    self.mark(Kind::Constraint, &touched, revision);
                }
                Write::DeleteConstraint(id) => {
                    let touched = self.constraints.remove(id);
                    self.mark(Kind::Constraint, &touched, revision);
                }
                Write::PutSubscription(s) => {
                    let touched = self.subscriptions.put(s.id, s, revision);
                    self.mark(Kind::Subscription, &touched, revision);
                }
                Write::DeleteSubscription(id) => {
                    let touched = self.subscriptions.remove(id);
                    self.mark(Kind::Subscription, &touched, revision);
                }
                Write::BumpNotificationIndex(id) => {
                    // An index increment is not a change of the subscription: neither its
                    // revision nor its area cells move, so increments never conflict.
                    let bump = |s: &mut Subscription| {
                        s.notification_index = s.notification_index.wrapping_add(1).max(0);
                        s.notification_index
                    };
                    if let Some(index) = self.subscriptions.update_in_place(id, bump) {
                        bumped.push((id, index));
                    }
                }
                Write::BumpRidNotificationIndex(id) => {
                    let bump = |s: &mut RidSubscription| {
                        s.notification_index = s.notification_index.wrapping_add(1).max(0);
                        s.notification_index
                    };
                    if let Some(index) = self.rid_subscriptions.update_in_place(id, bump) {
                        bumped.push((id, index));
                    }
                }
                Write::PutIsa(isa) => {
                    let touched = self.isas.put(isa.id, isa, revision);
                    self.mark(Kind::Isa, &touched, revision);
                }
                Write::DeleteIsa(id) => {
                    let touched = self.isas.remove(id);
                    self.mark(Kind::Isa, &touched, revision);
                }
                Write::PutRidSubscription(sub) => {
                    let touched = self.rid_subscriptions.put(sub.id, sub, revision);
                    self.mark(Kind::RidSubscription, &touched, revision);
                }
                Write::DeleteRidSubscription(id) => {
                    let touched = self.rid_subscriptions.remove(id);
                    self.mark(Kind::RidSubscription, &touched, revision);
                }
                Write::PutAvailability(a) => {
                    self.availability.insert(a.uss.clone(), Stored { value: Arc::new(a), revision });
                }
            }
        }
        bumped
    }

    pub(crate) fn usage(&self, manager: &str) -> store::Usage {
        let (intents, vi) = self.intents.usage_of(manager);
        let (constraints, vc) = self.constraints.usage_of(manager);
        let (subscriptions, vs) = self.subscriptions.usage_of(manager);
        let (isas, _) = self.isas.usage_of(manager);
        let (rid_subscriptions, _) = self.rid_subscriptions.usage_of(manager);
        store::Usage { intents, constraints, subscriptions, vertices: vi + vc + vs, isas, rid_subscriptions }
    }

    /// Live records of each kind, over every manager (`vertices` left at zero).
    pub(crate) fn live(&self) -> store::Usage {
        store::Usage {
            intents: self.intents.rows.len(),
            constraints: self.constraints.rows.len(),
            subscriptions: self.subscriptions.rows.len(),
            vertices: 0,
            isas: self.isas.rows.len(),
            rid_subscriptions: self.rid_subscriptions.rows.len(),
        }
    }

    fn unlink_dependent(&mut self, intent: Uuid) {
        if let Some(sub) = self.intents.rows.get(&intent).and_then(|r| r.value.subscription_id) {
            if let Some(set) = self.dependents.get_mut(&sub) {
                set.remove(&intent);
                if set.is_empty() {
                    self.dependents.remove(&sub);
                }
            }
        }
    }

    /// Recovery mode: applies skip the spatial indexes and area cells (no reader exists yet,
    /// and no precondition can name a revision from before the store opened).
    pub(crate) fn recovering() -> Self {
        let mut s = Self::default();
        s.intents.indexing = false;
        s.constraints.indexing = false;
        s.subscriptions.indexing = false;
        s.isas.indexing = false;
        s.rid_subscriptions.indexing = false;
        s
    }

    /// Rebuilds every index after a replay.
    pub(crate) fn rebuild_indexes(&mut self) {
        self.intents.rebuild_index();
        self.constraints.rebuild_index();
        self.subscriptions.rebuild_index();
        self.isas.rebuild_index();
        self.rid_subscriptions.rebuild_index();
    }

    /// Every live record with its own revision, as shared handles: taking them under the read
    /// lock costs a pointer copy each (milliseconds for 100,000 records), so a snapshot never
    /// holds writers — and the readers queued behind them — for the time of a deep copy.
    pub(crate) fn snapshot_records(&self) -> Vec<(Revision, Record)> {
        let mut out = Vec::with_capacity(
            self.subscriptions.rows.len()
                + self.intents.rows.len()
                + self.constraints.rows.len()
                + self.availability.len()
                + self.isas.rows.len()
                + self.rid_subscriptions.rows.len(),
        );
        out.extend(self.subscriptions.rows.values().map(|r| (r.revision, Record::Subscription(r.value.clone()))));
        out.extend(self.intents.rows.values().map(|r| (r.revision, Record::Intent(r.value.clone()))));
        out.extend(self.constraints.rows.values().map(|r| (r.revision, Record::Constraint(r.value.clone()))));
        out.extend(self.availability.values().map(|r| (r.revision, Record::Availability(r.value.clone()))));
        out.extend(self.isas.rows.values().map(|r| (r.revision, Record::Isa(r.value.clone()))));
        out.extend(
            self.rid_subscriptions.rows.values().map(|r| (r.revision, Record::RidSubscription(r.value.clone()))),
        );
        out
    }
}

/// A live record held for a snapshot.
pub enum Record {
    Subscription(Arc<Subscription>),
    Intent(Arc<OperationalIntent>),
    Constraint(Arc<Constraint>),
    Availability(Arc<AvailabilityRecord>),
    Isa(Arc<Isa>),
    RidSubscription(Arc<RidSubscription>),
}

impl Record {
    /// The write that recreates this record.
    pub fn to_write(&self) -> Write {
        match self {
            Record::Subscription(v) => Write::PutSubscription((**v).clone()),
            Record::Intent(v) => Write::PutIntent((**v).clone()),
            Record::Constraint(v) => Write::PutConstraint((**v).clone()),
            Record::Availability(v) => Write::PutAvailability((**v).clone()),
            Record::Isa(v) => Write::PutIsa((**v).clone()),
            Record::RidSubscription(v) => Write::PutRidSubscription((**v).clone()),
        }
    }
}
