//! The index's own invariants: rounded boxes, the hand-written tree walk, handles after
//! every change, and searches at the antimeridian and the poles.

use store::{conformance, Write};

#[test]
fn index_boxes_are_rounded_outwards() {
    use rstar::Envelope as _;
    // Values that single precision cannot hold exactly, at every axis and sign.
    let cases = [
        geo4d::Envelope4 {
            min: [8.123_456_789, 47.987_654_321, -12.345, 1.763_456_789_123e9],
            max: [8.123_456_790, 47.987_654_322, 120.001, 1.763_456_789_9e9],
        },
        geo4d::Envelope4 {
            min: [-179.999_999_9, -89.999_999, -8000.0, 1.0e9],
            max: [-179.999_999_8, -89.999_998, 100_000.0, 1.0e9 + 0.5],
        },
    ];
    for e in cases {
        let b = crate::state::aabb(&e);
        let (lo, hi) = (b.lower(), b.upper());
        // Index axes: longitude, latitude, time (altitude is left to the exact test).
        for (i, axis) in [0usize, 1, 3].into_iter().enumerate() {
            let scale = if axis < 2 { 1.0e5 } else { 1.0 };
            let origin = if axis == 3 { 1.7e9 } else { 0.0 };
            assert!(f64::from(lo[i]) <= (e.min[axis] - origin) * scale, "axis {axis}: lower bound rounded inwards");
            assert!(f64::from(hi[i]) >= (e.max[axis] - origin) * scale, "axis {axis}: upper bound rounded inwards");
        }
        assert!(b.contains_envelope(&crate::state::aabb(&e)));
    }
}

/// The hand-written tree walk must find exactly what rstar's own envelope query finds,
/// boundary contacts included, on a tree built by inserts and removals like a live store's.
#[test]
fn index_walk_matches_rstar_query() {
    use crate::state::{collect_intersecting, Box3, IndexEntry, IndexParams};
    use rstar::{RTree, AABB};
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u32| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % u64::from(n)) as f32
    };
    let mut tree: RTree<IndexEntry<u32>, IndexParams> = RTree::new_with_params();
    let mut entries = Vec::new();
    for i in 0..5000u32 {
        // Integer-valued corners on a coarse grid, so boxes often touch exactly.
        let lo = [next(200), next(200), next(200)];
        let hi = [lo[0] + next(8), lo[1] + next(8), lo[2] + next(30)];
        let e = IndexEntry::for_test(AABB::from_corners(lo, hi), i);
        tree.insert(e.clone());
        entries.push(e);
    }
    for e in entries.iter().step_by(3) {
        assert!(tree.remove(e).is_some());
    }
    for _ in 0..2000 {
        let lo = [next(210), next(210), next(210)];
        let q = AABB::from_corners(lo, [lo[0] + next(20), lo[1] + next(20), lo[2] + next(60)]);
        let mut walked = Vec::new();
        collect_intersecting(tree.root(), &Box3::of(&q), &mut walked);
        let mut walked: Vec<u32> = walked.into_iter().map(|r| *r.value).collect();
        let mut expected: Vec<u32> = tree.locate_in_envelope_intersecting(&q).map(|e| *e.row.value).collect();
        walked.sort_unstable();
        expected.sort_unstable();
        assert_eq!(walked, expected);
    }
}

/// Random puts, moves, notification bumps and deletes of subscriptions and intents: the index
/// must always hold exactly the rows' current handles, and searches must see current values.
#[test]
fn index_handles_follow_every_change() {
    use model::Subscription;
    let mut state = crate::state::State::default();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let subs: Vec<Subscription> = (0..20u32)
        .map(|i| {
            let mut oi = conformance::intent(vec![conformance::square(f64::from(i) * 300.0, 500.0, 0, 600)], None);
            oi.id = model::Uuid::from_u128(u128::from(i));
            Subscription {
                id: oi.id,
                manager: "uss1".into(),
                version: 1,
                notification_index: 0,
                extents: oi.extents,
                uss_base_url: "http://uss1.test".into(),
                notify_for_operational_intents: true,
                notify_for_constraints: false,
                implicit: false,
            }
        })
        .collect();
    let mut expected_index = std::collections::HashMap::new();
    for revision in 1..2000u64 {
        let sub = &subs[next(subs.len() as u64) as usize];
        let write = match next(4) {
            0 => {
                let east = next(20) as f64 * 300.0;
                expected_index.insert(sub.id, 0);
                Write::PutSubscription(Subscription {
                    extents: vec![conformance::square(east, 500.0, 0, 600)],
                    ..sub.clone()
                })
            }
            1 => {
                expected_index.remove(&sub.id);
                Write::DeleteSubscription(sub.id)
            }
            _ => {
                if let Some(n) = expected_index.get_mut(&sub.id) {
                    *n += 1;
                }
                Write::BumpNotificationIndex(sub.id)
            }
        };
        state.apply(vec![write], revision);
        state.subscriptions.check_index();
        let everywhere = conformance::square(-1000.0, 9000.0, 0, 600);
        let mut found: Vec<(model::Uuid, i32)> = state
            .subscriptions
            .search(&[everywhere], geo4d::Match::Exact)
            .iter()
            .map(|r| (r.value.id, r.value.notification_index))
            .collect();
        found.sort_unstable();
        let mut want: Vec<(model::Uuid, i32)> = expected_index.iter().map(|(k, v)| (*k, *v)).collect();
        want.sort_unstable();
        assert_eq!(found, want, "after write {revision}");
    }
}

/// A configuration and the same configuration rotated across the antimeridian (and one around
/// a pole) give the same search answers, and every answer is the brute-force exact one: the
/// split envelopes and polar caps never hide an intersection.
#[test]
fn searches_agree_across_the_antimeridian_and_at_the_poles() {
    use geo4d::{AltitudeBand, Circle, Footprint, LatLng, TimeWindow, Timestamp, Volume4D};
    let mut seed = 0x51_7cc1_b727_220a_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let band = AltitudeBand::new(Some(0.0), Some(100.0)).expect("band");
    let window = TimeWindow::new(Some(Timestamp(0)), Some(Timestamp(3_600_000_000))).expect("window");
    let circle = |lat: f64, lng: f64, r: f64| Volume4D {
        footprint: Footprint::Circle(Circle::new(LatLng::new(lat, lng).expect("point"), r).expect("circle")),
        altitude: band,
        time: window,
    };
    for (lat0, name) in [(-16.9, "Fiji"), (52.0, "Aleutians"), (89.97, "north pole"), (-89.97, "south pole")] {
        // Shapes within ~0.05° of longitude 0 (and of the pole for the polar cases).
        let shapes: Vec<(f64, f64, f64)> = (0..60)
            .map(|_| ((lat0 + (next() - 0.5) * 0.04).clamp(-90.0, 90.0), (next() - 0.5) * 0.1, 50.0 + next() * 1500.0))
            .collect();
        let queries: Vec<(f64, f64, f64)> = (0..40)
            .map(|_| ((lat0 + (next() - 0.5) * 0.04).clamp(-90.0, 90.0), (next() - 0.5) * 0.1, 10.0 + next() * 800.0))
            .collect();
        let answers = |shift: f64, how: geo4d::Match| -> Vec<Vec<usize>> {
            let wrap = |lng: f64| (lng + shift + 180.0).rem_euclid(360.0) - 180.0;
            let mut state = crate::state::State::default();
            let mut ids = std::collections::HashMap::new();
            for (i, (lat, lng, r)) in shapes.iter().enumerate() {
                let mut oi = conformance::intent(vec![circle(*lat, wrap(*lng), *r)], None);
                oi.id = model::Uuid::from_u128(i as u128 + 1);
                ids.insert(oi.id, i);
                state.apply(vec![Write::PutIntent(oi)], i as u64 + 1);
            }
            state.intents.check_index();
            queries
                .iter()
                .map(|(lat, lng, r)| {
                    let q = circle(*lat, wrap(*lng), *r);
                    let mut found: Vec<usize> = state
                        .intents
                        .search(std::slice::from_ref(&q), how)
                        .iter()
                        .map(|row| ids[&row.value.id])
                        .collect();
                    found.sort_unstable();
                    // Brute force over every stored row.
                    let mut brute: Vec<usize> = state
                        .intents
                        .rows
                        .values()
                        .filter(|row| geo4d::any_match(std::slice::from_ref(&q), &row.value.extents, how))
                        .map(|row| ids[&row.value.id])
                        .collect();
                    brute.sort_unstable();
                    assert_eq!(found, brute, "{name}, shift {shift}, {how:?}: the index missed or added a row");
                    found
                })
                .collect()
        };
        for how in [geo4d::Match::Exact, geo4d::Match::Relevant { margin_m: 30.0 }] {
            let base = answers(0.0, how);
            assert!(base.iter().any(|a| !a.is_empty()), "{name}: the configuration should have matches");
            for shift in [180.0, -179.97, 179.97, 90.0] {
                assert_eq!(answers(shift, how), base, "{name}, {how:?}: answers change when rotated by {shift}°");
            }
        }
        // Relevance finds everything exact matching finds, and (here) more.
        let (exact, relevant) =
            (answers(0.0, geo4d::Match::Exact), answers(0.0, geo4d::Match::Relevant { margin_m: 30.0 }));
        for (e, r) in exact.iter().zip(&relevant) {
            assert!(e.iter().all(|i| r.contains(i)), "{name}: relevance lost an intersecting row");
        }
        assert!(
            exact.iter().zip(&relevant).any(|(e, r)| r.len() > e.len()),
            "{name}: relevance should reach beyond intersection"
        );
    }
}

#[test]
fn remote_id_writes_round_trip_through_the_encoding() {
    let isa = conformance::isa(conformance::square(0.0, 100.0, 0, 60));
    let sub = model::rid::RidSubscription {
        notification_index: 7,
        ..conformance::rid_subscription(conformance::square(0.0, 500.0, 0, 600))
    };
    for w in [
        Write::PutIsa(isa.clone()),
        Write::DeleteIsa(isa.id),
        Write::PutRidSubscription(sub.clone()),
        Write::DeleteRidSubscription(sub.id),
        Write::BumpRidNotificationIndex(sub.id),
    ] {
        let back = crate::decode_write(&crate::encode_write(&w)).expect("decodes");
        let same = match (&w, &back) {
            (Write::PutIsa(a), Write::PutIsa(b)) => a == b,
            (Write::PutRidSubscription(a), Write::PutRidSubscription(b)) => a == b,
            (Write::DeleteIsa(a), Write::DeleteIsa(b))
            | (Write::DeleteRidSubscription(a), Write::DeleteRidSubscription(b))
            | (Write::BumpRidNotificationIndex(a), Write::BumpRidNotificationIndex(b)) => a == b,
            _ => false,
        };
        assert!(same, "{w:?} came back as {back:?}");
    }
    // A Remote ID record holds exactly one volume: a damaged count is refused, not guessed.
    let mut bytes = crate::encode_write(&Write::PutIsa(isa));
    let last = bytes.len();
    bytes.truncate(last - 1);
    assert!(crate::decode_write(&bytes).is_err());
}
