//! Behaviour every [`Store`] backend must show. A backend's tests call [`run_all`] with a
//! factory of fresh, empty stores.

use geo4d::{AltitudeBand, Circle, Footprint, LatLng, Polygon, TimeWindow, Timestamp, Volume4D};
use model::{OperationalIntent, OperationalIntentState, Ovn, Subscription, Uuid};

use crate::{Key, Kind, Match, Precondition, Store, StoreError, Txn, Write};

/// A square of side ~`side_m` metres near (47°N, 8°E), offset east by `east_m`, over 0-120 m
/// during [t0, t1] seconds.
pub fn square(east_m: f64, side_m: f64, t0: i64, t1: i64) -> Volume4D {
    let deg_lng = 1.0 / (111_320.0 * 47f64.to_radians().cos());
    let deg_lat = 1.0 / 111_200.0;
    let x0 = 8.0 + east_m * deg_lng;
    let (x1, y0, y1) = (x0 + side_m * deg_lng, 47.0, 47.0 + side_m * deg_lat);
    let p = |lat, lng| LatLng::new(lat, lng).expect("valid point");
    Volume4D {
        footprint: Footprint::Polygon(
            Polygon::new(vec![p(y0, x0), p(y0, x1), p(y1, x1), p(y1, x0)]).expect("valid square"),
        ),
        altitude: AltitudeBand::new(Some(0.0), Some(120.0)).expect("valid band"),
        time: TimeWindow::new(Some(Timestamp(t0 * 1_000_000)), Some(Timestamp(t1 * 1_000_000))).expect("valid window"),
    }
}

pub fn intent(extents: Vec<Volume4D>, subscription_id: Option<Uuid>) -> OperationalIntent {
    OperationalIntent {
        id: Uuid::new_v4(),
        manager: "uss1".into(),
        version: 1,
        state: OperationalIntentState::Accepted,
        ovn: Ovn::generate(),
        extents,
        uss_base_url: "http://uss1.test".into(),
        subscription_id,
    }
}

fn subscription(extents: Vec<Volume4D>) -> Subscription {
    Subscription {
        id: Uuid::new_v4(),
        manager: "uss1".into(),
        version: 1,
        notification_index: 0,
        extents,
        uss_base_url: "http://uss1.test".into(),
        notify_for_operational_intents: true,
        notify_for_constraints: false,
        implicit: false,
    }
}

fn put(oi: &OperationalIntent) -> Txn {
    Txn { preconditions: vec![], writes: vec![Write::PutIntent(oi.clone())] }
}

/// Runs every check on fresh stores from `make`.
pub async fn run_all<S: Store, F: FnMut() -> S>(mut make: F) {
    put_get_delete(&make()).await;
    revision_preconditions(&make()).await;
    area_preconditions(&make()).await;
    search_is_exact(&make()).await;
    notification_indexes_and_dependents(&make()).await;
    expiry_listing(&make()).await;
    bump_of_a_subscription_created_in_the_same_commit(&make()).await;
}

/// An intent created with its implicit subscription notifies that subscription in the same
/// commit (the DSS does this): the index counts from the new subscription.
pub async fn bump_of_a_subscription_created_in_the_same_commit<S: Store>(s: &S) {
    let sub = subscription(vec![square(0.0, 1000.0, 0, 600)]);
    let oi = intent(vec![square(10.0, 100.0, 0, 60)], Some(sub.id));
    let c = s
        .commit(Txn {
            preconditions: vec![Precondition::Revision { key: Key::Subscription(sub.id), revision: None }],
            writes: vec![
                Write::PutSubscription(sub.clone()),
                Write::PutIntent(oi),
                Write::BumpNotificationIndex(sub.id),
            ],
        })
        .await
        .expect("commit");
    assert_eq!(c.notification_indexes, vec![(sub.id, 1)]);
    assert_eq!(s.get_subscription(sub.id).await.expect("get").expect("present").value.notification_index, 1);
}

pub async fn put_get_delete<S: Store>(s: &S) {
    let oi = intent(vec![square(0.0, 100.0, 0, 60)], None);
    let c = s.commit(put(&oi)).await.expect("commit");
    let got = s.get_intent(oi.id).await.expect("get").expect("present");
    assert_eq!(*got.value, oi);
    assert_eq!(got.revision, c.revision);
    s.commit(Txn { preconditions: vec![], writes: vec![Write::DeleteIntent(oi.id)] }).await.expect("delete");
    assert!(s.get_intent(oi.id).await.expect("get").is_none());
}

pub async fn revision_preconditions<S: Store>(s: &S) {
    let oi = intent(vec![square(0.0, 100.0, 0, 60)], None);
    let absent = Precondition::Revision { key: Key::OperationalIntent(oi.id), revision: None };
    let first = s
        .commit(Txn { preconditions: vec![absent.clone()], writes: vec![Write::PutIntent(oi.clone())] })
        .await
        .expect("create when absent");
    let again = s.commit(Txn { preconditions: vec![absent], writes: vec![Write::PutIntent(oi.clone())] }).await;
    assert!(matches!(again, Err(StoreError::Conflict)), "second create must conflict");
    let at_first = Precondition::Revision { key: Key::OperationalIntent(oi.id), revision: Some(first.revision) };
    s.commit(Txn { preconditions: vec![at_first.clone()], writes: vec![Write::PutIntent(oi.clone())] })
        .await
        .expect("update at current revision");
    let stale = s.commit(Txn { preconditions: vec![at_first], writes: vec![Write::PutIntent(oi)] }).await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "stale revision must conflict");
}

pub async fn area_preconditions<S: Store>(s: &S) {
    let since = s.view(crate::Consistency::Fresh).await.expect("revision").revision;
    let here = square(0.0, 100.0, 0, 60);
    let far = square(50_000.0, 100.0, 0, 60);
    s.commit(put(&intent(vec![far.clone()], None))).await.expect("far write");
    let unchanged = |v: &Volume4D| Precondition::AreaUnchanged {
        kinds: vec![Kind::OperationalIntent],
        envelopes: v.envelopes().collect(),
        since,
    };
    s.commit(Txn { preconditions: vec![unchanged(&here)], writes: vec![] })
        .await
        .expect("a change 50 km away must not conflict");
    s.commit(put(&intent(vec![here.clone()], None))).await.expect("near write");
    let r = s.commit(Txn { preconditions: vec![unchanged(&here)], writes: vec![] }).await;
    assert!(matches!(r, Err(StoreError::Conflict)), "a change in the area must conflict");
    let other_kind =
        Precondition::AreaUnchanged { kinds: vec![Kind::Constraint], envelopes: here.envelopes().collect(), since };
    s.commit(Txn { preconditions: vec![other_kind], writes: vec![] }).await.expect("other kinds do not conflict");
}

pub async fn search_is_exact<S: Store>(s: &S) {
    // Two circles whose bounding boxes overlap at the corner but whose shapes do not.
    let center = LatLng::new(47.0, 8.0).expect("point");
    let circle = |lat: f64, lng: f64, r: f64| Volume4D {
        footprint: Footprint::Circle(Circle::new(LatLng::new(lat, lng).expect("point"), r).expect("circle")),
        altitude: AltitudeBand::new(Some(0.0), Some(100.0)).expect("band"),
        time: TimeWindow::new(Some(Timestamp(0)), Some(Timestamp(60_000_000))).expect("window"),
    };
    let a = intent(vec![circle(center.lat(), center.lng(), 100.0)], None);
    s.commit(put(&a)).await.expect("put");
    // ~170 m diagonal away: boxes (±100 m) overlap, circles (100 m + 50 m) do not.
    let probe = circle(47.0 + 120.0 / 111_200.0, 8.0 + 120.0 / 75_900.0, 50.0);
    assert!(s.search_intents(std::slice::from_ref(&probe), Match::Exact).await.expect("search").is_empty());
    let touching = circle(47.0 + 60.0 / 111_200.0, 8.0 + 60.0 / 75_900.0, 50.0);
    assert_eq!(s.search_intents(std::slice::from_ref(&touching), Match::Exact).await.expect("search").len(), 1);
    // Relevance reaches across the ~20 m gap with a 15 m margin on each side, not with 5 m.
    let relevant = |margin_m| Match::Relevant { margin_m };
    assert_eq!(s.search_intents(std::slice::from_ref(&probe), relevant(15.0)).await.expect("search").len(), 1);
    assert!(s.search_intents(std::slice::from_ref(&probe), relevant(5.0)).await.expect("search").is_empty());
    assert_eq!(
        s.search_intents(&[touching], relevant(0.0)).await.expect("search").len(),
        1,
        "relevance includes intersection"
    );
    let later = Volume4D { time: TimeWindow::new(Some(Timestamp(61_000_000)), None).expect("window"), ..probe };
    assert!(s.search_intents(&[later], relevant(15.0)).await.expect("search").is_empty(), "time still decides");
}

pub async fn notification_indexes_and_dependents<S: Store>(s: &S) {
    let sub = subscription(vec![square(0.0, 1000.0, 0, 600)]);
    s.commit(Txn { preconditions: vec![], writes: vec![Write::PutSubscription(sub.clone())] }).await.expect("sub");
    let oi = intent(vec![square(10.0, 100.0, 0, 60)], Some(sub.id));
    let bump = |id| Txn { preconditions: vec![], writes: vec![Write::BumpNotificationIndex(id)] };
    let c1 = s.commit(Txn {
        writes: vec![Write::PutIntent(oi.clone()), Write::BumpNotificationIndex(sub.id)],
        ..Default::default()
    });
    assert_eq!(c1.await.expect("commit").notification_indexes, vec![(sub.id, 1)]);
    assert_eq!(s.commit(bump(sub.id)).await.expect("bump").notification_indexes, vec![(sub.id, 2)]);
    let stored = s.get_subscription(sub.id).await.expect("get").expect("present");
    assert_eq!(stored.value.notification_index, 2);
    assert_eq!(s.dependent_intents(sub.id).await.expect("deps"), vec![oi.id]);
    s.commit(Txn { writes: vec![Write::DeleteIntent(oi.id)], ..Default::default() }).await.expect("delete");
    assert!(s.dependent_intents(sub.id).await.expect("deps").is_empty());
    let found = s.search_subscriptions(&[square(500.0, 10.0, 100, 200)], Match::Exact).await.expect("search");
    assert_eq!(found.len(), 1);
    // A search shows the bumped index, not the one the subscription was stored with.
    assert_eq!(found[0].value.notification_index, 2);
    s.commit(bump(sub.id)).await.expect("bump");
    let found = s.search_subscriptions(&[square(500.0, 10.0, 100, 200)], Match::Exact).await.expect("search");
    assert_eq!(found[0].value.notification_index, 3);
    // Updating and deleting a bumped subscription leaves nothing of it behind in searches.
    let moved = Subscription { extents: vec![square(5000.0, 100.0, 0, 600)], version: 2, ..sub.clone() };
    s.commit(Txn { writes: vec![Write::PutSubscription(moved)], ..Default::default() }).await.expect("move");
    assert!(s.search_subscriptions(&[square(500.0, 10.0, 100, 200)], Match::Exact).await.expect("search").is_empty());
    assert_eq!(s.search_subscriptions(&[square(5000.0, 10.0, 100, 200)], Match::Exact).await.expect("search").len(), 1);
    s.commit(bump(sub.id)).await.expect("bump");
    s.commit(Txn { writes: vec![Write::DeleteSubscription(sub.id)], ..Default::default() }).await.expect("delete");
    assert!(s.search_subscriptions(&[square(5000.0, 10.0, 100, 200)], Match::Exact).await.expect("search").is_empty());
}

pub async fn expiry_listing<S: Store>(s: &S) {
    let old = intent(vec![square(0.0, 100.0, 0, 60)], None);
    let new = intent(vec![square(0.0, 100.0, 1000, 2000)], None);
    s.commit(Txn { writes: vec![Write::PutIntent(old.clone()), Write::PutIntent(new)], ..Default::default() })
        .await
        .expect("put");
    let expired = s.expired(Timestamp(500 * 1_000_000)).await.expect("expired");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].0, Key::OperationalIntent(old.id));
}
