//! The participant tried as a hostile third party would: each test reproduces an attack or a
//! failure and shows it now fails safe.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::{call, new_id, BIN};
use crate::uss::{flight, op, Cluster, Participant, FULL};

const SC: &str = "utm.strategic_coordination";

/// What a fake peer does with every request it gets.
#[derive(Clone, Copy)]
enum Behaviour {
    /// 200 with a body that is not the details the standard defines.
    Garbage,
    /// 200 with valid JSON details naming another manager than the DSS records.
    Impostor,
    /// Accepts the connection and never answers.
    Hang,
    /// 200 with a 300 MB body, sent without a length.
    Huge,
    /// 503 to the first request, 204 to the rest.
    FlakyThenOk,
    /// Valid details managed by `gamma`, but only at `/p/uss/v1/operational_intents/{id}?x=1`
    /// (its base URL is `.../p?x=1`); 404 anywhere else.
    UnderQueryBase,
}

/// A peer on a free loopback port behaving badly; returns its base URL and a counter of the
/// requests it received.
async fn fake_peer(behaviour: Behaviour) -> (String, Arc<tokio::sync::Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(tokio::sync::Notify::new());
    let seen2 = seen.clone();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let seen = seen2.clone();
            let served = served.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                seen.notify_one();
                let request = String::from_utf8_lossy(&got).to_string();
                let id = request.split_whitespace().nth(1).and_then(|p| p.rsplit('/').next()).unwrap_or("").to_owned();
                match behaviour {
                    Behaviour::FlakyThenOk => {
                        let first = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
                        let status = if first { "503 Service Unavailable" } else { "204 No Content" };
                        let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                        let _ = sock.write_all(resp.as_bytes()).await;
                    }
                    Behaviour::Hang => {
                        tokio::time::sleep(std::time::Duration::from_secs(120)).await;
                    }
                    Behaviour::UnderQueryBase => {
                        let target = request.split_whitespace().nth(1).unwrap_or("").to_owned();
                        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                        let id = path.rsplit('/').next().unwrap_or("");
                        let right = path == format!("/p/uss/v1/operational_intents/{id}") && query == "x=1";
                        let (status, body) = if right {
                            ("200 OK", gamma_details(id).to_string())
                        } else {
                            ("404 Not Found", json!({"message": format!("nothing at {target}")}).to_string())
                        };
                        let resp = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = sock.write_all(resp.as_bytes()).await;
                    }
                    Behaviour::Garbage | Behaviour::Impostor => {
                        let body = match behaviour {
                            Behaviour::Garbage => {
                                json!({"operational_intent": {"reference": "not a reference"}}).to_string()
                            }
                            _ => impostor_details(&id).to_string(),
                        };
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = sock.write_all(resp.as_bytes()).await;
                    }
                    Behaviour::Huge => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"operational_intent\": \"";
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = vec![b'x'; 1 << 20];
                        for _ in 0..300 {
                            if sock.write_all(&chunk).await.is_err() {
                                return; // the participant cut it off
                            }
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

/// Well-formed details of `id` that claim `alpha` as manager (the DSS records `mallory`).
fn impostor_details(id: &str) -> Value {
    details(id, "alpha", "forged-ovn-forged-ovn", (10.0, 10.0, 50.0), (0, 3600), (0, 3600))
}

/// Valid details of `id` as `gamma` (the manager the DSS records) would serve them: a 300 m
/// circle at (47, 8.2) within the reference's times (600 s to 1800 s from when it was written).
fn gamma_details(id: &str) -> Value {
    details(id, "gamma", "gamma-ovn-gamma-ovn-gamma", (47.0, 8.2, 300.0), (600, 1790), (610, 1790))
}

/// Details of `id` naming `manager`, with one circle (lat, lng, radius) over `volume` seconds
/// from now and a reference over `reference` seconds.
fn details(
    id: &str,
    manager: &str,
    ovn: &str,
    circle: (f64, f64, f64),
    reference: (i64, i64),
    volume: (i64, i64),
) -> Value {
    let t = |s: i64| crate::harness::rfc3339(s);
    let (lat, lng, r) = circle;
    json!({"operational_intent": {
        "reference": {"id": id, "manager": manager, "uss_availability": "Unknown", "version": 1, "state": "Accepted",
                      "ovn": ovn, "time_start": t(reference.0), "time_end": t(reference.1),
                      "uss_base_url": "http://127.0.0.1:9", "subscription_id": new_id()},
        "details": {"volumes": [crate::harness::circle(lat, lng, r, volume.0, volume.1)], "off_nominal_volumes": [], "priority": 0}
    }})
}

/// Writes a reference managed by `sub` in the DSS directly, pointing at `base_url`.
async fn dss_reference(cluster: &Cluster, sub: &str, base_url: &str, lat: f64, lng: f64, t0: i64, t1: i64) -> String {
    let tok = cluster.token(sub, SC).await;
    let id = new_id();
    let body = json!({
        "extents": [crate::harness::circle(lat, lng, 300.0, t0, t1)],
        "key": [], "state": "Accepted", "uss_base_url": base_url,
        "new_subscription": {"uss_base_url": base_url, "notify_for_constraints": false}
    });
    let (s, r) =
        call("PUT", &format!("{}/dss/v1/operational_intent_references/{id}", cluster.dss.url), Some(&tok), Some(&body))
            .await;
    assert_eq!(s, 201, "{r}");
    id
}

/// Ids of the references the DSS holds near (47, 8) managed by `manager`.
async fn dss_ids(cluster: &Cluster, manager: &str) -> Vec<String> {
    let tok = cluster.token("auditor", SC).await;
    let q = json!({"area_of_interest": {"volume": {"outline_circle": {"center": {"lat": 47.0, "lng": 8.0}, "radius": {"value": 5000, "units": "M"}}}}});
    let (s, found) =
        call("POST", &format!("{}/dss/v1/operational_intent_references/query", cluster.dss.url), Some(&tok), Some(&q))
            .await;
    assert_eq!(s, 200, "{found}");
    let mut ids: Vec<String> = found["operational_intent_references"]
        .as_array()
        .expect("references")
        .iter()
        .filter(|r| r["manager"] == manager)
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

async fn own_ids(p: &Participant) -> Vec<String> {
    let (s, st) = op(p, "GET", "/operator/status", None).await;
    assert_eq!(s, 200, "{st}");
    let mut ids: Vec<String> = st["own_intents"].as_object().expect("own intents").keys().cloned().collect();
    ids.sort();
    ids
}

/// Waits (bounded) until the participant has no change in flight.
async fn settled(p: &Participant) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (s, st) = op(p, "GET", "/operator/status", None).await;
        if s == 200 && st["in_flight"].as_array().is_some_and(Vec::is_empty) {
            return st;
        }
        last = st;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the participant never finished reconciling: {last}");
}

async fn peer_post(url: &str, tok: &str, body: &Value) -> (u16, Value) {
    call("POST", url, Some(tok), Some(body)).await
}

#[tokio::test]
async fn spoofed_notifications_and_deletions_change_nothing() {
    let cluster = Cluster::start();
    let alpha = cluster.participant("alpha", &FULL);
    let bravo = cluster.participant("bravo", &FULL);
    let (s, _) = op(&bravo, "POST", "/operator/subscribe", Some(&flight(47.0, 8.0, 3000.0, 0.0, 400.0, 0, 7200))).await;
    assert_eq!(s, 200);
    let (s, a) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.0, 8.0, 300.0, 0.0, 120.0, 600, 1800))).await;
    assert_eq!(s, 200, "{a}");
    let a_id = a["operational_intent_id"].as_str().expect("id").to_owned();

    // mallory names itself manager of alpha's intent, with volumes far away.
    let mallory = cluster.token("mallory", SC).await;
    let mut forged = impostor_details(&a_id)["operational_intent"].clone();
    forged["reference"]["manager"] = json!("mallory");
    forged["reference"]["version"] = a["version"].clone();
    let notify = format!("{}/uss/v1/operational_intents", bravo.url);
    let body = json!({"operational_intent_id": a_id, "operational_intent": forged, "subscriptions": []});
    let (s, r) = peer_post(&notify, &mallory, &body).await;
    assert_eq!(s, 403, "a notification from a non-manager must be refused: {r}");
    assert!(r["message"].as_str().is_some_and(|m| m.contains("alpha")), "{r}");
    // ... or names alpha in the body while authenticated as mallory.
    let mut as_alpha = forged.clone();
    as_alpha["reference"]["manager"] = json!("alpha");
    let (s, r) = peer_post(
        &notify,
        &mallory,
        &json!({"operational_intent_id": a_id, "operational_intent": as_alpha, "subscriptions": []}),
    )
    .await;
    assert_eq!(s, 403, "{r}");
    // A deletion notice from mallory is refused, and bravo still knows alpha's operation.
    let (s, r) = peer_post(&notify, &mallory, &json!({"operational_intent_id": a_id, "subscriptions": []})).await;
    assert_eq!(s, 403, "{r}");
    let (_, st) = op(&bravo, "GET", "/operator/status", None).await;
    assert_eq!(st["others_intents"][&a_id]["reference"]["manager"], "alpha", "bravo's cache was changed: {st}");

    // bravo's plan on top of alpha's flight is still refused, naming alpha.
    let (s, r) = op(&bravo, "POST", "/operator/plan", Some(&flight(47.001, 8.0, 300.0, 0.0, 120.0, 900, 1500))).await;
    assert_eq!(s, 409, "{r}");
    assert_eq!(r["conflicts"][0]["manager"], "alpha", "{r}");
    assert_eq!(r["conflicts"][0]["kind"], "operational_intent", "{r}");

    // A spoofed constraint notice is refused too.
    let cm = cluster.token("mallory", "utm.constraint_management").await;
    // A deletion notice for a constraint nobody holds changes nothing, and the history says so.
    let unknown = new_id();
    let (s, r) = peer_post(
        &format!("{}/uss/v1/constraints", bravo.url),
        &cm,
        &json!({"constraint_id": unknown, "subscriptions": []}),
    )
    .await;
    assert_eq!(s, 204, "{r}");
    let (_, st) = op(&bravo, "GET", "/operator/status", None).await;
    let noted =
        st["notifications"].as_array().expect("history").iter().find(|n| n["entity_id"] == unknown.as_str()).cloned();
    assert_eq!(noted.map(|n| n["accepted"].clone()), Some(json!(false)), "{st}");
    let (s, r) = peer_post(
        &format!("{}/uss/v1/constraints", bravo.url),
        &cm,
        &json!({"constraint_id": a_id, "constraint": {"reference": forged["reference"], "details": {"volumes": []}}, "subscriptions": []}),
    )
    .await;
    assert_eq!(s, 403, "{r}");
}

#[tokio::test]
async fn the_operator_interface_is_separate_and_authenticated() {
    let cluster = Cluster::start();
    let alpha = cluster.participant("alpha", &FULL);
    let bravo = cluster.participant("bravo", &FULL);
    let (s, b) = op(&bravo, "POST", "/operator/plan", Some(&flight(47.0, 8.0, 300.0, 0.0, 120.0, 600, 1800))).await;
    assert_eq!(s, 200, "{b}");
    let b_id = b["operational_intent_id"].as_str().expect("id").to_owned();
    let c = crate::harness::client();

    // No operator route on the peer listener.
    let r = c.post(format!("{}/operator/intents/{b_id}/end", bravo.url)).send().await.expect("post");
    assert_eq!(r.status(), 404);
    // Without a token, or with a peer's utm.* token: refused.
    let r = c.post(format!("{}/operator/intents/{b_id}/end", bravo.operator)).send().await.expect("post");
    assert_eq!(r.status(), 401);
    let peer_token = cluster.token("alpha", &FULL.join(" ")).await;
    let r = c
        .post(format!("{}/operator/intents/{b_id}/end", bravo.operator))
        .bearer_auth(&peer_token)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    // A cross-origin text/plain post from a web page (no token): 401; with a token but not JSON: 415.
    let page_post = |tok: Option<&str>| {
        let mut req = c
            .post(format!("{}/operator/plan", bravo.operator))
            .header("origin", "http://evil.example")
            .header("content-type", "text/plain")
            .body(
                flight(47.0, 8.0, 50.0, 0.0, 50.0, 600, 900)
                    .to_string()
                    .replace("\"priority\":0", "\"priority\":2147483647"),
            );
        if let Some(t) = tok {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(page_post(None).await.expect("post").status(), 401);
    assert_eq!(page_post(Some(&bravo.token)).await.expect("post").status(), 415);
    // Priorities are bounded by --max-priority.
    let mut high = flight(47.2, 8.0, 50.0, 0.0, 50.0, 600, 900);
    high["priority"] = json!(i32::MAX);
    let (s, r) = op(&bravo, "POST", "/operator/plan", Some(&high)).await;
    assert_eq!(s, 400, "{r}");
    assert!(r["message"].as_str().is_some_and(|m| m.contains("max-priority")), "{r}");

    // Subscriptions aimed at the operator interface: a query in the base URL is accepted (the
    // reference DSS accepts one), a fragment is not; either way the participant appends the
    // peer path to the base URL's path, so none reaches an operator route.
    let mallory = cluster.token("mallory", SC).await;
    let sub = |base: String| {
        json!({"extents": crate::harness::circle(47.0, 8.0, 2000.0, 0, 3600), "uss_base_url": base,
               "notify_for_operational_intents": true})
    };
    let (s, r) = call(
        "PUT",
        &format!("{}/dss/v1/subscriptions/{}", cluster.dss.url, new_id()),
        Some(&mallory),
        Some(&sub(format!("{}/operator/intents/{b_id}/end#", bravo.operator))),
    )
    .await;
    assert_eq!(s, 400, "{r}");
    for base in [
        format!("{}/operator/intents/{b_id}/end?", bravo.operator),
        format!("{}/operator/intents/{b_id}/end", bravo.url),
    ] {
        let (s, r) = call(
            "PUT",
            &format!("{}/dss/v1/subscriptions/{}", cluster.dss.url, new_id()),
            Some(&mallory),
            Some(&sub(base)),
        )
        .await;
        assert_eq!(s, 200, "{r}");
    }
    // An innocent participant's routine notification then changes nothing for bravo.
    let (s, a) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.01, 8.0, 100.0, 0.0, 50.0, 600, 900))).await;
    assert_eq!(s, 200, "{a}");
    let a_id = a["operational_intent_id"].as_str().expect("id").to_owned();
    // Delivered after the answer: wait (bounded) for both outcomes on alpha's status.
    let mut evil: Vec<Value> = Vec::new();
    for _ in 0..100 {
        let (_, st) = op(&alpha, "GET", "/operator/status", None).await;
        evil = st["own_intents"][&a_id]["notified"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter(|d| d["uss_base_url"].as_str().is_some_and(|u| u.contains("/operator/")))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if evil.len() == 2 && evil.iter().all(|d| d["sending"] != true) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(evil.len(), 2, "both planted subscribers were called at their peer paths: {evil:?}");
    for d in &evil {
        assert_eq!((d["status"].clone(), d["acknowledged"].clone()), (json!(404), json!(false)), "{d}");
    }
    assert_eq!(own_ids(&bravo).await, vec![b_id.clone()], "bravo's flight must still be there");
    assert!(dss_ids(&cluster, "bravo").await.contains(&b_id));
}

#[tokio::test]
async fn unverifiable_details_block_overlapping_plans_and_say_why() {
    let cluster = Cluster::start();
    let bravo = cluster.participant("bravo", &FULL);
    for (behaviour, lng, needle) in [
        (Behaviour::Garbage, 8.0, "cannot be read"),
        (Behaviour::Impostor, 8.05, "manager"),
        (Behaviour::Huge, 8.1, "cut off"),
    ] {
        let (base, _) = fake_peer(behaviour).await;
        let id = dss_reference(&cluster, "mallory", &base, 47.0, lng, 600, 1800).await;
        let (s, r) = op(&bravo, "POST", "/operator/plan", Some(&flight(47.0, lng, 200.0, 0.0, 120.0, 900, 1500))).await;
        assert_eq!(s, 409, "an overlapping plan must be refused: {r}");
        let c = &r["conflicts"][0];
        assert_eq!(c["kind"], "unverifiable", "{r}");
        assert_eq!(c["id"], id.as_str(), "{r}");
        assert!(c["reason"].as_str().is_some_and(|m| m.contains(needle)), "reason should mention `{needle}`: {r}");
        // Outside its time window the same place is free.
        let (s, r) =
            op(&bravo, "POST", "/operator/plan", Some(&flight(47.0, lng, 200.0, 0.0, 120.0, 1900, 2400))).await;
        assert_eq!(s, 200, "{r}");
    }
    // bravo still answers: the 300 MB answer was cut off, not held.
    let (s, _) = op(&bravo, "GET", "/operator/status", None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn a_base_url_with_a_query_is_called_under_its_path_with_its_query() {
    let cluster = Cluster::start();
    let bravo = cluster.participant("bravo", &FULL);
    let (peer, _) = fake_peer(Behaviour::UnderQueryBase).await;
    // The DSS accepts a query in uss_base_url, as the reference DSS does.
    let id = dss_reference(&cluster, "gamma", &format!("{peer}/p?x=1"), 47.0, 8.2, 600, 1800).await;
    // bravo fetched the details at `/p/uss/v1/operational_intents/{id}?x=1` and verified them:
    // the conflict is with gamma's known operation, not an unverifiable entry.
    let (s, r) = op(&bravo, "POST", "/operator/plan", Some(&flight(47.0, 8.2, 200.0, 0.0, 120.0, 900, 1500))).await;
    assert_eq!(s, 409, "{r}");
    let c = &r["conflicts"][0];
    assert_eq!((c["kind"].as_str(), c["id"].as_str()), (Some("operational_intent"), Some(id.as_str())), "{r}");
    // The same peer under a base URL without the query answers 404: the entity is unverifiable.
    let id = dss_reference(&cluster, "gamma", &format!("{peer}/p"), 47.0, 8.3, 600, 1800).await;
    let (s, r) = op(&bravo, "POST", "/operator/plan", Some(&flight(47.0, 8.3, 200.0, 0.0, 120.0, 900, 1500))).await;
    assert_eq!(s, 409, "{r}");
    let c = &r["conflicts"][0];
    assert_eq!((c["kind"].as_str(), c["id"].as_str()), (Some("unverifiable"), Some(id.as_str())), "{r}");
    assert!(c["reason"].as_str().is_some_and(|m| m.contains("404")), "{r}");
    // Base URLs that must never be called are refused by the DSS, saying why.
    let tok = cluster.token("gamma", SC).await;
    for (bad, why) in [
        (format!("{peer}/p#frag"), "fragment"),
        ("http://user:pw@127.0.0.1:9/p".to_owned(), "user information"),
        ("ftp://127.0.0.1:9/p".to_owned(), "http(s)"),
    ] {
        let body = json!({"extents": [crate::harness::circle(47.0, 8.4, 100.0, 600, 1800)], "key": [],
                          "state": "Accepted", "uss_base_url": bad});
        let (s, r) = call(
            "PUT",
            &format!("{}/dss/v1/operational_intent_references/{}", cluster.dss.url, new_id()),
            Some(&tok),
            Some(&body),
        )
        .await;
        crate::harness::assert_error_shape(s, &r, 400, &bad);
        assert!(r["message"].as_str().is_some_and(|m| m.contains(why)), "`{bad}`: {r}");
    }
}

#[tokio::test]
async fn a_hanging_peer_does_not_delay_an_unrelated_plan() {
    let cluster = Cluster::start();
    let dir = cluster.dir.path().join("bravo");
    let bravo = cluster.participant_with("bravo", &FULL, &dir, &["--peer-timeout-secs", "60"]);
    let (base, seen) = fake_peer(Behaviour::Hang).await;
    dss_reference(&cluster, "slowpoke", &base, 47.0, 8.0, 600, 1800).await;
    let near = flight(47.0, 8.0, 200.0, 0.0, 120.0, 900, 1500);
    let far = flight(47.3, 8.3, 200.0, 0.0, 120.0, 900, 1500);
    let stuck = op(&bravo, "POST", "/operator/plan", Some(&near));
    tokio::pin!(stuck);
    // Wait until bravo is asking the hanging peer, then plan elsewhere.
    tokio::select! {
        _ = &mut stuck => panic!("the plan near the hanging peer finished before the peer was asked"),
        _ = seen.notified() => {}
    }
    let unrelated = op(&bravo, "POST", "/operator/plan", Some(&far));
    tokio::select! {
        (s, r) = unrelated => assert_eq!(s, 200, "{r}"),
        (s, r) = &mut stuck => panic!("the plan near the hanging peer ended first ({s} {r}): the unrelated plan waited for it"),
    }
}

#[tokio::test]
async fn kill_9_around_the_dss_write_is_reconciled_on_restart() {
    let cluster = Cluster::start();
    let dir = cluster.dir.path().join("alpha");
    let flight_at = |lng: f64| flight(47.0, lng, 100.0, 0.0, 120.0, 600, 1200);
    // 1. Dies after recording the change, before asking the DSS: the change is undone.
    let mut alpha = cluster.participant_with("alpha", &FULL, &dir, &["--crash-at", "after-write-ahead"]);
    let c = crate::harness::client();
    let r = c
        .post(format!("{}/operator/plan", alpha.operator))
        .bearer_auth(&alpha.token)
        .json(&flight_at(8.0))
        .send()
        .await;
    assert!(r.is_err() || r.is_ok_and(|r| !r.status().is_success()), "the process should have died mid-change");
    alpha.kill9();
    drop(alpha);
    let alpha = cluster.participant_with("alpha", &FULL, &dir, &[]);
    settled(&alpha).await;
    assert_eq!(dss_ids(&cluster, "alpha").await, Vec::<String>::new());
    assert_eq!(own_ids(&alpha).await, Vec::<String>::new());
    drop(alpha);

    // 2. Dies after the DSS wrote the reference, before recording it: the change is finished.
    let mut alpha = cluster.participant_with("alpha", &FULL, &dir, &["--crash-at", "after-dss-write"]);
    let r = c
        .post(format!("{}/operator/plan", alpha.operator))
        .bearer_auth(&alpha.token)
        .json(&flight_at(8.01))
        .send()
        .await;
    assert!(r.is_err() || r.is_ok_and(|r| !r.status().is_success()), "the process should have died mid-change");
    alpha.kill9();
    drop(alpha);
    let in_dss = dss_ids(&cluster, "alpha").await;
    assert_eq!(in_dss.len(), 1, "the DSS took the write before the crash");
    let alpha = cluster.participant_with("alpha", &FULL, &dir, &[]);
    settled(&alpha).await;
    assert_eq!(own_ids(&alpha).await, in_dss, "the participant and the DSS agree");
    // Its details are served, and the operator can end it.
    let peer = cluster.token("bravo", SC).await;
    let (s, d) =
        call("GET", &format!("{}/uss/v1/operational_intents/{}", alpha.url, in_dss[0]), Some(&peer), None).await;
    assert_eq!(s, 200, "{d}");
    let (s, e) = op(&alpha, "POST", &format!("/operator/intents/{}/end", in_dss[0]), None).await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(dss_ids(&cluster, "alpha").await, Vec::<String>::new());

    // 3. Dies after recording an end, before the DSS removed it: restart keeps the intent, endable.
    let alpha = {
        let alpha = cluster.participant_with("alpha", &FULL, &dir, &[]);
        let (s, p) = op(&alpha, "POST", "/operator/plan", Some(&flight_at(8.02))).await;
        assert_eq!(s, 200, "{p}");
        drop(alpha);
        let mut alpha = cluster.participant_with("alpha", &FULL, &dir, &["--crash-at", "after-write-ahead"]);
        let id = dss_ids(&cluster, "alpha").await.remove(0);
        let r = c.post(format!("{}/operator/intents/{id}/end", alpha.operator)).bearer_auth(&alpha.token).send().await;
        assert!(r.is_err() || r.is_ok_and(|r| !r.status().is_success()));
        alpha.kill9();
        drop(alpha);
        cluster.participant_with("alpha", &FULL, &dir, &[])
    };
    settled(&alpha).await;
    let in_dss = dss_ids(&cluster, "alpha").await;
    assert_eq!(own_ids(&alpha).await, in_dss);
    let (s, e) = op(&alpha, "POST", &format!("/operator/intents/{}/end", in_dss[0]), None).await;
    assert_eq!(s, 200, "{e}");
}

#[tokio::test]
async fn a_full_disk_refuses_the_plan_and_orphans_nothing() {
    let cluster = Cluster::start();
    let mount = cluster.dir.path().join("small-disk");
    let _fs = crate::harness::Tmpfs::mount(&mount, "8m");
    let dir = mount.join("alpha");
    let alpha = cluster.participant_with("alpha", &FULL, &dir, &[]);
    let (s, first) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.0, 8.0, 100.0, 0.0, 120.0, 600, 1200))).await;
    assert_eq!(s, 200, "{first}");
    // Fill the disk.
    let filler = mount.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let (s, r) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.0, 8.02, 100.0, 0.0, 120.0, 600, 1200))).await;
    assert_eq!(s, 503, "a plan that cannot be recorded must fail: {r}");
    assert!(r["message"].as_str().is_some_and(|m| m.contains("durably")), "{r}");
    let first_id = first["operational_intent_id"].as_str().expect("id").to_owned();
    assert_eq!(dss_ids(&cluster, "alpha").await, vec![first_id.clone()], "nothing orphaned in the DSS");
    // Space freed: planning works again, by itself.
    std::fs::remove_file(&filler).expect("free space");
    let (s, r) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.0, 8.02, 100.0, 0.0, 120.0, 600, 1200))).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(dss_ids(&cluster, "alpha").await.len(), 2);
    assert_eq!(own_ids(&alpha).await, dss_ids(&cluster, "alpha").await);
    drop(alpha);
    let _ = BIN;
}

#[tokio::test]
async fn a_failed_notification_is_retried_and_the_operator_sees_the_outcome() {
    let cluster = Cluster::start();
    let alpha = cluster.participant("alpha", &FULL);
    let (base, _) = fake_peer(Behaviour::FlakyThenOk).await;
    let tok = cluster.token("flaky", SC).await;
    let sub = json!({"extents": crate::harness::circle(47.0, 8.0, 2000.0, 0, 3600), "uss_base_url": base,
                     "notify_for_operational_intents": true});
    let (s, r) =
        call("PUT", &format!("{}/dss/v1/subscriptions/{}", cluster.dss.url, new_id()), Some(&tok), Some(&sub)).await;
    assert_eq!(s, 200, "{r}");
    let (s, a) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.0, 8.0, 100.0, 0.0, 120.0, 600, 1200))).await;
    assert_eq!(s, 200, "{a}");
    let id = a["operational_intent_id"].as_str().expect("id").to_owned();
    let first =
        a["notified"].as_array().expect("notified").iter().find(|d| d["uss_base_url"] == base.as_str()).cloned();
    let first = first.unwrap_or_else(|| panic!("the subscriber was not notified: {a}"));
    assert_eq!(first["sending"], json!(true), "delivered after the answer: {a}");
    // The first attempt fails (503) and a retry is scheduled; the operator's status shows it.
    let mut failed = Value::Null;
    for _ in 0..100 {
        let (_, st) = op(&alpha, "GET", "/operator/status", None).await;
        let d = st["own_intents"][&id]["notified"]
            .as_array()
            .and_then(|l| l.iter().find(|d| d["uss_base_url"] == base.as_str()).cloned())
            .unwrap_or(Value::Null);
        if d["sending"] != true && !d.is_null() {
            failed = d;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        (failed["acknowledged"].clone(), failed["status"].clone(), failed["retrying"].clone()),
        (json!(false), json!(503), json!(true)),
        "{failed}"
    );
    // The retry (after about a second) succeeds, and the operator's status shows it.
    let mut last = Value::Null;
    for _ in 0..100 {
        let (_, st) = op(&alpha, "GET", "/operator/status", None).await;
        let d = st["own_intents"][&id]["notified"]
            .as_array()
            .and_then(|l| l.iter().find(|d| d["uss_base_url"] == base.as_str()).cloned());
        if let Some(d) = d.filter(|d| d["acknowledged"] == true) {
            assert_eq!(d["attempts"], 2, "{d}");
            assert_eq!(d["retrying"], false, "{d}");
            return;
        }
        last = st;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the failed notification was never retried successfully: {last}");
}

/// A peer sending notifications with fresh ids made the participant ask the DSS under its own
/// name for each, until the DSS's per-subject limit refused the participant's own plans (2 of
/// 5 failed with 502). Now look-ups are bounded per peer and overall (the peer gets 429) and
/// pause when the DSS says 429: with the DSS's limit set low (20/s), the operator's five plans
/// during the flood all reach the DSS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notification_flood_cannot_spend_our_dss_budget() {
    let cluster = Cluster::start_with(&["--rate-limit-per-sub", "20", "--rate-limit-burst", "20"]);
    let alpha = cluster.participant("alpha", &FULL);
    let mallory = cluster.token("mallory", SC).await;
    let url = format!("{}/uss/v1/operational_intents", alpha.url);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flooders = Vec::new();
    for _ in 0..6 {
        let (stop, url, tok) = (stop.clone(), url.clone(), mallory.clone());
        flooders.push(tokio::spawn(async move {
            let http = crate::harness::client();
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && statuses.len() < 2_000 {
                let body = json!({"operational_intent_id": new_id(), "subscriptions": []});
                if let Ok(r) = http.post(&url).bearer_auth(&tok).json(&body).send().await {
                    statuses.push(r.status().as_u16());
                }
            }
            statuses
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut plans = Vec::new();
    for i in 0..5 {
        let (s, r) = op(
            &alpha,
            "POST",
            "/operator/plan",
            Some(&flight(47.0, 8.0 + 0.05 * i as f64, 100.0, 0.0, 120.0, 600, 1200)),
        )
        .await;
        plans.push((s, r));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut statuses = Vec::new();
    for f in flooders {
        statuses.extend(f.await.expect("flooder"));
    }
    for (s, r) in &plans {
        assert_eq!(*s, 200, "every plan of the operator reaches the DSS during the flood: {r}");
    }
    assert!(statuses.contains(&429), "the flooding peer is told to slow down (429): {} requests", statuses.len());
}

/// A refusal from the DSS reaches the operator as what it is: past the DSS's per-subject limit
/// the operator gets 503 with `Retry-After` and a message naming the DSS's limit, not a bare 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dss_rate_limit_reaches_the_operator_as_503_with_retry_after() {
    let cluster = Cluster::start_with(&["--rate-limit-per-sub", "1", "--rate-limit-burst", "1"]);
    let alpha = cluster.participant("alpha", &FULL);
    let mut refused = None;
    for i in 0..10 {
        let http = crate::harness::client();
        let r = http
            .post(format!("{}/operator/plan", alpha.operator))
            .bearer_auth(&alpha.token)
            .json(&flight(47.0, 8.0 + 0.05 * i as f64, 100.0, 0.0, 120.0, 600, 1200))
            .send()
            .await
            .expect("answered");
        let status = r.status().as_u16();
        let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_ne!(status, 502, "a DSS 429 is not a bare 502: {body}");
        if status == 503 {
            refused = Some((retry, body));
            break;
        }
    }
    let (retry, body) = refused.expect("the DSS's limit of 1/s must refuse one of ten quick plans");
    assert!(retry.and_then(|r| r.parse::<u64>().ok()).is_some_and(|r| r >= 1), "Retry-After is given");
    let m = body["message"].as_str().unwrap_or_default();
    assert!(m.contains("rate limit") && m.contains("429"), "the message names the DSS's limit: {body}");
}

/// With 20 subscribers that hang, a plan in their area took 6 s to answer (the first delivery
/// attempt was awaited). Now the answer comes once the plan is durable and accepted by the DSS,
/// notifications go out after it, and the next plan is not delayed either. The participant's
/// peer timeout is a minute here, so waiting for any subscriber would exceed the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_subscribers_cannot_slow_planning() {
    let cluster = Cluster::start();
    let alpha =
        cluster.participant_with("alpha", &FULL, &cluster.dir.path().join("alpha"), &["--peer-timeout-secs", "60"]);
    for i in 0..20 {
        let (base, _) = fake_peer(Behaviour::Hang).await;
        let tok = cluster.token(&format!("hung-{i}"), SC).await;
        let sub = json!({"extents": crate::harness::circle(47.0, 8.0, 3000.0, 0, 3600), "uss_base_url": base,
                         "notify_for_operational_intents": true});
        let (s, r) =
            call("PUT", &format!("{}/dss/v1/subscriptions/{}", cluster.dss.url, new_id()), Some(&tok), Some(&sub))
                .await;
        assert_eq!(s, 200, "{r}");
    }
    for i in 0..2 {
        let body = flight(47.0 + 0.005 * i as f64, 8.0, 100.0, 0.0, 120.0, 600, 1200);
        let plan = op(&alpha, "POST", "/operator/plan", Some(&body));
        let (s, r) = tokio::time::timeout(std::time::Duration::from_secs(30), plan)
            .await
            .unwrap_or_else(|_| panic!("plan {i} was held by hung subscribers"));
        assert_eq!(s, 200, "{r}");
        let sending = r["notified"].as_array().map_or(0, |l| l.iter().filter(|d| d["sending"] == true).count());
        assert_eq!(sending, 20, "all 20 subscribers are notified after the answer: {r}");
    }
}

/// A `null` operational intent in a notification is malformed (a deletion omits it, per
/// utm.yaml) and is a 400, never taken for a deletion.
#[tokio::test]
async fn a_null_entity_in_a_notification_is_a_400_not_a_deletion() {
    let cluster = Cluster::start();
    let alpha = cluster.participant("alpha", &FULL);
    let tok = cluster.token("mallory", SC).await;
    let id = new_id();
    for (path, body) in [
        ("operational_intents", json!({"operational_intent_id": id, "operational_intent": null, "subscriptions": []})),
        ("constraints", json!({"constraint_id": id, "constraint": null, "subscriptions": []})),
    ] {
        let tok = if path == "constraints" {
            cluster.token("mallory", "utm.constraint_management").await
        } else {
            tok.clone()
        };
        let (s, r) = call("POST", &format!("{}/uss/v1/{path}", alpha.url), Some(&tok), Some(&body)).await;
        crate::harness::assert_error_shape(s, &r, 400, &format!("a null entity in a {path} notification"));
    }
}
