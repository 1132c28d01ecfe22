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
    fn live(&self) -> store::Usage {
        self.inner.live()
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

mod remote_id {
    use geo4d::{TimeWindow, Timestamp, Volume4D};
    use model::rid::{RidApi, RidSubscription};
    use store::conformance::square;

    use super::*;
    use crate::rid::{RidRequest, RidSubscriber, MAX_SUBSCRIPTIONS_PER_AREA};

    const T: i64 = 1_000_000; // seconds

    fn dss() -> (Dss<store_embedded::EmbeddedStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = store_embedded::EmbeddedStore::open(dir.path()).expect("open");
        (Dss::new(store, Arc::new(ManualClock(AtomicI64::new(T * 1_000_000))), Config::default()), dir)
    }

    fn provider(name: &str) -> Caller {
        Caller { manager: name.into(), scopes: vec![Scope::RidServiceProvider] }
    }

    fn display(name: &str) -> Caller {
        Caller { manager: name.into(), scopes: vec![Scope::RidDisplayProvider] }
    }

    /// `square`'s volume east of the origin, from `t0` to `t1` seconds after T (ends optional).
    fn volume(east_m: f64, side_m: f64, t0: Option<i64>, t1: Option<i64>) -> Volume4D {
        let v = square(east_m, side_m, 0, 1);
        let at = |s: Option<i64>| s.map(|s| Timestamp((T + s) * 1_000_000));
        Volume4D { time: TimeWindow::new(at(t0), at(t1)).expect("window"), ..v }
    }

    fn isa_req(v: Volume4D) -> RidRequest {
        RidRequest { extents: v, url: "https://sp.test/rid/v2".into(), api: RidApi::V22a }
    }

    fn sub_req(v: Volume4D, url: &str) -> RidRequest {
        RidRequest { extents: v, url: url.into(), api: RidApi::V22a }
    }

    fn version(v: u64) -> String {
        model::rid::version_text(v)
    }

    #[tokio::test]
    async fn isa_versions_owners_and_the_subscribers_of_each_change() {
        let (dss, _dir) = dss();
        let near = dss
            .put_rid_subscription(
                &display("dp"),
                Uuid::new_v4(),
                None,
                sub_req(volume(0.0, 2000.0, None, Some(3600)), "https://dp.test"),
            )
            .await
            .expect("a subscription");
        let also_near = dss
            .put_rid_subscription(
                &display("dp"),
                Uuid::new_v4(),
                None,
                sub_req(volume(500.0, 500.0, None, Some(3600)), "https://dp.test"),
            )
            .await
            .expect("a second one of the same subscriber");
        dss.put_rid_subscription(
            &display("far"),
            Uuid::new_v4(),
            None,
            sub_req(volume(50_000.0, 100.0, None, Some(3600)), "https://far.test"),
        )
        .await
        .expect("a far one");
        let id = Uuid::new_v4();
        let created = dss
            .put_isa(&provider("sp"), id, None, isa_req(volume(100.0, 500.0, Some(0), Some(600))))
            .await
            .expect("create");
        let (a, b) = (near.subscription.id, also_near.subscription.id);
        assert_eq!(created.subscribers.len(), 1, "one subscriber, both its subscriptions: {:?}", created.subscribers);
        assert_eq!(created.subscribers[0].url, "https://dp.test");
        assert_eq!(sorted(&created.subscribers[0].subscriptions), sorted(&[(a, 1), (b, 1)]));
        assert_eq!(created.isa.manager, "sp");

        // Versions and owners, in the reference DSS's order.
        let again = dss.put_isa(&provider("sp"), id, None, isa_req(volume(100.0, 500.0, Some(0), Some(600)))).await;
        assert!(matches!(again, Err(DssError::Conflict(_))), "{again:?}");
        let stale =
            dss.put_isa(&provider("sp"), id, Some("0"), isa_req(volume(100.0, 500.0, Some(0), Some(600)))).await;
        assert!(matches!(stale, Err(DssError::Conflict(_))), "{stale:?}");
        let v1 = version(created.isa.version);
        let theirs =
            dss.put_isa(&provider("other"), id, Some(&v1), isa_req(volume(100.0, 500.0, Some(0), Some(600)))).await;
        assert!(matches!(theirs, Err(DssError::Forbidden(_))), "{theirs:?}");
        let missing = dss
            .put_isa(&provider("sp"), Uuid::new_v4(), Some(&v1), isa_req(volume(0.0, 10.0, Some(0), Some(60))))
            .await;
        // An update of a missing ISA is a bad request (the APIs list no 404 for it).
        assert!(matches!(missing, Err(DssError::BadRequest(ref m)) if m.contains("does not exist")), "{missing:?}");

        // Moving away out of `b`'s area notifies both (the area left and the area entered).
        let moved = dss
            .put_isa(&provider("sp"), id, Some(&v1), isa_req(volume(1500.0, 100.0, None, None)))
            .await
            .expect("update");
        assert_ne!(moved.isa.version, created.isa.version, "a new version on every write");
        assert_eq!(moved.isa.extents.time, created.isa.extents.time, "omitted times keep the current ones");
        assert_eq!(sorted(&moved.subscribers[0].subscriptions), sorted(&[(a, 2), (b, 2)]));
        // Deleting notifies the area it leaves: only `a` now.
        let wrong = dss.delete_isa(&provider("sp"), RidApi::V22a, id, &v1).await;
        assert!(matches!(wrong, Err(DssError::Conflict(_))), "{wrong:?}");
        let deleted =
            dss.delete_isa(&provider("sp"), RidApi::V22a, id, &version(moved.isa.version)).await.expect("delete");
        assert_eq!(
            deleted.subscribers,
            vec![RidSubscriber { url: "https://dp.test".into(), subscriptions: vec![(a, 3)] }]
        );
        let gone = dss.get_isa(&display("dp"), RidApi::V22a, id).await;
        assert!(matches!(gone, Err(DssError::NotFound(_))), "{gone:?}");
    }

    fn sorted(s: &[(Uuid, i32)]) -> Vec<(Uuid, i32)> {
        let mut s = s.to_vec();
        s.sort();
        s
    }

    #[tokio::test]
    async fn times_are_completed_and_bounded_as_the_reference_dss_does() {
        let (dss, _dir) = dss();
        let no_end =
            dss.put_isa(&provider("sp"), Uuid::new_v4(), None, isa_req(volume(0.0, 100.0, Some(0), None))).await;
        assert!(matches!(no_end, Err(DssError::BadRequest(ref m)) if m.contains("time_end")), "{no_end:?}");
        let long_ago =
            dss.put_isa(&provider("sp"), Uuid::new_v4(), None, isa_req(volume(0.0, 100.0, Some(-600), Some(60)))).await;
        assert!(matches!(long_ago, Err(DssError::BadRequest(ref m)) if m.contains("past")), "{long_ago:?}");
        let skewed =
            dss.put_isa(&provider("sp"), Uuid::new_v4(), None, isa_req(volume(0.0, 100.0, Some(-200), Some(60)))).await;
        assert!(skewed.is_ok(), "a start within the 5 min clock skew is accepted: {skewed:?}");
        // An update whose new start falls after the end it keeps.
        let made = skewed.expect("made");
        let update = isa_req(volume(0.0, 100.0, Some(120), None));
        let backwards = dss.put_isa(&provider("sp"), made.isa.id, Some(&version(made.isa.version)), update).await;
        assert!(
            matches!(backwards, Err(DssError::BadRequest(ref m)) if m.contains("after time_start")),
            "{backwards:?}"
        );

        let sub = dss
            .put_rid_subscription(
                &display("dp"),
                Uuid::new_v4(),
                None,
                sub_req(volume(0.0, 100.0, None, None), "https://dp.test"),
            )
            .await
            .expect("a subscription without times");
        let t = sub.subscription.extents.time;
        assert_eq!((t.start(), t.end()), (Some(Timestamp(T * 1_000_000)), Some(Timestamp((T + 86_400) * 1_000_000))));
        let too_long = dss
            .put_rid_subscription(
                &display("dp"),
                Uuid::new_v4(),
                None,
                sub_req(volume(0.0, 100.0, Some(0), Some(86_401)), "https://dp.test"),
            )
            .await;
        assert!(matches!(too_long, Err(DssError::BadRequest(ref m)) if m.contains("24 hours")), "{too_long:?}");
        assert_eq!(sub.service_areas.len(), 1, "the ISA made above is listed with the subscription");
    }

    #[tokio::test]
    async fn ended_isas_and_subscriptions_are_swept_after_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = store_embedded::EmbeddedStore::open(dir.path()).expect("open");
        let clock = Arc::new(ManualClock(AtomicI64::new(T * 1_000_000)));
        let dss = Dss::new(store, clock.clone(), Config { retention_s: 100, ..Config::default() });
        let isa = dss
            .put_isa(&provider("sp"), Uuid::new_v4(), None, isa_req(volume(0.0, 100.0, None, Some(60))))
            .await
            .expect("isa");
        let sub_req = sub_req(volume(0.0, 100.0, None, Some(120)), "https://dp.test");
        let sub = dss.put_rid_subscription(&display("dp"), Uuid::new_v4(), None, sub_req).await.expect("sub");
        // Ended, within retention: kept.
        clock.0.store((T + 150) * 1_000_000, Ordering::SeqCst);
        assert_eq!(dss.expire_once().await.expect("sweep"), 0);
        // The ISA (ended at +60) is past retention at +161; the subscription (ended at +120) at +221.
        clock.0.store((T + 161) * 1_000_000, Ordering::SeqCst);
        assert_eq!(dss.expire_once().await.expect("sweep"), 1);
        assert!(matches!(dss.get_isa(&display("dp"), RidApi::V22a, isa.isa.id).await, Err(DssError::NotFound(_))));
        clock.0.store((T + 221) * 1_000_000, Ordering::SeqCst);
        assert_eq!(dss.expire_once().await.expect("sweep"), 1);
        let gone = dss.get_rid_subscription(&display("dp"), RidApi::V22a, sub.subscription.id).await;
        assert!(matches!(gone, Err(DssError::NotFound(_))), "{gone:?}");
    }

    #[tokio::test]
    async fn isas_and_subscriptions_have_quotas_per_manager() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = store_embedded::EmbeddedStore::open(dir.path()).expect("open");
        let quotas = crate::Quotas { max_isas: 2, max_rid_subscriptions: 1, ..crate::Quotas::default() };
        let clock = Arc::new(ManualClock(AtomicI64::new(T * 1_000_000)));
        let dss = Dss::new(store, clock, Config { quotas, ..Config::default() });
        let isa = |east| isa_req(volume(east, 100.0, None, Some(600)));
        let first = dss.put_isa(&provider("sp"), Uuid::new_v4(), None, isa(0.0)).await.expect("first");
        dss.put_isa(&provider("sp"), Uuid::new_v4(), None, isa(1000.0)).await.expect("second");
        let third = dss.put_isa(&provider("sp"), Uuid::new_v4(), None, isa(2000.0)).await;
        assert!(
            matches!(third, Err(DssError::QuotaExceeded(ref m)) if m.contains("--max-isas-per-manager")),
            "{third:?}"
        );
        // An update adds nothing; another manager has its own count.
        let v = version(first.isa.version);
        dss.put_isa(&provider("sp"), first.isa.id, Some(&v), isa(0.0)).await.expect("an update within the quota");
        dss.put_isa(&provider("other"), Uuid::new_v4(), None, isa(2000.0)).await.expect("another manager");
        let sub = || sub_req(volume(0.0, 100.0, None, Some(600)), "https://dp.test");
        dss.put_rid_subscription(&display("dp"), Uuid::new_v4(), None, sub()).await.expect("first subscription");
        let second = dss.put_rid_subscription(&display("dp"), Uuid::new_v4(), None, sub()).await;
        assert!(
            matches!(second, Err(DssError::QuotaExceeded(ref m)) if m.contains("--max-rid-subscriptions-per-manager")),
            "{second:?}"
        );
    }

    #[tokio::test]
    async fn a_manager_holds_at_most_ten_subscriptions_over_an_area() {
        let (dss, _dir) = dss();
        let req = || sub_req(volume(0.0, 100.0, None, Some(600)), "https://dp.test");
        let mut ids = Vec::new();
        for _ in 0..MAX_SUBSCRIPTIONS_PER_AREA {
            ids.push(
                dss.put_rid_subscription(&display("dp"), Uuid::new_v4(), None, req())
                    .await
                    .expect("within the limit")
                    .subscription,
            );
        }
        let over = dss.put_rid_subscription(&display("dp"), Uuid::new_v4(), None, req()).await;
        assert!(matches!(over, Err(DssError::QuotaExceeded(_))), "{over:?}");
        // Another manager, another area, and an update of one of the ten are not refused.
        dss.put_rid_subscription(&display("other"), Uuid::new_v4(), None, req()).await.expect("another manager");
        dss.put_rid_subscription(
            &display("dp"),
            Uuid::new_v4(),
            None,
            sub_req(volume(9000.0, 100.0, None, Some(600)), "https://dp.test"),
        )
        .await
        .expect("elsewhere");
        let first: &RidSubscription = &ids[0];
        dss.put_rid_subscription(&display("dp"), first.id, Some(&version(first.version)), req())
            .await
            .expect("an update");
        // Only the caller's own subscriptions are searched and read.
        let mine = dss
            .search_rid_subscriptions(&display("dp"), RidApi::V22a, volume(0.0, 100.0, None, None).footprint)
            .await
            .expect("search");
        assert_eq!(mine.len(), MAX_SUBSCRIPTIONS_PER_AREA);
        let theirs = dss.get_rid_subscription(&display("other"), RidApi::V22a, first.id).await;
        assert!(matches!(theirs, Err(DssError::Forbidden(_))), "{theirs:?}");
        // Deletion needs the current version and the owner.
        let stale = dss.delete_rid_subscription(&display("dp"), RidApi::V22a, first.id, &version(first.version)).await;
        assert!(matches!(stale, Err(DssError::Conflict(_))), "{stale:?}");
    }

    #[tokio::test]
    async fn each_version_asks_for_its_own_scopes_and_searches_see_only_live_isas_in_time() {
        let (dss, _dir) = dss();
        let v19_writer = Caller { manager: "sp".into(), scopes: vec![Scope::RidWrite] };
        let refused =
            dss.put_isa(&v19_writer, Uuid::new_v4(), None, isa_req(volume(0.0, 100.0, Some(0), Some(600)))).await;
        assert!(
            matches!(refused, Err(DssError::Forbidden(_))),
            "an F3411-19 scope does not write through F3411-22a: {refused:?}"
        );
        let v19 = RidRequest {
            api: RidApi::V19,
            url: "https://sp.test/v1/uss/flights".into(),
            ..isa_req(volume(0.0, 100.0, Some(0), Some(600)))
        };
        let made = dss.put_isa(&v19_writer, Uuid::new_v4(), None, v19).await.expect("through F3411-19");
        assert_eq!(made.isa.writer, RidApi::V19);
        let cannot_read = dss.get_isa(&provider("sp"), RidApi::V22a, made.isa.id).await;
        assert!(matches!(cannot_read, Err(DssError::Forbidden(_))), "{cannot_read:?}");

        let at = |s: i64| Some(Timestamp((T + s) * 1_000_000));
        let area = volume(0.0, 100.0, None, None).footprint;
        let found = dss.search_isas(&display("dp"), RidApi::V22a, area.clone(), None, at(60)).await.expect("search");
        assert_eq!(
            found.iter().map(|i| i.id).collect::<Vec<_>>(),
            vec![made.isa.id],
            "both versions' ISAs are one set"
        );
        let later =
            dss.search_isas(&display("dp"), RidApi::V22a, area.clone(), at(700), at(800)).await.expect("search");
        assert!(later.is_empty(), "an ISA that ended before earliest_time is not found");
        let elsewhere = dss
            .search_isas(&display("dp"), RidApi::V22a, volume(20_000.0, 100.0, None, None).footprint, None, None)
            .await;
        assert!(elsewhere.expect("search").is_empty());
        let backwards = dss.search_isas(&display("dp"), RidApi::V22a, area, at(100), at(50)).await;
        assert!(matches!(backwards, Err(DssError::BadRequest(_))), "{backwards:?}");
    }
}

#[tokio::test]
async fn http_base_urls_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = store_embedded::EmbeddedStore::open(dir.path()).expect("open");
    let dss = Dss::new(
        store,
        Arc::new(ManualClock(AtomicI64::new(0))),
        Config { allow_http_base_urls: false, ..Config::default() },
    );
    let req = |base: &str, sub_base: &str| PutIntentRequest {
        extents: vec![square(0.0, 100.0, 10, 60)],
        key: vec![],
        state: OperationalIntentState::Accepted,
        uss_base_url: base.into(),
        subscription_id: None,
        new_subscription: Some(ImplicitSubscriptionRequest {
            uss_base_url: sub_base.into(),
            notify_for_constraints: false,
        }),
        requested_ovn_suffix: None,
    };
    for (base, sub_base, field) in [
        ("http://a.test", "https://a.test", "uss_base_url"),
        ("https://a.test", "http://a.test", "new_subscription.uss_base_url"),
    ] {
        match dss.put_intent(&caller("a"), Uuid::new_v4(), None, req(base, sub_base)).await {
            Err(DssError::BadRequest(m)) => {
                assert!(m.starts_with(field) && m.contains("https") && m.contains("--allow-http-base-urls"), "{m}")
            }
            other => panic!("{base} / {sub_base}: expected 400, got {other:?}"),
        }
    }
    dss.put_intent(&caller("a"), Uuid::new_v4(), None, req("https://a.test", "https://a.test"))
        .await
        .expect("https accepted");
}
