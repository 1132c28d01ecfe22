//! The operator's wire: flight requests (GeoJSON-style footprints, altitudes in metres above the
//! reference the request names, absolute or relative times) converted to domain volumes once, with every bound checked, and
//! plan outcomes with explanations built from the planner's typed conflicts.

use api::{Altitude, Circle, LatLngPoint, Polygon, Radius, Volume3D, Volume4D};
use geo4d::{TimeWindow, Timestamp};
use serde::{Deserialize, Serialize};

use crate::entities::Delivery;
use crate::error::UssError;

/// Most volumes in one request (the DSS's limit for extents).
pub const MAX_VOLUMES: usize = 100;
/// Furthest a relative time may reach, either way: ten years.
const MAX_RELATIVE_S: i64 = 10 * 366 * 24 * 3600;

/// A footprint: a GeoJSON `Polygon` (`[lng, lat]` positions, one ring, closed or not) or a
/// circle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum FootprintIn {
    Polygon { coordinates: Vec<Vec<[f64; 2]>> },
    Circle { center: [f64; 2], radius_m: f64 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorVolume {
    pub footprint: FootprintIn,
    pub altitude_lower_m: f64,
    pub altitude_upper_m: f64,
    /// RFC 3339 time, or `+N` seconds from now (`+600`, also `+10m`, `+1h`).
    pub start: String,
    pub end: String,
}

/// What an operator asks its participant to plan. Unknown fields are refused: a misspelt
/// field silently ignored would plan something else than the operator meant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlightRequest {
    /// What every volume's altitudes are measured from: `W84` or `MSL` (required; see
    /// [`crate::altitude`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude_reference: Option<String>,
    pub volumes: Vec<OperatorVolume>,
    #[serde(default)]
    pub priority: i32,
}

impl FootprintIn {
    /// `(min_lng, min_lat, max_lng, max_lat)` of the footprint (a circle's from its radius on a
    /// sphere, generously), or None when a coordinate is not a finite number.
    fn bounding_box(&self) -> Option<(f64, f64, f64, f64)> {
        let (mut x0, mut y0, mut x1, mut y1) = (f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY);
        match self {
            FootprintIn::Polygon { coordinates } => {
                for [lng, lat] in coordinates.iter().flatten() {
                    (x0, y0, x1, y1) = (x0.min(*lng), y0.min(*lat), x1.max(*lng), y1.max(*lat));
                }
            }
            FootprintIn::Circle { center: [lng, lat], radius_m } => {
                let dlat = radius_m / 110_000.0;
                let dlng = dlat / lat.to_radians().cos().abs().max(0.01);
                (x0, y0, x1, y1) = (lng - dlng, lat - dlat, lng + dlng, lat + dlat);
            }
        }
        [x0, y0, x1, y1].iter().all(|v| v.is_finite()).then_some((x0, y0, x1, y1))
    }
}

/// A flight file's relative time (`+N` seconds, `+Nm`, `+Nh`) in seconds from now; `None` when
/// `s` is not relative (an RFC 3339 time). Shared with the CLI, which moves flight files.
pub fn relative_seconds(s: &str) -> Option<Result<i64, String>> {
    let rel = s.strip_prefix('+')?;
    let (num, mult) = match rel.chars().last() {
        Some('s') => (&rel[..rel.len() - 1], 1),
        Some('m') => (&rel[..rel.len() - 1], 60),
        Some('h') => (&rel[..rel.len() - 1], 3600),
        _ => (rel, 1),
    };
    let Ok(n) = num.parse::<i64>() else {
        return Some(Err(format!("`{s}` is not +<seconds>, +<minutes>m or +<hours>h")));
    };
    Some(
        n.checked_mul(mult)
            .filter(|s| (0..=MAX_RELATIVE_S).contains(s))
            .ok_or_else(|| format!("`{s}` is out of range (at most ten years from now)")),
    )
}

fn parse_time(s: &str, field: &str, now: Timestamp) -> Result<Timestamp, UssError> {
    if let Some(seconds) = relative_seconds(s) {
        let seconds = seconds.map_err(|e| UssError::BadRequest(format!("{field}: {e}")))?;
        return Ok(now.plus_seconds(seconds));
    }
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|e| UssError::BadRequest(format!("{field}: `{s}` is not an RFC 3339 time ({e})")))?;
    Ok(Timestamp(t.timestamp_micros()))
}

fn alt(v: f64) -> Option<Altitude> {
    Some(Altitude { value: v, reference: "W84".into(), units: "M".into() })
}

impl FlightRequest {
    /// Converts to domain volumes, validating every one exactly as the DSS would.
    pub fn to_domain(&self, now: Timestamp) -> Result<Vec<geo4d::Volume4D>, UssError> {
        if self.volumes.is_empty() {
            return Err(UssError::BadRequest("volumes: at least one volume is required".into()));
        }
        if self.volumes.len() > MAX_VOLUMES {
            return Err(UssError::BadRequest(format!(
                "volumes: at most {MAX_VOLUMES} volumes are allowed, got {}",
                self.volumes.len()
            )));
        }
        let reference = match &self.altitude_reference {
            None => {
                return Err(UssError::BadRequest(format!(
                    "altitude_reference is required: {}",
                    crate::altitude::EXPLANATION
                )))
            }
            Some(text) => {
                crate::altitude::parse(text).map_err(|e| UssError::BadRequest(format!("altitude_reference: {e}")))?
            }
        };
        let mut out = Vec::new();
        for (i, v) in self.volumes.iter().enumerate() {
            let field = format!("volumes[{i}]");
            let mut volume = match &v.footprint {
                FootprintIn::Polygon { coordinates } => {
                    let ring = match coordinates.as_slice() {
                        [ring] => ring,
                        [] => return Err(UssError::BadRequest(format!("{field}.footprint: a polygon needs one ring"))),
                        _ => {
                            return Err(UssError::BadRequest(format!(
                                "{field}.footprint: polygons with holes are not supported (the standard's \
                                 polygons have one outline); give exactly one ring"
                            )))
                        }
                    };
                    let mut pts: Vec<LatLngPoint> =
                        ring.iter().map(|[lng, lat]| LatLngPoint { lat: *lat, lng: *lng }).collect();
                    if pts.len() > 1 && pts.first().map(|p| (p.lat, p.lng)) == pts.last().map(|p| (p.lat, p.lng)) {
                        pts.pop();
                    }
                    Volume3D {
                        outline_polygon: Some(Polygon { vertices: pts }),
                        outline_circle: None,
                        altitude_lower: None,
                        altitude_upper: None,
                    }
                }
                FootprintIn::Circle { center: [lng, lat], radius_m } => Volume3D {
                    outline_circle: Some(Circle {
                        center: Some(LatLngPoint { lat: *lat, lng: *lng }),
                        radius: Some(Radius { value: *radius_m, units: "M".into() }),
                    }),
                    outline_polygon: None,
                    altitude_lower: None,
                    altitude_upper: None,
                },
            };
            let (lower, upper) = match reference {
                crate::altitude::AltitudeReference::W84 => (v.altitude_lower_m, v.altitude_upper_m),
                crate::altitude::AltitudeReference::Msl => {
                    if !(v.altitude_lower_m.is_finite() && v.altitude_upper_m.is_finite()) {
                        return Err(UssError::BadRequest(format!("{field}: altitudes must be finite numbers")));
                    }
                    let bbox = v.footprint.bounding_box().ok_or_else(|| {
                        UssError::BadRequest(format!("{field}.footprint: coordinates must be finite numbers"))
                    })?;
                    crate::altitude::msl_band_to_w84(v.altitude_lower_m, v.altitude_upper_m, bbox)
                }
            };
            volume.altitude_lower = alt(lower);
            volume.altitude_upper = alt(upper);
            let start = parse_time(&v.start, &format!("{field}.start"), now)?;
            let end = parse_time(&v.end, &format!("{field}.end"), now)?;
            if end <= start {
                return Err(UssError::BadRequest(format!("{field}: end must be after start")));
            }
            let wire =
                Volume4D { volume, time_start: Some(api::time_to_wire(start)), time_end: Some(api::time_to_wire(end)) };
            out.push(api::volume_from_wire(&wire, &field).map_err(|e| UssError::BadRequest(e.message))?);
        }
        Ok(out)
    }
}

/// One overlap between a volume of the operator's plan and another operation or constraint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConflictItem {
    /// `operational_intent`, `constraint`, or `unverifiable` (its details could not be
    /// obtained or verified).
    pub kind: String,
    pub id: String,
    pub manager: String,
    pub priority: Option<i32>,
    pub state: Option<String>,
    pub my_volume: usize,
    pub their_volume: Option<usize>,
    pub overlap_start: String,
    pub overlap_end: String,
    pub overlap_altitude_m: Option<[f64; 2]>,
    pub reason: String,
}

fn time_text(t: Option<Timestamp>) -> String {
    t.map(|t| api::time_to_wire(t).value).unwrap_or_default()
}

impl ConflictItem {
    pub fn from_planner(c: &planner::Conflict, my_priority: i32) -> Self {
        use planner::Blocker;
        let (kind, priority, state, their_volume, reason) = match &c.blocker {
            Blocker::Intent { manager, priority, state, their_volume, .. } => (
                "operational_intent",
                Some(*priority),
                Some(state.as_str().to_owned()),
                Some(*their_volume),
                format!(
                    "intersects volume {their_volume} of {manager}'s operation (priority {priority} >= {my_priority})"
                ),
            ),
            Blocker::Constraint { manager, their_volume, .. } => (
                "constraint",
                None,
                None,
                Some(*their_volume),
                format!("enters a restricted zone published by {manager}"),
            ),
            Blocker::Unverifiable { kind, state, reason, .. } => (
                "unverifiable",
                None,
                state
                    .map(|s| s.as_str().to_owned())
                    .or_else(|| (*kind == planner::EntryKind::Constraint).then(|| "Constraint".to_owned())),
                None,
                format!("cannot be verified, so its airspace is not free during its time window: {reason}"),
            ),
        };
        let window: TimeWindow = c.overlap_time;
        ConflictItem {
            kind: kind.into(),
            id: c.blocker.id().to_owned(),
            manager: c.blocker.manager().to_owned(),
            priority,
            state,
            my_volume: c.my_volume,
            their_volume,
            overlap_start: time_text(window.start()),
            overlap_end: time_text(window.end()),
            overlap_altitude_m: c.overlap_altitude.and_then(|b| Some([b.lower_m()?, b.upper_m()?])),
            reason,
        }
    }
}

/// A change to the plan that clears every conflict, re-checked against the DSS before it is
/// offered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Proposal {
    /// Delay every volume by this many seconds.
    pub shift_start_s: Option<i64>,
    /// Or keep the times and move every volume by this many metres of altitude.
    pub altitude_offset_m: Option<f64>,
    /// The resulting band of the first volume, for display.
    pub altitude_band_m: Option<[f64; 2]>,
    pub search_horizon_s: i64,
}

impl Proposal {
    pub fn from_planner(p: &planner::Proposal, horizon_s: i64) -> Self {
        match p.change {
            planner::Change::ShiftStart { seconds } => {
                Proposal { shift_start_s: Some(seconds), search_horizon_s: horizon_s, ..Default::default() }
            }
            planner::Change::AltitudeOffset { metres } => Proposal {
                altitude_offset_m: Some(metres),
                altitude_band_m: p.volumes.first().and_then(|v| Some([v.altitude.lower_m()?, v.altitude.upper_m()?])),
                search_horizon_s: horizon_s,
                ..Default::default()
            },
        }
    }
}

/// What became of an operator's request (failures are errors with a status and a message).
/// The map's JavaScript mirrors these names once (`OUTCOME` in `view.js`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The change was made (a plan, a new state, an end).
    #[default]
    Planned,
    /// The plan conflicts: nothing was written; the conflicts and a proposal say why.
    Refused,
    /// A constraint was published.
    Published,
    /// A constraint was lifted.
    Ended,
    /// Subscriptions were made.
    Subscribed,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlanOutcome {
    pub outcome: Outcome,
    pub message: String,
    pub operational_intent_id: Option<String>,
    pub state: Option<String>,
    pub version: Option<i32>,
    pub ovn: Option<String>,
    pub notified: Vec<Delivery>,
    pub conflicts: Vec<ConflictItem>,
    pub proposal: Option<Proposal>,
    /// Attempts made against the DSS (more than one when the airspace changed meanwhile).
    pub attempts: usize,
}

/// A constraint published or lifted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConstraintOutcome {
    pub outcome: Outcome,
    pub constraint_id: String,
    pub notified: Vec<Delivery>,
}

/// Subscriptions made over the operator's areas of interest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionOutcome {
    pub outcome: Outcome,
    pub subscription_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: serde_json::Value) -> FlightRequest {
        serde_json::from_value(v).expect("flight request")
    }

    fn circle(start: &str, end: &str) -> serde_json::Value {
        serde_json::json!({"footprint": {"type": "Circle", "center": [8.0, 47.0], "radius_m": 100},
            "altitude_lower_m": 0, "altitude_upper_m": 100, "start": start, "end": end})
    }

    #[test]
    fn out_of_range_times_holes_and_too_many_volumes_are_bad_requests() {
        let now = Timestamp(1_800_000_000_000_000);
        let cases = [
            (
                serde_json::json!({"altitude_reference": "W84", "volumes": [circle("+60", "+99999999999h")]}),
                "out of range",
            ),
            (
                serde_json::json!({"altitude_reference": "W84", "volumes": [circle("+60", "+9223372036854775807")]}),
                "out of range",
            ),
            (serde_json::json!({"altitude_reference": "W84", "volumes": [circle("+600", "+60")]}), "after start"),
            (
                serde_json::json!({"altitude_reference": "W84", "volumes": [{"footprint": {"type": "Polygon", "coordinates": [
                    [[8.0, 47.0], [8.01, 47.0], [8.01, 47.01], [8.0, 47.0]],
                    [[8.002, 47.002], [8.003, 47.002], [8.003, 47.003], [8.002, 47.002]]]},
                    "altitude_lower_m": 0, "altitude_upper_m": 100, "start": "+60", "end": "+600"}]}),
                "holes",
            ),
            (
                serde_json::json!({"altitude_reference": "W84", "volumes": vec![circle("+60", "+600"); 101]}),
                "at most 100",
            ),
        ];
        for (body, needle) in cases {
            match req(body.clone()).to_domain(now) {
                Err(UssError::BadRequest(m)) => assert!(m.contains(needle), "`{m}` lacks `{needle}`"),
                other => panic!("{body} gave {other:?}"),
            }
        }
        let ok = req(serde_json::json!({"altitude_reference": "W84", "volumes": [circle("+1h", "+2h")]}))
            .to_domain(now)
            .expect("valid");
        assert_eq!(ok[0].time.start(), Some(now.plus_seconds(3600)));
    }

    #[test]
    fn altitudes_name_their_reference_and_msl_is_converted_with_the_geoid() {
        let now = Timestamp(1_000_000_000_000);
        let volume = serde_json::json!({"footprint": {"type": "Circle", "center": [8.0, 47.0], "radius_m": 300},
            "altitude_lower_m": 0, "altitude_upper_m": 120, "start": "+60", "end": "+600"});
        let refused = |body: serde_json::Value| match serde_json::from_value::<FlightRequest>(body.clone()) {
            Err(e) => e.to_string(),
            Ok(r) => match r.to_domain(now) {
                Err(UssError::BadRequest(m)) => m,
                other => panic!("{body} gave {other:?}"),
            },
        };
        let m = refused(serde_json::json!({"volumes": [volume]}));
        assert!(m.contains("altitude_reference is required") && m.contains("MSL") && m.contains("W84"), "{m}");
        let m = refused(serde_json::json!({"altitude_reference": "AGL", "volumes": [volume]}));
        assert!(m.contains("terrain data"), "{m}");
        // Misspelt fields are refused, not ignored.
        let m = refused(serde_json::json!({"altitude_reference": "W84", "volumes": [volume], "priorty": 3}));
        assert!(m.contains("unknown field `priorty`"), "{m}");
        let mut misspelt = volume.clone();
        misspelt["altitude_uper_m"] = serde_json::json!(100);
        let m = refused(serde_json::json!({"altitude_reference": "W84", "volumes": [misspelt]}));
        assert!(m.contains("unknown field `altitude_uper_m`"), "{m}");

        let band = |reference: &str| {
            let r = req(serde_json::json!({"altitude_reference": reference, "volumes": [volume]}));
            let v = r.to_domain(now).expect("valid");
            (v[0].altitude.lower_m().expect("lower"), v[0].altitude.upper_m().expect("upper"))
        };
        assert_eq!(band("W84"), (0.0, 120.0));
        // 0-120 m above sea level at 47 N 8 E is about 48-168 m above the ellipsoid.
        let n = crate::altitude::geoid_height_m(47.0, 8.0);
        let (lo, hi) = band("MSL");
        assert!(lo <= n && lo > n - 1.0 && hi >= 120.0 + n && hi < 121.0 + n, "{lo}-{hi} around {n}");
    }

    #[test]
    fn the_map_names_every_outcome_as_serialized() {
        // The map's JavaScript mirrors `Outcome` once, in `OUTCOME` of view.js: each variant's
        // wire name must be there, and nothing else.
        let js = include_str!("../../map/web/src/view.js");
        let start = js.find("export const OUTCOME = Object.freeze({").expect("OUTCOME in view.js");
        let block = &js[start..start + js[start..].find("});").expect("end of OUTCOME")];
        let mut in_js: Vec<String> = block.split('\'').skip(1).step_by(2).map(str::to_owned).collect();
        // A new variant breaks this match, and so is added to the list below.
        match Outcome::default() {
            Outcome::Planned | Outcome::Refused | Outcome::Published | Outcome::Ended | Outcome::Subscribed => {}
        }
        let mut in_rust: Vec<String> =
            [Outcome::Planned, Outcome::Refused, Outcome::Published, Outcome::Ended, Outcome::Subscribed]
                .iter()
                .map(|o| serde_json::to_value(o).expect("serializes").as_str().expect("a string").to_owned())
                .collect();
        in_js.sort();
        in_rust.sort();
        assert_eq!(in_js, in_rust);
    }
}
