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
/// another subject is served; invalid tokens count against the sender's address, whose invalid
/// tokens are then refused with 429 until its budget refills, while a valid token from the same
/// address is still served.
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
        let (s, _, b) = get(token("calm", &["utm.strategic_coordination"])).await;
        assert_eq!(s, 404, "a valid token is served however many failures its address produced: {b}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (s, _, b) = get("garbage-again".into()).await;
        assert_eq!(s, 401, "an invalid token is told why again once the budget refills: {b}");
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

/// Total bytes of the store's files (log segments and snapshot) in `dir`.
fn store_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("data dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("wal-") || n.starts_with("snapshot")
        })
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// The data directory on a small tmpfs fills up: writes get 503 with a clear message and are
/// not applied, reads are served, `/healthy` says degraded; once space is freed writes succeed
/// by themselves; after kill -9 and a restart every acknowledged write is there and no refused
/// one is.
#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers_by_itself() {
    use crate::harness::{intent_body, new_id, square, Tmpfs, OIR, SC};
    let tmp = tempfile::tempdir().expect("tempdir");
    let disk = tmp.path().join("disk");
    let _fs = Tmpfs::mount(&disk, "8m");
    let data = disk.join("data");
    let flags = ["--log-preallocate-kib", "64"];
    let dss = Dss::start_in(&data, &flags);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let tok = token("filler", &[SC]);
    let put = |k: usize| {
        let (tok, id) = (tok.clone(), new_id());
        let url = dss.url(&format!("{OIR}/{id}"));
        async move {
            let body = intent_body(vec![square(300.0 * k as f64, 100.0, 0.0, 100.0, 60, 3600)], &[], "Accepted");
            let (s, b) = call("PUT", &url, Some(&tok), Some(&body)).await;
            (s, b, id)
        }
    };
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    rt.block_on(async {
        for k in 0..5 {
            let (s, b, id) = put(k).await;
            assert_eq!(s, 201, "{b}");
            acknowledged.push(id);
        }
    });
    // Fill the disk.
    let filler = disk.join("filler");
    {
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![1u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    rt.block_on(async {
        let mut k = 5;
        while refused.is_empty() && k < 2000 {
            let (s, b, id) = put(k).await;
            k += 1;
            match s {
                201 => acknowledged.push(id),
                503 => {
                    let m = b["message"].as_str().unwrap_or_default().to_owned();
                    assert!(m.contains("disk") && m.contains("not applied"), "a clear message: {b}");
                    refused.push(id);
                }
                other => panic!("a write on a full disk gets 201 or 503, not {other}: {b}"),
            }
        }
        assert!(!refused.is_empty(), "writes must be refused once the disk is full");
        for _ in 0..3 {
            let (s, b, id) = put(k).await;
            k += 1;
            assert_eq!(s, 503, "still full: {b}");
            refused.push(id);
        }
        // Reads go on; health says degraded.
        for id in &acknowledged {
            let (s, b) = call("GET", &dss.url(&format!("{OIR}/{id}")), Some(&tok), None).await;
            assert_eq!(s, 200, "{b}");
        }
        for id in &refused {
            let (s, _) = call("GET", &dss.url(&format!("{OIR}/{id}")), Some(&tok), None).await;
            assert_eq!(s, 404, "a refused write is not applied");
        }
        let r = reqwest::get(dss.url("/healthy")).await.expect("healthy");
        assert_eq!(r.status().as_u16(), 503);
        let v: serde_json::Value = r.json().await.expect("JSON");
        assert_eq!(v["status"], "degraded", "{v}");
        // Free the space: writes resume by themselves.
        std::fs::remove_file(&filler).expect("free space");
        let mut resumed = false;
        for _ in 0..50 {
            let (s, _, id) = put(k).await;
            k += 1;
            if s == 201 {
                acknowledged.push(id);
                resumed = true;
                break;
            }
            refused.push(id);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(resumed, "writes must succeed again once space is freed");
        let (s, _) = call("GET", &dss.url("/healthy"), None, None).await;
        assert_eq!(s, 200);
    });
    dss.kill9();
    let again = Dss::start_in(&data, &flags);
    rt.block_on(async {
        for id in &acknowledged {
            let (s, b) = call("GET", &again.url(&format!("{OIR}/{id}")), Some(&tok), None).await;
            assert_eq!(s, 200, "acknowledged {id} lost: {b}");
        }
        for id in &refused {
            let (s, _) = call("GET", &again.url(&format!("{OIR}/{id}")), Some(&tok), None).await;
            assert_eq!(s, 404, "refused {id} applied after restart");
        }
    });
}

/// A DSS that stays up compacts its log in the background: after 3,000 updates of one intent
/// (about 700 KB of log) its files stay within a small bound.
#[test]
fn the_log_stays_bounded_while_serving() {
    use crate::harness::{intent_body, new_id, square, OIR, SC};
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("d");
    let dss = Dss::start_in(
        &data,
        &[
            "--compact-min-log-kib",
            "64",
            "--compact-max-log-mib",
            "1",
            "--log-preallocate-kib",
            "64",
            "--rate-limit-per-sub",
            "0",
        ],
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let tok = token("updater", &[SC]);
    let id = new_id();
    let body = intent_body(vec![square(0.0, 100.0, 0.0, 100.0, 60, 3600)], &[], "Accepted");
    let mut largest = 0;
    rt.block_on(async {
        let (s, b) = call("PUT", &dss.url(&format!("{OIR}/{id}")), Some(&tok), Some(&body)).await;
        assert_eq!(s, 201, "{b}");
        let mut ovn = b["operational_intent_reference"]["ovn"].as_str().expect("ovn").to_owned();
        for i in 0..3000 {
            let (s, b) = call("PUT", &dss.url(&format!("{OIR}/{id}/{ovn}")), Some(&tok), Some(&body)).await;
            assert_eq!(s, 200, "update {i}: {b}");
            ovn = b["operational_intent_reference"]["ovn"].as_str().expect("ovn").to_owned();
            if i % 100 == 0 {
                largest = largest.max(store_bytes(&data));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let end = store_bytes(&data);
    largest = largest.max(end);
    assert!(largest < 400 << 10, "the store's files reached {largest} bytes (bound 400 KiB)");
    drop(dss);
    // Nothing lost by compacting: the last version is there after a restart.
    let again = Dss::start_in(&data, &[]);
    rt.block_on(async {
        let (s, b) = call("GET", &again.url(&format!("{OIR}/{id}")), Some(&tok), None).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["operational_intent_reference"]["version"], 3001, "{b}");
    });
}
