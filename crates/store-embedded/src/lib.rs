//! The embedded, single-machine store: all state in memory, made durable by an append-only log
//! with group commit, compacted into a snapshot in the background (after a start that replayed
//! a log, and whenever the log outgrows the live data, see [`CompactionPolicy`]).
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
//! - the log is replayed through the same `MemoryIndex::apply` as live commits; a torn tail of the
//!   newest segment (an unacknowledged write) is cut off at start-up; the store serves as soon
//!   as the replay and one bulk index load are done, and compaction (rotate the log, snapshot,
//!   delete older segments) runs in the background;
//! - the log is written into space allocated ahead of it (zeros written past its end, see
//!   [`PREALLOCATE_BYTES`]), and a commit claims its bytes of that space before it is applied:
//!   when the disk is full, the allocation fails first, so a write that cannot be made durable
//!   is refused (`StoreError::Full`, 503) before anything shows it, reads go on, the store
//!   reports itself degraded, and writes resume by themselves once an allocation succeeds;
//! - if writing or syncing into allocated space fails, the disk is lying (or failing): memory
//!   already shows the write, so the process aborts rather than serve state it cannot keep.

mod record;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use geo4d::{Timestamp, Volume4D};
use model::rid::{Isa, RidSubscription};
use model::{AvailabilityRecord, Constraint, OperationalIntent, Subscription, Uuid};
use parking_lot::{Condvar, Mutex, RwLock};
use store::{Committed, Key, Revision, Store, StoreError, Stored, Txn};
use tokio::sync::watch;

use store_index::{heavy, MemoryIndex};

const SNAPSHOT_FILE: &str = "snapshot.bin";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
/// The data directory's format, one line: `deconflict-store <version>`.
const FORMAT_FILE: &str = "FORMAT";
/// The format this binary writes and reads. 1: log segments and a snapshot of records framed by
/// `record`, writes encoded by `store_index::codec`. A directory from before formats were
/// recorded (data, no FORMAT file) is format 1 and is marked so; a newer one is refused.
pub const FORMAT: u32 = 1;

/// Checks (or, for a new directory or one from before formats were recorded, writes) the data
/// directory's format; data in a format this binary cannot read is refused, never touched.
fn check_format(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(FORMAT_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let version =
                text.trim().strip_prefix("deconflict-store ").and_then(|v| v.parse::<u32>().ok()).ok_or_else(|| {
                    StoreError::Corrupt(format!("{} does not name a format: `{}`", path.display(), text.trim()))
                })?;
            if version > FORMAT {
                return Err(StoreError::Corrupt(format!(
                    "{} holds a store in format {version}, written by a newer Deconflict; this binary reads format \
                     {FORMAT} and older: run the newer binary (or restore a backup made before the upgrade)",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // New, or written before formats were recorded (format 1 either way): mark it.
            let tmp = dir.join("FORMAT.tmp");
            fs::write(&tmp, format!("deconflict-store {FORMAT}\n"))
                .and_then(|_| File::open(&tmp)?.sync_all())
                .and_then(|_| fs::rename(&tmp, &path))
                .and_then(|_| File::open(dir)?.sync_all())
                .map_err(|e| io_err("writing the FORMAT file", e))
        }
        Err(e) => Err(io_err("reading the FORMAT file", e)),
    }
}

/// Log space allocated at a time by default, ahead of the records (zeros, so replay sees a
/// clean end). When less than half of it is left unclaimed, the writer allocates more.
pub const PREALLOCATE_BYTES: u64 = 4 << 20;
/// After a failed allocation (disk full), how long before the writer tries again.
const ALLOCATE_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// When the log is compacted while serving.
#[derive(Debug, Clone, Copy)]
pub struct CompactionPolicy {
    /// Compact once the log holds this many times the bytes of the live data (the last
    /// snapshot)...
    pub live_factor: u64,
    /// ...and in any case once it holds this many bytes...
    pub max_log_bytes: u64,
    /// ...but never for less than this many bytes of log.
    pub min_log_bytes: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self { live_factor: 2, max_log_bytes: 64 << 20, min_log_bytes: 4 << 20 }
    }
}

impl CompactionPolicy {
    fn threshold(&self, live_bytes: u64) -> u64 {
        live_bytes.saturating_mul(self.live_factor).min(self.max_log_bytes).max(self.min_log_bytes)
    }
}

/// Options for opening a store.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    pub mode: CommitMode,
    pub compaction: CompactionPolicy,
    /// Log space allocated at a time ([`PREALLOCATE_BYTES`] by default).
    pub preallocate_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { mode: CommitMode::Group, compaction: CompactionPolicy::default(), preallocate_bytes: PREALLOCATE_BYTES }
    }
}

/// Bytes queued for the log writer and the revision of the last record in them.
struct Pending {
    bytes: Vec<u8>,
    last_revision: Revision,
    /// Allocated log space not yet claimed by a queued or written record.
    room: u64,
    /// Why writes are refused, while the disk is full.
    degraded: Option<String>,
    /// When an allocation last failed.
    alloc_failed_at: Option<std::time::Instant>,
}

impl Pending {
    /// Whether the writer should allocate log space now.
    fn wants_space(&self, low: u64) -> bool {
        self.room < low && self.alloc_failed_at.is_none_or(|t| t.elapsed() >= ALLOCATE_RETRY)
    }
}

/// The log segment being written.
struct LogFile {
    file: File,
    generation: u64,
    /// End of the last record written.
    write_pos: u64,
    /// End of the space allocated (zeros past `write_pos`).
    allocated: u64,
    /// Bytes allocated at a time.
    chunk: u64,
}

impl LogFile {
    /// Allocates `PREALLOCATE_BYTES` more by writing zeros past the end. On failure (the disk
    /// is full) gives back whatever was written, and leaves the file as it was.
    fn allocate(&mut self) -> std::io::Result<u64> {
        use std::os::unix::fs::FileExt;
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let mut at = self.allocated;
        let end = self.allocated + self.chunk;
        while at < end {
            let n = (end - at).min(ZEROS.len() as u64) as usize;
            if let Err(e) = self.file.write_all_at(&ZEROS[..n], at) {
                let _ = self.file.set_len(self.allocated.max(self.write_pos));
                return Err(e);
            }
            at += n as u64;
        }
        self.allocated = end;
        Ok(self.chunk)
    }
}

struct Inner {
    /// The log segment being written; held by the writer through each write + sync, and by
    /// compaction while it switches to a new segment.
    log: Mutex<LogFile>,
    dir: PathBuf,
    /// Holds an exclusive lock on `LOCK` for the life of the store: one process per directory.
    _lock: File,
    stop: std::sync::atomic::AtomicBool,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Held from precondition check to durable in `CommitMode::Serial` only.
    serial: Option<tokio::sync::Mutex<()>>,
    state: RwLock<MemoryIndex>,
    pending: Mutex<Pending>,
    wake_writer: Condvar,
    durable: watch::Sender<Revision>,
    policy: CompactionPolicy,
    /// Allocate more log space when less than this is unclaimed.
    low_room: u64,
    /// Log bytes written since the last snapshot, and the last snapshot's size.
    log_bytes: std::sync::atomic::AtomicU64,
    live_bytes: std::sync::atomic::AtomicU64,
    /// Set to ask the compaction thread for a run.
    compact_requested: Mutex<bool>,
    wake_compactor: Condvar,
}

/// The embedded store. Cheap to clone; all clones share one state and one log.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    /// Dropped with the last handle: stops the background threads, which then release the
    /// data directory.
    _alive: Arc<Alive>,
}

struct Alive(Arc<Inner>);

impl Drop for Alive {
    fn drop(&mut self) {
        stop_threads(&self.0);
    }
}

/// Stops the writer (after it has written everything queued) and the compactor (after the
/// compaction in progress, if any), and waits for both.
fn stop_threads(inner: &Inner) {
    inner.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    inner.wake_writer.notify_all();
    inner.wake_compactor.notify_all();
    let threads: Vec<_> = std::mem::take(&mut *inner.threads.lock());
    for t in threads {
        let _ = t.join();
    }
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
fn replay(path: &Path, state: &mut MemoryIndex, skip_through: Revision) -> Result<(usize, usize, usize), StoreError> {
    let mut buf = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut buf).map_err(|e| io_err("reading log", e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0, 0)),
        Err(e) => return Err(io_err("opening log", e)),
    };
    let (mut pos, mut n) = (0, 0);
    while let Some((revision, writes, used)) = record::decode_record(&buf[pos..])? {
        if revision > skip_through || writes.is_empty() {
            state.apply(writes, revision);
            n += 1;
        }
        pos += used;
    }
    // Zeros after the last record are allocated space, not damage: the damaged bytes end at
    // the last non-zero one.
    let total = buf.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1).max(pos);
    Ok((n, pos, total))
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
        Self::open_with_options(dir, StoreOptions { mode, ..StoreOptions::default() })
    }

    pub fn open_with_options(
        dir: impl AsRef<Path>,
        options: StoreOptions,
    ) -> Result<(Self, RecoveryReport), StoreError> {
        let mode = options.mode;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| io_err("creating data directory", e))?;
        let lock = File::create(dir.join("LOCK")).map_err(|e| io_err("creating lock file", e))?;
        lock.try_lock()
            .map_err(|_| StoreError::Unavailable(format!("{} is in use by another DSS process", dir.display())))?;
        check_format(&dir)?;
        // A snapshot being written when the process stopped (or when the disk filled up).
        match fs::remove_file(dir.join(SNAPSHOT_TMP)) {
            Ok(()) => tracing::warn!("removed the leftover of an interrupted compaction"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing the leftover snapshot.tmp", e)),
        }
        let mut state = MemoryIndex::loading();
        let t = std::time::Instant::now();
        let (snap_records, _, _) = replay(&dir.join(SNAPSHOT_FILE), &mut state, 0)?;
        let snapshot_revision = state.revision();
        let segments = log_segments(&dir)?;
        let (mut log_records, mut torn) = (0, 0);
        let mut newest_end = 0u64;
        for (i, (_, path)) in segments.iter().enumerate() {
            let (n, valid, total) = replay(path, &mut state, snapshot_revision)?;
            newest_end = valid as u64;
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
        state.finish_loading();
        tracing::info!(
            replay_ms,
            index_ms = t.elapsed().as_millis() as u64 - replay_ms,
            records = log_records,
            "store recovered"
        );
        // Keep writing the newest segment after its last record; compaction rotates to a new one.
        let generation = segments.last().map_or(1, |(g, _)| *g);
        let path = segment_path(&dir, generation);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err("opening log", e))?;
        let len = file.metadata().map_err(|e| io_err("opening log", e))?.len();
        let end = if segments.is_empty() { 0 } else { newest_end };
        file.sync_all().map_err(|e| io_err("syncing log", e))?;
        sync_dir(&dir)?;
        let chunk = options.preallocate_bytes.max(4096);
        let low_room = chunk / 2;
        let mut log = LogFile { file, generation, write_pos: end, allocated: len.max(end), chunk };
        let mut room = log.allocated - log.write_pos;
        let (mut degraded, mut alloc_failed_at) = (None, None);
        if room < low_room {
            match log.allocate() {
                Ok(n) => room += n,
                Err(e) => {
                    tracing::error!(error = %e, "cannot allocate log space: serving reads only until the disk has room");
                    degraded = Some(full_message(&e));
                    alloc_failed_at = Some(std::time::Instant::now());
                }
            }
        }
        let snapshot_len = fs::metadata(dir.join(SNAPSHOT_FILE)).map_or(0, |m| m.len());
        let log_len: u64 = log_segments(&dir)?.iter().map(|(_, p)| fs::metadata(p).map_or(0, |m| m.len())).sum();
        let (intents, constraints, subscriptions) = state.counts();
        let report = RecoveryReport {
            records_replayed: snap_records + log_records,
            torn_tail_bytes: torn,
            intents,
            constraints,
            subscriptions,
        };
        let revision = state.revision();
        let (durable, _) = watch::channel(revision);
        let inner = Arc::new(Inner {
            log: Mutex::new(log),
            dir: dir.clone(),
            _lock: lock,
            stop: std::sync::atomic::AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            serial: (mode == CommitMode::Serial).then(|| tokio::sync::Mutex::new(())),
            state: RwLock::new(state),
            pending: Mutex::new(Pending {
                bytes: Vec::new(),
                last_revision: revision,
                room,
                degraded,
                alloc_failed_at,
            }),
            wake_writer: Condvar::new(),
            durable,
            policy: options.compaction,
            low_room,
            log_bytes: std::sync::atomic::AtomicU64::new(log_len),
            live_bytes: std::sync::atomic::AtomicU64::new(snapshot_len),
            compact_requested: Mutex::new(log_records > 0 || torn > 0),
            wake_compactor: Condvar::new(),
        });
        let writer_inner = inner.clone();
        let writer = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || log_writer(writer_inner))
            .map_err(|e| io_err("starting log writer", e))?;
        inner.threads.lock().push(writer);
        // Folds the log into a new snapshot, off the serving path: right away when the start
        // replayed a log, then whenever the writer finds the log past the policy's threshold.
        let compact_inner = inner.clone();
        let compaction = std::thread::Builder::new()
            .name("compaction".into())
            .spawn(move || compactor(compact_inner))
            .map_err(|e| io_err("starting compaction", e))?;
        inner.threads.lock().push(compaction);
        let alive = Arc::new(Alive(inner.clone()));
        Ok((Self { inner, _alive: alive }, report))
    }

    /// Why writes are refused, while the disk is full; `None` when healthy.
    pub fn degraded_reason(&self) -> Option<String> {
        self.inner.pending.lock().degraded.clone()
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
    async fn read<T>(&self, f: impl FnOnce(&MemoryIndex) -> T) -> Result<T, StoreError> {
        Ok(f(&self.inner.state.read()))
    }

    /// Finishes background work (compaction, the log writer) and releases the directory. Every
    /// acknowledged write is already durable; this only makes a clean hand-over possible, e.g.
    /// reopening the directory in the same process.
    pub fn shutdown(self) {
        stop_threads(&self.inner);
    }
}

/// What a refused write is told while the disk is full.
const FULL: &str = "the DSS's disk has no room for its log: changes are refused and not applied, reads are served; writes resume once space is freed";

fn full_message(e: &std::io::Error) -> String {
    format!("{FULL} ({e})")
}

/// The group-commit loop: take everything queued, write it into allocated space, sync once,
/// publish the revision; keep allocated space ahead of the records.
fn log_writer(inner: Arc<Inner>) {
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::Ordering;
    loop {
        {
            let mut p = inner.pending.lock();
            while p.bytes.is_empty() && !p.wants_space(inner.low_room) {
                // Wake up now and then to notice that every store handle is gone, and to retry
                // an allocation that failed.
                if inner.stop.load(Ordering::SeqCst) {
                    return;
                }
                inner.wake_writer.wait_for(&mut p, std::time::Duration::from_millis(200));
            }
        }
        let mut log = inner.log.lock();
        let (bytes, revision) = {
            let mut p = inner.pending.lock();
            (std::mem::take(&mut p.bytes), p.last_revision)
        };
        if !bytes.is_empty() {
            // Every queued byte was claimed from allocated space: this write needs no new
            // blocks. If it or the sync fails anyway, the disk is failing or lying (a failed
            // fsync may have dropped the dirty pages, so retrying cannot tell what reached the
            // disk) while memory already shows the write: the only safe answer is to stop
            // serving; a restart recovers exactly what reached the disk.
            let at = log.write_pos;
            if let Err(e) = log.file.write_all_at(&bytes, at).and_then(|_| log.file.sync_data()) {
                tracing::error!(error = %e, "cannot write the durable log into its allocated space; aborting");
                std::process::abort();
            }
            log.write_pos += bytes.len() as u64;
            inner.durable.send_replace(revision);
            let log_bytes = inner.log_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed) + bytes.len() as u64;
            metrics::gauge!("dss_store_log_bytes").set(log_bytes as f64);
            let threshold = inner.policy.threshold(inner.live_bytes.load(Ordering::Relaxed));
            if inner.log_bytes.load(Ordering::Relaxed) > threshold {
                let mut requested = inner.compact_requested.lock();
                if !*requested {
                    *requested = true;
                    inner.wake_compactor.notify_one();
                }
            }
        }
        if inner.pending.lock().wants_space(inner.low_room) {
            let allocated = log.allocate();
            let mut p = inner.pending.lock();
            match allocated {
                Ok(n) => {
                    p.room += n;
                    p.alloc_failed_at = None;
                    if p.degraded.take().is_some() {
                        tracing::warn!("log space allocated again: writes accepted");
                    }
                }
                Err(e) => {
                    if p.degraded.is_none() {
                        tracing::error!(error = %e, "cannot allocate log space: refusing writes until the disk has room");
                    }
                    p.degraded = Some(full_message(&e));
                    p.alloc_failed_at = Some(std::time::Instant::now());
                }
            }
        }
    }
}

/// Runs compactions when asked, one at a time; after a failure (a full disk), waits before
/// trying again.
fn compactor(inner: Arc<Inner>) {
    use std::sync::atomic::Ordering;
    loop {
        {
            let mut requested = inner.compact_requested.lock();
            while !*requested {
                if inner.stop.load(Ordering::SeqCst) {
                    return;
                }
                inner.wake_compactor.wait_for(&mut requested, std::time::Duration::from_millis(200));
            }
        }
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        let outcome = compact(&inner);
        *inner.compact_requested.lock() = false;
        if let Err(e) = outcome {
            tracing::error!(error = %e, "compaction failed; the log keeps everything, trying again in 30 s");
            let _ = fs::remove_file(inner.dir.join(SNAPSHOT_TMP));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while std::time::Instant::now() < deadline && !inner.stop.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            // Asked again by the writer once more log is written.
        }
    }
}

/// Rotates the log to a new segment, writes a snapshot of the state (which holds everything in
/// the older segments), installs it atomically, then deletes the older segments. A crash at any
/// point leaves either the old snapshot with every segment, or the new one with extra segments
/// whose records it already holds (replay skips them by revision).
/// Bytes of snapshot written between two syncs.
const SNAPSHOT_SYNC_BYTES: usize = 4 << 20;

fn compact(inner: &Inner) -> Result<(), StoreError> {
    use std::sync::atomic::Ordering;
    let t = std::time::Instant::now();
    // The next segment, with its space allocated, before the writer is held up.
    let next = inner.log.lock().generation + 1;
    let path = segment_path(&inner.dir, next);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_err("creating the next log segment", e))?;
    let chunk = inner.log.lock().chunk;
    let mut fresh = LogFile { file, generation: next, write_pos: 0, allocated: 0, chunk };
    if let Err(e) = fresh.allocate() {
        let _ = fs::remove_file(&path);
        return Err(StoreError::Full(full_message(&e)));
    }
    sync_dir(&inner.dir)?;
    let old_generation = {
        let mut log = inner.log.lock();
        let mut p = inner.pending.lock();
        // Queued records (claimed from the old segment's space) go to the new one.
        let queued = p.bytes.len() as u64;
        if queued > fresh.allocated {
            drop(p);
            drop(log);
            let _ = fs::remove_file(&path);
            return Err(StoreError::Unavailable("too many queued records to switch log segments".into()));
        }
        p.room = fresh.allocated - queued;
        let old = log.generation;
        *log = fresh;
        inner.log_bytes.store(0, Ordering::Relaxed);
        old
    };
    // Everything in the old segments was applied before it was written: the state read now
    // contains it all.
    let (revision, records) = {
        let state = inner.state.read();
        (state.revision(), state.snapshot_records())
    };
    let tmp = inner.dir.join(SNAPSHOT_TMP);
    let file = File::create(&tmp).map_err(|e| io_err("creating snapshot", e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut buf = Vec::with_capacity(1 << 17);
    // A header record carries the global revision so revisions never go backwards.
    record::encode_record(&mut buf, revision, &[]);
    let mut unsynced = 0usize;
    for (rev, record) in records {
        record::encode_record(&mut buf, rev, &[record.to_write()]);
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
    let size = fs::metadata(inner.dir.join(SNAPSHOT_FILE)).map_or(0, |m| m.len());
    inner.live_bytes.store(size, Ordering::Relaxed);
    tracing::info!(elapsed_ms = t.elapsed().as_millis() as u64, revision, snapshot_bytes = size, "compaction done");
    metrics::counter!("dss_store_compactions_total").increment(1);
    metrics::histogram!("dss_store_compaction_seconds").record(t.elapsed().as_secs_f64());
    metrics::gauge!("dss_store_snapshot_bytes").set(size as f64);
    Ok(())
}

impl EmbeddedStore {
    /// A commit, answered once durable (the body of `Store::commit`, timed there).
    async fn commit_durably(&self, txn: Txn) -> Result<Committed, StoreError> {
        let _serial = match &self.inner.serial {
            Some(m) => Some(m.lock().await),
            None => None,
        };
        // Encoded before the state lock is taken; only the revision is stamped under it.
        let mut record = record::PreparedRecord::new(&txn.writes);
        let (revision, notification_indexes) = {
            let mut state = self.inner.state.write();
            if !txn.preconditions.iter().all(|p| state.holds(p)) {
                return Err(StoreError::Conflict);
            }
            let revision = state.revision() + 1;
            // Claim log space before anything shows the write: a write that cannot be made
            // durable is refused, not applied.
            let mut p = self.inner.pending.lock();
            let len = record.len() as u64;
            if len > p.room {
                let why = p.degraded.get_or_insert_with(|| FULL.into()).clone();
                drop(p);
                self.inner.wake_writer.notify_one();
                return Err(StoreError::Full(why));
            }
            p.room -= len;
            let bumped = state.apply(txn.writes, revision);
            // Queue while still holding the state lock so the log order is the revision order.
            p.bytes.extend_from_slice(record.seal(revision));
            p.last_revision = revision;
            (revision, bumped)
        };
        self.inner.wake_writer.notify_one();
        self.durable_at(revision).await?;
        Ok(Committed { revision, notification_indexes })
    }
}

impl Store for EmbeddedStore {
    fn degraded(&self) -> Option<String> {
        self.degraded_reason()
    }

    async fn durable_barrier(&self) -> Result<(), StoreError> {
        let seen = self.inner.state.read().revision();
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

    /// Every commit is applied here as it is made: the only view there is, always fresh.
    async fn view(&self, _consistency: store::Consistency) -> Result<store::View, StoreError> {
        Ok(store::View { revision: self.read(|s| s.revision()).await?, fresh: true })
    }

    async fn get_intent(&self, id: Uuid) -> Result<Option<Stored<OperationalIntent>>, StoreError> {
        self.read(|s| s.intent(id)).await
    }

    async fn search_intents(
        &self,
        area: &[Volume4D],
        how: store::Match,
    ) -> Result<Vec<Stored<OperationalIntent>>, StoreError> {
        let found = self.read(|s| s.find_intents(area, how)).await?;
        Ok(heavy::matches(area, how, found).await)
    }

    async fn get_constraint(&self, id: Uuid) -> Result<Option<Stored<Constraint>>, StoreError> {
        self.read(|s| s.constraint(id)).await
    }

    async fn search_constraints(
        &self,
        area: &[Volume4D],
        how: store::Match,
    ) -> Result<Vec<Stored<Constraint>>, StoreError> {
        let found = self.read(|s| s.find_constraints(area, how)).await?;
        Ok(heavy::matches(area, how, found).await)
    }

    async fn get_subscription(&self, id: Uuid) -> Result<Option<Stored<Subscription>>, StoreError> {
        self.read(|s| s.subscription(id)).await
    }

    async fn search_subscriptions(
        &self,
        area: &[Volume4D],
        how: store::Match,
    ) -> Result<Vec<Stored<Subscription>>, StoreError> {
        let found = self.read(|s| s.find_subscriptions(area, how)).await?;
        Ok(heavy::matches(area, how, found).await)
    }

    async fn dependent_intents(&self, subscription: Uuid) -> Result<Vec<Uuid>, StoreError> {
        self.read(|s| s.dependents(subscription)).await
    }

    async fn get_isa(&self, id: Uuid) -> Result<Option<Stored<Isa>>, StoreError> {
        self.read(|s| s.isa(id)).await
    }

    async fn search_isas(&self, area: &[Volume4D], how: store::Match) -> Result<Vec<Stored<Isa>>, StoreError> {
        let found = self.read(|s| s.find_isas(area, how)).await?;
        Ok(heavy::matches(area, how, found).await)
    }

    async fn get_rid_subscription(&self, id: Uuid) -> Result<Option<Stored<RidSubscription>>, StoreError> {
        self.read(|s| s.rid_subscription(id)).await
    }

    async fn search_rid_subscriptions(
        &self,
        area: &[Volume4D],
        how: store::Match,
    ) -> Result<Vec<Stored<RidSubscription>>, StoreError> {
        let found = self.read(|s| s.find_rid_subscriptions(area, how)).await?;
        Ok(heavy::matches(area, how, found).await)
    }

    async fn get_availability(&self, uss: &str) -> Result<Option<Stored<AvailabilityRecord>>, StoreError> {
        self.read(|s| s.availability(uss)).await
    }

    async fn usage(&self, manager: &str) -> Result<store::Usage, StoreError> {
        self.read(|s| s.usage(manager)).await
    }

    fn live(&self) -> store::Usage {
        self.inner.state.read().live()
    }

    async fn expired(&self, cutoff: Timestamp) -> Result<Vec<(Key, Revision)>, StoreError> {
        self.read(|s| s.expired(cutoff)).await
    }

    async fn commit(&self, txn: Txn) -> Result<Committed, StoreError> {
        let started = std::time::Instant::now();
        let result = self.commit_durably(txn).await;
        let outcome = match &result {
            Ok(_) => "committed",
            Err(StoreError::Conflict) => "conflict",
            Err(_) => "failed",
        };
        metrics::histogram!("dss_store_commit_seconds", "outcome" => outcome).record(started.elapsed().as_secs_f64());
        result
    }
}

#[cfg(test)]
mod tests;
