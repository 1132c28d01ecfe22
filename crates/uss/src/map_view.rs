//! The operator's map on the operator listener: the page at `/` (from the `map` crate), the
//! view it draws (`GET /operator/map`: our operations with their OVNs, others' operations and
//! constraints as we know them, our subscriptions), and the live feed
//! (`GET /operator/events`, server-sent events) of what changed, who told us, and how our own
//! notifications were delivered. The page and its assets carry no data and need no token; the
//! view and the feed need the operator's, like every other operator request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use map::{EntityKind, MapEntity, MapView, MapVolume};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::db::Table;
use crate::error::UssError;
use crate::Uss;

/// Events kept for a slow page before it is told it missed some.
pub(crate) const FEED_CAPACITY: usize = 1024;

/// One line of the live feed.
#[derive(Debug, Clone, Serialize)]
pub struct FeedEvent {
    pub at: String,
    /// `change` (ours), `received` (a peer's notification), `delivery` (of ours to a
    /// subscriber), `user` (a notice for the user), `missed` (the page fell behind).
    pub kind: &'static str,
    pub entity: Option<String>,
    pub text: String,
    /// A flight's position (`position` events): ours as reported, others' as polled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<crate::telemetry::PositionWire>,
    /// Who flies it, and in which state, for `position` events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// A subscription we made, kept so the map can draw it (the DSS is its record).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SubscriptionRecord {
    pub extents: api::Volume4D,
}

impl Uss {
    /// Drops the map's records of subscriptions whose time has ended (the DSS has let them go
    /// too), so the table stays as small as what is live.
    pub(crate) async fn forget_ended_subscriptions(&self) {
        let now = self.now();
        let records: Vec<(String, SubscriptionRecord)> = match self.records.load_all(Table::Subscriptions).await {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "could not read the subscriptions kept for the map"),
        };
        for (id, s) in records {
            let ended = api::volume_from_wire(&s.extents, "extents")
                .map_or(true, |v| v.time.end().is_some_and(|end| end < now));
            if ended {
                if let Err(e) = self.records.delete(Table::Subscriptions, &id).await {
                    tracing::warn!(error = %e, %id, "could not forget an ended subscription");
                }
            }
        }
    }

    /// Tells every open map. Nobody listening is not an error.
    pub(crate) fn feed(&self, kind: &'static str, entity: Option<&str>, text: String) {
        let _ = self.events.send(FeedEvent {
            at: self.now_text(),
            kind,
            entity: entity.map(str::to_owned),
            text,
            position: None,
            manager: None,
            state: None,
        });
    }

    /// A flight's new position for the live map.
    pub(crate) fn feed_position(&self, id: &str, manager: &str, p: crate::telemetry::PositionWire, state: &str) {
        let _ = self.events.send(FeedEvent {
            at: self.now_text(),
            kind: "position",
            entity: Some(id.to_owned()),
            text: String::new(),
            position: Some(p),
            manager: Some(manager.to_owned()),
            state: Some(state.to_owned()),
        });
    }

    async fn map_view(&self) -> Result<MapView, UssError> {
        let subscriptions: Vec<(String, SubscriptionRecord)> = self.records.load_all(Table::Subscriptions).await?;
        let mut entities = self.records.read(|mem| self.entities_on_map(mem));
        for (id, s) in subscriptions {
            // Written by us after the DSS accepted it; one that no longer reads is not drawn.
            let Ok(v) = api::volume_from_wire(&s.extents, "extents") else { continue };
            entities.push(MapEntity {
                kind: EntityKind::Subscription,
                id,
                manager: self.client_id().to_owned(),
                state: None,
                priority: None,
                version: None,
                ovn: None,
                uss_base_url: Some(self.config.base_url.clone()),
                details: true,
                volumes: MapVolume::list(std::slice::from_ref(&v), &[]),
            });
        }
        let mut view = MapView::new("participant", self.client_id().to_owned(), entities, false);
        view.flights = self.flights_on_map();
        Ok(view)
    }

    fn entities_on_map(&self, mem: &crate::records::Memory) -> Vec<MapEntity> {
        let mut entities = Vec::new();
        for o in mem.own_intents.values() {
            entities.push(MapEntity {
                kind: EntityKind::OwnIntent,
                id: o.reference.id.clone(),
                manager: o.reference.manager.clone(),
                state: Some(o.state.as_str().to_owned()),
                priority: Some(o.priority),
                version: Some(o.reference.version),
                ovn: o.reference.ovn.clone(),
                uss_base_url: Some(o.reference.base_url.clone()),
                details: true,
                volumes: MapVolume::list(&o.volumes, &o.off_nominal_volumes),
            });
        }
        for k in mem.others_intents.values() {
            let r = &k.reference;
            entities.push(MapEntity {
                kind: EntityKind::OtherIntent,
                id: r.id.clone(),
                manager: r.manager.clone(),
                state: Some(k.state.as_str().to_owned()),
                priority: Some(k.priority),
                version: Some(r.version),
                ovn: None,
                uss_base_url: Some(r.base_url.clone()),
                details: true,
                volumes: MapVolume::list(&k.volumes, &k.off_nominal_volumes),
            });
        }
        for c in mem.own_constraints.values() {
            entities.push(constraint(EntityKind::OwnConstraint, &c.reference, c.reference.ovn.clone(), &c.volumes));
        }
        for k in mem.others_constraints.values() {
            entities.push(constraint(EntityKind::Constraint, &k.reference, None, &k.volumes));
        }
        entities
    }
}

fn constraint(
    kind: EntityKind,
    r: &crate::domain::Reference,
    ovn: Option<String>,
    volumes: &[geo4d::Volume4D],
) -> MapEntity {
    MapEntity {
        kind,
        id: r.id.clone(),
        manager: r.manager.clone(),
        state: None,
        priority: None,
        version: Some(r.version),
        ovn,
        uss_base_url: Some(r.base_url.clone()),
        details: true,
        volumes: MapVolume::list(volumes, &[]),
    }
}

pub(crate) async fn view(State(uss): State<Arc<Uss>>, headers: HeaderMap) -> Result<Response, UssError> {
    uss.operator(&headers)?;
    Ok(Json(uss.map_view().await?).into_response())
}

/// The live feed: one `data:` line of JSON per event, a comment every 15 s to keep proxies
/// and the connection's idle timer from closing it.
pub(crate) async fn events(State(uss): State<Arc<Uss>>, headers: HeaderMap) -> Result<Response, UssError> {
    uss.operator(&headers)?;
    let receiver = uss.events.subscribe();
    let hello = FeedEvent {
        at: uss.now_text(),
        kind: "connected",
        entity: None,
        text: format!("live feed of {} connected", uss.client_id()),
        position: None,
        manager: None,
        state: None,
    };
    let first = futures_util::stream::once(async move { Ok::<_, Infallible>(sse(&hello)) });
    let rest = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => FeedEvent {
                at: crate::time_text(geo4d::Timestamp(chrono::Utc::now().timestamp_micros())),
                kind: "missed",
                entity: None,
                text: format!("{n} events were missed (the page fell behind); the map was reloaded"),
                position: None,
                manager: None,
                state: None,
            },
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(sse(&event)), receiver))
    });
    use futures_util::StreamExt;
    Ok(Sse::new(first.chain(rest)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

fn sse(event: &FeedEvent) -> Event {
    Event::default().data(serde_json::to_string(event).unwrap_or_default())
}

pub(crate) fn channel() -> broadcast::Sender<FeedEvent> {
    broadcast::channel(FEED_CAPACITY).0
}
