//! The embedded, single-machine store: all state in memory, made durable by an append-only log
//! with group commit, compacted into a snapshot at every start.
//!
//! Why not a B-tree database: a DSS's working set is small (references, not details) and every
//! write must reach the disk before it is acknowledged. One `fdatasync` costs about as much as
//! the whole in-memory commit, so commits are applied in memory under a short lock and then
//! wait for a writer thread that flushes everything queued since its last sync in one
//! `write` + `fdatasync` (group commit): throughput scales with concurrency instead of being
//! capped at one sync per write.
//!
//! Invariants:
//! - a commit returns only after its record is synced; `durable_barrier` waits until everything
//!   readable is synced, and the DSS calls it before showing read data, so nobody ever acts on a
//!   write a crash could lose;
//! - the log is replayed through the same `State::apply` as live commits; a torn or damaged
//!   tail (an unacknowledged write) is cut off at start-up;
//! - if the disk fails to sync, the process aborts rather than serve state it cannot keep.

mod codec;
mod state;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write as _};
use std::path::Path;
use std::sync::Arc;

use geo4d::{Timestamp, Volume4D};
use model::{AvailabilityRecord, Constraint, OperationalIntent, Subscription, Uuid};
use parking_lot::{Condvar, Mutex, RwLock};
use store::{Committed, Key, Revision, Store, StoreError, Stored, Txn};
use tokio::sync::watch;

use crate::state::State;

const LOG_FILE: &str = "wal.log";
const SNAPSHOT_FILE: &str = "snapshot.bin";

/// Bytes queued for the log writer and the revision of the last record in them.
struct Pending {
    bytes: Vec<u8>,
    last_revision: Revision,
}

struct Inner {
    /// Held from precondition check to durable in `CommitMode::Serial` only.
    serial: Option<tokio::sync::Mutex<()>>,
    state: RwLock<State>,
    pending: Mutex<Pending>,
    wake_writer: Condvar,
    durable: watch::Sender<Revision>,
}

/// The embedded store. Cheap to clone; all clones share one state and one log.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

/// How commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitMode {
    /// Commits apply under a short lock and share syncs (group commit). The default.
    #[default]
    Group,
    /// One commit at a time, each holding a global lock through its own sync: the naive design,
    /// kept only as the benchmark's baseline (`deconflict dss --commit-mode serial`).
    Serial,
}

/// Figures from opening a data directory, for the start-up log line.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryReport {
    pub records_replayed: usize,
    pub torn_tail_bytes: usize,
    pub intents: usize,
    pub constraints: usize,
    pub subscriptions: usize,
}

fn io_err(context: &str, e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{context}: {e}"))
}

fn replay(path: &Path, state: &mut State) -> Result<(usize, usize), StoreError> {
    let mut buf = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut buf).map_err(|e| io_err("reading log", e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(io_err("opening log", e)),
    };
    let (mut pos, mut n) = (0, 0);
    while let Some((revision, writes, used)) = codec::decode_record(&buf[pos..])? {
        state.apply(writes, revision);
        pos += used;
        n += 1;
    }
    Ok((n, buf.len() - pos))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err("syncing data directory", e))
}

impl EmbeddedStore {
    /// Opens (creating if needed) a data directory: loads the snapshot, replays the log, writes
    /// a fresh snapshot and starts an empty log.
    pub fn open(dir: impl AsRef<Path>) -> Result<(Self, RecoveryReport), StoreError> {
        Self::open_with(dir, CommitMode::Group)
    }

    pub fn open_with(dir: impl AsRef<Path>, mode: CommitMode) -> Result<(Self, RecoveryReport), StoreError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| io_err("creating data directory", e))?;
        let mut state = State::recovering();
        let t = std::time::Instant::now();
        let (snap_records, _) = replay(&dir.join(SNAPSHOT_FILE), &mut state)?;
        let (log_records, torn) = replay(&dir.join(LOG_FILE), &mut state)?;
        let replay_ms = t.elapsed().as_millis() as u64;
        state.rebuild_indexes();
        let index_ms = t.elapsed().as_millis() as u64 - replay_ms;
        if torn > 0 {
            tracing::warn!(bytes = torn, "discarding a torn log tail (writes that were never acknowledged)");
        }
        Self::write_snapshot(&dir, &state)?;
        tracing::info!(replay_ms, index_ms, snapshot_ms = t.elapsed().as_millis() as u64 - replay_ms - index_ms, "store opened");
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(dir.join(LOG_FILE))
            .map_err(|e| io_err("opening log", e))?;
        log.sync_all().map_err(|e| io_err("syncing log", e))?;
        sync_dir(&dir)?;
        let report = RecoveryReport {
            records_replayed: snap_records + log_records,
            torn_tail_bytes: torn,
            intents: state.intents.rows.len(),
            constraints: state.constraints.rows.len(),
            subscriptions: state.subscriptions.rows.len(),
        };
        let revision = state.revision;
        let (durable, _) = watch::channel(revision);
        let inner = Arc::new(Inner {
            serial: (mode == CommitMode::Serial).then(|| tokio::sync::Mutex::new(())),
            state: RwLock::new(state),
            pending: Mutex::new(Pending { bytes: Vec::new(), last_revision: revision }),
            wake_writer: Condvar::new(),
            durable,
        });
        let writer_inner = inner.clone();
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || log_writer(writer_inner, log))
            .map_err(|e| io_err("starting log writer", e))?;
        Ok((Self { inner }, report))
    }

    fn write_snapshot(dir: &Path, state: &State) -> Result<(), StoreError> {
        let mut bytes = Vec::new();
        // A header record carries the global revision so revisions never go backwards.
        codec::encode_record(&mut bytes, state.revision, &[]);
        for (revision, write) in state.snapshot_records() {
            codec::encode_record(&mut bytes, revision, std::slice::from_ref(&write));
        }
        let tmp = dir.join("snapshot.tmp");
        let mut f = File::create(&tmp).map_err(|e| io_err("creating snapshot", e))?;
        f.write_all(&bytes).and_then(|_| f.sync_all()).map_err(|e| io_err("writing snapshot", e))?;
        fs::rename(&tmp, dir.join(SNAPSHOT_FILE)).map_err(|e| io_err("installing snapshot", e))?;
        sync_dir(dir)
    }

    /// Waits until everything up to `revision` is on disk.
    async fn durable_at(&self, revision: Revision) -> Result<(), StoreError> {
        if *self.inner.durable.borrow() >= revision {
            return Ok(());
        }
        let mut rx = self.inner.durable.subscribe();
        rx.wait_for(|d| *d >= revision)
            .await
            .map(|_| ())
            .map_err(|_| StoreError::Unavailable("log writer stopped".into()))
    }

    /// Runs `f` on the current state. Callers expose results only after `durable_barrier`.
    async fn read<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T, StoreError> {
        Ok(f(&self.inner.state.read()))
    }

    /// Current number of live records, for metrics.
    pub fn counts(&self) -> (usize, usize, usize) {
        let s = self.inner.state.read();
        (s.intents.rows.len(), s.constraints.rows.len(), s.subscriptions.rows.len())
    }
}

/// The group-commit loop: take everything queued, append it, sync once, publish the revision.
fn log_writer(inner: Arc<Inner>, mut log: File) {
    // Hold only a weak handle while idle so the store can be dropped.
    let weak = Arc::downgrade(&inner);
    drop(inner);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let (bytes, revision) = {
            let mut p = inner.pending.lock();
            while p.bytes.is_empty() {
                // Wake up now and then to notice that every store handle is gone.
                if inner.wake_writer.wait_for(&mut p, std::time::Duration::from_millis(200)).timed_out()
                    && Arc::strong_count(&inner) == 1
                {
                    return;
                }
            }
            (std::mem::take(&mut p.bytes), p.last_revision)
        };
        if let Err(e) = log.write_all(&bytes).and_then(|_| log.sync_data()) {
            // The write may or may not be on disk and memory already shows it: the only safe
            // answer is to stop serving; restart recovers exactly what reached the disk.
            tracing::error!(error = %e, "cannot write the durable log; aborting");
            std::process::abort();
        }
        inner.durable.send_replace(revision);
    }
}

fn exact<T: state::HasExtents>(rows: Vec<Stored<T>>, area: &[Volume4D]) -> Vec<Stored<T>> {
    rows.into_iter().filter(|r| geo4d::any_intersect(r.value.extents(), area)).collect()
}

fn ended_before(extents: &[Volume4D], cutoff: Timestamp) -> bool {
    model::time_bounds(extents).end().is_some_and(|end| end < cutoff)
}

impl Store for EmbeddedStore {
    async fn durable_barrier(&self) -> Result<(), StoreError> {
        let seen = self.inner.state.read().revision;
        self.durable_at(seen).await
    }

    async fn settle(&self, revision: Revision) -> Result<(), StoreError> {
        self.durable_at(revision).await
    }

    async fn settle_area(&self, kinds: &[store::Kind], area: &[Volume4D]) -> Result<(), StoreError> {
        let envelopes: Vec<_> = area.iter().map(Volume4D::envelope).collect();
        let last_change = self.inner.state.read().last_change(kinds, &envelopes);
        self.durable_at(last_change).await
    }

    async fn read_revision(&self) -> Result<Revision, StoreError> {
        self.read(|s| s.revision).await
    }

    async fn get_intent(&self, id: Uuid) -> Result<Option<Stored<OperationalIntent>>, StoreError> {
        self.read(|s| s.intents.rows.get(&id).cloned()).await
    }

    async fn search_intents(&self, area: &[Volume4D]) -> Result<Vec<Stored<OperationalIntent>>, StoreError> {
        let candidates = self.read(|s| s.intents.candidates(area)).await?;
        Ok(exact(candidates, area))
    }

    async fn get_constraint(&self, id: Uuid) -> Result<Option<Stored<Constraint>>, StoreError> {
        self.read(|s| s.constraints.rows.get(&id).cloned()).await
    }

    async fn search_constraints(&self, area: &[Volume4D]) -> Result<Vec<Stored<Constraint>>, StoreError> {
        let candidates = self.read(|s| s.constraints.candidates(area)).await?;
        Ok(exact(candidates, area))
    }

    async fn get_subscription(&self, id: Uuid) -> Result<Option<Stored<Subscription>>, StoreError> {
        self.read(|s| s.subscriptions.rows.get(&id).cloned()).await
    }

    async fn search_subscriptions(&self, area: &[Volume4D]) -> Result<Vec<Stored<Subscription>>, StoreError> {
        let candidates = self.read(|s| s.subscriptions.candidates(area)).await?;
        Ok(exact(candidates, area))
    }

    async fn dependent_intents(&self, subscription: Uuid) -> Result<Vec<Uuid>, StoreError> {
        self.read(|s| s.dependents.get(&subscription).map(|d| d.iter().copied().collect()).unwrap_or_default()).await
    }

    async fn get_availability(&self, uss: &str) -> Result<Option<Stored<AvailabilityRecord>>, StoreError> {
        self.read(|s| s.availability.get(uss).cloned()).await
    }

    async fn expired(&self, cutoff: Timestamp) -> Result<Vec<(Key, Revision)>, StoreError> {
        self.read(|s| {
            let mut out = Vec::new();
            for (id, r) in &s.intents.rows {
                if ended_before(&r.value.extents, cutoff) {
                    out.push((Key::OperationalIntent(*id), r.revision));
                }
            }
            for (id, r) in &s.constraints.rows {
                if ended_before(&r.value.extents, cutoff) {
                    out.push((Key::Constraint(*id), r.revision));
                }
            }
            for (id, r) in &s.subscriptions.rows {
                if ended_before(&r.value.extents, cutoff) {
                    out.push((Key::Subscription(*id), r.revision));
                }
            }
            out
        })
        .await
    }

    async fn commit(&self, txn: Txn) -> Result<Committed, StoreError> {
        let _serial = match &self.inner.serial {
            Some(m) => Some(m.lock().await),
            None => None,
        };
        let mut encoded = Vec::with_capacity(512);
        let (revision, notification_indexes) = {
            let mut state = self.inner.state.write();
            if !txn.preconditions.iter().all(|p| state.holds(p)) {
                return Err(StoreError::Conflict);
            }
            let revision = state.revision + 1;
            codec::encode_record(&mut encoded, revision, &txn.writes);
            let bumped = state.apply(txn.writes, revision);
            // Queue while still holding the state lock so the log order is the revision order.
            let mut p = self.inner.pending.lock();
            p.bytes.extend_from_slice(&encoded);
            p.last_revision = revision;
            (revision, bumped)
        };
        self.inner.wake_writer.notify_one();
        self.durable_at(revision).await?;
        Ok(Committed { revision, notification_indexes })
    }
}

#[cfg(test)]
mod tests;
