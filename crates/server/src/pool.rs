//! The pool's view for InterUSS's aux API (`/aux/v1/pool`, `/aux/v1/pool/dss_instances`,
//! heartbeats): which DSS instances share this airspace record, and their latest heartbeats.
//! Kept in the shared store by the etcd backend (every instance sees every other), or in memory
//! for a DSS on its own.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

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
    /// For another instance of the pool holding a read lease's writer side: whether this
    /// instance has applied `revision` (waiting briefly). `None` when `secret` is not the
    /// pool's; `Err` when this DSS is not in a pool.
    /// Called once the server listens, with the URL it is reached at.
    fn started(&self, _public_endpoint: &str) {}
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

/// This instance in the pool.
pub struct Pool {
    /// `dar_id`: the DSS Airspace Representation every instance of the pool shares.
    pub dar_id: String,
    pub instance_id: String,
    pub public_endpoint: String,
    pub registry: Box<dyn Registry>,
}

impl Pool {
    /// Records a heartbeat of this instance (index one past its previous one).
    pub async fn heartbeat(
        &self,
        source: &str,
        reporter: &str,
        timestamp: String,
        next: Option<String>,
    ) -> Result<Vec<DssInstance>, String> {
        let instances = self.registry.list().await?;
        let previous = instances
            .iter()
            .find(|i| i.id == self.instance_id)
            .and_then(|i| i.most_recent_heartbeat.as_ref())
            .map_or(0, |h| h.index + 1);
        let me = DssInstance {
            id: self.instance_id.clone(),
            public_endpoint: self.public_endpoint.clone(),
            most_recent_heartbeat: Some(Heartbeat {
                timestamp,
                reporter: reporter.to_owned(),
                source: source.to_owned(),
                index: previous,
                next_heartbeat_expected_before: next,
            }),
        };
        self.registry.put(me).await?;
        let mut all = self.registry.list().await?;
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }
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
