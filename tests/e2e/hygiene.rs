//! Connection hygiene of the real binary: slow and idle clients are cut off, and a process
//! with a low file limit keeps answering while hundreds of idle connections are open.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{call, token, Dss};

/// Reads until the server closes the connection (or `limit` passes); returns how long it took,
/// or `None` if the connection was still open at `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream.set_read_timeout(Some(Duration::from_millis(200))).expect("read timeout");
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// A client sending its request head one byte every 300 ms is disconnected once the header
/// timeout passes; a connection that sends nothing is closed after the idle timeout; a normal
/// client on the same server is answered throughout.
#[test]
fn slow_headers_and_idle_connections_are_cut_off() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dss = Dss::start_in(&tmp.path().join("d"), &["--header-timeout-secs", "1", "--idle-timeout-secs", "2"]);
    let addr = dss.base.trim_start_matches("http://").to_owned();

    let mut idle = TcpStream::connect(&addr).expect("connect");
    let idle_since = Instant::now();
    let mut slow = TcpStream::connect(&addr).expect("connect");
    let head =
        b"GET /healthy HTTP/1.1\r\nHost: localhost\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let start = Instant::now();
    let mut cut = None;
    for b in head {
        if slow.write_all(&[*b]).is_err() {
            cut = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if start.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let cut = cut.or_else(|| closed_within(&mut slow, Duration::from_secs(1)).map(|_| start.elapsed()));
    let cut = cut.expect("a client dribbling its headers must be disconnected");
    assert!(cut < Duration::from_secs(5), "cut off after {cut:?}, header timeout 1 s");

    closed_within(&mut idle, Duration::from_secs(8)).expect("an idle connection must be closed");
    let open_for = idle_since.elapsed();
    assert!(open_for < Duration::from_secs(6), "an idle connection stayed {open_for:?} (idle timeout 2 s)");

    // Meanwhile an ordinary request is served, and a kept-alive client can make several.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let (s, _) = call("GET", &dss.url("/healthy"), None, None).await;
        assert_eq!(s, 200);
    });
}

/// With the open-file limit lowered to 128 and 300 idle connections open (some of them
/// halfway through a request head), `/healthy` and an authenticated request are still answered.
#[test]
fn idle_connections_above_the_file_limit_do_not_lock_out_real_clients() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dss = Dss::start_under(&["prlimit", "--nofile=128:128"], &tmp.path().join("d"), &[]);
    let addr = dss.base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for i in 0..300 {
        match TcpStream::connect(&addr) {
            Ok(mut s) => {
                if i % 2 == 0 {
                    let _ = s.write_all(b"PUT /dss/v1/subscriptions/x HTTP/1.1\r\nHost: a\r\n");
                }
                idle.push(s);
            }
            Err(e) => panic!("connection {i} refused by the kernel: {e}"),
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let tok = token("uss1", &["utm.strategic_coordination"]);
        for _ in 0..3 {
            let started = Instant::now();
            let (s, body) =
                tokio::time::timeout(Duration::from_secs(10), call("GET", &dss.url("/healthy"), None, None))
                    .await
                    .expect("/healthy must be answered while idle connections fill the file limit");
            assert_eq!(s, 200, "{body}");
            let url = dss.url(&format!("/dss/v1/operational_intent_references/{}", uuid::Uuid::new_v4()));
            let (s, body) = tokio::time::timeout(Duration::from_secs(10), call("GET", &url, Some(&tok), None))
                .await
                .expect("an authenticated request must be answered while idle connections fill the file limit");
            assert_eq!(s, 404, "{body}");
            assert!(started.elapsed() < Duration::from_secs(10));
        }
    });
    // Some of the idle connections were closed to make room.
    let mut closed = 0;
    for s in &mut idle {
        s.set_nonblocking(true).expect("nonblocking");
        let mut b = [0u8; 16];
        if matches!(s.read(&mut b), Ok(0)) {
            closed += 1;
        }
    }
    assert!(closed > 0, "at the cap the longest-idle connections make room");
}

/// Past its burst, a subject gets 429 with `Retry-After` in `ErrorResponse` shape while
/// another subject is served; invalid tokens count against the sender's address, which is then
/// refused before its tokens are even checked, and served again once its budget refills.
#[test]
fn rate_limits_per_subject_and_for_invalid_tokens_per_address() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dss = Dss::start_in(
        &tmp.path().join("d"),
        &["--rate-limit-per-sub", "1", "--rate-limit-burst", "3", "--rate-limit-failed-auth-per-ip", "1"],
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let http = reqwest::Client::new();
        let url = dss.url(&format!("/dss/v1/operational_intent_references/{}", uuid::Uuid::new_v4()));
        let get = |tok: String| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http.get(&url).bearer_auth(tok).send().await.expect("answered");
                let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap_or_default().to_owned());
                let status = r.status().as_u16();
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                (status, retry, body)
            }
        };
        let busy = token("busy", &["utm.strategic_coordination"]);
        for i in 0..3 {
            let (s, _, b) = get(busy.clone()).await;
            assert_eq!(s, 404, "request {i} is within the burst: {b}");
        }
        let (s, retry, b) = get(busy.clone()).await;
        assert_eq!(s, 429, "{b}");
        assert!(b["message"].as_str().is_some_and(|m| m.contains("busy")), "{b}");
        assert!(retry.as_deref().and_then(|r| r.parse::<u64>().ok()).is_some_and(|r| r >= 1), "{retry:?}");
        let (s, _, b) = get(token("calm", &["utm.strategic_coordination"])).await;
        assert_eq!(s, 404, "another subject is not limited: {b}");

        // Five invalid tokens spend this address's budget for failed authentication.
        for i in 0..5 {
            let (s, _, b) = get(format!("garbage-{i}")).await;
            assert_eq!(s, 401, "{b}");
        }
        let (s, retry, b) = get("garbage".into()).await;
        assert_eq!(s, 429, "{b}");
        assert!(retry.is_some());
        let (s, _, _) = get(token("calm", &["utm.strategic_coordination"])).await;
        assert_eq!(s, 429, "refused before the token is checked");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (s, _, b) = get(token("calm", &["utm.strategic_coordination"])).await;
        assert_eq!(s, 404, "served again once the budget refills: {b}");
    });
}

/// Per-manager quotas: past a limit, a create gets 429 naming the limit; other managers and
/// changes that do not add are unaffected; removing makes room again.
#[test]
fn quotas_per_manager() {
    use crate::harness::{assert_error_shape, intent_body, new_id, square, CM, CR, OIR, SC, SUBS};
    use serde_json::json;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dss = Dss::start_in(
        &tmp.path().join("d"),
        &[
            "--max-intents-per-manager",
            "2",
            "--max-constraints-per-manager",
            "1",
            "--max-subscriptions-per-manager",
            "3",
            "--max-vertices-per-manager",
            "100",
        ],
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let tok = token("q1", &[SC, CM]);
        let put = |k: usize| {
            let (tok, url) = (tok.clone(), dss.url(&format!("{OIR}/{}", new_id())));
            async move {
                let body = intent_body(vec![square(1000.0 * k as f64, 100.0, 0.0, 100.0, 60, 600)], &[], "Accepted");
                call("PUT", &url, Some(&tok), Some(&body)).await
            }
        };
        let (s, first) = put(0).await;
        assert_eq!(s, 201, "{first}");
        let (s, b) = put(1).await;
        assert_eq!(s, 201, "{b}");
        let (s, b) = put(2).await;
        assert_error_shape(s, &b, 429, "a third intent");
        assert!(b["message"].as_str().is_some_and(|m| m.contains("--max-intents-per-manager")), "{b}");
        // Another manager is not affected.
        let url = dss.url(&format!("{OIR}/{}", new_id()));
        let body = intent_body(vec![square(5000.0, 100.0, 0.0, 100.0, 60, 600)], &[], "Accepted");
        let (s, b) = call("PUT", &url, Some(&token("q2", &[SC])), Some(&body)).await;
        assert_eq!(s, 201, "{b}");
        // Removing one makes room.
        let r = &first["operational_intent_reference"];
        let del = dss.url(&format!("{OIR}/{}/{}", r["id"].as_str().expect("id"), r["ovn"].as_str().expect("ovn")));
        let (s, b) = call("DELETE", &del, Some(&tok), None).await;
        assert_eq!(s, 200, "{b}");
        let (s, b) = put(3).await;
        assert_eq!(s, 201, "{b}");

        // Vertices: one intent of 120 vertices passes the limit of 100.
        let ring: Vec<_> = (0..120)
            .map(|i| {
                let a = i as f64 / 120.0 * std::f64::consts::TAU;
                json!({"lat": 46.5 + 0.001 * a.sin(), "lng": 7.5 + 0.001 * a.cos()})
            })
            .collect();
        let mut big = intent_body(vec![square(0.0, 100.0, 0.0, 100.0, 60, 600)], &[], "Accepted");
        big["extents"][0]["volume"]["outline_polygon"]["vertices"] = json!(ring);
        let (s, b) = call("PUT", &dss.url(&format!("{OIR}/{}", new_id())), Some(&token("v", &[SC])), Some(&big)).await;
        assert_error_shape(s, &b, 429, "120 vertices");
        assert!(b["message"].as_str().is_some_and(|m| m.contains("--max-vertices-per-manager")), "{b}");

        // Constraints.
        let constraint = |k: usize| json!({"extents": [square(1000.0 * k as f64, 100.0, 0.0, 100.0, 60, 600)], "uss_base_url": "http://uss.test/utm"});
        let (s, b) = call("PUT", &dss.url(&format!("{CR}/{}", new_id())), Some(&tok), Some(&constraint(7))).await;
        assert_eq!(s, 201, "{b}");
        let (s, b) = call("PUT", &dss.url(&format!("{CR}/{}", new_id())), Some(&tok), Some(&constraint(8))).await;
        assert_error_shape(s, &b, 429, "a second constraint");
        assert!(b["message"].as_str().is_some_and(|m| m.contains("--max-constraints-per-manager")), "{b}");

        // Subscriptions: q1 holds the implicit ones of its two live intents, so a third live
        // subscription is admitted and a fourth is not.
        let sub = |k: usize| {
            json!({"extents": square(1000.0 * k as f64, 100.0, 0.0, 100.0, 60, 600), "uss_base_url": "http://uss.test/utm",
                   "notify_for_operational_intents": true})
        };
        let (s, b) = call("PUT", &dss.url(&format!("{SUBS}/{}", new_id())), Some(&tok), Some(&sub(0))).await;
        assert_eq!(s, 200, "{b}");
        let (s, b) = call("PUT", &dss.url(&format!("{SUBS}/{}", new_id())), Some(&tok), Some(&sub(1))).await;
        assert_error_shape(s, &b, 429, "a subscription past the limit");
        assert!(b["message"].as_str().is_some_and(|m| m.contains("--max-subscriptions-per-manager")), "{b}");
    });
}

/// Reports are kept in the data directory (reporter from the token), survive a restart, are
/// bounded in size (413) and in number (the oldest go).
#[test]
fn reports_are_stored_durably_and_bounded() {
    use crate::harness::{assert_error_shape, rfc3339, SC};
    use serde_json::json;
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("d");
    let flags = ["--max-report-bytes", "4096", "--max-reports", "3"];
    let dss = Dss::start_in(&data, &flags);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let tok = token("reporter-a", &[SC]);
    let report = |n: usize| {
        json!({"exchange": {"url": "http://x.test", "method": "GET", "recorder_role": "Client",
            "request_time": rfc3339(0), "problem": format!("timeout {n}")}, "reporter": "forged"})
    };
    let ids: Vec<String> = rt.block_on(async {
        let mut ids = Vec::new();
        for n in 0..4 {
            let (s, r) = call("POST", &dss.url("/dss/v1/reports"), Some(&tok), Some(&report(n))).await;
            assert_eq!(s, 201, "{r}");
            ids.push(r["report_id"].as_str().expect("id").to_owned());
        }
        let mut big = report(9);
        big["exchange"]["response_body"] = json!("x".repeat(5000));
        let (s, b) = call("POST", &dss.url("/dss/v1/reports"), Some(&tok), Some(&big)).await;
        assert_error_shape(s, &b, 413, "a report over --max-report-bytes");
        ids
    });
    dss.kill9();
    let files: Vec<String> = std::fs::read_dir(data.join("reports"))
        .expect("reports directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 3, "the three newest are kept: {files:?}");
    assert!(!files.iter().any(|f| f.contains(&ids[0])), "the oldest went first: {files:?}");
    let newest = files.iter().find(|f| f.contains(&ids[3])).expect("the newest report is kept");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("reports").join(newest)).expect("read")).expect("JSON");
    assert_eq!(v["reporter"], "reporter-a", "the reporter is the token's subject: {v}");
    assert_eq!(v["report"]["exchange"]["problem"], "timeout 3");
    // Still there after a restart.
    let again = Dss::start_in(&data, &flags);
    drop(again);
    assert_eq!(std::fs::read_dir(data.join("reports")).expect("dir").count(), 3);
}
