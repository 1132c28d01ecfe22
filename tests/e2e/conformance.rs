//! Behaviours the standard's test tools and the reference DSS expect (issue 10), over HTTP.

use serde_json::{json, Value};

use crate::harness::*;

fn subscription(extents: Value, ops: bool, constraints: bool) -> Value {
    json!({"extents": extents, "uss_base_url": "http://sub.test/",
           "notify_for_operational_intents": ops, "notify_for_constraints": constraints})
}

#[tokio::test]
async fn subscriptions_behave_as_the_reference_dss() {
    let dss = Dss::start();
    let sc = token("uss1", &[SC]);
    // 1. notify_for_constraints with only utm.strategic_coordination is accepted by default.
    let id = new_id();
    let (s, r) = call(
        "PUT",
        &dss.url(&format!("{SUBS}/{id}")),
        Some(&sc),
        Some(&subscription(square(0.0, 500.0, 0.0, 100.0, 0, 3600), true, true)),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    // 2. Reference lists only for what it notifies for; absent, not [].
    assert!(r.get("operational_intent_references").is_some_and(Value::is_array), "{r}");
    assert!(r.get("constraint_references").is_some_and(Value::is_array), "{r}");
    // 8. A trailing / in uss_base_url is kept as given.
    assert_eq!(r["subscription"]["uss_base_url"], "http://sub.test/");
    let (s, r) = call(
        "PUT",
        &dss.url(&format!("{SUBS}/{}", new_id())),
        Some(&sc),
        Some(&subscription(square(0.0, 500.0, 0.0, 100.0, 0, 3600), true, false)),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert!(r.get("constraint_references").is_none(), "absent when not notifying for constraints: {r}");
    let cp = token("uss2", &[CP]);
    let (s, r) = call(
        "PUT",
        &dss.url(&format!("{SUBS}/{}", new_id())),
        Some(&cp),
        Some(&subscription(square(0.0, 500.0, 0.0, 100.0, 0, 3600), false, true)),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert!(r.get("operational_intent_references").is_none(), "{r}");

    // 4. At most 24 hours long, on create and on update; exactly 24 hours is fine.
    let (s, r) = call(
        "PUT",
        &dss.url(&format!("{SUBS}/{}", new_id())),
        Some(&sc),
        Some(&subscription(square(0.0, 500.0, 0.0, 100.0, 60, 60 + 86_401), true, false)),
    )
    .await;
    assert_error_shape(s, &r, 400, "a subscription of 24 h 1 s");
    let day = new_id();
    let (s, r) = call(
        "PUT",
        &dss.url(&format!("{SUBS}/{day}")),
        Some(&sc),
        Some(&subscription(square(0.0, 500.0, 0.0, 100.0, 60, 60 + 86_400), true, false)),
    )
    .await;
    assert_eq!(s, 200, "exactly 24 h: {r}");
    let version = r["subscription"]["version"].as_str().expect("version").to_owned();
    let (s, r) = call(
        "PUT",
        &dss.url(&format!("{SUBS}/{day}/{version}")),
        Some(&sc),
        Some(&subscription(square(0.0, 500.0, 0.0, 100.0, 60, 60 + 90_000), true, false)),
    )
    .await;
    assert_error_shape(s, &r, 400, "an update to 25 h");

    // 5. An empty version in the path is a 400 in ErrorResponse shape, not "no such endpoint".
    for (method, path) in [
        ("PUT", format!("{SUBS}/{day}/")),
        ("DELETE", format!("{SUBS}/{day}/")),
        ("PUT", format!("{OIR}/{}/", new_id())),
        ("DELETE", format!("{CR}/{}/", new_id())),
    ] {
        let (s, r) = call(method, &dss.url(&path), Some(&sc), Some(&json!({}))).await;
        assert_error_shape(s, &r, 400, &format!("{method} {path}"));
        assert!(r["message"].as_str().is_some_and(|m| m.contains("empty")), "{r}");
    }

    // 10. Trailing bytes after the JSON body are refused.
    let body = subscription(square(0.0, 500.0, 0.0, 100.0, 0, 3600), true, false).to_string();
    for tail in [" xyz", "{}", " {\"a\": 1}"] {
        let resp = client()
            .put(dss.url(&format!("{SUBS}/{}", new_id())))
            .bearer_auth(&sc)
            .header("content-type", "application/json")
            .body(format!("{body}{tail}"))
            .send()
            .await
            .expect("put");
        let status = resp.status().as_u16();
        let r: Value = resp.json().await.expect("json");
        assert_error_shape(status, &r, 400, &format!("body with `{tail}` after it"));
    }
}

#[tokio::test]
async fn strict_scopes_enforce_the_spec_text() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dss = Dss::start_in(&tmp.path().join("data"), &["--strict-scopes"]);
    let sc = token("uss1", &[SC]);
    let (s, r) = call(
        "PUT",
        &dss.url(&format!("{SUBS}/{}", new_id())),
        Some(&sc),
        Some(&subscription(square(0.0, 500.0, 0.0, 100.0, 0, 3600), true, true)),
    )
    .await;
    assert_error_shape(s, &r, 403, "notify_for_constraints without utm.constraint_processing");
    let mut body = intent_body(vec![square(0.0, 100.0, 0.0, 100.0, 60, 600)], &[], "Accepted");
    body["new_subscription"]["notify_for_constraints"] = json!(true);
    let (s, r) = call("PUT", &dss.url(&format!("{OIR}/{}", new_id())), Some(&sc), Some(&body)).await;
    assert_error_shape(s, &r, 403, "new_subscription.notify_for_constraints");
    // Without --strict-scopes the same intent is accepted.
    let lax = Dss::start();
    let (s, r) = call("PUT", &lax.url(&format!("{OIR}/{}", new_id())), Some(&sc), Some(&body)).await;
    assert_eq!(s, 201, "{r}");
}

#[tokio::test]
async fn expired_subscriptions_are_not_listed_and_coverage_allows_clock_skew() {
    let dss = Dss::start();
    let sc = token("uss1", &[SC]);
    // 3. A subscription that ended is not listed by a search (it can be created ending soon).
    let short = new_id();
    let (s, r) = call(
        "PUT",
        &dss.url(&format!("{SUBS}/{short}")),
        Some(&sc),
        Some(&subscription(square(0.0, 500.0, 0.0, 100.0, -60, 2), true, false)),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let q = json!({"area_of_interest": square(0.0, 500.0, 0.0, 100.0, -60, 3600)});
    let (_, found) = call("POST", &dss.url(&format!("{SUBS}/query")), Some(&sc), Some(&q)).await;
    assert!(
        found["subscriptions"].as_array().expect("list").iter().any(|s| s["id"] == short.as_str()),
        "live: {found}"
    );
    let mut listed = true;
    for _ in 0..100 {
        let (_, found) = call("POST", &dss.url(&format!("{SUBS}/query")), Some(&sc), Some(&q)).await;
        listed = found["subscriptions"].as_array().expect("list").iter().any(|s| s["id"] == short.as_str());
        if !listed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!listed, "an expired subscription is still listed");
    let (s, r) = call("GET", &dss.url(&format!("{SUBS}/{short}")), Some(&sc), None).await;
    assert_eq!(s, 200, "GET by id may still show it until removed: {r}");

    // 9. A changed subscription may start up to 5 minutes after a dependent intent's start.
    let sub = new_id();
    let (s, r) = call(
        "PUT",
        &dss.url(&format!("{SUBS}/{sub}")),
        Some(&sc),
        Some(&subscription(square(0.0, 500.0, 0.0, 200.0, 0, 3600), true, false)),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let mut version = r["subscription"]["version"].as_str().expect("version").to_owned();
    let mut body = intent_body(vec![square(100.0, 100.0, 0.0, 100.0, 600, 1200)], &[], "Accepted");
    body["subscription_id"] = json!(sub);
    body.as_object_mut().expect("object").remove("new_subscription");
    let (s, r) = call("PUT", &dss.url(&format!("{OIR}/{}", new_id())), Some(&sc), Some(&body)).await;
    assert_eq!(s, 201, "{r}");
    for (start, ok) in [(600 + 290, true), (600 + 310, false)] {
        let (s, r) = call(
            "PUT",
            &dss.url(&format!("{SUBS}/{sub}/{version}")),
            Some(&sc),
            Some(&subscription(square(0.0, 500.0, 0.0, 200.0, start, 3600), true, false)),
        )
        .await;
        if ok {
            assert_eq!(s, 200, "a start {start} s after now, 290 s after the intent's: {r}");
            version = r["subscription"]["version"].as_str().expect("version").to_owned();
        } else {
            assert_error_shape(s, &r, 400, "a start 310 s after the intent's");
        }
    }
    // The end must still cover exactly.
    let (s, r) = call(
        "PUT",
        &dss.url(&format!("{SUBS}/{sub}/{version}")),
        Some(&sc),
        Some(&subscription(square(0.0, 500.0, 0.0, 200.0, 0, 1199), true, false)),
    )
    .await;
    assert_error_shape(s, &r, 400, "an end before the intent's");
}

#[tokio::test]
async fn a_subscription_under_an_intent_must_contain_it_and_once_written_is_explicit() {
    let dss = Dss::start();
    let sc = token("uss1", &[SC]);
    // An intent over a 500 m circle with an implicit subscription.
    let (oir, ovn, created) =
        create_intent(&dss, &sc, &intent_body(vec![circle(47.0, 8.0, 500.0, 60, 1800)], &[], "Accepted")).await;
    let sub = created["operational_intent_reference"]["subscription_id"].as_str().expect("subscription").to_owned();
    let (s, r) = call("GET", &dss.url(&format!("{SUBS}/{sub}")), Some(&sc), None).await;
    assert_eq!(s, 200, "{r}");
    let mut version = r["subscription"]["version"].as_str().expect("version").to_owned();
    // A 50 m circle over the same centre meets the intent but no longer contains it: 400.
    for (radius, ok) in [(50.0, false), (499.0, false), (500.0, true), (800.0, true)] {
        let (s, r) = call(
            "PUT",
            &dss.url(&format!("{SUBS}/{sub}/{version}")),
            Some(&sc),
            Some(&subscription(circle(47.0, 8.0, radius, 0, 1800), true, false)),
        )
        .await;
        if ok {
            assert_eq!(s, 200, "a {radius} m circle contains the 500 m intent: {r}");
            version = r["subscription"]["version"].as_str().expect("version").to_owned();
        } else {
            assert_error_shape(s, &r, 400, &format!("a {radius} m circle under a 500 m intent"));
        }
    }
    // Written through the subscriptions endpoint, it is explicit: deleting its last intent
    // leaves it in place.
    let (s, r) = call("DELETE", &dss.url(&format!("{OIR}/{oir}/{ovn}")), Some(&sc), None).await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = call("GET", &dss.url(&format!("{SUBS}/{sub}")), Some(&sc), None).await;
    assert_eq!(s, 200, "the explicit subscription stays: {r}");
    // A base URL with a query is accepted, and kept as given.
    let (s, r) = call(
        "PUT",
        &dss.url(&format!("{SUBS}/{}", new_id())),
        Some(&sc),
        Some(&json!({"extents": circle(47.0, 8.0, 100.0, 0, 1800),
                     "uss_base_url": "http://sub.test/p?correct-ovn-mutation=true",
                     "notify_for_operational_intents": true, "notify_for_constraints": false})),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["subscription"]["uss_base_url"], "http://sub.test/p?correct-ovn-mutation=true");
}

#[tokio::test]
async fn availability_horizon_and_requested_ovns() {
    let dss = Dss::start();
    let aa = token("arbiter", &[AA]);
    // 6. old_version may be omitted; the state is parsed case-insensitively, answered in the spec's case.
    let (s, r) =
        call("PUT", &dss.url("/dss/v1/uss_availability/uss9"), Some(&aa), Some(&json!({"availability": "DOWN"}))).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"]["availability"], "Down");
    let version = r["version"].as_str().expect("version").to_owned();
    let (s, r) = call(
        "PUT",
        &dss.url("/dss/v1/uss_availability/uss9"),
        Some(&aa),
        Some(&json!({"availability": "normal", "old_version": version})),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"]["availability"], "Normal");
    // The uss_id is bounded in length and characters.
    let long = "u".repeat(256);
    for bad in [long.as_str(), "a%20b", "a%0Ab"] {
        let (s, r) = call(
            "PUT",
            &dss.url(&format!("/dss/v1/uss_availability/{bad}")),
            Some(&aa),
            Some(&json!({"availability": "Down"})),
        )
        .await;
        assert_error_shape(s, &r, 400, &format!("uss_id `{bad}`"));
    }

    // 7. No horizon of our own: an intent and a constraint ending in two years are accepted;
    // an intent whose union ends in the future is valid though a volume has ended.
    let sc = token("uss1", &[SC]);
    let far = intent_body(vec![square(0.0, 100.0, 0.0, 100.0, 60, 2 * 365 * 86_400)], &[], "Accepted");
    let (s, r) = call("PUT", &dss.url(&format!("{OIR}/{}", new_id())), Some(&sc), Some(&far)).await;
    assert_eq!(s, 201, "{r}");
    let cm = token("authority", &[CM]);
    let zone = json!({"extents": [square(5000.0, 100.0, 0.0, 100.0, 60, 2 * 365 * 86_400)], "uss_base_url": "http://authority.test"});
    let (s, r) = call("PUT", &dss.url(&format!("{CR}/{}", new_id())), Some(&cm), Some(&zone)).await;
    assert_eq!(s, 201, "{r}");
    let mixed = intent_body(
        vec![square(2000.0, 100.0, 0.0, 100.0, -600, -300), square(2000.0, 100.0, 0.0, 100.0, 60, 600)],
        &[],
        "Accepted",
    );
    let (s, r) = call("PUT", &dss.url(&format!("{OIR}/{}", new_id())), Some(&sc), Some(&mixed)).await;
    assert_eq!(s, 201, "{r}");

    // 11. Requested OVNs.
    let uuid_v7 = |offset_ms: i64| {
        let ms = (chrono::Utc::now().timestamp_millis() + offset_ms) as u64;
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        b[6..].copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[6..]);
        b[6] = 0x70 | (b[6] & 0x0f);
        b[8] = 0x80 | (b[8] & 0x3f);
        uuid::Uuid::from_bytes(b).to_string()
    };
    let id = new_id();
    let suffix = uuid_v7(0);
    let mut body = intent_body(vec![square(8000.0, 100.0, 0.0, 100.0, 60, 600)], &[], "Accepted");
    body["requested_ovn_suffix"] = json!(suffix);
    let (s, r) = call("PUT", &dss.url(&format!("{OIR}/{id}")), Some(&sc), Some(&body)).await;
    assert_eq!(s, 201, "{r}");
    let ovn = format!("{id}_{suffix}");
    assert_eq!(r["operational_intent_reference"]["ovn"], ovn.as_str());
    // The update names that OVN in its path, and may request another.
    let next = uuid_v7(1000);
    body["requested_ovn_suffix"] = json!(next);
    let (s, r) = call("PUT", &dss.url(&format!("{OIR}/{id}/{ovn}")), Some(&sc), Some(&body)).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["operational_intent_reference"]["ovn"], format!("{id}_{next}").as_str());
    for (bad, needle) in [
        (json!(""), "empty"),
        (json!("not-a-uuid"), "not a UUID"),
        (json!(new_id()), "version 4"),
        (json!(uuid_v7(-6 * 60 * 1000)), "from now"),
        (json!(uuid_v7(6 * 60 * 1000)), "from now"),
    ] {
        let mut body = intent_body(vec![square(9000.0, 100.0, 0.0, 100.0, 60, 600)], &[], "Accepted");
        body["requested_ovn_suffix"] = bad.clone();
        let (s, r) = call("PUT", &dss.url(&format!("{OIR}/{}", new_id())), Some(&sc), Some(&body)).await;
        assert_error_shape(s, &r, 400, &format!("requested_ovn_suffix {bad}"));
        assert!(r["message"].as_str().is_some_and(|m| m.contains(needle)), "{bad}: {r}");
    }
}

#[tokio::test]
async fn the_aux_api_reports_version_tokens_and_options() {
    let dss = Dss::start();
    let (s, r) = call("GET", &dss.url("/aux/v1/version"), None, None).await;
    assert_eq!(s, 200, "{r}");
    let v = r["version"].as_str().expect("version");
    assert!(v.starts_with("deconflict-") && v.contains('+'), "version and commit: {v}");
    let rid = token("uss1", &["dss.read.identification_service_areas"]);
    let (s, r) = call("GET", &dss.url("/aux/v1/validate_oauth?owner=uss1"), Some(&rid), None).await;
    assert_eq!(s, 200, "{r}");
    let (s, _) = call("GET", &dss.url("/aux/v1/validate_oauth"), Some(&rid), None).await;
    assert_eq!(s, 200);
    let (s, r) = call("GET", &dss.url("/aux/v1/validate_oauth?owner=uss2"), Some(&rid), None).await;
    assert_error_shape(s, &r, 403, "another owner");
    let (s, r) = call("GET", &dss.url("/aux/v1/validate_oauth"), None, None).await;
    assert_error_shape(s, &r, 401, "no token");
    let (s, r) = call("GET", &dss.url("/aux/v1/validate_oauth"), Some(&token("uss1", &[SC])), None).await;
    assert_error_shape(s, &r, 403, "a token without the scopes aux_.yaml gives");
    let pool = token("ops", &["interuss.pool_status.read"]);
    let (s, r) = call("GET", &dss.url("/aux/v1/configuration/global_options"), Some(&pool), None).await;
    assert_eq!(s, 200, "{r}");
    for k in ["scd_global_lock", "scd_hash_lock", "time_based_notification_index"] {
        assert!(r[k].is_boolean(), "{k}: {r}");
    }
    let (s, r) = call("GET", &dss.url("/aux/v1/configuration/global_options"), Some(&rid), None).await;
    assert_error_shape(s, &r, 403, "global options without interuss.pool_status.read");
}

fn polygon(points: &[(f64, f64)], t0: i64, t1: i64) -> Value {
    let vertices: Vec<Value> = points.iter().map(|(lat, lng)| json!({"lat": lat, "lng": lng})).collect();
    json!({
        "volume": {"outline_polygon": {"vertices": vertices},
                   "altitude_lower": {"value": 0, "reference": "W84", "units": "M"},
                   "altitude_upper": {"value": 120, "reference": "W84", "units": "M"}},
        "time_start": rfc3339(t0), "time_end": rfc3339(t1)
    })
}

/// Create, query, key check and subscriber lists across the antimeridian and at both poles,
/// over HTTP.
#[tokio::test]
async fn the_dss_works_across_the_antimeridian_and_at_the_poles() {
    let dss = Dss::start();
    let (u1, u2, u3) = (token("uss1", &[SC]), token("uss2", &[SC]), token("uss3", &[SC]));
    struct Place {
        name: &'static str,
        area: Value,
        first: Value,
        second: Value,
        query: Value,
    }
    let places = [
        Place {
            name: "Fiji, across the antimeridian",
            area: polygon(&[(-17.05, 179.9), (-17.05, -179.9), (-16.95, -179.9), (-16.95, 179.9)], 0, 3600),
            first: circle(-17.0, -179.995, 700.0, 60, 1800),
            second: circle(-17.0, 179.996, 500.0, 60, 1800),
            query: polygon(&[(-17.01, 179.98), (-17.01, 180.0), (-16.99, 180.0), (-16.99, 179.98)], 0, 3600),
        },
        Place {
            name: "the North Pole",
            area: circle(90.0, 0.0, 5000.0, 0, 3600),
            first: circle(90.0, 0.0, 100.0, 60, 1800),
            second: circle(89.9995, 120.0, 100.0, 60, 1800),
            query: polygon(&[(89.99, 0.0), (89.99, 120.0), (89.99, -120.0)], 0, 3600),
        },
        Place {
            name: "the South Pole",
            area: circle(-90.0, 0.0, 5000.0, 0, 3600),
            first: polygon(&[(-89.999, 0.0), (-89.999, 90.0), (-89.999, 180.0), (-89.999, -90.0)], 60, 1800),
            second: circle(-90.0, 45.0, 50.0, 60, 1800),
            query: circle(-89.9995, -170.0, 20.0, 0, 3600),
        },
    ];
    for p in places {
        let sub_id = new_id();
        let sub =
            json!({"extents": p.area, "uss_base_url": "http://uss2.test", "notify_for_operational_intents": true});
        let (s, r) = call("PUT", &dss.url(&format!("{SUBS}/{sub_id}")), Some(&u2), Some(&sub)).await;
        assert_eq!(s, 200, "{}: subscription: {r}", p.name);
        let (id1, ovn1, created) = create_intent(&dss, &u1, &intent_body(vec![p.first.clone()], &[], "Accepted")).await;
        let subscribers = created["subscribers"].as_array().expect("subscribers");
        assert!(
            subscribers.iter().any(|s| s["uss_base_url"] == "http://uss2.test"),
            "{}: the subscriber must be notified: {created}",
            p.name
        );
        let q = json!({"area_of_interest": p.query});
        let (s, found) = call("POST", &dss.url(&format!("{OIR}/query")), Some(&u3), Some(&q)).await;
        assert_eq!(s, 200, "{}: {found}", p.name);
        assert!(
            found["operational_intent_references"].as_array().expect("list").iter().any(|r| r["id"] == id1.as_str()),
            "{}: the query must find it: {found}",
            p.name
        );
        // The key check: uss3's intersecting plan needs uss1's OVN.
        let (s, r) = call(
            "PUT",
            &dss.url(&format!("{OIR}/{}", new_id())),
            Some(&u3),
            Some(&intent_body(vec![p.second.clone()], &[], "Accepted")),
        )
        .await;
        assert_eq!(s, 409, "{}: a plan without the key must be refused: {r}", p.name);
        assert!(
            r["missing_operational_intents"].as_array().expect("missing").iter().any(|m| m["id"] == id1.as_str()),
            "{}: {r}",
            p.name
        );
        let (_, _, ok) =
            create_intent(&dss, &u3, &intent_body(vec![p.second.clone()], std::slice::from_ref(&ovn1), "Accepted"))
                .await;
        assert!(
            ok["subscribers"].as_array().expect("subscribers").iter().any(|s| s["uss_base_url"] == "http://uss2.test"),
            "{}: {ok}",
            p.name
        );
    }
}

/// Offsets (east, north) in metres from (47°N, 8°E) as a polygon volume.
fn shape(points: &[(f64, f64)], t0: i64, t1: i64) -> Value {
    let (dlng, dlat) = (1.0 / (111_320.0 * 47f64.to_radians().cos()), 1.0 / 111_200.0);
    let pts: Vec<(f64, f64)> = points.iter().map(|(e, n)| (47.0 + n * dlat, 8.0 + e * dlng)).collect();
    polygon(&pts, t0, t1)
}

/// 12. Interlocking flights 8 m apart discover each other (queries and subscriber lists), but
/// neither needs the other's OVN: the key check stays exact.
#[tokio::test]
async fn discovery_is_generous_and_decisions_stay_exact() {
    let dss = Dss::start();
    let (u1, u2) = (token("uss1", &[SC]), token("uss2", &[SC]));
    let c1 = shape(
        &[
            (0.0, 0.0),
            (100.0, 0.0),
            (100.0, 20.0),
            (20.0, 20.0),
            (20.0, 80.0),
            (100.0, 80.0),
            (100.0, 100.0),
            (0.0, 100.0),
        ],
        60,
        1800,
    );
    let c2 = shape(
        &[
            (28.0, 28.0),
            (128.0, 28.0),
            (128.0, 128.0),
            (28.0, 128.0),
            (28.0, 108.0),
            (108.0, 108.0),
            (108.0, 48.0),
            (28.0, 48.0),
        ],
        60,
        1800,
    );
    // uss2 subscribes with exactly its flight's footprint; uss1 plans the first C.
    let sub = json!({"extents": c2, "uss_base_url": "http://uss2.test", "notify_for_operational_intents": true});
    let (s, r) = call("PUT", &dss.url(&format!("{SUBS}/{}", new_id())), Some(&u2), Some(&sub)).await;
    assert_eq!(s, 200, "{r}");
    let mut body1 = intent_body(vec![c1.clone()], &[], "Accepted");
    body1["new_subscription"]["uss_base_url"] = json!("http://uss1.test");
    let (id1, _, created) = create_intent(&dss, &u1, &body1).await;
    assert!(
        created["subscribers"].as_array().expect("subscribers").iter().any(|s| s["uss_base_url"] == "http://uss2.test"),
        "the interlocking subscription must be told: {created}"
    );
    // An area query over the second C finds the first.
    let (s, found) =
        call("POST", &dss.url(&format!("{OIR}/query")), Some(&u2), Some(&json!({"area_of_interest": c2}))).await;
    assert_eq!(s, 200, "{found}");
    assert!(
        found["operational_intent_references"].as_array().expect("list").iter().any(|r| r["id"] == id1.as_str()),
        "{found}"
    );
    // The second C needs no key: the footprints do not intersect.
    let mut body2 = intent_body(vec![c2.clone()], &[], "Accepted");
    body2["new_subscription"]["uss_base_url"] = json!("http://uss2.test");
    let (_, _, second) = create_intent(&dss, &u2, &body2).await;
    // Its change is announced to uss1's implicit subscription, relevant though not intersecting.
    assert!(
        second["subscribers"].as_array().expect("subscribers").iter().any(|s| s["uss_base_url"] == "http://uss1.test"),
        "{second}"
    );
    // Far enough away (beyond 2 x 30 m of the hull), nothing is found.
    let away = shape(&[(0.0, 170.0), (100.0, 170.0), (100.0, 190.0), (0.0, 190.0)], 60, 1800);
    let (_, found) =
        call("POST", &dss.url(&format!("{OIR}/query")), Some(&u2), Some(&json!({"area_of_interest": away}))).await;
    assert!(
        !found["operational_intent_references"].as_array().expect("list").iter().any(|r| r["id"] == id1.as_str()),
        "{found}"
    );
    // With --relevance-margin-m 0 only the hulls count; 40 m beyond them is then not relevant.
    let tmp = tempfile::tempdir().expect("tempdir");
    let strict = Dss::start_in(&tmp.path().join("data"), &["--relevance-margin-m", "0"]);
    let (id, _, _) = create_intent(&strict, &u1, &body1).await;
    let near = shape(&[(0.0, 140.0), (100.0, 140.0), (100.0, 160.0), (0.0, 160.0)], 60, 1800);
    let (_, found) =
        call("POST", &strict.url(&format!("{OIR}/query")), Some(&u2), Some(&json!({"area_of_interest": near}))).await;
    assert!(
        !found["operational_intent_references"].as_array().expect("list").iter().any(|r| r["id"] == id.as_str()),
        "{found}"
    );
    let (_, found) =
        call("POST", &dss.url(&format!("{OIR}/query")), Some(&u2), Some(&json!({"area_of_interest": near}))).await;
    assert!(
        found["operational_intent_references"].as_array().expect("list").iter().any(|r| r["id"] == id1.as_str()),
        "40 m is within 2 x 30 m: {found}"
    );
}
