//! Wire <-> domain conversion.

use chrono::{DateTime, Utc};
use geo4d::{AltitudeBand, Footprint, LatLng, TimeWindow, Timestamp};
use model::{
    ConstraintView, ImplicitSubscriptionRequest, IntentView, PutIntentRequest, PutSubscriptionRequest, SubscriptionView,
};
use model::{OperationalIntentState, SubscriberToNotify as DomainSubscriber};

use crate::wire;
use crate::WireError;

/// The id the reference DSS reports for an intent that has no subscription.
pub const NULL_SUBSCRIPTION_ID: &str = "00000000-0000-4000-8000-000000000000";

pub fn time_from_wire(t: &wire::Time, field: &str) -> Result<Timestamp, WireError> {
    if t.format != "RFC3339" {
        return Err(WireError::bad(format!("{field}.format must be \"RFC3339\", got \"{}\"", t.format)));
    }
    let parsed = DateTime::parse_from_rfc3339(&t.value).map_err(|e| {
        WireError::bad(format!(
            "{field}.value `{}` is not an RFC 3339 time such as 2024-01-01T12:00:00Z ({e})",
            t.value
        ))
    })?;
    Ok(Timestamp(parsed.with_timezone(&Utc).timestamp_micros()))
}

pub fn time_to_wire(t: Timestamp) -> wire::Time {
    wire::Time { value: crate::out::chrono_rfc3339(t), format: "RFC3339".into() }
}

fn altitude(a: &Option<wire::Altitude>, field: &str) -> Result<Option<f64>, WireError> {
    let Some(a) = a else { return Ok(None) };
    if a.reference != "W84" {
        return Err(WireError::bad(format!("{field}.reference must be \"W84\", got \"{}\"", a.reference)));
    }
    if a.units != "M" {
        return Err(WireError::bad(format!("{field}.units must be \"M\", got \"{}\"", a.units)));
    }
    Ok(Some(a.value))
}

fn point(p: &wire::LatLngPoint, field: &str) -> Result<LatLng, WireError> {
    LatLng::new(p.lat, p.lng).map_err(|e| WireError::at(field, e))
}

/// Converts one wire volume; `field` names it in error messages (e.g. `extents[2]`).
pub fn volume_from_wire(v: &wire::Volume4D, field: &str) -> Result<geo4d::Volume4D, WireError> {
    let vol = &v.volume;
    let footprint = match (&vol.outline_polygon, &vol.outline_circle) {
        (Some(p), None) => {
            let vertices = p
                .vertices
                .iter()
                .enumerate()
                .map(|(i, pt)| point(pt, &format!("{field}.volume.outline_polygon.vertices[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Footprint::Polygon(
                geo4d::Polygon::new(vertices)
                    .map_err(|e| WireError::at(&format!("{field}.volume.outline_polygon"), e))?,
            )
        }
        (None, Some(c)) => {
            let cf = format!("{field}.volume.outline_circle");
            let center = c.center.as_ref().ok_or_else(|| WireError::bad(format!("{cf}.center is required")))?;
            let radius = c.radius.as_ref().ok_or_else(|| WireError::bad(format!("{cf}.radius is required")))?;
            if radius.units != "M" {
                return Err(WireError::bad(format!("{cf}.radius.units must be \"M\", got \"{}\"", radius.units)));
            }
            let center = point(center, &format!("{cf}.center"))?;
            Footprint::Circle(geo4d::Circle::new(center, radius.value).map_err(|e| WireError::at(&cf, e))?)
        }
        (Some(_), Some(_)) => {
            return Err(WireError::bad(format!(
                "{field}.volume: exactly one of outline_polygon and outline_circle may be given, not both"
            )))
        }
        (None, None) => {
            return Err(WireError::bad(format!("{field}.volume: one of outline_polygon or outline_circle is required")))
        }
    };
    let lower = altitude(&vol.altitude_lower, &format!("{field}.volume.altitude_lower"))?;
    let upper = altitude(&vol.altitude_upper, &format!("{field}.volume.altitude_upper"))?;
    let altitude = AltitudeBand::new(lower, upper).map_err(|e| WireError::at(&format!("{field}.volume"), e))?;
    let start = v.time_start.as_ref().map(|t| time_from_wire(t, &format!("{field}.time_start"))).transpose()?;
    let end = v.time_end.as_ref().map(|t| time_from_wire(t, &format!("{field}.time_end"))).transpose()?;
    let time = TimeWindow::new(start, end).map_err(|e| WireError::at(field, e))?;
    Ok(geo4d::Volume4D { footprint, altitude, time })
}

pub fn extents_from_wire(extents: &[wire::Volume4D]) -> Result<Vec<geo4d::Volume4D>, WireError> {
    if extents.is_empty() {
        return Err(WireError::bad("extents must contain at least one volume"));
    }
    if extents.len() > 100 {
        return Err(WireError::bad(format!("extents may contain at most 100 volumes, got {}", extents.len())));
    }
    extents.iter().enumerate().map(|(i, v)| volume_from_wire(v, &format!("extents[{i}]"))).collect()
}

pub fn area_of_interest(q: &wire::QueryParameters) -> Result<geo4d::Volume4D, WireError> {
    let aoi = q.area_of_interest.as_ref().ok_or_else(|| WireError::bad("area_of_interest is required"))?;
    volume_from_wire(aoi, "area_of_interest")
}

pub fn put_intent_request(p: wire::PutOperationalIntentReferenceParameters) -> Result<PutIntentRequest, WireError> {
    let state = OperationalIntentState::parse(&p.state).ok_or_else(|| {
        WireError::bad(format!("state `{}` is not one of Accepted, Activated, Nonconforming, Contingent", p.state))
    })?;
    let subscription_id = p
        .subscription_id
        .as_deref()
        // The reference DSS treats an empty or all-zero id as "no subscription".
        .filter(|s| !s.is_empty() && *s != NULL_SUBSCRIPTION_ID)
        .map(|s| crate::parse_uuid_v4(s, "subscription_id"))
        .transpose()?;
    Ok(PutIntentRequest {
        extents: extents_from_wire(&p.extents)?,
        key: p.key.unwrap_or_default(),
        state,
        uss_base_url: p.uss_base_url,
        subscription_id,
        new_subscription: p.new_subscription.map(|n| ImplicitSubscriptionRequest {
            uss_base_url: n.uss_base_url,
            notify_for_constraints: n.notify_for_constraints.unwrap_or(false),
        }),
        requested_ovn_suffix: p.requested_ovn_suffix,
    })
}

pub fn put_subscription_request(p: wire::PutSubscriptionParameters) -> Result<PutSubscriptionRequest, WireError> {
    Ok(PutSubscriptionRequest {
        extents: volume_from_wire(&p.extents, "extents")?,
        uss_base_url: p.uss_base_url,
        notify_for_operational_intents: p.notify_for_operational_intents.unwrap_or(false),
        notify_for_constraints: p.notify_for_constraints.unwrap_or(false),
    })
}

fn window_times(time: TimeWindow) -> (wire::Time, wire::Time) {
    (time_to_wire(time.start().unwrap_or(Timestamp(0))), time_to_wire(time.end().unwrap_or(Timestamp(0))))
}

pub fn intent_to_wire(v: &IntentView) -> wire::OperationalIntentReference {
    let oi = &v.intent;
    let (time_start, time_end) = window_times(oi.time());
    wire::OperationalIntentReference {
        id: oi.id.to_string(),
        manager: oi.manager.clone(),
        uss_availability: v.availability.as_str().into(),
        version: oi.version,
        state: oi.state.as_str().into(),
        ovn: v.show_ovn.then(|| oi.ovn.as_str().to_owned()),
        time_start,
        time_end,
        uss_base_url: oi.uss_base_url.clone(),
        subscription_id: oi.subscription_id.map_or_else(|| NULL_SUBSCRIPTION_ID.to_owned(), |s| s.to_string()),
    }
}

pub fn constraint_to_wire(v: &ConstraintView) -> wire::ConstraintReference {
    let c = &v.constraint;
    let (time_start, time_end) = window_times(c.time());
    wire::ConstraintReference {
        id: c.id.to_string(),
        manager: c.manager.clone(),
        uss_availability: v.availability.as_str().into(),
        version: c.version,
        ovn: v.show_ovn.then(|| c.ovn.as_str().to_owned()),
        time_start,
        time_end,
        uss_base_url: c.uss_base_url.clone(),
    }
}

pub fn subscription_to_wire(v: &SubscriptionView) -> wire::Subscription {
    let s = &v.subscription;
    let time = s.time();
    wire::Subscription {
        id: s.id.to_string(),
        version: s.version_string(),
        notification_index: s.notification_index,
        time_start: time.start().map(time_to_wire),
        time_end: time.end().map(time_to_wire),
        uss_base_url: s.uss_base_url.clone(),
        notify_for_operational_intents: s.notify_for_operational_intents,
        notify_for_constraints: s.notify_for_constraints,
        implicit_subscription: s.implicit,
        dependent_operational_intents: v.dependent_intents.iter().map(|d| d.to_string()).collect(),
    }
}

pub fn subscribers_to_wire(subs: &[DomainSubscriber]) -> Vec<wire::SubscriberToNotify> {
    subs.iter()
        .map(|s| wire::SubscriberToNotify {
            uss_base_url: s.uss_base_url.clone(),
            subscriptions: s
                .subscriptions
                .iter()
                .map(|(id, index)| wire::SubscriptionState {
                    subscription_id: id.to_string(),
                    notification_index: *index,
                })
                .collect(),
        })
        .collect()
}

fn altitude_to_wire(metres: Option<f64>) -> Option<wire::Altitude> {
    metres.map(|value| wire::Altitude { value, reference: "W84".into(), units: "M".into() })
}

/// One domain volume as the wire writes it (WGS84 metres, RFC 3339 times); open bounds are
/// omitted. `volume_from_wire(&volume_to_wire(v))` gives `v` back.
pub fn volume_to_wire(v: &geo4d::Volume4D) -> wire::Volume4D {
    let point = |p: LatLng| wire::LatLngPoint { lat: p.lat(), lng: p.lng() };
    let (outline_polygon, outline_circle) = match &v.footprint {
        Footprint::Polygon(p) => {
            (Some(wire::Polygon { vertices: p.vertices().iter().map(|q| point(*q)).collect() }), None)
        }
        Footprint::Circle(c) => (
            None,
            Some(wire::Circle {
                center: Some(point(c.center())),
                radius: Some(wire::Radius { value: c.radius_m(), units: "M".into() }),
            }),
        ),
    };
    wire::Volume4D {
        volume: wire::Volume3D {
            outline_circle,
            outline_polygon,
            altitude_lower: altitude_to_wire(v.altitude.lower_m()),
            altitude_upper: altitude_to_wire(v.altitude.upper_m()),
        },
        time_start: v.time.start().map(time_to_wire),
        time_end: v.time.end().map(time_to_wire),
    }
}

pub fn extents_to_wire(extents: &[geo4d::Volume4D]) -> Vec<wire::Volume4D> {
    extents.iter().map(volume_to_wire).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vol(json: &str) -> Result<geo4d::Volume4D, WireError> {
        volume_from_wire(&crate::parse_json::<wire::Volume4D>(json.as_bytes())?, "v")
    }

    #[test]
    fn errors_name_the_field() {
        let e =
            vol(r#"{"volume":{"outline_polygon":{"vertices":[{"lat":0,"lng":0},{"lat":1,"lng":0}]}}}"#).unwrap_err();
        assert!(e.message.contains("v.volume.outline_polygon") && e.message.contains("at least 3"), "{}", e.message);
        let e = vol(r#"{"volume":{"outline_circle":{"center":{"lat":95,"lng":0},"radius":{"value":10,"units":"M"}}}}"#)
            .unwrap_err();
        assert!(e.message.contains("latitude 95"), "{}", e.message);
        let e = vol(r#"{"volume":{"outline_circle":{"center":{"lat":5,"lng":0},"radius":{"value":10,"units":"FT"}}}}"#)
            .unwrap_err();
        assert!(e.message.contains("units"), "{}", e.message);
        let e = crate::parse_json::<wire::Volume4D>(br#"{"volume":{"outline_circle":{"center":{"lat":"x"}}}}"#)
            .unwrap_err();
        assert!(e.message.contains("volume.outline_circle.center.lat"), "{}", e.message);
    }

    #[test]
    fn unknown_fields_and_nulls_are_accepted() {
        let v = vol(
            r#"{"request_id":"x","volume":{"outline_circle":{"center":{"lat":5,"lng":0},"radius":{"value":10,"units":"M"}},"outline_polygon":null,"altitude_lower":null},"time_start":null}"#,
        );
        assert!(v.is_ok(), "{v:?}");
    }

    #[test]
    fn times_round_trip() {
        let t = time_from_wire(&wire::Time { value: "2026-01-02T03:04:05.5Z".into(), format: "RFC3339".into() }, "t")
            .unwrap();
        assert_eq!(time_to_wire(t).value, "2026-01-02T03:04:05.500Z");
        assert!(parse_uuid_v4_check("03e5572a-f733-49af-bc14-8a18bd53ee39"));
        assert!(!parse_uuid_v4_check("03e5572a-f733-19af-bc14-8a18bd53ee39"));
    }

    fn parse_uuid_v4_check(s: &str) -> bool {
        crate::parse_uuid_v4(s, "id").is_ok()
    }

    #[test]
    fn volumes_round_trip_through_the_wire() {
        let circle = r#"{"volume": {"outline_circle": {"center": {"lat": 47.0, "lng": 8.0}, "radius": {"value": 250.5, "units": "M"}},
            "altitude_lower": {"value": 10, "reference": "W84", "units": "M"}},
            "time_start": {"value": "2027-01-15T08:00:00.123456Z", "format": "RFC3339"}}"#;
        let polygon = r#"{"volume": {"outline_polygon": {"vertices": [{"lat": 47.0, "lng": 8.0}, {"lat": 47.0, "lng": 8.01}, {"lat": 47.01, "lng": 8.01}]},
            "altitude_upper": {"value": 120, "reference": "W84", "units": "M"}},
            "time_end": {"value": "2027-01-15T09:00:00Z", "format": "RFC3339"}}"#;
        for json in [circle, polygon] {
            let domain = vol(json).unwrap();
            let back = volume_from_wire(&volume_to_wire(&domain), "v").unwrap();
            assert_eq!(back, domain);
        }
    }
}
