//! The pool's instance registry (`store::pool`), kept in etcd beside the airspace record (keys
//! `pool/instances/{id}` under the store's prefix, outside the record itself), so every instance
//! lists every other; and this instance's side of the "applied" protocol.

use store::pool::{Applied, BoxFuture, DssInstance, Registry};

use crate::EtcdStore;

/// The registry in etcd. With `ack_url` (`--etcd-read-leases`), the instance serves reads from
/// its index under a read lease once it listens, confirming applied revisions at that URL (an
/// empty one: its public endpoint).
pub struct EtcdRegistry {
    store: EtcdStore,
    ack_url: Option<String>,
}

impl EtcdRegistry {
    pub fn new(store: EtcdStore, ack_url: Option<String>) -> Self {
        Self { store, ack_url }
    }
}

impl Registry for EtcdRegistry {
    fn list(&self) -> BoxFuture<'_, Vec<DssInstance>> {
        Box::pin(async move {
            let rows = self.store.get_raw("pool/instances/").await.map_err(|e| e.to_string())?;
            Ok(rows.into_iter().filter_map(|(_, v)| serde_json::from_slice(&v).ok()).collect())
        })
    }
    fn put(&self, instance: DssInstance) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let value = serde_json::to_vec(&instance).map_err(|e| e.to_string())?;
            self.store.put_raw(&format!("pool/instances/{}", instance.id), &value).await.map_err(|e| e.to_string())
        })
    }
    fn started(&self, public_endpoint: &str) {
        if let Some(url) = &self.ack_url {
            let url = if url.is_empty() { public_endpoint.to_owned() } else { url.clone() };
            tracing::info!(ack_url = %url, "serving reads from the local index under a read lease");
            self.store.serve_local_reads(url);
        }
    }
    fn confirm_applied(&self, revision: u64, secret: String) -> BoxFuture<'_, Option<Applied>> {
        Box::pin(async move { Ok(self.store.confirm_applied(revision, &secret).await) })
    }
}
