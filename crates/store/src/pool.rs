//! What the instances of a pool share beyond the airspace record (not part of any standard):
//! the instance registry behind InterUSS's aux API (`/aux/v1/pool`, heartbeats), kept by the
//! backend beside the record (in etcd for a pool, in memory for a DSS on its own), and the
//! "applied" protocol by which a writer learns that another instance has applied its write
//! before answering its client (read leases, see `store-etcd`'s `leases`). Both sides of that
//! protocol, the backend that asks and the server that answers, use the names defined here.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// The path an instance answers "have you applied revision `r`?" at (query `revision=r`):
/// 200 with the revision applied as plain text once it covers `r`, 409 when not there within
/// a second, 403 without the pool's secret.
pub const APPLIED_PATH: &str = "/deconflict/v1/pool/applied";

/// The header carrying the pool's secret on requests to [`APPLIED_PATH`]. The secret is kept in
/// the shared record, so only holders of the pool's etcd credentials can read it.
pub const SECRET_HEADER: &str = "x-deconflict-pool-secret";

/// The URL asking the instance at `base_url` whether it has applied `revision`.
pub fn applied_url(base_url: &str, revision: u64) -> String {
    format!("{}{APPLIED_PATH}?revision={revision}", base_url.trim_end_matches('/'))
}

/// Whether a 200 answer's body from [`APPLIED_PATH`] confirms `revision`.
pub fn confirms(body: &str, revision: u64) -> bool {
    applied_in(body).is_some_and(|applied| applied >= revision)
}

/// The revision a 200 answer's body from [`APPLIED_PATH`] says the instance has applied.
pub fn applied_in(body: &str) -> Option<u64> {
    body.trim().parse::<u64>().ok()
}

/// `Heartbeat` of `aux_.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Heartbeat {
    pub timestamp: String,
    #[serde(default)]
    pub reporter: String,
    pub source: String,
    #[serde(default)]
    pub index: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_heartbeat_expected_before: Option<String>,
}

/// `DSSInstance` of `aux_.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DssInstance {
    pub id: String,
    #[serde(default)]
    pub public_endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub most_recent_heartbeat: Option<Heartbeat>,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Where instances and heartbeats are kept.
pub trait Registry: Send + Sync + 'static {
    fn list(&self) -> BoxFuture<'_, Vec<DssInstance>>;
    fn put(&self, instance: DssInstance) -> BoxFuture<'_, ()>;
    /// Called once the server listens, with the URL it is reached at.
    fn started(&self, _public_endpoint: &str) {}
    /// For another instance of the pool holding a read lease's writer side: whether this
    /// instance has applied `revision` (waiting briefly). `None` when `secret` is not the
    /// pool's; `Err` when this DSS is not in a pool.
    fn confirm_applied(&self, _revision: u64, _secret: String) -> BoxFuture<'_, Option<Applied>> {
        Box::pin(async { Err("this DSS is not part of a pool".to_owned()) })
    }
}

/// An answer to [`Registry::confirm_applied`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The revision this instance has applied.
    pub revision: u64,
    /// Whether that covers the revision asked about.
    pub covers: bool,
}

/// A registry for a DSS on its own: this process's memory.
#[derive(Default)]
pub struct MemoryRegistry(std::sync::Mutex<Vec<DssInstance>>);

impl Registry for MemoryRegistry {
    fn list(&self) -> BoxFuture<'_, Vec<DssInstance>> {
        let all = self.0.lock().map(|g| g.clone()).unwrap_or_default();
        Box::pin(async move { Ok(all) })
    }
    fn put(&self, instance: DssInstance) -> BoxFuture<'_, ()> {
        let result = match self.0.lock() {
            Ok(mut all) => {
                all.retain(|i| i.id != instance.id);
                all.push(instance);
                Ok(())
            }
            Err(_) => Err("the registry lock is poisoned".to_owned()),
        };
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_applied_protocol_reads_back_what_it_writes() {
        assert_eq!(applied_url("http://a:1/", 42), "http://a:1/deconflict/v1/pool/applied?revision=42");
        assert!(confirms(" 43\n", 42));
        assert!(confirms("42", 42));
        assert!(!confirms("41", 42));
        assert!(!confirms("applied", 42));
    }
}
