//! USS-to-USS bodies of `utm.yaml` (`/uss/v1/...`). Field names are the spec's.

use serde::{Deserialize, Serialize};

use crate::wire::{ConstraintReference, OperationalIntentReference, SubscriptionState, Volume4D};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct OperationalIntentDetails {
    #[serde(default)]
    pub volumes: Vec<Volume4D>,
    #[serde(default)]
    pub off_nominal_volumes: Vec<Volume4D>,
    #[serde(default)]
    pub priority: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperationalIntent {
    pub reference: OperationalIntentReference,
    pub details: OperationalIntentDetails,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetOperationalIntentDetailsResponse {
    pub operational_intent: OperationalIntent,
}

/// A field that may be omitted (it means something: a notification without the entity is a
/// deletion, per `utm.yaml`) but may not be `null`: a `null` is a 400, never read as "absent".
fn present_not_null<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutOperationalIntentDetailsParameters {
    pub operational_intent_id: String,
    #[serde(default, deserialize_with = "present_not_null", skip_serializing_if = "Option::is_none")]
    pub operational_intent: Option<OperationalIntent>,
    pub subscriptions: Vec<SubscriptionState>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ConstraintDetails {
    #[serde(default)]
    pub volumes: Vec<Volume4D>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub constraint_type: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Constraint {
    pub reference: ConstraintReference,
    pub details: ConstraintDetails,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetConstraintDetailsResponse {
    pub constraint: Constraint,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutConstraintDetailsParameters {
    pub constraint_id: String,
    #[serde(default, deserialize_with = "present_not_null", skip_serializing_if = "Option::is_none")]
    pub constraint: Option<Constraint>,
    pub subscriptions: Vec<SubscriptionState>,
}

/// `GET /uss/v1/operational_intents/{id}/telemetry`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetOperationalIntentTelemetryResponse {
    pub operational_intent_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<VehicleTelemetry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_telemetry_opportunity: Option<crate::wire::Time>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VehicleTelemetry {
    pub time_measured: crate::wire::Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<TelemetryPosition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub velocity: Option<Velocity>,
}

/// `utm.yaml`'s `Position` (of a vehicle; not a volume's point).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelemetryPosition {
    pub longitude: f64,
    pub latitude: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_h: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_v: Option<String>,
    #[serde(default)]
    pub extrapolated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude: Option<crate::wire::Altitude>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Velocity {
    pub speed: f64,
    pub units_speed: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<f64>,
}

/// The smallest `PositionAccuracyHorizontal` category (ADS-B NACp, plus 1 m) that bounds an
/// error of `metres`.
pub fn accuracy_h_category(metres: f64) -> &'static str {
    const NM: f64 = 1852.0;
    let table: [(f64, &str); 13] = [
        (1.0, "HA1m"),
        (3.0, "HA3m"),
        (10.0, "HA10m"),
        (30.0, "HA30m"),
        (0.05 * NM, "HA005NM"),
        (0.1 * NM, "HA01NM"),
        (0.3 * NM, "HA03NM"),
        (0.5 * NM, "HA05NM"),
        (NM, "HA1NM"),
        (2.0 * NM, "HA2NM"),
        (4.0 * NM, "HA4NM"),
        (10.0 * NM, "HA10NM"),
        (f64::INFINITY, "HA10NMPlus"),
    ];
    if !metres.is_finite() || metres < 0.0 {
        return "HAUnknown";
    }
    table.iter().find(|(bound, _)| metres <= *bound).map_or("HAUnknown", |(_, c)| c)
}

/// The smallest `PositionAccuracyVertical` category (ADS-B GVA, plus finer UAS values) that
/// bounds an error of `metres`.
pub fn accuracy_v_category(metres: f64) -> &'static str {
    let table: [(f64, &str); 7] = [
        (1.0, "VA1m"),
        (3.0, "VA3m"),
        (10.0, "VA10m"),
        (25.0, "VA25m"),
        (45.0, "VA45m"),
        (150.0, "VA150m"),
        (f64::INFINITY, "VA150mPlus"),
    ];
    if !metres.is_finite() || metres < 0.0 {
        return "VAUnknown";
    }
    table.iter().find(|(bound, _)| metres <= *bound).map_or("VAUnknown", |(_, c)| c)
}

/// The error bound in metres a `PositionAccuracyHorizontal` category stands for (`None` for
/// an unknown one: the caller must assume the worst).
pub fn accuracy_h_metres(category: &str) -> Option<f64> {
    const NM: f64 = 1852.0;
    Some(match category {
        "HA1m" => 1.0,
        "HA3m" => 3.0,
        "HA10m" => 10.0,
        "HA30m" => 30.0,
        "HA005NM" => 0.05 * NM,
        "HA01NM" => 0.1 * NM,
        "HA03NM" => 0.3 * NM,
        "HA05NM" => 0.5 * NM,
        "HA1NM" => NM,
        "HA2NM" => 2.0 * NM,
        "HA4NM" => 4.0 * NM,
        "HA10NM" => 10.0 * NM,
        _ => return None,
    })
}

/// The error bound in metres a `PositionAccuracyVertical` category stands for (`None` for an
/// unknown one).
pub fn accuracy_v_metres(category: &str) -> Option<f64> {
    Some(match category {
        "VA1m" => 1.0,
        "VA3m" => 3.0,
        "VA10m" => 10.0,
        "VA25m" => 25.0,
        "VA45m" => 45.0,
        "VA150m" => 150.0,
        _ => return None,
    })
}
