//! The second hardening pass (issue 24): each test replays what a hostile tester did to stall,
//! lock out or act for another party, against the real binary, bounded in requests and time.

use serde_json::{json, Value};

use crate::harness::*;

fn polygon_volume(vertices: &[(f64, f64)], t0: i64, t1: i64) -> Value {
    let vertices: Vec<Value> = vertices.iter().map(|(lat, lng)| json!({"lat": lat, "lng": lng})).collect();
    json!({
        "volume": {"outline_polygon": {"vertices": vertices},
                   "altitude_lower": {"value": 0.0, "reference": "W84", "units": "M"},
                   "altitude_upper": {"value": 120.0, "reference": "W84", "units": "M"}},
        "time_start": rfc3339(t0), "time_end": rfc3339(t1)
    })
}

/// Thin slivers along one meridian (lat -29 to 88, 10 to 70; 1e-7° wide) used to cost seconds
/// of CPU each (their boxes were padded to whole hemispheres, and every write marked millions
/// of area cells): queries answered after the 10 s request timeout (503), and a subscription
/// or intent over one never answered. Now each is answered at once and correctly, also with
/// four at a time and a cheap query beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slivers_across_a_continent_are_answered_and_exact() {
    let dss = Dss::start();
    let tok = token("uss1", &[SC]);
    // Flights along the meridian 8° E, and beside it (1 km east), between 20° and 60° N.
    let mut on_meridian = Vec::new();
    for i in 0..40 {
        let lat = 20.0 + i as f64;
        for (lng, on) in [(8.0, true), (8.0 + 1000.0 / (111_320.0 * f64::cos(lat.to_radians())), false)] {
            let body = intent_body(vec![circle(lat, lng, 50.0, 60, 3600)], &[], "Accepted");
            let (id, _, _) = create_intent(&dss, &tok, &body).await;
            if on {
                on_meridian.push(id);
            }
        }
    }
    on_meridian.sort();
    let sliver_a = [(-29.0, 8.0), (88.0, 8.0), (-29.0, 8.0000001)];
    let sliver_b = [(10.0, 8.0), (70.0, 8.0), (10.0, 8.0000001)];
    let query = |v: &[(f64, f64)]| json!({"area_of_interest": polygon_volume(v, 0, 7200)});
    let url = dss.url(&format!("{OIR}/query"));
    let found = |r: &Value| -> Vec<String> {
        let mut ids: Vec<String> = r["operational_intent_references"]
            .as_array()
            .map(|l| l.iter().filter_map(|i| i["id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        ids.sort();
        ids
    };
    // Four slivers at once and a cheap query beside them: every one answered, exactly.
    let cheap = json!({"area_of_interest": circle(40.0, 8.0, 100.0, 0, 7200)});
    let (qa, qb) = (query(&sliver_a), query(&sliver_b));
    let (a, b, c, d, small) = tokio::join!(
        call("POST", &url, Some(&tok), Some(&qa)),
        call("POST", &url, Some(&tok), Some(&qb)),
        call("POST", &url, Some(&tok), Some(&qa)),
        call("POST", &url, Some(&tok), Some(&qb)),
        call("POST", &url, Some(&tok), Some(&cheap)),
    );
    for (what, (s, r)) in [("-29..88", &a), ("10..70", &b), ("-29..88 again", &c), ("10..70 again", &d)] {
        assert_eq!(*s, 200, "sliver {what}: {r}");
        // The slivers cover 20..60 N on the meridian: exactly the flights on it, none beside it.
        assert_eq!(found(r), on_meridian, "sliver {what} finds exactly the flights on its meridian");
    }
    assert_eq!(small.0, 200, "{}", small.1);
    assert_eq!(found(&small.1).len(), 1, "{}", small.1);
    // A subscription and an intent over such a sliver are written and answered.
    let (s, r) = call(
        "PUT",
        &dss.url(&format!("{SUBS}/{}", new_id())),
        Some(&tok),
        Some(&json!({"extents": polygon_volume(&sliver_a, 0, 7200), "uss_base_url": "http://uss.test",
                     "notify_for_operational_intents": true, "notify_for_constraints": false})),
    )
    .await;
    assert_eq!(s, 200, "subscription over a sliver: {r}");
    assert_eq!(r["operational_intent_references"].as_array().map(Vec::len), Some(on_meridian.len()), "{r}");
    let body = intent_body(vec![polygon_volume(&sliver_b, 7300, 9000)], &[], "Accepted");
    let (s, r) = call("PUT", &dss.url(&format!("{OIR}/{}", new_id())), Some(&tok), Some(&body)).await;
    assert_eq!(s, 201, "intent over a sliver: {r}");
    // The DSS is not stuck: an ordinary query still answers.
    let (s, r) = call("POST", &url, Some(&tok), Some(&cheap)).await;
    assert_eq!(s, 200, "{r}");
}

/// ~400 invalid-token requests per second from one address used to make a valid token from
/// the same address get 429 on 40% of its requests (behind a NAT, every USS there loses the
/// DSS). Now the flood is refused with 429 and the valid token is served every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_bad_tokens_never_locks_out_a_good_one_from_the_same_address() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dss = Dss::start_in(&tmp.path().join("d"), &["--rate-limit-failed-auth-per-ip", "20"]);
    let url = dss.url(&format!("{OIR}/{}", new_id()));
    let good = token("good", &[SC]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Four flooders of fresh forged tokens (valid shape, bad signature) and of garbage.
    let forged = {
        let t = token("mallory", &[SC]);
        let (head, rest) = t.split_once('.').expect("a JWT");
        let (claims, _sig) = rest.split_once('.').expect("a JWT");
        let (head, claims) = (head.to_owned(), claims.to_owned());
        move |i: usize| format!("{head}.{claims}.{}", "A".repeat(80 + i % 50))
    };
    let mut flooders = Vec::new();
    for f in 0..4 {
        let (stop, url, forged) = (stop.clone(), url.clone(), forged.clone());
        flooders.push(tokio::spawn(async move {
            let http = client();
            let (mut sent, mut limited) = (0usize, 0usize);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 5_000 {
                let tok = if sent % 2 == 0 { forged(f * 10_000 + sent) } else { format!("garbage-{f}-{sent}") };
                if let Ok(r) = http.get(&url).bearer_auth(tok).send().await {
                    limited += usize::from(r.status() == 429);
                }
                sent += 1;
            }
            (sent, limited)
        }));
    }
    let http = client();
    let mut statuses = Vec::new();
    for _ in 0..60 {
        let r = http.get(&url).bearer_auth(&good).send().await.expect("answered");
        statuses.push(r.status().as_u16());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut sent, mut limited) = (0, 0);
    for f in flooders {
        let (s, l) = f.await.expect("flooder");
        sent += s;
        limited += l;
    }
    assert!(limited > 0, "the flood ({sent} requests) must have exhausted the address's budget");
    assert!(statuses.iter().all(|s| *s == 404), "the valid token is always served (404: no such intent): {statuses:?}");
}

/// A polygon with a vertex on another edge was accepted at some latitudes and refused at
/// others (the sign of a rounded determinant decided). Now a vertex on another edge's geodesic
/// (a meridian edge: the straight line in degrees is the geodesic) is refused everywhere, in
/// both hemispheres and beside the antimeridian, and the same outline with the vertex moved a
/// little off the edge is accepted everywhere.
#[tokio::test]
async fn a_vertex_on_another_edge_is_refused_at_every_latitude() {
    let dss = Dss::start();
    let tok = token("uss1", &[SC]);
    let query = |v: Vec<(f64, f64)>| json!({"area_of_interest": polygon_volume(&v, 0, 600)});
    let url = dss.url(&format!("{OIR}/query"));
    for lat in [-80.0, -45.0, -12.3, 0.0, 7.7, 33.0, 59.9, 79.0] {
        for lng in [-179.995, -73.0, 0.0, 8.5, 151.2, 179.995] {
            let d = 0.005;
            // Square (lat, lng) .. (lat + d, lng + d), with a fifth vertex on its west edge
            // (a meridian) reached from the east side: the outline pinches onto that edge.
            let pinch = vec![(lat, lng), (lat, lng + d), (lat + d, lng + d), (lat + d / 2.0, lng), (lat + d, lng)];
            let (s, r) = call("POST", &url, Some(&tok), Some(&query(pinch))).await;
            assert_error_shape(s, &r, 400, &format!("a vertex on another edge at {lat},{lng}"));
            assert!(r["message"].as_str().is_some_and(|m| m.contains("touch") || m.contains("cross")), "{r}");
            // A spike: up the west edge's meridian beyond the square, and straight back down.
            let spike = vec![(lat, lng), (lat, lng + d), (lat + d, lng + d), (lat + d, lng), (lat + 1.5 * d, lng)];
            let (s, r) = call("POST", &url, Some(&tok), Some(&query(spike))).await;
            assert_error_shape(s, &r, 400, &format!("a spike at {lat},{lng}"));
            // The same pinch 1e-6° (about 8 cm or more) east of the edge is a valid outline.
            let near =
                vec![(lat, lng), (lat, lng + d), (lat + d, lng + d), (lat + d / 2.0, lng + 1e-6), (lat + d, lng)];
            let (s, r) = call("POST", &url, Some(&tok), Some(&query(near))).await;
            assert_eq!(s, 200, "a vertex 1e-6° off the edge at {lat},{lng}: {r}");
        }
    }
}

/// 1,100 connections that sent a whole request head with a token and then dribble their body,
/// under a 1024 file limit, made `/healthy` fail 13 times in 14: a connection waiting for its
/// body counted as busy and could not be evicted. Now such connections count as idle at the
/// cap, and a body that does not arrive within `--body-timeout-secs` is answered 408 and its
/// connection closed. (Scaled down: 300 dribblers under a 128 file limit.)
#[test]
fn clients_dribbling_their_bodies_cannot_hold_the_server() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dss = Dss::start_under(&["prlimit", "--nofile=128:128"], &tmp.path().join("d"), &["--body-timeout-secs", "2"]);
    let addr = dss.base.trim_start_matches("http://").to_owned();
    let tok = token("uss1", &[SC]);
    let head = format!(
        "PUT {OIR}/{} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {tok}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"ext",
        new_id()
    );
    // One dribbler first, watched until it is answered.
    let mut first = TcpStream::connect(&addr).expect("connect");
    first.write_all(head.as_bytes()).expect("head");
    let mut dribblers = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connection {i} refused by the kernel: {e}"));
        let _ = s.write_all(head.as_bytes());
        dribblers.push(s);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        for i in 0..14 {
            let (s, body) =
                tokio::time::timeout(Duration::from_secs(10), call("GET", &dss.url("/healthy"), None, None))
                    .await
                    .unwrap_or_else(|_| panic!("/healthy attempt {i} not answered while bodies dribble"));
            assert_eq!(s, 200, "/healthy attempt {i}: {body}");
            // Keep the dribblers dribbling.
            for d in &mut dribblers {
                let _ = d.write_all(b" ");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // The first dribbler (evicted, or answered 408 once its 2 s ran out) is closed by the server.
    first.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    let mut answer = Vec::new();
    let _ = first.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "a dribbled body gets 408 or is cut off: {answer}"
    );
    // A lone dribbler, on a server with room, is answered 408 with a reason once its time is up.
    drop(dribblers);
    std::thread::sleep(Duration::from_millis(300));
    let mut lone = TcpStream::connect(&addr).expect("connect");
    lone.write_all(head.as_bytes()).expect("head");
    lone.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    let mut answer = Vec::new();
    let _ = lone.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert!(answer.contains("did not arrive in time"), "{answer}");
}

/// A burst of one subject's requests past its rate limit, each with a small body, on pooled
/// keep-alive connections: the early 429s used to close connections with the body unread, and
/// the client saw broken pipes (1,388 in one burst). Now every request gets an HTTP answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn early_answers_never_break_pooled_connections() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dss = Dss::start_in(&tmp.path().join("d"), &["--rate-limit-per-sub", "5", "--rate-limit-burst", "10"]);
    let tok = token("bursty", &[SC]);
    let http = reqwest::Client::builder().pool_max_idle_per_host(8).build().expect("client");
    // A body of a few KiB (unknown fields are ignored): the old server left it unread and
    // closed the connection under the client (259 broken pipes in 800 requests with Python's
    // http.client against the previous build).
    let mut body = intent_body(vec![square(0.0, 100.0, 0.0, 100.0, 60, 600)], &[], "Accepted");
    body["padding"] = json!("x".repeat(2000));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (http, tok, body, base) = (http.clone(), tok.clone(), body.clone(), dss.url(OIR));
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..100 {
                let url = format!("{base}/{}", uuid::Uuid::new_v4());
                let bad = if (w + i) % 3 == 0 { "not-a-token".to_owned() } else { tok.clone() };
                match http.put(&url).bearer_auth(bad).json(&body).send().await {
                    Ok(r) => statuses.push(r.status().as_u16()),
                    Err(e) => panic!("request {i} of worker {w} failed below HTTP: {e:?}"),
                }
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    assert_eq!(all.len(), 800);
    assert!(all.contains(&429) && all.contains(&401), "the burst must have been limited: {all:?}");
}

/// One reporter filling the report archive used to evict everyone else's reports. Now each
/// reporter's share is its own: a flood of 40 reports from one subject leaves another's three
/// in place, also after a restart.
#[tokio::test]
async fn a_flood_of_reports_evicts_only_the_flooders_own() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("d");
    let dss = Dss::start_in(&data, &["--max-reports", "5"]);
    let report = |n: usize| {
        json!({"exchange": {"url": "http://x.test", "method": "GET", "recorder_role": "Client",
            "request_time": rfc3339(0), "problem": format!("problem {n}")}})
    };
    let (victim, flooder) = (token("victim", &[SC]), token("flooder", &[SC]));
    let mut victims = Vec::new();
    for n in 0..3 {
        let (s, r) = call("POST", &dss.url("/dss/v1/reports"), Some(&victim), Some(&report(n))).await;
        assert_eq!(s, 201, "{r}");
        victims.push(r["report_id"].as_str().expect("id").to_owned());
    }
    for n in 0..40 {
        let (s, r) = call("POST", &dss.url("/dss/v1/reports"), Some(&flooder), Some(&report(100 + n))).await;
        assert_eq!(s, 201, "{r}");
    }
    dss.kill9();
    let files: Vec<String> = std::fs::read_dir(data.join("reports"))
        .expect("reports directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    for id in &victims {
        assert!(files.iter().any(|f| f.contains(id.as_str())), "the victim's report {id} is kept: {files:?}");
    }
    assert_eq!(files.len(), 3 + 5, "the victim's 3 and the flooder's newest 5: {files:?}");
    // Each keeps its share across a restart.
    let again = Dss::start_in(&data, &["--max-reports", "5"]);
    drop(again);
    assert_eq!(std::fs::read_dir(data.join("reports")).expect("dir").count(), 8);
}

/// Any holder of `interuss.flight_planning.direct_automated_test` from the shared token issuer
/// (another USS) could clear an area on our participant and end our operator's flights. Now the
/// interface answers only the listed test director, a participant with `--flight-planning` and
/// no director refuses to start, and clearing an area ends only the flights the interface
/// itself created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qualification_interface_is_not_a_back_door() {
    use crate::flight_planning::{area, fp_at, upsert, PLAN};
    use crate::uss::{flight, op, Cluster, FULL};
    const DIRECT: &str = "interuss.flight_planning.direct_automated_test";
    let cluster = Cluster::start();
    // No director named: refuses to start, naming the flag.
    let out = std::process::Command::new(BIN)
        .args(["uss", "--listen", "127.0.0.1:0", "--operator-listen", "127.0.0.1:0", "--data-dir"])
        .arg(cluster.dir.path().join("nobody"))
        .args(["--dss-url", "http://127.0.0.1:9", "--token-url", "http://127.0.0.1:9/token", "--client-id", "x"])
        .args(["--jwt-public-key", "src/keys/dev-public.pem", "--flight-planning"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run");
    assert!(!out.status.success(), "must refuse to start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--flight-planning-subject"), "{err}");

    let alpha = cluster.participant_with(
        "alpha",
        &FULL,
        &cluster.dir.path().join("alpha"),
        &["--flight-planning", "--flight-planning-subject", "qualifier"],
    );
    // The operator's own flight, and one the test director planned, in the same area.
    let (s, own) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.5, 8.5, 100.0, 0.0, 120.0, 60, 1800))).await;
    assert_eq!(s, 200, "{own}");
    let own_id = own["operational_intent_id"].as_str().expect("id").to_owned();
    let plan = cluster.token("qualifier", PLAN).await;
    let fp_id = uuid::Uuid::new_v4().to_string();
    let (s, r) = fp_at(
        &alpha.url,
        Some(&plan),
        "PUT",
        &format!("/flight_plans/{fp_id}"),
        Some(&upsert("Planned", "Nominal", area(0.01, 100.0, 60, 1800), 0, "IfAllowed")),
    )
    .await;
    assert_eq!((s, r["planning_result"].as_str()), (200, Some("Completed")), "{r}");
    // Another USS holding the director's scope from the shared issuer: 403 everywhere.
    let other = cluster.token("gamma", DIRECT).await;
    let clear = json!({"request_id": "c1", "extent": area(0.0, 5000.0, -60, 7200)[0].clone()});
    let (s, r) = fp_at(&alpha.url, Some(&other), "POST", "/clear_area_requests", Some(&clear)).await;
    assert_error_shape(s, &r, 403, "another USS clearing our area");
    let (s, r) = fp_at(&alpha.url, Some(&other), "GET", "/status", None).await;
    assert_error_shape(s, &r, 403, "another USS on the interface");
    let other_plan = cluster.token("gamma", PLAN).await;
    let (s, r) = fp_at(&alpha.url, Some(&other_plan), "DELETE", &format!("/flight_plans/{fp_id}"), None).await;
    assert_error_shape(s, &r, 403, "another USS closing a flight plan");
    // The director clears the area: its own flight goes, the operator's stays.
    let director = cluster.token("qualifier", DIRECT).await;
    let (s, r) = fp_at(&alpha.url, Some(&director), "POST", "/clear_area_requests", Some(&clear)).await;
    assert_eq!((s, r["outcome"]["success"].as_bool()), (200, Some(true)), "{r}");
    let (s, st) = op(&alpha, "GET", "/operator/status", None).await;
    assert_eq!(s, 200, "{st}");
    let own_intents: Vec<&String> = st["own_intents"].as_object().expect("own intents").keys().collect();
    assert_eq!(own_intents, vec![&own_id], "only the operator's flight remains: {st}");
}
