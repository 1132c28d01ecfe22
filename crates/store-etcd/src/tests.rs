//! The store conformance suite against a real etcd (the system's `etcd` binary, on free
//! loopback ports in a temporary directory), and what only a shared store shows: two stores on
//! one cluster see each other's writes and race fairly.

use store::{conformance, Store, StoreError, Txn, Write};

use crate::{EtcdConfig, EtcdStore, FORMAT};
use etcd_cluster::LocalCluster;

/// A single-member etcd for one test; stopped when dropped.
pub(crate) struct Etcd {
    cluster: LocalCluster,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub(crate) async fn start() -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = LocalCluster::start(1, dir.path())
            .await
            .unwrap_or_else(|e| panic!("this test needs the `etcd` binary (.ci/run installs it): {e}"));
        Etcd { cluster, _dir: dir }
    }

    pub(crate) async fn store(&self, prefix: &str) -> EtcdStore {
        EtcdStore::open(EtcdConfig {
            endpoints: self.cluster.client_urls.clone(),
            prefix: prefix.to_owned(),
            ..EtcdConfig::default()
        })
        .await
        .expect("open the etcd store")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let etcd = Etcd::start().await;
    let mut stores = Vec::new();
    // One fresh store (its own key prefix) per conformance case.
    for i in 0..conformance::CASES {
        stores.push(etcd.store(&format!("/conformance-{i}/")).await);
    }
    conformance::run_all(|| stores.pop().expect("a fresh store")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_record() {
    let etcd = Etcd::start().await;
    let (a, b) = (etcd.store("/pool/").await, etcd.store("/pool/").await);
    // A write through one is visible through the other after its consistency point (what the
    // DSS takes before every read: reads of the local index alone may lag the watch).
    let oi = conformance::intent(vec![conformance::square(0.0, 100.0, 0, 60)], None);
    let c = a.commit(Txn { preconditions: vec![], writes: vec![Write::PutIntent(oi.clone())] }).await.expect("commit");
    b.view(store::Consistency::Fresh).await.expect("consistency point");
    let seen = b.get_intent(oi.id).await.expect("read").expect("visible through the other instance");
    assert_eq!((*seen.value).clone(), oi);
    assert_eq!(seen.revision, c.revision);
    // Racing creates of the same entity: exactly one wins.
    let other = conformance::intent(vec![conformance::square(0.0, 100.0, 0, 60)], None);
    let create = |s: EtcdStore, oi: model::OperationalIntent| async move {
        s.commit(Txn {
            preconditions: vec![store::Precondition::Revision {
                key: store::Key::OperationalIntent(oi.id),
                revision: None,
            }],
            writes: vec![Write::PutIntent(oi)],
        })
        .await
    };
    let (ra, rb) = tokio::join!(create(a.clone(), other.clone()), create(b.clone(), other.clone()));
    let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{ra:?} / {rb:?}");
    assert!([&ra, &rb].iter().any(|r| matches!(r, Err(StoreError::Conflict))));
    // Notification indexes count every bump, whichever instance made it.
    let sub = model::Subscription {
        id: model::Uuid::new_v4(),
        manager: "uss1".into(),
        version: 1,
        notification_index: 0,
        extents: vec![conformance::square(0.0, 1000.0, 0, 600)],
        uss_base_url: "http://uss1.test".into(),
        notify_for_operational_intents: true,
        notify_for_constraints: false,
        implicit: false,
    };
    a.commit(Txn { preconditions: vec![], writes: vec![Write::PutSubscription(sub.clone())] }).await.expect("sub");
    let bump = |s: EtcdStore| async move {
        s.commit(Txn { preconditions: vec![], writes: vec![Write::BumpNotificationIndex(sub.id)] }).await
    };
    let mut indexes = Vec::new();
    for k in 0..10 {
        let s = if k % 2 == 0 { a.clone() } else { b.clone() };
        indexes.push(bump(s).await.expect("bump").notification_indexes[0].1);
    }
    assert_eq!(indexes, (1..=10).collect::<Vec<_>>());
    assert_eq!(b.get_subscription(sub.id).await.expect("get").expect("sub").value.notification_index, 10);
    // The same for F3411: an ISA and a Remote ID subscription (under the F3548 one's id, a
    // namespace of its own) bumped through both instances.
    let isa = conformance::isa(conformance::square(0.0, 100.0, 0, 60));
    let rid_sub = model::rid::RidSubscription { id: sub.id, ..conformance::rid_subscription(sub.extents[0].clone()) };
    let writes = vec![Write::PutIsa(isa.clone()), Write::PutRidSubscription(rid_sub.clone())];
    a.commit(Txn { preconditions: vec![], writes }).await.expect("rid");
    for k in 0..4 {
        let s = if k % 2 == 0 { &a } else { &b };
        let bump = Txn { preconditions: vec![], writes: vec![Write::BumpRidNotificationIndex(rid_sub.id)] };
        assert_eq!(s.commit(bump).await.expect("bump").notification_indexes, vec![(rid_sub.id, k + 1)]);
    }
    b.view(store::Consistency::Fresh).await.expect("consistency point");
    assert_eq!(*b.get_isa(isa.id).await.expect("get").expect("the ISA through the other instance").value, isa);
    // A third instance opened now loads everything, counters included, each in its namespace.
    let c3 = etcd.store("/pool/").await;
    assert_eq!(c3.get_subscription(sub.id).await.expect("get").expect("sub").value.notification_index, 10);
    assert_eq!(c3.get_rid_subscription(sub.id).await.expect("get").expect("rid sub").value.notification_index, 4);
    assert!(c3.get_intent(oi.id).await.expect("get").is_some());
    assert_eq!(*c3.get_isa(isa.id).await.expect("get").expect("the ISA, loaded").value, isa);
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out =
        std::process::Command::new("openssl").current_dir(dir).args(args).output().expect("this test needs openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a member certificate for 127.0.0.1 and a client certificate, all in `dir`.
fn certificates(dir: &std::path::Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=pool-test-ca",
        ],
    );
    for (name, usage) in [("member", "serverAuth,clientAuth"), ("client", "clientAuth")] {
        let ext = format!("{name}.ext");
        std::fs::write(dir.join(&ext), format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"))
            .expect("ext");
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}-key.pem"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "1",
                "-extfile",
                &ext,
            ],
        );
    }
}

/// The store talks to members over TLS with a client certificate, and is refused without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    certificates(dir.path());
    let port = |_: ()| {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
    };
    let (client, peer) = (port(()), port(()));
    let url = format!("https://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let p = |f: &str| dir.path().join(f).to_string_lossy().to_string();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _etcd = Killed(
        std::process::Command::new("etcd")
            .args(["--name", "m1", "--data-dir", &p("data")])
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("m1={peer_url}")])
            .args(["--cert-file", &p("member.pem"), "--key-file", &p("member-key.pem")])
            .args(["--trusted-ca-file", &p("ca.pem"), "--client-cert-auth"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("this test needs the `etcd` binary"),
    );
    let read = |f: &str| std::fs::read(dir.path().join(f)).expect("pem");
    let config = EtcdConfig {
        endpoints: vec![url.clone()],
        prefix: "/tls/".into(),
        ca_pem: Some(read("ca.pem")),
        client_cert_pem: Some(read("client.pem")),
        client_key_pem: Some(read("client-key.pem")),
        ack_ca_pems: Vec::new(),
    };
    let mut opened = None;
    for _ in 0..100 {
        if let Ok(s) = EtcdStore::open(config.clone()).await {
            opened = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let store = opened.expect("the store connects over TLS with its client certificate");
    let oi = conformance::intent(vec![conformance::square(0.0, 100.0, 0, 60)], None);
    store.commit(Txn { preconditions: vec![], writes: vec![Write::PutIntent(oi.clone())] }).await.expect("commit");
    store.view(store::Consistency::Fresh).await.expect("fresh");
    assert!(store.get_intent(oi.id).await.expect("get").is_some());
    // Without a client certificate the member refuses the connection.
    let anonymous = EtcdConfig { client_cert_pem: None, client_key_pem: None, ..config };
    assert!(matches!(EtcdStore::open(anonymous).await, Err(StoreError::Unavailable(_))));
}

/// The time parts of area keys: any two windows that share an instant share a key (what one
/// marks, the other compares), whatever their lengths; windows apart by more than a bucket
/// of their level share none; and the cost per window stays a few keys.
#[test]
fn time_keys_never_miss_an_overlap() {
    use crate::{time_keys, TIME_LEVELS};
    use geo4d::Envelope4;
    let window = |t0: f64, t1: f64| Envelope4 { min: [0.0, 0.0, 0.0, t0], max: [0.0, 0.0, 0.0, t1] };
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let base = 1.8e9;
    // Lengths from an instant to beyond the last level, and unbounded.
    let lengths = [0.0, 1.0, 59.0, 60.0, 61.0, 240.0, 299.0, 300.0, 301.0, 1800.0, 3600.0, 86_000.0, 90_000.0, 1e6];
    let mut pick = move || {
        let len = lengths[(next() * lengths.len() as f64) as usize % lengths.len()];
        // Starts on bucket edges half the time.
        let t0 = if next() < 0.5 { base + (next() * 200.0).floor() * 60.0 } else { base + next() * 12_000.0 };
        if next() < 0.03 {
            window(f64::NEG_INFINITY, f64::INFINITY)
        } else {
            window(t0, t0 + len)
        }
    };
    let mut overlapping = 0;
    for _ in 0..20_000 {
        let (w, q) = (pick(), pick());
        let overlap = w.min[3] <= q.max[3] && q.min[3] <= w.max[3];
        let (marks, _) = time_keys(&w);
        let (_, checks) = time_keys(&q);
        let shared = marks.iter().any(|m| checks.contains(m));
        if overlap {
            overlapping += 1;
            assert!(shared, "{w:?} and {q:?} overlap but share no key: marks {marks:?}, checks {checks:?}");
        }
    }
    assert!(overlapping > 2_000, "the sample must exercise overlaps ({overlapping})");

    // Minute-long windows two buckets apart share nothing: busy areas rarely retry.
    let (a, b) = (window(base, base + 60.0), window(base + 180.0, base + 240.0));
    let (marks, _) = time_keys(&a);
    let (_, checks) = time_keys(&b);
    assert!(!marks.iter().any(|m| checks.contains(m)), "{marks:?} / {checks:?}");
    // A few keys per window at either level.
    for len in [0.0, 60.0, 120.0, 300.0, 3600.0] {
        let (marks, checks) = time_keys(&window(base + 30.0, base + 30.0 + len));
        assert!(marks.len() <= 6 && checks.len() <= 12, "{len} s: {marks:?} / {checks:?}");
    }
    // Beyond the last level a window is long: two keys whatever its length.
    let last = TIME_LEVELS[TIME_LEVELS.len() - 1];
    let (marks, checks) = time_keys(&window(base, base + last.0 * (last.1 + 1) as f64));
    assert_eq!((marks, checks), (vec!["L".to_string(), "A".to_string()], vec!["A".to_string()]));
}

/// A transaction whose first attempt gets no answer (its member is paused, as a follower whose
/// leader died leaves a proposal unanswered) is sent again; when the member resumes, one of the
/// two commits and the other loses its compares. Either way the store reports the write as
/// committed (reading back its own bytes when the unanswered attempt was the one that
/// committed), never as a conflict: the write happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_commit_that_happened_is_reported_as_committed() {
    let etcd = Etcd::start().await;
    let url = etcd.cluster.client_urls[0].clone();
    // The same member twice: the second attempt goes to it over another connection.
    let store = EtcdStore::open(EtcdConfig {
        endpoints: vec![url.clone(), url],
        prefix: "/unanswered/".to_owned(),
        ..EtcdConfig::default()
    })
    .await
    .expect("open the etcd store");
    let pid = etcd.cluster.member_pids()[0].to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill").args([sig, &pid]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    };
    // Which of the two connections the resumed member serves first is up to it; three rounds
    // make the order in which the unanswered attempt commits first likely to come up (with the
    // read-back taken out, one round in three failed here).
    let mut store = store;
    for round in 0..3 {
        let oi = conformance::intent(vec![conformance::square(200.0 * round as f64, 100.0, 0, 60)], None);
        let txn = Txn {
            preconditions: vec![store::Precondition::Revision {
                key: store::Key::OperationalIntent(oi.id),
                revision: None,
            }],
            writes: vec![Write::PutIntent(oi.clone())],
        };
        signal("-STOP");
        let commit = tokio::spawn(async move {
            let outcome = store.commit(txn).await;
            (store, outcome)
        });
        // Past the first attempt's 1.5 s, before the second's runs out.
        tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
        signal("-CONT");
        let (back, outcome) = commit.await.expect("commit task");
        store = back;
        let committed =
            outcome.unwrap_or_else(|e| panic!("round {round}: the write happened, so it is committed, not {e:?}"));
        store.view(store::Consistency::Fresh).await.expect("consistency point");
        let seen = store.get_intent(oi.id).await.expect("read").expect("the intent is there");
        assert_eq!((*seen.value).clone(), oi);
        assert_eq!(seen.revision, committed.revision, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_keys_carry_their_format_and_a_newer_one_is_refused() {
    let etcd = Etcd::start().await;
    let store = etcd.store("/format/").await;
    let key = b"/format/format".to_vec();
    let held = store.inner.range(key.clone(), Vec::new()).await.expect("range");
    assert_eq!(held.kvs.first().map(|kv| kv.value.clone()), Some(FORMAT.to_string().into_bytes()), "written at open");
    // As a newer binary would leave it.
    let newer = (FORMAT + 1).to_string().into_bytes();
    let put = crate::pb::TxnRequest {
        compare: Vec::new(),
        success: vec![crate::pb::RequestOp {
            request: Some(crate::pb::request_op::Request::RequestPut(crate::pb::PutRequest {
                key,
                value: newer,
                lease: 0,
                prev_kv: false,
            })),
        }],
        failure: Vec::new(),
    };
    store
        .inner
        .on_member(|ch| {
            let put = put.clone();
            async move { crate::pb::txn(&ch, put).await }
        })
        .await
        .expect("put");
    let refused = EtcdStore::open(EtcdConfig {
        endpoints: etcd.cluster.client_urls.clone(),
        prefix: "/format/".into(),
        ..EtcdConfig::default()
    })
    .await;
    match refused {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("newer Deconflict"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a newer key format was opened"),
    }
}
