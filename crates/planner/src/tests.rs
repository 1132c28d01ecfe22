//! The planner's rules, and its proposals against a brute-force check.

use geo4d::{AltitudeBand, Circle, Footprint, LatLng, TimeWindow, Timestamp, Volume4D};
use model::OperationalIntentState;
use proptest::prelude::*;

use super::*;

const T0: i64 = 1_900_000_000_000_000;

fn vol(lat: f64, lng: f64, r: f64, lo: f64, hi: f64, t0_s: i64, t1_s: i64) -> Volume4D {
    let center = LatLng::new(lat, lng).expect("valid point");
    Volume4D {
        footprint: Footprint::Circle(Circle::new(center, r).expect("valid circle")),
        altitude: AltitudeBand::new(Some(lo), Some(hi)).expect("valid band"),
        time: TimeWindow::new(Some(Timestamp(T0 + t0_s * 1_000_000)), Some(Timestamp(T0 + t1_s * 1_000_000)))
            .expect("valid window"),
    }
}

fn intent(id: &str, priority: i32, volumes: Vec<Volume4D>) -> KnownIntent {
    KnownIntent {
        id: id.into(),
        manager: format!("manager-of-{id}"),
        state: OperationalIntentState::Accepted,
        priority,
        volumes,
    }
}

fn unverifiable(id: &str, t0_s: i64, t1_s: i64) -> Unverifiable {
    Unverifiable {
        kind: EntryKind::OperationalIntent,
        id: id.into(),
        manager: "silent".into(),
        state: Some(OperationalIntentState::Activated),
        time: TimeWindow::new(Some(Timestamp(T0 + t0_s * 1_000_000)), Some(Timestamp(T0 + t1_s * 1_000_000)))
            .expect("window"),
        reason: "details could not be parsed".into(),
    }
}

#[test]
fn equal_and_higher_priorities_block_lower_ones_do_not() {
    let theirs = vec![vol(47.0, 8.0, 300.0, 0.0, 120.0, 0, 600)];
    let mine = vec![vol(47.001, 8.0, 300.0, 50.0, 150.0, 300, 900)];
    for (their_priority, my_priority, blocked) in [(0, 0, true), (5, 0, true), (0, 5, false), (9, 10, false)] {
        let air = Airspace { intents: vec![intent("a", their_priority, theirs.clone())], ..Default::default() };
        let found = assess(&mine, my_priority, &air, None);
        assert_eq!(!found.is_empty(), blocked, "theirs {their_priority} vs mine {my_priority}: {found:?}");
        if blocked {
            let c = &found[0];
            assert_eq!(c.my_volume, 0);
            assert!(matches!(&c.blocker, Blocker::Intent { id, their_volume: 0, .. } if id == "a"));
            let band = c.overlap_altitude.expect("band");
            assert_eq!((band.lower_m(), band.upper_m()), (Some(50.0), Some(120.0)));
            assert_eq!(c.overlap_time.start(), Some(Timestamp(T0 + 300 * 1_000_000)));
            assert_eq!(c.overlap_time.end(), Some(Timestamp(T0 + 600 * 1_000_000)));
        }
    }
}

#[test]
fn an_operation_never_conflicts_with_itself_and_constraints_always_block() {
    let v = vec![vol(47.0, 8.0, 300.0, 0.0, 120.0, 0, 600)];
    let air = Airspace {
        intents: vec![intent("me", 100, v.clone())],
        constraints: vec![KnownConstraint { id: "zone".into(), manager: "authority".into(), volumes: v.clone() }],
        ..Default::default()
    };
    let found = assess(&v, 0, &air, Some("me"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(matches!(&found[0].blocker, Blocker::Constraint { id, .. } if id == "zone"));
    // Even the highest priority does not enter a constraint.
    assert_eq!(assess(&v, i32::MAX, &air, Some("me")).len(), 1);
}

#[test]
fn an_unverifiable_entry_blocks_its_whole_time_window_anywhere() {
    let air = Airspace { unverifiable: vec![unverifiable("x", 100, 200)], ..Default::default() };
    // Far away in space and altitude, but overlapping in time: blocked, and the reason says why.
    let far = vec![vol(-33.0, 151.0, 50.0, 5000.0, 5100.0, 150, 400)];
    let found = assess(&far, i32::MAX, &air, None);
    assert_eq!(found.len(), 1);
    assert!(matches!(&found[0].blocker, Blocker::Unverifiable { reason, .. } if reason.contains("parsed")));
    assert_eq!(found[0].overlap_altitude, None);
    // After its window: free.
    assert!(assess(&[vol(47.0, 8.0, 50.0, 0.0, 10.0, 201, 400)], 0, &air, None).is_empty());
    // No altitude proposal can clear it; a time shift past its end can.
    let props = proposals(&far, 0, &air, None, 7200);
    assert_eq!(props.len(), 1, "{props:?}");
    assert_eq!(props[0].change, Change::ShiftStart { seconds: 51 });
}

#[test]
fn proposals_come_earliest_shift_first_then_nearest_band() {
    let air = Airspace {
        intents: vec![intent("a", 0, vec![vol(47.0, 8.0, 300.0, 0.0, 120.0, 0, 600)])],
        ..Default::default()
    };
    let mine = vec![vol(47.0, 8.0, 100.0, 50.0, 100.0, 300, 900)];
    let props = proposals(&mine, 0, &air, None, 7200);
    assert_eq!(props.len(), 2, "{props:?}");
    assert_eq!(props[0].change, Change::ShiftStart { seconds: 301 });
    assert_eq!(props[1].change, Change::AltitudeOffset { metres: 71.0 });
    for p in &props {
        assert!(assess(&p.volumes, 0, &air, None).is_empty());
    }
    // Within a horizon too short for the shift, only the band is offered.
    let props = proposals(&mine, 0, &air, None, 100);
    assert_eq!(props.len(), 1);
    assert!(matches!(props[0].change, Change::AltitudeOffset { .. }));
}

/// Brute force: every pair of volumes of a plan and of the airspace, by the rule's definition.
fn brute_force_clear(mine: &[Volume4D], priority: i32, air: &Airspace) -> bool {
    let intents_clear = air
        .intents
        .iter()
        .all(|o| o.priority < priority || mine.iter().all(|m| o.volumes.iter().all(|v| !m.intersects(v))));
    let constraints_clear =
        air.constraints.iter().all(|c| mine.iter().all(|m| c.volumes.iter().all(|v| !m.intersects(v))));
    let unverifiable_clear = air.unverifiable.iter().all(|u| mine.iter().all(|m| !m.time.overlaps(&u.time)));
    intents_clear && constraints_clear && unverifiable_clear
}

fn arb_volume() -> impl Strategy<Value = Volume4D> {
    (-0.01f64..0.01, -0.01f64..0.01, 20.0f64..800.0, 0.0f64..300.0, 1.0f64..200.0, 0i64..3600, 1i64..1800)
        .prop_map(|(dlat, dlng, r, lo, thick, t0, dt)| vol(47.0 + dlat, 8.0 + dlng, r, lo, lo + thick, t0, t0 + dt))
}

fn arb_airspace() -> impl Strategy<Value = Airspace> {
    (
        prop::collection::vec((prop::collection::vec(arb_volume(), 1..3), 0i32..3), 0..5),
        prop::collection::vec(arb_volume(), 0..2),
        prop::collection::vec((0i64..3600, 1i64..900), 0..2),
    )
        .prop_map(|(intents, constraints, unverified)| Airspace {
            intents: intents.into_iter().enumerate().map(|(i, (v, p))| intent(&format!("i{i}"), p, v)).collect(),
            constraints: constraints
                .into_iter()
                .enumerate()
                .map(|(i, v)| KnownConstraint { id: format!("c{i}"), manager: "authority".into(), volumes: vec![v] })
                .collect(),
            unverifiable: unverified
                .into_iter()
                .enumerate()
                .map(|(i, (t0, dt))| unverifiable(&format!("u{i}"), t0, t0 + dt))
                .collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn assess_agrees_with_brute_force(mine in prop::collection::vec(arb_volume(), 1..3), priority in 0i32..3, air in arb_airspace()) {
        prop_assert_eq!(assess(&mine, priority, &air, None).is_empty(), brute_force_clear(&mine, priority, &air));
    }

    #[test]
    fn a_proposal_never_conflicts(mine in prop::collection::vec(arb_volume(), 1..3), priority in 0i32..3, air in arb_airspace()) {
        for p in proposals(&mine, priority, &air, None, 7200) {
            prop_assert!(brute_force_clear(&p.volumes, priority, &air), "{:?} conflicts", p.change);
            prop_assert_eq!(p.volumes.len(), mine.len());
            // The change is what it says: same footprints, times or bands moved uniformly.
            prop_assert_eq!(Some(p.volumes.clone()), apply(p.change, &mine));
        }
    }

    #[test]
    fn an_unverifiable_entry_always_blocks_what_overlaps_it(mine in prop::collection::vec(arb_volume(), 1..3), t0 in 0i64..3600, dt in 1i64..900, priority in any::<i32>()) {
        let air = Airspace { unverifiable: vec![unverifiable("u", t0, t0 + dt)], ..Default::default() };
        let overlapping = mine.iter().filter(|m| m.time.overlaps(&air.unverifiable[0].time)).count();
        let found = assess(&mine, priority, &air, None);
        prop_assert_eq!(found.len(), overlapping);
    }
}

#[test]
fn plan_times_are_checked_one_rule_at_a_time() {
    // T0 is "now"; `vol` takes seconds from T0.
    let now = Timestamp(T0);
    let day = 86_400;
    let ok = vol(47.0, 8.0, 100.0, 0.0, 100.0, 60, 3600);
    assert_eq!(check_plan_times(std::slice::from_ref(&ok), now), Ok(()));
    // A volume that started already and ends later is current.
    assert_eq!(check_plan_times(&[vol(47.0, 8.0, 100.0, 0.0, 100.0, -600, 600)], now), Ok(()));
    // Exactly at the horizon is accepted; a second beyond is not.
    let at_horizon = vol(47.0, 8.0, 100.0, 0.0, 100.0, 30 * day, 30 * day + 600);
    assert_eq!(check_plan_times(&[at_horizon], now), Ok(()));
    let beyond = vol(47.0, 8.0, 100.0, 0.0, 100.0, 30 * day + 1, 30 * day + 600);
    assert_eq!(
        check_plan_times(&[ok.clone(), beyond], now),
        Err(InvalidPlan::BeyondHorizon { volume: 1, starts_in_s: 30 * day + 1 })
    );
    assert_eq!(check_plan_times(&[], now), Err(InvalidPlan::NoVolumes));
    let ended = vol(47.0, 8.0, 100.0, 0.0, 100.0, -3600, -60);
    assert_eq!(check_plan_times(std::slice::from_ref(&ended), now), Err(InvalidPlan::Ended));
    assert_eq!(check_plan_times(&[ok.clone(), ended], now), Err(InvalidPlan::VolumeEnded { volume: 1 }));
    let long = vol(47.0, 8.0, 100.0, 0.0, 100.0, 60, 60 + MAX_PLAN_DURATION_S + 1);
    assert_eq!(check_plan_times(&[long], now), Err(InvalidPlan::TooLong { lasts_s: MAX_PLAN_DURATION_S + 1 }));
    let mut open = ok.clone();
    open.time = TimeWindow::new(Some(Timestamp(T0)), None).expect("open window");
    assert_eq!(check_plan_times(&[ok, open], now), Err(InvalidPlan::Unbounded { volume: 1 }));
    // Every refusal explains itself.
    let text = InvalidPlan::BeyondHorizon { volume: 0, starts_in_s: 31 * day }.to_string();
    assert!(text.contains("31.0 days") && text.contains("30 days"), "{text}");
}
