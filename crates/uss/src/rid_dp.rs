//! Network Remote ID (ASTM F3411-22a), the display provider role: for the views operators look
//! at (`GET /operator/rid/flights?view=lat1,lng1,lat2,lng2`), a Remote ID subscription in the
//! DSS (so the ISAs there come with its answer and their changes are notified here), and the
//! service providers those ISAs name polled for their flights in the view. Our own flights are
//! taken from the monitor directly.
//!
//! Peers are untrusted: each provider is polled in its own task, bounded in time and size; an
//! answer is used only when it reads and each flight in it is valid and recent; a provider that
//! hangs or serves garbage is reported and affects only its own flights (the display answers
//! within `DISPLAY_WAIT` with what it has). Views wider than NetDetailsMaxDisplayAreaDiagonal
//! are shown as clusters (counts in cells of at least NetMinClusterSize), never as flights.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use geo4d::{AltitudeBand, Footprint, LatLng, Polygon, TimeWindow, Timestamp, Volume4D};
use serde::Serialize;

use crate::error::UssError;
use crate::rid_sp::{View, MAX_DATA_AGE_S, MAX_VIEW_DIAGONAL_M};
use crate::Uss;

/// NetDetailsMaxDisplayAreaDiagonal (F3411-22a, 2 km): wider views show clusters only.
pub const MAX_DETAILS_DIAGONAL_M: f64 = 2_000.0;
/// NetMinClusterSize: a cluster spans at least this share of the view's diagonal (15%).
pub const MIN_CLUSTER_SHARE: f64 = 0.15;
/// A provider's answer for a view is reused this long: a view is polled at most twice a second,
/// so what is shown is at most half a second behind the provider (plus its answer time).
const POLL_EVERY: Duration = Duration::from_millis(500);
/// The display answers within this, with the providers that answered by then.
const DISPLAY_WAIT: Duration = Duration::from_millis(1500);
/// Subscriptions are made this long, and renewed once less than `RENEW_S` is left.
const SUBSCRIPTION_S: i64 = 3600;
const RENEW_S: i64 = 300;
/// At most this many Remote ID subscriptions are kept; the oldest is deleted from the DSS to
/// make room (the DSS allows ten of ours over any one area).
const MAX_SUBSCRIPTIONS: usize = 32;
/// ISAs known at most (expired ones are dropped first).
const MAX_KNOWN_ISAS: usize = 100_000;
/// Flights read from one provider's answer at most.
const MAX_FLIGHTS_PER_PROVIDER: usize = 10_000;

/// An ISA as this display provider knows it.
#[derive(Debug, Clone)]
pub(crate) struct KnownIsa {
    pub owner: String,
    pub url: String,
    pub end: Option<Timestamp>,
}

struct DpSubscription {
    id: String,
    version: String,
    view: View,
    expires: Timestamp,
}

/// A provider's last answer for one view.
#[derive(Clone)]
struct Polled {
    at: Timestamp,
    result: Result<Vec<DisplayFlight>, String>,
    in_flight: bool,
}

#[derive(Default)]
pub(crate) struct DpState {
    pub isas: HashMap<String, KnownIsa>,
    subscriptions: Vec<DpSubscription>,
    /// (provider URL, view text) -> its last answer.
    polled: HashMap<(String, String), Polled>,
}

/// One flight on the display.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DisplayFlight {
    pub id: String,
    /// The service provider (its ISA's owner).
    pub provider: String,
    pub lat: f64,
    pub lng: f64,
    /// Metres above the WGS84 ellipsoid (-1000: unknown).
    pub alt_m: f64,
    pub time: String,
    /// Age of the position when the display was made, seconds.
    pub age_s: f64,
}

/// A group of flights shown as a count over a cell.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cluster {
    /// `[south, west, north, east]` of the cell.
    pub bounds: [f64; 4],
    pub count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderStatus {
    pub provider: String,
    pub url: String,
    pub flights: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Display {
    pub view: [f64; 4],
    pub generated_at: String,
    /// Individual flights (views up to 2 km across) ...
    pub flights: Vec<DisplayFlight>,
    /// ... or clusters (wider views).
    pub clusters: Vec<Cluster>,
    pub providers: Vec<ProviderStatus>,
}

/// Reads a provider's flight as a display flight if it is valid and recent.
fn read_flight(f: &api::RidFlight, provider: &str, now: Timestamp) -> Option<DisplayFlight> {
    let state = f.current_state.as_ref()?;
    let at = LatLng::new(state.position.lat, state.position.lng).ok()?;
    let t = api::time_from_wire(&state.timestamp, "timestamp").ok()?;
    let age_s = (now.micros() - t.micros()) as f64 / 1e6;
    if !(-5.0..=MAX_DATA_AGE_S as f64).contains(&age_s) || f.id.is_empty() || f.id.len() > 200 {
        return None;
    }
    let alt_m = if state.position.alt.is_finite() { state.position.alt } else { -1000.0 };
    Some(DisplayFlight {
        id: f.id.clone(),
        provider: provider.to_owned(),
        lat: at.lat(),
        lng: at.lng(),
        alt_m,
        time: crate::time_text(t),
        age_s: age_s.max(0.0),
    })
}

/// The view's cells (a grid of cells at least `MIN_CLUSTER_SHARE` of its diagonal) holding
/// flights, with their counts.
pub fn clusters(view: &View, flights: &[DisplayFlight]) -> Vec<Cluster> {
    let n = (1.0 / MIN_CLUSTER_SHARE).floor().max(1.0) as usize;
    let (dlat, dlng) = ((view.north - view.south) / n as f64, (view.east - view.west) / n as f64);
    let mut counts: HashMap<(usize, usize), usize> = HashMap::new();
    for f in flights {
        let row = (((f.lat - view.south) / dlat.max(1e-12)) as usize).min(n - 1);
        let col = (((f.lng - view.west) / dlng.max(1e-12)) as usize).min(n - 1);
        *counts.entry((row, col)).or_default() += 1;
    }
    let mut out: Vec<Cluster> = counts
        .into_iter()
        .map(|((r, c), count)| {
            let s = view.south + r as f64 * dlat;
            let w = view.west + c as f64 * dlng;
            Cluster { bounds: [s, w, s + dlat, w + dlng], count }
        })
        .collect();
    out.sort_by(|a, b| a.bounds.partial_cmp(&b.bounds).unwrap_or(std::cmp::Ordering::Equal));
    out
}

fn view_text(v: &View) -> String {
    format!("{},{},{},{}", v.south, v.west, v.north, v.east)
}

fn covers(outer: &View, inner: &View) -> bool {
    outer.south <= inner.south && outer.west <= inner.west && outer.north >= inner.north && outer.east >= inner.east
}

impl Uss {
    pub(crate) fn rid_dp(&self) -> bool {
        self.has_scope("rid.display_provider")
    }

    /// What a display of `view` shows now.
    pub(crate) async fn rid_display(self: &Arc<Self>, view: View) -> Result<Display, UssError> {
        if !self.rid_dp() {
            return Err(UssError::NotProvided(
                "this participant is not a Remote ID display provider (its tokens lack rid.display_provider)".into(),
            ));
        }
        let diagonal = view.diagonal_m();
        if diagonal > MAX_VIEW_DIAGONAL_M {
            return Err(UssError::PayloadTooLarge(format!(
                "the view's diagonal is {diagonal:.0} m; at most {MAX_VIEW_DIAGONAL_M:.0} m (NetMaxDisplayAreaDiagonal)"
            )));
        }
        self.ensure_rid_subscription(&view).await?;
        let now = self.now();
        let text = view_text(&view);
        // Providers named by live ISAs, ourselves excepted (our flights are at hand).
        let mut providers: Vec<(String, String)> = {
            let dp = self.rid_dp_state.lock();
            dp.isas
                .values()
                .filter(|i| i.end.is_none_or(|e| e.micros() > now.micros()) && i.owner != self.client_id())
                .map(|i| (i.owner.clone(), i.url.clone()))
                .collect()
        };
        providers.sort();
        providers.dedup_by(|a, b| a.1 == b.1);
        let mut waits = Vec::new();
        for (owner, url) in &providers {
            if let Some(task) = self.poll_provider(owner, url, &text) {
                waits.push(task);
            }
        }
        // Whatever answered by then; a slow provider's flights come with a later display.
        let _ = tokio::time::timeout(DISPLAY_WAIT, futures_util::future::join_all(waits)).await;
        let mut flights = Vec::new();
        let mut statuses = Vec::new();
        {
            let dp = self.rid_dp_state.lock();
            for (owner, url) in &providers {
                let polled = dp.polled.get(&(url.clone(), text.clone()));
                let (n, error) = match polled.map(|p| &p.result) {
                    Some(Ok(list)) => {
                        flights.extend(list.iter().filter(|f| view.contains_point(f.lat, f.lng)).cloned());
                        (list.len(), None)
                    }
                    Some(Err(e)) => (0, Some(e.clone())),
                    None => (0, Some("no answer yet".into())),
                };
                statuses.push(ProviderStatus { provider: owner.clone(), url: url.clone(), flights: n, error });
            }
        }
        if self.rid_sp() {
            let own = self.rid_flights(&view, 0.0);
            let before = flights.len();
            flights.extend(own.flights.iter().filter_map(|f| read_flight(f, self.client_id(), now)));
            statuses.push(ProviderStatus {
                provider: self.client_id().to_owned(),
                url: self.rid_base_url(),
                flights: flights.len() - before,
                error: None,
            });
        }
        for f in &mut flights {
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&f.time) {
                f.age_s = ((now.micros() - t.timestamp_micros()) as f64 / 1e6).max(0.0);
            }
        }
        flights.sort_by(|a, b| (&a.provider, &a.id).cmp(&(&b.provider, &b.id)));
        let wide = diagonal > MAX_DETAILS_DIAGONAL_M;
        Ok(Display {
            view: [view.south, view.west, view.north, view.east],
            generated_at: crate::time_text(now),
            clusters: if wide { clusters(&view, &flights) } else { vec![] },
            flights: if wide { vec![] } else { flights },
            providers: statuses,
        })
    }

    /// Polls `url` for `view` unless its answer is fresh or a poll is under way; the task
    /// records its answer whatever the display does meanwhile.
    fn poll_provider(self: &Arc<Self>, owner: &str, url: &str, view: &str) -> Option<tokio::task::JoinHandle<()>> {
        let now = self.now();
        {
            let mut dp = self.rid_dp_state.lock();
            let key = (url.to_owned(), view.to_owned());
            match dp.polled.get_mut(&key) {
                Some(p) if p.in_flight => return None,
                Some(p) if now.micros() - p.at.micros() < POLL_EVERY.as_micros() as i64 => return None,
                Some(p) => p.in_flight = true,
                None => {
                    dp.polled.insert(key, Polled { at: now, result: Err("no answer yet".into()), in_flight: true });
                }
            }
        }
        let (uss, owner, url, view) = (self.clone(), owner.to_owned(), url.to_owned(), view.to_owned());
        Some(tokio::spawn(async move {
            let answer = uss.peers.rid_flights(&url, &view).await;
            let now = uss.now();
            let result = answer.map(|r| {
                r.flights.iter().take(MAX_FLIGHTS_PER_PROVIDER).filter_map(|f| read_flight(f, &owner, now)).collect()
            });
            if let Err(e) = &result {
                tracing::info!(provider = %owner, %url, error = %e, "a Remote ID service provider could not be read");
            }
            let mut dp = uss.rid_dp_state.lock();
            dp.polled.insert((url, view), Polled { at: now, result, in_flight: false });
            // Bounded: answers for views nobody looks at any more are dropped.
            if dp.polled.len() > 1000 {
                let cutoff = now.micros() - 60_000_000;
                dp.polled.retain(|_, p| p.in_flight || p.at.micros() > cutoff);
            }
        }))
    }

    /// Makes sure a live Remote ID subscription of ours covers `view` (the ISAs it finds are
    /// learnt from its answer; later changes come as notifications). Should the DSS refuse one
    /// (its quotas), the ISAs over the view are searched instead: the display works, only
    /// without notifications for that view.
    async fn ensure_rid_subscription(self: &Arc<Self>, view: &View) -> Result<(), UssError> {
        let now = self.now();
        {
            let mut dp = self.rid_dp_state.lock();
            dp.subscriptions.retain(|s| s.expires.micros() > now.plus_seconds(RENEW_S).micros());
            if dp.subscriptions.iter().any(|s| covers(&s.view, view)) {
                return Ok(());
            }
        }
        // A little more than the view, so small pans reuse it.
        let (dlat, dlng) = ((view.north - view.south) * 0.5, (view.east - view.west) * 0.5);
        let area = View {
            south: (view.south - dlat).max(-89.9),
            west: (view.west - dlng).max(-180.0),
            north: (view.north + dlat).min(89.9),
            east: (view.east + dlng).min(180.0),
        };
        let corner = |lat: f64, lng: f64| LatLng::new(lat, lng).map_err(|e| UssError::BadRequest(e.to_string()));
        let polygon = Polygon::new(vec![
            corner(area.south, area.west)?,
            corner(area.south, area.east)?,
            corner(area.north, area.east)?,
            corner(area.north, area.west)?,
        ])
        .map_err(|e| UssError::BadRequest(format!("view: {e}")))?;
        let volume = Volume4D {
            footprint: Footprint::Polygon(polygon),
            altitude: AltitudeBand::new(Some(-1000.0), Some(20_000.0))
                .map_err(|e| UssError::BadRequest(e.to_string()))?,
            time: TimeWindow::new(Some(now), Some(now.plus_seconds(SUBSCRIPTION_S)))
                .map_err(|e| UssError::BadRequest(e.to_string()))?,
        };
        let id = self.ids.new_id();
        let (version, isas) = match self.dss.put_rid_subscription(&id, &volume, &self.rid_base_url()).await {
            Ok((version, isas)) => (Some(version), isas),
            Err(e) => {
                tracing::warn!(error = %e, "the DSS refused a Remote ID subscription; searching its ISAs instead");
                let area = format!(
                    "{s},{w},{s},{e},{n},{e},{n},{w}",
                    s = view.south,
                    w = view.west,
                    n = view.north,
                    e = view.east
                );
                let isas =
                    self.dss.search_isas(&area).await.map_err(|e| {
                        UssError::from_dss("the DSS could not be searched for Remote ID service areas", e)
                    })?;
                (None, isas)
            }
        };
        let mut dp = self.rid_dp_state.lock();
        for isa in isas {
            dp.isas.insert(
                isa.id.clone(),
                KnownIsa {
                    owner: isa.owner.clone(),
                    url: isa.uss_base_url.clone(),
                    end: api::time_from_wire(&isa.time_end, "time_end").ok(),
                },
            );
        }
        let Some(version) = version else { return Ok(()) };
        dp.subscriptions.push(DpSubscription { id, version, view: area, expires: now.plus_seconds(SUBSCRIPTION_S) });
        if dp.subscriptions.len() > MAX_SUBSCRIPTIONS {
            let oldest = dp.subscriptions.remove(0);
            let uss = self.clone();
            tokio::spawn(async move {
                if let Err(e) = uss.dss.delete_rid_subscription(&oldest.id, &oldest.version).await {
                    tracing::warn!(id = %oldest.id, error = %e, "could not delete an unused Remote ID subscription; it expires");
                }
            });
        }
        Ok(())
    }

    /// A flight's details from the provider the display last saw it with (ours locally).
    pub(crate) async fn rid_details_of(&self, id: &str) -> Result<serde_json::Value, UssError> {
        if let Some(d) = self.local_rid_details(id) {
            return Ok(d);
        }
        let url = {
            let dp = self.rid_dp_state.lock();
            dp.polled
                .iter()
                .find(|(_, p)| p.result.as_ref().is_ok_and(|l| l.iter().any(|f| f.id == id)))
                .map(|((url, _), _)| url.clone())
        };
        let url = url.ok_or_else(|| UssError::NotFound(format!("flight {id} is not on this participant's display")))?;
        let got = self
            .peers
            .rid_flight_details(&url, id)
            .await
            .map_err(|e| UssError::Upstream(format!("the service provider of flight {id} ({url}): {e}")))?;
        let details = got.get("details").cloned().filter(|d| d.is_object());
        details.ok_or_else(|| UssError::Upstream(format!("the service provider of flight {id} served no details")))
    }

    /// The owner of ISA `id` as this display provider knows it.
    pub(crate) fn known_isa_owner(&self, id: &str) -> Option<String> {
        self.rid_dp_state.lock().isas.get(id).map(|i| i.owner.clone())
    }

    /// An ISA as the DSS holds it after a change its owner told us of (`None`: gone).
    pub(crate) fn learn_isa(&self, id: &str, isa: Option<&api::IdentificationServiceArea>) {
        let now = self.now().micros();
        let mut dp = self.rid_dp_state.lock();
        // Bounded: a flood of notifications cannot grow it without end.
        if dp.isas.len() >= MAX_KNOWN_ISAS {
            dp.isas.retain(|_, i| i.end.is_none_or(|e| e.micros() > now));
        }
        match isa {
            Some(_) if dp.isas.len() >= MAX_KNOWN_ISAS && !dp.isas.contains_key(id) => {
                tracing::warn!(%id, "too many Remote ID service areas known; this one is not learnt");
            }
            Some(isa) => {
                dp.isas.insert(
                    id.to_owned(),
                    KnownIsa {
                        owner: isa.owner.clone(),
                        url: isa.uss_base_url.clone(),
                        end: api::time_from_wire(&isa.time_end, "time_end").ok(),
                    },
                );
            }
            None => {
                dp.isas.remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flight(lat: f64, lng: f64) -> DisplayFlight {
        DisplayFlight {
            id: format!("{lat},{lng}"),
            provider: "p".into(),
            lat,
            lng,
            alt_m: 50.0,
            time: String::new(),
            age_s: 0.0,
        }
    }

    #[test]
    fn wide_views_show_counts_in_cells_of_at_least_the_minimum_cluster_size() {
        let view = View { south: 47.0, west: 8.0, north: 47.03, east: 8.04 };
        let flights = [flight(47.001, 8.001), flight(47.002, 8.002), flight(47.029, 8.039), flight(47.03, 8.04)];
        let c = clusters(&view, &flights);
        assert_eq!(c.iter().map(|c| c.count).collect::<Vec<_>>(), vec![2, 2]);
        for cluster in &c {
            let [s, w, n, e] = cluster.bounds;
            let diag =
                geo4d::geodesic_distance_m(LatLng::new(s, w).expect("corner"), LatLng::new(n, e).expect("corner"));
            assert!(diag >= MIN_CLUSTER_SHARE * view.diagonal_m(), "{cluster:?}");
            assert!(
                flights.iter().filter(|f| f.lat >= s && f.lat <= n && f.lng >= w && f.lng <= e).count()
                    >= cluster.count
            );
        }
    }

    #[test]
    fn a_providers_flight_is_shown_only_when_valid_and_recent() {
        let now = Timestamp::from_micros(1_900_000_000_000_000);
        let f = |lat: f64, age_s: i64| api::RidFlight {
            id: "f1".into(),
            aircraft_type: "NotDeclared".into(),
            current_state: Some(api::RidAircraftState {
                timestamp: api::time_to_wire(now.plus_seconds(-age_s)),
                timestamp_accuracy: 0.0,
                operational_status: None,
                position: api::RidAircraftPosition {
                    lat,
                    lng: 8.0,
                    alt: 60.0,
                    accuracy_h: None,
                    accuracy_v: None,
                    extrapolated: false,
                },
                track: 361.0,
                speed: 255.0,
                speed_accuracy: "SAUnknown".into(),
                vertical_speed: 63.0,
            }),
            simulated: false,
            recent_positions: vec![],
        };
        let shown = read_flight(&f(47.0, 2), "p", now).expect("valid and recent");
        assert_eq!((shown.lat, shown.age_s), (47.0, 2.0));
        assert!(read_flight(&f(95.0, 2), "p", now).is_none(), "an impossible latitude");
        assert!(read_flight(&f(47.0, 61), "p", now).is_none(), "older than NetMaxNearRealTimeDataPeriod");
        assert!(read_flight(&f(47.0, -30), "p", now).is_none(), "from the future");
        let mut no_state = f(47.0, 2);
        no_state.current_state = None;
        assert!(read_flight(&no_state, "p", now).is_none());
    }
}
