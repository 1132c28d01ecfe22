//! InterUSS's Remote ID automated-testing interfaces (`rid/automated_testing/`), behind
//! `--rid-testing` on the peer listener, for the subjects of `--rid-testing-subject` only:
//!
//! - injection (`{base}/ridsp/injection`, scope `rid.inject_test_data`): a test's flights
//!   become real flights of ours as a service provider: one ISA in the DSS over all their
//!   positions (its subscribers told), each position served from its own time on, details as
//!   injected (in F3411-22a's shape) from their `effective_after`; deleting the test removes
//!   them and the ISA;
//! - observation (`{base}/riddp/observation`, scope `dss.read.identification_service_areas`):
//!   what this participant's display shows for a view (`rid_dp`), and a flight's details as its
//!   service provider serves them.
//!
//! Tests are kept in the records (table `rid_tests`) and loaded again at start.

use std::sync::Arc;

use auth::Scope;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use geo4d::{AltitudeBand, Footprint, LatLng, Polygon, TimeWindow, Timestamp, Volume4D};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::db::Table;
use crate::error::UssError;
use crate::rid_sp::View;
use crate::Uss;

type St = State<Arc<Uss>>;
type Body = Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>;

/// Most flights in one test, and positions per flight.
const MAX_FLIGHTS: usize = 100;
const MAX_TELEMETRY: usize = 10_000;

pub(crate) fn routes() -> Router<Arc<Uss>> {
    Router::new()
        .route("/ridsp/injection/tests/{test_id}", put(create_test))
        .route("/ridsp/injection/tests/{test_id}/{version}", delete(delete_test))
        .route("/ridsp/injection/user_notifications", get(user_notifications))
        .route("/riddp/observation/display_data", get(display_data))
        .route("/riddp/observation/display_data/{id}", get(display_details))
}

/// One injected position, as released at its time.
#[derive(Debug, Clone)]
pub(crate) struct InjectedState {
    pub time: Timestamp,
    pub at: LatLng,
    pub state: api::RidAircraftState,
}

/// One injected flight.
#[derive(Debug, Clone)]
pub(crate) struct InjectedFlight {
    pub flight_id: String,
    pub aircraft_type: String,
    /// Oldest first.
    pub telemetry: Vec<InjectedState>,
    /// (effective after, details in F3411-22a's shape), oldest first.
    pub details: Vec<(Timestamp, Value)>,
}

/// What the records keep of a test: enough to serve it again after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TestRecord {
    pub version: String,
    /// The test as injected (the answer echoes it), with each flight's id of ours.
    pub flights: Vec<Value>,
    pub flight_ids: Vec<String>,
    pub isa: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub(crate) struct InjectedTest {
    pub record: TestRecord,
    pub flights: Vec<InjectedFlight>,
}

fn num(v: &Value, field: &str) -> Option<f64> {
    v.get(field).and_then(Value::as_f64).filter(|x| x.is_finite())
}

fn text(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// Reads an injected `RIDAircraftState` (its `timestamp` an RFC 3339 string, as the injection
/// API has it); fields the standard lets a UAS omit get the standard's "unknown" values.
fn injected_state(v: &Value, at: &str) -> Result<InjectedState, String> {
    let ts = text(v, "timestamp").ok_or_else(|| format!("{at}.timestamp is required"))?;
    let time = chrono::DateTime::parse_from_rfc3339(&ts)
        .map(|t| Timestamp::from_micros(t.timestamp_micros()))
        .map_err(|e| format!("{at}.timestamp `{ts}`: {e}"))?;
    let p = v.get("position").ok_or_else(|| format!("{at}.position is required"))?;
    let (lat, lng) = (num(p, "lat"), num(p, "lng"));
    let point = match (lat, lng) {
        (Some(lat), Some(lng)) => LatLng::new(lat, lng).map_err(|e| format!("{at}.position: {e}"))?,
        _ => return Err(format!("{at}.position needs lat and lng")),
    };
    let state = api::RidAircraftState {
        timestamp: api::time_to_wire(time),
        timestamp_accuracy: num(v, "timestamp_accuracy").unwrap_or(0.0),
        operational_status: text(v, "operational_status"),
        position: api::RidAircraftPosition {
            lat: point.lat(),
            lng: point.lng(),
            alt: num(p, "alt").unwrap_or(-1000.0),
            accuracy_h: text(p, "accuracy_h"),
            accuracy_v: text(p, "accuracy_v"),
            extrapolated: p.get("extrapolated").and_then(Value::as_bool).unwrap_or(false),
        },
        track: num(v, "track").unwrap_or(361.0),
        speed: num(v, "speed").unwrap_or(255.0),
        speed_accuracy: text(v, "speed_accuracy").unwrap_or_else(|| "SAUnknown".into()),
        vertical_speed: num(v, "vertical_speed").unwrap_or(63.0),
    };
    Ok(InjectedState { time, at: point, state })
}

/// The injection API's `RIDFlightDetails` in F3411-22a's shape: `operator_location` becomes
/// an `OperatorLocation` (with `operator_altitude`'s altitude), the legacy serial and
/// registration numbers go into `uas_id` when it is absent; the id is ours.
fn f3411_details(flight_id: &str, injected: &Value) -> Value {
    let mut out = json!({"id": flight_id});
    for field in ["operator_id", "operation_description", "eu_classification", "auth_data"] {
        if let Some(v) = injected.get(field) {
            out[field] = v.clone();
        }
    }
    let uas_id = match injected.get("uas_id") {
        Some(u) if u.is_object() => u.clone(),
        _ => {
            let mut u = json!({});
            if let Some(s) = injected.get("serial_number") {
                u["serial_number"] = s.clone();
            }
            if let Some(r) = injected.get("registration_number") {
                u["registration_id"] = r.clone();
            }
            u
        }
    };
    if uas_id.as_object().is_some_and(|o| !o.is_empty()) {
        out["uas_id"] = uas_id;
    }
    if let Some(loc) = injected.get("operator_location").filter(|l| l.is_object()) {
        let mut location = json!({"position": loc});
        if let Some(alt) = injected.get("operator_altitude") {
            if let Some(a) = alt.get("altitude") {
                location["altitude"] = a.clone();
            }
            if let Some(t) = alt.get("altitude_type") {
                location["altitude_type"] = t.clone();
            }
        }
        out["operator_location"] = location;
    }
    out
}

/// Reads a test's flights; `ids` are the flight ids of ours (new ones when injecting).
fn read_flights(flights: &[Value], ids: &[String]) -> Result<Vec<InjectedFlight>, String> {
    if flights.is_empty() || flights.len() > MAX_FLIGHTS {
        return Err(format!("requested_flights: 1 to {MAX_FLIGHTS} flights"));
    }
    let mut out = Vec::new();
    for (i, (f, id)) in flights.iter().zip(ids).enumerate() {
        let at = format!("requested_flights[{i}]");
        text(f, "injection_id").ok_or_else(|| format!("{at}.injection_id is required"))?;
        let telemetry =
            f.get("telemetry").and_then(Value::as_array).ok_or_else(|| format!("{at}.telemetry is required"))?;
        if telemetry.len() > MAX_TELEMETRY {
            return Err(format!("{at}.telemetry: at most {MAX_TELEMETRY} positions"));
        }
        let mut states = telemetry
            .iter()
            .enumerate()
            .map(|(j, t)| injected_state(t, &format!("{at}.telemetry[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        states.sort_by_key(|s| s.time.micros());
        let responses = f
            .get("details_responses")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{at}.details_responses is required"))?;
        let mut details = Vec::new();
        for (j, d) in responses.iter().enumerate() {
            let after =
                text(d, "effective_after").ok_or_else(|| format!("{at}.details_responses[{j}].effective_after"))?;
            let after = chrono::DateTime::parse_from_rfc3339(&after)
                .map(|t| Timestamp::from_micros(t.timestamp_micros()))
                .map_err(|e| format!("{at}.details_responses[{j}].effective_after: {e}"))?;
            let inner = d.get("details").ok_or_else(|| format!("{at}.details_responses[{j}].details is required"))?;
            details.push((after, f3411_details(id, inner)));
        }
        details.sort_by_key(|(t, _)| t.micros());
        out.push(InjectedFlight {
            flight_id: id.clone(),
            aircraft_type: text(f, "aircraft_type").unwrap_or_else(|| "NotDeclared".into()),
            telemetry: states,
            details,
        });
    }
    Ok(out)
}

/// The ISA over every position of a test's flights, until a minute after the last.
fn test_isa_volume(flights: &[InjectedFlight], now: Timestamp) -> Option<Volume4D> {
    let states = flights.iter().flat_map(|f| &f.telemetry);
    let (mut s, mut w, mut n, mut e) = (90.0f64, 180.0f64, -90.0f64, -180.0f64);
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut last = i64::MIN;
    for st in states {
        (s, w, n, e) = (s.min(st.at.lat()), w.min(st.at.lng()), n.max(st.at.lat()), e.max(st.at.lng()));
        if st.state.position.alt > -1000.0 {
            (low, high) = (low.min(st.state.position.alt), high.max(st.state.position.alt));
        }
        last = last.max(st.time.micros());
    }
    if last == i64::MIN {
        return None;
    }
    // At least about 200 m each way around the positions.
    let pad = 0.002;
    let corner = |lat: f64, lng: f64| LatLng::new(lat.clamp(-89.9, 89.9), lng.clamp(-180.0, 180.0)).ok();
    let polygon = Polygon::new(vec![
        corner(s - pad, w - pad)?,
        corner(s - pad, e + pad)?,
        corner(n + pad, e + pad)?,
        corner(n + pad, w - pad)?,
    ])
    .ok()?;
    let (low, high) = if low.is_finite() { (low - 100.0, high + 100.0) } else { (-1000.0, 10_000.0) };
    let end = Timestamp::from_micros(last.max(now.micros()) + 60_000_000);
    Some(Volume4D {
        footprint: Footprint::Polygon(polygon),
        altitude: AltitudeBand::new(Some(low.max(-8000.0)), Some(high.min(100_000.0))).ok()?,
        time: TimeWindow::new(Some(now), Some(end)).ok()?,
    })
}

impl Uss {
    /// The test driver: a peer token whose subject is among `--rid-testing-subject`, with one
    /// of `any_of`.
    fn rid_tester(&self, headers: &HeaderMap, any_of: &[Scope]) -> Result<(), UssError> {
        let header = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let caller = self.peer_verifier.verify(header)?;
        if !self.config.rid_testing_subjects.contains(&caller.manager) {
            return Err(UssError::Forbidden(format!(
                "`{}` may not drive this participant's Remote ID test interfaces (not among its --rid-testing-subject)",
                caller.manager
            )));
        }
        caller.require_any(any_of)?;
        Ok(())
    }

    /// Injected flights with a position released by `now`, for serving.
    pub(crate) fn injected_flights(&self) -> Vec<InjectedFlight> {
        self.rid_tests.lock().values().flat_map(|t| t.flights.clone()).collect()
    }

    /// Loads the tests kept in the records (at start-up).
    pub async fn load_rid_tests(&self) -> Result<(), String> {
        let rows: Vec<(String, TestRecord)> =
            self.records.load_all(Table::RidTests).await.map_err(|e| e.to_string())?;
        let mut tests = self.rid_tests.lock();
        for (id, record) in rows {
            if let Ok(flights) = read_flights(&record.flights, &record.flight_ids) {
                tests.insert(id, InjectedTest { record, flights });
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct CreateTest {
    requested_flights: Vec<Value>,
}

async fn create_test(
    State(uss): St,
    headers: HeaderMap,
    Path(test_id): Path<String>,
    body: Body,
) -> Result<Response, UssError> {
    uss.rid_tester(&headers, &[Scope::RidInjectTestData])?;
    if !uss.rid_sp() {
        return Err(UssError::NotProvided(
            "this participant is not a Remote ID service provider (its tokens lack rid.service_provider)".into(),
        ));
    }
    let bytes = crate::error::body_bytes(body)?;
    let req: CreateTest = api::parse_json(&bytes).map_err(|e| UssError::BadRequest(e.message))?;
    if uss.rid_tests.lock().contains_key(&test_id) {
        return Err(UssError::WrongState(format!("test {test_id} already exists")));
    }
    let ids: Vec<String> = req.requested_flights.iter().map(|_| uss.ids.new_id()).collect();
    let flights = read_flights(&req.requested_flights, &ids).map_err(UssError::BadRequest)?;
    let now = uss.now();
    let volume =
        test_isa_volume(&flights, now).ok_or_else(|| UssError::BadRequest("the test has no position".into()))?;
    let isa_id = uss.ids.new_id();
    let written = uss
        .dss
        .put_isa(&isa_id, None, &volume, &uss.rid_base_url())
        .await
        .map_err(|e| UssError::from_dss("the DSS refused the test's identification service area", e))?;
    let record = TestRecord {
        version: uss.ids.new_id(),
        flights: req.requested_flights.clone(),
        flight_ids: ids,
        isa: Some((isa_id.clone(), written.service_area.version.clone())),
    };
    let body = serde_json::to_string(&record).map_err(|e| UssError::Storage(e.to_string()))?;
    uss.records
        .apply(vec![crate::db::Write::Put(Table::RidTests, test_id.clone(), body)])
        .await
        .map_err(|e| UssError::Storage(format!("the test could not be recorded: {e}")))?;
    let version = record.version.clone();
    uss.rid_tests.lock().insert(test_id.clone(), InjectedTest { record, flights });
    uss.notify_isa(
        &isa_id,
        api::PutIsaNotificationParameters {
            service_area: Some(written.service_area),
            subscriptions: vec![],
            extents: Some(api::volume_to_wire(&volume)),
        },
        written.subscribers,
    );
    uss.feed("change", Some(&test_id), format!("Remote ID test {test_id} injected: ISA {isa_id}"));
    Ok(Json(json!({"injected_flights": req.requested_flights, "version": version})).into_response())
}

async fn delete_test(
    State(uss): St,
    headers: HeaderMap,
    Path((test_id, version)): Path<(String, String)>,
) -> Result<Response, UssError> {
    uss.rid_tester(&headers, &[Scope::RidInjectTestData])?;
    let test = {
        let mut tests = uss.rid_tests.lock();
        match tests.get(&test_id) {
            None => return Err(UssError::NotFound(format!("no test {test_id}"))),
            Some(t) if t.record.version != version => {
                return Err(UssError::WrongState(format!("test {test_id} is at another version")))
            }
            Some(_) => tests.remove(&test_id).expect("present"),
        }
    };
    if let Err(e) = uss.records.apply(vec![crate::db::Write::Delete(Table::RidTests, test_id.clone())]).await {
        tracing::error!(%test_id, error = %e, "could not forget a deleted test");
    }
    if let Some((id, version)) = test.record.isa.clone() {
        uss.drop_isa(id, Some(version));
    }
    Ok(Json(json!({"injected_flights": test.record.flights})).into_response())
}

#[derive(Deserialize)]
struct NoticeWindow {
    after: Option<String>,
}

/// This service provider shows its virtual user no Remote ID notifications: an empty list (the
/// window is still checked).
async fn user_notifications(
    State(uss): St,
    headers: HeaderMap,
    query: Result<Query<NoticeWindow>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, UssError> {
    uss.rid_tester(&headers, &[Scope::RidInjectTestData])?;
    let Query(w) = query.map_err(|e| UssError::BadRequest(format!("query parameters: {e}")))?;
    let after = w.after.ok_or_else(|| UssError::BadRequest("after is required".into()))?;
    chrono::DateTime::parse_from_rfc3339(&after).map_err(|e| UssError::BadRequest(format!("after: {e}")))?;
    Ok(Json(json!({"user_notifications": []})).into_response())
}

#[derive(Deserialize)]
struct ViewQuery {
    view: Option<String>,
}

async fn display_data(
    State(uss): St,
    headers: HeaderMap,
    query: Result<Query<ViewQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, UssError> {
    uss.rid_tester(&headers, &[Scope::RidRead])?;
    let Query(q) = query.map_err(|e| UssError::BadRequest(format!("query parameters: {e}")))?;
    let view = View::parse(q.view.as_deref().ok_or_else(|| UssError::BadRequest("view is required".into()))?)?;
    let display = uss.rid_display(view).await?;
    let flights: Vec<Value> = display
        .flights
        .iter()
        .map(|f| json!({"id": f.id, "most_recent_position": {"lat": f.lat, "lng": f.lng, "alt": f.alt_m}, "recent_paths": []}))
        .collect();
    let clusters: Vec<Value> = display
        .clusters
        .iter()
        .map(|c| {
            let [s, w, n, e] = c.bounds;
            let area = match (LatLng::new(s, w), LatLng::new(s, e), LatLng::new(n, w)) {
                (Ok(sw), Ok(se), Ok(nw)) => geo4d::geodesic_distance_m(sw, se) * geo4d::geodesic_distance_m(sw, nw),
                _ => 0.0,
            };
            json!({"corners": [{"lat": s, "lng": w}, {"lat": n, "lng": e}], "area_sqm": area, "number_of_flights": c.count})
        })
        .collect();
    Ok(Json(json!({"flights": flights, "clusters": clusters})).into_response())
}

async fn display_details(State(uss): St, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, UssError> {
    uss.rid_tester(&headers, &[Scope::RidRead])?;
    let details = uss.rid_details_of(&id).await?;
    let uas = details["uas_id"].as_object().and_then(|u| {
        ["serial_number", "registration_id", "utm_id", "specific_session_id"]
            .iter()
            .find_map(|k| u.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned))
    });
    let mut operator = json!({});
    if let Some(op) = details["operator_id"].as_str() {
        operator["id"] = json!(op);
    }
    if let Some(p) = details["operator_location"].get("position") {
        operator["location"] = p.clone();
    }
    if let Some(a) = details["operator_location"].get("altitude") {
        operator["altitude"] = json!({"altitude": a, "altitude_type": details["operator_location"]["altitude_type"]});
    }
    let mut out = json!({"operator": operator, "uas": {}});
    if let Some(u) = uas {
        out["uas"]["id"] = json!(u);
    }
    if let Some(eu) = details.get("eu_classification") {
        out["uas"]["eu_classification"] = eu.clone();
    }
    Ok(Json(out).into_response())
}
