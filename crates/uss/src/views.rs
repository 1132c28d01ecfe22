//! What the operator reads: the participant's status (everything it holds, the changes in
//! flight, the newest notifications) and the notification history by time. Wire forms are
//! produced here, where they are served.

use crate::entities::Received;
use crate::error::UssError;
use crate::Uss;

/// Newest notifications shown by `status`.
const STATUS_NOTIFICATIONS: i64 = 200;

impl Uss {
    pub(crate) async fn status(&self) -> Result<serde_json::Value, UssError> {
        let (notifications, (n_notifications, notification_bytes)) = self
            .records
            .query(|db| {
                Ok((db.notifications(i64::MIN, i64::MAX, STATUS_NOTIFICATIONS, true)?, db.notification_stats()?))
            })
            .await?;
        let (own_intents, own_constraints, others_intents, others_constraints, pending) = self.records.read(|m| {
            let own_intents = by_id(m.own_intents.iter().map(|(id, o)| (id, o.to_record())));
            let own_constraints = by_id(m.own_constraints.iter().map(|(id, c)| (id, c.to_record())));
            let others_intents = by_id(m.others_intents.iter().map(|(id, k)| (id, k.to_wire())));
            let others_constraints = by_id(m.others_constraints.iter().map(|(id, k)| (id, k.to_wire())));
            let pending: Vec<String> = m.pending.keys().cloned().collect();
            (own_intents, own_constraints, others_intents, others_constraints, pending)
        });
        Ok(serde_json::json!({
            "participant": self.client_id(),
            "base_url": self.config.base_url,
            "own_intents": own_intents,
            "own_constraints": own_constraints,
            "others_intents": others_intents,
            "others_constraints": others_constraints,
            "in_flight": pending,
            // The conformance monitor's view of our flights (latest position, automatic changes).
            "flights": self.flight_status(),
            // Others' Nonconforming or Contingent flights, as their managers serve their telemetry.
            "others_flights": self.others_flights_status(),
            "notifications": notifications,
            "notifications_stored": n_notifications,
            "notification_bytes_stored": notification_bytes,
            // Requests for our operations' details answered to peers since start.
            "details_served": self.details_served.load(std::sync::atomic::Ordering::Relaxed),
        }))
    }

    /// Notifications received in `[after_us, before_us)`, oldest first (or the newest `limit`).
    pub(crate) async fn notifications(
        &self,
        after_us: i64,
        before_us: i64,
        limit: i64,
        newest: bool,
    ) -> Result<Vec<Received>, UssError> {
        Ok(self.records.query(move |db| db.notifications(after_us, before_us, limit, newest)).await?)
    }
}

/// Entities keyed by id, each in the wire form given.
fn by_id<'a, T: serde::Serialize>(
    items: impl Iterator<Item = (&'a String, T)>,
) -> serde_json::Map<String, serde_json::Value> {
    items.map(|(id, v)| (id.clone(), serde_json::to_value(v).unwrap_or_default())).collect()
}
