//! The embedded, single-machine store: all state in memory, made durable by an append-only log
//! with group commit, compacted into a snapshot in the background after every start.
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
//! - the log is replayed through the same `State::apply` as live commits; a torn tail of the
//!   newest segment (an unacknowledged write) is cut off at start-up; the store serves as soon
//!   as the replay and one bulk index load are done, and compaction (rotate the log, snapshot,
//!   delete older segments) runs in the background;
//! - if the disk fails to sync, the process aborts rather than serve state it cannot keep.

mod codec;
pub mod memory;
mod state;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use geo4d::{Timestamp, Volume4D};
use model::{AvailabilityRecord, Constraint, OperationalIntent, Subscription, Uuid};
use parking_lot::{Condvar, Mutex, RwLock};
use store::{Committed, Key, Revision, Store, StoreError, Stored, Txn};
use tokio::sync::watch;

use crate::state::State;

const SNAPSHOT_FILE: &str = "snapshot.bin";

/// Bytes queued for the log writer and the revision of the last record in them.
struct Pending {
    bytes: Vec<u8>,
    last_revision: Revision,
}

struct Inner {
    /// The log segment being appended to and its generation; held by the writer through each
    /// write + sync, and by compaction while it rotates to a new segment.
    log: Mutex<(File, u64)>,
    dir: PathBuf,
    /// Holds an exclusive lock on `LOCK` for the life of the store: one process per directory.
    _lock: File,
    stop: std::sync::atomic::AtomicBool,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
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

/// Replays one file of records into `state`, skipping records at or below `skip_through` (they
/// are already in the snapshot). Returns (records applied, valid bytes, total bytes).
fn replay(path: &Path, state: &mut State, skip_through: Revision) -> Result<(usize, usize, usize), StoreError> {
    let mut buf = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut buf).map_err(|e| io_err("reading log", e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0, 0)),
        Err(e) => return Err(io_err("opening log", e)),
    };
    let (mut pos, mut n) = (0, 0);
    while let Some((revision, writes, used)) = codec::decode_record(&buf[pos..])? {
        if revision > skip_through || writes.is_empty() {
            state.apply(writes, revision);
            n += 1;
        }
        pos += used;
    }
    Ok((n, pos, buf.len()))
}

/// Log segments `wal-<generation>.log`, oldest first.
fn log_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err("listing data directory", e))? {
        let path = entry.map_err(|e| io_err("listing data directory", e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if let Some(generation) =
            name.strip_prefix("wal-").and_then(|r| r.strip_suffix(".log")).and_then(|g| g.parse().ok())
        {
            out.push((generation, path));
        }
    }
    out.sort();
    Ok(out)
}

fn segment_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("wal-{generation:012}.log"))
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
        let lock = File::create(dir.join("LOCK")).map_err(|e| io_err("creating lock file", e))?;
        lock.try_lock()
            .map_err(|_| StoreError::Unavailable(format!("{} is in use by another DSS process", dir.display())))?;
        let mut state = State::recovering();
        let t = std::time::Instant::now();
        let (snap_records, _, _) = replay(&dir.join(SNAPSHOT_FILE), &mut state, 0)?;
        let snapshot_revision = state.revision;
        let segments = log_segments(&dir)?;
        let (mut log_records, mut torn) = (0, 0);
        for (i, (_, path)) in segments.iter().enumerate() {
            let (n, valid, total) = replay(path, &mut state, snapshot_revision)?;
            log_records += n;
            if valid < total {
                if i + 1 < segments.len() {
                    // Only the newest segment can end mid-write; damage elsewhere is not a
                    // crash artefact, and serving would silently drop acknowledged writes.
                    return Err(StoreError::Corrupt(format!("{} is damaged at byte {valid}", path.display())));
                }
                torn = total - valid;
                let f = OpenOptions::new().write(true).open(path).map_err(|e| io_err("opening log", e))?;
                f.set_len(valid as u64)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| io_err("cutting the torn log tail", e))?;
                tracing::warn!(bytes = torn, "discarded a torn log tail (a write that was never acknowledged)");
            }
        }
        let replay_ms = t.elapsed().as_millis() as u64;
        state.rebuild_indexes();
        tracing::info!(
            replay_ms,
            index_ms = t.elapsed().as_millis() as u64 - replay_ms,
            records = log_records,
            "store recovered"
        );
        // Keep appending to the newest segment; compaction rotates to a new one.
        let generation = segments.last().map_or(1, |(g, _)| *g);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(&dir, generation))
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
            log: Mutex::new((log, generation)),
            dir: dir.clone(),
            _lock: lock,
            stop: std::sync::atomic::AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            serial: (mode == CommitMode::Serial).then(|| tokio::sync::Mutex::new(())),
            state: RwLock::new(state),
            pending: Mutex::new(Pending { bytes: Vec::new(), last_revision: revision }),
            wake_writer: Condvar::new(),
            durable,
        });
        let writer_inner = inner.clone();
        let writer = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || log_writer(writer_inner))
            .map_err(|e| io_err("starting log writer", e))?;
        inner.threads.lock().push(writer);
        if log_records > 0 || torn > 0 {
            // Fold the replayed log into a new snapshot, off the serving path.
            let compact_inner = inner.clone();
            let compaction = std::thread::Builder::new()
                .name("compaction".into())
                .spawn(move || {
                    if let Err(e) = compact(&compact_inner) {
                        tracing::error!(error = %e, "compaction failed; the log keeps everything, retrying at next start");
                    }
                })
                .map_err(|e| io_err("starting compaction", e))?;
            inner.threads.lock().push(compaction);
        }
        Ok((Self { inner }, report))
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

    /// Finishes background work (compaction, the log writer) and releases the directory. Every
    /// acknowledged write is already durable; this only makes a clean hand-over possible, e.g.
    /// reopening the directory in the same process.
    pub fn shutdown(self) {
        self.inner.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.wake_writer.notify_all();
        let threads: Vec<_> = std::mem::take(&mut *self.inner.threads.lock());
        for t in threads {
            let _ = t.join();
        }
    }
}

/// The group-commit loop: take everything queued, append it, sync once, publish the revision.
fn log_writer(inner: Arc<Inner>) {
    // Hold only a weak handle while idle so the store can be dropped.
    let weak = Arc::downgrade(&inner);
    drop(inner);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let (bytes, revision) = {
            let mut p = inner.pending.lock();
            while p.bytes.is_empty() {
                if inner.stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                // Wake up now and then to notice that every store handle is gone.
                if inner.wake_writer.wait_for(&mut p, std::time::Duration::from_millis(200)).timed_out()
                    && Arc::strong_count(&inner) == 1
                {
                    return;
                }
            }
            (std::mem::take(&mut p.bytes), p.last_revision)
        };
        let mut log = inner.log.lock();
        if let Err(e) = log.0.write_all(&bytes).and_then(|_| log.0.sync_data()) {
            // The write may or may not be on disk and memory already shows it: the only safe
            // answer is to stop serving; restart recovers exactly what reached the disk.
            tracing::error!(error = %e, "cannot write the durable log; aborting");
            std::process::abort();
        }
        drop(log);
        inner.durable.send_replace(revision);
    }
}

/// Rotates the log to a new segment, writes a snapshot of the state (which holds everything in
/// the older segments), installs it atomically, then deletes the older segments. A crash at any
/// point leaves either the old snapshot with every segment, or the new one with extra segments
/// whose records it already holds (replay skips them by revision).
/// Bytes of snapshot written between two syncs.
const SNAPSHOT_SYNC_BYTES: usize = 4 << 20;

fn compact(inner: &Inner) -> Result<(), StoreError> {
    let t = std::time::Instant::now();
    let old_generation = {
        let mut log = inner.log.lock();
        let next = log.1 + 1;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(&inner.dir, next))
            .map_err(|e| io_err("rotating log", e))?;
        sync_dir(&inner.dir)?;
        let old = log.1;
        *log = (file, next);
        old
    };
    // Everything in the old segments was applied before it was written: the state read now
    // contains it all.
    let (revision, records) = {
        let state = inner.state.read();
        (state.revision, state.snapshot_records())
    };
    let tmp = inner.dir.join("snapshot.tmp");
    let file = File::create(&tmp).map_err(|e| io_err("creating snapshot", e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut buf = Vec::with_capacity(1 << 17);
    // A header record carries the global revision so revisions never go backwards.
    codec::encode_record(&mut buf, revision, &[]);
    let mut unsynced = 0usize;
    for (rev, record) in records {
        codec::encode_record(&mut buf, rev, &[record.to_write()]);
        if buf.len() > (1 << 16) {
            out.write_all(&buf).map_err(|e| io_err("writing snapshot", e))?;
            unsynced += buf.len();
            buf.clear();
        }
        // Sync as we go: one large sync at the end would make the log writer's own syncs
        // (which every client waits on) queue behind the whole snapshot for a long moment.
        if unsynced > SNAPSHOT_SYNC_BYTES {
            out.flush().map_err(|e| io_err("writing snapshot", e))?;
            out.get_ref().sync_data().map_err(|e| io_err("syncing snapshot", e))?;
            unsynced = 0;
        }
    }
    out.write_all(&buf).map_err(|e| io_err("writing snapshot", e))?;
    let file = out.into_inner().map_err(|e| io_err("writing snapshot", e.into_error()))?;
    file.sync_all().map_err(|e| io_err("syncing snapshot", e))?;
    fs::rename(&tmp, inner.dir.join(SNAPSHOT_FILE)).map_err(|e| io_err("installing snapshot", e))?;
    sync_dir(&inner.dir)?;
    for (generation, path) in log_segments(&inner.dir)? {
        if generation <= old_generation {
            fs::remove_file(&path).map_err(|e| io_err("removing compacted log", e))?;
        }
    }
    sync_dir(&inner.dir)?;
    tracing::info!(elapsed_ms = t.elapsed().as_millis() as u64, revision, "compaction done");
    Ok(())
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

    async fn settle_area(&self, kinds: &[store::Kind], area: &[Volume4D], how: store::Match) -> Result<(), StoreError> {
        let envelopes: Vec<_> = area.iter().flat_map(|v| v.envelopes_for(how)).collect();
        let last_change = self.inner.state.read().last_change(kinds, &envelopes);
        self.durable_at(last_change).await
    }

    async fn read_revision(&self) -> Result<Revision, StoreError> {
        self.read(|s| s.revision).await
    }

    async fn get_intent(&self, id: Uuid) -> Result<Option<Stored<OperationalIntent>>, StoreError> {
        self.read(|s| s.intents.rows.get(&id).cloned()).await
    }

    async fn search_intents(
        &self,
        area: &[Volume4D],
        how: store::Match,
    ) -> Result<Vec<Stored<OperationalIntent>>, StoreError> {
        self.read(|s| s.intents.search(area, how)).await
    }

    async fn get_constraint(&self, id: Uuid) -> Result<Option<Stored<Constraint>>, StoreError> {
        self.read(|s| s.constraints.rows.get(&id).cloned()).await
    }

    async fn search_constraints(
        &self,
        area: &[Volume4D],
        how: store::Match,
    ) -> Result<Vec<Stored<Constraint>>, StoreError> {
        self.read(|s| s.constraints.search(area, how)).await
    }

    async fn get_subscription(&self, id: Uuid) -> Result<Option<Stored<Subscription>>, StoreError> {
        self.read(|s| s.subscriptions.rows.get(&id).cloned()).await
    }

    async fn search_subscriptions(
        &self,
        area: &[Volume4D],
        how: store::Match,
    ) -> Result<Vec<Stored<Subscription>>, StoreError> {
        self.read(|s| s.subscriptions.search(area, how)).await
    }

    async fn dependent_intents(&self, subscription: Uuid) -> Result<Vec<Uuid>, StoreError> {
        self.read(|s| s.dependents.get(&subscription).map(|d| d.iter().copied().collect()).unwrap_or_default()).await
    }

    async fn get_availability(&self, uss: &str) -> Result<Option<Stored<AvailabilityRecord>>, StoreError> {
        self.read(|s| s.availability.get(uss).cloned()).await
    }

    async fn usage(&self, manager: &str) -> Result<store::Usage, StoreError> {
        self.read(|s| s.usage(manager)).await
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
        // Encoded before the state lock is taken; only the revision is stamped under it.
        let mut record = codec::PreparedRecord::new(&txn.writes);
        let (revision, notification_indexes) = {
            let mut state = self.inner.state.write();
            if !txn.preconditions.iter().all(|p| state.holds(p)) {
                return Err(StoreError::Conflict);
            }
            let revision = state.revision + 1;
            let bumped = state.apply(txn.writes, revision);
            // Queue while still holding the state lock so the log order is the revision order.
            let mut p = self.inner.pending.lock();
            p.bytes.extend_from_slice(record.seal(revision));
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
