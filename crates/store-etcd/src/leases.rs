//! Read leases: consistent reads from the local index without a quorum read per request.
//!
//! An instance that serves local reads (`--etcd-read-leases`) registers as a *reader*: a key
//! `e/r/{name}` holding its acknowledgement URL, attached to an etcd lease of [`LEASE_TTL_S`]
//! that it keeps alive. Every writer, after its commit at revision `r` is applied locally and
//! before it answers its client, waits for every registered reader (in its view at `r` or
//! later) to confirm it has applied `r` (`store::pool::APPLIED_PATH`, with the pool's secret),
//! or for that reader's registration to end or change (expiry, a new lease, a revocation) and
//! the read window to pass, or, for a reader that keeps its lease alive but does not confirm,
//! revokes the lease and waits out the read window. A reader serves local reads only while it holds a live lease
//! (renewed at a time it measured, with a 20% margin for clock rate) and only after a quorum
//! read made after its registration (and after any lapse) has been applied.
//!
//! So when a request reaches a reader, every write acknowledged before it is already in the
//! reader's index: a client that writes through one instance and reads through another sees
//! its write, and no read misses a write whose client was told it happened. (A write committed
//! in etcd but not yet acknowledged may be seen by one instance before another; a client cannot
//! tell that from the write landing a moment later.) Writers pay one round trip to each reader;
//! a reader that is cut off or gone delays writes at most until its lease runs out.
//!
//! Writers wait for registered readers whether or not they read locally themselves, so
//! instances with and without the option can share one pool.
//!
//! The writers of one instance share their questions ([`AckSlots`]): per reader registration
//! (name and lease), the highest revision it confirmed and the questions in flight. A writer
//! whose revision is already confirmed does not ask; one whose revision a question in flight
//! asks for (or a later one) waits for that answer, and asks itself only if it did not come;
//! otherwise it asks at once (questions for later revisions do not wait behind earlier ones). This is safe because a
//! reader's applied revision only grows while its registration lasts (a lapse means a new lease,
//! so a new slot): a confirmation of R says every revision up to R is in its index. Without it
//! every write asked every reader (measured on the Remote ID busy area through three instances:
//! writes at 32% of etcd alone's transactions in the same run, against 75% with quorum reads).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use model::Uuid;
use store::StoreError;

use crate::{pb, unavailable, Inner};

/// Lifetime of a reader's etcd lease, in seconds: how long a reader that vanished without a
/// trace (its host unreachable, no connection refused) stays registered. Writers do not wait it
/// out in the other cases (see [`READ_WINDOW`]).
pub(crate) const LEASE_TTL_S: i64 = 3;
/// How long one renewal lets a reader answer from its index: it believes its lease for 80% of
/// this from the moment it sent the renewal (a margin for clock rate), however long etcd's TTL.
/// A writer that revoked a reader's lease waits this long, and is then sure the reader has
/// stopped: the revocation bounds the stall of a lost reader to about this, instead of the
/// lease's whole TTL (measured: a killed DSS process stalled writes for 3.2 s; now about 0.5 s).
pub(crate) const READ_WINDOW: Duration = Duration::from_millis(500);
/// How often a reader renews its lease (several times per window, so that a late renewal does
/// not cost it its local reads).
const RENEW_EVERY: Duration = Duration::from_millis(125);
/// How long a reader may take to confirm a revision before the writer stops asking.
const ACK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a writer keeps asking a reader that answers (or times out) without confirming
/// before it revokes the reader's lease.
const CONFIRM_DEADLINE: Duration = Duration::from_secs(2);

/// A registered reader, as every instance sees it in its index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reader {
    pub lease: i64,
    pub url: String,
}

impl Reader {
    pub fn encode(&self) -> Vec<u8> {
        format!("{}\n{}", self.lease, self.url).into_bytes()
    }
    pub fn decode(v: &[u8]) -> Option<Reader> {
        let s = std::str::from_utf8(v).ok()?;
        let (lease, url) = s.split_once('\n')?;
        Some(Reader { lease: lease.parse().ok()?, url: url.to_owned() })
    }
}

/// This instance's side as a reader.
#[derive(Default)]
pub(crate) struct LocalReads {
    /// This instance's reader name, once it registered.
    pub name: Option<String>,
    /// Local reads are allowed until then (never when `None`).
    pub until: Option<Instant>,
}

/// The confirmations of each reader registration (name, lease), shared by this instance's
/// writers (see the module docs).
#[derive(Default)]
pub(crate) struct AckSlots(parking_lot::Mutex<HashMap<(String, i64), Arc<AckSlot>>>);

#[derive(Default)]
pub(crate) struct AckSlot {
    state: parking_lot::Mutex<AckState>,
    /// Signalled when a question ends (answered or not).
    ended: tokio::sync::Notify,
}

#[derive(Default)]
struct AckState {
    /// The highest revision this registration confirmed.
    confirmed: u64,
    /// The revisions the questions in flight ask for.
    asking: Vec<u64>,
}

impl AckSlots {
    fn slot(&self, name: &str, reader: &Reader) -> Arc<AckSlot> {
        self.0.lock().entry((name.to_owned(), reader.lease)).or_default().clone()
    }
    /// Forgets registrations that are no longer among `current`.
    fn retain(&self, current: &Readers) {
        self.0.lock().retain(|(name, lease), _| current.get(name).is_some_and(|r| r.lease == *lease));
    }
}

/// Ends a question on its slot however the asking writer stops (answered, failed, or its task
/// cancelled), so that the writers waiting on it never wait for a question nobody asks.
struct Asking<'a> {
    slot: &'a AckSlot,
    revision: u64,
    applied: Option<u64>,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        {
            let mut st = self.slot.state.lock();
            if let Some(i) = st.asking.iter().position(|r| *r == self.revision) {
                st.asking.swap_remove(i);
            }
            if let Some(a) = self.applied {
                st.confirmed = st.confirmed.max(a);
            }
        }
        self.slot.ended.notify_waiters();
    }
}

/// How a writer's wait for one reader ended.
#[derive(Debug)]
enum ReaderWait {
    /// It confirmed the revision.
    Confirmed,
    /// Its registration ended or changed.
    Gone,
    /// It kept its lease without confirming: revoked, and its term waited out.
    Revoked,
}

impl Inner {
    /// Whether this instance may answer from its index without a quorum read now.
    pub(crate) fn local_reads_allowed(&self) -> bool {
        self.local_reads.lock().until.is_some_and(|t| Instant::now() < t)
    }

    /// Waits for every other registered reader to confirm `revision` (see the module docs).
    pub(crate) async fn wait_for_readers(self: &Arc<Self>, revision: u64) -> Result<(), StoreError> {
        let me = self.local_reads.lock().name.clone();
        let readers: Vec<(String, Reader)> = self
            .readers
            .read()
            .iter()
            .filter(|(name, _)| Some(*name) != me.as_ref())
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        metrics::gauge!("dss_etcd_other_readers").set(readers.len() as f64);
        if readers.is_empty() {
            return Ok(());
        }
        self.ack_slots.retain(&self.readers.read());
        let secret = self.secret.read().clone().unwrap_or_default();
        let mut waits = tokio::task::JoinSet::new();
        for (name, reader) in readers {
            let (inner, secret) = (self.clone(), secret.clone());
            waits.spawn(async move { inner.wait_for_reader(&name, reader, &secret, revision).await });
        }
        let mut outcome = Ok(());
        while let Some(r) = waits.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => outcome = Err(e),
                Err(e) => outcome = Err(unavailable(e)),
            }
        }
        outcome
    }

    async fn wait_for_reader(&self, name: &str, reader: Reader, secret: &str, revision: u64) -> Result<(), StoreError> {
        let started = Instant::now();
        let outcome = self.wait_for_reader_inner(name, &reader, secret, revision).await;
        let waited = started.elapsed();
        metrics::histogram!("dss_etcd_reader_wait_seconds").record(waited.as_secs_f64());
        if waited > Duration::from_millis(500) {
            tracing::warn!(reader = %name, url = %reader.url, waited_ms = waited.as_millis() as u64, outcome = ?outcome, "a write waited long for a reader");
        }
        outcome.map(|_| ())
    }

    /// How the wait for one reader ended.
    async fn wait_for_reader_inner(
        &self,
        name: &str,
        reader: &Reader,
        secret: &str,
        revision: u64,
    ) -> Result<ReaderWait, StoreError> {
        // Asked until it confirms, or its registration ends or changes (its lease ran out, or
        // it lapsed and registered again, which it does only followed by a quorum read).
        let gone = |inner: &Inner| inner.readers.read().get(name) != Some(reader);
        let slot = self.ack_slots.slot(name, reader);
        let deadline = Instant::now() + CONFIRM_DEADLINE;
        let mut refused = false;
        loop {
            if gone(self) {
                // Ended by expiry (the reader stopped renewing long ago), by the reader itself
                // (it stopped reading locally first), or by another writer's revocation, after
                // which the reader may still believe its lease for up to the read window; the
                // three look alike here, so the window is waited out (only when a reader goes).
                tokio::time::sleep(READ_WINDOW).await;
                return Ok(ReaderWait::Gone);
            }
            // Registered for the end of a question in flight before looking at the slot, so
            // that an end between the look and the wait is not missed.
            let ended = slot.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let covered = {
                let mut st = slot.state.lock();
                if st.confirmed >= revision {
                    return Ok(ReaderWait::Confirmed);
                }
                let covered = st.asking.iter().any(|r| *r >= revision);
                if !covered {
                    st.asking.push(revision);
                }
                covered
            };
            if covered {
                // Another writer's question in flight covers this revision: its answer will.
                if tokio::time::timeout_at(deadline.into(), ended).await.is_err() {
                    break;
                }
                continue;
            }
            let mut asking = Asking { slot: &slot, revision, applied: None };
            let url = store::pool::applied_url(&reader.url, revision);
            let asked = Instant::now();
            let answer =
                self.acks.get(&url).header(store::pool::SECRET_HEADER, secret).timeout(ACK_TIMEOUT).send().await;
            // Nothing listens at its address: the process is gone (or a firewall says so; the
            // read window waited out below covers a reader that is in fact alive).
            if answer.as_ref().is_err_and(reqwest::Error::is_connect) {
                refused = true;
                break;
            }
            if let Ok(resp) = answer {
                if resp.status().is_success() {
                    if let Ok(text) = resp.text().await {
                        asking.applied = store::pool::applied_in(&text);
                    }
                }
            }
            let confirmed = asking.applied.is_some_and(|a| a >= revision);
            drop(asking);
            if confirmed {
                return Ok(ReaderWait::Confirmed);
            }
            if Instant::now() >= deadline {
                break;
            }
            // Not a long poll that timed out (refused, an error): do not hammer it.
            if asked.elapsed() < Duration::from_millis(100) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Gone, or it keeps its lease alive and does not confirm: end its lease, then wait out
        // the read window it may still believe it holds.
        if refused {
            tracing::warn!(reader = %name, url = %reader.url, "a reader's address refuses connections: revoking its lease");
        } else {
            tracing::warn!(reader = %name, url = %reader.url, "a reader neither confirms nor lets its lease lapse: revoking it");
        }
        // Another writer may have revoked it already: then only the window is left to wait.
        if !gone(self) {
            let id = reader.lease;
            self.on_member(|ch| async move { pb::lease_revoke(&ch, pb::LeaseRevokeRequest { id }).await }).await?;
        }
        tokio::time::sleep(READ_WINDOW).await;
        Ok(ReaderWait::Revoked)
    }

    /// Registers as a reader and keeps the lease alive, for as long as the store lives.
    pub(crate) async fn serve_local_reads(inner: Weak<Inner>, url: String) {
        let name = Uuid::new_v4().to_string();
        let mut backoff = Duration::from_millis(200);
        loop {
            let Some(me) = inner.upgrade() else { return };
            let mut held = None;
            match me.hold_lease(&name, &url, &mut held).await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => tracing::warn!(error = %e, "read lease lost; reads take a quorum read until it is back"),
            }
            me.local_reads.lock().until = None;
            metrics::gauge!("dss_etcd_read_lease_held").set(0.0);
            metrics::counter!("dss_etcd_read_lease_lapses_total").increment(1);
            if let Some(id) = held {
                // Ended at once rather than left to expire, so that writers stop waiting for us.
                let revoke =
                    me.on_member(|ch| async move { pb::lease_revoke(&ch, pb::LeaseRevokeRequest { id }).await });
                let _ = tokio::time::timeout(ACK_TIMEOUT, revoke).await;
            }
            drop(me);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// One lease: grant, register, renew until a renewal fails.
    async fn hold_lease(&self, name: &str, url: &str, held: &mut Option<i64>) -> Result<(), StoreError> {
        let grant = self
            .on_member(
                |ch| async move { pb::lease_grant(&ch, pb::LeaseGrantRequest { ttl: LEASE_TTL_S, id: 0 }).await },
            )
            .await?;
        if !grant.error.is_empty() || grant.id == 0 {
            return Err(unavailable(format!("lease grant refused: {}", grant.error)));
        }
        let lease = grant.id;
        *held = Some(lease);
        // Caught up (our watch works) before registering: a registered reader makes every
        // writer wait for it.
        self.sync_quorum().await?;
        let key = self.reader_key(name).into_bytes();
        let value = Reader { lease, url: url.to_owned() }.encode();
        self.on_member(|ch| {
            let request = pb::PutRequest { key: key.clone(), value: value.clone(), lease, prev_kv: false };
            async move { pb::put(&ch, request).await }
        })
        .await?;
        self.local_reads.lock().name = Some(name.to_owned());
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.channels.len();
        let (requests, rx) = tokio::sync::mpsc::channel::<pb::LeaseKeepAliveRequest>(1);
        // The first request goes in before the call: etcd answers the stream's headers with
        // its first response.
        let mut sent = Instant::now();
        requests.send(pb::LeaseKeepAliveRequest { id: lease }).await.map_err(unavailable)?;
        let opened = pb::lease_keep_alive(&self.streaming[i], tokio_stream::wrappers::ReceiverStream::new(rx));
        let mut stream = tokio::time::timeout(ACK_TIMEOUT, opened)
            .await
            .map_err(|_| unavailable("no lease keep-alive stream in time"))?
            .map_err(|e| unavailable(crate::status(&self.endpoints[i], &e)))?;
        let mut first = true;
        loop {
            if !first {
                sent = Instant::now();
                requests.send(pb::LeaseKeepAliveRequest { id: lease }).await.map_err(unavailable)?;
            }
            first = false;
            let answer = tokio::time::timeout(ACK_TIMEOUT, stream.message()).await;
            let ttl = match answer {
                Ok(Ok(Some(r))) => r.ttl,
                Ok(Ok(None)) => return Err(unavailable("the lease keep-alive stream ended")),
                Ok(Err(e)) => return Err(unavailable(crate::status(&self.endpoints[i], &e))),
                Err(_) => return Err(unavailable("no lease renewal in time")),
            };
            if ttl <= 0 {
                return Err(unavailable("the read lease expired"));
            }
            // Believed for 80% of the shorter of the read window and etcd's TTL, from when the
            // renewal was sent: a writer that revokes this lease waits out the read window.
            let until = sent + READ_WINDOW.min(Duration::from_secs_f64(ttl as f64)).mul_f64(0.8);
            if !self.local_reads_allowed() {
                // Registered anew or after a lapse: a quorum read issued now, applied, before
                // any local read.
                self.sync_quorum().await?;
            }
            self.local_reads.lock().until = Some(until);
            metrics::gauge!("dss_etcd_read_lease_held").set(1.0);
            tokio::time::sleep(RENEW_EVERY).await;
        }
    }
}

/// Readers registered in a snapshot or applied from the watch.
pub(crate) type Readers = HashMap<String, Reader>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_question_that_ends_wakes_its_waiters_and_keeps_what_it_confirmed() {
        let slot = AckSlot::default();
        slot.state.lock().asking.extend([7, 5]);
        let ended = slot.ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        // Answered: the reader applied 9, so 7 and everything below are confirmed.
        drop(Asking { slot: &slot, revision: 7, applied: Some(9) });
        tokio::time::timeout(Duration::from_secs(1), ended).await.expect("the waiters are woken");
        {
            let st = slot.state.lock();
            assert_eq!((st.confirmed, st.asking.clone()), (9, vec![5]));
        }
        // A question that got no answer (refused, timed out, its writer cancelled) frees its
        // place without confirming anything, and never lowers what was confirmed.
        drop(Asking { slot: &slot, revision: 5, applied: None });
        drop(Asking { slot: &slot, revision: 3, applied: Some(4) });
        let st = slot.state.lock();
        assert_eq!((st.confirmed, st.asking.is_empty()), (9, true));
    }

    #[test]
    fn slots_are_per_registration_and_forgotten_with_it() {
        let slots = AckSlots::default();
        let r1 = Reader { lease: 1, url: "http://a".into() };
        let r2 = Reader { lease: 2, url: "http://a".into() };
        slots.slot("x", &r1).state.lock().confirmed = 10;
        // The same reader under a new lease (a lapse) starts from nothing.
        assert_eq!(slots.slot("x", &r2).state.lock().confirmed, 0);
        assert_eq!(slots.slot("x", &r1).state.lock().confirmed, 10);
        slots.retain(&Readers::from([("x".to_owned(), r2.clone())]));
        assert_eq!(slots.slot("x", &r1).state.lock().confirmed, 0, "the old registration was forgotten");
    }
}
