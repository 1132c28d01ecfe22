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
    let req = |t0, t1| PutIntentRequest {
        extents: vec![square(0.0, 100.0, t0, t1)],
        key: vec![],
        state: OperationalIntentState::Accepted,
        uss_base_url: "http://a.test".into(),
        subscription_id: None,
        new_subscription: None,
    };
    let past = dss.put_intent(&caller("a"), Uuid::new_v4(), None, req(0, 999)).await;
    assert!(matches!(past, Err(DssError::BadRequest(m)) if m.contains("past")));
    let far = dss.put_intent(&caller("a"), Uuid::new_v4(), None, req(2000, 1_000 + 91 * 86_400)).await;
    assert!(matches!(far, Err(DssError::BadRequest(m)) if m.contains("days")));
    let ok = dss.put_intent(&caller("a"), Uuid::new_v4(), None, req(2000, 3000)).await.expect("within limits");
    assert_eq!(ok.entity.intent.subscription_id, None, "Accepted needs no subscription");
}
