//! `Records`: the one owner of what the participant keeps, in memory (the serving copy) and in
//! its database (the durable one), and the only code that writes either.
//!
//! Consistency: every change takes the memory lock, applies itself there and queues its
//! database writes *before* releasing it, so changes reach the disk in the order they reached
//! memory. The writes are made by one writer thread, off the async threads, which commits
//! everything queued since its last commit in one SQLite transaction (one sync for many
//! changes; a group that fails is retried alone so it fails alone), and acknowledges each
//! change only once it is durable. A write-ahead record enters memory only once durable (a
//! change is never visible before it can survive a crash); the serving copy of an entity the
//! DSS accepted is updated even when the disk fails (peers must be able to fetch what the DSS
//! references), and the write-ahead record then stays for reconciliation.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::db::{Db, DbError, Table, Write};
use crate::domain::Kind;
use crate::entities::{
    Delivery, KnownConstraint, KnownIntent, OwnConstraint, OwnConstraintRecord, OwnEntity, OwnIntent, OwnIntentRecord,
    Pending, PendingRecord,
};

/// What the participant holds in memory: the serving copy of its durable records.
#[derive(Default)]
pub struct Memory {
    pub own_intents: BTreeMap<String, OwnIntent>,
    pub own_constraints: BTreeMap<String, OwnConstraint>,
    pub others_intents: HashMap<String, KnownIntent>,
    pub others_constraints: HashMap<String, KnownConstraint>,
    pub pending: HashMap<String, Pending>,
}

/// An own entity kept by [`Records`]: its table and its map in memory.
pub trait Held: OwnEntity {
    const TABLE: Table;
    fn map(mem: &Memory) -> &BTreeMap<String, Self>;
    fn map_mut(mem: &mut Memory) -> &mut BTreeMap<String, Self>;
}

impl Held for OwnIntent {
    const TABLE: Table = Table::OwnIntents;
    fn map(mem: &Memory) -> &BTreeMap<String, Self> {
        &mem.own_intents
    }
    fn map_mut(mem: &mut Memory) -> &mut BTreeMap<String, Self> {
        &mut mem.own_intents
    }
}

impl Held for OwnConstraint {
    const TABLE: Table = Table::OwnConstraints;
    fn map(mem: &Memory) -> &BTreeMap<String, Self> {
        &mem.own_constraints
    }
    fn map_mut(mem: &mut Memory) -> &mut BTreeMap<String, Self> {
        &mut mem.own_constraints
    }
}

fn own_table(kind: Kind) -> Table {
    match kind {
        Kind::Intent => Table::OwnIntents,
        Kind::Constraint => Table::OwnConstraints,
    }
}

struct Job {
    writes: Vec<Write>,
    done: tokio::sync::oneshot::Sender<Result<(), DbError>>,
}

/// A change queued for the disk: resolves once it is durable (or failed).
pub struct Durable(Option<tokio::sync::oneshot::Receiver<Result<(), DbError>>>);

impl Durable {
    pub async fn wait(self) -> Result<(), DbError> {
        match self.0 {
            None => Err(DbError::new("the participant's database writer has stopped")),
            Some(rx) => rx.await.unwrap_or_else(|_| Err(DbError::new("the participant's database writer has stopped"))),
        }
    }
}

pub struct Records {
    mem: RwLock<Memory>,
    db: Arc<Db>,
    writer: parking_lot::Mutex<mpsc::Sender<Job>>,
}

fn encode(e: serde_json::Error) -> DbError {
    DbError::new(format!("record encoding: {e}"))
}

impl Records {
    /// Opens the database in `dir`, loads every record, and starts the writer thread.
    pub fn open(dir: &std::path::Path) -> Result<Records, String> {
        let db = Db::open(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut mem = Memory::default();
        for (id, r) in db.load_all::<OwnIntentRecord>(Table::OwnIntents).map_err(|e| e.to_string())? {
            let own = OwnIntent::from_record(r).map_err(|e| format!("own intent {id}: {e}"))?;
            mem.own_intents.insert(id, own);
        }
        for (id, r) in db.load_all::<OwnConstraintRecord>(Table::OwnConstraints).map_err(|e| e.to_string())? {
            let own = OwnConstraint::from_record(r).map_err(|e| format!("own constraint {id}: {e}"))?;
            mem.own_constraints.insert(id, own);
        }
        // The caches were verified when written; one that no longer reads is simply dropped.
        for (id, oi) in db.load_all::<api::OperationalIntent>(Table::OthersIntents).map_err(|e| e.to_string())? {
            if let Ok(k) = KnownIntent::from_record(oi) {
                mem.others_intents.insert(id, k);
            }
        }
        for (id, c) in db.load_all::<api::Constraint>(Table::OthersConstraints).map_err(|e| e.to_string())? {
            if let Ok(k) = KnownConstraint::from_record(c) {
                mem.others_constraints.insert(id, k);
            }
        }
        for (id, p) in db.load_all::<PendingRecord>(Table::Pending).map_err(|e| e.to_string())? {
            let p = Pending::from_record(p).map_err(|e| format!("write-ahead record {id}: {e}"))?;
            mem.pending.insert(id, p);
        }
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel::<Job>();
        let writer_db = db.clone();
        std::thread::Builder::new()
            .name("uss-records".into())
            .spawn(move || write_loop(&writer_db, &rx))
            .map_err(|e| format!("starting the records writer: {e}"))?;
        Ok(Records { mem: RwLock::new(mem), db, writer: parking_lot::Mutex::new(tx) })
    }

    /// Queues `writes` as one atomic change; call with the memory lock held so that the disk
    /// sees changes in the order memory did.
    fn queue(&self, writes: Vec<Write>) -> Durable {
        let (done, rx) = tokio::sync::oneshot::channel();
        match self.writer.lock().send(Job { writes, done }) {
            Ok(()) => Durable(Some(rx)),
            Err(_) => Durable(None),
        }
    }

    // ---- reads (memory) ----

    /// A read of the serving copy.
    pub fn read<R>(&self, f: impl FnOnce(&Memory) -> R) -> R {
        f(&self.mem.read())
    }

    pub fn own<E: Held>(&self, id: &str) -> Option<E> {
        E::map(&self.mem.read()).get(id).cloned()
    }

    pub fn is_pending(&self, id: &str) -> bool {
        self.mem.read().pending.contains_key(id)
    }

    pub fn pendings(&self) -> Vec<Pending> {
        self.mem.read().pending.values().cloned().collect()
    }

    // ---- the write-ahead protocol ----

    /// Records a change durably before the DSS is asked to make it.
    pub async fn write_ahead(&self, pending: Pending) -> Result<(), DbError> {
        let body = serde_json::to_string(&pending.to_record()).map_err(encode)?;
        let durable = self.queue(vec![Write::Put(Table::Pending, pending.id.clone(), body)]);
        durable.wait().await?;
        self.mem.write().pending.insert(pending.id.clone(), pending);
        Ok(())
    }

    /// Drops a write-ahead record (the change was refused, or found not made).
    pub async fn drop_pending(&self, id: &str) -> Result<(), DbError> {
        let durable = self.queue(vec![Write::Delete(Table::Pending, id.to_owned())]);
        durable.wait().await?;
        self.mem.write().pending.remove(id);
        Ok(())
    }

    /// Records an own entity as the DSS now holds it and drops its write-ahead record, in one
    /// transaction. The serving copy is updated even if the disk fails; the write-ahead record
    /// then stays (in memory too) for reconciliation.
    pub async fn settle<E: Held>(&self, own: &E) -> Result<(), DbError> {
        let id = own.reference().id.clone();
        let body = own.record_json().map_err(encode)?;
        let durable = {
            let mut mem = self.mem.write();
            E::map_mut(&mut mem).insert(id.clone(), own.clone());
            self.queue(vec![Write::Put(E::TABLE, id.clone(), body), Write::Delete(Table::Pending, id.clone())])
        };
        durable.wait().await?;
        self.mem.write().pending.remove(&id);
        Ok(())
    }

    /// Applies `writes` with the removal of `id`'s write-ahead record, in one transaction (a
    /// change whose outcome is recorded elsewhere than in an own entity: a subscription).
    pub async fn settle_with(&self, id: &str, mut writes: Vec<Write>) -> Result<(), DbError> {
        writes.push(Write::Delete(Table::Pending, id.to_owned()));
        self.queue(writes).wait().await?;
        self.mem.write().pending.remove(id);
        Ok(())
    }

    /// Removes an own entity the DSS no longer holds, with its write-ahead record.
    pub async fn settle_removed(&self, kind: Kind, id: &str) -> Result<(), DbError> {
        self.drop_own(kind, id, true).await
    }

    /// Drops an own entity the DSS no longer holds (no change of it in flight).
    pub async fn remove_own(&self, kind: Kind, id: &str) -> Result<(), DbError> {
        self.drop_own(kind, id, false).await
    }

    /// Drops an own entity, and with it (in the same transaction) its write-ahead record when
    /// `settling`: the record leaves memory only once the removal is durable.
    async fn drop_own(&self, kind: Kind, id: &str, settling: bool) -> Result<(), DbError> {
        let durable = {
            let mut mem = self.mem.write();
            match kind {
                Kind::Intent => mem.own_intents.remove(id).map(|_| ()),
                Kind::Constraint => mem.own_constraints.remove(id).map(|_| ()),
            };
            let mut writes = vec![Write::Delete(own_table(kind), id.to_owned())];
            if settling {
                writes.push(Write::Delete(Table::Pending, id.to_owned()));
            }
            self.queue(writes)
        };
        durable.wait().await?;
        if settling {
            self.mem.write().pending.remove(id);
        }
        Ok(())
    }

    /// Records the deliveries of a notification on the entity, if it is still at `version`.
    pub async fn set_deliveries<E: Held>(
        &self,
        id: &str,
        version: i32,
        update: impl FnOnce(&[Delivery]) -> Vec<Delivery>,
    ) -> Result<(), DbError> {
        let durable = {
            let mut mem = self.mem.write();
            let Some(own) = E::map_mut(&mut mem).get_mut(id).filter(|o| o.reference().version == version) else {
                return Ok(());
            };
            let list = update(own.notified_mut());
            *own.notified_mut() = list;
            let body = own.record_json().map_err(encode)?;
            self.queue(vec![Write::Put(E::TABLE, id.to_owned(), body)])
        };
        durable.wait().await
    }

    /// Whether our entity `id` is still at `version` (a newer change supersedes a delivery).
    pub fn is_current<E: Held>(&self, id: &str, version: i32) -> bool {
        E::map(&self.mem.read()).get(id).is_some_and(|o| o.reference().version == version)
    }

    // ---- others' details (a cache: a failed disk write only costs a refetch) ----

    pub async fn remember_intent(&self, k: KnownIntent) -> Result<(), DbError> {
        let id = k.reference.id.clone();
        let body = serde_json::to_string(&k.to_wire()).map_err(encode)?;
        let durable = {
            let mut mem = self.mem.write();
            if mem.others_intents.get(&id).is_some_and(|c| c.reference.version > k.reference.version) {
                return Ok(());
            }
            mem.others_intents.insert(id.clone(), k);
            self.queue(vec![Write::Put(Table::OthersIntents, id, body)])
        };
        durable.wait().await
    }

    pub async fn remember_constraint(&self, k: KnownConstraint) -> Result<(), DbError> {
        let id = k.reference.id.clone();
        let body = serde_json::to_string(&k.to_wire()).map_err(encode)?;
        let durable = {
            let mut mem = self.mem.write();
            mem.others_constraints.insert(id.clone(), k);
            self.queue(vec![Write::Put(Table::OthersConstraints, id, body)])
        };
        durable.wait().await
    }

    pub async fn forget_known(&self, kind: Kind, id: &str) -> Result<(), DbError> {
        let durable = {
            let mut mem = self.mem.write();
            let table = match kind {
                Kind::Intent => {
                    mem.others_intents.remove(id);
                    Table::OthersIntents
                }
                Kind::Constraint => {
                    mem.others_constraints.remove(id);
                    Table::OthersConstraints
                }
            };
            self.queue(vec![Write::Delete(table, id.to_owned())])
        };
        durable.wait().await
    }

    // ---- the other tables (flight plans, notices, reports, the map's subscriptions) ----

    /// Writes `writes` atomically and durably.
    pub async fn apply(&self, writes: Vec<Write>) -> Result<(), DbError> {
        self.queue(writes).wait().await
    }

    pub async fn put<T: Serialize>(&self, table: Table, id: &str, value: &T) -> Result<(), DbError> {
        let body = serde_json::to_string(value).map_err(encode)?;
        self.apply(vec![Write::Put(table, id.to_owned(), body)]).await
    }

    pub async fn delete(&self, table: Table, id: &str) -> Result<(), DbError> {
        self.apply(vec![Write::Delete(table, id.to_owned())]).await
    }

    /// A query of the database, on a blocking thread.
    pub async fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R, DbError> + Send + 'static,
    ) -> Result<R, DbError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .unwrap_or_else(|e| Err(DbError::new(format!("a database read failed: {e}"))))
    }

    pub async fn get<T: DeserializeOwned + Send + 'static>(
        &self,
        table: Table,
        id: &str,
    ) -> Result<Option<T>, DbError> {
        let id = id.to_owned();
        self.query(move |db| db.get(table, &id)).await
    }

    pub async fn load_all<T: DeserializeOwned + Send + 'static>(
        &self,
        table: Table,
    ) -> Result<Vec<(String, T)>, DbError> {
        self.query(move |db| db.load_all(table)).await
    }
}

/// The writer thread: everything queued since the last commit goes in one transaction.
fn write_loop(db: &Db, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while let Ok(more) = rx.try_recv() {
            jobs.push(more);
        }
        let groups: Vec<&[Write]> = jobs.iter().map(|j| j.writes.as_slice()).collect();
        let results = db.apply_groups(&groups);
        for (job, result) in jobs.into_iter().zip(results) {
            let _ = job.done.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_changes_are_all_durable_and_in_memory_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let records = Arc::new(Records::open(dir.path()).expect("open"));
            let writers = (0..64).map(|i| {
                let records = records.clone();
                tokio::spawn(async move {
                    for round in 0..5 {
                        records.put(Table::FlightPlans, &format!("fp-{i}"), &round).await.expect("durable");
                    }
                })
            });
            for w in writers {
                w.await.expect("writer");
            }
        }
        let db = Db::open(dir.path()).expect("reopen");
        let rows: Vec<(String, i32)> = db.load_all(Table::FlightPlans).expect("load");
        assert_eq!(rows.len(), 64);
        assert!(rows.iter().all(|(_, round)| *round == 4), "every entity ends at its last write: {rows:?}");
    }
}
