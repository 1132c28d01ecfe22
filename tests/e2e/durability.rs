//! Concurrency and crash safety of the real binary.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test]
async fn thirty_two_racing_overlapping_creates_exactly_one_wins() {
    let dss = Arc::new(Dss::start());
    let mut tasks = tokio::task::JoinSet::new();
    let start = Arc::new(tokio::sync::Barrier::new(32));
    for i in 0..32 {
        let (dss, start) = (dss.clone(), start.clone());
        tasks.spawn(async move {
            let tok = token(&format!("uss{i}"), &[SC]);
            // Each one a little different, all overlapping each other in space, altitude and time.
            let body = intent_body(vec![square(i as f64 * 3.0, 200.0, 0.0, 120.0, 60, 900)], &[], "Accepted");
            let url = dss.url(&format!("{OIR}/{}", new_id()));
            start.wait().await;
            call("PUT", &url, Some(&tok), Some(&body)).await
        });
    }
    let mut statuses = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (status, body) = r.expect("task");
        if status == 409 {
            assert_eq!(body["missing_operational_intents"].as_array().map(Vec::len), Some(1), "{body}");
        }
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 31, "{statuses:?}");
}

#[derive(Clone, Debug)]
struct Acked {
    id: String,
    version: i64,
    ovn: String,
}

#[tokio::test]
async fn kill_dash_nine_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let dss = Dss::start_in(&dir, &[]);
    let base = dss.base.clone();
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let (base, acked) = (base.clone(), acked.clone());
        writers.spawn(async move {
            let tok = token(&format!("writer{w}"), &[SC]);
            let deadline = Instant::now() + Duration::from_secs(20);
            for n in 0..400 {
                if Instant::now() > deadline {
                    break;
                }
                // Disjoint areas per writer and per flight, so every write is independent.
                let body = intent_body(
                    vec![square((w * 400 + n) as f64 * 300.0, 100.0, 0.0, 120.0, 60, 900)],
                    &[],
                    "Accepted",
                );
                let id = new_id();
                let (s, r) = call_quiet("PUT", &format!("{base}{OIR}/{id}"), &tok, &body).await;
                if s != 201 {
                    break;
                }
                let ovn = r["operational_intent_reference"]["ovn"].as_str().unwrap_or_default().to_owned();
                acked.lock().expect("lock").push(Acked { id: id.clone(), version: 1, ovn: ovn.clone() });
                // Every other flight is updated once too.
                if n % 2 == 0 {
                    let (s, r) = call_quiet("PUT", &format!("{base}{OIR}/{id}/{ovn}"), &tok, &body).await;
                    if s != 200 {
                        break;
                    }
                    let ovn = r["operational_intent_reference"]["ovn"].as_str().unwrap_or_default().to_owned();
                    acked.lock().expect("lock").push(Acked { id, version: 2, ovn });
                }
            }
        });
    }
    // Let writes flow, then pull the plug mid-stream.
    let begin = Instant::now();
    while acked.lock().expect("lock").len() < 200 && begin.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dss.kill9();
    while writers.join_next().await.is_some() {}
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 50, "too few writes before the kill: {}", acked.len());

    let dss = Dss::start_in(&dir, &[]);
    let mut latest: std::collections::HashMap<String, Acked> = Default::default();
    for a in acked {
        let e = latest.entry(a.id.clone()).or_insert(a.clone());
        if a.version > e.version {
            *e = a;
        }
    }
    let reader = token("auditor", &[SC]);
    for (id, a) in &latest {
        let (s, r) = call("GET", &dss.url(&format!("{OIR}/{id}")), Some(&reader), None).await;
        assert_eq!(s, 200, "acknowledged intent {id} lost after kill -9");
        let oir = &r["operational_intent_reference"];
        let version = oir["version"].as_i64().expect("version");
        assert!(version >= a.version, "{id}: acknowledged version {} but found {version}", a.version);
        // Never half-applied: the implicit subscription written in the same commit exists.
        let owner = token(oir["manager"].as_str().expect("manager"), &[SC]);
        let sub = oir["subscription_id"].as_str().expect("sub");
        let (s, _) = call("GET", &dss.url(&format!("{SUBS}/{sub}")), Some(&owner), None).await;
        assert_eq!(s, 200, "{id}: its implicit subscription {sub} is missing");
        if version == a.version {
            let (_, mine) = call("GET", &dss.url(&format!("{OIR}/{id}")), Some(&owner), None).await;
            assert_eq!(mine["operational_intent_reference"]["ovn"], a.ovn.as_str());
        }
    }
}

/// Like `call`, but a refused connection (the server was killed) is a status of 0.
async fn call_quiet(method: &str, url: &str, tok: &str, body: &Value) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    match client().request(m, url).bearer_auth(tok).json(body).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

#[tokio::test]
async fn expired_entities_are_removed_by_the_service() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dss = Dss::start_in(&tmp.path().join("d"), &["--retention-secs", "1", "--expiry-interval-secs", "1"]);
    let tok = token("alpha", &[SC]);
    let (id, _, _) =
        create_intent(&dss, &tok, &intent_body(vec![square(0.0, 100.0, 0.0, 100.0, 0, 2)], &[], "Accepted")).await;
    let (s, _) = call("GET", &dss.url(&format!("{OIR}/{id}")), Some(&tok), None).await;
    assert_eq!(s, 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, _) = call("GET", &dss.url(&format!("{OIR}/{id}")), Some(&tok), None).await;
        if s == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "intent not expired 15 s after its end");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Remote ID entities expire the same way: an ISA and a subscription ending in 2 s are gone
    // once the sweep has run.
    let sp = token("sp", &["rid.service_provider"]);
    let dp = token("dp", &["rid.display_provider"]);
    let isa_path = format!("/rid/v2/dss/identification_service_areas/{}", new_id());
    let sub_path = format!("/rid/v2/dss/subscriptions/{}", new_id());
    let body = |url: &str| json!({"extents": square(0.0, 100.0, 0.0, 100.0, 0, 2), "uss_base_url": url});
    let (s, r) = call("PUT", &dss.url(&isa_path), Some(&sp), Some(&body("https://sp.test"))).await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = call("PUT", &dss.url(&sub_path), Some(&dp), Some(&body("https://dp.test"))).await;
    assert_eq!(s, 200, "{r}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (isa, _) = call("GET", &dss.url(&isa_path), Some(&dp), None).await;
        let (sub, _) = call("GET", &dss.url(&sub_path), Some(&dp), None).await;
        if (isa, sub) == (404, 404) {
            break;
        }
        assert!(Instant::now() < deadline, "ISA ({isa}) or subscription ({sub}) not expired 15 s after its end");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Logs to a pipe carry no colour codes, `--log-format json` writes one JSON object per line,
/// and a SIGTERM leaves a line saying why the process stopped.
#[test]
fn logs_are_plain_or_json_and_say_why_the_process_stopped() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    for json in [false, true] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(crate::harness::BIN);
        cmd.args(["dss", "--insecure-dev-auth", "--listen", "127.0.0.1:0", "--data-dir"]).arg(tmp.path().join("d"));
        if json {
            cmd.args(["--log-format", "json"]);
        }
        let mut child =
            cmd.env("RUST_LOG", "info").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the DSS");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("listening line");
        assert!(line.contains("listening on"), "{line}");
        let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success();
        assert!(ok);
        let status = child.wait().expect("wait");
        assert!(status.success(), "SIGTERM ends the DSS cleanly: {status:?}");
        let mut logs = String::new();
        child.stderr.take().expect("stderr").read_to_string(&mut logs).expect("logs");
        assert!(!logs.contains('\u{1b}'), "no ANSI codes in a pipe:\n{logs}");
        assert!(logs.contains("SIGTERM") && logs.contains("stopped"), "the shutdown is logged:\n{logs}");
        if json {
            for l in logs.lines().filter(|l| !l.trim().is_empty()) {
                let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}` is not JSON: {e}"));
                assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{l}");
            }
        }
    }
}

/// A client stuck halfway through its headers cannot hold the DSS up: after SIGTERM it exits
/// within the grace period, and the data directory is free again.
#[test]
fn sigterm_with_a_half_open_client_exits_within_the_grace_period() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("d");
    let mut child = Command::new(crate::harness::BIN)
        .args(["dss", "--insecure-dev-auth", "--listen", "127.0.0.1:0", "--shutdown-grace-secs", "1", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the DSS");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("listening line");
    let addr = line.trim().rsplit("http://").next().expect("address").to_owned();
    let mut half = std::net::TcpStream::connect(&addr).expect("connect");
    half.write_all(b"GET /healthy HTTP/1.1\r\nHost: x\r\n").expect("half a request");
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success();
    assert!(ok);
    // Bounded wait, far above the 1 s grace period: the process must be gone.
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = child.try_wait().expect("try_wait") {
            exited = Some(status);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let Some(status) = exited else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the DSS was still running 10 s after SIGTERM with a half-open client");
    };
    assert!(status.success(), "{status:?}");
    drop(half);
    // The lock is released: a new process opens the same data directory.
    let again = crate::harness::Dss::start_in(&data, &[]);
    drop(again);
}
