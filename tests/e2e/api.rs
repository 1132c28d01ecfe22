//! Every DSS endpoint over HTTP, with the key/OVN rules, notifications and states.

use serde_json::{json, Value};

use crate::harness::*;

fn refs(resp: &Value, field: &str) -> Vec<String> {
    resp[field].as_array().expect("array").iter().map(|r| r["id"].as_str().expect("id").to_owned()).collect()
}

#[tokio::test]
async fn healthy_and_metrics() {
    let dss = Dss::start();
    let resp = client().get(dss.url("/healthy")).send().await.expect("healthy");
    assert_eq!(resp.status(), 200);
    let (s, _) = call("GET", &dss.url("/metrics"), None, None).await;
    assert_eq!(s, 200);
    let text = client().get(dss.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(text.contains("dss_http_requests_total"), "{text}");
    // Histograms with buckets (they add up across a pool), with HELP text; the store's too.
    for needle in [
        "# HELP dss_http_request_duration_seconds",
        "# TYPE dss_http_request_duration_seconds histogram",
        "dss_http_request_duration_seconds_bucket{",
        "le=\"0.005\"",
        "# HELP dss_http_requests_total",
    ] {
        assert!(text.contains(needle), "no `{needle}` in /metrics:\n{text}");
    }
}

/// `--metrics-listen` moves `/metrics` to its own listener.
#[tokio::test]
async fn metrics_on_their_own_listener() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let dss = Dss::start_in(dir.path(), &["--metrics-listen", &format!("127.0.0.1:{port}")]);
    let intents = format!("{OIR}/query");
    let q = json!({"area_of_interest": square(0.0, 100.0, 0.0, 100.0, 0, 60)});
    let (s, _) = call("POST", &dss.url(&intents), Some(&token("alpha", &[SC])), Some(&q)).await;
    assert_eq!(s, 200);
    let (s, _) = call("GET", &dss.url("/metrics"), None, None).await;
    assert_eq!(s, 404, "not on the API's listener");
    let resp = client().get(format!("http://127.0.0.1:{port}/metrics")).send().await.expect("metrics");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("text");
    assert!(text.contains("dss_http_requests_total{") && text.contains("dss_live_entities{"), "{text}");
}

#[tokio::test]
async fn intent_lifecycle_key_and_ovn_rules() {
    let dss = Dss::start();
    let alpha = token("alpha", &[SC]);
    let bravo = token("bravo", &[SC]);
    let cmsa = token("alpha", &[SC, CMSA]);

    // alpha creates; the response carries its own OVN and the implicit subscription.
    let body_a = intent_body(vec![square(0.0, 200.0, 0.0, 120.0, 60, 1800)], &[], "Accepted");
    let (id_a, ovn_a, resp) = create_intent(&dss, &alpha, &body_a).await;
    let oir = &resp["operational_intent_reference"];
    assert_eq!(oir["manager"], "alpha");
    assert_eq!(oir["version"], 1);
    assert_eq!(oir["state"], "Accepted");
    let sub_a = oir["subscription_id"].as_str().expect("sub").to_owned();
    assert_eq!(resp["subscribers"][0]["subscriptions"][0]["subscription_id"], sub_a.as_str());

    // Creating it again is a conflict; creating in Activated is refused.
    let (s, _) = call("PUT", &dss.url(&format!("{OIR}/{id_a}")), Some(&alpha), Some(&body_a)).await;
    assert_eq!(s, 409);
    let (s, b) = call(
        "PUT",
        &dss.url(&format!("{OIR}/{}", new_id())),
        Some(&alpha),
        Some(&intent_body(vec![square(5000.0, 100.0, 0.0, 50.0, 60, 600)], &[], "Activated")),
    )
    .await;
    assert_error_shape(s, &b, 400, "initial state must be Accepted");

    // bravo overlaps without a key: 409 listing exactly alpha's intent, without its OVN.
    let body_b = intent_body(vec![square(100.0, 200.0, 50.0, 150.0, 600, 2400)], &[], "Accepted");
    let id_b = new_id();
    let (s, conflict) = call("PUT", &dss.url(&format!("{OIR}/{id_b}")), Some(&bravo), Some(&body_b)).await;
    assert_eq!(s, 409, "{conflict}");
    assert_eq!(refs(&conflict, "missing_operational_intents"), vec![id_a.clone()]);
    assert!(
        conflict["missing_operational_intents"][0].get("ovn").is_none(),
        "another manager's OVN leaked: {conflict}"
    );

    // Others never see alpha's OVN, alpha does.
    let (_, got) = call("GET", &dss.url(&format!("{OIR}/{id_a}")), Some(&bravo), None).await;
    assert!(got["operational_intent_reference"].get("ovn").is_none());
    let (_, got) = call("GET", &dss.url(&format!("{OIR}/{id_a}")), Some(&alpha), None).await;
    assert_eq!(got["operational_intent_reference"]["ovn"], ovn_a.as_str());
    let q = json!({"area_of_interest": square(0.0, 1000.0, 0.0, 500.0, 0, 3600)});
    let (s, found) = call("POST", &dss.url(&format!("{OIR}/query")), Some(&bravo), Some(&q)).await;
    assert_eq!(s, 200);
    assert_eq!(refs(&found, "operational_intent_references"), vec![id_a.clone()]);
    assert!(found["operational_intent_references"][0].get("ovn").is_none());

    // With the key, bravo succeeds and alpha's implicit subscription is told.
    let body_b =
        intent_body(vec![square(100.0, 200.0, 50.0, 150.0, 600, 2400)], std::slice::from_ref(&ovn_a), "Accepted");
    let (s, created_b) = call("PUT", &dss.url(&format!("{OIR}/{id_b}")), Some(&bravo), Some(&body_b)).await;
    assert_eq!(s, 201, "{created_b}");
    let notified: Vec<&str> = created_b["subscribers"]
        .as_array()
        .expect("subscribers")
        .iter()
        .flat_map(|s| {
            s["subscriptions"].as_array().expect("subs").iter().map(|x| x["subscription_id"].as_str().expect("id"))
        })
        .collect();
    assert!(notified.contains(&sub_a.as_str()), "alpha's subscription must be notified: {created_b}");
    let ovn_b = created_b["operational_intent_reference"]["ovn"].as_str().expect("ovn").to_owned();

    // Disjoint in altitude or time: no key needed.
    let (s, b) = call(
        "PUT",
        &dss.url(&format!("{OIR}/{}", new_id())),
        Some(&bravo),
        Some(&intent_body(vec![square(0.0, 200.0, 300.0, 400.0, 60, 1800)], &[], "Accepted")),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(
        "PUT",
        &dss.url(&format!("{OIR}/{}", new_id())),
        Some(&bravo),
        Some(&intent_body(vec![square(0.0, 200.0, 0.0, 120.0, 2500, 3000)], &[], "Accepted")),
    )
    .await;
    assert_eq!(s, 201, "{b}");

    // alpha activates: stale OVN is 409, a key missing bravo's OVN is 409, the full key works.
    let act = |key: Vec<String>| intent_body(vec![square(0.0, 200.0, 0.0, 120.0, 60, 1800)], &key, "Activated");
    let (s, _) = call(
        "PUT",
        &dss.url(&format!("{OIR}/{id_a}/{}", "0".repeat(36))),
        Some(&alpha),
        Some(&act(vec![ovn_b.clone()])),
    )
    .await;
    assert_eq!(s, 409);
    let (s, c) = call("PUT", &dss.url(&format!("{OIR}/{id_a}/{ovn_a}")), Some(&alpha), Some(&act(vec![]))).await;
    assert_eq!(s, 409);
    assert_eq!(refs(&c, "missing_operational_intents"), vec![id_b.clone()]);
    let (s, up) =
        call("PUT", &dss.url(&format!("{OIR}/{id_a}/{ovn_a}")), Some(&alpha), Some(&act(vec![ovn_b.clone()]))).await;
    assert_eq!(s, 200, "{up}");
    assert_eq!(up["operational_intent_reference"]["version"], 2);
    assert_eq!(up["operational_intent_reference"]["state"], "Activated");
    let ovn_a2 = up["operational_intent_reference"]["ovn"].as_str().expect("ovn").to_owned();
    assert_ne!(ovn_a2, ovn_a, "the OVN must change on update");

    // Off-nominal states need the conformance monitoring scope, but no key.
    let nonconf = intent_body(vec![square(0.0, 300.0, 0.0, 120.0, 60, 1800)], &[], "Nonconforming");
    let (s, _) = call("PUT", &dss.url(&format!("{OIR}/{id_a}/{ovn_a2}")), Some(&alpha), Some(&nonconf)).await;
    assert_eq!(s, 403);
    let (s, nc) = call("PUT", &dss.url(&format!("{OIR}/{id_a}/{ovn_a2}")), Some(&cmsa), Some(&nonconf)).await;
    assert_eq!(s, 200, "{nc}");
    let ovn_a3 = nc["operational_intent_reference"]["ovn"].as_str().expect("ovn").to_owned();

    // Only the manager deletes; with the current OVN; the implicit subscription goes with it.
    let (s, _) = call("DELETE", &dss.url(&format!("{OIR}/{id_a}/{ovn_a3}")), Some(&bravo), None).await;
    assert_eq!(s, 403);
    let (s, _) = call("DELETE", &dss.url(&format!("{OIR}/{id_a}/{ovn_a}")), Some(&alpha), None).await;
    assert_eq!(s, 409);
    let (s, del) = call("DELETE", &dss.url(&format!("{OIR}/{id_a}/{ovn_a3}")), Some(&alpha), None).await;
    assert_eq!(s, 200, "{del}");
    let (s, _) = call("GET", &dss.url(&format!("{OIR}/{id_a}")), Some(&alpha), None).await;
    assert_eq!(s, 404);
    let (s, _) = call("GET", &dss.url(&format!("{SUBS}/{sub_a}")), Some(&alpha), None).await;
    assert_eq!(s, 404, "the implicit subscription must be removed with its only intent");
}

#[tokio::test]
async fn down_uss_rules() {
    let dss = Dss::start();
    let alpha = token("alpha", &[SC]);
    let bravo = token("bravo", &[SC]);
    let arbiter = token("arbiter", &[AA]);
    let (id_a, _, _) =
        create_intent(&dss, &alpha, &intent_body(vec![square(0.0, 200.0, 0.0, 120.0, 60, 1800)], &[], "Accepted"))
            .await;

    let (s, st) = call("GET", &dss.url("/dss/v1/uss_availability/alpha"), Some(&alpha), None).await;
    assert_eq!(s, 200);
    assert_eq!(st["status"]["availability"], "Unknown");
    assert_eq!(st["version"], "");
    let (s, _) = call(
        "PUT",
        &dss.url("/dss/v1/uss_availability/alpha"),
        Some(&alpha),
        Some(&json!({"old_version": "", "availability": "Down"})),
    )
    .await;
    assert_eq!(s, 403, "only the availability arbitration scope may set availability");
    let (s, set) = call(
        "PUT",
        &dss.url("/dss/v1/uss_availability/alpha"),
        Some(&arbiter),
        Some(&json!({"old_version": "", "availability": "Down"})),
    )
    .await;
    assert_eq!(s, 200, "{set}");
    assert_eq!(set["status"]["availability"], "Down");
    let (s, _) = call(
        "PUT",
        &dss.url("/dss/v1/uss_availability/alpha"),
        Some(&arbiter),
        Some(&json!({"old_version": "", "availability": "Normal"})),
    )
    .await;
    assert_eq!(s, 409, "a stale availability version must conflict");

    // Accepted intents of a Down USS need not be in others' keys, and show its availability.
    let (s, b) = call(
        "PUT",
        &dss.url(&format!("{OIR}/{}", new_id())),
        Some(&bravo),
        Some(&intent_body(vec![square(50.0, 100.0, 0.0, 120.0, 60, 1800)], &[], "Accepted")),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (_, got) = call("GET", &dss.url(&format!("{OIR}/{id_a}")), Some(&bravo), None).await;
    assert_eq!(got["operational_intent_reference"]["uss_availability"], "Down");
    // A Down USS may not create into Accepted.
    let (s, b) = call(
        "PUT",
        &dss.url(&format!("{OIR}/{}", new_id())),
        Some(&alpha),
        Some(&intent_body(vec![square(9000.0, 100.0, 0.0, 120.0, 60, 1800)], &[], "Accepted")),
    )
    .await;
    assert_error_shape(s, &b, 412, "Down USS creating");
}

#[tokio::test]
async fn constraints_and_constraint_keys() {
    let dss = Dss::start();
    let authority = token("authority", &[CM]);
    let planner = token("planner", &[SC, CP]);
    let reader = token("reader", &[CP]);
    let body = json!({"extents": [square(0.0, 500.0, 0.0, 400.0, 0, 3600)], "uss_base_url": "http://authority.test"});
    let cid = new_id();
    let (s, _) = call("PUT", &dss.url(&format!("{CR}/{cid}")), Some(&planner), Some(&body)).await;
    assert_eq!(s, 403, "constraint management scope required");

    // A subscription for constraints is notified of the new constraint.
    let sid = new_id();
    let sub_body = json!({"extents": square(-200.0, 2000.0, 0.0, 1000.0, 0, 7200), "uss_base_url": "http://planner.test", "notify_for_constraints": true});
    let (s, sub) = call("PUT", &dss.url(&format!("{SUBS}/{sid}")), Some(&reader), Some(&sub_body)).await;
    assert_eq!(s, 200, "{sub}");
    let (s, created) = call("PUT", &dss.url(&format!("{CR}/{cid}")), Some(&authority), Some(&body)).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["subscribers"][0]["uss_base_url"], "http://planner.test");
    assert_eq!(created["subscribers"][0]["subscriptions"][0]["notification_index"], 1);
    let c_ovn = created["constraint_reference"]["ovn"].as_str().expect("ovn").to_owned();

    let (s, got) = call("GET", &dss.url(&format!("{CR}/{cid}")), Some(&reader), None).await;
    assert_eq!(s, 200);
    assert!(got["constraint_reference"].get("ovn").is_none());
    let q = json!({"area_of_interest": square(100.0, 10.0, 0.0, 10.0, 10, 20)});
    let (s, found) = call("POST", &dss.url(&format!("{CR}/query")), Some(&reader), Some(&q)).await;
    assert_eq!(s, 200);
    assert_eq!(refs(&found, "constraint_references"), vec![cid.clone()]);

    // A planner doing constraint processing must include the constraint's OVN in its key.
    let mut intent = intent_body(vec![square(100.0, 100.0, 0.0, 100.0, 60, 600)], &[], "Accepted");
    intent["new_subscription"]["notify_for_constraints"] = json!(true);
    let (s, c) = call("PUT", &dss.url(&format!("{OIR}/{}", new_id())), Some(&planner), Some(&intent)).await;
    assert_eq!(s, 409, "{c}");
    assert_eq!(refs(&c, "missing_constraints"), vec![cid.clone()]);
    intent["key"] = json!([c_ovn]);
    let (s, c) = call("PUT", &dss.url(&format!("{OIR}/{}", new_id())), Some(&planner), Some(&intent)).await;
    assert_eq!(s, 201, "{c}");

    // Update and delete with OVN checks.
    let (s, _) = call("PUT", &dss.url(&format!("{CR}/{cid}/{}", "x".repeat(20))), Some(&authority), Some(&body)).await;
    assert_eq!(s, 409);
    let (s, up) = call("PUT", &dss.url(&format!("{CR}/{cid}/{c_ovn}")), Some(&authority), Some(&body)).await;
    assert_eq!(s, 200, "{up}");
    assert_eq!(up["constraint_reference"]["version"], 2);
    assert_eq!(up["subscribers"][0]["subscriptions"][0]["notification_index"], 2);
    let ovn2 = up["constraint_reference"]["ovn"].as_str().expect("ovn").to_owned();
    let (s, del) = call("DELETE", &dss.url(&format!("{CR}/{cid}/{ovn2}")), Some(&authority), None).await;
    assert_eq!(s, 200, "{del}");
    let (s, _) = call("GET", &dss.url(&format!("{CR}/{cid}")), Some(&reader), None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn subscriptions_crud_and_notifications() {
    let dss = Dss::start();
    let alpha = token("alpha", &[SC]);
    let bravo = token("bravo", &[SC]);
    let sid = new_id();
    let area = square(0.0, 1000.0, 0.0, 500.0, 0, 3600);
    let body = json!({"extents": area, "uss_base_url": "http://alpha.test", "notify_for_operational_intents": true});
    let (s, created) = call("PUT", &dss.url(&format!("{SUBS}/{sid}")), Some(&alpha), Some(&body)).await;
    assert_eq!(s, 200, "{created}");
    let version = created["subscription"]["version"].as_str().expect("version").to_owned();
    assert_eq!(created["subscription"]["notification_index"], 0);
    assert_eq!(created["subscription"]["implicit_subscription"], false);

    // Notifications go to alpha's subscription with increasing indexes.
    let (_, ovn1, r1) =
        create_intent(&dss, &bravo, &intent_body(vec![square(10.0, 50.0, 0.0, 50.0, 60, 600)], &[], "Accepted")).await;
    let find = |r: &Value| -> Option<i64> {
        r["subscribers"].as_array()?.iter().find(|s| s["uss_base_url"] == "http://alpha.test")?["subscriptions"]
            .as_array()?
            .iter()
            .find(|x| x["subscription_id"] == sid.as_str())?["notification_index"]
            .as_i64()
    };
    assert_eq!(find(&r1), Some(1), "{r1}");
    let (_, _, r2) =
        create_intent(&dss, &bravo, &intent_body(vec![square(300.0, 50.0, 0.0, 50.0, 60, 600)], &[ovn1], "Accepted"))
            .await;
    assert_eq!(find(&r2), Some(2), "{r2}");
    // Outside the area in time: not notified.
    let (_, _, r3) =
        create_intent(&dss, &bravo, &intent_body(vec![square(600.0, 50.0, 0.0, 50.0, 4000, 4600)], &[], "Accepted"))
            .await;
    assert_eq!(find(&r3), None, "{r3}");

    // Only the owner sees it in queries and GET.
    let q = json!({"area_of_interest": square(100.0, 10.0, 0.0, 10.0, 10, 20)});
    let (_, mine) = call("POST", &dss.url(&format!("{SUBS}/query")), Some(&alpha), Some(&q)).await;
    assert_eq!(refs(&mine, "subscriptions"), vec![sid.clone()]);
    let (_, theirs) = call("POST", &dss.url(&format!("{SUBS}/query")), Some(&bravo), Some(&q)).await;
    assert!(!refs(&theirs, "subscriptions").contains(&sid), "{theirs}");
    let (s, got) = call("GET", &dss.url(&format!("{SUBS}/{sid}")), Some(&alpha), None).await;
    assert_eq!(s, 200);
    assert_eq!(got["subscription"]["notification_index"], 2);
    let (s, _) = call("GET", &dss.url(&format!("{SUBS}/{sid}")), Some(&bravo), None).await;
    assert_eq!(s, 403);

    // Update with version; the response lists intents in the area; wrong version conflicts.
    let (s, _) = call("PUT", &dss.url(&format!("{SUBS}/{sid}/bogus")), Some(&alpha), Some(&body)).await;
    assert_eq!(s, 409);
    let (s, up) = call("PUT", &dss.url(&format!("{SUBS}/{sid}/{version}")), Some(&alpha), Some(&body)).await;
    assert_eq!(s, 200, "{up}");
    assert_eq!(up["operational_intent_references"].as_array().expect("refs").len(), 2);
    let v2 = up["subscription"]["version"].as_str().expect("version").to_owned();
    assert_ne!(v2, version);
    assert_eq!(up["subscription"]["notification_index"], 2, "an update keeps the notification index");

    // Scope rules and at least one notification kind.
    let no_kind = json!({"extents": area, "uss_base_url": "http://alpha.test"});
    let (s, b) = call("PUT", &dss.url(&format!("{SUBS}/{}", new_id())), Some(&alpha), Some(&no_kind)).await;
    assert_error_shape(s, &b, 400, "no notification kind");
    let cons = json!({"extents": area, "uss_base_url": "http://alpha.test", "notify_for_constraints": true});
    let (s, _) = call("PUT", &dss.url(&format!("{SUBS}/{}", new_id())), Some(&alpha), Some(&cons)).await;
    assert_eq!(s, 200, "as the reference DSS, constraint notifications are accepted with strategic coordination");

    let (s, _) = call("DELETE", &dss.url(&format!("{SUBS}/{sid}/{v2}")), Some(&bravo), None).await;
    assert_eq!(s, 403);
    let (s, del) = call("DELETE", &dss.url(&format!("{SUBS}/{sid}/{v2}")), Some(&alpha), None).await;
    assert_eq!(s, 200, "{del}");
    let (s, _) = call("GET", &dss.url(&format!("{SUBS}/{sid}")), Some(&alpha), None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn implicit_subscriptions_grow_and_protect_their_intents() {
    let dss = Dss::start();
    let alpha = token("alpha", &[SC]);
    let (id1, _, r1) =
        create_intent(&dss, &alpha, &intent_body(vec![square(0.0, 100.0, 0.0, 100.0, 60, 600)], &[], "Accepted")).await;
    let sub = r1["operational_intent_reference"]["subscription_id"].as_str().expect("sub").to_owned();
    // A second intent reuses the implicit subscription elsewhere; it grows to cover it.
    let mut body = intent_body(vec![square(5000.0, 100.0, 0.0, 100.0, 700, 900)], &[], "Accepted");
    body["subscription_id"] = json!(sub);
    body.as_object_mut().expect("object").remove("new_subscription");
    let (id2, ovn2, _) = create_intent(&dss, &alpha, &body).await;
    let (_, got) = call("GET", &dss.url(&format!("{SUBS}/{sub}")), Some(&alpha), None).await;
    let mut deps: Vec<String> = got["subscription"]["dependent_operational_intents"]
        .as_array()
        .expect("deps")
        .iter()
        .map(|d| d.as_str().expect("id").to_owned())
        .collect();
    deps.sort();
    let mut want = vec![id1.clone(), id2.clone()];
    want.sort();
    assert_eq!(deps, want);
    let version = got["subscription"]["version"].as_str().expect("version").to_owned();
    // It cannot be deleted while intents depend on it.
    let (s, b) = call("DELETE", &dss.url(&format!("{SUBS}/{sub}/{version}")), Some(&alpha), None).await;
    assert_error_shape(s, &b, 400, "deleting a subscription with dependents");
    // Deleting one intent keeps it; deleting the last removes it.
    let (s, _) = call("DELETE", &dss.url(&format!("{OIR}/{id2}/{ovn2}")), Some(&alpha), None).await;
    assert_eq!(s, 200);
    let (s, _) = call("GET", &dss.url(&format!("{SUBS}/{sub}")), Some(&alpha), None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn reports_are_accepted() {
    let dss = Dss::start();
    let alpha = token("alpha", &[SC]);
    let report = json!({"exchange": {"url": "http://x.test", "method": "GET", "recorder_role": "Client", "request_time": rfc3339(0), "problem": "timeout"}});
    let (s, r) = call("POST", &dss.url("/dss/v1/reports"), Some(&alpha), Some(&report)).await;
    assert_eq!(s, 201, "{r}");
    assert!(r["report_id"].as_str().is_some_and(|id| !id.is_empty()));
    let (s, b) = call("POST", &dss.url("/dss/v1/reports"), Some(&alpha), Some(&json!({}))).await;
    assert_error_shape(s, &b, 400, "report without exchange");
}
