//! The operator's view: flight requests (GeoJSON-style footprints, altitudes in metres WGS84,
//! absolute or relative times) and plan outcomes with explanations.

use api::{Altitude, Circle, LatLngPoint, Polygon, Radius, Volume3D, Volume4D};
use serde::{Deserialize, Serialize};

use crate::state::Delivery;

/// A footprint: a GeoJSON `Polygon` (`[lng, lat]` positions, ring closed or not) or a circle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum FootprintIn {
    Polygon { coordinates: Vec<Vec<[f64; 2]>> },
    Circle { center: [f64; 2], radius_m: f64 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorVolume {
    pub footprint: FootprintIn,
    pub altitude_lower_m: f64,
    pub altitude_upper_m: f64,
    /// RFC 3339 time, or `+N` seconds from now (`+600`, also `+10m`, `+1h`).
    pub start: String,
    pub end: String,
}

/// What an operator asks its participant to plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlightRequest {
    pub volumes: Vec<OperatorVolume>,
    #[serde(default)]
    pub priority: i32,
}

fn parse_time(s: &str, field: &str) -> Result<api::Time, String> {
    if let Some(rel) = s.strip_prefix('+') {
        let (num, mult) = match rel.chars().last() {
            Some('s') => (&rel[..rel.len() - 1], 1),
            Some('m') => (&rel[..rel.len() - 1], 60),
            Some('h') => (&rel[..rel.len() - 1], 3600),
            _ => (rel, 1),
        };
        let n: i64 = num.parse().map_err(|_| format!("{field}: `{s}` is not +<seconds>, +<minutes>m or +<hours>h"))?;
        let t = chrono::Utc::now() + chrono::Duration::seconds(n * mult);
        return Ok(api::time_to_wire(geo4d::Timestamp(t.timestamp_micros())));
    }
    chrono::DateTime::parse_from_rfc3339(s).map_err(|e| format!("{field}: `{s}` is not an RFC 3339 time ({e})"))?;
    Ok(api::Time { value: s.to_owned(), format: "RFC3339".into() })
}

fn alt(v: f64) -> Option<Altitude> {
    Some(Altitude { value: v, reference: "W84".into(), units: "M".into() })
}

impl FlightRequest {
    /// Converts to standard volumes, validating every one exactly as the DSS would.
    pub fn to_wire(&self) -> Result<Vec<Volume4D>, String> {
        if self.volumes.is_empty() {
            return Err("volumes: at least one volume is required".into());
        }
        let mut out = Vec::new();
        for (i, v) in self.volumes.iter().enumerate() {
            let field = format!("volumes[{i}]");
            let mut volume = match &v.footprint {
                FootprintIn::Polygon { coordinates } => {
                    let ring =
                        coordinates.first().ok_or_else(|| format!("{field}.footprint: a polygon needs one ring"))?;
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
            volume.altitude_lower = alt(v.altitude_lower_m);
            volume.altitude_upper = alt(v.altitude_upper_m);
            let wire = Volume4D {
                volume,
                time_start: Some(parse_time(&v.start, &format!("{field}.start"))?),
                time_end: Some(parse_time(&v.end, &format!("{field}.end"))?),
            };
            api::volume_from_wire(&wire, &field).map_err(|e| e.message)?;
            out.push(wire);
        }
        Ok(out)
    }
}

/// One overlap between a volume of the operator's plan and another operation or constraint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConflictItem {
    /// `operational_intent`, `constraint`, or `unverifiable` (the owner did not answer).
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlanOutcome {
    /// `planned`, `refused` or `failed`.
    pub outcome: String,
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
