//! ASTM F3411-22a USS-to-USS bodies (`/uss/flights`, `/uss/flights/{id}/details`,
//! `/uss/identification_service_areas/{id}`), field names verbatim from
//! `rid/f3411_22a/canonical.yaml`. Served by a service provider, read by a display provider:
//! every field a peer may omit has its default, and unknown fields are ignored as the API says.

use serde::{Deserialize, Serialize};

use crate::rid_v2::IdentificationServiceArea;
use crate::wire::{SubscriptionState, Time, Volume4D};

/// `GetFlightsResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetFlightsResponse {
    pub timestamp: Time,
    #[serde(default)]
    pub flights: Vec<RidFlight>,
    #[serde(default)]
    pub no_isas_present: bool,
}

/// `RIDFlight`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RidFlight {
    pub id: String,
    pub aircraft_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_state: Option<RidAircraftState>,
    #[serde(default)]
    pub simulated: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_positions: Vec<RidRecentAircraftPosition>,
}

/// `RIDAircraftState`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RidAircraftState {
    pub timestamp: Time,
    #[serde(default)]
    pub timestamp_accuracy: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operational_status: Option<String>,
    pub position: RidAircraftPosition,
    /// Degrees clockwise from true north; 361 is unknown.
    #[serde(default = "unknown_track")]
    pub track: f64,
    /// Ground speed, m/s; 255 is unknown.
    #[serde(default = "unknown_speed")]
    pub speed: f64,
    pub speed_accuracy: String,
    #[serde(default = "unknown_vertical_speed")]
    pub vertical_speed: f64,
}

fn unknown_track() -> f64 {
    361.0
}

fn unknown_speed() -> f64 {
    255.0
}

fn unknown_vertical_speed() -> f64 {
    63.0
}

fn unknown_altitude() -> f64 {
    -1000.0
}

/// `RIDAircraftPosition`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RidAircraftPosition {
    pub lat: f64,
    pub lng: f64,
    /// Metres above the WGS84 ellipsoid; -1000 is unknown.
    #[serde(default = "unknown_altitude")]
    pub alt: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_h: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_v: Option<String>,
    #[serde(default)]
    pub extrapolated: bool,
}

/// `RIDRecentAircraftPosition`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RidRecentAircraftPosition {
    pub time: Time,
    pub position: RidAircraftPosition,
}

/// `GetFlightDetailsResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetFlightDetailsResponse {
    pub details: RidFlightDetails,
}

/// `RIDFlightDetails`: what this service provider discloses (no registration or operator data
/// is held for a flight unless its operator gave it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RidFlightDetails {
    pub id: String,
    #[serde(default)]
    pub operator_id: String,
    #[serde(default)]
    pub operation_description: String,
}

/// `PutIdentificationServiceAreaNotificationParameters`: an ISA changed (or, without
/// `service_area`, was deleted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutIsaNotificationParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_area: Option<IdentificationServiceArea>,
    pub subscriptions: Vec<SubscriptionState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extents: Option<Volume4D>,
}

/// The smallest F3411 `HorizontalAccuracy` bounding `metres` (the same NACp categories as
/// F3548's, which `accuracy_h_category` gives).
pub fn rid_speed_accuracy(known: bool) -> &'static str {
    if known {
        "SA3mps"
    } else {
        "SAUnknown"
    }
}
