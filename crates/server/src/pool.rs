//! The pool's view for InterUSS's aux API (`/aux/v1/pool`, `/aux/v1/pool/dss_instances`,
//! heartbeats): which DSS instances share this airspace record, and their latest heartbeats.
//! The registry itself (`store::pool`) is kept by the store's backend: in etcd beside the record
//! (every instance sees every other), or in memory for a DSS on its own.

pub use store::pool::{Applied, BoxFuture, DssInstance, Heartbeat, MemoryRegistry, Registry};

/// This instance in the pool.
pub struct Pool {
    /// `dar_id`: the DSS Airspace Representation every instance of the pool shares.
    pub dar_id: String,
    pub instance_id: String,
    pub public_endpoint: String,
    pub registry: Box<dyn Registry>,
}

impl Pool {
    /// Heartbeats in the registry for as long as the process runs: one at start-up, then every
    /// minute, each announcing the next within two.
    pub async fn beat_forever(&self) {
        let mut source = "Startup";
        loop {
            let now = chrono::Utc::now();
            let next = (now + chrono::Duration::seconds(120)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            if let Err(e) = self.heartbeat(source, "", stamp, Some(next)).await {
                tracing::warn!(error = %e, "could not record this instance's heartbeat");
            }
            source = "Periodic";
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        }
    }

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
