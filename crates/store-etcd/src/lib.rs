//! The [`Store`] on an etcd cluster, so that several DSS instances run by different
//! organizations share one airspace record that none of them owns.
//!
//! etcd holds the truth; each instance keeps a [`MemoryIndex`] (the embedded store's maps and
//! R*-trees) current from etcd's watch stream and answers every search from it.
//!
//! - **Decisions are atomic.** A commit is one etcd transaction: it compares the revision of
//!   every entity the decision read, and of *area keys* standing for the airspace it searched,
//!   and applies the writes and marks the area keys they touch. A lost race is
//!   [`StoreError::Conflict`] (the DSS re-reads and retries). No process-local lock is relied on.
//! - **Area keys** partition space into 0.05° cells and time into buckets at two levels: minute
//!   buckets for windows of a few minutes, half-hour buckets for windows up to 4 hours
//!   ([`TIME_LEVELS`], [`time_keys`]). A write marks the buckets of its level that its envelopes
//!   touch, the containing buckets of the coarser level, and the cell's "any time" key (a longer
//!   volume marks the cell's "long" key instead of buckets), plus the 1° cell of a coarse grid.
//!   A precondition compares its own level's buckets, the coarser level's, and the "long" key of
//!   its cells (or, for a long window, the "any time" key), or the coarse cells for an area too
//!   large for fine ones. Writes too large to mark fine cells mark coarse "huge" keys that every
//!   precondition also compares. Over-approximation only: a nearby change may cause a retry,
//!   none is missed. A lost race waits until the instance has applied the change it lost to.
//! - **Reads are consistent.** Every transaction also writes one clock key; at the start of every
//!   DSS operation (a fresh [`Store::view`]) the instance reads that key
//!   linearizably (a quorum read, shared by concurrent callers) and waits until its watch has
//!   applied that revision; the operation's reads are then served from the local index. A client that writes through one instance and reads through another sees
//!   its write. Without a quorum the read fails, and the DSS answers 503, never stale data.
//! - **Notification indexes** are the etcd versions of one counter key per subscription: each
//!   bump is a put of that key, atomic and commutative across instances.
//!
//! It talks to etcd's gRPC API ([`pb`]: the messages it needs, written with prost's derive, so
//! no `protoc` at build time). An earlier version used etcd's JSON gateway; profiling the leader
//! under load showed ~57% of its CPU in the gateway's JSON decoding and encoding.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use geo4d::{Envelope4, Match, Timestamp, Volume4D};
use model::rid::{Isa, RidSubscription};
use model::{AvailabilityRecord, Constraint, OperationalIntent, Subscription, Uuid};
use parking_lot::RwLock;
use store::pool::Applied;
use store::{Committed, Key, Kind, Precondition, Revision, Store, StoreError, Stored, Txn, Write};
use store_index::{decode_write, encode_write, MemoryIndex};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

mod leases;
pub mod pb;
mod registry;

pub use registry::EtcdRegistry;

/// Fine area cells, in degrees.
const CELL_DEG: f64 = 0.05;
/// Coarse area cells, in degrees.
const COARSE_DEG: f64 = 1.0;
/// Time levels of area keys: the bucket width (seconds) of each, and how many buckets a window
/// may span beyond its first at its level. A window takes the first level it fits; beyond the
/// last (4 hours) it is "long". Short windows (busy areas: a minute or two) get minute buckets,
/// so that writes a few minutes apart share no key (with 5-minute buckets, half the busy-area
/// benchmark's etcd transactions lost races to writes they did not overlap); hour-long windows
/// get half-hour buckets, so that they mark few keys.
const TIME_LEVELS: [(f64, i64); 2] = [(60.0, 3), (1800.0, 8)];
/// Most fine area keys one envelope may compare or mark before coarse keys stand in.
const MAX_FINE_KEYS: usize = 512;
/// Most coarse area keys one envelope may compare or mark before one global key stands in.
const MAX_COARSE_KEYS: i64 = 1024;
/// Time allowed to etcd for one request, and to the watch to reach a revision.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Time one member has to answer before the next is tried (see `Inner::on_member`).
const TRY_TIMEOUT: Duration = Duration::from_millis(1500);
/// Keys per page when loading everything.
const LOAD_PAGE: i64 = 5000;

/// Where the cluster is and where our keys live.
/// The pool's key format in etcd. 1: entities under `{prefix}e/`, encoded by
/// `store_index::codec`, with the pool's secret, readers and counters beside them.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Default)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `http://127.0.0.1:2379` or `https://...`; tried in turn when one fails.
    pub endpoints: Vec<String>,
    /// Prefix of every key this store writes.
    pub prefix: String,
    /// TLS to the members: the CA that signed their certificates (PEM)...
    pub ca_pem: Option<Vec<u8>>,
    /// ...and this client's certificate and private key (PEM), when members require one.
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    /// PEM CA bundles trusted, besides the public roots, when calling the pool's other
    /// instances for write acknowledgements at their https `--etcd-ack-url` (`--ca-cert`).
    pub ack_ca_pems: Vec<Vec<u8>>,
}

/// The client that asks the pool's other instances to acknowledge writes: public roots plus
/// the private CAs given.
fn ack_client(ca_pems: &[Vec<u8>]) -> Result<reqwest::Client, StoreError> {
    let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(1));
    for pem in ca_pems {
        for cert in reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| unavailable(format!("a CA certificate for acknowledgements: {e}")))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| unavailable(format!("an HTTP client for acknowledgements: {e}")))
}

impl EtcdConfig {
    /// A gRPC channel to the member at `url`, with the TLS settings; `timeout` bounds each
    /// request (`None` for the watch stream, which lives as long as the connection). HTTP/2
    /// keep-alives notice a member that stopped answering (paused, cut off) within seconds.
    pub fn channel(&self, url: &str, timeout: Option<Duration>) -> Result<Channel, StoreError> {
        let mut e = Endpoint::from_shared(url.to_owned())
            .map_err(|e| unavailable(format!("endpoint {url}: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true);
        if let Some(t) = timeout {
            e = e.timeout(t);
        }
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            match (&self.client_cert_pem, &self.client_key_pem) {
                (Some(cert), Some(key)) => tls = tls.identity(Identity::from_pem(cert, key)),
                (None, None) => {}
                _ => return Err(unavailable("a client certificate needs its key, and a key its certificate")),
            }
            e = e.tls_config(tls).map_err(|e| unavailable(format!("TLS for {url}: {e}")))?;
        } else if self.ca_pem.is_some() || self.client_cert_pem.is_some() {
            return Err(unavailable(format!("{url}: TLS options need https:// endpoints")));
        }
        Ok(e.connect_lazy())
    }
}

#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// One channel per member, in the order of preference.
    channels: Vec<Channel>,
    /// The same without a request timeout, for the watch stream.
    streaming: Vec<Channel>,
    endpoints: Vec<String>,
    current: AtomicUsize,
    prefix: String,
    index: RwLock<MemoryIndex>,
    /// Notification counters seen, by subscription (kept apart: a counter may arrive before
    /// its subscription in a bulk load).
    counters: RwLock<HashMap<Counted, i32>>,
    applied: tokio::sync::watch::Sender<Revision>,
    /// Readers holding read leases ([`leases`]), by name, as of the applied revision.
    readers: RwLock<leases::Readers>,
    /// The pool's secret, for acknowledgement requests between instances.
    secret: RwLock<Option<String>>,
    /// This instance as a reader.
    local_reads: parking_lot::Mutex<leases::LocalReads>,
    /// What each reader registration has confirmed, shared by this instance's writers.
    ack_slots: leases::AckSlots,
    /// Client for acknowledgement requests to other instances.
    acks: reqwest::Client,
    /// Quorum reads are shared: one issued after a caller arrived serves it.
    sync_gate: tokio::sync::Mutex<SyncState>,
    sync_tickets: std::sync::atomic::AtomicU64,
}

/// The last quorum read of the clock: the ticket count when it was issued, and what it read.
#[derive(Default)]
struct SyncState {
    issued_at_ticket: u64,
    revision: Revision,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("etcd: {e}"))
}

/// The end of the key range of everything starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A revision from etcd (never negative).
fn rev(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

fn header_revision(h: &Option<pb::ResponseHeader>) -> u64 {
    rev(h.as_ref().map_or(0, |h| h.revision))
}

fn status(endpoint: &str, s: &tonic::Status) -> String {
    format!("{endpoint}: {} ({:?})", s.message(), s.code())
}

/// One change from etcd: the key, its new value (`None`: deleted), its revision.
type Event = (EntityKey, Option<Vec<u8>>, u64);

/// Whose notification index a counter key counts: an F3548 or an F3411 subscription's (their
/// ids are separate namespaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Counted {
    Subscription(Uuid),
    RidSubscription(Uuid),
}

impl Counted {
    /// The counter a bump write increments.
    fn of_bump(w: &Write) -> Option<Counted> {
        match w {
            Write::BumpNotificationIndex(id) => Some(Counted::Subscription(*id)),
            Write::BumpRidNotificationIndex(id) => Some(Counted::RidSubscription(*id)),
            _ => None,
        }
    }
    fn id(self) -> Uuid {
        match self {
            Counted::Subscription(id) | Counted::RidSubscription(id) => id,
        }
    }
    /// The record whose index it counts.
    fn record(self) -> Key {
        match self {
            Counted::Subscription(id) => Key::Subscription(id),
            Counted::RidSubscription(id) => Key::RidSubscription(id),
        }
    }
    /// Whether `w` creates (`true`) or deletes (`false`) that record.
    fn put_by(self, w: &Write) -> bool {
        matches!((self, w), (Counted::Subscription(id), Write::PutSubscription(s)) if s.id == id)
            || matches!((self, w), (Counted::RidSubscription(id), Write::PutRidSubscription(s)) if s.id == id)
    }
    fn deleted_by(self, w: &Write) -> bool {
        matches!((self, w), (Counted::Subscription(id), Write::DeleteSubscription(d)) if *d == id)
            || matches!((self, w), (Counted::RidSubscription(id), Write::DeleteRidSubscription(d)) if *d == id)
    }
}

/// What an entity key names.
enum EntityKey {
    Record(Key),
    Counter(Counted),
    Clock,
    /// A reader's registration ([`leases`]).
    Reader(String),
    /// The pool's secret.
    Secret,
}

impl Inner {
    fn entity_prefix(&self) -> String {
        format!("{}e/", self.prefix)
    }
    fn key_of(&self, key: &Key) -> String {
        match key {
            Key::OperationalIntent(id) => format!("{}e/i/{id}", self.prefix),
            Key::Constraint(id) => format!("{}e/c/{id}", self.prefix),
            Key::Subscription(id) => format!("{}e/s/{id}", self.prefix),
            Key::Availability(uss) => format!("{}e/a/{uss}", self.prefix),
            Key::Isa(id) => format!("{}e/ia/{id}", self.prefix),
            Key::RidSubscription(id) => format!("{}e/rs/{id}", self.prefix),
        }
    }
    fn counter_key(&self, counted: Counted) -> String {
        match counted {
            Counted::Subscription(id) => format!("{}e/n/{id}", self.prefix),
            Counted::RidSubscription(id) => format!("{}e/rn/{id}", self.prefix),
        }
    }
    fn clock_key(&self) -> String {
        format!("{}e/~clock", self.prefix)
    }
    fn secret_key(&self) -> String {
        format!("{}e/~secret", self.prefix)
    }
    fn reader_key(&self, name: &str) -> String {
        format!("{}e/r/{name}", self.prefix)
    }
    fn parse_key(&self, raw: &[u8]) -> Option<EntityKey> {
        let s = std::str::from_utf8(raw).ok()?.strip_prefix(&self.entity_prefix())?;
        if s == "~clock" {
            return Some(EntityKey::Clock);
        }
        if s == "~secret" {
            return Some(EntityKey::Secret);
        }
        let (kind, rest) = s.split_once('/')?;
        let uuid = || Uuid::parse_str(rest).ok();
        Some(match kind {
            "i" => EntityKey::Record(Key::OperationalIntent(uuid()?)),
            "c" => EntityKey::Record(Key::Constraint(uuid()?)),
            "s" => EntityKey::Record(Key::Subscription(uuid()?)),
            "a" => EntityKey::Record(Key::Availability(rest.to_owned())),
            "ia" => EntityKey::Record(Key::Isa(uuid()?)),
            "rs" => EntityKey::Record(Key::RidSubscription(uuid()?)),
            "n" => EntityKey::Counter(Counted::Subscription(uuid()?)),
            "rn" => EntityKey::Counter(Counted::RidSubscription(uuid()?)),
            "r" => EntityKey::Reader(rest.to_owned()),
            _ => return None,
        })
    }

    /// Runs `f` on a member, trying each in turn from the one that last answered.
    async fn on_member<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let n = self.channels.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        for k in 0..n {
            let i = (start + k) % n;
            // A member gets TRY_TIMEOUT, not the whole TIMEOUT: a request it forwarded to a
            // leader that died is never answered (etcd 3.4 drops the proposal at the leader
            // change), and the next member, under the new leader, answers at once. A transaction
            // sent again this way is disambiguated by `commit`.
            match tokio::time::timeout(TRY_TIMEOUT, f(self.channels[i].clone())).await {
                Ok(Ok(v)) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                // Unreachable, no leader, too many requests...: another member may do better
                // when it is about quorum.
                Ok(Err(e)) => last = status(&self.endpoints[i], &e),
                Err(_) => {
                    last = format!("etcd: {}: no answer within {} s", self.endpoints[i], TRY_TIMEOUT.as_secs_f64())
                }
            }
        }
        Err(unavailable(last))
    }

    /// A linearizable range over `[key, range_end)` (just `key` when `range_end` is empty).
    async fn range(&self, key: Vec<u8>, range_end: Vec<u8>) -> Result<pb::RangeResponse, StoreError> {
        self.on_member(|ch| {
            let request = pb::RangeRequest { key: key.clone(), range_end: range_end.clone(), ..Default::default() };
            async move { pb::range(&ch, request).await }
        })
        .await
    }

    /// Creates the pool's secret if no instance has yet, and learns it.
    /// Puts `value` at `key` unless the key exists; returns the value the key holds after.
    async fn put_if_absent(&self, key: Vec<u8>, value: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError> {
        use pb::request_op::Request;
        let request = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: pb::compare_result::EQUAL,
                target: pb::compare_target::VERSION,
                key: key.clone(),
                target_union: Some(pb::compare::TargetUnion::Version(0)),
            }],
            success: vec![pb::RequestOp {
                request: Some(Request::RequestPut(pb::PutRequest {
                    key: key.clone(),
                    value,
                    lease: 0,
                    prev_kv: false,
                })),
            }],
            failure: Vec::new(),
        };
        self.on_member(|ch| {
            let request = request.clone();
            async move { pb::txn(&ch, request).await }
        })
        .await?;
        let resp = self.range(key, Vec::new()).await?;
        Ok(resp.kvs.first().map(|kv| kv.value.clone()))
    }

    async fn ensure_secret(&self) -> Result<(), StoreError> {
        if self.secret.read().is_some() {
            return Ok(());
        }
        let fresh = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()).into_bytes();
        let secret = self.put_if_absent(self.secret_key().into_bytes(), fresh).await?;
        *self.secret.write() = secret.map(|s| String::from_utf8_lossy(&s).into_owned());
        Ok(())
    }

    /// Checks the pool's key format (`{prefix}format`), writing it for a new pool or one from
    /// before formats were recorded (both format 1); a newer one is refused, never written to.
    async fn ensure_format(&self) -> Result<(), StoreError> {
        let key = format!("{}format", self.prefix);
        let held = self.put_if_absent(key.clone().into_bytes(), FORMAT.to_string().into_bytes()).await?;
        let text = held.map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default();
        match text.trim().parse::<u32>() {
            Ok(v) if v <= FORMAT => Ok(()),
            Ok(v) => Err(StoreError::Corrupt(format!(
                "the pool under `{}` is in key format {v}, written by a newer Deconflict; this binary reads format \
                 {FORMAT} and older: upgrade this instance (docs/UPGRADING.md)",
                self.prefix
            ))),
            Err(_) => Err(StoreError::Corrupt(format!("`{key}` does not name a key format: `{text}`"))),
        }
    }

    /// Applies one batch of changes at `revision` to the local index.
    fn apply(&self, events: Vec<Event>) -> Result<(), StoreError> {
        let mut by_revision: BTreeMap<u64, Vec<Event>> = BTreeMap::new();
        for e in events {
            by_revision.entry(e.2).or_default().push(e);
        }
        let mut index = self.index.write();
        for (revision, events) in by_revision {
            let mut writes = Vec::new();
            let mut counters = Vec::new();
            for (key, value, _) in events {
                match (key, value) {
                    (EntityKey::Clock, _) => {}
                    (EntityKey::Reader(name), Some(v)) => match leases::Reader::decode(&v) {
                        Some(r) => {
                            self.readers.write().insert(name, r);
                        }
                        None => tracing::warn!(reader = %name, "unreadable reader registration ignored"),
                    },
                    (EntityKey::Reader(name), None) => {
                        self.readers.write().remove(&name);
                    }
                    (EntityKey::Secret, Some(v)) => {
                        *self.secret.write() = Some(String::from_utf8_lossy(&v).into_owned())
                    }
                    (EntityKey::Secret, None) => *self.secret.write() = None,
                    (EntityKey::Counter(counted), Some(v)) => {
                        let version = i32::try_from(u64::from_le_bytes(v.try_into().unwrap_or([0; 8]))).unwrap_or(0);
                        counters.push((counted, version));
                    }
                    (EntityKey::Counter(counted), None) => {
                        self.counters.write().remove(&counted);
                    }
                    (EntityKey::Record(_), Some(v)) => {
                        let mut w = decode_write(&v)?;
                        with_counted_index(&mut w, &self.counters.read());
                        writes.push(w);
                    }
                    (EntityKey::Record(key), None) => writes.push(match key {
                        Key::OperationalIntent(id) => Write::DeleteIntent(id),
                        Key::Constraint(id) => Write::DeleteConstraint(id),
                        Key::Subscription(id) => Write::DeleteSubscription(id),
                        Key::Isa(id) => Write::DeleteIsa(id),
                        Key::RidSubscription(id) => Write::DeleteRidSubscription(id),
                        // Availability records are never deleted.
                        Key::Availability(_) => continue,
                    }),
                }
            }
            index.apply(writes, revision);
            for (counted, version) in counters {
                self.counters.write().insert(counted, version);
                match counted {
                    Counted::Subscription(id) => index.set_notification_index(id, version),
                    Counted::RidSubscription(id) => index.set_rid_notification_index(id, version),
                }
            }
            index.advance(revision);
        }
        Ok(())
    }

    /// Loads every record into a fresh index; returns the revision it is at. Pages of
    /// [`LOAD_PAGE`] keys, all read at the revision of the first.
    async fn load(&self) -> Result<Revision, StoreError> {
        let prefix = self.entity_prefix();
        let end = prefix_end(&prefix);
        let mut revision = 0i64;
        let mut from = prefix.as_bytes().to_vec();
        let mut counters = HashMap::new();
        let mut records: Vec<(u64, Write)> = Vec::new();
        let mut readers = leases::Readers::new();
        let mut secret = None;
        loop {
            let resp = self
                .on_member(|ch| {
                    let request = pb::RangeRequest {
                        key: from.clone(),
                        range_end: end.clone(),
                        limit: LOAD_PAGE,
                        revision,
                        ..Default::default()
                    };
                    async move { pb::range(&ch, request).await }
                })
                .await?;
            if revision == 0 {
                revision = resp.header.as_ref().map_or(0, |h| h.revision);
            }
            for kv in &resp.kvs {
                match self.parse_key(&kv.key) {
                    Some(EntityKey::Record(_)) => records.push((rev(kv.mod_revision), decode_write(&kv.value)?)),
                    Some(EntityKey::Counter(counted)) => {
                        counters.insert(counted, i32::try_from(kv.version).unwrap_or(0));
                    }
                    Some(EntityKey::Reader(name)) => {
                        if let Some(r) = leases::Reader::decode(&kv.value) {
                            readers.insert(name, r);
                        }
                    }
                    Some(EntityKey::Secret) => secret = Some(String::from_utf8_lossy(&kv.value).into_owned()),
                    _ => {}
                }
            }
            match (resp.more, resp.kvs.last()) {
                (true, Some(last)) => {
                    from = last.key.clone();
                    from.push(0);
                }
                _ => break,
            }
        }
        let revision = rev(revision);
        let mut fresh = MemoryIndex::loading();
        records.sort_by_key(|(r, _)| *r);
        for (r, mut w) in records {
            with_counted_index(&mut w, &counters);
            fresh.apply(vec![w], r);
        }
        fresh.finish_loading();
        fresh.advance(revision);
        *self.index.write() = fresh;
        *self.counters.write() = counters;
        *self.readers.write() = readers;
        if secret.is_some() {
            *self.secret.write() = secret;
        }
        self.applied.send_replace(revision);
        Ok(revision)
    }

    /// Follows the watch stream from `from`, applying every change; returns when the stream
    /// ends or fails (the caller resumes, reloading if the history was compacted).
    async fn follow(&self, from: Revision) -> Result<(), StoreError> {
        let prefix = self.entity_prefix();
        let n = self.endpoints.len();
        let i = self.current.load(Ordering::Relaxed) % n;
        let start = i64::try_from(from).unwrap_or(i64::MAX);
        // The request side stays open as long as the stream is followed.
        let (_requests, mut stream) = match pb::watch_prefix(&self.streaming[i], &prefix, start).await {
            Ok(s) => s,
            Err(e) => {
                self.current.store((i + 1) % n, Ordering::Relaxed);
                return Err(unavailable(status(&self.endpoints[i], &e)));
            }
        };
        loop {
            let m = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) => return Err(unavailable("the watch stream ended")),
                Err(e) => {
                    self.current.store((i + 1) % n, Ordering::Relaxed);
                    return Err(unavailable(status(&self.endpoints[i], &e)));
                }
            };
            if m.compact_revision > 0 {
                return Err(StoreError::Corrupt("compacted".into()));
            }
            if m.canceled {
                return Err(unavailable(format!("the watch was cancelled: {}", m.cancel_reason)));
            }
            let mut events = Vec::new();
            for e in m.events {
                let Some(kv) = e.kv else { continue };
                let Some(parsed) = self.parse_key(&kv.key) else { continue };
                let revision = rev(kv.mod_revision);
                let value = if e.r#type == pb::event_type::DELETE {
                    None
                } else if let EntityKey::Counter(_) = parsed {
                    // A counter's value is its version: the number of bumps.
                    Some(rev(kv.version).to_le_bytes().to_vec())
                } else {
                    Some(kv.value)
                };
                events.push((parsed, value, revision));
            }
            let top = events.iter().map(|e| e.2).max();
            self.apply(events)?;
            if let Some(top) = top {
                self.applied.send_replace(top);
            }
        }
    }

    /// Waits until the local index has applied `revision`.
    async fn reach(&self, revision: Revision) -> Result<(), StoreError> {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(TIMEOUT, rx.wait_for(|r| *r >= revision))
            .await
            .map_err(|_| unavailable(format!("the watch did not reach revision {revision} in time")))?
            .map_err(unavailable)?;
        Ok(())
    }

    /// A linearizable read of the clock key, then waits for the watch to apply that revision:
    /// everything committed before this call is then visible locally. Concurrent callers share
    /// quorum reads: a read issued after a caller arrived is as good as its own.
    async fn sync(&self) -> Result<(), StoreError> {
        if self.local_reads_allowed() {
            // Under a live read lease every acknowledged write is applied here already.
            return Ok(());
        }
        self.sync_quorum().await
    }

    /// [`Self::sync`] without the read lease's shortcut.
    async fn sync_quorum(&self) -> Result<(), StoreError> {
        let ticket = self.sync_tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let revision = {
            let mut last = self.sync_gate.lock().await;
            if last.issued_at_ticket >= ticket {
                last.revision
            } else {
                let issued_at_ticket = self.sync_tickets.load(Ordering::SeqCst);
                metrics::counter!("dss_etcd_quorum_reads_total").increment(1);
                let resp = self.range(self.clock_key().into_bytes(), Vec::new()).await?;
                let revision = resp.kvs.first().map_or(0, |kv| rev(kv.mod_revision));
                *last = SyncState { issued_at_ticket, revision };
                revision
            }
        };
        self.reach(revision).await
    }
}

/// The area keys an envelope stands for, for a kind: what a write marks, or what a
/// precondition compares.
/// The cells of `e` at `deg` degrees, as a range, and how many there are (counted before any
/// is listed: a hostile envelope must not cost millions of them).
fn spatial_range(e: &Envelope4, deg: f64) -> ((i64, i64, i64, i64), i64) {
    let cell = |v: f64| (v / deg).floor() as i64;
    let (x0, x1, y0, y1) = (cell(e.min[0]), cell(e.max[0]), cell(e.min[1]), cell(e.max[1]));
    ((x0, x1, y0, y1), (x1 - x0 + 1).saturating_mul(y1 - y0 + 1))
}

fn cells_in((x0, x1, y0, y1): (i64, i64, i64, i64)) -> impl Iterator<Item = (i64, i64)> {
    (x0..=x1).flat_map(move |x| (y0..=y1).map(move |y| (x, y)))
}

/// Buckets of `[t0, t1]` at time level `level`.
fn level_buckets(t0: f64, t1: f64, level: usize) -> std::ops::RangeInclusive<i64> {
    let w = TIME_LEVELS[level].0;
    (t0 / w).floor() as i64..=(t1 / w).floor() as i64
}

/// The time level of an envelope's window, or `None` for a long (or unbounded) one.
fn time_level(e: &Envelope4) -> Option<usize> {
    let (t0, t1) = (e.min[3], e.max[3]);
    if !(t0.is_finite() && t1.is_finite()) || t1 - t0 > 1.0e12 {
        return None;
    }
    TIME_LEVELS.iter().enumerate().position(|(l, (_, most))| {
        let b = level_buckets(t0, t1, l);
        b.end() - b.start() <= *most
    })
}

/// The time parts of the area keys a change over `e` marks, and those a precondition over `e`
/// compares, in every cell of `e`. With the window at level `l`, a change marks its buckets at
/// `l` ("own", `{l}o{bucket}`), the buckets containing it at every coarser level ("sub",
/// `{m}s{bucket}`), and "A" (any time); a long change marks "L" and "A". A precondition at
/// level `l` compares own and sub at `l`, own at every coarser level, and "L"; a long one
/// compares "A". Any two windows that share an instant share a key: at the same level an own
/// bucket; a finer change meets a coarser precondition in a sub bucket, a coarser change a
/// finer precondition in an own bucket; a long one either "L" or "A".
fn time_keys(e: &Envelope4) -> (Vec<String>, Vec<String>) {
    let Some(l) = time_level(e) else {
        return (vec!["L".into(), "A".into()], vec!["A".into()]);
    };
    let (t0, t1) = (e.min[3], e.max[3]);
    let (mut marks, mut checks) = (vec!["A".to_string()], vec!["L".to_string()]);
    for b in level_buckets(t0, t1, l) {
        marks.push(format!("{l}o{b}"));
        checks.push(format!("{l}o{b}"));
        if l > 0 {
            checks.push(format!("{l}s{b}"));
        }
    }
    for m in l + 1..TIME_LEVELS.len() {
        for b in level_buckets(t0, t1, m) {
            marks.push(format!("{m}s{b}"));
            checks.push(format!("{m}o{b}"));
        }
    }
    (marks, checks)
}

fn kind_tag(k: Kind) -> &'static str {
    match k {
        Kind::OperationalIntent => "i",
        Kind::Constraint => "c",
        Kind::Subscription => "s",
        Kind::Availability => "a",
        Kind::Isa => "ia",
        Kind::RidSubscription => "rs",
    }
}

/// A subscription's record with its notification index as its counter says (the record itself
/// is not rewritten on a bump).
fn with_counted_index(w: &mut Write, counters: &HashMap<Counted, i32>) {
    match w {
        Write::PutSubscription(s) => {
            s.notification_index = counters.get(&Counted::Subscription(s.id)).copied().unwrap_or(0)
        }
        Write::PutRidSubscription(s) => {
            s.notification_index = counters.get(&Counted::RidSubscription(s.id)).copied().unwrap_or(0)
        }
        _ => {}
    }
}

impl Inner {
    fn area_key(&self, level: &str, kind: Kind, cell: (i64, i64), time: &str) -> String {
        format!("{}x/{level}/{}/{}/{}/{time}", self.prefix, kind_tag(kind), cell.0, cell.1)
    }

    /// Keys a change of `kind` over `e` marks. Three sizes, as in the embedded store's area
    /// cells (`store_index`'s `cells` module has the proof that no change is missed): a small
    /// envelope marks fine keys and its coarse keys; a middle one (too many fine keys) marks
    /// coarse and "huge" coarse keys; a large one (more than [`MAX_COARSE_KEYS`] coarse cells:
    /// a continent-long sliver, a polar cap) marks one global "huge" key. The work and the
    /// transaction's size are bounded whatever the envelope.
    fn marks(&self, kind: Kind, e: &Envelope4, out: &mut BTreeSet<String>) {
        let (times, _) = time_keys(e);
        let (fine, n_fine) = spatial_range(e, CELL_DEG);
        let (coarse, n_coarse) = spatial_range(e, COARSE_DEG);
        if n_fine.saturating_mul(times.len() as i64) <= MAX_FINE_KEYS as i64 {
            for c in cells_in(coarse) {
                // Every write marks the coarse grid, for preconditions over large areas.
                out.insert(self.area_key("C", kind, c, "A"));
            }
            for c in cells_in(fine) {
                for t in &times {
                    out.insert(self.area_key("F", kind, c, t));
                }
            }
        } else if n_coarse <= MAX_COARSE_KEYS {
            // Too large for fine keys: "huge" coarse keys, which every fine precondition checks.
            for c in cells_in(coarse) {
                out.insert(self.area_key("C", kind, c, "A"));
                out.insert(self.area_key("H", kind, c, "A"));
            }
        } else {
            out.insert(self.area_key("G", kind, (0, 0), "A"));
        }
    }

    /// Keys a precondition over `e` for `kind` compares: at the finest size that fits, the
    /// marks of that size and of every larger change; an envelope too large for coarse keys
    /// compares the clock key, which every commit writes.
    fn checks(&self, kind: Kind, e: &Envelope4, out: &mut BTreeSet<String>) {
        let (_, times) = time_keys(e);
        let (fine, n_fine) = spatial_range(e, CELL_DEG);
        let (coarse, n_coarse) = spatial_range(e, COARSE_DEG);
        if n_fine.saturating_mul(times.len() as i64) <= MAX_FINE_KEYS as i64 {
            for c in cells_in(coarse) {
                out.insert(self.area_key("H", kind, c, "A"));
            }
            for c in cells_in(fine) {
                for t in &times {
                    out.insert(self.area_key("F", kind, c, t));
                }
            }
            out.insert(self.area_key("G", kind, (0, 0), "A"));
        } else if n_coarse <= MAX_COARSE_KEYS {
            for c in cells_in(coarse) {
                out.insert(self.area_key("C", kind, c, "A"));
            }
            out.insert(self.area_key("G", kind, (0, 0), "A"));
        } else {
            out.insert(self.clock_key());
        }
    }
}

fn write_kind_and_extents(w: &Write) -> Option<(Kind, Key, Option<&[Volume4D]>)> {
    Some(match w {
        Write::PutIntent(v) => (Kind::OperationalIntent, Key::OperationalIntent(v.id), Some(&v.extents[..])),
        Write::DeleteIntent(id) => (Kind::OperationalIntent, Key::OperationalIntent(*id), None),
        Write::PutConstraint(v) => (Kind::Constraint, Key::Constraint(v.id), Some(&v.extents[..])),
        Write::DeleteConstraint(id) => (Kind::Constraint, Key::Constraint(*id), None),
        Write::PutSubscription(v) => (Kind::Subscription, Key::Subscription(v.id), Some(&v.extents[..])),
        Write::DeleteSubscription(id) => (Kind::Subscription, Key::Subscription(*id), None),
        Write::PutAvailability(a) => (Kind::Availability, Key::Availability(a.uss.clone()), None),
        Write::PutIsa(v) => (Kind::Isa, Key::Isa(v.id), Some(std::slice::from_ref(&v.extents))),
        Write::DeleteIsa(id) => (Kind::Isa, Key::Isa(*id), None),
        Write::PutRidSubscription(v) => {
            (Kind::RidSubscription, Key::RidSubscription(v.id), Some(std::slice::from_ref(&v.extents)))
        }
        Write::DeleteRidSubscription(id) => (Kind::RidSubscription, Key::RidSubscription(*id), None),
        Write::BumpNotificationIndex(_) | Write::BumpRidNotificationIndex(_) => return None,
    })
}

impl EtcdStore {
    /// Connects, loads everything under the prefix, and follows the watch stream.
    pub async fn open(config: EtcdConfig) -> Result<EtcdStore, StoreError> {
        if config.endpoints.is_empty() {
            return Err(unavailable("no endpoints given"));
        }
        let endpoints: Vec<String> = config.endpoints.iter().map(|e| e.trim_end_matches('/').to_owned()).collect();
        let channels = endpoints.iter().map(|u| config.channel(u, Some(TIMEOUT))).collect::<Result<Vec<_>, _>>()?;
        let streaming = endpoints.iter().map(|u| config.channel(u, None)).collect::<Result<Vec<_>, _>>()?;
        let (applied, _) = tokio::sync::watch::channel(0);
        let inner = Arc::new(Inner {
            channels,
            streaming,
            endpoints,
            current: AtomicUsize::new(0),
            prefix: config.prefix,
            index: RwLock::new(MemoryIndex::default()),
            counters: RwLock::new(HashMap::new()),
            applied,
            sync_gate: tokio::sync::Mutex::new(SyncState::default()),
            sync_tickets: std::sync::atomic::AtomicU64::new(0),
            readers: RwLock::new(leases::Readers::new()),
            secret: RwLock::new(None),
            local_reads: parking_lot::Mutex::new(leases::LocalReads::default()),
            ack_slots: leases::AckSlots::default(),
            acks: ack_client(&config.ack_ca_pems)?,
        });
        // A member just started may refuse for a moment (no leader yet, or a new election on a
        // loaded machine): retry, bounded. Creating the secret is conditional on its absence,
        // so a retry after an unanswered attempt is harmless.
        let mut attempt = 0;
        let mut from = loop {
            let opened = async {
                inner.ensure_format().await?;
                Ok::<_, StoreError>((inner.load().await?, inner.ensure_secret().await?))
            };
            match opened.await {
                Ok((r, ())) => break r + 1,
                Err(e) if attempt < 40 => {
                    attempt += 1;
                    tracing::debug!(error = %e, "etcd not ready yet");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let follower = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                let Some(inner) = follower.upgrade() else { return };
                match inner.follow(from).await {
                    Err(StoreError::Corrupt(m)) if m == "compacted" => {
                        tracing::warn!("etcd history compacted past our revision: reloading everything");
                        match inner.load().await {
                            Ok(r) => from = r + 1,
                            Err(e) => tracing::warn!(error = %e, "reload failed"),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "etcd watch interrupted; resuming");
                        from = *inner.applied.borrow() + 1;
                    }
                    Ok(()) => from = *inner.applied.borrow() + 1,
                }
                drop(inner);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        });
        Ok(EtcdStore { inner })
    }

    /// Serves consistent reads from the local index under a read lease ([`leases`]), with
    /// `url` the base URL other instances reach this one's acknowledgement endpoint at.
    pub fn serve_local_reads(&self, url: String) {
        tokio::spawn(Inner::serve_local_reads(Arc::downgrade(&self.inner), url));
    }

    /// For the acknowledgement endpoint: waits (bounded) until `revision` is applied here;
    /// `None` when `secret` is not the pool's.
    pub async fn confirm_applied(&self, revision: Revision, secret: &str) -> Option<Applied> {
        let ours = self.inner.secret.read().clone();
        if ours.as_deref().is_none_or(|s| s.is_empty() || s != secret) {
            return None;
        }
        let timeout = Duration::from_millis(900);
        let mut rx = self.inner.applied.subscribe();
        let covers = matches!(tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await, Ok(Ok(_)));
        Some(Applied { revision: self.applied_revision(), covers })
    }

    /// Whether this instance currently answers reads from its index under a read lease.
    pub fn local_reads_allowed(&self) -> bool {
        self.inner.local_reads_allowed()
    }

    /// The etcd revision the local index has applied.
    pub fn applied_revision(&self) -> Revision {
        *self.inner.applied.borrow()
    }

    /// Reads (linearizably) a key under the prefix: for the pool's instance registry.
    pub async fn get_raw(&self, suffix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let key = format!("{}{suffix}", self.inner.prefix);
        let resp = self.inner.range(key.clone().into_bytes(), prefix_end(&key)).await?;
        Ok(resp
            .kvs
            .into_iter()
            .map(|kv| (String::from_utf8_lossy(&kv.key).trim_start_matches(&self.inner.prefix).to_owned(), kv.value))
            .collect())
    }

    /// Writes a key under the prefix (outside the airspace record): the instance registry.
    pub async fn put_raw(&self, suffix: &str, value: &[u8]) -> Result<(), StoreError> {
        let key = format!("{}{suffix}", self.inner.prefix).into_bytes();
        self.inner
            .on_member(|ch| {
                let request = pb::PutRequest { key: key.clone(), value: value.to_vec(), ..Default::default() };
                async move { pb::put(&ch, request).await }
            })
            .await
            .map(|_| ())
    }

    fn read<R>(&self, f: impl FnOnce(&MemoryIndex) -> R) -> R {
        f(&self.inner.index.read())
    }
}

impl Store for EtcdStore {
    async fn durable_barrier(&self) -> Result<(), StoreError> {
        // Everything the index holds came from etcd's watch: acknowledged by a quorum, durable.
        Ok(())
    }

    async fn settle(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.reach(revision).await
    }

    async fn settle_area(&self, _kinds: &[Kind], _area: &[Volume4D], _how: Match) -> Result<(), StoreError> {
        Ok(())
    }

    /// A fresh view costs the consistency point (a quorum read of the clock key, shared by
    /// concurrent callers, then waiting for the watch to apply it; under a read lease, nothing).
    /// A local one costs nothing: every commit compares the revisions of what its decision read
    /// (the entity, and the area keys of the airspace it searched, at the view's revision), so a
    /// decision made on a stale local view cannot commit: it loses the race and is retried.
    async fn view(&self, consistency: store::Consistency) -> Result<store::View, StoreError> {
        let fresh = consistency == store::Consistency::Fresh;
        if fresh {
            self.inner.sync().await?;
        }
        Ok(store::View { revision: self.read(|i| i.revision()), fresh })
    }

    async fn get_intent(&self, id: Uuid) -> Result<Option<Stored<OperationalIntent>>, StoreError> {
        Ok(self.read(|i| i.intent(id)))
    }

    async fn search_intents(
        &self,
        area: &[Volume4D],
        how: Match,
    ) -> Result<Vec<Stored<OperationalIntent>>, StoreError> {
        let found = self.read(|i| i.find_intents(area, how));
        Ok(store_index::heavy::matches(area, how, found).await)
    }

    async fn get_constraint(&self, id: Uuid) -> Result<Option<Stored<Constraint>>, StoreError> {
        Ok(self.read(|i| i.constraint(id)))
    }

    async fn search_constraints(&self, area: &[Volume4D], how: Match) -> Result<Vec<Stored<Constraint>>, StoreError> {
        let found = self.read(|i| i.find_constraints(area, how));
        Ok(store_index::heavy::matches(area, how, found).await)
    }

    async fn get_subscription(&self, id: Uuid) -> Result<Option<Stored<Subscription>>, StoreError> {
        Ok(self.read(|i| i.subscription(id)))
    }

    async fn search_subscriptions(
        &self,
        area: &[Volume4D],
        how: Match,
    ) -> Result<Vec<Stored<Subscription>>, StoreError> {
        let found = self.read(|i| i.find_subscriptions(area, how));
        Ok(store_index::heavy::matches(area, how, found).await)
    }

    async fn dependent_intents(&self, subscription: Uuid) -> Result<Vec<Uuid>, StoreError> {
        Ok(self.read(|i| i.dependents(subscription)))
    }

    async fn get_isa(&self, id: Uuid) -> Result<Option<Stored<Isa>>, StoreError> {
        Ok(self.read(|i| i.isa(id)))
    }

    async fn search_isas(&self, area: &[Volume4D], how: Match) -> Result<Vec<Stored<Isa>>, StoreError> {
        let found = self.read(|i| i.find_isas(area, how));
        Ok(store_index::heavy::matches(area, how, found).await)
    }

    async fn get_rid_subscription(&self, id: Uuid) -> Result<Option<Stored<RidSubscription>>, StoreError> {
        Ok(self.read(|i| i.rid_subscription(id)))
    }

    async fn search_rid_subscriptions(
        &self,
        area: &[Volume4D],
        how: Match,
    ) -> Result<Vec<Stored<RidSubscription>>, StoreError> {
        let found = self.read(|i| i.find_rid_subscriptions(area, how));
        Ok(store_index::heavy::matches(area, how, found).await)
    }

    async fn get_availability(&self, uss: &str) -> Result<Option<Stored<AvailabilityRecord>>, StoreError> {
        Ok(self.read(|i| i.availability(uss)))
    }

    async fn usage(&self, manager: &str) -> Result<store::Usage, StoreError> {
        Ok(self.read(|i| i.usage(manager)))
    }

    fn live(&self) -> store::Usage {
        self.read(|i| i.live())
    }

    async fn expired(&self, cutoff: Timestamp) -> Result<Vec<(Key, Revision)>, StoreError> {
        self.inner.sync().await?;
        Ok(self.read(|i| i.expired(cutoff)))
    }

    async fn commit(&self, txn: Txn) -> Result<Committed, StoreError> {
        use pb::compare::TargetUnion;
        use pb::request_op::Request;
        use pb::{compare_result as cr, compare_target as ct};
        let inner = &self.inner;
        let compare = |key: Vec<u8>, target: i32, result: i32, value: TargetUnion| pb::Compare {
            result,
            target,
            key,
            target_union: Some(value),
        };
        let put = |key: Vec<u8>, value: Vec<u8>, prev_kv: bool| pb::RequestOp {
            request: Some(Request::RequestPut(pb::PutRequest { key, value, lease: 0, prev_kv })),
        };
        let delete = |key: Vec<u8>| pb::RequestOp {
            request: Some(Request::RequestDeleteRange(pb::DeleteRangeRequest { key, ..Default::default() })),
        };
        let mut compares: Vec<pb::Compare> = Vec::new();
        let mut checked: BTreeSet<String> = BTreeSet::new();
        for p in &txn.preconditions {
            match p {
                Precondition::Revision { key, revision } => {
                    let k = inner.key_of(key).into_bytes();
                    compares.push(match revision {
                        Some(r) => compare(k, ct::MOD, cr::EQUAL, TargetUnion::ModRevision(*r as i64)),
                        None => compare(k, ct::VERSION, cr::EQUAL, TargetUnion::Version(0)),
                    });
                }
                Precondition::AreaUnchanged { kinds, envelopes, since } => {
                    let mut keys = BTreeSet::new();
                    for kind in kinds {
                        for e in envelopes {
                            inner.checks(*kind, e, &mut keys);
                        }
                    }
                    for k in keys {
                        if checked.insert(format!("{k}@{since}")) {
                            let below = TargetUnion::ModRevision(*since as i64 + 1);
                            compares.push(compare(k.into_bytes(), ct::MOD, cr::LESS, below));
                        }
                    }
                }
            }
        }
        let mut ops: Vec<pb::RequestOp> = Vec::new();
        let mut marks: BTreeSet<String> = BTreeSet::new();
        // The first entity this transaction writes, and the bytes it writes there: if the
        // transaction is sent again after an attempt that got no answer, and loses its compares,
        // this tells whether the unanswered attempt committed.
        let mut witness: Option<(Vec<u8>, Vec<u8>)> = None;
        let mut bumps: Vec<(Counted, usize)> = Vec::new();
        {
            let index = inner.index.read();
            for w in &txn.writes {
                if let Some(counted) = Counted::of_bump(w) {
                    // A subscription deleted by this very transaction is not notified (as in
                    // the embedded store: the bump finds no row).
                    if txn.writes.iter().any(|x| counted.deleted_by(x)) {
                        continue;
                    }
                    // Only while the subscription exists (a deleted one's index means nothing),
                    // unless this very transaction creates it.
                    if !txn.writes.iter().any(|x| counted.put_by(x)) {
                        let k = inner.key_of(&counted.record()).into_bytes();
                        compares.push(compare(k, ct::VERSION, cr::GREATER, TargetUnion::Version(0)));
                    }
                    bumps.push((counted, ops.len()));
                    ops.push(put(inner.counter_key(counted).into_bytes(), Vec::new(), true));
                    continue;
                }
                let Some((kind, key, extents)) = write_kind_and_extents(w) else { continue };
                // The area the change leaves and the area it enters.
                for v in index.extents_of(&key).iter().chain(extents.into_iter().flatten()) {
                    for e in v.envelopes() {
                        inner.marks(kind, &e, &mut marks);
                    }
                }
                let k = inner.key_of(&key).into_bytes();
                match extents.is_some() || matches!(w, Write::PutAvailability(_)) {
                    true => {
                        let value = encode_write(w);
                        if witness.is_none() {
                            witness = Some((k.clone(), value.clone()));
                        }
                        ops.push(put(k, value, false))
                    }
                    false => {
                        ops.push(delete(k));
                        match w {
                            Write::DeleteSubscription(id) => {
                                ops.push(delete(inner.counter_key(Counted::Subscription(*id)).into_bytes()))
                            }
                            Write::DeleteRidSubscription(id) => {
                                ops.push(delete(inner.counter_key(Counted::RidSubscription(*id)).into_bytes()))
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        for m in marks {
            ops.push(put(m.into_bytes(), Vec::new(), false));
        }
        ops.push(put(inner.clock_key().into_bytes(), Vec::new(), false));
        // On a lost race, the clock key tells the latest change under the prefix: the
        // instance waits until its index has applied it before answering, so the retry decides
        // on a view that includes the change it lost to instead of losing again on the same
        // stale view (under read leases the retry's consistency point is the local view).
        let latest = pb::RequestOp {
            request: Some(Request::RequestRange(pb::RangeRequest {
                key: inner.clock_key().into_bytes(),
                ..Default::default()
            })),
        };
        let mut failure = vec![latest];
        if let Some((key, _)) = &witness {
            failure.push(pb::RequestOp {
                request: Some(Request::RequestRange(pb::RangeRequest { key: key.clone(), ..Default::default() })),
            });
        }
        let request = pb::TxnRequest { compare: compares, success: ops, failure };
        // The shape of the pool's transactions (the benchmark's etcd-alone ceiling is measured
        // with the shape a workload actually sends).
        metrics::counter!("dss_etcd_commits_total").increment(1);
        metrics::counter!("dss_etcd_commit_compares_total").increment(request.compare.len() as u64);
        metrics::counter!("dss_etcd_commit_ops_total").increment(request.success.len() as u64);
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let sent = std::time::Instant::now();
        let resp = inner
            .on_member(|ch| {
                attempts.fetch_add(1, Ordering::Relaxed);
                let request = request.clone();
                async move { pb::txn(&ch, request).await }
            })
            .await?;
        metrics::histogram!("dss_etcd_commit_seconds").record(sent.elapsed().as_secs_f64());
        if !resp.succeeded && attempts.load(Ordering::Relaxed) > 1 {
            // An earlier attempt got no answer (a member gone, a leader lost with the proposal
            // in flight) and this one lost its compares: perhaps to that very attempt.
            let found = match resp.responses.get(1).and_then(|r| r.response.as_ref()) {
                Some(pb::response_op::Response::ResponseRange(r)) => r.kvs.first().cloned(),
                _ => None,
            };
            let committed = match (&witness, found) {
                (Some((_, ours)), Some(kv)) if kv.value == *ours => Some(rev(kv.mod_revision)),
                _ => None,
            };
            if let Some(revision) = committed {
                metrics::counter!("dss_etcd_transactions_total", "outcome" => "committed_unanswered").increment(1);
                // The notification indexes it set: each counter's version as of that revision
                // (etcd keeps the history until compaction, minutes away).
                let mut notification_indexes = Vec::with_capacity(bumps.len());
                for (counted, _) in &bumps {
                    let key = inner.counter_key(*counted).into_bytes();
                    let at = inner
                        .on_member(|ch| {
                            let request =
                                pb::RangeRequest { key: key.clone(), revision: revision as i64, ..Default::default() };
                            async move { pb::range(&ch, request).await }
                        })
                        .await?;
                    let version = at.kvs.first().map_or(1, |kv| kv.version);
                    notification_indexes.push((counted.id(), i32::try_from(version).unwrap_or(i32::MAX)));
                }
                let (own, readers) = tokio::join!(inner.reach(revision), inner.wait_for_readers(revision));
                own?;
                readers?;
                return Ok(Committed { revision, notification_indexes });
            }
        }
        metrics::counter!("dss_etcd_transactions_total", "outcome" => if resp.succeeded { "committed" } else { "lost_race" })
            .increment(1);
        if !resp.succeeded {
            tracing::debug!(compares = request.compare.len(), "etcd transaction lost a race");
            let latest = match resp.responses.first().and_then(|r| r.response.as_ref()) {
                Some(pb::response_op::Response::ResponseRange(r)) => r.kvs.first().map_or(0, |kv| rev(kv.mod_revision)),
                _ => 0,
            };
            inner.reach(latest).await?;
            return Err(StoreError::Conflict);
        }
        let revision = header_revision(&resp.header);
        let notification_indexes = bumps
            .into_iter()
            .map(|(counted, i)| {
                let prev = match resp.responses.get(i).and_then(|r| r.response.as_ref()) {
                    Some(pb::response_op::Response::ResponsePut(p)) => p.prev_kv.as_ref().map_or(0, |kv| kv.version),
                    _ => 0,
                };
                (counted.id(), i32::try_from(prev + 1).unwrap_or(i32::MAX))
            })
            .collect();
        // Visible to this instance's own reads before it answers, and to every reader's.
        let own = async {
            let t = std::time::Instant::now();
            let r = inner.reach(revision).await;
            metrics::histogram!("dss_etcd_apply_wait_seconds").record(t.elapsed().as_secs_f64());
            r
        };
        let (own, readers) = tokio::join!(own, inner.wait_for_readers(revision));
        own?;
        readers?;
        Ok(Committed { revision, notification_indexes })
    }
}

#[cfg(test)]
mod tests;
