//! Unit and property tests: every exact predicate is checked against a brute-force oracle that
//! works directly on the ellipsoid (GeographicLib geodesics), with no projection involved.

use geographiclib_rs::{DirectGeodesic, InverseGeodesic};
use proptest::prelude::*;

use crate::shapes::testing::{geodesic_distance_m, gnomonic, WGS84};
use crate::*;

fn ll(lat: f64, lng: f64) -> LatLng {
    LatLng::new(lat, lng).expect("valid test point")
}

fn moved(p: LatLng, azimuth_deg: f64, distance_m: f64) -> LatLng {
    let (lat, lng): (f64, f64) = WGS84.direct(p.lat(), p.lng(), azimuth_deg, distance_m);
    ll(lat, lng)
}

/// Point at fraction `t` along the geodesic from `a` to `b`.
fn along(a: LatLng, b: LatLng, t: f64) -> LatLng {
    let (s12, azi1, _azi2, _a12): (f64, f64, f64, f64) = WGS84.inverse(a.lat(), a.lng(), b.lat(), b.lng());
    moved(a, azi1, s12 * t)
}

/// Minimum of a unimodal function on [0, 1] by golden-section search.
fn golden_min(f: impl Fn(f64) -> f64) -> f64 {
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut lo, mut hi) = (0.0, 1.0);
    for _ in 0..48 {
        let m1 = hi - ratio * (hi - lo);
        let m2 = lo + ratio * (hi - lo);
        if f(m1) < f(m2) {
            hi = m2;
        } else {
            lo = m1;
        }
    }
    f(0.0).min(f(1.0)).min(f((lo + hi) / 2.0))
}

/// Geodesic distance from `p` to the geodesic segment `ab`, by search along the segment.
fn oracle_point_edge(p: LatLng, a: LatLng, b: LatLng) -> f64 {
    golden_min(|t| geodesic_distance_m(p, along(a, b, t)))
}

fn oracle_edge_edge(a: LatLng, b: LatLng, c: LatLng, d: LatLng) -> f64 {
    golden_min(|t| oracle_point_edge(along(a, b, t), c, d))
}

fn oracle_min_boundary_distance(pa: &Polygon, pb: &Polygon) -> f64 {
    let (va, vb) = (pa.vertices(), pb.vertices());
    let mut best = f64::INFINITY;
    for i in 0..va.len() {
        for j in 0..vb.len() {
            let d = oracle_edge_edge(va[i], va[(i + 1) % va.len()], vb[j], vb[(j + 1) % vb.len()]);
            best = best.min(d);
        }
    }
    best
}

/// Star-shaped (hence simple) polygon around `center`.
fn star(center: LatLng, radii_m: &[f64], phase_deg: f64) -> Polygon {
    let n = radii_m.len();
    let vertices =
        radii_m.iter().enumerate().map(|(i, r)| moved(center, phase_deg + 360.0 * i as f64 / n as f64, *r)).collect();
    Polygon::new(vertices).expect("star polygon is valid")
}

fn inside_via_projection(p: LatLng, poly: &Polygon) -> bool {
    let projected: Vec<_> = poly.vertices().iter().map(|v| gnomonic(p, *v).expect("projectable")).collect();
    crate::planar::point_in_polygon((0.0, 0.0), &projected)
}

#[test]
fn gnomonic_edges_are_straight() {
    // The largest accepted footprint spans ~50 km; check edges up to that length, projected
    // about a centre ~35 km away, at several latitudes: deviation from the straight chord must
    // stay far below 1 cm.
    for lat in [0.0, 30.0, 45.0, 60.0, 75.0] {
        let center = ll(lat, 10.0);
        for azimuth in [0.0, 37.0, 90.0, 135.0] {
            let a = moved(center, azimuth, 35_000.0);
            let b = moved(a, azimuth + 100.0, 50_000.0);
            let (pa, pb) = (gnomonic(center, a).expect("a"), gnomonic(center, b).expect("b"));
            for t in [0.25, 0.5, 0.75] {
                let m = gnomonic(center, along(a, b, t)).expect("m");
                let (d, _) = crate::planar::point_segment_distance(m, pa, pb);
                assert!(d < 0.002, "lat {lat} azimuth {azimuth} t {t}: off the chord by {d} m");
            }
        }
    }
}

#[test]
fn shared_projection_centre_keeps_edges_straight() {
    // `PreparedArea` projects candidates about one centre up to SHARED_PROJECTION_RADIUS_M away;
    // at that distance, edges of the longest accepted length must stay straight to < 5 mm.
    for lat in [0.0, 30.0, 45.0, 60.0, 70.0] {
        let center = ll(lat, 10.0);
        for azimuth in [0.0, 45.0, 90.0, 135.0, 200.0] {
            let a = moved(center, azimuth, crate::prepared::SHARED_PROJECTION_RADIUS_M);
            for turn in [60.0, 100.0, 150.0] {
                let b = moved(a, azimuth + turn, 70_000.0);
                let (pa, pb) = (gnomonic(center, a).expect("a"), gnomonic(center, b).expect("b"));
                for t in [0.25, 0.5, 0.75] {
                    let m = gnomonic(center, along(a, b, t)).expect("m");
                    let (d, _) = crate::planar::point_segment_distance(m, pa, pb);
                    assert!(d < 0.005, "lat {lat} azimuth {azimuth} turn {turn} t {t}: off the chord by {d} m");
                }
            }
        }
    }
}

#[test]
fn plane_distances_stay_within_tolerance() {
    // Tile and shared projections decide circles by planar distances; the bound they rely on:
    // between points within SHARED_PROJECTION_RADIUS_M of the centre, planar distance /
    // geodesic distance stays within [1/(1+t), 1+t]. Check it holds ten times over.
    let radius = crate::prepared::SHARED_PROJECTION_RADIUS_M;
    let t = crate::shapes::PLANE_DISTANCE_TOLERANCE / 10.0;
    let mut worst: f64 = 0.0;
    for lat in [0.0, 30.0, 45.0, 60.0, 70.0] {
        let center = ll(lat, 10.0);
        for azimuth in (0..360).step_by(30) {
            for reach in [0.1, 0.5, 1.0] {
                let a = moved(center, azimuth as f64, radius * reach);
                for turn in [0.0, 45.0, 90.0, 170.0] {
                    for length in [1.0, 300.0, 5_000.0, 30_000.0] {
                        let b = moved(a, azimuth as f64 + 180.0 + turn, length);
                        if geodesic_distance_m(center, b) > radius {
                            continue;
                        }
                        let (pa, pb) = (gnomonic(center, a).expect("a"), gnomonic(center, b).expect("b"));
                        let planar = ((pa.0 - pb.0).powi(2) + (pa.1 - pb.1).powi(2)).sqrt();
                        let ratio = planar / geodesic_distance_m(a, b);
                        worst = worst.max((ratio - 1.0).abs());
                        assert!(ratio <= 1.0 + t && ratio >= 1.0 / (1.0 + t), "lat {lat} az {azimuth} ratio {ratio}");
                    }
                }
            }
        }
    }
    assert!(worst > 0.0);
}

#[test]
fn tile_projections_decide_circles_and_fall_back_near_the_boundary() {
    let c = ll(47.1, 8.1);
    let square = Polygon::new(vec![
        moved(moved(c, 90.0, 500.0), 180.0, 200.0),
        moved(moved(c, 90.0, 800.0), 180.0, 200.0),
        moved(moved(c, 90.0, 800.0), 0.0, 200.0),
        moved(moved(c, 90.0, 500.0), 0.0, 200.0),
    ])
    .expect("square");
    let sq = Footprint::Polygon(square);
    let circle = |r: f64| Footprint::Circle(Circle::new(c, r).expect("circle"));
    // Clear cases are answered in the tile plane...
    assert_eq!(circle(400.0).same_tile_test(&sq), Some(false));
    assert_eq!(circle(600.0).same_tile_test(&sq), Some(true));
    assert_eq!(circle(100.0).same_tile_test(&circle(350.0)), Some(true));
    // ...a boundary within the error band is not, and the exact test decides.
    assert_eq!(circle(500.0).same_tile_test(&sq), None);
}

#[test]
fn circles_touching_within_a_centimetre() {
    let a = ll(47.0, 8.0);
    let b = moved(a, 63.0, 1000.0);
    let near = |r2: f64| {
        Footprint::Circle(Circle::new(a, 400.0).expect("a"))
            .intersects(&Footprint::Circle(Circle::new(b, r2).expect("b")))
    };
    assert!(near(600.01));
    assert!(!near(599.99));
}

#[test]
fn circle_and_square_at_one_centimetre() {
    let c = ll(40.0, -75.0);
    // A square whose nearest edge is a geodesic ~500 m east of the centre.
    let corner_s = moved(moved(c, 90.0, 500.0), 180.0, 200.0);
    let corner_n = moved(moved(c, 90.0, 500.0), 0.0, 200.0);
    let square = Polygon::new(vec![corner_s, moved(corner_s, 90.0, 300.0), moved(corner_n, 90.0, 300.0), corner_n])
        .expect("square");
    let gap = oracle_point_edge(c, corner_s, corner_n);
    let sq = Footprint::Polygon(square);
    assert!(Footprint::Circle(Circle::new(c, gap + 0.01).expect("c")).intersects(&sq));
    assert!(!Footprint::Circle(Circle::new(c, gap - 0.01).expect("c")).intersects(&sq));
}

#[test]
fn validation_errors() {
    let a = ll(0.0, 0.0);
    let b = ll(0.0, 0.01);
    let c = ll(0.01, 0.01);
    let d = ll(0.01, 0.0);
    assert_eq!(Polygon::new(vec![a, b]), Err(GeoError::TooFewVertices(2)));
    assert_eq!(Polygon::new(vec![a, b, c, a]), Err(GeoError::DuplicateVertex(0, 3)));
    assert!(matches!(Polygon::new(vec![a, c, b, d]), Err(GeoError::CrossingEdges(_, _))));
    assert!(matches!(
        Polygon::new(vec![a, ll(0.0, 0.005), b]),
        Err(GeoError::Degenerate | GeoError::CrossingEdges(_, _) | GeoError::TouchingEdges(_, _))
    ));
    assert!(matches!(LatLng::new(91.0, 0.0), Err(GeoError::LatitudeOutOfRange(_))));
    assert!(matches!(LatLng::new(f64::NAN, 0.0), Err(GeoError::LatitudeOutOfRange(_))));
    assert!(matches!(LatLng::new(0.0, 180.5), Err(GeoError::LongitudeOutOfRange(_))));
    let big = Polygon::new(vec![ll(0.0, 0.0), ll(0.0, 1.0), ll(1.0, 1.0), ll(1.0, 0.0)]);
    assert!(matches!(big, Err(ref e) if e.is_too_large()));
    assert!(matches!(Circle::new(a, 0.0), Err(GeoError::InvalidRadius(_))));
    assert!(matches!(Circle::new(a, 50_000.0), Err(ref e) if e.is_too_large()));
    assert!(matches!(AltitudeBand::new(Some(100.0), Some(50.0)), Err(GeoError::InvertedAltitude { .. })));
    assert!(matches!(AltitudeBand::new(Some(f64::NAN), None), Err(GeoError::AltitudeOutOfRange(_))));
    assert!(matches!(TimeWindow::new(Some(Timestamp(10)), Some(Timestamp(5))), Err(GeoError::InvertedTime)));
    let too_many: Vec<_> = (0..1001).map(|i| moved(a, i as f64 * 0.3, 1000.0)).collect();
    assert!(matches!(Polygon::new(too_many), Err(GeoError::TooManyVertices { .. })));
}

#[test]
fn volumes_check_time_and_altitude_first() {
    let fp = Footprint::Circle(Circle::new(ll(10.0, 10.0), 100.0).expect("c"));
    let v = |alt: (f64, f64), t: (i64, i64)| Volume4D {
        footprint: fp.clone(),
        altitude: AltitudeBand::new(Some(alt.0), Some(alt.1)).expect("alt"),
        time: TimeWindow::new(Some(Timestamp(t.0)), Some(Timestamp(t.1))).expect("t"),
    };
    assert!(v((0.0, 100.0), (0, 10)).intersects(&v((100.0, 200.0), (10, 20))));
    assert!(!v((0.0, 100.0), (0, 10)).intersects(&v((100.1, 200.0), (0, 10))));
    assert!(!v((0.0, 100.0), (0, 10)).intersects(&v((0.0, 100.0), (11, 20))));
    let e = v((0.0, 100.0), (0, 10)).envelopes().next().expect("one envelope");
    assert!(e.min[0] < 10.0 && e.max[0] > 10.0 && e.min[1] < 10.0 && e.max[1] > 10.0);
}

/// A place anywhere on Earth, weighted towards the hard cases: mid latitudes, right beside
/// the antimeridian (either side), and near or at both poles.
fn location() -> impl Strategy<Value = (f64, f64)> {
    prop_oneof![
        (-60.0..60.0f64, -170.0..170.0f64),
        (-75.0..75.0f64, 179.97..=180.0f64),
        (-75.0..75.0f64, -180.0..-179.97f64),
        (84.0..=90.0f64, -180.0..=180.0f64),
        (-90.0..=-84.0f64, -180.0..=180.0f64),
    ]
}

fn small_polygon() -> impl Strategy<Value = (f64, f64, Vec<f64>, f64)> {
    (location(), prop::collection::vec(200.0..4000.0f64, 3..7), 0.0..360.0f64)
        .prop_map(|((lat, lng), radii, phase)| (lat, lng, radii, phase))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn polygon_pairs_match_the_oracle(
        (lat, lng, radii_a, phase_a) in small_polygon(),
        radii_b in prop::collection::vec(200.0..4000.0f64, 3..7),
        phase_b in 0.0..360.0f64,
        offset_m in 0.0..9000.0f64,
        offset_azimuth in 0.0..360.0f64,
    ) {
        let ca = ll(lat, lng);
        let pa = star(ca, &radii_a, phase_a);
        let pb = star(moved(ca, offset_azimuth, offset_m), &radii_b, phase_b);
        let boundary_gap = oracle_min_boundary_distance(&pa, &pb);
        prop_assume!(!(0.001..0.01).contains(&boundary_gap));
        let expected = boundary_gap < 0.001
            || inside_via_projection(pa.vertices()[0], &pb)
            || inside_via_projection(pb.vertices()[0], &pa);
        let got = Footprint::Polygon(pa).intersects(&Footprint::Polygon(pb));
        prop_assert_eq!(got, expected, "boundary gap {} m", boundary_gap);
    }

    #[test]
    fn prepared_area_matches_the_oracle(
        (lat, lng, radii_a, phase_a) in small_polygon(),
        radii_b in prop::collection::vec(200.0..4000.0f64, 3..7),
        offset_m in 0.0..9000.0f64,
        offset_azimuth in 0.0..360.0f64,
        b_is_circle in proptest::bool::ANY,
    ) {
        let ca = ll(lat, lng);
        let pa = star(ca, &radii_a, 10.0);
        let cb = moved(ca, offset_azimuth, offset_m);
        let band = AltitudeBand::new(Some(0.0), Some(100.0)).expect("band");
        let window = TimeWindow::new(Some(Timestamp(0)), Some(Timestamp(10))).expect("window");
        let fb = if b_is_circle {
            Footprint::Circle(Circle::new(cb, radii_b[0]).expect("circle"))
        } else {
            Footprint::Polygon(star(cb, &radii_b, phase_a))
        };
        let va = Volume4D { footprint: Footprint::Polygon(pa.clone()), altitude: band, time: window };
        let vb = Volume4D { footprint: fb.clone(), altitude: band, time: window };
        let gap = match &fb {
            Footprint::Polygon(pb) => oracle_min_boundary_distance(&pa, pb),
            Footprint::Circle(c) => {
                let v = pa.vertices();
                (0..v.len()).map(|i| oracle_point_edge(c.center(), v[i], v[(i + 1) % v.len()])).fold(f64::INFINITY, f64::min) - c.radius_m()
            }
        };
        prop_assume!(gap.abs() > 0.01);
        let expected = gap <= 0.0 || match &fb {
            Footprint::Polygon(pb) => inside_via_projection(pa.vertices()[0], pb) || inside_via_projection(pb.vertices()[0], &pa),
            Footprint::Circle(c) => inside_via_projection(c.center(), &pa),
        };
        let prepared = PreparedArea::new(std::slice::from_ref(&va));
        prop_assert_eq!(prepared.intersects_any(std::slice::from_ref(&vb)), expected, "gap {}", gap);
        // The same with the roles swapped: the candidate becomes the prepared area.
        let prepared = PreparedArea::new(std::slice::from_ref(&vb));
        prop_assert_eq!(prepared.intersects_any(std::slice::from_ref(&va)), expected, "gap {} swapped", gap);
    }

    #[test]
    fn circle_pairs_match_the_oracle(
        (lat, lng) in location(),
        ra in 1.0..3000.0f64,
        rb in 1.0..3000.0f64,
        offset_m in 0.0..9000.0f64,
        offset_azimuth in 0.0..360.0f64,
        prepared in proptest::bool::ANY,
    ) {
        let (a, b) = (ll(lat, lng), moved(ll(lat, lng), offset_azimuth, offset_m));
        let gap = geodesic_distance_m(a, b) - ra - rb;
        prop_assume!(gap.abs() > 0.01);
        let (fa, fb) = (Footprint::Circle(Circle::new(a, ra).expect("a")), Footprint::Circle(Circle::new(b, rb).expect("b")));
        let got = if prepared {
            let band = AltitudeBand::new(Some(0.0), Some(100.0)).expect("band");
            let window = TimeWindow::new(Some(Timestamp(0)), Some(Timestamp(10))).expect("window");
            let va = Volume4D { footprint: fa, altitude: band, time: window };
            let vb = Volume4D { footprint: fb, altitude: band, time: window };
            PreparedArea::new(std::slice::from_ref(&va)).intersects_any(std::slice::from_ref(&vb))
        } else {
            fa.intersects(&fb)
        };
        prop_assert_eq!(got, gap <= 0.0, "gap {} m", gap);
    }

    #[test]
    fn circle_polygon_pairs_match_the_oracle(
        (lat, lng, radii, phase) in small_polygon(),
        radius_m in 1.0..3000.0f64,
        offset_m in 0.0..9000.0f64,
        offset_azimuth in 0.0..360.0f64,
    ) {
        let cp = ll(lat, lng);
        let poly = star(cp, &radii, phase);
        let center = moved(cp, offset_azimuth, offset_m);
        let v = poly.vertices();
        let gap = (0..v.len()).map(|i| oracle_point_edge(center, v[i], v[(i + 1) % v.len()])).fold(f64::INFINITY, f64::min);
        prop_assume!((gap - radius_m).abs() > 0.01);
        let expected = gap <= radius_m || inside_via_projection(center, &poly);
        let got = Footprint::Circle(Circle::new(center, radius_m).expect("circle")).intersects(&Footprint::Polygon(poly));
        prop_assert_eq!(got, expected, "gap {} m radius {} m", gap, radius_m);
    }

    #[test]
    fn bounding_boxes_contain_the_boundary((lat, lng, radii, phase) in small_polygon(), radius in 1.0..20_000.0f64) {
        let poly = star(ll(lat, lng), &radii, phase);
        let b = Footprint::Polygon(poly.clone()).bbox();
        let v = poly.vertices();
        for i in 0..v.len() {
            for k in 0..=8 {
                let p = along(v[i], v[(i + 1) % v.len()], k as f64 / 8.0);
                prop_assert!(b.contains(p), "{p:?} outside {b:?}");
                // The index's parts (within [-180, 180]) cover it too.
                prop_assert!(b.parts().any(|part| p.lat() >= part.min_lat && p.lat() <= part.max_lat && p.lng() >= part.min_lng && p.lng() <= part.max_lng), "{p:?} outside the parts of {b:?}");
            }
        }
        let c = Circle::new(ll(lat, lng), radius).expect("a circle anywhere");
        let cb = c.bbox();
        for azimuth in (0..360).step_by(15) {
            let p = moved(ll(lat, lng), azimuth as f64, radius);
            prop_assert!(cb.contains(p), "{p:?} on the circle outside {cb:?}");
        }
    }

    /// Rotating a whole configuration about the polar axis changes nothing: the same pairs
    /// intersect when the pair is moved across the antimeridian.
    #[test]
    fn intersections_do_not_change_across_the_antimeridian(
        lat in -75.0..75.0f64,
        lng in -0.05..0.05f64,
        radii_a in prop::collection::vec(200.0..4000.0f64, 3..7),
        radii_b in prop::collection::vec(200.0..4000.0f64, 3..7),
        offset_m in 0.0..9000.0f64,
        offset_azimuth in 0.0..360.0f64,
        b_is_circle in proptest::bool::ANY,
    ) {
        let build = |shift: f64| {
            let ca = ll(lat, crate::shapes::wrap180(lng + shift));
            let a = Footprint::Polygon(star(ca, &radii_a, 10.0));
            let cb = moved(ca, offset_azimuth, offset_m);
            let b = if b_is_circle {
                Footprint::Circle(Circle::new(cb, radii_b[0]).expect("circle"))
            } else {
                Footprint::Polygon(star(cb, &radii_b, 20.0))
            };
            (a, b)
        };
        let band = AltitudeBand::new(Some(0.0), Some(100.0)).expect("band");
        let window = TimeWindow::new(Some(Timestamp(0)), Some(Timestamp(10))).expect("window");
        let (a0, b0) = build(0.0);
        let expected = a0.intersects(&b0);
        for shift in [180.0, -180.0, 179.99, -179.99] {
            let (a, b) = build(shift);
            prop_assert_eq!(a.intersects(&b), expected, "shift {}", shift);
            let (va, vb) = (Volume4D { footprint: a, altitude: band, time: window }, Volume4D { footprint: b, altitude: band, time: window });
            prop_assert_eq!(PreparedArea::new(std::slice::from_ref(&va)).intersects_any(std::slice::from_ref(&vb)), expected, "prepared, shift {}", shift);
            if expected {
                // The index can find it: some envelope of one meets some envelope of the other.
                prop_assert!(va.envelopes().any(|x| vb.envelopes().any(|y| x.intersects(&y))), "envelopes miss, shift {}", shift);
            }
        }
    }
}

#[test]
fn shapes_at_the_poles_and_across_the_antimeridian_are_valid_and_exact() {
    let band = AltitudeBand::new(Some(0.0), Some(100.0)).expect("band");
    let window = TimeWindow::new(Some(Timestamp(0)), Some(Timestamp(10))).expect("window");
    let vol = |f: &Footprint| Volume4D { footprint: f.clone(), altitude: band, time: window };
    // A 100 m circle on the North Pole: valid (no 413), a polar cap for the index.
    let pole = Footprint::Circle(Circle::new(ll(90.0, 0.0), 100.0).expect("a circle at the pole"));
    assert!(pole.bbox().all_longitudes() && pole.bbox().max_lat == 90.0);
    // The same pole written with another longitude is the same point.
    let pole2 = Footprint::Circle(Circle::new(ll(90.0, 123.0), 50.0).expect("pole"));
    assert!(pole.intersects(&pole2));
    // A square around the South Pole, with a vertex on it... and one around it.
    let around = Polygon::new(vec![ll(-89.99, 0.0), ll(-89.99, 90.0), ll(-89.99, 180.0), ll(-89.99, -90.0)])
        .expect("a square around the south pole");
    assert_eq!(around.bbox().min_lat, -90.0);
    let on_pole =
        Polygon::new(vec![ll(-90.0, 0.0), ll(-89.995, 10.0), ll(-89.995, 40.0)]).expect("a vertex on the pole");
    let around = Footprint::Polygon(around);
    assert!(around.intersects(&Footprint::Polygon(on_pole)));
    assert!(around.intersects(&Footprint::Circle(Circle::new(ll(-90.0, 0.0), 1.0).expect("c"))));
    assert!(!around.intersects(&Footprint::Circle(Circle::new(ll(-89.9, 45.0), 100.0).expect("c"))));
    // Two pole longitudes in one polygon are one point written twice.
    assert!(matches!(
        Polygon::new(vec![ll(90.0, 0.0), ll(90.0, 20.0), ll(89.99, 10.0)]),
        Err(GeoError::DuplicateVertex(0, 1))
    ));
    // Across the antimeridian: vertices on both sides and on ±180.
    let fiji = Polygon::new(vec![ll(-17.0, 179.99), ll(-17.0, -179.99), ll(-16.99, -179.99), ll(-16.99, 180.0)])
        .expect("a square across the antimeridian");
    let fiji = Footprint::Polygon(fiji);
    assert!(fiji.bbox().max_lng > 180.0 || fiji.bbox().min_lng < -180.0, "{:?}", fiji.bbox());
    assert_eq!(vol(&fiji).envelopes().count(), 2, "split at the antimeridian for the index");
    let west = Footprint::Circle(Circle::new(ll(-16.995, 179.995), 200.0).expect("west"));
    let east = Footprint::Circle(Circle::new(ll(-16.995, -179.995), 200.0).expect("east"));
    let far = Footprint::Circle(Circle::new(ll(-16.995, 179.95), 200.0).expect("far"));
    assert!(fiji.intersects(&west) && fiji.intersects(&east));
    // 0.01° of longitude apart at 17° S is about 1064 m: radii of 200 m miss, 600 m meet.
    assert!(!west.intersects(&east));
    let wide = |lng: f64| Footprint::Circle(Circle::new(ll(-16.995, lng), 600.0).expect("wide"));
    assert!(wide(179.995).intersects(&wide(-179.995)));
    assert!(!fiji.intersects(&far));
    // -180 and 180 are one meridian.
    let a = Footprint::Circle(Circle::new(ll(10.0, 180.0), 10.0).expect("a"));
    let b = Footprint::Circle(Circle::new(ll(10.0, -180.0), 10.0).expect("b"));
    assert!(a.intersects(&b));
    assert!(vol(&a).envelopes().any(|x| vol(&b).envelopes().any(|y| x.intersects(&y))));
    // Genuinely too large stays 413.
    let big = Polygon::new(vec![ll(0.0, 179.5), ll(0.0, -179.5), ll(1.0, -179.5), ll(1.0, 179.5)]);
    assert!(matches!(big, Err(ref e) if e.is_too_large()), "{big:?}");
}

#[test]
fn interlocking_flights_are_relevant_though_they_do_not_intersect() {
    // Two interlocking "C" shapes whose outlines stay 8 m apart: exact matching never links
    // them; their convex hulls overlap, so discovery does, with any margin.
    let o = ll(47.0, 8.0);
    let at = |east: f64, north: f64| moved(moved(o, 90.0, east), 0.0, north);
    let c1 = Polygon::new(vec![
        at(0.0, 0.0),
        at(100.0, 0.0),
        at(100.0, 20.0),
        at(20.0, 20.0),
        at(20.0, 80.0),
        at(100.0, 80.0),
        at(100.0, 100.0),
        at(0.0, 100.0),
    ])
    .expect("first C");
    let c2 = Polygon::new(vec![
        at(28.0, 28.0),
        at(128.0, 28.0),
        at(128.0, 128.0),
        at(28.0, 128.0),
        at(28.0, 108.0),
        at(108.0, 108.0),
        at(108.0, 48.0),
        at(28.0, 48.0),
    ])
    .expect("second C");
    let (a, b) = (Footprint::Polygon(c1), Footprint::Polygon(c2));
    assert!(!a.intersects(&b), "8 m apart");
    assert!(a.relevant_to(&b, 0.0) && b.relevant_to(&a, 0.0), "hulls overlap");
    // Separate shapes: relevant only within twice the margin.
    let far = Footprint::Circle(Circle::new(at(50.0, 150.0), 10.0).expect("circle")); // 40 m north of c1's hull
    assert!(!a.relevant_to(&far, 19.0));
    assert!(a.relevant_to(&far, 21.0));
    // Across the antimeridian and at a pole too.
    let w = Footprint::Circle(Circle::new(ll(-17.0, 179.9999), 5.0).expect("w"));
    let e = Footprint::Circle(Circle::new(ll(-17.0, -179.9999), 5.0).expect("e")); // ~21 m apart
    assert!(!w.intersects(&e) && w.relevant_to(&e, 8.0) && !w.relevant_to(&e, 3.0));
    let n1 = Footprint::Circle(Circle::new(ll(90.0, 0.0), 5.0).expect("n1"));
    let n2 = Footprint::Circle(Circle::new(moved(ll(90.0, 0.0), 0.0, 30.0), 5.0).expect("n2"));
    assert!(!n1.intersects(&n2) && n1.relevant_to(&n2, 12.0) && !n1.relevant_to(&n2, 8.0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Relevance is a superset of intersection, grows with the margin, and reaches exactly as
    /// far as twice the margin beyond the outlines (for circles, whose hulls are themselves).
    #[test]
    fn relevance_contains_intersection(
        (lat, lng, radii_a, phase_a) in small_polygon(),
        radii_b in prop::collection::vec(200.0..4000.0f64, 3..7),
        offset_m in 0.0..12000.0f64,
        offset_azimuth in 0.0..360.0f64,
        margin in 0.0..200.0f64,
        b_is_circle in proptest::bool::ANY,
    ) {
        let ca = ll(lat, lng);
        let a = Footprint::Polygon(star(ca, &radii_a, phase_a));
        let cb = moved(ca, offset_azimuth, offset_m);
        let b = if b_is_circle {
            Footprint::Circle(Circle::new(cb, radii_b[0]).expect("circle"))
        } else {
            Footprint::Polygon(star(cb, &radii_b, 33.0))
        };
        if a.intersects(&b) {
            prop_assert!(a.relevant_to(&b, 0.0) && a.relevant_to(&b, margin) && b.relevant_to(&a, margin));
        }
        if a.relevant_to(&b, margin) {
            prop_assert!(a.relevant_to(&b, margin + 50.0), "relevance must grow with the margin");
        }
        // Beyond every vertex's reach (circumscribed circles apart by more than 2 margins):
        // never relevant.
        let reach_a = radii_a.iter().cloned().fold(0.0, f64::max);
        let reach_b = radii_b.iter().cloned().fold(0.0, f64::max);
        if geodesic_distance_m(ca, cb) > reach_a + reach_b + 2.0 * margin + 1.0 {
            prop_assert!(!a.relevant_to(&b, margin));
        }
    }

    #[test]
    fn circle_relevance_is_twice_the_margin(
        (lat, lng) in location(),
        ra in 1.0..3000.0f64,
        rb in 1.0..3000.0f64,
        offset_m in 0.0..9000.0f64,
        offset_azimuth in 0.0..360.0f64,
        margin in 0.0..100.0f64,
    ) {
        let (a, b) = (ll(lat, lng), moved(ll(lat, lng), offset_azimuth, offset_m));
        let gap = geodesic_distance_m(a, b) - ra - rb;
        prop_assume!((gap - 2.0 * margin).abs() > 0.01 && gap.abs() > 0.01);
        let (fa, fb) = (Footprint::Circle(Circle::new(a, ra).expect("a")), Footprint::Circle(Circle::new(b, rb).expect("b")));
        prop_assert_eq!(fa.relevant_to(&fb, margin), gap <= 2.0 * margin, "gap {} margin {}", gap, margin);
    }
}

#[test]
fn a_circles_display_outline_lies_on_its_radius_and_is_closed() {
    let centre = LatLng::new(47.0, 8.0).expect("valid in the test");
    let circle = Footprint::Circle(Circle::new(centre, 400.0).expect("valid in the test"));
    let ring = circle.display_outline(64);
    assert_eq!(ring.len(), 65);
    assert_eq!(ring.first(), ring.last());
    for p in &ring {
        let d = geodesic_distance_m(centre, *p);
        assert!((d - 400.0).abs() < 0.01, "point {p:?} is {d} m from the centre");
    }
    let square = vec![
        LatLng::new(0.0, 0.0).expect("valid in the test"),
        LatLng::new(0.0, 0.01).expect("valid in the test"),
        LatLng::new(0.01, 0.01).expect("valid in the test"),
        LatLng::new(0.01, 0.0).expect("valid in the test"),
    ];
    let polygon = Footprint::Polygon(Polygon::new(square.clone()).expect("valid in the test"));
    let ring = polygon.display_outline(64);
    assert_eq!(&ring[..4], &square[..]);
    assert_eq!(ring[4], square[0]);
}

/// Largest geodesic distance from `center` to the polygon's boundary, sampled along each edge.
fn oracle_max_distance_from(center: LatLng, poly: &Polygon) -> f64 {
    let v = poly.vertices();
    let mut best: f64 = 0.0;
    for i in 0..v.len() {
        for k in 0..=64 {
            best = best.max(geodesic_distance_m(center, along(v[i], v[(i + 1) % v.len()], k as f64 / 64.0)));
        }
    }
    best
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Polygon in polygon, against the ellipsoid: when the two boundaries are over a metre apart,
    /// one contains the other exactly when a vertex of the inner one is inside the outer one.
    #[test]
    fn polygon_containment_matches_the_oracle(
        (lat, lng, radii_outer, phase_outer) in small_polygon(),
        radii_inner in prop::collection::vec(20.0..1500.0f64, 3..7),
        phase_inner in 0.0..360.0f64,
        offset_m in 0.0..3000.0f64,
        offset_azimuth in 0.0..360.0f64,
    ) {
        let center = ll(lat, lng);
        let outer = star(center, &radii_outer, phase_outer);
        let inner = star(moved(center, offset_azimuth, offset_m), &radii_inner, phase_inner);
        let gap = oracle_min_boundary_distance(&outer, &inner);
        prop_assume!(gap > 1.0);
        let expected = inside_via_projection(inner.vertices()[0], &outer);
        let got = Footprint::Polygon(outer).contains(&Footprint::Polygon(inner), CONTAINMENT_TOLERANCE_M);
        prop_assert_eq!(got, expected, "boundary gap {} m", gap);
    }

    /// Circle in polygon: the centre inside and every edge at least the radius away.
    #[test]
    fn circle_in_polygon_matches_the_oracle(
        (lat, lng, radii, phase) in small_polygon(),
        radius_m in 1.0..2000.0f64,
        offset_m in 0.0..2000.0f64,
        offset_azimuth in 0.0..360.0f64,
    ) {
        let cp = ll(lat, lng);
        let poly = star(cp, &radii, phase);
        let center = moved(cp, offset_azimuth, offset_m);
        let v = poly.vertices();
        let gap = (0..v.len()).map(|i| oracle_point_edge(center, v[i], v[(i + 1) % v.len()])).fold(f64::INFINITY, f64::min);
        prop_assume!((gap - radius_m).abs() > 1.0);
        let expected = inside_via_projection(center, &poly) && gap > radius_m;
        let circle = Footprint::Circle(Circle::new(center, radius_m).expect("circle"));
        let got = Footprint::Polygon(poly).contains(&circle, CONTAINMENT_TOLERANCE_M);
        prop_assert_eq!(got, expected, "gap {} m radius {} m", gap, radius_m);
    }

    /// Polygon in circle: the farthest point of the boundary within the radius.
    #[test]
    fn polygon_in_circle_matches_the_oracle(
        (lat, lng, radii, phase) in small_polygon(),
        radius_m in 200.0..6000.0f64,
        offset_m in 0.0..2000.0f64,
        offset_azimuth in 0.0..360.0f64,
    ) {
        let cp = ll(lat, lng);
        let poly = star(cp, &radii, phase);
        let center = moved(cp, offset_azimuth, offset_m);
        let farthest = oracle_max_distance_from(center, &poly);
        prop_assume!((farthest - radius_m).abs() > 1.0);
        let circle = Footprint::Circle(Circle::new(center, radius_m).expect("circle"));
        prop_assert_eq!(circle.contains(&Footprint::Polygon(poly), CONTAINMENT_TOLERANCE_M), farthest < radius_m, "farthest {} m radius {} m", farthest, radius_m);
    }

    /// Circle in circle: the centres' distance plus the inner radius within the outer radius.
    #[test]
    fn circle_in_circle_matches_the_oracle(
        (lat, lng) in location(),
        outer_m in 1.0..5000.0f64,
        inner_m in 1.0..5000.0f64,
        offset_m in 0.0..3000.0f64,
        offset_azimuth in 0.0..360.0f64,
    ) {
        let (a, b) = (ll(lat, lng), moved(ll(lat, lng), offset_azimuth, offset_m));
        let slack = outer_m - geodesic_distance_m(a, b) - inner_m;
        prop_assume!(slack.abs() > 1.0);
        let (outer, inner) = (Footprint::Circle(Circle::new(a, outer_m).expect("a")), Footprint::Circle(Circle::new(b, inner_m).expect("b")));
        prop_assert_eq!(outer.contains(&inner, CONTAINMENT_TOLERANCE_M), slack > 0.0, "slack {} m", slack);
    }
}

#[test]
fn containment_of_shapes_on_each_others_boundary_anywhere() {
    // Everywhere on Earth, both hemispheres, the poles and beside the antimeridian.
    for (lat, lng) in [
        (47.0, 8.0),
        (-33.9, 151.2),
        (0.0, 0.0),
        (64.1, -21.9),
        (-77.8, 166.7),
        (89.999, 30.0),
        (-89.999, 0.0),
        (10.0, 179.99),
        (-10.0, -179.995),
    ] {
        let c = ll(lat, lng);
        let square = star(c, &[1000.0; 4], 45.0);
        let same = Footprint::Polygon(square.clone());
        let outer = Footprint::Polygon(square.clone());
        assert!(outer.contains(&same, CONTAINMENT_TOLERANCE_M), "a polygon contains itself at {lat},{lng}");
        // A triangle with two vertices on the square's corners and one on its centre.
        let v = square.vertices();
        let fan = Footprint::Polygon(Polygon::new(vec![v[0], v[1], c]).expect("fan"));
        assert!(outer.contains(&fan, CONTAINMENT_TOLERANCE_M), "fan at {lat},{lng}");
        // The same triangle pushed 5 m out of one side is not contained.
        let out = moved(c, 45.0 + 90.0 * 0.5, 707.1 + 5.0);
        let beyond = Footprint::Polygon(Polygon::new(vec![v[0], out, v[1]]).expect("beyond"));
        assert!(!outer.contains(&beyond, CONTAINMENT_TOLERANCE_M), "beyond at {lat},{lng}");
        // The case: a 50 m circle does not contain a 500 m one over the same centre;
        // the 500 m one contains the 50 m one, and each contains itself.
        let small = Footprint::Circle(Circle::new(c, 50.0).expect("50 m"));
        let large = Footprint::Circle(Circle::new(c, 500.0).expect("500 m"));
        assert!(!small.contains(&large, CONTAINMENT_TOLERANCE_M) && large.contains(&small, CONTAINMENT_TOLERANCE_M));
        assert!(small.contains(&small, CONTAINMENT_TOLERANCE_M));
        // The square's inscribed circle (about 707 m to each side) fits; one 10 m larger does not.
        let inscribed = Footprint::Circle(Circle::new(c, 700.0).expect("inscribed"));
        let too_big = Footprint::Circle(Circle::new(c, 717.0).expect("too big"));
        assert!(outer.contains(&inscribed, CONTAINMENT_TOLERANCE_M), "inscribed at {lat},{lng}");
        assert!(!outer.contains(&too_big, CONTAINMENT_TOLERANCE_M), "too big at {lat},{lng}");
        // A polygon of circles: the square fits a 1001 m circle, not a 990 m one.
        assert!(Footprint::Circle(Circle::new(c, 1001.0).expect("c")).contains(&same, CONTAINMENT_TOLERANCE_M));
        assert!(!Footprint::Circle(Circle::new(c, 990.0).expect("c")).contains(&same, CONTAINMENT_TOLERANCE_M));
        // Nothing contains something far away.
        let far = Footprint::Circle(Circle::new(moved(c, 90.0, 5000.0), 10.0).expect("far"));
        assert!(!outer.contains(&far, CONTAINMENT_TOLERANCE_M) && !large.contains(&far, CONTAINMENT_TOLERANCE_M));
    }
}

#[test]
fn a_notch_reaching_into_the_inner_polygon_is_not_containment() {
    // Outer: a square with a notch cut in from its south side up to the middle. Inner: a band
    // across the middle whose four corners are all inside the outer polygon, but whose bottom
    // edge crosses the notch.
    let c = ll(47.0, 8.0);
    let p = |east_m: f64, north_m: f64| moved(moved(c, 90.0, east_m), 0.0, north_m);
    let outer = Polygon::new(vec![
        p(-1000.0, -1000.0),
        p(-10.0, -1000.0),
        p(-10.0, 100.0),
        p(10.0, 100.0),
        p(10.0, -1000.0),
        p(1000.0, -1000.0),
        p(1000.0, 1000.0),
        p(-1000.0, 1000.0),
    ])
    .expect("notched square");
    let band = Polygon::new(vec![p(-500.0, 50.0), p(500.0, 50.0), p(500.0, 500.0), p(-500.0, 500.0)]).expect("band");
    let above =
        Polygon::new(vec![p(-500.0, 150.0), p(500.0, 150.0), p(500.0, 500.0), p(-500.0, 500.0)]).expect("above");
    let outer = Footprint::Polygon(outer);
    assert!(!outer.contains(&Footprint::Polygon(band), CONTAINMENT_TOLERANCE_M));
    assert!(outer.contains(&Footprint::Polygon(above), CONTAINMENT_TOLERANCE_M));
}

/// A thin triangle: from `p` a long edge of `length_m` at `azimuth`, and back from a point
/// `width_m` beside its far end. Accepted by validation (its area is small) however long.
fn sliver(p: LatLng, azimuth: f64, length_m: f64, width_m: f64) -> Option<Polygon> {
    let q = moved(p, azimuth, length_m);
    let (_s, _a1, azi2, _a12): (f64, f64, f64, f64) = WGS84.inverse(p.lat(), p.lng(), q.lat(), q.lng());
    let r = moved(q, azi2 + 90.0, width_m);
    Polygon::new(vec![p, q, r]).ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Long thin shapes anywhere, up to 8000 km long: the box holds every point of every edge
    /// and stays as thin as the shape where it can (the box of a sliver along a meridian is
    /// less than a millidegree wide).
    #[test]
    fn boxes_of_long_slivers_hold_their_edges(
        (lat, lng) in location(),
        azimuth in 0.0..360.0f64,
        length_m in 10_000.0..8_000_000.0f64,
        width_m in 0.01..50.0f64,
    ) {
        let p = ll(lat, lng);
        let Some(poly) = sliver(p, azimuth, length_m, width_m) else { return Ok(()) };
        let b = poly.bbox();
        let v = poly.vertices();
        for i in 0..3 {
            for k in 0..=64 {
                let q = along(v[i], v[(i + 1) % 3], k as f64 / 64.0);
                prop_assert!(b.contains(q), "{q:?} outside {b:?}");
                prop_assert!(b.parts().any(|part| q.lat() >= part.min_lat && q.lat() <= part.max_lat && q.lng() >= part.min_lng && q.lng() <= part.max_lng), "{q:?} outside the parts of {b:?}");
            }
        }
    }

    /// A circle beside a long sliver, at a known distance from its long edge: intersection
    /// decided exactly, as for small shapes.
    #[test]
    fn circles_beside_long_slivers_match_the_oracle(
        (lat, lng) in prop_oneof![(-60.0..60.0f64, -170.0..170.0f64), (60.0..85.0f64, -180.0..180.0f64)],
        azimuth in 0.0..360.0f64,
        length_m in 100_000.0..6_000_000.0f64,
        t in 0.05..0.95f64,
        offset_m in -300.0..300.0f64,
        radius_m in 1.0..200.0f64,
    ) {
        let p = ll(lat, lng);
        let Some(poly) = sliver(p, azimuth, length_m, 20.0) else { return Ok(()) };
        let v = poly.vertices();
        let on_edge = along(v[0], v[1], t);
        let (_s, azi, _azi2, _a12): (f64, f64, f64, f64) = WGS84.inverse(on_edge.lat(), on_edge.lng(), v[1].lat(), v[1].lng());
        let center = moved(on_edge, azi - 90.0, offset_m);
        let gap = (0..3).map(|i| oracle_point_edge(center, v[i], v[(i + 1) % 3])).fold(f64::INFINITY, f64::min);
        prop_assume!((gap - radius_m).abs() > 0.05);
        let expected = gap <= radius_m || inside_via_projection(center, &poly);
        let circle = Footprint::Circle(Circle::new(center, radius_m).expect("circle"));
        prop_assert_eq!(circle.intersects(&Footprint::Polygon(poly)), expected, "gap {} m radius {} m", gap, radius_m);
    }
}

#[test]
fn the_hostile_testers_slivers_get_thin_boxes() {
    for (a, b, c) in [
        ((-29.0, 8.0), (88.0, 8.0), (-29.0, 8.0000001)),
        ((10.0, 8.0), (70.0, 8.0), (10.0, 8.0000001)),
        ((-70.0, -120.0), (10.0, -120.0), (10.0, -119.9999999)),
    ] {
        let poly = Polygon::new(vec![ll(a.0, a.1), ll(b.0, b.1), ll(c.0, c.1)]).expect("a valid sliver");
        let bx = poly.bbox();
        assert!(bx.max_lng - bx.min_lng < 1e-5, "{bx:?}");
        assert!(bx.max_lat - bx.min_lat < (b.0 - a.0) + 1e-5, "{bx:?}");
    }
}

#[test]
fn a_vertex_on_another_edge_is_refused_at_every_latitude() {
    // A square with a fifth vertex placed exactly on the geodesic of a non-adjacent edge (a
    // pinch), and a spike folding back along an edge, around the world; the same shapes with
    // that vertex 5 cm off the edge are fine.
    for lat in [-89.0, -70.0, -45.0, -10.0, 0.0, 10.0, 33.3, 60.0, 75.0, 88.0] {
        for lng in [-179.999, -120.0, 0.0, 8.5, 179.999] {
            let c = ll(lat, lng);
            let corner = |az: f64| moved(c, az, 700.0);
            let (a, b, d, e) = (corner(45.0), corner(135.0), corner(225.0), corner(315.0));
            let on_ab = along(a, b, 0.37);
            // a, b, d, x, e with x on edge a-b: edges 0 (a-b) and 2 (d-x)/3 (x-e) meet there.
            let pinch = Polygon::new(vec![a, b, d, on_ab, e]);
            assert!(
                matches!(pinch, Err(GeoError::TouchingEdges(_, _) | GeoError::CrossingEdges(_, _))),
                "pinch at {lat},{lng}: {pinch:?}"
            );
            // a, b, d, e, then back out to a point on e-a's geodesic beyond... a spike: from e
            // out to m (on d-e's geodesic) and back: e, m, where m lies on edge d-e.
            let on_de = along(d, e, 0.5);
            let spike = Polygon::new(vec![a, b, d, e, on_de]);
            assert!(
                matches!(spike, Err(GeoError::TouchingEdges(_, _) | GeoError::CrossingEdges(_, _))),
                "spike at {lat},{lng}: {spike:?}"
            );
            // 5 cm inside instead of on the edge: a valid (if pinched) polygon.
            let (_s, azi, _a2, _a12): (f64, f64, f64, f64) = WGS84.inverse(a.lat(), a.lng(), b.lat(), b.lng());
            let off = moved(on_ab, azi + 90.0, 0.05);
            let inside = moved(on_ab, azi - 90.0, 0.05);
            let ok = [off, inside].iter().any(|x| Polygon::new(vec![a, b, d, *x, e]).is_ok());
            assert!(ok, "5 cm off the edge is a valid outline at {lat},{lng}");
        }
    }
}
