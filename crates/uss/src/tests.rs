//! The workflows on fake ports: a DSS and peers in memory, a clock that advances when slept on
//! (so backoffs are checked without waiting), sequential ids. No HTTP, no timers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use geo4d::{AltitudeBand, Circle, Footprint, LatLng, TimeWindow, Timestamp, Volume4D};
use model::{OperationalIntentState, UssAvailability};
use parking_lot::Mutex;

use crate::domain::{Kind, Reference, Subscriber};
use crate::entities::{Change, OwnIntent, Pending};
use crate::error::UssError;
use crate::operator::Outcome;
use crate::ports::{
    Attempt, Clock, Dss, DssFailure, Ids, IntentWrite, IsaWritten, Peers, RidSubscriber, SubscriptionWrite, Written,
};
use crate::{Ports, Uss, UssConfig, Verifiers};

const ME: &str = "alpha";
const BASE: &str = "http://alpha.test";
const T0: i64 = 1_900_000_000_000_000;

fn volume(lat: f64, minutes: (i64, i64)) -> Volume4D {
    Volume4D {
        footprint: Footprint::Circle(Circle::new(LatLng::new(lat, 8.0).expect("point"), 200.0).expect("circle")),
        altitude: AltitudeBand::new(Some(0.0), Some(120.0)).expect("band"),
        time: TimeWindow::new(
            Some(Timestamp(T0).plus_seconds(minutes.0 * 60)),
            Some(Timestamp(T0).plus_seconds(minutes.1 * 60)),
        )
        .expect("window"),
    }
}

/// An entity the fake DSS holds.
#[derive(Clone)]
struct Held {
    reference: Reference,
    volumes: Vec<Volume4D>,
}

#[derive(Default)]
struct DssState {
    entities: BTreeMap<String, Held>,
    subscriptions: Vec<String>,
    /// Failures the next writes of intents meet, in order.
    put_failures: VecDeque<DssFailure>,
    /// Subscribers named for every change.
    subscribers: Vec<Subscriber>,
    /// Keys sent with each intent write.
    keys: Vec<Vec<String>>,
    /// How many more lookups (`get`) fail as if the DSS were unreachable.
    unreachable_gets: u32,
    n_ovn: u32,
    /// Remote ID: our ISAs (version, volume) and the subscribers named for every ISA change.
    isas: BTreeMap<String, (String, Volume4D)>,
    rid_subscribers: Vec<RidSubscriber>,
}

#[derive(Default)]
struct FakeDss(Mutex<DssState>);

impl FakeDss {
    fn reference(&self, kind: Kind, id: &str, manager: &str, version: i32, volumes: &[Volume4D]) -> Reference {
        let mut s = self.0.lock();
        s.n_ovn += 1;
        Reference {
            kind,
            id: id.into(),
            manager: manager.into(),
            version,
            ovn: Some(format!("ovn-{}", s.n_ovn)),
            state: (kind == Kind::Intent).then_some(OperationalIntentState::Accepted),
            time: model::time_bounds(volumes),
            base_url: format!("http://{manager}.test"),
            availability: UssAvailability::Normal,
            subscription_id: String::new(),
        }
    }

    /// Another manager's intent, as the DSS would hold it.
    fn hold(&self, r: Reference, volumes: Vec<Volume4D>) {
        self.0.lock().entities.insert(r.id.clone(), Held { reference: r, volumes });
    }

    fn written(&self, kind: Kind, id: &str, state: Option<OperationalIntentState>, volumes: &[Volume4D]) -> Written {
        let version = self.0.lock().entities.get(id).map_or(1, |h| h.reference.version + 1);
        let mut reference = self.reference(kind, id, ME, version, volumes);
        reference.state = state;
        reference.base_url = BASE.into();
        self.hold(reference.clone(), volumes.to_vec());
        Written { reference, subscribers: self.0.lock().subscribers.clone() }
    }
}

/// What our manager's reference looks like to others: the OVN only to its manager.
fn as_seen(r: &Reference) -> Reference {
    let mut r = r.clone();
    if r.manager != ME {
        r.ovn = None;
    }
    r
}

impl Dss for FakeDss {
    fn query<'a>(&'a self, kind: Kind, area: &'a Volume4D) -> BoxFuture<'a, Result<Vec<Reference>, DssFailure>> {
        let s = self.0.lock();
        let found = s
            .entities
            .values()
            .filter(|h| h.reference.kind == kind && h.volumes.iter().any(|v| v.intersects(area)))
            .map(|h| as_seen(&h.reference))
            .collect();
        async move { Ok(found) }.boxed()
    }
    fn get<'a>(&'a self, kind: Kind, id: &'a str) -> BoxFuture<'a, Result<Option<Reference>, DssFailure>> {
        let mut s = self.0.lock();
        if s.unreachable_gets > 0 {
            s.unreachable_gets -= 1;
            return async { Err(DssFailure::Failed("connection refused".into())) }.boxed();
        }
        let found = s.entities.get(id).filter(|h| h.reference.kind == kind).map(|h| as_seen(&h.reference));
        async move { Ok(found) }.boxed()
    }
    fn put_intent<'a>(
        &'a self,
        id: &'a str,
        _ovn: Option<&'a str>,
        write: IntentWrite<'a>,
    ) -> BoxFuture<'a, Result<Written, DssFailure>> {
        let result = {
            let mut s = self.0.lock();
            s.keys.push(write.key.to_vec());
            s.put_failures.pop_front()
        };
        let answer = match result {
            Some(failure) => Err(failure),
            None => Ok(self.written(Kind::Intent, id, Some(write.state), write.volumes)),
        };
        async move { answer }.boxed()
    }
    fn put_constraint<'a>(
        &'a self,
        id: &'a str,
        volumes: &'a [Volume4D],
        _base_url: &'a str,
    ) -> BoxFuture<'a, Result<Written, DssFailure>> {
        let written = self.written(Kind::Constraint, id, None, volumes);
        async move { Ok(written) }.boxed()
    }
    fn delete<'a>(
        &'a self,
        _kind: Kind,
        id: &'a str,
        _ovn: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<Subscriber>>, DssFailure>> {
        let mut s = self.0.lock();
        let answer = s.entities.remove(id).map(|_| s.subscribers.clone());
        async move { Ok(answer) }.boxed()
    }
    fn put_subscription<'a>(
        &'a self,
        id: &'a str,
        _write: SubscriptionWrite<'a>,
    ) -> BoxFuture<'a, Result<(), DssFailure>> {
        self.0.lock().subscriptions.push(id.to_owned());
        async move { Ok(()) }.boxed()
    }
    fn has_subscription<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, DssFailure>> {
        let has = self.0.lock().subscriptions.iter().any(|s| s == id);
        async move { Ok(has) }.boxed()
    }
    fn put_isa<'a>(
        &'a self,
        id: &'a str,
        version: Option<&'a str>,
        volume: &'a Volume4D,
        base_url: &'a str,
    ) -> BoxFuture<'a, Result<IsaWritten, DssFailure>> {
        let mut s = self.0.lock();
        let current = s.isas.get(id).map(|(v, _)| v.clone());
        let answer = if current.as_deref() != version {
            Err(DssFailure::StaleOvn(format!("ISA {id} is at version {current:?}, not {version:?}")))
        } else {
            let next = format!("{:016x}", s.isas.len() as u64 * 1000 + current.map_or(1, |c| c.len() as u64 + 1));
            s.isas.insert(id.to_owned(), (next.clone(), volume.clone()));
            let window = |t: Option<Timestamp>| api::time_to_wire(t.unwrap_or(Timestamp(T0)));
            Ok(IsaWritten {
                service_area: api::IdentificationServiceArea {
                    id: id.to_owned(),
                    owner: ME.into(),
                    uss_base_url: base_url.to_owned(),
                    version: next,
                    time_start: window(volume.time.start()),
                    time_end: window(volume.time.end()),
                },
                subscribers: s.rid_subscribers.clone(),
            })
        };
        async move { answer }.boxed()
    }
    fn put_rid_subscription<'a>(
        &'a self,
        _id: &'a str,
        _volume: &'a Volume4D,
        _base_url: &'a str,
    ) -> BoxFuture<'a, Result<(String, Vec<api::IdentificationServiceArea>), DssFailure>> {
        async move { Ok(("0000000000000001".to_owned(), vec![])) }.boxed()
    }
    fn delete_rid_subscription<'a>(&'a self, _id: &'a str, _version: &'a str) -> BoxFuture<'a, Result<(), DssFailure>> {
        async move { Ok(()) }.boxed()
    }
    fn search_isas<'a>(
        &'a self,
        _area: &'a str,
    ) -> BoxFuture<'a, Result<Vec<api::IdentificationServiceArea>, DssFailure>> {
        async move { Ok(vec![]) }.boxed()
    }
    fn get_isa<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<api::IdentificationServiceArea>, DssFailure>> {
        let held = self.0.lock().isas.get(id).map(|(v, volume)| {
            let window = |t: Option<Timestamp>| api::time_to_wire(t.unwrap_or(Timestamp(T0)));
            api::IdentificationServiceArea {
                id: id.to_owned(),
                owner: ME.into(),
                uss_base_url: format!("{BASE}/rid/v2"),
                version: v.clone(),
                time_start: window(volume.time.start()),
                time_end: window(volume.time.end()),
            }
        });
        async move { Ok(held) }.boxed()
    }
    fn delete_isa<'a>(
        &'a self,
        id: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<RidSubscriber>>, DssFailure>> {
        let mut s = self.0.lock();
        let answer = match s.isas.get(id) {
            None => Ok(None),
            Some((v, _)) if v != version => Err(DssFailure::StaleOvn(format!("ISA {id} is at version {v}"))),
            Some(_) => {
                s.isas.remove(id);
                Ok(Some(s.rid_subscribers.clone()))
            }
        };
        async move { answer }.boxed()
    }
}

/// Peers: details served from a table (or why not), notifications answered from a script.
#[derive(Default)]
struct FakePeers {
    details: Mutex<BTreeMap<String, Result<api::OperationalIntent, String>>>,
    /// Answers to successive notifications (acknowledged once the script is used up).
    notify_script: Mutex<VecDeque<Attempt>>,
    notified: Mutex<Vec<(String, String)>>,
}

impl Peers for FakePeers {
    fn intent_details<'a>(&'a self, r: &'a Reference) -> BoxFuture<'a, Result<api::OperationalIntent, String>> {
        let got = self.details.lock().get(&r.id).cloned().unwrap_or_else(|| Err("not served".into()));
        async move { got }.boxed()
    }
    fn constraint_details<'a>(&'a self, _r: &'a Reference) -> BoxFuture<'a, Result<api::Constraint, String>> {
        async move { Err("no constraints served".into()) }.boxed()
    }
    fn intent_telemetry<'a>(
        &'a self,
        _r: &'a Reference,
    ) -> BoxFuture<'a, Result<api::GetOperationalIntentTelemetryResponse, String>> {
        async move { Err("no telemetry served".into()) }.boxed()
    }
    fn rid_flights<'a>(
        &'a self,
        _base_url: &'a str,
        _view: &'a str,
    ) -> BoxFuture<'a, Result<api::GetFlightsResponse, String>> {
        async move { Err("no Remote ID flights served".into()) }.boxed()
    }
    fn rid_flight_details<'a>(
        &'a self,
        _base_url: &'a str,
        _id: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, String>> {
        async move { Err("no Remote ID details served".into()) }.boxed()
    }
    fn notify<'a>(&'a self, base_url: &'a str, path: &'a str, _body: &'a serde_json::Value) -> BoxFuture<'a, Attempt> {
        self.notified.lock().push((base_url.to_owned(), path.to_owned()));
        let attempt = self.notify_script.lock().pop_front().unwrap_or(Attempt::Acknowledged(204));
        async move { attempt }.boxed()
    }
}

/// A clock that moves only when slept on, and remembers every sleep.
struct FakeClock {
    now: Mutex<Timestamp>,
    slept: Mutex<Vec<Duration>>,
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.now.lock()
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.slept.lock().push(duration);
        let mut now = self.now.lock();
        *now = Timestamp(now.micros() + duration.as_micros() as i64);
        async {}.boxed()
    }
}

#[derive(Default)]
struct SequentialIds(Mutex<u64>);

impl Ids for SequentialIds {
    fn new_id(&self) -> String {
        let mut n = self.0.lock();
        *n += 1;
        format!("00000000-0000-4000-8000-{:012}", *n)
    }
}

struct World {
    uss: Arc<Uss>,
    dss: Arc<FakeDss>,
    peers: Arc<FakePeers>,
    clock: Arc<FakeClock>,
    _dir: tempfile::TempDir,
}

fn config() -> UssConfig {
    UssConfig {
        base_url: BASE.into(),
        dss_url: "http://dss.test".into(),
        scopes: vec![
            "utm.strategic_coordination".into(),
            "utm.constraint_processing".into(),
            "utm.conformance_monitoring_sa".into(),
            "rid.service_provider".into(),
        ],
        peer_timeout: Duration::from_secs(5),
        max_priority: 10,
        operator_subjects: vec![],
        telemetry_subjects: vec![],
        notify_retry_for: Duration::from_secs(60),
        crash_at: None,
        flight_planning: false,
        flight_planning_subjects: vec![],
        rid_testing: false,
        rid_testing_subjects: vec![],
        slow_answers: None,
        monitor: crate::telemetry::MonitorConfig::default(),
        allow_http_base_urls: true,
        trust: client::tls::Trust::default(),
    }
}

fn verifier() -> auth::Verifier {
    let pem = include_bytes!("../../../tests/fixtures/rs256-public.pem").to_vec();
    auth::Verifier::new(&[("test".into(), pem)], vec!["localhost".into()]).expect("verifier")
}

/// A participant on fresh fakes, or on `dir` (its records kept from a previous life).
fn world_in(dir: tempfile::TempDir, dss: Arc<FakeDss>) -> World {
    let peers = Arc::new(FakePeers::default());
    let clock = Arc::new(FakeClock { now: Mutex::new(Timestamp(T0 - 600_000_000)), slept: Mutex::default() });
    let ports =
        Ports { dss: dss.clone(), peers: peers.clone(), clock: clock.clone(), ids: Arc::new(SequentialIds::default()) };
    let verifiers = Verifiers { peer: verifier(), operator: verifier(), flight_planning: None };
    let uss = Uss::with_ports(config(), ME.into(), ports, verifiers, dir.path()).expect("open");
    World { uss, dss, peers, clock, _dir: dir }
}

fn world() -> World {
    world_in(tempfile::tempdir().expect("tempdir"), Arc::new(FakeDss::default()))
}

/// Waits (by yielding, never by a timer) until `done` holds; fails with what was seen.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{what} never happened");
}

#[tokio::test]
async fn a_plan_on_free_airspace_is_written_with_an_empty_key_and_recorded() {
    let w = world();
    let out = w.uss.plan_new(vec![volume(47.0, (0, 20))], 0).await.expect("planned");
    assert_eq!(out.outcome, Outcome::Planned);
    let id = out.operational_intent_id.expect("id");
    let own = w.uss.own_intent(&id).expect("recorded");
    assert_eq!(
        (own.state, own.reference.version, own.reference.manager.as_str()),
        (OperationalIntentState::Accepted, 1, ME)
    );
    assert!(!w.uss.records.is_pending(&id), "the write-ahead record is gone once the outcome is recorded");
    assert_eq!(w.dss.0.lock().keys, vec![Vec::<String>::new()]);
}

#[tokio::test]
async fn a_plan_that_loses_a_race_surveys_again_and_retries_after_a_backoff() {
    let w = world();
    w.dss.0.lock().put_failures.push_back(DssFailure::KeyMissing("someone else wrote".into()));
    let out = w.uss.plan_new(vec![volume(47.0, (0, 20))], 0).await.expect("planned");
    assert_eq!((out.outcome, out.attempts), (Outcome::Planned, 2));
    assert_eq!(
        *w.clock.slept.lock(),
        vec![Duration::from_millis(20)],
        "one backoff of 20 ms before the second attempt"
    );
    assert_eq!(w.dss.0.lock().keys.len(), 2);
}

#[tokio::test]
async fn a_plan_against_a_verified_operation_carries_its_ovn_and_a_conflict_is_refused() {
    let w = world();
    let theirs = volume(47.0, (70, 90));
    let r = w.dss.reference(
        Kind::Intent,
        "00000000-0000-4000-8000-00000000bbbb",
        "bravo",
        1,
        std::slice::from_ref(&theirs),
    );
    w.dss.hold(r.clone(), vec![theirs.clone()]);
    let served = crate::entities::KnownIntent {
        reference: r.clone(),
        state: OperationalIntentState::Accepted,
        priority: 0,
        volumes: vec![theirs.clone()],
        off_nominal_volumes: vec![],
    };
    w.peers.details.lock().insert(r.id.clone(), Ok(served.to_wire()));
    // Before it: planned, with their OVN in the key (the survey covers the proposals' horizon).
    let out = w.uss.plan_new(vec![volume(47.0, (40, 60))], 0).await.expect("planned");
    assert_eq!(out.outcome, Outcome::Planned);
    assert_eq!(w.dss.0.lock().keys.last().cloned(), Some(vec![r.ovn.clone().expect("ovn")]));
    // On it: refused with the conflict, nothing written.
    let writes = w.dss.0.lock().keys.len();
    let out = w.uss.plan_new(vec![volume(47.0, (75, 85))], 0).await.expect("answered");
    assert_eq!(out.outcome, Outcome::Refused);
    assert_eq!((out.conflicts[0].kind.as_str(), out.conflicts[0].id.as_str()), ("operational_intent", r.id.as_str()));
    assert_eq!(w.dss.0.lock().keys.len(), writes);
}

#[tokio::test]
async fn unverifiable_details_block_unless_the_dss_does_not_require_them() {
    let w = world();
    let theirs = volume(47.0, (0, 30));
    let mut r = w.dss.reference(
        Kind::Intent,
        "00000000-0000-4000-8000-00000000cccc",
        "charlie",
        1,
        std::slice::from_ref(&theirs),
    );
    w.dss.hold(r.clone(), vec![theirs.clone()]);
    w.peers.details.lock().insert(r.id.clone(), Err("its USS did not answer within 5 s".into()));
    let out = w.uss.plan_new(vec![volume(47.0, (10, 20))], 0).await.expect("answered");
    assert_eq!(out.outcome, Outcome::Refused);
    assert_eq!(out.conflicts[0].kind, "unverifiable");
    assert!(out.conflicts[0].reason.contains("did not answer"), "{}", out.conflicts[0].reason);
    // The same intent, Accepted, of a USS the DSS marks Down: not required in keys, not blocking.
    r.availability = UssAvailability::Down;
    w.dss.hold(r.clone(), vec![theirs.clone()]);
    let out = w.uss.plan_new(vec![volume(47.0, (10, 20))], 0).await.expect("answered");
    assert_eq!(out.outcome, Outcome::Planned, "{}", out.message);
    // Activated, it blocks again.
    r.state = Some(OperationalIntentState::Activated);
    w.dss.hold(r, vec![theirs]);
    let out = w.uss.plan_new(vec![volume(47.0, (10, 20))], 0).await.expect("answered");
    assert_eq!(out.outcome, Outcome::Refused);
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_doubling_backoff_until_acknowledged() {
    let w = world();
    w.dss.0.lock().subscribers =
        vec![Subscriber { base_url: "http://bravo.test".into(), subscriptions: vec![("s1".into(), 3)] }];
    w.peers.notify_script.lock().extend([Attempt::Answered(503), Attempt::Unreachable("refused".into())]);
    let out = w.uss.plan_new(vec![volume(47.0, (0, 20))], 0).await.expect("planned");
    let id = out.operational_intent_id.expect("id");
    assert!(out.notified[0].sending, "answered before the first attempt finished");
    until("the third attempt acknowledged", || {
        w.uss.own_intent(&id).is_some_and(|o| o.notified.first().is_some_and(|d| d.acknowledged))
    })
    .await;
    let d = w.uss.own_intent(&id).expect("own").notified[0].clone();
    assert_eq!((d.attempts, d.retrying, d.status), (3, false, 204));
    assert_eq!(*w.clock.slept.lock(), vec![Duration::from_secs(1), Duration::from_secs(2)]);
    assert!(w
        .peers
        .notified
        .lock()
        .iter()
        .all(|(base, path)| base == "http://bravo.test" && path == "/uss/v1/operational_intents"));
}

#[tokio::test]
async fn a_refused_delivery_is_not_retried_and_we_never_notify_ourselves() {
    let w = world();
    w.dss.0.lock().subscribers = vec![
        Subscriber { base_url: "http://bravo.test".into(), subscriptions: vec![("s1".into(), 1)] },
        Subscriber { base_url: format!("{BASE}/"), subscriptions: vec![("s2".into(), 1)] },
    ];
    w.peers.notify_script.lock().push_back(Attempt::Answered(400));
    let out = w.uss.plan_new(vec![volume(47.0, (0, 20))], 0).await.expect("planned");
    assert_eq!(out.notified.len(), 1, "ourselves left out: {:?}", out.notified);
    let id = out.operational_intent_id.expect("id");
    until("the refusal recorded", || w.uss.own_intent(&id).is_some_and(|o| !o.notified[0].sending)).await;
    let d = w.uss.own_intent(&id).expect("own").notified[0].clone();
    assert_eq!((d.acknowledged, d.retrying, d.attempts, d.status), (false, false, 1, 400));
    assert!(w.clock.slept.lock().is_empty());
}

/// Leaves `pending` behind as a crash would, with `dss` as the DSS then holds it, restarts on
/// the same records and reconciles.
async fn after_crash(
    pending: Change,
    previous_version: Option<i32>,
    own: Option<OwnIntent>,
    dss: Arc<FakeDss>,
) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = "00000000-0000-4000-8000-00000000aaaa";
    {
        let before = world_in(tempfile::tempdir().expect("scratch"), Arc::new(FakeDss::default()));
        drop(before);
        let records = crate::records::Records::open(dir.path()).expect("open");
        if let Some(own) = own {
            records.settle(&own).await.expect("own intent");
        }
        records
            .write_ahead(Pending { id: id.into(), change: pending, previous_version, recorded_at: Timestamp(T0) })
            .await
            .expect("write-ahead");
    }
    let w = world_in(dir, dss);
    assert!(w.uss.records.is_pending(id), "the write-ahead record survived the crash");
    assert_eq!(w.uss.reconcile().await, 0, "every record reconciled");
    assert!(!w.uss.records.is_pending(id));
    w
}

#[tokio::test]
async fn reconciliation_finishes_or_undoes_each_crash_point() {
    let id = "00000000-0000-4000-8000-00000000aaaa";
    let v = vec![volume(47.0, (0, 20))];
    let put = Change::PutIntent {
        state: OperationalIntentState::Accepted,
        priority: 2,
        volumes: v.clone(),
        off_nominal: vec![],
    };

    // Crashed after the write-ahead record, before the DSS: the DSS holds nothing; nothing is kept.
    let w = after_crash(put.clone(), None, None, Arc::new(FakeDss::default())).await;
    assert!(w.uss.own_intent(id).is_none());

    // Crashed after the DSS wrote it: finished with the details we meant.
    let dss = Arc::new(FakeDss::default());
    dss.written(Kind::Intent, id, Some(OperationalIntentState::Accepted), &v);
    let w = after_crash(put.clone(), None, None, dss).await;
    let own = w.uss.own_intent(id).expect("finished");
    assert_eq!((own.priority, own.volumes.len(), own.reference.version), (2, 1, 1));

    // An update the DSS never saw: the previous version stays, the record is dropped.
    let dss = Arc::new(FakeDss::default());
    let held = dss.written(Kind::Intent, id, Some(OperationalIntentState::Accepted), &v);
    let previous = OwnIntent::new(held.reference.clone(), OperationalIntentState::Accepted, 0, v.clone());
    let w = after_crash(put, Some(1), Some(previous), dss).await;
    assert_eq!(w.uss.own_intent(id).expect("kept").priority, 0);

    // An end the DSS made: the intent is gone here too.
    let w = after_crash(
        Change::DeleteIntent,
        Some(1),
        Some(OwnIntent::new(held.reference.clone(), OperationalIntentState::Accepted, 0, v.clone())),
        Arc::new(FakeDss::default()),
    )
    .await;
    assert!(w.uss.own_intent(id).is_none());

    // An end the DSS never saw: the intent is kept.
    let dss = Arc::new(FakeDss::default());
    let held = dss.written(Kind::Intent, id, Some(OperationalIntentState::Accepted), &v);
    let w = after_crash(
        Change::DeleteIntent,
        Some(1),
        Some(OwnIntent::new(held.reference, OperationalIntentState::Accepted, 0, v.clone())),
        dss,
    )
    .await;
    assert!(w.uss.own_intent(id).is_some());

    // A subscription the DSS made is recorded for the map; one it never saw is forgotten.
    let dss = Arc::new(FakeDss::default());
    dss.0.lock().subscriptions.push(id.into());
    let w = after_crash(Change::PutSubscription { volume: v[0].clone() }, None, None, dss).await;
    let kept: Vec<(String, serde_json::Value)> =
        w.uss.records.load_all(crate::db::Table::Subscriptions).await.expect("read");
    assert_eq!(kept.len(), 1);
    let w =
        after_crash(Change::PutSubscription { volume: v[0].clone() }, None, None, Arc::new(FakeDss::default())).await;
    let kept: Vec<(String, serde_json::Value)> =
        w.uss.records.load_all(crate::db::Table::Subscriptions).await.expect("read");
    assert!(kept.is_empty());
}

#[tokio::test]
async fn reconciliation_at_start_up_waits_out_an_unreachable_dss_with_doubling_pauses() {
    let id = "00000000-0000-4000-8000-00000000aaaa";
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let records = crate::records::Records::open(dir.path()).expect("open");
        let change = Change::PutIntent {
            state: OperationalIntentState::Accepted,
            priority: 0,
            volumes: vec![volume(47.0, (0, 20))],
            off_nominal: vec![],
        };
        records
            .write_ahead(Pending { id: id.into(), change, previous_version: None, recorded_at: Timestamp(T0) })
            .await
            .expect("write-ahead");
    }
    let dss = Arc::new(FakeDss::default());
    dss.0.lock().unreachable_gets = 3;
    let w = world_in(dir, dss);
    w.uss.reconcile_until_done().await;
    assert!(!w.uss.records.is_pending(id), "reconciled once the DSS answered");
    assert_eq!(*w.clock.slept.lock(), [1, 2, 4].map(Duration::from_secs));
}

#[tokio::test]
async fn reconciliation_removes_our_orphaned_references_in_the_area() {
    let dss = Arc::new(FakeDss::default());
    let v = vec![volume(47.0, (0, 20))];
    // A reference of ours nobody here knows (the crash came before the write-ahead record of
    // a previous attempt was written back), in the area of a change being reconciled.
    dss.written(Kind::Intent, "00000000-0000-4000-8000-00000000dead", Some(OperationalIntentState::Accepted), &v);
    let put =
        Change::PutIntent { state: OperationalIntentState::Accepted, priority: 0, volumes: v, off_nominal: vec![] };
    let w = after_crash(put, None, None, dss).await;
    assert!(w.dss.0.lock().entities.is_empty(), "the orphan was removed from the DSS");
}

#[tokio::test]
async fn ending_a_constraint_goes_through_the_same_steps_as_an_intent() {
    let w = world();
    w.dss.0.lock().subscribers =
        vec![Subscriber { base_url: "http://bravo.test".into(), subscriptions: vec![("s1".into(), 1)] }];
    let published = w.uss.publish_constraint(vec![volume(47.0, (0, 20))]).await.expect("published");
    assert_eq!(published.outcome, Outcome::Published);
    let ended = w.uss.end_constraint(&published.constraint_id).await.expect("ended");
    assert_eq!((ended.outcome, ended.notified.len()), (Outcome::Ended, 1));
    assert!(w.dss.0.lock().entities.is_empty());
    assert!(w.uss.records.own::<crate::entities::OwnConstraint>(&published.constraint_id).is_none());
    until("both notifications sent", || w.peers.notified.lock().len() == 2).await;
    assert!(w.peers.notified.lock().iter().all(|(_, path)| path == "/uss/v1/constraints"));
}

/// A position reported at `s` seconds after T0, `east_m` metres east of the test volumes'
/// centre (their circle has a 200 m radius).
fn position_at(s: i64, east_m: f64) -> crate::telemetry::Position {
    crate::telemetry::Position {
        time: Timestamp(T0).plus_seconds(s),
        at: LatLng::new(47.0, 8.0 + east_m / 76_000.0).expect("point"),
        alt_m: 60.0,
        accuracy_h_m: 5.0,
        accuracy_v_m: 3.0,
        speed_mps: Some(8.0),
        track_deg: Some(90.0),
    }
}

fn dss_state_of(w: &World, id: &str) -> (Option<OperationalIntentState>, usize) {
    let s = w.dss.0.lock();
    let h = s.entities.get(id).expect("held by the DSS");
    (h.reference.state, h.volumes.len())
}

#[tokio::test]
async fn the_monitor_makes_a_deviating_flight_nonconforming_then_activated_again_and_a_silent_one_lost() {
    let w = world();
    let out = w.uss.plan_new(vec![volume(47.0, (0, 20))], 0).await.expect("planned");
    let id = out.operational_intent_id.expect("id");
    // Positions of a flight not yet flying are refused.
    let early = w.uss.positions(&id, vec![position_at(0, 0.0)]).await.expect_err("not flying");
    assert!(matches!(early, UssError::WrongState(_)), "{early:?}");
    let unknown = w.uss.positions("nope", vec![position_at(0, 0.0)]).await.expect_err("not ours");
    assert!(matches!(unknown, UssError::NotFound(_)), "{unknown:?}");
    w.uss.transition(&id, OperationalIntentState::Activated).await.expect("activated");
    *w.clock.now.lock() = Timestamp(T0).plus_seconds(60);

    let inside = w.uss.positions(&id, vec![position_at(59, 0.0), position_at(60, 20.0)]).await.expect("taken");
    assert!(inside.conforming && inside.automatic_change.is_none(), "{inside:?}");
    assert_eq!(inside.accepted, 2);

    // 500 m east of the centre: 300 m outside the 200 m circle.
    let outside = w.uss.positions(&id, vec![position_at(61, 500.0)]).await.expect("taken");
    assert!(!outside.conforming);
    assert!(outside.outside.as_deref().is_some_and(|o| o.contains("m outside it horizontally")), "{outside:?}");
    assert!(outside.automatic_change.as_deref().is_some_and(|c| c.starts_with("Nonconforming")), "{outside:?}");
    until("the DSS holds the intent Nonconforming", || {
        dss_state_of(&w, &id) == (Some(OperationalIntentState::Nonconforming), 2)
    })
    .await;
    until("the monitor is done", || w.uss.monitor.lock().applying.is_empty()).await;
    let own = w.uss.own_intent(&id).expect("ours");
    assert_eq!(
        (own.state, own.volumes.len(), own.off_nominal_volumes.len()),
        (OperationalIntentState::Nonconforming, 1, 1)
    );
    assert_eq!(crate::telemetry::check(&own.off_nominal_volumes, &position_at(61, 500.0)), Ok(()));
    let served = w.uss.telemetry(&id).expect("telemetry of an off-nominal flight is served");
    let p = served.telemetry.and_then(|t| t.position).expect("a position");
    assert!((p.longitude - (8.0 + 500.0 / 76_000.0)).abs() < 1e-9);
    let history = w.uss.notifications(i64::MIN, i64::MAX, 100, false).await.expect("history");
    assert!(
        history
            .iter()
            .any(|n| n.entity_id == id && n.state.as_deref() == Some("Nonconforming") && n.note.contains("outside")),
        "the automatic change is in the notification history"
    );

    // Back inside, steadily, for the conforming time: Activated again, off-nominal volumes gone.
    for s in 62..=73 {
        *w.clock.now.lock() = Timestamp(T0).plus_seconds(s);
        w.uss.positions(&id, vec![position_at(s, 0.0)]).await.expect("taken");
        w.uss.monitor_tick();
        tokio::task::yield_now().await;
    }
    until("the DSS holds the intent Activated again", || {
        dss_state_of(&w, &id) == (Some(OperationalIntentState::Activated), 1)
    })
    .await;
    until("the monitor is done", || w.uss.monitor.lock().applying.is_empty()).await;
    assert!(w.uss.own_intent(&id).expect("ours").off_nominal_volumes.is_empty());
    let refused = w.uss.telemetry(&id).expect_err("not served while Activated");
    assert!(matches!(refused, UssError::WrongState(_)));

    // Silence beyond the timeout: lost position.
    *w.clock.now.lock() = Timestamp(T0).plus_seconds(73 + 10);
    w.uss.monitor_tick();
    until("the DSS holds the lost flight Nonconforming", || {
        dss_state_of(&w, &id) == (Some(OperationalIntentState::Nonconforming), 2)
    })
    .await;
    until("the monitor is done", || w.uss.monitor.lock().applying.is_empty()).await;
    let status = w.uss.flight_status();
    let reason = status[&id]["last_automatic_change"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("lost position"), "{reason}");

    // Ended: the monitor forgets the flight and its record.
    w.uss.end(&id).await.expect("ended");
    w.uss.monitor_tick();
    assert!(!w.uss.monitor.lock().flights.contains_key(&id));
}

#[tokio::test]
async fn a_flying_flight_keeps_one_isa_that_follows_its_volumes_and_goes_with_it() {
    let w = world();
    w.dss.0.lock().rid_subscribers =
        vec![RidSubscriber { url: "http://display.test/rid/v2".into(), subscriptions: vec![("s1".into(), 4)] }];
    let id = w.uss.plan_new(vec![volume(47.0, (0, 20))], 0).await.expect("planned").operational_intent_id.expect("id");
    w.uss.transition(&id, OperationalIntentState::Activated).await.expect("activated");
    *w.clock.now.lock() = Timestamp(T0).plus_seconds(60);
    w.uss.positions(&id, vec![position_at(60, 0.0)]).await.expect("taken");
    until("an ISA in the DSS", || w.dss.0.lock().isas.len() == 1).await;
    until("its write settled", || {
        w.uss.monitor.lock().flights.get(&id).is_some_and(|f| f.isa.is_some() && !f.isa_syncing)
    })
    .await;
    let (isa_id, (first_version, first_volume)) =
        w.dss.0.lock().isas.iter().next().map(|(k, v)| (k.clone(), v.clone())).expect("one");
    // It covers the flight's volume from now to its end.
    let own = w.uss.own_intent(&id).expect("ours");
    assert!(own.volumes.iter().all(|v| first_volume.footprint.contains(&v.footprint, 0.01)));
    assert_eq!(first_volume.time.end(), own.volumes[0].time.end());
    // More positions inside change nothing.
    w.uss.positions(&id, vec![position_at(61, 10.0)]).await.expect("taken");
    until("the monitor is idle", || w.uss.monitor.lock().flights.get(&id).is_some_and(|f| !f.isa_syncing)).await;
    assert_eq!(w.dss.0.lock().isas[&isa_id].0, first_version);
    // Outside: its off-nominal volume widens the ISA (same ISA, new version).
    w.uss.positions(&id, vec![position_at(62, 900.0)]).await.expect("taken");
    until("the ISA widened", || w.dss.0.lock().isas.get(&isa_id).is_some_and(|(v, _)| *v != first_version)).await;
    let widened = w.dss.0.lock().isas[&isa_id].1.clone();
    let at = position_at(62, 900.0).at;
    assert!(widened.footprint.bbox().contains(at), "the ISA covers where the aircraft is");
    assert_eq!(w.dss.0.lock().isas.len(), 1);
    // Subscribers were told of each change at the path F3411 gives.
    until("subscribers told", || {
        w.peers
            .notified
            .lock()
            .iter()
            .filter(|(u, p)| {
                u == "http://display.test/rid/v2" && *p == format!("/uss/identification_service_areas/{isa_id}")
            })
            .count()
            >= 2
    })
    .await;
    // Ended: the ISA is deleted.
    until("the monitor is idle", || w.uss.monitor.lock().applying.is_empty()).await;
    until("the ISA write is idle", || w.uss.monitor.lock().flights.get(&id).is_some_and(|f| !f.isa_syncing)).await;
    w.uss.end(&id).await.expect("ended");
    w.uss.monitor_tick();
    until("the ISA deleted", || w.dss.0.lock().isas.is_empty()).await;
}

#[tokio::test]
async fn an_isa_written_but_not_recorded_is_found_again_not_duplicated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dss = Arc::new(FakeDss::default());
    let w = world_in(dir, dss.clone());
    let id = w.uss.plan_new(vec![volume(47.0, (0, 20))], 0).await.expect("planned").operational_intent_id.expect("id");
    w.uss.transition(&id, OperationalIntentState::Activated).await.expect("activated");
    *w.clock.now.lock() = Timestamp(T0).plus_seconds(60);
    w.uss.positions(&id, vec![position_at(60, 0.0)]).await.expect("taken");
    until("an ISA in the DSS", || dss.0.lock().isas.len() == 1).await;
    until("its write settled", || {
        w.uss.monitor.lock().flights.get(&id).is_some_and(|f| f.isa.is_some() && !f.isa_syncing)
    })
    .await;
    let isa_id = dss.0.lock().isas.keys().next().cloned().expect("one");
    // The ISA's id was recorded before it was written.
    let record: Option<crate::monitor::FlightRecord> =
        w.uss.records.get(crate::db::Table::Telemetry, &id).await.expect("read");
    assert_eq!(record.and_then(|r| r.isa_id), Some(isa_id.clone()));
    // As after a crash between the DSS's answer and our record of it: the id known, not its version.
    w.uss.monitor.lock().flights.get_mut(&id).expect("flight").isa = None;
    w.uss.positions(&id, vec![position_at(61, 900.0)]).await.expect("taken");
    until("the same ISA updated", || {
        let s = dss.0.lock();
        s.isas.len() == 1
            && s.isas.get(&isa_id).is_some_and(|(_, v)| v.footprint.bbox().contains(position_at(61, 900.0).at))
    })
    .await;
}
