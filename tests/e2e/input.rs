//! Bad input: every case gets a 4xx `ErrorResponse` with a useful message, and stores nothing.

use serde_json::{json, Value};

use crate::harness::*;

fn with(mut body: Value, path: &[&str], value: Value) -> Value {
    let mut cur = &mut body;
    for p in &path[..path.len() - 1] {
        cur = match p.parse::<usize>() {
            Ok(i) => &mut cur[i],
            Err(_) => &mut cur[*p],
        };
    }
    cur[path[path.len() - 1]] = value;
    body
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_stores_nothing() {
    let dss = Dss::start();
    let tok = token("alpha", &[SC]);
    let good = intent_body(vec![square(0.0, 100.0, 0.0, 100.0, 60, 600)], &[], "Accepted");
    let v = ["extents", "0", "volume"];
    let poly = |pts: Vec<(f64, f64)>| json!({"vertices": pts.iter().map(|(lat, lng)| json!({"lat": lat, "lng": lng})).collect::<Vec<_>>()});
    let many: Vec<(f64, f64)> = (0..1001)
        .map(|i| {
            let a = i as f64 / 1001.0 * std::f64::consts::TAU;
            (47.0 + 0.01 * a.sin(), 8.0 + 0.01 * a.cos())
        })
        .collect();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "two vertices",
            with(good.clone(), &[v[0], v[1], v[2], "outline_polygon"], poly(vec![(47.0, 8.0), (47.001, 8.0)])),
            400,
            "at least 3",
        ),
        (
            "crossing edges",
            with(
                good.clone(),
                &[v[0], v[1], v[2], "outline_polygon"],
                poly(vec![(47.0, 8.0), (47.001, 8.001), (47.0, 8.001), (47.001, 8.0)]),
            ),
            400,
            "cross",
        ),
        (
            "duplicate vertex",
            with(
                good.clone(),
                &[v[0], v[1], v[2], "outline_polygon"],
                poly(vec![(47.0, 8.0), (47.001, 8.0), (47.001, 8.001), (47.0, 8.0)]),
            ),
            400,
            "duplicated",
        ),
        (
            "latitude",
            with(
                good.clone(),
                &[v[0], v[1], v[2], "outline_polygon"],
                poly(vec![(95.0, 8.0), (47.001, 8.0), (47.001, 8.001)]),
            ),
            400,
            "latitude",
        ),
        (
            "longitude",
            with(
                good.clone(),
                &[v[0], v[1], v[2], "outline_polygon"],
                poly(vec![(47.0, 181.0), (47.001, 8.0), (47.001, 8.001)]),
            ),
            400,
            "longitude",
        ),
        ("too many vertices", with(good.clone(), &[v[0], v[1], v[2], "outline_polygon"], poly(many)), 400, "at most"),
        (
            "area too large",
            with(
                good.clone(),
                &[v[0], v[1], v[2], "outline_polygon"],
                poly(vec![(47.0, 8.0), (47.0, 9.0), (48.0, 9.0), (48.0, 8.0)]),
            ),
            413,
            "exceeds",
        ),
        (
            "both outlines",
            with(
                good.clone(),
                &[v[0], v[1], v[2], "outline_circle"],
                json!({"center": {"lat": 47.0, "lng": 8.0}, "radius": {"value": 10, "units": "M"}}),
            ),
            400,
            "exactly one",
        ),
        (
            "inverted altitude",
            with(
                good.clone(),
                &[v[0], v[1], v[2], "altitude_lower"],
                json!({"value": 500, "reference": "W84", "units": "M"}),
            ),
            400,
            "above altitude_upper",
        ),
        (
            "unknown altitude units",
            with(good.clone(), &[v[0], v[1], v[2], "altitude_upper", "units"], json!("FT")),
            400,
            "units",
        ),
        (
            "unknown altitude reference",
            with(good.clone(), &[v[0], v[1], v[2], "altitude_upper", "reference"], json!("AGL")),
            400,
            "reference",
        ),
        ("inverted time", with(good.clone(), &["extents", "0", "time_end"], rfc3339(30)), 400, "before time_start"),
        (
            "ends in the past",
            with(
                with(good.clone(), &["extents", "0", "time_end"], rfc3339(-60)),
                &["extents", "0", "time_start"],
                rfc3339(-120),
            ),
            400,
            "past",
        ),
        (
            "bad time format",
            with(good.clone(), &["extents", "0", "time_start", "value"], json!("yesterday")),
            400,
            "RFC 3339",
        ),
        ("missing time", with(good.clone(), &["extents", "0", "time_start"], Value::Null), 400, "required"),
        (
            "not a number",
            with(good.clone(), &[v[0], v[1], v[2], "altitude_upper", "value"], json!("NaN")),
            400,
            "altitude_upper.value",
        ),
        ("unknown state", with(good.clone(), &["state"], json!("Flying")), 400, "state"),
        ("empty extents", with(good.clone(), &["extents"], json!([])), 400, "at least one"),
        ("bad base url", with(good.clone(), &["uss_base_url"], json!("ftp://x/")), 400, "uss_base_url"),
        ("bad subscription id", with(good.clone(), &["subscription_id"], json!("nope")), 400, "subscription_id"),
        ("unknown subscription", with(good.clone(), &["subscription_id"], json!(new_id())), 400, "does not exist"),
        (
            "circle without radius",
            with(
                with(good.clone(), &[v[0], v[1], v[2], "outline_polygon"], Value::Null),
                &[v[0], v[1], v[2], "outline_circle"],
                json!({"center": {"lat": 47.0, "lng": 8.0}}),
            ),
            400,
            "radius",
        ),
        (
            "zero radius",
            with(
                with(good.clone(), &[v[0], v[1], v[2], "outline_polygon"], Value::Null),
                &[v[0], v[1], v[2], "outline_circle"],
                json!({"center": {"lat": 47.0, "lng": 8.0}, "radius": {"value": 0, "units": "M"}}),
            ),
            400,
            "radius",
        ),
    ];
    for (what, body, status, needle) in cases {
        let (s, b) = call("PUT", &dss.url(&format!("{OIR}/{}", new_id())), Some(&tok), Some(&body)).await;
        assert_error_shape(s, &b, status, what);
        let msg = b["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{what}: message `{msg}` should mention `{needle}`");
    }

    // Malformed bodies, ids and sizes.
    let c = client();
    let raw = |body: &'static str| {
        c.put(dss.url(&format!("{OIR}/{}", new_id())))
            .bearer_auth(&tok)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in [
        "{",
        "[]",
        "",
        "{\"extents\": 5}",
        "{\"extents\": [{\"volume\": {}}], \"state\": \"Accepted\", \"uss_base_url\": \"http://x\"}",
    ] {
        let r = raw(body).await.expect("send");
        let status = r.status().as_u16();
        let b: Value = r.json().await.unwrap_or(Value::Null);
        assert_error_shape(status, &b, 400, body);
    }
    let (s, b) = call("PUT", &dss.url(&format!("{OIR}/not-a-uuid")), Some(&tok), Some(&good)).await;
    assert_error_shape(s, &b, 400, "bad uuid");
    let (s, b) = call("GET", &dss.url(&format!("{OIR}/03e5572a-f733-19af-bc14-8a18bd53ee39")), Some(&tok), None).await;
    assert_error_shape(s, &b, 400, "not a v4 uuid");
    let huge = "x".repeat(5 * 1024 * 1024);
    let r = c
        .put(dss.url(&format!("{OIR}/{}", new_id())))
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .body(format!("{{\"pad\":\"{huge}\"}}"))
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    let b: Value = r.json().await.unwrap_or(Value::Null);
    assert_error_shape(status, &b, 413, "oversized body");
    let (s, b) = call("POST", &dss.url(&format!("{OIR}/query")), Some(&tok), Some(&json!({}))).await;
    assert_error_shape(s, &b, 400, "query without area");
    let (s, b) = call("GET", &dss.url("/dss/v1/nothing"), Some(&tok), None).await;
    assert_error_shape(s, &b, 404, "unknown path");
    let (s, b) = call("PATCH", &dss.url(&format!("{OIR}/{}", new_id())), Some(&tok), None).await;
    assert_error_shape(s, &b, 405, "wrong method");

    // Nothing was stored by any of it.
    let q = json!({"area_of_interest": circle(47.0, 8.0, 20_000.0, -3600, 500 * 86_400)});
    let (s, found) = call("POST", &dss.url(&format!("{OIR}/query")), Some(&tok), Some(&q)).await;
    assert_eq!(s, 200);
    assert_eq!(found["operational_intent_references"].as_array().map(Vec::len), Some(0), "{found}");
}

#[tokio::test]
async fn ecosystem_extras_are_ignored() {
    let dss = Dss::start();
    let tok = token("alpha", &[SC]);
    let mut body = intent_body(vec![circle(47.0, 8.0, 50.0, 60, 600)], &[], "Accepted");
    body["extents"][0]["volume"]["outline_polygon"] = Value::Null;
    body["extents"][0]["x-vendor"] = json!({"anything": [1, 2]});
    body["subscription_id"] = Value::Null;
    let (_, _, resp) = create_intent(&dss, &tok, &body).await;
    assert_eq!(resp["operational_intent_reference"]["state"], "Accepted");
}
