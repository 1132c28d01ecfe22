//! A pool of three DSS instances on a three-member etcd cluster (`deconflict pool`): one
//! airspace record served by every instance.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::json;

use crate::harness::*;

struct Pool {
    child: Child,
    dss: Vec<String>,
    etcd: Vec<String>,
    dir: tempfile::TempDir,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SIGTERM, so the pool stops its etcd members and instances on the way out.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl Pool {
    fn start(members: usize) -> Pool {
        Self::start_with(members, &[])
    }

    fn start_with(members: usize, extra: &[&str]) -> Pool {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(BIN)
            .args(["pool", "--members", &members.to_string()])
            .args(extra)
            .arg("--dir")
            .arg(dir.path())
            .arg("--jwt-public-key")
            .arg(fixture("rs256-public.pem"))
            .args(["--jwt-audience", "localhost"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start deconflict pool");
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut dss = Vec::new();
        let mut etcd = Vec::new();
        let mut printed = String::new();
        while dss.len() < members {
            let mut line = String::new();
            if reader.read_line(&mut line).expect("read") == 0 {
                panic!("the pool did not start (needs the etcd binary: apt-get install etcd-server); it printed:\n{printed}");
            }
            printed.push_str(&line);
            if let Some(url) =
                line.split(" DSS ").nth(1).and_then(|r| r.split_whitespace().next()).filter(|u| u.starts_with("http"))
            {
                dss.push(url.to_owned());
            }
            if let Some(url) = line.split("etcd member ").nth(1).map(str::trim) {
                etcd.push(url.to_owned());
            }
        }
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        Pool { child, dss, etcd, dir }
    }

    /// The process id of etcd member `i` (found by its data directory).
    fn member_pid(&self, i: usize) -> u32 {
        self.pid_of(&format!("etcd-{i}"), |cmdline| cmdline.starts_with("etcd "))
    }

    /// The process id of DSS instance `i` (found by its data directory).
    fn instance_pid(&self, i: usize) -> u32 {
        self.pid_of(&format!("dss-{i}"), |cmdline| cmdline.contains(" dss "))
    }

    /// The process whose command line names `DIR/sub` and passes `is`.
    fn pid_of(&self, sub: &str, is: impl Fn(&str) -> bool) -> u32 {
        let needle = self.dir.path().join(sub).to_string_lossy().to_string();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if is(&cmdline) && cmdline.contains(&needle) {
                return pid;
            }
        }
        panic!("no process for {sub}");
    }

    /// The index of the member that is the Raft leader now (waiting for an election, bounded).
    async fn leader(&self) -> usize {
        let http = client();
        for _ in 0..100 {
            let mut ids = Vec::new();
            let mut leader = None;
            for url in &self.etcd {
                let Ok(resp) = http.post(format!("{url}/v3/maintenance/status")).json(&json!({})).send().await else {
                    ids.push(String::new());
                    continue;
                };
                let status: serde_json::Value = resp.json().await.unwrap_or_default();
                ids.push(status["header"]["member_id"].as_str().unwrap_or_default().to_owned());
                leader = status["leader"].as_str().filter(|l| *l != "0").map(str::to_owned).or(leader);
            }
            if let Some(i) = leader.and_then(|l| ids.iter().position(|id| *id == l)) {
                return i;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the etcd cluster has no leader (members {:?})", self.etcd);
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("kill").success();
    assert!(ok, "kill -{sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_record_served_by_every_instance() {
    one_record(Pool::start(3)).await;
}

/// The same with every instance answering reads from its index under a read lease: a write
/// acknowledged through one instance is in every other's answers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_record_served_by_every_instance_under_read_leases() {
    let pool = Pool::start_with(3, &["--etcd-read-leases"]);
    // Each instance registers as a reader shortly after it starts (this test also passes
    // before, on quorum reads): wait until all three are registered.
    let http = client();
    for _ in 0..100 {
        let resp = http
            .post(format!("{}/v3/kv/range", pool.etcd[0]))
            .json(&json!({"key": b64("/deconflict/e/r/"), "range_end": b64("/deconflict/e/r0"), "count_only": true}))
            .send()
            .await
            .expect("etcd");
        let v: serde_json::Value = resp.json().await.expect("json");
        if v["count"].as_str() == Some("3") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Each instance says in its metrics that it holds its lease and which others it waits for.
    for url in &pool.dss {
        let mut text = String::new();
        for _ in 0..50 {
            text = http.get(format!("{url}/metrics")).send().await.expect("metrics").text().await.expect("text");
            if text.lines().any(|l| l == "dss_etcd_read_lease_held 1") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(text.lines().any(|l| l == "dss_etcd_read_lease_held 1"), "{url}:\n{text}");
        assert!(text.contains("# HELP dss_etcd_read_lease_held"), "{url}");
    }
    one_record(pool).await;
}

fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                out.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn one_record(pool: Pool) {
    let tok = token("uss1", &[SC]);
    // A write through one instance is visible through every other at once.
    let id = new_id();
    let body = intent_body(vec![square(0.0, 200.0, 0.0, 100.0, 60, 900)], &[], "Accepted");
    let (s, created) = call("PUT", &format!("{}{OIR}/{id}", pool.dss[0]), Some(&tok), Some(&body)).await;
    assert_eq!(s, 201, "{created}");
    for url in &pool.dss[1..] {
        let (s, got) = call("GET", &format!("{url}{OIR}/{id}"), Some(&tok), None).await;
        assert_eq!(s, 200, "{url}: {got}");
        assert_eq!(got["operational_intent_reference"]["ovn"], created["operational_intent_reference"]["ovn"]);
    }
    // ...and enforced by every other: a plan over it without the key is refused elsewhere.
    let other = token("uss2", &[SC]);
    let (s, r) = call("PUT", &format!("{}{OIR}/{}", pool.dss[2], new_id()), Some(&other), Some(&body)).await;
    assert_eq!(s, 409, "{r}");

    // 32 racing overlapping creates spread over the three instances: exactly one wins.
    let area = square(5000.0, 200.0, 0.0, 100.0, 60, 900);
    let mut tasks = Vec::new();
    for k in 0..32 {
        let url = format!("{}{OIR}/{}", pool.dss[k % 3], new_id());
        let tok = token(&format!("racer{k}"), &[SC]);
        let body = intent_body(vec![area.clone()], &[], "Accepted");
        tasks.push(tokio::spawn(async move { call("PUT", &url, Some(&tok), Some(&body)).await.0 }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");

    // A subscription made through one instance is notified of changes made through another,
    // with indexes that count every notification.
    let sub_tok = token("watcher", &[SC]);
    let sub_id = new_id();
    let sub = json!({"extents": square(9000.0, 1000.0, 0.0, 400.0, 0, 3600), "uss_base_url": "http://watcher.test",
                     "notify_for_operational_intents": true});
    let (s, r) = call("PUT", &format!("{}{SUBS}/{sub_id}", pool.dss[1]), Some(&sub_tok), Some(&sub)).await;
    assert_eq!(s, 200, "{r}");
    let mut indexes = Vec::new();
    for k in 0..3 {
        let body = intent_body(vec![square(9000.0 + 300.0 * k as f64, 100.0, 0.0, 100.0, 60, 900)], &[], "Accepted");
        let (s, r) = call("PUT", &format!("{}{OIR}/{}", pool.dss[k % 3], new_id()), Some(&tok), Some(&body)).await;
        assert_eq!(s, 201, "{r}");
        let n = r["subscribers"]
            .as_array()
            .expect("subscribers")
            .iter()
            .find(|s| s["uss_base_url"] == "http://watcher.test")
            .and_then(|s| s["subscriptions"][0]["notification_index"].as_i64())
            .unwrap_or_else(|| panic!("the watcher must be notified: {r}"));
        indexes.push(n);
    }
    assert_eq!(indexes, vec![1, 2, 3]);
    let (_, got) = call("GET", &format!("{}{SUBS}/{sub_id}", pool.dss[2]), Some(&sub_tok), None).await;
    assert_eq!(got["subscription"]["notification_index"], 3, "{got}");

    remote_id_through_every_instance(&pool).await;
}

/// F3411 in the pool: an ISA written through one instance is seen through the others, a
/// subscription made through one is named (with its index) for changes made through another,
/// and 32 racing updates of one ISA version spread over the instances make exactly one winner.
async fn remote_id_through_every_instance(pool: &Pool) {
    const ISA: &str = "/rid/v2/dss/identification_service_areas";
    let sp = token("sp", &["rid.service_provider"]);
    let dp = token("dp", &["rid.display_provider"]);
    let sub_id = new_id();
    let sub = json!({"extents": square(20_000.0, 1000.0, 0.0, 400.0, 0, 3600), "uss_base_url": "https://dp.test"});
    let (s, r) =
        call("PUT", &format!("{}/rid/v2/dss/subscriptions/{sub_id}", pool.dss[1]), Some(&dp), Some(&sub)).await;
    assert_eq!(s, 200, "{r}");
    let id = new_id();
    let isa = json!({"extents": square(20_100.0, 200.0, 0.0, 100.0, 0, 900), "uss_base_url": "https://sp.test"});
    let (s, r) = call("PUT", &format!("{}{ISA}/{id}", pool.dss[0]), Some(&sp), Some(&isa)).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["subscribers"][0]["subscriptions"][0]["notification_index"], 1, "{r}");
    let version = r["service_area"]["version"].as_str().expect("version").to_owned();
    for url in &pool.dss[1..] {
        let (s, got) = call("GET", &format!("{url}{ISA}/{id}"), Some(&dp), None).await;
        assert_eq!((s, got["service_area"]["version"].as_str()), (200, Some(version.as_str())), "{url}: {got}");
    }
    let mut tasks = Vec::new();
    for k in 0..32 {
        let url = format!("{}{ISA}/{id}/{version}", pool.dss[k % 3]);
        let (sp, body) = (sp.clone(), isa.clone());
        tasks.push(tokio::spawn(async move { call("PUT", &url, Some(&sp), Some(&body)).await }));
    }
    let mut winners = Vec::new();
    let mut statuses = Vec::new();
    for t in tasks {
        let (s, r) = t.await.expect("task");
        if s == 200 {
            winners.push(r);
        }
        statuses.push(s);
    }
    assert_eq!(winners.len(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 409), "{statuses:?}");
    assert_eq!(winners[0]["subscribers"][0]["subscriptions"][0]["notification_index"], 2, "{}", winners[0]);
    let (_, got) = call("GET", &format!("{}/rid/v2/dss/subscriptions/{sub_id}", pool.dss[2]), Some(&dp), None).await;
    assert_eq!(got["subscription"]["notification_index"], 2, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aux_api_reports_the_pool() {
    let pool = Pool::start(3);
    let read = token("ops", &["interuss.pool_status.read"]);
    let (s, r) = call("GET", &format!("{}/aux/v1/pool", pool.dss[1]), Some(&read), None).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["dar_id"], "deconflict");
    // Every instance records a start-up heartbeat; each reports all three.
    let mut last = serde_json::Value::Null;
    let mut listed = 0;
    for _ in 0..100 {
        let (s, r) = call("GET", &format!("{}/aux/v1/pool/dss_instances", pool.dss[2]), Some(&read), None).await;
        assert_eq!(s, 200, "{r}");
        listed = r["dss_instances"].as_array().map_or(0, Vec::len);
        last = r;
        if listed == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(listed, 3, "{last}");
    let endpoints: Vec<&str> =
        last["dss_instances"].as_array().expect("list").iter().filter_map(|i| i["public_endpoint"].as_str()).collect();
    for url in &pool.dss {
        assert!(endpoints.contains(&url.as_str()), "{url} missing from {last}");
    }
    // A heartbeat through instance 0, reported by the token's subject; the next one may be
    // announced at most an hour ahead (else it would mask a dead instance that long).
    let write = token("monitor", &["interuss.pool_status.heartbeat.write"]);
    let heartbeat = |ahead_s: i64| {
        let next = (chrono::Utc::now() + chrono::Duration::seconds(ahead_s))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        format!("{}/aux/v1/pool/dss_instances/heartbeat?source=Test&next_heartbeat_expected_before={next}", pool.dss[0])
    };
    for far in [3660, 10 * 365 * 86_400] {
        let (s, r) = call("PUT", &heartbeat(far), Some(&write), None).await;
        assert_error_shape(s, &r, 400, "a heartbeat announcing the next one more than an hour ahead");
        assert!(r["message"].as_str().is_some_and(|m| m.contains("hour")), "{r}");
    }
    let url = heartbeat(1800);
    let (s, r) = call("PUT", &url, Some(&write), None).await;
    assert_eq!(s, 201, "{r}");
    let me = r["dss_instances"]
        .as_array()
        .expect("list")
        .iter()
        .find(|i| i["public_endpoint"] == pool.dss[0].as_str())
        .cloned()
        .expect("instance 0 listed");
    let hb = &me["most_recent_heartbeat"];
    assert_eq!((hb["source"].clone(), hb["reporter"].clone()), (json!("Test"), json!("monitor")), "{me}");
    assert!(hb["index"].as_u64().is_some_and(|i| i >= 1), "{me}");
    let (s, r) = call("PUT", &format!("{}/aux/v1/pool/dss_instances/heartbeat", pool.dss[0]), Some(&write), None).await;
    assert_error_shape(s, &r, 400, "a heartbeat without source");
    let (s, r) = call("PUT", &url, Some(&read), None).await;
    assert_error_shape(s, &r, 403, "a heartbeat without the write scope");
}

/// Writes stream through two instances while a member is paused, then the leader is killed;
/// nothing acknowledged is lost, a restarted instance catches up, and without a quorum every
/// instance refuses with 503 rather than answer stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_lose_nothing_and_never_answer_stale() {
    // Under read leases, the harder case: reads are answered from each index without a quorum
    // read, and every write waits for the instances to confirm it (quorum reads are covered by
    // the rest of the etcd runs).
    let pool = Pool::start_with(3, &["--etcd-read-leases"]);
    let tok = token("streamer", &[SC]);
    let write = |url: String, k: usize| {
        let tok = tok.clone();
        async move {
            let id = new_id();
            let body = intent_body(vec![square(400.0 * k as f64, 100.0, 0.0, 100.0, 60, 900)], &[], "Accepted");
            let (s, _) = call_patiently("PUT", &format!("{url}{OIR}/{id}"), Some(&tok), Some(&body)).await;
            (s, id)
        }
    };
    let mut acknowledged = Vec::new();
    let mut k = 0;
    // 1. Pause a follower for 10 s: the other two keep a quorum and writes go on.
    let leader = pool.leader().await;
    let follower = (leader + 1) % 3;
    signal(pool.member_pid(follower), "STOP");
    let paused_at = std::time::Instant::now();
    let writer = (follower + 1) % 3;
    while paused_at.elapsed() < std::time::Duration::from_secs(10) {
        let (s, id) = write(pool.dss[writer].clone(), k).await;
        k += 1;
        if s == 201 {
            acknowledged.push(id);
        }
    }
    assert!(
        acknowledged.len() >= 10,
        "writes must go on while one member is paused ({} acknowledged)",
        acknowledged.len()
    );
    signal(pool.member_pid(follower), "CONT");
    // The paused member's instance catches up: it sees the last write.
    let last = acknowledged.last().expect("a write").clone();
    let mut seen = false;
    for _ in 0..100 {
        let (s, _) = call("GET", &format!("{}{OIR}/{last}", pool.dss[follower]), Some(&tok), None).await;
        if s == 200 {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "the resumed member's instance never caught up");

    // 2. Kill the leader while writes stream: they resume after re-election.
    let leader = pool.leader().await;
    signal(pool.member_pid(leader), "KILL");
    let killed_at = std::time::Instant::now();
    let survivor = (leader + 1) % 3;
    let mut resumed = None;
    while killed_at.elapsed() < std::time::Duration::from_secs(15) {
        let (s, id) = write(pool.dss[survivor].clone(), k).await;
        k += 1;
        if s == 201 {
            acknowledged.push(id);
            resumed.get_or_insert(killed_at.elapsed());
            if acknowledged.len() > 5 && killed_at.elapsed() > std::time::Duration::from_secs(4) {
                break;
            }
        } else {
            assert_eq!(s, 503, "while the leader is re-elected a write is refused with 503, never half-applied");
        }
    }
    let resumed = resumed.expect("writes must resume after the leader is killed");
    println!("writes resumed {:.2} s after the leader was killed", resumed.as_secs_f64());
    // Nothing acknowledged is lost, through either surviving instance.
    for url in [&pool.dss[survivor], &pool.dss[(leader + 2) % 3]] {
        for id in &acknowledged {
            let (s, r) = call_patiently("GET", &format!("{url}{OIR}/{id}"), Some(&tok), None).await;
            assert_eq!(s, 200, "{url}: acknowledged {id} lost: {r}");
        }
    }
    // 3. A DSS instance started now (or restarted) loads everything from etcd.
    let endpoints =
        pool.etcd.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, u)| u.clone()).collect::<Vec<_>>();
    let data = pool.dir.path().join("extra");
    let extra = Dss::start_in(&data, &["--store", "etcd", "--etcd-endpoints", &endpoints.join(",")]);
    for id in &acknowledged {
        let (s, _) = call_patiently("GET", &extra.url(&format!("{OIR}/{id}")), Some(&tok), None).await;
        assert_eq!(s, 200, "a fresh instance must see {id}");
    }
    extra.kill9();
    let extra = Dss::start_in(&data, &["--store", "etcd", "--etcd-endpoints", &endpoints.join(",")]);
    let (s, _) = call("GET", &extra.url(&format!("{OIR}/{last}")), Some(&tok), None).await;
    assert_eq!(s, 200, "a restarted instance rebuilds its index");

    // 4. Without a quorum (one member of three), every read and write is refused with 503.
    let second = (leader + 1) % 3;
    signal(pool.member_pid(second), "KILL");
    let alone = (leader + 2) % 3;
    // Its read lease cannot be renewed: within its term (3 s) it stops answering from its
    // index, and until then it answers what every acknowledged write left (no write can be
    // acknowledged without a quorum).
    let cut_at = std::time::Instant::now();
    let (s, r) = loop {
        let (s, r) = call("GET", &format!("{}{OIR}/{last}", pool.dss[alone]), Some(&tok), None).await;
        if s != 200 || cut_at.elapsed() > std::time::Duration::from_secs(8) {
            break (s, r);
        }
        assert_eq!(r["operational_intent_reference"]["id"], last.as_str(), "{r}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_error_shape(s, &r, 503, "a read without quorum");
    let (s, _) = write(pool.dss[alone].clone(), k).await;
    assert_eq!(s, 503, "a write without quorum");
}

/// The leader as the member at `url` reports it, and the Raft term.
async fn leader_and_term(url: &str) -> (String, u64) {
    let status: serde_json::Value = client()
        .post(format!("{url}/v3/maintenance/status"))
        .json(&json!({}))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("JSON");
    let term = status["raftTerm"].as_str().and_then(|t| t.parse().ok()).expect("raft term");
    (status["leader"].as_str().unwrap_or_default().to_owned(), term)
}

/// A member cut off from the others kept raising its election term and, when the link healed,
/// deposed the working leader (a 2.5 s pool-wide stall). The members now run with `--pre-vote`:
/// a follower cut off for 6 s (its election timeout passes several times) comes back without
/// having raised the term, and the leader stays. Writes go on throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healed_partition_does_not_depose_the_leader() {
    let pool = Pool::start_with(3, &["--peer-proxies"]);
    let leader = pool.leader().await;
    let follower = (leader + 1) % 3;
    let (leader_id, term) = leader_and_term(&pool.etcd[leader]).await;
    let tok = token("partition", &[SC]);
    let write = |k: usize| {
        let (tok, url) = (tok.clone(), pool.dss[leader].clone());
        async move {
            let body = intent_body(vec![square(400.0 * k as f64, 100.0, 0.0, 100.0, 60, 900)], &[], "Accepted");
            let started = std::time::Instant::now();
            let (s, _) = call("PUT", &format!("{url}{OIR}/{}", new_id()), Some(&tok), Some(&body)).await;
            (s, started.elapsed())
        }
    };
    std::fs::write(pool.dir.path().join("isolate-member"), follower.to_string()).expect("isolate");
    // The cut is real: the isolated member loses its leader.
    let mut lost = false;
    for _ in 0..100 {
        if leader_and_term(&pool.etcd[follower]).await.0 == "0"
            || leader_and_term(&pool.etcd[follower]).await.0.is_empty()
        {
            lost = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(lost, "the isolated member must lose contact with the leader");
    let (mut acknowledged, mut slowest, mut k) = (0, std::time::Duration::ZERO, 0);
    let cut_at = std::time::Instant::now();
    while cut_at.elapsed() < std::time::Duration::from_secs(6) {
        let (s, took) = write(k).await;
        k += 1;
        acknowledged += usize::from(s == 201);
        slowest = slowest.max(took);
    }
    assert!(acknowledged >= 5, "writes go on while a follower is cut off ({acknowledged})");
    std::fs::remove_file(pool.dir.path().join("isolate-member")).expect("heal");
    let healed_at = std::time::Instant::now();
    while healed_at.elapsed() < std::time::Duration::from_secs(4) {
        let (s, took) = write(k).await;
        k += 1;
        acknowledged += usize::from(s == 201);
        slowest = slowest.max(took);
    }
    println!("partition test: {acknowledged} writes acknowledged of {k}; slowest {slowest:?}");
    for url in &pool.etcd {
        let (now_leader, now_term) = leader_and_term(url).await;
        assert_eq!(
            (now_leader.as_str(), now_term),
            (leader_id.as_str(), term),
            "member {url}: the leader and term survive the heal"
        );
    }
}

/// Under read leases, every write waits for each registered reader to confirm it. A killed DSS
/// process used to hold every instance's writes until its lease ran out (~3.3 s): nobody ended
/// it. Now a writer that finds the reader's address refusing connections revokes its lease and
/// waits only the short read window the reader could still believe in. Writes through the other
/// instances go on, nothing acknowledged is lost, and the longest gap is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_reader_does_not_hold_the_pools_writes() {
    let pool = Pool::start_with(3, &["--etcd-read-leases"]);
    let tok = token("reader-loss", &[SC]);
    // Every instance registered as a reader.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    signal(pool.instance_pid(2), "KILL");
    let killed_at = std::time::Instant::now();
    let (mut acknowledged, mut k, mut last_ok, mut longest) =
        (Vec::new(), 0usize, killed_at, std::time::Duration::ZERO);
    while killed_at.elapsed() < std::time::Duration::from_secs(5) {
        let id = new_id();
        let body = intent_body(vec![square(400.0 * k as f64, 100.0, 0.0, 100.0, 60, 900)], &[], "Accepted");
        let (s, _) = call("PUT", &format!("{}{OIR}/{id}", pool.dss[k % 2]), Some(&tok), Some(&body)).await;
        k += 1;
        if s == 201 {
            longest = longest.max(last_ok.elapsed());
            last_ok = std::time::Instant::now();
            acknowledged.push((k % 2, id));
        }
    }
    println!("killed reader: {} writes acknowledged of {k} in 5 s; longest gap {longest:?}", acknowledged.len());
    assert!(acknowledged.len() >= 10, "writes go on after a reader is killed ({} of {k})", acknowledged.len());
    // Every acknowledged write reads back through the other surviving instance at once.
    for (through, id) in &acknowledged {
        let other = pool.dss[1 - through].clone();
        let (s, r) = call("GET", &format!("{other}{OIR}/{id}"), Some(&tok), None).await;
        assert_eq!(s, 200, "write {id} acknowledged through instance {through} is served by the other: {r}");
    }
}
