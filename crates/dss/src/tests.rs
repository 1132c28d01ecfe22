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
