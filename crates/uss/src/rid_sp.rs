//! Network Remote ID (ASTM F3411-22a), the service provider role: for each of our flights that
//! reports positions, an identification service area (ISA) in the DSS over where it may be
//! (created at its first position, updated when its volumes change, deleted when it ends), the
//! subscribers the DSS names told of each change, and the flights served to display providers
//! (`GET {base}/rid/v2/uss/flights`, `.../flights/{id}/details`).
//!
//! Active only when the participant holds `rid.service_provider` (its tokens ask for it with
//! `--scope`). The RID flight id is the operational intent's id. Also here: the display
//! provider's notification endpoint (`POST .../uss/identification_service_areas/{id}`), which
//! records what a service provider announced, accepted only from the ISA's owner.

use std::sync::Arc;

use auth::Scope;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use geo4d::{AltitudeBand, Footprint, LatLng, Polygon, TimeWindow, Timestamp, Volume4D};
use serde::Deserialize;

use crate::entities::{OwnIntent, Received};
use crate::error::UssError;
use crate::ports::RidSubscriber;
use crate::telemetry::Position;
use crate::Uss;

/// Where this participant serves the F3411-22a USS API (its RID base URL is ours plus this).
pub const RID_PATH: &str = "/rid/v2";
/// NetMaxNearRealTimeDataPeriod (F3411-22a): positions older than this are not served.
pub const MAX_DATA_AGE_S: i64 = 60;
/// NetMaxDisplayAreaDiagonal (F3411-22a): a larger view is refused with 413, as the reference
/// mock USS does (interuss/monitoring `monitorlib/rid.py`, 7 km).
pub const MAX_VIEW_DIAGONAL_M: f64 = 7_000.0;

type St = State<Arc<Uss>>;
type Body = Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>;

/// The service provider's routes (on the peer listener).
pub(crate) fn routes() -> Router<Arc<Uss>> {
    Router::new()
        .route("/rid/v2/uss/flights", get(flights))
        .route("/rid/v2/uss/flights/{id}/details", get(details))
        .route("/rid/v2/uss/identification_service_areas/{id}", post(isa_notified))
}

/// A view as F3411 gives it: `lat1,lng1,lat2,lng2`, the smallest box holding both corners.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub south: f64,
    pub west: f64,
    pub north: f64,
    pub east: f64,
}

impl View {
    pub fn parse(text: &str) -> Result<View, UssError> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let numbers: Vec<f64> = parts.iter().filter_map(|p| p.parse::<f64>().ok()).filter(|v| v.is_finite()).collect();
        if parts.len() != 4 || numbers.len() != 4 {
            return Err(UssError::BadRequest(format!("view: `{text}` is not lat1,lng1,lat2,lng2")));
        }
        let (lat1, lng1, lat2, lng2) = (numbers[0], numbers[1], numbers[2], numbers[3]);
        for (name, v, lim) in [("lat1", lat1, 90.0), ("lng1", lng1, 180.0), ("lat2", lat2, 90.0), ("lng2", lng2, 180.0)]
        {
            if v.abs() > lim {
                return Err(UssError::BadRequest(format!("view: {name} {v} is outside -{lim}..={lim}")));
            }
        }
        Ok(View { south: lat1.min(lat2), north: lat1.max(lat2), west: lng1.min(lng2), east: lng1.max(lng2) })
    }

    /// The view's diagonal on the ellipsoid.
    pub fn diagonal_m(&self) -> f64 {
        match (LatLng::new(self.south, self.west), LatLng::new(self.north, self.east)) {
            (Ok(a), Ok(b)) => geo4d::geodesic_distance_m(a, b),
            _ => f64::INFINITY,
        }
    }

    pub fn contains(&self, p: LatLng) -> bool {
        self.contains_point(p.lat(), p.lng())
    }

    pub fn contains_point(&self, lat: f64, lng: f64) -> bool {
        (self.south..=self.north).contains(&lat) && (self.west..=self.east).contains(&lng)
    }
}

fn rid_position(p: &Position) -> api::RidAircraftPosition {
    api::RidAircraftPosition {
        lat: p.at.lat(),
        lng: p.at.lng(),
        alt: p.alt_m,
        accuracy_h: Some(api::accuracy_h_category(p.accuracy_h_m).to_owned()),
        accuracy_v: Some(api::accuracy_v_category(p.accuracy_v_m).to_owned()),
        extrapolated: false,
    }
}

#[derive(Deserialize)]
struct FlightsQuery {
    view: Option<String>,
    recent_positions_duration: Option<f64>,
}

async fn flights(
    State(uss): St,
    headers: HeaderMap,
    query: Result<Query<FlightsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, UssError> {
    uss.peer(&headers, &[Scope::RidDisplayProvider])?;
    uss.require_rid_sp()?;
    let Query(q) = query.map_err(|e| UssError::BadRequest(format!("query parameters: {e}")))?;
    let view = View::parse(q.view.as_deref().ok_or_else(|| UssError::BadRequest("view is required".into()))?)?;
    if view.diagonal_m() > MAX_VIEW_DIAGONAL_M {
        return Err(UssError::PayloadTooLarge(format!(
            "the view's diagonal is {:.0} m; at most {MAX_VIEW_DIAGONAL_M:.0} m (NetMaxDisplayAreaDiagonal)",
            view.diagonal_m()
        )));
    }
    let recent_s = match q.recent_positions_duration {
        None => 0.0,
        Some(d) if d.is_finite() && (0.0..=60.0).contains(&d) => d,
        Some(d) => return Err(UssError::BadRequest(format!("recent_positions_duration: {d} is outside 0..=60"))),
    };
    Ok(Json(uss.rid_flights(&view, recent_s)).into_response())
}

async fn details(State(uss): St, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, UssError> {
    uss.peer(&headers, &[Scope::RidDisplayProvider])?;
    uss.require_rid_sp()?;
    if let Some(details) = uss.injected_details(&id) {
        return Ok(Json(serde_json::json!({ "details": details })).into_response());
    }
    let now = uss.now();
    let live =
        uss.latest_position(&id).is_some_and(|(p, _)| now.micros() - p.time.micros() <= MAX_DATA_AGE_S * 1_000_000);
    if !live || uss.own_intent_state(&id).is_none() {
        return Err(UssError::NotFound(format!("no flight {id} with recent positions is reported here")));
    }
    // No registration or operator data is held for a flight: only what identifies it.
    Ok(Json(api::GetFlightDetailsResponse {
        details: api::RidFlightDetails { id, operator_id: String::new(), operation_description: String::new() },
    })
    .into_response())
}

/// A service provider tells us (a display provider) that an ISA changed: accepted only from
/// its owner (the token's subject) as the DSS records it, and what is learnt is the DSS's
/// record; recorded in the notification history.
async fn isa_notified(
    State(uss): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, UssError> {
    let caller = uss.peer(&headers, &[Scope::RidServiceProvider])?;
    let bytes = crate::error::body_bytes(body)?;
    let n: api::PutIsaNotificationParameters = api::parse_json(&bytes).map_err(|e| UssError::BadRequest(e.message))?;
    if n.subscriptions.is_empty() {
        return Err(UssError::BadRequest("subscriptions: at least one is required".into()));
    }
    if let Some(isa) = &n.service_area {
        if isa.id != id {
            return Err(UssError::BadRequest(format!("service_area.id `{}` is not the path's `{id}`", isa.id)));
        }
        if isa.owner != caller.manager {
            return Err(UssError::Forbidden(format!(
                "`{}` may not notify of ISA {id}: its owner is `{}`",
                caller.manager, isa.owner
            )));
        }
    }
    let history = Received {
        received_at: uss.now_text(),
        from: caller.manager.clone(),
        kind: "identification_service_area".into(),
        entity_id: id.clone(),
        version: None,
        state: Some(n.service_area.as_ref().map_or("deleted".to_owned(), |a| format!("version {}", a.version))),
        accepted: true,
        note: String::new(),
    };
    // What is learnt is the DSS's record, never the body: a peer may announce only its own ISA.
    let held = uss.dss.get_isa(&id).await.map_err(|e| UssError::from_dss("the DSS could not confirm the ISA", e))?;
    match &held {
        Some(isa) if isa.owner != caller.manager => {
            return Err(UssError::Forbidden(format!(
                "`{}` may not notify of ISA {id}: the DSS records `{}` as its owner",
                caller.manager, isa.owner
            )));
        }
        None if uss.known_isa_owner(&id).is_some_and(|o| o != caller.manager) => {
            return Err(UssError::Forbidden(format!(
                "`{}` may not announce the end of another's ISA {id}",
                caller.manager
            )));
        }
        _ => {}
    }
    uss.learn_isa(&id, held.as_ref());
    metrics::counter!("uss_notifications_received_total", "kind" => "identification_service_area", "verdict" => "accepted")
        .increment(1);
    uss.feed(
        "received",
        Some(&id),
        format!(
            "{} notified: Remote ID service area {id} {}",
            caller.manager,
            history.state.as_deref().unwrap_or_default()
        ),
    );
    if let Ok(w) = crate::db::notification_write(uss.now().micros(), &history) {
        let _ = uss.records.apply(vec![w]).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The box over every volume of `own`, from `now` to its end: where its aircraft may be.
pub(crate) fn isa_volume(own: &OwnIntent, now: Timestamp) -> Option<Volume4D> {
    let mut boxes = own.all_volumes().map(|v| v.footprint.bbox());
    let first = boxes.next()?;
    let (mut s, mut w, mut n, mut e) = (first.min_lat, first.min_lng, first.max_lat, first.max_lng);
    for b in boxes {
        (s, w, n, e) = (s.min(b.min_lat), w.min(b.min_lng), n.max(b.max_lat), e.max(b.max_lng));
    }
    let (w, e) = (w.max(-180.0), e.min(180.0));
    let corner = |lat: f64, lng: f64| LatLng::new(lat.clamp(-90.0, 90.0), lng);
    let polygon =
        Polygon::new(vec![corner(s, w).ok()?, corner(s, e).ok()?, corner(n, e).ok()?, corner(n, w).ok()?]).ok()?;
    let lower = own.all_volumes().filter_map(|v| v.altitude.lower_m()).fold(f64::INFINITY, f64::min);
    let upper = own.all_volumes().filter_map(|v| v.altitude.upper_m()).fold(f64::NEG_INFINITY, f64::max);
    let end = own.all_volumes().filter_map(|v| v.time.end()).map(|t| t.micros()).max()?;
    if end <= now.micros() {
        return None;
    }
    Some(Volume4D {
        footprint: Footprint::Polygon(polygon),
        altitude: AltitudeBand::new(lower.is_finite().then_some(lower), upper.is_finite().then_some(upper)).ok()?,
        time: TimeWindow::new(Some(now), Some(Timestamp::from_micros(end))).ok()?,
    })
}

impl Uss {
    pub(crate) fn rid_sp(&self) -> bool {
        self.has_scope("rid.service_provider")
    }

    fn require_rid_sp(&self) -> Result<(), UssError> {
        if self.rid_sp() {
            Ok(())
        } else {
            Err(UssError::NotFound("this participant is not a Remote ID service provider".into()))
        }
    }

    /// Our Remote ID base URL (ISAs name it; display providers append `/uss/flights`).
    pub(crate) fn rid_base_url(&self) -> String {
        format!("{}{RID_PATH}", self.config.base_url)
    }

    /// Our flights with a recent position in `view`, their recent positions over the last
    /// `recent_s` seconds.
    pub(crate) fn rid_flights(&self, view: &View, recent_s: f64) -> api::GetFlightsResponse {
        let now = self.now();
        let oldest = now.micros() - MAX_DATA_AGE_S * 1_000_000;
        let recent_from = now.micros() - (recent_s * 1e6) as i64;
        let m = self.monitor.lock();
        let flights = m
            .flights
            .iter()
            .filter_map(|(id, f)| {
                let latest = f.latest?;
                let in_view = f.track.iter().any(|p| p.time.micros() >= oldest && view.contains(p.at));
                if latest.time.micros() < oldest || !in_view {
                    return None;
                }
                let recent = if recent_s > 0.0 {
                    f.track
                        .iter()
                        .filter(|p| p.time.micros() >= recent_from.max(oldest))
                        .map(|p| api::RidRecentAircraftPosition {
                            time: api::time_to_wire(p.time),
                            position: rid_position(p),
                        })
                        .collect()
                } else {
                    vec![]
                };
                Some(api::RidFlight {
                    id: id.clone(),
                    aircraft_type: "NotDeclared".into(),
                    current_state: Some(api::RidAircraftState {
                        timestamp: api::time_to_wire(latest.time),
                        timestamp_accuracy: 0.0,
                        operational_status: Some("Airborne".into()),
                        position: rid_position(&latest),
                        track: latest.track_deg.unwrap_or(361.0),
                        speed: latest.speed_mps.map_or(255.0, |s| s.min(254.25)),
                        speed_accuracy: api::rid_speed_accuracy(latest.speed_mps.is_some()).into(),
                        vertical_speed: 63.0,
                    }),
                    simulated: false,
                    recent_positions: recent,
                })
            })
            .collect();
        let mut no_isas_present = m.flights.values().all(|f| f.isa.is_none());
        drop(m);
        let mut flights: Vec<api::RidFlight> = flights;
        // Injected test flights: each position from its own time on.
        for f in self.injected_flights() {
            no_isas_present = false;
            let released: Vec<&crate::rid_testing::InjectedState> =
                f.telemetry.iter().filter(|s| s.time.micros() <= now.micros()).collect();
            let Some(latest) = released.last() else { continue };
            let in_view = released.iter().any(|s| s.time.micros() >= oldest && view.contains(s.at));
            if latest.time.micros() < oldest || !in_view {
                continue;
            }
            let recent = if recent_s > 0.0 {
                released
                    .iter()
                    .filter(|s| s.time.micros() >= recent_from.max(oldest))
                    .map(|s| api::RidRecentAircraftPosition {
                        time: api::time_to_wire(s.time),
                        position: s.state.position.clone(),
                    })
                    .collect()
            } else {
                vec![]
            };
            flights.push(api::RidFlight {
                id: f.flight_id.clone(),
                aircraft_type: f.aircraft_type.clone(),
                current_state: Some(latest.state.clone()),
                simulated: false,
                recent_positions: recent,
            });
        }
        api::GetFlightsResponse { timestamp: api::time_to_wire(now), flights, no_isas_present }
    }

    /// An injected test flight's details in effect now (F3411-22a's shape).
    pub(crate) fn injected_details(&self, id: &str) -> Option<serde_json::Value> {
        let now = self.now().micros();
        let f = self.injected_flights().into_iter().find(|f| f.flight_id == id)?;
        f.details.iter().rev().find(|(t, _)| t.micros() <= now).map(|(_, d)| d.clone())
    }

    /// Details of a flight we serve, as display providers get them.
    pub(crate) fn local_rid_details(&self, id: &str) -> Option<serde_json::Value> {
        if let Some(d) = self.injected_details(id) {
            return Some(d);
        }
        self.own_intent_state(id)?;
        Some(serde_json::json!({"id": id, "operator_id": "", "operation_description": ""}))
    }

    /// Starts bringing flight `id`'s ISA in line with its volumes, unless that is under way.
    pub(crate) fn kick_isa(self: &Arc<Self>, id: &str) {
        if !self.rid_sp() {
            return;
        }
        {
            let mut m = self.monitor.lock();
            let Some(f) = m.flights.get_mut(id) else { return };
            if f.isa_syncing {
                return;
            }
            f.isa_syncing = true;
        }
        let (uss, id) = (self.clone(), id.to_owned());
        tokio::spawn(async move {
            uss.sync_isa(&id).await;
            if let Some(f) = uss.monitor.lock().flights.get_mut(&id) {
                f.isa_syncing = false;
            }
        });
    }

    /// Writes flight `id`'s ISA when it differs from what its volumes call for.
    async fn sync_isa(self: &Arc<Self>, id: &str) {
        let Some(own) = self.records.own::<OwnIntent>(id) else { return };
        let Some(volume) = isa_volume(&own, self.now()) else { return };
        let current = self.monitor.lock().flights.get(id).and_then(|f| f.isa.clone());
        // Unchanged in space (its start moves with the clock; that alone is no change).
        if current.as_ref().is_some_and(|c| {
            c.volume.footprint == volume.footprint
                && c.volume.altitude == volume.altitude
                && c.volume.time.end() == volume.time.end()
        }) {
            return;
        }
        let planned = self.monitor.lock().flights.get(id).and_then(|f| f.isa_id.clone());
        let Some(isa_id) = current.as_ref().map(|c| c.id.clone()).or(planned) else { return };
        let version = current.as_ref().map(|c| c.version.clone());
        let base = self.rid_base_url();
        let mut written = self.dss.put_isa(&isa_id, version.as_deref(), &volume, &base).await;
        if written.is_err() {
            // Our version may be stale: a write answered but not recorded (a crash), or the ISA
            // expired. Write again at the version the DSS holds (or create it afresh).
            // (Reading an ISA needs rid.display_provider too: without it, this waits for the
            // flight's end, when the ISA expires.)
            if let Ok(held) = self.dss.get_isa(&isa_id).await.map(|i| i.map(|i| i.version)) {
                if held != version {
                    written = self.dss.put_isa(&isa_id, held.as_deref(), &volume, &base).await;
                }
            }
        }
        match written {
            Ok(written) => {
                let isa = crate::telemetry::FlightIsa {
                    id: isa_id.clone(),
                    version: written.service_area.version.clone(),
                    volume: volume.clone(),
                };
                let record = {
                    let mut m = self.monitor.lock();
                    let Some(f) = m.flights.get_mut(id) else { return };
                    f.isa = Some(isa);
                    crate::monitor::FlightRecord::of(f)
                };
                self.save_flight(id, &record).await;
                self.feed(
                    "change",
                    Some(id),
                    format!(
                        "{} keeps Remote ID service area {isa_id} (version {}) for operation {id}",
                        self.client_id(),
                        written.service_area.version
                    ),
                );
                let body = api::PutIsaNotificationParameters {
                    service_area: Some(written.service_area),
                    subscriptions: vec![],
                    extents: Some(api::volume_to_wire(&volume)),
                };
                self.notify_isa(&isa_id, body, written.subscribers);
            }
            Err(e) => {
                tracing::warn!(%id, error = %e, "could not write the flight's ISA; retried with its next position");
            }
        }
    }

    /// Removes an ended flight's ISA (at `version`, or at the one the DSS holds when ours is
    /// unknown) and tells its subscribers.
    pub(crate) fn drop_isa(self: &Arc<Self>, isa_id: String, version: Option<String>) {
        let uss = self.clone();
        tokio::spawn(async move {
            let version = match version {
                Some(v) => Some(v),
                None => uss.dss.get_isa(&isa_id).await.ok().flatten().map(|i| i.version),
            };
            let Some(version) = version else { return };
            match uss.dss.delete_isa(&isa_id, &version).await {
                Ok(Some(subscribers)) => {
                    let body =
                        api::PutIsaNotificationParameters { service_area: None, subscriptions: vec![], extents: None };
                    uss.notify_isa(&isa_id, body, subscribers);
                }
                Ok(None) => {}
                // It expires with the flight's window at the latest.
                Err(e) => tracing::warn!(isa = %isa_id, error = %e, "could not delete an ended flight's ISA"),
            }
        });
    }

    /// Posts an ISA change to each subscriber the DSS named, with that subscriber's
    /// subscriptions, as F3548 notifications are sent: first attempts in parallel after the
    /// change, failures retried with doubling backoff (from 1 s) for `--notify-retry-secs` while
    /// the ISA is still at this version, every outcome in the live feed and, for a flight's ISA,
    /// on the flight (`isa_notified` in the status).
    pub(crate) fn notify_isa(
        self: &Arc<Self>,
        isa_id: &str,
        body: api::PutIsaNotificationParameters,
        subscribers: Vec<RidSubscriber>,
    ) {
        let version = body.service_area.as_ref().map(|a| a.version.clone());
        let flight = self.flight_of_isa(isa_id);
        if let Some(f) = &flight {
            let started = subscribers.iter().map(|s| crate::entities::Delivery::sending(&s.url)).collect();
            if let Some(fl) = self.monitor.lock().flights.get_mut(f) {
                fl.isa_notified = started;
            }
        }
        for s in subscribers {
            let mut body = body.clone();
            body.subscriptions = s
                .subscriptions
                .iter()
                .map(|(id, n)| api::SubscriptionState { subscription_id: id.clone(), notification_index: *n })
                .collect();
            let (uss, isa_id, version, flight) = (self.clone(), isa_id.to_owned(), version.clone(), flight.clone());
            tokio::spawn(async move {
                let Ok(json) = serde_json::to_value(&body) else { return };
                let path = format!("/uss/identification_service_areas/{isa_id}");
                let deadline = uss.now().micros() + uss.config.notify_retry_for.as_micros() as i64;
                let mut delay = crate::notify::FIRST_RETRY_DELAY;
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let attempt = uss.peers.notify(&s.url, &path, &json).await;
                    let mut d = crate::entities::Delivery::after(&s.url, &attempt, attempts);
                    let out_of_time = uss.now().micros() + 2 * delay.as_micros() as i64 > deadline;
                    let give_up = d.acknowledged || !attempt.retryable() || out_of_time;
                    d.retrying = !give_up;
                    let outcome = if d.acknowledged {
                        "acknowledged".to_owned()
                    } else if d.retrying {
                        format!("FAILED, retrying ({})", d.detail)
                    } else {
                        format!("FAILED ({})", d.detail)
                    };
                    uss.feed(
                        "delivery",
                        Some(&isa_id),
                        format!(
                            "Remote ID service area {isa_id} notified to {} (attempt {attempts}): {outcome}",
                            s.url
                        ),
                    );
                    if let Some(f) = &flight {
                        if let Some(fl) = uss.monitor.lock().flights.get_mut(f) {
                            match fl.isa_notified.iter_mut().find(|x| x.uss_base_url == d.uss_base_url) {
                                Some(x) => *x = d.clone(),
                                None => fl.isa_notified.push(d.clone()),
                            }
                        }
                    }
                    if give_up {
                        return;
                    }
                    uss.clock.sleep(delay).await;
                    delay *= 2;
                    // Superseded by a newer version (or a deletion), whose own notifications went out.
                    if version.is_some() && uss.isa_version(&isa_id) != version {
                        return;
                    }
                }
            });
        }
    }

    /// The flight whose ISA is `isa_id`.
    fn flight_of_isa(&self, isa_id: &str) -> Option<String> {
        let m = self.monitor.lock();
        m.flights.iter().find(|(_, f)| f.isa.as_ref().is_some_and(|i| i.id == isa_id)).map(|(id, _)| id.clone())
    }

    /// The version of our ISA `isa_id` as last written (a flight's or a test's).
    fn isa_version(&self, isa_id: &str) -> Option<String> {
        let flight = {
            let m = self.monitor.lock();
            m.flights.values().find_map(|f| f.isa.as_ref().filter(|i| i.id == isa_id).map(|i| i.version.clone()))
        };
        flight.or_else(|| {
            let tests = self.rid_tests.lock();
            tests.values().find_map(|t| t.record.isa.as_ref().filter(|(id, _)| id == isa_id).map(|(_, v)| v.clone()))
        })
    }
}
