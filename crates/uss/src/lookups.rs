//! The DSS look-ups a peer can make us do, bounded. A notification about an entity we do not
//! know makes us ask the DSS who manages it, under our own name: without bounds a peer sending
//! notifications with fresh ids spends our DSS budget (the DSS limits requests per subject) until
//! our operator's own plans are refused. So:
//!
//! - look-ups of one entity are coalesced: while one is in flight, others wait for its answer;
//! - each peer (token subject) may cause [`PER_PEER_PER_S`] look-ups per second, and all peers
//!   together [`ALL_PEERS_PER_S`]: past either, the peer gets 429 with `Retry-After`, and the
//!   rest of the DSS's budget stays for our own work (planning makes a handful of calls);
//! - when the DSS answers 429 to any look-up, look-ups pause for the time it asked, the peer
//!   gets 429 meanwhile, and our own plans are not refused behind them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::UssError;

/// Look-ups one peer may cause per second (burst twice that).
pub const PER_PEER_PER_S: f64 = 5.0;
/// Look-ups all peers together may cause per second (burst twice that): a tenth of a DSS
/// per-subject limit set as low as 100/s.
pub const ALL_PEERS_PER_S: f64 = 10.0;

/// A token bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Buckets {
    per_s: f64,
    burst: f64,
    map: HashMap<String, Bucket>,
}

impl Buckets {
    fn new(per_s: f64) -> Self {
        Self { per_s, burst: 2.0 * per_s, map: HashMap::new() }
    }

    /// Takes one token for `key`; `Err(seconds to wait)` when none is left.
    fn take(&mut self, key: &str, now: Instant) -> Result<(), u64> {
        if self.map.len() > 10_000 && !self.map.contains_key(key) {
            let (per_s, burst) = (self.per_s, self.burst);
            self.map.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_s < burst);
        }
        let b = self.map.entry(key.to_owned()).or_insert(Bucket { tokens: self.burst, at: now });
        b.tokens = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.per_s).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / self.per_s).ceil().max(1.0) as u64)
        }
    }
}

/// One look-up's answer, shared by everyone waiting for it.
type Shared<T> = Arc<tokio::sync::OnceCell<Result<T, UssError>>>;

pub(crate) struct PeerLookups<T> {
    per_peer: Mutex<Buckets>,
    all_peers: Mutex<Buckets>,
    /// No look-up before this (the DSS asked us to wait).
    paused_until: Mutex<Option<Instant>>,
    in_flight: Mutex<HashMap<String, Shared<T>>>,
}

impl<T: Clone> PeerLookups<T> {
    pub(crate) fn new() -> Self {
        Self {
            per_peer: Mutex::new(Buckets::new(PER_PEER_PER_S)),
            all_peers: Mutex::new(Buckets::new(ALL_PEERS_PER_S)),
            paused_until: Mutex::new(None),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The answer of `lookup` for entity `id`, caused by `peer`: shared with a look-up of the
    /// same entity in flight, else within the peer's and everyone's budget.
    pub(crate) async fn run<F, Fut>(&self, peer: &str, id: &str, lookup: F) -> Result<T, UssError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, UssError>>,
    {
        let (cell, leader) = {
            let mut in_flight = self.in_flight.lock();
            match in_flight.get(id) {
                Some(c) => (c.clone(), false),
                None => {
                    let c: Shared<T> = Arc::default();
                    in_flight.insert(id.to_owned(), c.clone());
                    (c, true)
                }
            }
        };
        if !leader {
            // Waits for the look-up in flight (a cell being initialized makes others wait).
            let abandoned = || async { Err(UssError::Upstream("the shared DSS look-up was abandoned".into())) };
            return cell.get_or_init(abandoned).await.clone();
        }
        let answer = cell.get_or_init(|| self.budgeted(peer, lookup)).await.clone();
        self.in_flight.lock().remove(id);
        answer
    }

    async fn budgeted<F, Fut>(&self, peer: &str, lookup: F) -> Result<T, UssError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, UssError>>,
    {
        let now = Instant::now();
        if let Some(until) = *self.paused_until.lock() {
            if until > now {
                let wait = until.saturating_duration_since(now).as_secs().max(1);
                return Err(UssError::TooManyRequests {
                    message: "the DSS asked this participant to slow down; notifications needing a look-up are refused for now".into(),
                    retry_after_s: wait,
                });
            }
        }
        self.per_peer.lock().take(peer, now).map_err(|wait| UssError::TooManyRequests {
            message: format!(
                "`{peer}` sent more notifications needing a DSS look-up than this participant verifies per second ({PER_PEER_PER_S})"
            ),
            retry_after_s: wait,
        })?;
        self.all_peers.lock().take("", now).map_err(|wait| UssError::TooManyRequests {
            message: "this participant is verifying as many notifications as it will for now".into(),
            retry_after_s: wait,
        })?;
        match lookup().await {
            Err(UssError::DssBusy { retry_after_s, message }) => {
                *self.paused_until.lock() = Some(Instant::now() + Duration::from_secs(retry_after_s));
                Err(UssError::TooManyRequests { message, retry_after_s })
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_peer_is_limited_look_ups_are_shared_and_a_dss_429_pauses_them() {
        let lookups: PeerLookups<u32> = PeerLookups::new();
        let calls = std::sync::atomic::AtomicU32::new(0);
        // Within its burst (2 x 5), a peer's look-ups run; past it, 429 with a wait.
        for i in 0..10 {
            let got = lookups
                .run("mallory", &format!("id-{i}"), || async {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok(i)
                })
                .await;
            assert_eq!(got.ok(), Some(i));
        }
        let refused = lookups.run("mallory", "id-x", || async { Ok(99) }).await;
        assert!(matches!(refused, Err(UssError::TooManyRequests { retry_after_s, .. }) if retry_after_s >= 1));
        // Another peer still has its own share, within everyone's (burst 2 x 10).
        assert_eq!(lookups.run("bravo", "id-b", || async { Ok(7) }).await.ok(), Some(7));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 10);
        // A DSS 429 pauses every look-up for the time it asked.
        let busy = lookups
            .run("charlie", "id-c", || async { Err(UssError::DssBusy { message: "429".into(), retry_after_s: 30 }) })
            .await;
        assert!(matches!(busy, Err(UssError::TooManyRequests { .. })));
        let paused = lookups.run("delta", "id-d", || async { Ok(1) }).await;
        assert!(matches!(paused, Err(UssError::TooManyRequests { ref message, .. }) if message.contains("slow down")));
    }

    #[tokio::test]
    async fn concurrent_look_ups_of_one_entity_make_one_call() {
        let lookups: Arc<PeerLookups<u32>> = Arc::new(PeerLookups::new());
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut waiting = Vec::new();
        for _ in 0..8 {
            let (lookups, calls, gate) = (lookups.clone(), calls.clone(), gate.clone());
            waiting.push(tokio::spawn(async move {
                lookups
                    .run("mallory", "same-id", || async move {
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        gate.notified().await;
                        Ok(42)
                    })
                    .await
            }));
        }
        // Let every task reach the look-up, then release the one call (the permit is kept if the
        // call is not waiting yet).
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.notify_one();
        for w in waiting {
            assert_eq!(w.await.expect("task").ok(), Some(42));
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "one DSS call for eight notifications");
    }
}
