//! Random flight geometry in wire form, with its domain form for the generator's own oracle.

use api::{Altitude, Circle, LatLngPoint, Polygon, Radius, Volume3D, Volume4D};
use geo4d::Timestamp;
use rand::Rng;

/// South-west corner of every area the benchmark uses.
pub const ORIGIN_LAT: f64 = 47.0;
pub const ORIGIN_LNG: f64 = 8.0;

pub fn m_to_dlat(m: f64) -> f64 {
    m / 111_200.0
}
pub fn m_to_dlng(m: f64) -> f64 {
    m / (111_320.0 * ORIGIN_LAT.to_radians().cos())
}

fn alt(v: f64) -> Option<Altitude> {
    Some(Altitude { value: v, reference: "W84".into(), units: "M".into() })
}

pub fn now() -> Timestamp {
    Timestamp(chrono::Utc::now().timestamp_micros())
}

/// A star-shaped polygon (always simple) or a circle around (lat, lng).
pub fn footprint(rng: &mut impl Rng, lat: f64, lng: f64, min_r: f64, max_r: f64, circle_share: f64) -> Volume3D {
    if rng.random_bool(circle_share) {
        return Volume3D {
            outline_circle: Some(Circle {
                center: Some(LatLngPoint { lat, lng }),
                radius: Some(Radius { value: rng.random_range(min_r..max_r), units: "M".into() }),
            }),
            outline_polygon: None,
            altitude_lower: None,
            altitude_upper: None,
        };
    }
    let n = rng.random_range(4..=20);
    let phase = rng.random_range(0.0..std::f64::consts::TAU);
    let vertices = (0..n)
        .map(|i| {
            let a = phase + std::f64::consts::TAU * i as f64 / n as f64;
            let r = rng.random_range(min_r..max_r);
            LatLngPoint { lat: lat + m_to_dlat(r * a.sin()), lng: lng + m_to_dlng(r * a.cos()) }
        })
        .collect();
    Volume3D {
        outline_circle: None,
        outline_polygon: Some(Polygon { vertices }),
        altitude_lower: None,
        altitude_upper: None,
    }
}

/// A square of `side_m` metres with its south-west corner `east_m`, `north_m` from the origin.
pub fn square(east_m: f64, north_m: f64, side_m: f64) -> Volume3D {
    let (y0, x0) = (ORIGIN_LAT + m_to_dlat(north_m), ORIGIN_LNG + m_to_dlng(east_m));
    let (y1, x1) = (y0 + m_to_dlat(side_m), x0 + m_to_dlng(side_m));
    let p = |lat, lng| LatLngPoint { lat, lng };
    Volume3D {
        outline_circle: None,
        outline_polygon: Some(Polygon { vertices: vec![p(y0, x0), p(y0, x1), p(y1, x1), p(y1, x0)] }),
        altitude_lower: None,
        altitude_upper: None,
    }
}

pub fn volume(mut v: Volume3D, alt_lo: f64, alt_hi: f64, start: Timestamp, end: Timestamp) -> Volume4D {
    v.altitude_lower = alt(alt_lo);
    v.altitude_upper = alt(alt_hi);
    Volume4D { volume: v, time_start: Some(api::time_to_wire(start)), time_end: Some(api::time_to_wire(end)) }
}

pub fn domain(v: &Volume4D) -> geo4d::Volume4D {
    #[allow(clippy::expect_used)]
    api::volume_from_wire(v, "generated").expect("the generator only builds valid volumes")
}
