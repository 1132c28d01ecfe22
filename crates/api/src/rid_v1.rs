//! ASTM F3411-19 (network Remote ID, API 1.0) wire types of the DSS endpoints, with field names
//! verbatim from `rid/f3411_19/canonical.yaml`, and their conversion to and from the same Remote
//! ID domain as F3411-22a's. Its volume has a shape of its own (`spatial_volume.footprint`,
//! `altitude_lo`/`altitude_hi`, times as plain RFC 3339 strings).

use geo4d::{AltitudeBand, Footprint, LatLng, Polygon, TimeWindow, Timestamp};
use model::rid::{Isa, RidSubscription};
use serde::{Deserialize, Serialize};

use crate::convert::time_from_wire;
use crate::out::chrono_rfc3339;
use crate::wire::{LatLngPoint, Time};
use crate::{RidSubscriberToNotify, WireError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeoPolygonV1 {
    pub vertices: Vec<LatLngPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume3DV1 {
    pub footprint: Option<GeoPolygonV1>,
    #[serde(default)]
    pub altitude_lo: Option<f64>,
    #[serde(default)]
    pub altitude_hi: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume4DV1 {
    pub spatial_volume: Option<Volume3DV1>,
    #[serde(default)]
    pub time_start: Option<String>,
    #[serde(default)]
    pub time_end: Option<String>,
}

/// `CreateIdentificationServiceAreaParameters` / `UpdateIdentificationServiceAreaParameters`.
#[derive(Debug, Clone, Deserialize)]
pub struct IsaParametersV1 {
    pub extents: Volume4DV1,
    pub flights_url: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SubscriptionCallbacksV1 {
    #[serde(default)]
    pub identification_service_area_url: Option<String>,
}

/// `CreateSubscriptionParameters` / `UpdateSubscriptionParameters`.
#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionParametersV1 {
    pub extents: Volume4DV1,
    pub callbacks: SubscriptionCallbacksV1,
}

/// `IdentificationServiceArea` of F3411-19.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsaV1 {
    pub id: String,
    pub owner: String,
    pub flights_url: String,
    pub version: String,
    pub time_start: String,
    pub time_end: String,
}

/// `Subscription` of F3411-19.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionV1 {
    pub id: String,
    pub owner: String,
    pub callbacks: SubscriptionCallbacksV1,
    pub notification_index: i32,
    pub version: String,
    pub time_start: String,
    pub time_end: String,
}

/// `PutIdentificationServiceAreaResponse` and `DeleteIdentificationServiceAreaResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsaChangeResponseV1 {
    pub service_area: IsaV1,
    pub subscribers: Vec<RidSubscriberToNotify>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetIsaResponseV1 {
    pub service_area: IsaV1,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchIsasResponseV1 {
    pub service_areas: Vec<IsaV1>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutSubscriptionResponseV1 {
    pub subscription: SubscriptionV1,
    pub service_areas: Vec<IsaV1>,
}

/// `GetSubscriptionResponse` and `DeleteSubscriptionResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionResponseV1 {
    pub subscription: SubscriptionV1,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchSubscriptionsResponseV1 {
    pub subscriptions: Vec<SubscriptionV1>,
}

fn time_v1(text: &Option<String>, field: &str) -> Result<Option<Timestamp>, WireError> {
    text.as_ref().map(|t| time_from_wire(&Time { value: t.clone(), format: "RFC3339".into() }, field)).transpose()
}

/// A written F3411-19 volume: a polygon footprint, optional altitudes and times.
pub fn volume_from_v1(v: &Volume4DV1) -> Result<geo4d::Volume4D, WireError> {
    let spatial = v.spatial_volume.as_ref().ok_or_else(|| WireError::bad("extents.spatial_volume is required"))?;
    let footprint =
        spatial.footprint.as_ref().ok_or_else(|| WireError::bad("extents.spatial_volume.footprint is required"))?;
    let vertices = footprint
        .vertices
        .iter()
        .enumerate()
        .map(|(i, p)| {
            LatLng::new(p.lat, p.lng)
                .map_err(|e| WireError::at(&format!("extents.spatial_volume.footprint.vertices[{i}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Too large to write is a 400, as in F3411-22a (`rid_volume_from_wire`).
    let polygon =
        Polygon::new(vertices).map_err(|e| WireError::at("extents.spatial_volume.footprint", e).as_bad_request())?;
    let altitude = AltitudeBand::new(spatial.altitude_lo, spatial.altitude_hi)
        .map_err(|e| WireError::at("extents.spatial_volume", e))?;
    let start = time_v1(&v.time_start, "extents.time_start")?;
    let end = time_v1(&v.time_end, "extents.time_end")?;
    let time = TimeWindow::new(start, end).map_err(|e| WireError::at("extents", e))?;
    Ok(geo4d::Volume4D { footprint: Footprint::Polygon(polygon), altitude, time })
}

fn window_v1(v: &geo4d::Volume4D) -> (String, String) {
    let text = |t: Option<Timestamp>, default| chrono_rfc3339(t.unwrap_or(default));
    (text(v.time.start(), Timestamp::MIN), text(v.time.end(), Timestamp::MAX))
}

pub fn isa_to_v1(isa: &Isa) -> IsaV1 {
    let (time_start, time_end) = window_v1(&isa.extents);
    IsaV1 {
        id: isa.id.to_string(),
        owner: isa.manager.clone(),
        flights_url: isa.url.clone(),
        version: model::rid::version_text(isa.version),
        time_start,
        time_end,
    }
}

pub fn rid_subscription_to_v1(s: &RidSubscription) -> SubscriptionV1 {
    let (time_start, time_end) = window_v1(&s.extents);
    SubscriptionV1 {
        id: s.id.to_string(),
        owner: s.manager.clone(),
        callbacks: SubscriptionCallbacksV1 { identification_service_area_url: Some(s.url.clone()) },
        notification_index: s.notification_index,
        version: model::rid::version_text(s.version),
        time_start,
        time_end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_f3411_19_volume_reads_with_its_field_names_or_names_what_is_wrong() {
        let v: Volume4DV1 = serde_json::from_value(serde_json::json!({
            "spatial_volume": {
                "footprint": {"vertices": [{"lat": 47.0, "lng": 8.0}, {"lat": 47.0, "lng": 8.01}, {"lat": 47.01, "lng": 8.01}]},
                "altitude_lo": 0.0, "altitude_hi": 120.0
            },
            "time_end": "2030-01-01T00:00:00Z"
        }))
        .expect("parses");
        let vol = volume_from_v1(&v).expect("valid");
        assert_eq!((vol.altitude.lower_m(), vol.altitude.upper_m()), (Some(0.0), Some(120.0)));
        assert_eq!(vol.time.start(), None, "the DSS completes an omitted start");
        let no_footprint: Volume4DV1 =
            serde_json::from_value(serde_json::json!({"spatial_volume": {}})).expect("parses");
        assert!(volume_from_v1(&no_footprint).expect_err("refused").message.contains("footprint is required"));
        let bad_time = Volume4DV1 { time_end: Some("tomorrow".into()), ..v };
        assert!(volume_from_v1(&bad_time).expect_err("refused").message.contains("extents.time_end"));
    }
}
