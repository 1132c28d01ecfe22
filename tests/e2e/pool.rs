//! A pool of three DSS instances on a three-member etcd cluster (`deconflict pool`): one
//! airspace record served by every instance.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::json;

use crate::harness::*;

struct Pool {
    child: Child,
    dss: Vec<String>,
    _dir: tempfile::TempDir,
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
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(BIN)
            .args(["pool", "--members", &members.to_string(), "--dir"])
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
        }
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        Pool { child, dss, _dir: dir }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_record_served_by_every_instance() {
    let pool = Pool::start(3);
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
    // A heartbeat through instance 0, reported by the token's subject.
    let write = token("monitor", &["interuss.pool_status.heartbeat.write"]);
    let url = format!(
        "{}/aux/v1/pool/dss_instances/heartbeat?source=Test&next_heartbeat_expected_before=2030-01-01T00:00:00Z",
        pool.dss[0]
    );
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
