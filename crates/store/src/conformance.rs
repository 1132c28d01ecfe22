//! Behaviour every [`Store`] backend must show. A backend's tests call [`run_all`] with a
//! factory of fresh, empty stores.

use geo4d::{AltitudeBand, Circle, Footprint, LatLng, Polygon, TimeWindow, Timestamp, Volume4D};
use model::rid::{Isa, RidApi, RidSubscription};
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

/// How many fresh stores [`run_all`] asks its factory for (one per case).
pub const CASES: usize = 9;

/// Runs every check on fresh stores from `make`.
pub async fn run_all<S: Store, F: FnMut() -> S>(mut make: F) {
    put_get_delete(&make()).await;
    revision_preconditions(&make()).await;
    area_preconditions(&make()).await;
    search_is_exact(&make()).await;
    notification_indexes_and_dependents(&make()).await;
    expiry_listing(&make()).await;
    bump_of_a_subscription_created_in_the_same_commit(&make()).await;
    remote_id_entities_are_their_own(&make()).await;
    remote_id_preconditions_and_notification_indexes(&make()).await;
}

pub fn isa(extents: Volume4D) -> Isa {
    Isa {
        id: Uuid::new_v4(),
        manager: "sp1".into(),
        version: 1,
        url: "https://sp1.test/rid/v2".into(),
        writer: RidApi::V22a,
        extents,
    }
}

pub fn rid_subscription(extents: Volume4D) -> RidSubscription {
    RidSubscription {
        id: Uuid::new_v4(),
        manager: "dp1".into(),
        version: 1,
        notification_index: 0,
        url: "https://dp1.test/v1/isa_callback".into(),
        writer: RidApi::V19,
        extents,
    }
}

/// ISAs and Remote ID subscriptions are stored, searched exactly and expired, and never mixed
/// with the F3548 entities: an ISA is not an intent, and an F3411 subscription may share its
/// id with an F3548 one without either touching the other.
pub async fn remote_id_entities_are_their_own<S: Store>(s: &S) {
    let area = isa(square(0.0, 100.0, 0, 60));
    let later = isa(square(0.0, 100.0, 1000, 2000));
    let watcher = rid_subscription(square(0.0, 1000.0, 0, 600));
    let same_id = Subscription { id: watcher.id, ..subscription(vec![square(50_000.0, 100.0, 0, 600)]) };
    s.commit(Txn {
        writes: vec![
            Write::PutIsa(area.clone()),
            Write::PutIsa(later.clone()),
            Write::PutRidSubscription(watcher.clone()),
            Write::PutSubscription(same_id.clone()),
        ],
        ..Default::default()
    })
    .await
    .expect("put");
    let got = s.get_isa(area.id).await.expect("get").expect("present");
    assert_eq!(*got.value, area, "an ISA reads back as written");
    let got = s.get_rid_subscription(watcher.id).await.expect("get").expect("present");
    assert_eq!(*got.value, watcher, "a Remote ID subscription reads back as written");
    assert_eq!(
        s.get_subscription(watcher.id).await.expect("get").expect("present").value.uss_base_url,
        same_id.uss_base_url
    );
    // Exact search: a touching-in-time ISA is found, a later one is not; F3548 searches see none.
    let here = [square(50.0, 10.0, 30, 40)];
    let found: Vec<Uuid> =
        s.search_isas(&here, Match::Exact).await.expect("search").iter().map(|r| r.value.id).collect();
    assert_eq!(found, vec![area.id]);
    assert!(s.search_intents(&here, Match::Exact).await.expect("search").is_empty());
    assert!(s.get_intent(area.id).await.expect("get").is_none());
    let subs = s.search_rid_subscriptions(&here, Match::Exact).await.expect("search");
    assert_eq!(subs.iter().map(|r| r.value.id).collect::<Vec<_>>(), vec![watcher.id]);
    assert!(s.search_subscriptions(&here, Match::Exact).await.expect("search").is_empty());
    // Usage counts them apart from the F3548 quotas.
    let usage = s.usage("sp1").await.expect("usage");
    assert_eq!((usage.isas, usage.intents, usage.vertices), (2, 0, 0));
    assert_eq!(s.usage("dp1").await.expect("usage").rid_subscriptions, 1);
    // The live totals (the DSS's gauges) count each kind apart too.
    let live = s.live();
    assert_eq!(
        (live.isas, live.rid_subscriptions, live.subscriptions, live.intents, live.constraints),
        (2, 1, 1, 0, 0)
    );
    // Expiry lists an ended ISA by its own key.
    let expired = s.expired(Timestamp(500 * 1_000_000)).await.expect("expired");
    assert_eq!(expired.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), vec![Key::Isa(area.id)]);
    // Deleting the F3411 subscription leaves the F3548 one of the same id.
    s.commit(Txn {
        writes: vec![Write::DeleteRidSubscription(watcher.id), Write::DeleteIsa(area.id)],
        ..Default::default()
    })
    .await
    .expect("delete");
    assert!(s.get_rid_subscription(watcher.id).await.expect("get").is_none());
    assert!(s.get_isa(area.id).await.expect("get").is_none());
    assert!(s.get_subscription(watcher.id).await.expect("get").is_some());
    let live = s.live();
    assert_eq!((live.isas, live.rid_subscriptions, live.subscriptions), (1, 0, 1));
    assert_eq!(s.search_isas(&[square(50.0, 10.0, 1500, 1600)], Match::Exact).await.expect("search").len(), 1);
}

/// An ISA write is decided like any other: at the revision of the record read, and on an
/// unchanged area of ISAs; F3411 notification indexes count per subscription, apart from the
/// F3548 ones.
pub async fn remote_id_preconditions_and_notification_indexes<S: Store>(s: &S) {
    let first = isa(square(0.0, 100.0, 0, 60));
    let c = s.commit(Txn { writes: vec![Write::PutIsa(first.clone())], ..Default::default() }).await.expect("put");
    let at = |revision| Precondition::Revision { key: Key::Isa(first.id), revision };
    let moved = Isa { version: 2, extents: square(300.0, 100.0, 0, 60), ..first.clone() };
    s.commit(Txn { preconditions: vec![at(Some(c.revision))], writes: vec![Write::PutIsa(moved.clone())] })
        .await
        .expect("update at its revision");
    let stale =
        s.commit(Txn { preconditions: vec![at(Some(c.revision))], writes: vec![Write::PutIsa(first.clone())] }).await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "a stale ISA revision must conflict");
    let create_again = s.commit(Txn { preconditions: vec![at(None)], writes: vec![Write::PutIsa(first)] }).await;
    assert!(matches!(create_again, Err(StoreError::Conflict)), "an existing ISA is not created again");

    // Area preconditions on ISAs see ISA changes, and only those.
    let since = s.view(crate::Consistency::Fresh).await.expect("view").revision;
    let unchanged = |kind: Kind| Precondition::AreaUnchanged {
        kinds: vec![kind],
        envelopes: square(300.0, 100.0, 0, 60).envelopes().collect(),
        since,
    };
    s.commit(put(&intent(vec![square(300.0, 100.0, 0, 60)], None))).await.expect("an intent there");
    s.commit(Txn { preconditions: vec![unchanged(Kind::Isa)], writes: vec![] })
        .await
        .expect("an intent is no ISA change");
    s.commit(Txn { writes: vec![Write::DeleteIsa(moved.id)], ..Default::default() }).await.expect("delete");
    let after = s.commit(Txn { preconditions: vec![unchanged(Kind::Isa)], writes: vec![] }).await;
    assert!(matches!(after, Err(StoreError::Conflict)), "an ISA removed from the area is a change there");
    let rid_subs = s.commit(Txn { preconditions: vec![unchanged(Kind::RidSubscription)], writes: vec![] }).await;
    assert!(rid_subs.is_ok(), "nor is it a change of Remote ID subscriptions");

    // Notification indexes: one per subscription, F3411 and F3548 apart, even under one id.
    let watcher = rid_subscription(square(0.0, 1000.0, 0, 600));
    let twin = Subscription { id: watcher.id, ..subscription(vec![square(0.0, 1000.0, 0, 600)]) };
    let created = s
        .commit(Txn {
            writes: vec![
                Write::PutRidSubscription(watcher.clone()),
                Write::PutSubscription(twin),
                Write::BumpRidNotificationIndex(watcher.id),
            ],
            ..Default::default()
        })
        .await
        .expect("create and notify");
    assert_eq!(created.notification_indexes, vec![(watcher.id, 1)]);
    let bump = Txn { writes: vec![Write::BumpRidNotificationIndex(watcher.id)], ..Default::default() };
    assert_eq!(s.commit(bump.clone()).await.expect("bump").notification_indexes, vec![(watcher.id, 2)]);
    assert_eq!(s.get_rid_subscription(watcher.id).await.expect("get").expect("present").value.notification_index, 2);
    assert_eq!(s.get_subscription(watcher.id).await.expect("get").expect("present").value.notification_index, 0);
    let found = s.search_rid_subscriptions(&[square(10.0, 10.0, 10, 20)], Match::Exact).await.expect("search");
    assert_eq!(found.iter().map(|r| r.value.notification_index).collect::<Vec<_>>(), vec![2]);
    // Its owner rewriting it (with the index read, as the DSS writes it) keeps the count;
    // deleting it ends it.
    let renewed =
        RidSubscription { version: 2, notification_index: 2, extents: square(0.0, 1000.0, 0, 900), ..watcher.clone() };
    s.commit(Txn { writes: vec![Write::PutRidSubscription(renewed)], ..Default::default() }).await.expect("renew");
    assert_eq!(s.commit(bump).await.expect("bump").notification_indexes, vec![(watcher.id, 3)]);
    s.commit(Txn { writes: vec![Write::DeleteRidSubscription(watcher.id)], ..Default::default() })
        .await
        .expect("delete");
    assert!(s.search_rid_subscriptions(&[square(10.0, 10.0, 10, 20)], Match::Exact).await.expect("search").is_empty());
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
