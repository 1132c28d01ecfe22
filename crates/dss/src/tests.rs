//! Unit tests of DSS rules with an injected clock, over the embedded store.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use geo4d::Timestamp;
use model::{OperationalIntentState, Uuid};
use store::conformance::square;

use crate::*;

struct ManualClock(AtomicI64);
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

fn caller(name: &str) -> Caller {
    Caller { manager: name.into(), scopes: vec![Scope::StrategicCoordination] }
}

#[tokio::test]
async fn expiry_removes_intents_and_their_implicit_subscriptions_after_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = store_embedded::EmbeddedStore::open(dir.path()).expect("open");
    let clock = Arc::new(ManualClock(AtomicI64::new(0)));
    let dss = Dss::new(store, clock.clone(), Config { retention_s: 100, ..Config::default() });
    let req = PutIntentRequest {
        extents: vec![square(0.0, 100.0, 10, 60)],
        key: vec![],
        state: OperationalIntentState::Accepted,
        uss_base_url: "http://a.test".into(),
        subscription_id: None,
        new_subscription: Some(ImplicitSubscriptionRequest {
            uss_base_url: "http://a.test".into(),
            notify_for_constraints: false,
        }),
        requested_ovn_suffix: None,
    };
    let id = Uuid::new_v4();
    let change = dss.put_intent(&caller("a"), id, None, req).await.expect("create");
    let sub = change.entity.intent.subscription_id.expect("implicit subscription");

    // Ended (t = 60 s) but within retention: still there, and its owner can read it.
    clock.0.store(120 * 1_000_000, Ordering::SeqCst);
    assert_eq!(dss.expire_once().await.expect("sweep"), 0);
    assert!(dss.get_intent(&caller("a"), id).await.is_ok());

    // Past end + retention: the intent, then its implicit subscription, are removed.
    clock.0.store(161 * 1_000_000, Ordering::SeqCst);
    assert_eq!(dss.expire_once().await.expect("sweep"), 2);
    assert!(matches!(dss.get_intent(&caller("a"), id).await, Err(DssError::NotFound(_))));
    assert!(matches!(dss.get_subscription(&caller("a"), sub).await, Err(DssError::NotFound(_))));
}

#[tokio::test]
async fn end_in_the_past_and_horizon_use_the_injected_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = store_embedded::EmbeddedStore::open(dir.path()).expect("open");
    let clock = Arc::new(ManualClock(AtomicI64::new(1_000 * 1_000_000)));
    let dss = Dss::new(store, clock, Config::default());
    // Each request in its own place, so none needs another's OVN in its key.
    let east = std::cell::Cell::new(0.0);
    let req = |t0, t1| PutIntentRequest {
        extents: vec![{
            east.set(east.get() + 1000.0);
            square(east.get(), 100.0, t0, t1)
        }],
        key: vec![],
        state: OperationalIntentState::Accepted,
        uss_base_url: "http://a.test".into(),
        subscription_id: None,
        new_subscription: None,
        requested_ovn_suffix: None,
    };
    let past = dss.put_intent(&caller("a"), Uuid::new_v4(), None, req(0, 999)).await;
    assert!(matches!(past, Err(DssError::BadRequest(m)) if m.contains("past")));
    // No horizon of our own: a year ahead is fine (neither the standard nor the reference DSS
    // limits it).
    dss.put_intent(&caller("a"), Uuid::new_v4(), None, req(2000, 1_000 + 365 * 86_400)).await.expect("far ahead");
    // A volume that already ended is fine while the union ends in the future.
    let mut mixed = req(2000, 3000);
    mixed.extents.insert(0, square(east.get(), 100.0, 0, 500));
    dss.put_intent(&caller("a"), Uuid::new_v4(), None, mixed).await.expect("union ends in the future");
    // Requested OVNs: a UUIDv7 of now gives `{id}_{suffix}`; anything else is refused, saying why.
    let at = |ms: u64| {
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        b[6] = 0x70;
        b[8] = 0x80;
        Uuid::from_bytes(b).to_string()
    };
    let id = Uuid::new_v4();
    let suffix = at(1_000_000);
    let r = dss
        .put_intent(
            &caller("a"),
            id,
            None,
            PutIntentRequest { requested_ovn_suffix: Some(suffix.clone()), ..req(2000, 3000) },
        )
        .await
        .expect("requested OVN");
    assert_eq!(r.entity.intent.ovn.as_str(), format!("{id}_{suffix}"));
    for (bad, needle) in [
        (String::new(), "empty"),
        ("not-a-uuid".to_owned(), "not a UUID"),
        (Uuid::new_v4().to_string(), "version 4"),
        (at(1_000_000 + 301_000), "from now"),
        (at(1_000_000 - 301_000), "from now"),
    ] {
        let got = dss
            .put_intent(
                &caller("a"),
                Uuid::new_v4(),
                None,
                PutIntentRequest { requested_ovn_suffix: Some(bad.clone()), ..req(2000, 3000) },
            )
            .await;
        assert!(matches!(&got, Err(DssError::BadRequest(m)) if m.contains(needle)), "`{bad}`: {got:?}");
    }
    dss.put_intent(
        &caller("a"),
        Uuid::new_v4(),
        None,
        PutIntentRequest { requested_ovn_suffix: Some(at(1_000_000 + 299_000)), ..req(2000, 3000) },
    )
    .await
    .expect("within 5 minutes");
    let ok = dss.put_intent(&caller("a"), Uuid::new_v4(), None, req(2000, 3000)).await.expect("within limits");
    assert_eq!(ok.entity.intent.subscription_id, None, "Accepted needs no subscription");
}

fn circle_volume(radius_m: f64, t0: i64, t1: i64) -> geo4d::Volume4D {
    use geo4d::{AltitudeBand, Circle, Footprint, LatLng, TimeWindow};
    geo4d::Volume4D {
        footprint: Footprint::Circle(Circle::new(LatLng::new(47.0, 8.0).expect("point"), radius_m).expect("circle")),
        altitude: AltitudeBand::new(Some(0.0), Some(120.0)).expect("band"),
        time: TimeWindow::new(Some(Timestamp(t0 * 1_000_000)), Some(Timestamp(t1 * 1_000_000))).expect("window"),
    }
}

#[tokio::test]
async fn a_subscription_under_intents_must_still_contain_them_and_once_written_is_explicit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = store_embedded::EmbeddedStore::open(dir.path()).expect("open");
    let clock = Arc::new(ManualClock(AtomicI64::new(0)));
    let dss = Dss::new(store, clock, Config::default());
    let a = caller("a");
    // An intent over a 400 m circle with an implicit subscription of its own extents.
    let req = PutIntentRequest {
        extents: vec![circle_volume(400.0, 10, 600)],
        key: vec![],
        state: OperationalIntentState::Accepted,
        uss_base_url: "http://a.test".into(),
        subscription_id: None,
        new_subscription: Some(ImplicitSubscriptionRequest {
            uss_base_url: "http://a.test".into(),
            notify_for_constraints: false,
        }),
        requested_ovn_suffix: None,
    };
    let id = Uuid::new_v4();
    let created = dss.put_intent(&a, id, None, req).await.expect("create");
    let sub_id = created.entity.intent.subscription_id.expect("implicit subscription");
    let sub = dss.get_subscription(&a, sub_id).await.expect("get subscription");
    assert!(sub.subscription.implicit);
    let put = |radius_m: f64| PutSubscriptionRequest {
        extents: circle_volume(radius_m, 0, 600),
        uss_base_url: "http://a.test".into(),
        notify_for_operational_intents: true,
        notify_for_constraints: false,
    };
    let version = sub.subscription.version_string();
    // A 50 m circle over the same centre meets the intent but does not contain it: 400.
    let shrunk = dss.put_subscription(&a, sub_id, Some(&version), put(50.0)).await;
    assert!(
        matches!(&shrunk, Err(DssError::BadRequest(m)) if m.contains("without subscription coverage")),
        "{shrunk:?}"
    );
    // 399 m neither; 400 m (the same circle) and 500 m do.
    assert!(dss.put_subscription(&a, sub_id, Some(&version), put(399.0)).await.is_err());
    let same = dss.put_subscription(&a, sub_id, Some(&version), put(400.0)).await.expect("the same circle");
    assert!(!same.subscription.subscription.implicit, "written through the endpoint: explicit");
    let version = same.subscription.subscription.version_string();
    dss.put_subscription(&a, sub_id, Some(&version), put(500.0)).await.expect("a larger circle");
    // Deleting the last intent leaves the now explicit subscription in place.
    let ovn = created.entity.intent.ovn.as_str().to_owned();
    dss.delete_intent(&a, id, &ovn).await.expect("delete intent");
    let kept = dss.get_subscription(&a, sub_id).await.expect("the explicit subscription stays");
    assert!(kept.dependent_intents.is_empty());
}

#[tokio::test]
async fn an_intent_attached_to_an_explicit_subscription_must_lie_within_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = store_embedded::EmbeddedStore::open(dir.path()).expect("open");
    let dss = Dss::new(store, Arc::new(ManualClock(AtomicI64::new(0))), Config::default());
    let a = caller("a");
    let sub_id = Uuid::new_v4();
    let sub = PutSubscriptionRequest {
        extents: circle_volume(100.0, 0, 600),
        uss_base_url: "http://a.test".into(),
        notify_for_operational_intents: true,
        notify_for_constraints: false,
    };
    dss.put_subscription(&a, sub_id, None, sub).await.expect("subscription");
    let req = |radius_m: f64| PutIntentRequest {
        extents: vec![circle_volume(radius_m, 10, 600)],
        key: vec![],
        state: OperationalIntentState::Accepted,
        uss_base_url: "http://a.test".into(),
        subscription_id: Some(sub_id),
        new_subscription: None,
        requested_ovn_suffix: None,
    };
    let outside = dss.put_intent(&a, Uuid::new_v4(), None, req(150.0)).await;
    assert!(matches!(&outside, Err(DssError::BadRequest(m)) if m.contains("does not cover")), "{outside:?}");
    dss.put_intent(&a, Uuid::new_v4(), None, req(90.0)).await.expect("within the subscription");
}

/// The embedded store, with the views it opens recorded, and its local views declared stale
/// or not (as a shared backend's are), to watch how mutations choose their views.
struct WatchedViews {
    inner: store_embedded::EmbeddedStore,
    local_is_fresh: bool,
    opened: std::sync::Mutex<Vec<store::Consistency>>,
}

impl store::Store for WatchedViews {
    async fn durable_barrier(&self) -> store::Result<()> {
        self.inner.durable_barrier().await
    }
    async fn settle(&self, revision: store::Revision) -> store::Result<()> {
        self.inner.settle(revision).await
    }
    async fn settle_area(
        &self,
        kinds: &[store::Kind],
        area: &[geo4d::Volume4D],
        how: store::Match,
    ) -> store::Result<()> {
        self.inner.settle_area(kinds, area, how).await
    }
    async fn view(&self, consistency: store::Consistency) -> store::Result<store::View> {
        self.opened.lock().expect("lock").push(consistency);
        let view = self.inner.view(consistency).await?;
        Ok(store::View { fresh: consistency == store::Consistency::Fresh || self.local_is_fresh, ..view })
    }
    async fn get_intent(&self, id: Uuid) -> store::Result<Option<store::Stored<model::OperationalIntent>>> {
        self.inner.get_intent(id).await
    }
    async fn search_intents(
        &self,
        area: &[geo4d::Volume4D],
        how: store::Match,
    ) -> store::Result<Vec<store::Stored<model::OperationalIntent>>> {
        self.inner.search_intents(area, how).await
    }
    async fn get_constraint(&self, id: Uuid) -> store::Result<Option<store::Stored<model::Constraint>>> {
        self.inner.get_constraint(id).await
    }
    async fn search_constraints(
        &self,
        area: &[geo4d::Volume4D],
        how: store::Match,
    ) -> store::Result<Vec<store::Stored<model::Constraint>>> {
        self.inner.search_constraints(area, how).await
    }
    async fn get_subscription(&self, id: Uuid) -> store::Result<Option<store::Stored<model::Subscription>>> {
        self.inner.get_subscription(id).await
    }
    async fn search_subscriptions(
        &self,
        area: &[geo4d::Volume4D],
        how: store::Match,
    ) -> store::Result<Vec<store::Stored<model::Subscription>>> {
        self.inner.search_subscriptions(area, how).await
    }
    async fn dependent_intents(&self, subscription: Uuid) -> store::Result<Vec<Uuid>> {
        self.inner.dependent_intents(subscription).await
    }
    async fn get_isa(&self, id: Uuid) -> store::Result<Option<store::Stored<model::rid::Isa>>> {
        self.inner.get_isa(id).await
    }
    async fn search_isas(
        &self,
        area: &[geo4d::Volume4D],
        how: store::Match,
    ) -> store::Result<Vec<store::Stored<model::rid::Isa>>> {
        self.inner.search_isas(area, how).await
    }
    async fn get_rid_subscription(
        &self,
        id: Uuid,
    ) -> store::Result<Option<store::Stored<model::rid::RidSubscription>>> {
        self.inner.get_rid_subscription(id).await
    }
    async fn search_rid_subscriptions(
        &self,
        area: &[geo4d::Volume4D],
        how: store::Match,
    ) -> store::Result<Vec<store::Stored<model::rid::RidSubscription>>> {
        self.inner.search_rid_subscriptions(area, how).await
    }
    async fn get_availability(&self, uss: &str) -> store::Result<Option<store::Stored<model::AvailabilityRecord>>> {
        self.inner.get_availability(uss).await
    }
    async fn usage(&self, manager: &str) -> store::Result<store::Usage> {
        self.inner.usage(manager).await
    }
    async fn expired(&self, cutoff: Timestamp) -> store::Result<Vec<(store::Key, store::Revision)>> {
        self.inner.expired(cutoff).await
    }
    async fn commit(&self, txn: store::Txn) -> store::Result<store::Committed> {
        self.inner.commit(txn).await
    }
}

#[tokio::test]
async fn a_mutation_decides_on_the_local_view_and_confirms_a_refusal_on_a_fresh_one() {
    use store::Consistency::{Fresh, Local};
    for local_is_fresh in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (inner, _) = store_embedded::EmbeddedStore::open(dir.path()).expect("open");
        let store = WatchedViews { inner, local_is_fresh, opened: Default::default() };
        let clock = Arc::new(ManualClock(AtomicI64::new(0)));
        let dss = Dss::new(store, clock, Config::default());
        let req = || PutIntentRequest {
            extents: vec![square(0.0, 100.0, 10, 60)],
            key: vec![],
            state: OperationalIntentState::Accepted,
            uss_base_url: "http://a.test".into(),
            subscription_id: None,
            new_subscription: Some(ImplicitSubscriptionRequest {
                uss_base_url: "http://a.test".into(),
                notify_for_constraints: false,
            }),
            requested_ovn_suffix: None,
        };
        let id = Uuid::new_v4();
        dss.put_intent(&caller("a"), id, None, req()).await.expect("create");
        let opened = std::mem::take(&mut *dss.store().opened.lock().expect("lock"));
        assert_eq!(opened, [Local], "a success on the local view needs no consistency point");

        let refused = dss.put_intent(&caller("a"), id, Some("not-the-ovn"), req()).await;
        assert!(matches!(refused, Err(DssError::Conflict(_))), "{refused:?}");
        let opened = std::mem::take(&mut *dss.store().opened.lock().expect("lock"));
        let expected: &[store::Consistency] = if local_is_fresh { &[Local] } else { &[Local, Fresh] };
        assert_eq!(opened, expected, "a refusal is final only on a fresh view (local_is_fresh {local_is_fresh})");
    }
}
