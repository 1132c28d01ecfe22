//! ASTM F3411-22a (network Remote ID, API 2.1) wire types of the DSS endpoints, with field names
//! verbatim from `rid/f3411_22a/canonical.yaml`, and their conversion to and from the DSS's
//! Remote ID domain (`model::rid`, `dss::rid`'s requests). Its `Volume4D` is F3548's, so the
//! same conversion (and the same errors naming the field) serves both.

use geo4d::{Footprint, LatLng, Polygon};
use model::rid::{Isa, RidSubscription};
use serde::{Deserialize, Serialize};

use crate::convert::{time_to_wire, volume_from_wire};
use crate::wire::{SubscriptionState, Time, Volume4D};
use crate::WireError;

/// `CreateIdentificationServiceAreaParameters` and `UpdateIdentificationServiceAreaParameters`
/// (the same fields), and `CreateSubscriptionParameters` / `UpdateSubscriptionParameters`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RidPutParameters {
    pub extents: Volume4D,
    pub uss_base_url: String,
}

/// `IdentificationServiceArea`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentificationServiceArea {
    pub id: String,
    pub owner: String,
    pub uss_base_url: String,
    pub version: String,
    pub time_start: Time,
    pub time_end: Time,
}

/// `SubscriberToNotify` of F3411 (`url`, where F3548 says `uss_base_url`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RidSubscriberToNotify {
    pub subscriptions: Vec<SubscriptionState>,
    pub url: String,
}

/// `PutIdentificationServiceAreaResponse` and `DeleteIdentificationServiceAreaResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsaChangeResponse {
    pub service_area: IdentificationServiceArea,
    pub subscribers: Vec<RidSubscriberToNotify>,
}

/// `GetIdentificationServiceAreaResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetIsaResponse {
    pub service_area: IdentificationServiceArea,
}

/// `SearchIdentificationServiceAreasResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchIsasResponse {
    pub service_areas: Vec<IdentificationServiceArea>,
}

/// `Subscription` of F3411-22a.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RidSubscriptionWire {
    pub id: String,
    pub owner: String,
    pub uss_base_url: String,
    pub notification_index: i32,
    pub version: String,
    pub time_start: Time,
    pub time_end: Time,
}

/// `PutSubscriptionResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutRidSubscriptionResponse {
    pub subscription: RidSubscriptionWire,
    pub service_areas: Vec<IdentificationServiceArea>,
}

/// `GetSubscriptionResponse` and `DeleteSubscriptionResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RidSubscriptionResponse {
    pub subscription: RidSubscriptionWire,
}

/// `SearchSubscriptionsResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchRidSubscriptionsResponse {
    pub subscriptions: Vec<RidSubscriptionWire>,
}

/// A written ISA's or subscription's volume: one `Volume4D`, times optional (the DSS completes
/// them). An area too large to write is a 400 here, not a 413: the reference DSS refuses such
/// extents as invalid (`SetExtents` fails, "Invalid extents", 400), and the qualifier's ISA
/// validation expects 400; only a too-large *search* is a 413.
pub fn rid_volume_from_wire(v: &Volume4D) -> Result<geo4d::Volume4D, WireError> {
    volume_from_wire(v, "extents").map_err(WireError::as_bad_request)
}

/// `GeoPolygonString`: `lat1,lng1,lat2,lng2,...`, at least three points, no repeated closing
/// point needed (a repeated one is dropped).
pub fn polygon_string(area: &str) -> Result<Footprint, WireError> {
    let numbers = area
        .split(',')
        .map(|n| n.trim().parse::<f64>().map_err(|_| WireError::bad(format!("area: `{}` is not a number", n.trim()))))
        .collect::<Result<Vec<_>, _>>()?;
    if numbers.len() % 2 != 0 {
        return Err(WireError::bad("area: an odd count of numbers; give latitude,longitude pairs"));
    }
    let mut points = numbers
        .chunks(2)
        .enumerate()
        .map(|(i, p)| LatLng::new(p[0], p[1]).map_err(|e| WireError::at(&format!("area point {i}"), e)))
        .collect::<Result<Vec<_>, _>>()?;
    if points.len() > 3 && points.first() == points.last() {
        points.pop();
    }
    Ok(Footprint::Polygon(Polygon::new(points).map_err(|e| WireError::at("area", e))?))
}

fn window_to_wire(v: &geo4d::Volume4D) -> (Time, Time) {
    // The DSS stores both ends of every Remote ID window.
    let start = v.time.start().map(time_to_wire).unwrap_or_else(|| time_to_wire(geo4d::Timestamp::MIN));
    let end = v.time.end().map(time_to_wire).unwrap_or_else(|| time_to_wire(geo4d::Timestamp::MAX));
    (start, end)
}

pub fn isa_to_wire(isa: &Isa) -> IdentificationServiceArea {
    let (time_start, time_end) = window_to_wire(&isa.extents);
    IdentificationServiceArea {
        id: isa.id.to_string(),
        owner: isa.manager.clone(),
        uss_base_url: isa.url.clone(),
        version: model::rid::version_text(isa.version),
        time_start,
        time_end,
    }
}

pub fn rid_subscription_to_wire(s: &RidSubscription) -> RidSubscriptionWire {
    let (time_start, time_end) = window_to_wire(&s.extents);
    RidSubscriptionWire {
        id: s.id.to_string(),
        owner: s.manager.clone(),
        uss_base_url: s.url.clone(),
        notification_index: s.notification_index,
        version: model::rid::version_text(s.version),
        time_start,
        time_end,
    }
}

/// Subscribers as the DSS chose them: each URL with its subscriptions and their new indexes.
pub fn rid_subscribers_to_wire<'a>(
    subscribers: impl IntoIterator<Item = (&'a str, &'a [(uuid::Uuid, i32)])>,
) -> Vec<RidSubscriberToNotify> {
    subscribers
        .into_iter()
        .map(|(url, subs)| RidSubscriberToNotify {
            url: url.to_owned(),
            subscriptions: subs
                .iter()
                .map(|(id, index)| SubscriptionState { subscription_id: id.to_string(), notification_index: *index })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygon_strings_read_as_points_or_say_what_is_wrong() {
        let Footprint::Polygon(p) = polygon_string("47.0,8.0, 47.0,8.01,47.01,8.01").expect("a triangle") else {
            panic!("a polygon")
        };
        assert_eq!(p.vertices().len(), 3);
        let closed = polygon_string("47.0,8.0,47.0,8.01,47.01,8.01,47.0,8.0").expect("closed");
        assert!(matches!(closed, Footprint::Polygon(ref p) if p.vertices().len() == 3));
        for (bad, says) in [
            ("47.0,8.0,47.0", "odd"),
            ("47.0,8.0,47.0,x,47.01,8.01", "`x` is not a number"),
            ("47.0,8.0,47.0,8.01", "at least 3"),
            ("95.0,8.0,47.0,8.01,47.01,8.01", "latitude"),
        ] {
            let e = polygon_string(bad).expect_err(bad);
            assert!(e.message.contains(says), "{bad}: {}", e.message);
            assert!(!e.too_large);
        }
        // A country-sized area is too large (413), not malformed.
        let e = polygon_string("40.0,0.0,40.0,10.0,50.0,10.0,50.0,0.0").expect_err("too large");
        assert!(e.too_large, "{}", e.message);
    }
}
