//! The DSS's record in memory, as both store backends hold it: entity maps, the R*-tree
//! indexes, dependents and the area cells that decide preconditions, fed by writes in revision
//! order. The embedded store keeps one behind its log; the etcd backend keeps one per DSS
//! instance, fed from etcd's watch stream, so every instance searches locally with the same
//! exact and relevance matching. Also the compact binary encoding of writes ([`codec`]): the
//! embedded store's log records, and the values the etcd backend stores.

mod cells;
pub mod codec;
pub mod heavy;
mod state;

use geo4d::{Envelope4, Match, Timestamp, Volume4D};
use model::rid::{Isa, RidSubscription};
use model::{AvailabilityRecord, Constraint, OperationalIntent, Subscription, Uuid};
use store::{Key, Kind, Precondition, Revision, StoreError, Stored, Write};

use crate::state::State;

pub use crate::state::{Found, HasExtents, Record};

/// Entities and their indexes, changed only by [`MemoryIndex::apply`].
#[derive(Default)]
pub struct MemoryIndex {
    state: State,
}

impl MemoryIndex {
    /// An index for a bulk load: applies skip the trees until [`MemoryIndex::finish_loading`].
    pub fn loading() -> Self {
        Self { state: State::recovering() }
    }
    pub fn finish_loading(&mut self) {
        self.state.rebuild_indexes();
    }
    /// Whether a transaction's precondition holds against this record.
    pub fn holds(&self, p: &Precondition) -> bool {
        self.state.holds(p)
    }
    /// The latest revision of any change of `kinds` in the area cells touching `envelopes`.
    pub fn last_change(&self, kinds: &[Kind], envelopes: &[Envelope4]) -> Revision {
        self.state.last_change(kinds, envelopes)
    }
    /// Every live record with its own revision, as shared handles (see [`Record`]).
    pub fn snapshot_records(&self) -> Vec<(Revision, Record)> {
        self.state.snapshot_records()
    }
    /// How many ISAs and Remote ID subscriptions are live.
    pub fn rid_counts(&self) -> (usize, usize) {
        (self.state.isas.rows.len(), self.state.rid_subscriptions.rows.len())
    }
    /// How many intents, constraints and subscriptions are live.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.state.intents.rows.len(), self.state.constraints.rows.len(), self.state.subscriptions.rows.len())
    }
    /// Applies writes committed at `revision`; returns the bumped notification indexes.
    pub fn apply(&mut self, writes: Vec<Write>, revision: Revision) -> Vec<(Uuid, i32)> {
        self.state.apply(writes, revision)
    }
    /// Sets a Remote ID subscription's notification index (as counted by the backend).
    pub fn set_rid_notification_index(&mut self, id: Uuid, index: i32) {
        if let Some(row) = self.state.rid_subscriptions.rows.get(&id) {
            if row.value.notification_index == index {
                return;
            }
            let mut sub = (*row.value).clone();
            sub.notification_index = index;
            let revision = row.revision;
            self.state.apply(vec![Write::PutRidSubscription(sub)], revision);
        }
    }
    /// Sets a subscription's notification index (as counted by the backend).
    pub fn set_notification_index(&mut self, id: Uuid, index: i32) {
        if let Some(row) = self.state.subscriptions.rows.get(&id) {
            if row.value.notification_index == index {
                return;
            }
            let mut sub = (*row.value).clone();
            sub.notification_index = index;
            let revision = row.revision;
            // Same geometry and revision: a put re-indexes the row under its new value.
            self.state.apply(vec![Write::PutSubscription(sub)], revision);
        }
    }
    /// Advances the revision without a change (a change this index does not hold).
    pub fn advance(&mut self, revision: Revision) {
        self.state.revision = self.state.revision.max(revision);
    }
    pub fn revision(&self) -> Revision {
        self.state.revision
    }
    pub fn usage(&self, manager: &str) -> store::Usage {
        self.state.usage(manager)
    }
    /// Live records of each kind, over every manager.
    pub fn live(&self) -> store::Usage {
        self.state.live()
    }
    pub fn intent(&self, id: Uuid) -> Option<Stored<OperationalIntent>> {
        self.state.intents.rows.get(&id).cloned()
    }
    pub fn constraint(&self, id: Uuid) -> Option<Stored<Constraint>> {
        self.state.constraints.rows.get(&id).cloned()
    }
    pub fn subscription(&self, id: Uuid) -> Option<Stored<Subscription>> {
        self.state.subscriptions.rows.get(&id).cloned()
    }
    pub fn availability(&self, uss: &str) -> Option<Stored<AvailabilityRecord>> {
        self.state.availability.get(uss).cloned()
    }
    pub fn isa(&self, id: Uuid) -> Option<Stored<Isa>> {
        self.state.isas.rows.get(&id).cloned()
    }
    pub fn rid_subscription(&self, id: Uuid) -> Option<Stored<RidSubscription>> {
        self.state.rid_subscriptions.rows.get(&id).cloned()
    }
    /// A search decided here when cheap, else its candidates, to be decided by
    /// [`heavy::matches`] outside the caller's lock.
    pub fn find_intents(&self, area: &[Volume4D], how: Match) -> Found<OperationalIntent> {
        self.state.intents.find(area, how)
    }
    pub fn find_constraints(&self, area: &[Volume4D], how: Match) -> Found<Constraint> {
        self.state.constraints.find(area, how)
    }
    pub fn find_subscriptions(&self, area: &[Volume4D], how: Match) -> Found<Subscription> {
        self.state.subscriptions.find(area, how)
    }
    pub fn find_isas(&self, area: &[Volume4D], how: Match) -> Found<Isa> {
        self.state.isas.find(area, how)
    }
    pub fn find_rid_subscriptions(&self, area: &[Volume4D], how: Match) -> Found<RidSubscription> {
        self.state.rid_subscriptions.find(area, how)
    }
    pub fn dependents(&self, subscription: Uuid) -> Vec<Uuid> {
        self.state.dependents.get(&subscription).map(|d| d.iter().copied().collect()).unwrap_or_default()
    }
    /// The current extents of the entity a key names (for marking the area a change leaves).
    pub fn extents_of(&self, key: &Key) -> Vec<Volume4D> {
        match key {
            Key::OperationalIntent(id) => self.intent(*id).map(|r| r.value.extents.clone()),
            Key::Constraint(id) => self.constraint(*id).map(|r| r.value.extents.clone()),
            Key::Subscription(id) => self.subscription(*id).map(|r| r.value.extents.clone()),
            Key::Isa(id) => self.isa(*id).map(|r| vec![r.value.extents.clone()]),
            Key::RidSubscription(id) => self.rid_subscription(*id).map(|r| vec![r.value.extents.clone()]),
            Key::Availability(_) => None,
        }
        .unwrap_or_default()
    }
    /// Records whose whole time extent ended before `cutoff`.
    pub fn expired(&self, cutoff: Timestamp) -> Vec<(Key, Revision)> {
        let ended = |extents: &[Volume4D]| model::time_bounds(extents).end().is_some_and(|end| end < cutoff);
        let mut out = Vec::new();
        for (id, r) in &self.state.intents.rows {
            if ended(&r.value.extents) {
                out.push((Key::OperationalIntent(*id), r.revision));
            }
        }
        for (id, r) in &self.state.constraints.rows {
            if ended(&r.value.extents) {
                out.push((Key::Constraint(*id), r.revision));
            }
        }
        for (id, r) in &self.state.subscriptions.rows {
            if ended(&r.value.extents) {
                out.push((Key::Subscription(*id), r.revision));
            }
        }
        for (id, r) in &self.state.isas.rows {
            if ended(std::slice::from_ref(&r.value.extents)) {
                out.push((Key::Isa(*id), r.revision));
            }
        }
        for (id, r) in &self.state.rid_subscriptions.rows {
            if ended(std::slice::from_ref(&r.value.extents)) {
                out.push((Key::RidSubscription(*id), r.revision));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;

/// One write in the embedded store's binary record format (without framing).
pub fn encode_write(w: &Write) -> Vec<u8> {
    let mut enc = crate::codec::Enc::default();
    enc.write(w);
    enc.0
}

/// The inverse of [`encode_write`]; refuses trailing bytes.
pub fn decode_write(bytes: &[u8]) -> Result<Write, StoreError> {
    let mut d = crate::codec::Dec::new(bytes);
    let w = d.write()?;
    if !d.done() {
        return Err(StoreError::Corrupt("trailing bytes after a record".into()));
    }
    Ok(w)
}
