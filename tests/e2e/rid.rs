//! Network Remote ID (ASTM F3411-22a) in the DSS over HTTP: ISAs and Remote ID subscriptions
//! under `/rid/v2`, their versions, scopes, subscriber lists and notification indexes, and their
//! separation from the F3548 entities.

use serde_json::{json, Value};

use crate::harness::*;

const ISA: &str = "/rid/v2/dss/identification_service_areas";
const SUB: &str = "/rid/v2/dss/subscriptions";
const SP: &str = "rid.service_provider";
const DP: &str = "rid.display_provider";

/// The `area` query parameter for a square like `square`'s, `side_m` wide, `east_m` east of
/// (47°N, 8°E).
fn area(east_m: f64, side_m: f64) -> String {
    let dlng = 1.0 / (111_320.0 * 47f64.to_radians().cos());
    let dlat = 1.0 / 111_200.0;
    let x0 = 8.0 + east_m * dlng;
    let (x1, y1) = (x0 + side_m * dlng, 47.0 + side_m * dlat);
    format!("47.0,{x0},47.0,{x1},{y1},{x1},{y1},{x0}")
}

fn time_text(offset_s: i64) -> String {
    rfc3339(offset_s)["value"].as_str().expect("time").to_owned()
}

fn states(subscriber: &Value) -> Vec<(String, i64)> {
    subscriber["subscriptions"]
        .as_array()
        .expect("subscriptions")
        .iter()
        .map(|s| {
            (s["subscription_id"].as_str().expect("id").to_owned(), s["notification_index"].as_i64().expect("index"))
        })
        .collect()
}

#[tokio::test]
async fn isas_and_subscriptions_over_http_with_versions_scopes_and_subscribers() {
    let dss = Dss::start();
    let sp = token("sp", &[SP]);
    let dp = token("dp", &[DP]);
    let other_dp = token("other", &[DP]);

    // A display provider subscribes to the area.
    let sub_id = new_id();
    let sub_body = json!({"extents": square(0.0, 2000.0, 0.0, 3000.0, 0, 3600), "uss_base_url": "https://dp.test"});
    let (s, r) = call("PUT", &dss.url(&format!("{SUB}/{sub_id}")), Some(&dp), Some(&sub_body)).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["subscription"]["notification_index"].as_i64(), r["subscription"]["owner"].as_str()),
        (Some(0), Some("dp"))
    );
    assert_eq!(r["service_areas"], json!([]));
    let sub_version = r["subscription"]["version"].as_str().expect("version").to_owned();
    let (s, r) = call("PUT", &dss.url(&format!("{SUB}/{}", new_id())), Some(&sp), Some(&sub_body)).await;
    assert_error_shape(s, &r, 403, "a service provider's token cannot subscribe");

    // A service provider declares an ISA there: the subscriber is named with its new index.
    let isa_id = new_id();
    let isa_body = json!({"extents": square(100.0, 200.0, 0.0, 120.0, 0, 600), "uss_base_url": "https://sp.test/rid"});
    let (s, r) = call("PUT", &dss.url(&format!("{ISA}/{isa_id}")), Some(&dp), Some(&isa_body)).await;
    assert_error_shape(s, &r, 403, "a display provider's token cannot write an ISA");
    let (s, r) = call("PUT", &dss.url(&format!("{ISA}/{isa_id}")), Some(&sp), Some(&isa_body)).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["service_area"]["owner"], "sp");
    assert_eq!(r["service_area"]["uss_base_url"], "https://sp.test/rid");
    assert_eq!(r["subscribers"][0]["url"], "https://dp.test");
    assert_eq!(states(&r["subscribers"][0]), vec![(sub_id.clone(), 1)]);
    let v1 = r["service_area"]["version"].as_str().expect("version").to_owned();
    let (s, r) = call("PUT", &dss.url(&format!("{ISA}/{isa_id}")), Some(&sp), Some(&isa_body)).await;
    assert_error_shape(s, &r, 409, "creating an existing ISA");

    // Read and search it; an F3548 query of the same area never sees it.
    let (s, r) = call("GET", &dss.url(&format!("{ISA}/{isa_id}")), Some(&dp), None).await;
    assert_eq!((s, r["service_area"]["id"].as_str()), (200, Some(isa_id.as_str())), "{r}");
    let search = |east: f64, side: f64| {
        dss.url(&format!(
            "{ISA}?area={}&earliest_time={}&latest_time={}",
            area(east, side),
            time_text(0),
            time_text(300)
        ))
    };
    let (s, r) = call("GET", &search(0.0, 1000.0), Some(&dp), None).await;
    assert_eq!(s, 200, "{r}");
    let found: Vec<&str> =
        r["service_areas"].as_array().expect("list").iter().filter_map(|i| i["id"].as_str()).collect();
    assert_eq!(found, vec![isa_id.as_str()]);
    let (s, r) = call("GET", &search(30_000.0, 1000.0), Some(&dp), None).await;
    assert_eq!((s, r["service_areas"].clone()), (200, json!([])));
    let (s, r) = call("GET", &dss.url(ISA), Some(&dp), None).await;
    assert_error_shape(s, &r, 400, "a search without an area");
    let huge = format!("{ISA}?area=40.0,0.0,40.0,10.0,50.0,10.0,50.0,0.0");
    let (s, r) = call("GET", &dss.url(&huge), Some(&dp), None).await;
    assert_error_shape(s, &r, 413, "a search over a country");
    let sc = token("uss", &[SC]);
    let query = json!({"area_of_interest": square(0.0, 1000.0, 0.0, 3000.0, 0, 600)});
    let (s, r) = call("POST", &dss.url(&format!("{OIR}/query")), Some(&sc), Some(&query)).await;
    assert_eq!((s, r["operational_intent_references"].clone()), (200, json!([])), "an ISA is no operational intent");

    // Update: the version must be the current one, and the owner the writer.
    let moved = json!({"extents": square(300.0, 200.0, 0.0, 120.0, 0, 600), "uss_base_url": "https://sp.test/rid"});
    let (s, r) = call("PUT", &dss.url(&format!("{ISA}/{isa_id}/not-the-version")), Some(&sp), Some(&moved)).await;
    assert_error_shape(s, &r, 409, "an update at a stale version");
    let (s, r) =
        call("PUT", &dss.url(&format!("{ISA}/{isa_id}/{v1}")), Some(&token("intruder", &[SP])), Some(&moved)).await;
    assert_error_shape(s, &r, 403, "another provider's ISA");
    let (s, r) = call("PUT", &dss.url(&format!("{ISA}/{isa_id}/{v1}")), Some(&sp), Some(&moved)).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(states(&r["subscribers"][0]), vec![(sub_id.clone(), 2)]);
    let v2 = r["service_area"]["version"].as_str().expect("version").to_owned();
    assert_ne!(v1, v2, "every write changes the version");

    // The DSS's map draws the ISA as a layer of its own; /metrics counts the live Remote ID
    // entities apart from the F3548 ones.
    let viewer = token("authority", &["deconflict.map.read"]);
    let (s, view) = call("GET", &dss.url("/map/data?bbox=7.99,46.99,8.03,47.02"), Some(&viewer), None).await;
    assert_eq!(s, 200, "{view}");
    let drawn = view["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .find(|e| e["id"] == isa_id.as_str())
        .unwrap_or_else(|| panic!("the ISA {isa_id} is not on the map: {view}"));
    assert_eq!(
        (drawn["kind"].as_str(), drawn["manager"].as_str(), drawn["uss_base_url"].as_str()),
        (Some("identification_service_area"), Some("sp"), Some("https://sp.test/rid"))
    );
    assert_eq!(drawn["volumes"].as_array().map(Vec::len), Some(1), "{drawn}");
    let text = client().get(dss.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    for line in [
        "dss_live_entities{kind=\"identification_service_area\"} 1",
        "dss_live_entities{kind=\"rid_subscription\"} 1",
        "dss_live_entities{kind=\"operational_intent\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in /metrics:\n{text}");
    }

    // The subscription is its owner's alone; its index counts every change.
    let (s, r) = call("GET", &dss.url(&format!("{SUB}/{sub_id}")), Some(&other_dp), None).await;
    assert_error_shape(s, &r, 403, "another display provider's subscription");
    let (s, r) = call("GET", &dss.url(&format!("{SUB}/{sub_id}")), Some(&dp), None).await;
    assert_eq!((s, r["subscription"]["notification_index"].as_i64()), (200, Some(2)), "{r}");
    let (s, r) = call("GET", &dss.url(&format!("{SUB}?area={}", area(0.0, 500.0))), Some(&dp), None).await;
    assert_eq!((s, r["subscriptions"].as_array().map(Vec::len)), (200, Some(1)), "{r}");
    let (s, r) = call("GET", &dss.url(&format!("{SUB}?area={}", area(0.0, 500.0))), Some(&other_dp), None).await;
    assert_eq!((s, r["subscriptions"].as_array().map(Vec::len)), (200, Some(0)), "only one's own: {r}");

    // Deleting the ISA names the subscriber once more; then it is gone.
    let (s, r) = call("DELETE", &dss.url(&format!("{ISA}/{isa_id}/{v1}")), Some(&sp), None).await;
    assert_error_shape(s, &r, 409, "a deletion at a stale version");
    let (s, r) = call("DELETE", &dss.url(&format!("{ISA}/{isa_id}/{v2}")), Some(&sp), None).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(states(&r["subscribers"][0]), vec![(sub_id.clone(), 3)]);
    let (s, r) = call("GET", &dss.url(&format!("{ISA}/{isa_id}")), Some(&dp), None).await;
    assert_error_shape(s, &r, 404, "a deleted ISA");
    let (s, r) = call("DELETE", &dss.url(&format!("{SUB}/{sub_id}/{sub_version}")), Some(&dp), None).await;
    assert_eq!((s, r["subscription"]["id"].as_str()), (200, Some(sub_id.as_str())), "{r}");
    let (s, r) = call("GET", &dss.url(&format!("{SUB}/{sub_id}")), Some(&dp), None).await;
    assert_error_shape(s, &r, 404, "a deleted subscription");
}

#[tokio::test]
async fn bad_remote_id_input_is_a_clear_4xx() {
    let dss = Dss::start();
    let sp = token("sp", &[SP]);
    let dp = token("dp", &[DP]);
    let url = |id: &str| dss.url(&format!("{ISA}/{id}"));
    let good = || json!({"extents": square(0.0, 200.0, 0.0, 120.0, 0, 600), "uss_base_url": "https://sp.test"});
    let cases: Vec<(String, Value, &str)> = vec![
        (url("not-a-uuid"), good(), "an id that is no UUID"),
        (url(&new_id()), json!({"uss_base_url": "https://sp.test"}), "no extents"),
        (url(&new_id()), json!({"extents": square(0.0, 200.0, 0.0, 120.0, 0, 600)}), "no uss_base_url"),
        (
            url(&new_id()),
            json!({"extents": square(0.0, 200.0, 0.0, 120.0, 0, 600), "uss_base_url": "not a url"}),
            "a relative URL",
        ),
        (
            url(&new_id()),
            json!({"extents": square(0.0, 200.0, 0.0, 120.0, -900, 600), "uss_base_url": "https://sp.test"}),
            "a start 15 min ago",
        ),
        (url(&new_id()), json!("not an object"), "not an object"),
    ];
    for (u, body, what) in cases {
        let (s, r) = call("PUT", &u, Some(&sp), Some(&body)).await;
        assert_error_shape(s, &r, 400, what);
    }
    let no_end = json!({"extents": {"volume": good()["extents"]["volume"].clone(), "time_start": rfc3339(0)}, "uss_base_url": "https://sp.test"});
    let (s, r) = call("PUT", &url(&new_id()), Some(&sp), Some(&no_end)).await;
    assert_error_shape(s, &r, 400, "an ISA without an end");
    // Too large to write: 400 as the reference DSS answers (the qualifier's "ISA huge area").
    let huge = json!({"extents": square(0.0, 60_000.0, 0.0, 120.0, 0, 600), "uss_base_url": "https://sp.test"});
    let (s, r) = call("PUT", &url(&new_id()), Some(&sp), Some(&huge)).await;
    assert_error_shape(s, &r, 400, "an ISA of 3,600 km2");
    let (s, r) = call("PUT", &dss.url(&format!("{SUB}/{}", new_id())), Some(&dp), Some(&huge)).await;
    assert_error_shape(s, &r, 400, "a subscription of 3,600 km2");
    // An update of an ISA that does not exist: 400 (the APIs list no 404 for it).
    let (s, r) = call("PUT", &dss.url(&format!("{ISA}/{}/00000000000000ab", new_id())), Some(&sp), Some(&good())).await;
    assert_error_shape(s, &r, 400, "an update of a missing ISA");
    let sub = json!({"extents": square(0.0, 200.0, 0.0, 120.0, 0, 600), "uss_base_url": "https://dp.test"});
    let (s, r) = call("PUT", &dss.url(&format!("{SUB}/{}/00000000000000ab", new_id())), Some(&dp), Some(&sub)).await;
    assert_error_shape(s, &r, 400, "an update of a missing subscription");
    let long = json!({"extents": square(0.0, 200.0, 0.0, 120.0, 0, 2 * 86_400), "uss_base_url": "https://dp.test"});
    let (s, r) = call("PUT", &dss.url(&format!("{SUB}/{}", new_id())), Some(&dp), Some(&long)).await;
    assert_error_shape(s, &r, 400, "a subscription over 24 hours");
    let (s, r) = call("GET", &dss.url(&format!("{ISA}?area=1,2,3")), Some(&dp), None).await;
    assert_error_shape(s, &r, 400, "an odd area");
    let (s, r) = call("GET", &dss.url(&format!("{ISA}/{}", new_id())), None, None).await;
    assert_error_shape(s, &r, 401, "no token");
    // Ten subscriptions over one area, then 429.
    let sub = json!({"extents": square(0.0, 200.0, 0.0, 120.0, 0, 600), "uss_base_url": "https://dp.test"});
    for _ in 0..10 {
        let (s, r) = call("PUT", &dss.url(&format!("{SUB}/{}", new_id())), Some(&dp), Some(&sub)).await;
        assert_eq!(s, 200, "{r}");
    }
    let (s, r) = call("PUT", &dss.url(&format!("{SUB}/{}", new_id())), Some(&dp), Some(&sub)).await;
    assert_error_shape(s, &r, 429, "an eleventh subscription over the area");
}

/// An F3411-19 volume like `square`'s: its own field names, times as plain strings.
fn square_v1(east_m: f64, side_m: f64, t0: i64, t1: i64) -> Value {
    let v = square(east_m, side_m, 0.0, 120.0, t0, t1);
    json!({
        "spatial_volume": {
            "footprint": {"vertices": v["volume"]["outline_polygon"]["vertices"].clone()},
            "altitude_lo": 0.0, "altitude_hi": 120.0
        },
        "time_start": v["time_start"]["value"].clone(), "time_end": v["time_end"]["value"].clone()
    })
}

#[tokio::test]
async fn both_versions_share_one_set_of_entities_each_with_its_own_scopes_and_shapes() {
    let dss = Dss::start();
    let v1_read = token("dp19", &["dss.read.identification_service_areas"]);
    let v1_write = token("sp19", &["dss.write.identification_service_areas"]);
    let sp = token("sp", &[SP]);

    // An F3411-19 display provider subscribes with its ISA callback.
    let sub_id = new_id();
    let body = json!({"extents": square_v1(0.0, 2000.0, 0, 3600), "callbacks": {"identification_service_area_url": "https://dp19.test/v1/isa"}});
    let (s, r) = call("PUT", &dss.url(&format!("/v1/dss/subscriptions/{sub_id}")), Some(&v1_read), Some(&body)).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["subscription"]["callbacks"]["identification_service_area_url"], "https://dp19.test/v1/isa");
    let (s, r) = call("PUT", &dss.url(&format!("{SUB}/{}", new_id())), Some(&v1_read), Some(&sub_body_v2())).await;
    assert_error_shape(s, &r, 403, "an F3411-19 scope through F3411-22a");

    // An F3411-22a ISA names the F3411-19 subscriber at its callback.
    let isa_v2 = new_id();
    let isa_body = json!({"extents": square(100.0, 200.0, 0.0, 120.0, 0, 600), "uss_base_url": "https://sp.test/rid"});
    let (s, r) = call("PUT", &dss.url(&format!("{ISA}/{isa_v2}")), Some(&sp), Some(&isa_body)).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["subscribers"][0]["url"], "https://dp19.test/v1/isa");
    assert_eq!(states(&r["subscribers"][0]), vec![(sub_id.clone(), 1)]);

    // An F3411-19 ISA: its own shape in, its own shape out, and found through both versions.
    let isa_v1 = new_id();
    let v1_body =
        json!({"extents": square_v1(300.0, 200.0, 0, 600), "flights_url": "https://sp19.test/v1/uss/flights"});
    let (s, r) = call(
        "PUT",
        &dss.url(&format!("/v1/dss/identification_service_areas/{isa_v1}")),
        Some(&v1_write),
        Some(&v1_body),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["service_area"]["flights_url"], "https://sp19.test/v1/uss/flights");
    assert!(r["service_area"]["time_end"].is_string(), "F3411-19 times are plain strings: {r}");
    assert_eq!(states(&r["subscribers"][0]), vec![(sub_id.clone(), 2)]);
    let (s, r) =
        call("PUT", &dss.url(&format!("/v1/dss/identification_service_areas/{}", new_id())), Some(&sp), Some(&v1_body))
            .await;
    assert_error_shape(s, &r, 403, "an F3411-22a scope through F3411-19");

    let v1_search = format!(
        "/v1/dss/identification_service_areas?area={}&earliest_time={}&latest_time={}",
        area(0.0, 1000.0),
        time_text(0),
        time_text(300)
    );
    let (s, r) = call("GET", &dss.url(&v1_search), Some(&v1_read), None).await;
    assert_eq!(s, 200, "{r}");
    let mut ids: Vec<&str> =
        r["service_areas"].as_array().expect("list").iter().filter_map(|i| i["id"].as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![isa_v1.as_str(), isa_v2.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected, "F3411-19 sees both versions' ISAs");
    let dp = token("dp", &[DP]);
    let v2_search =
        format!("{ISA}?area={}&earliest_time={}&latest_time={}", area(0.0, 1000.0), time_text(0), time_text(300));
    let (s, r) = call("GET", &dss.url(&v2_search), Some(&dp), None).await;
    assert_eq!((s, r["service_areas"].as_array().map(Vec::len)), (200, Some(2)), "{r}");

    // The subscription, read and deleted through F3411-19.
    let (s, r) = call("GET", &dss.url(&format!("/v1/dss/subscriptions/{sub_id}")), Some(&v1_read), None).await;
    assert_eq!((s, r["subscription"]["notification_index"].as_i64()), (200, Some(2)), "{r}");
    let version = r["subscription"]["version"].as_str().expect("version").to_owned();
    let (s, r) =
        call("DELETE", &dss.url(&format!("/v1/dss/subscriptions/{sub_id}/{version}")), Some(&v1_read), None).await;
    assert_eq!(s, 200, "{r}");
    let no_callback = json!({"extents": square_v1(0.0, 100.0, 0, 600), "callbacks": {}});
    let (s, r) =
        call("PUT", &dss.url(&format!("/v1/dss/subscriptions/{}", new_id())), Some(&v1_read), Some(&no_callback)).await;
    assert_error_shape(s, &r, 400, "a subscription without its ISA callback");
}

fn sub_body_v2() -> Value {
    json!({"extents": square(0.0, 200.0, 0.0, 120.0, 0, 600), "uss_base_url": "https://dp.test"})
}
