//! Live flights over HTTP: positions in through the operator interface (and `deconflict
//! telemetry`), the conformance monitor acting on its own, a subscriber told of it, telemetry
//! served and polled, off-nominal volumes blocking plans, lost position, and who may report.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{call, BIN};
use crate::uss::{flight, op, Cluster, Participant, FULL};

/// Metres per degree of longitude at 47°N, about.
const M_PER_DEG_LNG: f64 = 75_900.0;

/// A position `east_m` east of (47.0, 8.0), stamped `offset_s` from now.
fn position(east_m: f64, offset_s: f64) -> Value {
    let t = chrono::Utc::now() + chrono::Duration::milliseconds((offset_s * 1000.0) as i64);
    json!({"time": t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
           "lat": 47.0, "lng": 8.0 + east_m / M_PER_DEG_LNG, "alt_m": 60.0,
           "accuracy_h_m": 5.0, "accuracy_v_m": 3.0, "speed_mps": 10.0, "track_deg": 90.0})
}

async fn post_positions(uss: &Participant, token: &str, id: &str, body: &Value) -> (u16, Value) {
    call("POST", &format!("{}/operator/intents/{id}/positions", uss.operator), Some(token), Some(body)).await
}

/// Polls `probe` until it returns `Some`, for at most `secs` seconds.
async fn wait_for<T>(what: &str, secs: u64, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_deviating_flight_is_announced_on_its_own_and_comes_back() {
    let cluster = Cluster::start();
    let alpha = cluster.participant_with(
        "alpha",
        &FULL,
        &cluster.dir.path().join("alpha"),
        &["--conforming-after-secs", "2", "--telemetry-timeout-secs", "3", "--contingent-after-secs", "120"],
    );
    let bravo = cluster.participant("bravo", &FULL);
    let (s, _) = op(&bravo, "POST", "/operator/subscribe", Some(&flight(47.0, 8.0, 5000.0, 0.0, 400.0, 0, 3600))).await;
    assert_eq!(s, 200);

    let (s, planned) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.0, 8.0, 300.0, 0.0, 120.0, 0, 1800))).await;
    assert_eq!(s, 200, "{planned}");
    let id = planned["operational_intent_id"].as_str().expect("id").to_owned();

    // Not flying yet: 409; not ours: 404.
    let (s, body) = post_positions(&alpha, &alpha.token, &id, &position(0.0, 0.0)).await;
    assert_eq!(s, 409, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("Accepted"), "{body}");
    let (s, _) =
        post_positions(&alpha, &alpha.token, "0b7d2c7e-5f7e-4b6e-9f1e-000000000000", &position(0.0, 0.0)).await;
    assert_eq!(s, 404);
    let (s, act) = op(&alpha, "POST", &format!("/operator/intents/{id}/activate"), None).await;
    assert_eq!(s, 200, "{act}");

    // Bad input is refused whole, with the reason.
    let mut far_north = position(0.0, 0.0);
    far_north["lat"] = json!(95.0);
    let (s, body) = post_positions(&alpha, &alpha.token, &id, &json!([position(0.0, 0.0), far_north])).await;
    assert_eq!(s, 400, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().starts_with("[1].lat"), "{body}");
    let (s, body) = post_positions(&alpha, &alpha.token, &id, &position(0.0, 30.0)).await;
    assert_eq!(s, 400, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("ahead"), "{body}");
    let many: Vec<Value> = (0..1001).map(|_| position(0.0, 0.0)).collect();
    let (s, _) = post_positions(&alpha, &alpha.token, &id, &Value::Array(many)).await;
    assert_eq!(s, 400);
    let (s, body) = post_positions(&alpha, &alpha.token, &id, &json!({"time": "now"})).await;
    assert_eq!(s, 400, "{body}");
    let (_, st) = op(&alpha, "GET", "/operator/status", None).await;
    assert!(st["flights"].get(&id).is_none(), "nothing of a refused request was taken: {st}");

    // Who may report: a ground station's token (deconflict.telemetry) may, but may not plan;
    // a token without either scope may not.
    let ground = cluster.token("alpha-ground", "deconflict.telemetry").await;
    let (s, ok) = post_positions(&alpha, &ground, &id, &json!([position(0.0, 0.0), position(20.0, 0.0)])).await;
    assert_eq!(s, 200, "{ok}");
    assert_eq!((ok["accepted"].as_u64(), ok["conforming"].as_bool()), (Some(2), Some(true)), "{ok}");
    let (s, _) = call(
        "POST",
        &format!("{}/operator/plan", alpha.operator),
        Some(&ground),
        Some(&flight(47.1, 8.0, 100.0, 0.0, 120.0, 60, 600)),
    )
    .await;
    assert_eq!(s, 403, "a telemetry token may not plan");
    let peer_token = cluster.token("alpha-ground", "utm.strategic_coordination").await;
    let (s, _) = post_positions(&alpha, &peer_token, &id, &position(0.0, 0.0)).await;
    assert_eq!(s, 403);

    // The aircraft drifts east and leaves its 300 m circle: a recorded track replayed by
    // `deconflict telemetry`, shifted to now.
    let track = cluster.dir.path().join("track.jsonl");
    let lines: Vec<String> = (0..8).map(|i| position(100.0 * (i + 1) as f64, i as f64).to_string()).collect();
    std::fs::write(&track, lines.join("\n") + "\n").expect("track file");
    let started = Instant::now();
    let replay = tokio::process::Command::new(BIN)
        .args(["telemetry", "--uss", &alpha.operator, "--token", &alpha.token, &id])
        .arg(&track)
        .args(["--now", "--speed", "8"])
        .output();
    let replay = tokio::time::timeout(Duration::from_secs(30), replay).await.expect("replay bounded").expect("run");
    let out = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success(), "{out}\n{}", String::from_utf8_lossy(&replay.stderr));
    assert!(String::from_utf8_lossy(&replay.stderr).contains("[8/8]"), "a progress line");

    // bravo, subscribed, is told: Nonconforming, with off-nominal volumes around the aircraft.
    // As it drifts on beyond them, its off-nominal volumes are renewed around it, and bravo
    // is told of that too.
    let newest = 8.0 + 800.0 / M_PER_DEG_LNG;
    let seen = wait_for("bravo sees alpha Nonconforming around its newest position", 15, async || {
        let (_, st) = op(&bravo, "GET", "/operator/status", None).await;
        let o = st["others_intents"][&id].clone();
        let off = o["details"]["off_nominal_volumes"].as_array().cloned().unwrap_or_default();
        let around_newest = off.len() == 1
            && (off[0]["volume"]["outline_circle"]["center"]["lng"].as_f64().unwrap_or_default() - newest).abs() < 1e-6;
        (o["reference"]["state"] == "Nonconforming" && around_newest).then_some(o)
    })
    .await;
    eprintln!("deviation to subscriber: {:?} after the replay started", started.elapsed());
    assert!(seen["reference"]["version"].as_i64().is_some_and(|v| v >= 4), "activated, nonconforming, renewed: {seen}");
    let (_, ast) = op(&alpha, "GET", "/operator/status", None).await;
    let why = ast["flights"][&id]["last_automatic_change"].as_str().unwrap_or_default().to_owned();
    // The newest automatic change may be a renewal of the off-nominal volumes as it drifted on.
    assert!(why.contains("Nonconforming"), "{ast}");
    assert!(
        ast["notifications"].as_array().expect("history").iter().any(|n| n["entity_id"] == id.as_str()
            && n["state"] == "Nonconforming"
            && n["from"].as_str().is_some_and(|f| f.contains("conformance monitor"))
            && n["note"].as_str().is_some_and(|w| w.contains("m outside it horizontally"))),
        "the automatic change and its reason are in the notification history: {ast}"
    );

    // alpha's map shows the flight at its newest position with its trail.
    let (s, view) = op(&alpha, "GET", "/operator/map", None).await;
    assert_eq!(s, 200);
    let drawn = view["flights"].as_array().and_then(|l| l.iter().find(|f| f["id"] == id.as_str()).cloned());
    let drawn = drawn.unwrap_or_else(|| panic!("the flight is on alpha's map: {view}"));
    assert_eq!((drawn["own"].as_bool(), drawn["state"].as_str()), (Some(true), Some("Nonconforming")), "{drawn}");
    assert!((drawn["position"][0].as_f64().unwrap_or_default() - newest).abs() < 1e-9, "{drawn}");
    assert!(drawn["trail"].as_array().is_some_and(|t| t.len() >= 8), "{drawn}");

    // bravo reads alpha's telemetry (as a peer, and by its own polling).
    let bravo_peer = cluster.token("bravo", "utm.conformance_monitoring_sa").await;
    let (s, t) =
        call("GET", &format!("{}/uss/v1/operational_intents/{id}/telemetry", alpha.url), Some(&bravo_peer), None).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["operational_intent_id"], id.as_str());
    assert_eq!(t["telemetry"]["position"]["altitude"]["reference"], "W84");
    assert_eq!(t["telemetry"]["position"]["accuracy_h"], "HA10m");
    let polled = wait_for("bravo polls alpha's telemetry", 15, async || {
        let (_, st) = op(&bravo, "GET", "/operator/status", None).await;
        st["others_flights"][&id]["latest"].as_object().cloned()
    })
    .await;
    assert!(
        // The first position outside (300 m east, 10 m uncertainty) or a later one: bravo's
        // poll may come as soon as alpha is Nonconforming.
        polled["lng"].as_f64().is_some_and(|l| l >= 8.0 + 300.0 / M_PER_DEG_LNG - 1e-9),
        "outside alpha's circle: {polled:?}"
    );
    assert_eq!(
        (polled["accuracy_h_m"].as_f64(), polled["accuracy_v_m"].as_f64()),
        (Some(10.0), Some(3.0)),
        "{polled:?}"
    );
    let (_, bview) = op(&bravo, "GET", "/operator/map", None).await;
    assert!(
        bview["flights"].as_array().is_some_and(|l| l.iter().any(|f| f["id"] == id.as_str() && f["own"] == false)),
        "alpha's off-nominal flight is on bravo's map: {bview}"
    );

    // bravo's next plan into the off-nominal volume (outside alpha's nominal circle) is refused.
    let (s, r) = op(
        &bravo,
        "POST",
        "/operator/plan",
        Some(&flight(47.0, 8.0 + 900.0 / M_PER_DEG_LNG, 50.0, 0.0, 120.0, 30, 600)),
    )
    .await;
    assert_eq!(s, 409, "{r}");
    assert_eq!(r["conflicts"][0]["id"], id.as_str(), "{r}");

    // The aircraft comes back and stays inside: Activated again, off-nominal volumes gone.
    let back = wait_for("alpha Activated again", 20, async || {
        let (s, _) = post_positions(&alpha, &alpha.token, &id, &position(50.0, 0.0)).await;
        assert_eq!(s, 200);
        let (_, st) = op(&bravo, "GET", "/operator/status", None).await;
        let o = st["others_intents"][&id].clone();
        (o["reference"]["state"] == "Activated").then_some(o)
    })
    .await;
    assert_eq!(back["details"]["off_nominal_volumes"], json!([]), "{back}");

    // Silence beyond --telemetry-timeout-secs: lost position.
    let lost = wait_for("a silent flight goes Nonconforming", 15, async || {
        let (_, st) = op(&alpha, "GET", "/operator/status", None).await;
        (st["own_intents"][&id]["intent"]["reference"]["state"] == "Nonconforming").then_some(st)
    })
    .await;
    let why = lost["flights"][&id]["last_automatic_change"].as_str().unwrap_or_default();
    assert!(why.contains("lost position"), "{lost}");
}

/// Network Remote ID, the service provider role: a flying flight of alpha's is announced in an
/// ISA from its first position, served to display providers, and the ISA's subscribers (bravo)
/// are told of its changes, its deletion included once the flight ends.
#[tokio::test]
async fn a_flying_flight_is_announced_and_served_as_remote_id() {
    remote_id_between_participants(Cluster::start()).await;
}

/// The same through a pool: alpha on one instance, bravo on another, the test's own calls on
/// the third.
#[tokio::test]
async fn a_flying_flight_is_announced_and_served_as_remote_id_through_a_pool() {
    remote_id_between_participants(Cluster::start_pool(3)).await;
}

async fn remote_id_between_participants(cluster: Cluster) {
    let n = cluster.dss_urls.len();
    let (alpha_dss, bravo_dss, own_dss) = (&cluster.dss_urls[0], &cluster.dss_urls[1 % n], &cluster.dss_urls[2 % n]);
    let mut scopes = FULL.to_vec();
    scopes.push("rid.service_provider");
    let alpha = cluster.participant_on(alpha_dss, "alpha", &scopes, &cluster.dir.path().join("alpha"), &[]);
    let mut dp_scopes = FULL.to_vec();
    dp_scopes.push("rid.display_provider");
    let bravo = cluster.participant_on(bravo_dss, "bravo", &dp_scopes, &cluster.dir.path().join("bravo"), &[]);
    let dp = cluster.token("bravo", "rid.display_provider").await;

    // bravo subscribes (as a display provider) to the area in the DSS, at its own base URL.
    let t = |s: i64| json!({"value": (chrono::Utc::now() + chrono::Duration::seconds(s)).to_rfc3339(), "format": "RFC3339"});
    let area = json!({"volume": {"outline_circle": {"center": {"lat": 47.0, "lng": 8.0}, "radius": {"value": 3000, "units": "M"}},
                                 "altitude_lower": {"value": 0, "reference": "W84", "units": "M"},
                                 "altitude_upper": {"value": 400, "reference": "W84", "units": "M"}},
                      "time_start": t(0), "time_end": t(3600)});
    let sub_id = crate::harness::new_id();
    let (s, sub) = call(
        "PUT",
        &format!("{}/rid/v2/dss/subscriptions/{sub_id}", own_dss),
        Some(&dp),
        Some(&json!({"extents": area, "uss_base_url": format!("{}/rid/v2", bravo.url)})),
    )
    .await;
    assert_eq!(s, 200, "{sub}");

    let (s, planned) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.0, 8.0, 300.0, 0.0, 120.0, 0, 1800))).await;
    assert_eq!(s, 200, "{planned}");
    let id = planned["operational_intent_id"].as_str().expect("id").to_owned();
    let (s, _) = op(&alpha, "POST", &format!("/operator/intents/{id}/activate"), None).await;
    assert_eq!(s, 200);
    let (s, _) = post_positions(&alpha, &alpha.token, &id, &json!([position(0.0, -0.5), position(30.0, 0.0)])).await;
    assert_eq!(s, 200);

    // The ISA is in the DSS, owned by alpha, pointing at alpha's Remote ID base URL.
    let search =
        format!("{}/rid/v2/dss/identification_service_areas?area=46.99,7.99,46.99,8.01,47.01,8.01,47.01,7.99", own_dss);
    let isa = wait_for("alpha's ISA in the DSS", 10, async || {
        let (s, found) = call("GET", &search, Some(&dp), None).await;
        assert_eq!(s, 200, "{found}");
        found["service_areas"].as_array().and_then(|l| l.iter().find(|a| a["owner"] == "alpha").cloned())
    })
    .await;
    assert_eq!(isa["uss_base_url"], format!("{}/rid/v2", alpha.url), "{isa}");

    // bravo was told of it.
    wait_for("bravo notified of the ISA", 10, async || {
        let (_, st) = op(&bravo, "GET", "/operator/status", None).await;
        st["notifications"].as_array().and_then(|l| {
            l.iter()
                .find(|n| {
                    n["kind"] == "identification_service_area" && n["entity_id"] == isa["id"] && n["from"] == "alpha"
                })
                .cloned()
        })
    })
    .await;

    // The delivery to bravo is recorded on alpha's flight.
    wait_for("the ISA's delivery recorded", 10, async || {
        let (_, st) = op(&alpha, "GET", "/operator/status", None).await;
        st["flights"][&id]["isa_notified"].as_array().and_then(|l| {
            l.iter()
                .find(|d| {
                    d["acknowledged"] == true && d["uss_base_url"].as_str().is_some_and(|u| u.starts_with(&bravo.url))
                })
                .cloned()
        })
    })
    .await;

    // A display provider reads the flight where the ISA says.
    let flights =
        format!("{}/rid/v2/uss/flights?view=46.995,7.995,47.005,8.005&recent_positions_duration=60", alpha.url);
    let (s, got) = call("GET", &flights, Some(&dp), None).await;
    assert_eq!(s, 200, "{got}");
    let f = got["flights"].as_array().and_then(|l| l.iter().find(|f| f["id"] == id.as_str()).cloned());
    let f = f.unwrap_or_else(|| panic!("the flight is served: {got}"));
    let p = &f["current_state"]["position"];
    assert!((p["lng"].as_f64().unwrap_or_default() - (8.0 + 30.0 / M_PER_DEG_LNG)).abs() < 1e-9, "{f}");
    assert_eq!((p["alt"].as_f64(), p["accuracy_h"].as_str()), (Some(60.0), Some("HA10m")), "{f}");
    assert_eq!(f["recent_positions"].as_array().map(Vec::len), Some(2), "{f}");
    let (s, d) = call("GET", &format!("{}/rid/v2/uss/flights/{id}/details", alpha.url), Some(&dp), None).await;
    assert_eq!((s, d["details"]["id"].as_str()), (200, Some(id.as_str())), "{d}");
    // Elsewhere: nothing. Too wide: 413. Unreadable: 400. Not a display provider: 403.
    let (s, none) =
        call("GET", &format!("{}/rid/v2/uss/flights?view=46.0,7.0,46.01,7.01", alpha.url), Some(&dp), None).await;
    assert_eq!((s, none["flights"].as_array().map(Vec::len)), (200, Some(0)), "{none}");
    let (s, _) =
        call("GET", &format!("{}/rid/v2/uss/flights?view=46.9,7.9,47.1,8.1", alpha.url), Some(&dp), None).await;
    assert_eq!(s, 413);
    let (s, _) = call("GET", &format!("{}/rid/v2/uss/flights?view=north", alpha.url), Some(&dp), None).await;
    assert_eq!(s, 400);
    let peer = cluster.token("bravo", "utm.strategic_coordination").await;
    let (s, _) = call("GET", &flights, Some(&peer), None).await;
    assert_eq!(s, 403);
    // A participant that is not a service provider has no flights to serve.
    let (s, _) = call("GET", &flights.replace(&alpha.url, &bravo.url), Some(&dp), None).await;
    assert_eq!(s, 404);
    // Only the ISA's owner may notify of it.
    let forged = json!({"service_area": isa, "subscriptions": [{"subscription_id": sub_id, "notification_index": 9}]});
    let mallory = cluster.token("mallory", "rid.service_provider").await;
    let (s, _) = call(
        "POST",
        &format!("{}/rid/v2/uss/identification_service_areas/{}", bravo.url, isa["id"].as_str().unwrap_or_default()),
        Some(&mallory),
        Some(&forged),
    )
    .await;
    assert_eq!(s, 403);
    // Nor may it claim alpha's ISA as its own: the DSS says whose it is.
    let mut claimed = forged.clone();
    claimed["service_area"]["owner"] = json!("mallory");
    claimed["service_area"]["uss_base_url"] = json!("http://127.0.0.1:9/rid/v2");
    let notify_url =
        format!("{}/rid/v2/uss/identification_service_areas/{}", bravo.url, isa["id"].as_str().unwrap_or_default());
    let (s, body) = call("POST", &notify_url, Some(&mallory), Some(&claimed)).await;
    assert_eq!(s, 403, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("the DSS records `alpha`")), "{body}");

    // bravo as a display provider: its operator sees alpha's flight, and each new position
    // within about a second.
    let view = "46.995,7.995,47.005,8.005";
    let shown = wait_for("bravo's display shows alpha's flight", 10, async || {
        let (s, d) = op(&bravo, "GET", &format!("/operator/rid/flights?view={view}"), None).await;
        assert_eq!(s, 200, "{d}");
        d["flights"]
            .as_array()
            .and_then(|l| l.iter().find(|f| f["id"] == id.as_str() && f["provider"] == "alpha").cloned())
    })
    .await;
    assert_eq!(shown["alt_m"].as_f64(), Some(60.0), "{shown}");
    for east in [60.0, 90.0] {
        let (s, _) = post_positions(&alpha, &alpha.token, &id, &position(east, 0.0)).await;
        assert_eq!(s, 200);
        let posted = Instant::now();
        wait_for("the new position on bravo's display", 5, async || {
            let (_, d) = op(&bravo, "GET", &format!("/operator/rid/flights?view={view}"), None).await;
            let f = d["flights"].as_array().and_then(|l| l.iter().find(|f| f["id"] == id.as_str()).cloned())?;
            ((f["lng"].as_f64().unwrap_or_default() - (8.0 + east / M_PER_DEG_LNG)).abs() < 1e-9).then_some(())
        })
        .await;
        eprintln!("position to bravo's display: {:?}", posted.elapsed());
    }
    // A wide view shows clusters, never flights; a view too wide is refused.
    let (s, wide) = op(&bravo, "GET", "/operator/rid/flights?view=46.98,7.98,47.02,8.02", None).await;
    assert_eq!(s, 200, "{wide}");
    assert_eq!(wide["flights"], json!([]), "{wide}");
    let counted: u64 = wide["clusters"].as_array().expect("clusters").iter().filter_map(|c| c["count"].as_u64()).sum();
    assert_eq!(counted, 1, "{wide}");
    let (s, _) = op(&bravo, "GET", "/operator/rid/flights?view=46.9,7.9,47.1,8.1", None).await;
    assert_eq!(s, 413);
    let (s, _) = op(&bravo, "GET", "/operator/rid/flights?view=1,2,3", None).await;
    assert_eq!(s, 400);

    // Two more service providers appear in the area: one hangs, one serves garbage. bravo's
    // display still answers promptly with alpha's flight, and says what is wrong with them.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hang_url = format!("http://{}/rid/v2", hang.local_addr().expect("addr"));
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = hang.accept().await {
            open.push(socket);
        }
    });
    let junk = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let junk_url = format!("http://{}/rid/v2", junk.local_addr().expect("addr"));
    let served = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = junk.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{garbage!")
                .await;
        }
    });
    for (who, url) in [("hangman", &hang_url), ("junkman", &junk_url)] {
        let sp = cluster.token(who, "rid.service_provider").await;
        let isa_id = crate::harness::new_id();
        let (s, made) = call(
            "PUT",
            &format!("{}/rid/v2/dss/identification_service_areas/{isa_id}", own_dss),
            Some(&sp),
            Some(&json!({"extents": area, "uss_base_url": url})),
        )
        .await;
        assert_eq!(s, 200, "{made}");
        // As the standard asks of them, they tell the subscribers the DSS named (bravo).
        let subs: Vec<Value> = made["subscribers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|x| x["url"].as_str().is_some_and(|u| u.starts_with(&bravo.url)))
            .flat_map(|x| x["subscriptions"].as_array().cloned().unwrap_or_default())
            .collect();
        assert!(!subs.is_empty(), "the DSS names bravo's subscriptions: {made}");
        let (s, _) = call(
            "POST",
            &format!("{}/rid/v2/uss/identification_service_areas/{isa_id}", bravo.url),
            Some(&sp),
            Some(&json!({"service_area": made["service_area"], "subscriptions": subs, "extents": area})),
        )
        .await;
        assert_eq!(s, 204);
    }
    let asked = Instant::now();
    let (s, d) = op(&bravo, "GET", &format!("/operator/rid/flights?view={view}"), None).await;
    assert_eq!(s, 200, "{d}");
    assert!(asked.elapsed() < Duration::from_secs(4), "a hanging provider held the display for {:?}", asked.elapsed());
    assert!(d["flights"].as_array().is_some_and(|l| l.iter().any(|f| f["id"] == id.as_str())), "{d}");
    let status_of =
        |who: &str| d["providers"].as_array().and_then(|l| l.iter().find(|p| p["provider"] == who).cloned());
    assert!(status_of("hangman").is_some_and(|p| p["error"].is_string()), "{d}");
    let junk_status = wait_for("the garbage provider reported", 10, async || {
        let (_, d) = op(&bravo, "GET", &format!("/operator/rid/flights?view={view}"), None).await;
        d["providers"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["provider"] == "junkman").cloned())
            .filter(|p| p["error"].as_str().is_some_and(|e| e.contains("cannot be read")))
    })
    .await;
    assert_eq!(junk_status["flights"], 0);
    held.abort();
    served.abort();

    // Ended: the ISA leaves the DSS and bravo is told of the deletion.
    let (s, _) = op(&alpha, "POST", &format!("/operator/intents/{id}/end"), None).await;
    assert_eq!(s, 200);
    wait_for("the ISA deleted and bravo told", 10, async || {
        let (_, found) = call("GET", &search, Some(&dp), None).await;
        let gone = found["service_areas"].as_array().is_some_and(|l| l.iter().all(|a| a["id"] != isa["id"]));
        let (_, st) = op(&bravo, "GET", "/operator/status", None).await;
        let told = st["notifications"]
            .as_array()
            .is_some_and(|l| l.iter().any(|n| n["entity_id"] == isa["id"] && n["state"] == "deleted"));
        (gone && told).then_some(())
    })
    .await;
}

/// InterUSS's Remote ID test interfaces: flights injected into alpha (a service provider) are
/// announced and served; bravo (a display provider) observes them and their details.
#[tokio::test]
async fn injected_remote_id_flights_are_observed_through_another_participant() {
    let cluster = Cluster::start();
    let testing = ["--rid-testing", "--rid-testing-subject", "qualifier"];
    let mut scopes = FULL.to_vec();
    scopes.extend(["rid.service_provider", "rid.display_provider"]);
    let alpha = cluster.participant_with("alpha", &scopes, &cluster.dir.path().join("alpha"), &testing);
    let bravo = cluster.participant_with("bravo", &scopes, &cluster.dir.path().join("bravo"), &testing);
    let inject = cluster.token("qualifier", "rid.inject_test_data").await;
    let observe = cluster.token("qualifier", "dss.read.identification_service_areas").await;

    let at = |s: f64| {
        (chrono::Utc::now() + chrono::Duration::milliseconds((s * 1000.0) as i64))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let telemetry: Vec<Value> = (0..12)
        .map(|i| {
            json!({"timestamp": at(i as f64 - 2.0), "timestamp_accuracy": 0.1, "operational_status": "Airborne",
                   "position": {"lat": 47.0, "lng": 8.0 + 0.0002 * i as f64, "alt": 100.0, "accuracy_h": "HA10m", "accuracy_v": "VA3m"},
                   "track": 90.0, "speed": 15.0, "speed_accuracy": "SA1mps", "vertical_speed": 0.0})
        })
        .collect();
    let flight = json!({"injection_id": crate::harness::new_id(), "aircraft_type": "Helicopter", "telemetry": telemetry,
        "details_responses": [{"effective_after": at(-60.0), "details": {"id": "chosen-by-the-driver", "operator_id": "OP-12345",
            "operator_location": {"lat": 47.001, "lng": 8.001}, "uas_id": {"serial_number": "SN-0042"}}}]});
    let test_id = crate::harness::new_id();
    let url = format!("{}/ridsp/injection/tests/{test_id}", alpha.url);
    // Only the listed test driver, with the scope.
    let (s, _) = call(
        "PUT",
        &url,
        Some(&cluster.token("mallory", "rid.inject_test_data").await),
        Some(&json!({"requested_flights": [flight]})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = call("PUT", &url, Some(&observe), Some(&json!({"requested_flights": [flight]}))).await;
    assert_eq!(s, 403);
    let (s, bad) = call("PUT", &url, Some(&inject), Some(&json!({"requested_flights": [{"injection_id": "x", "telemetry": [{"timestamp": "soon"}], "details_responses": []}]}))).await;
    assert_eq!(s, 400, "{bad}");
    let (s, made) = call("PUT", &url, Some(&inject), Some(&json!({"requested_flights": [flight]}))).await;
    assert_eq!(s, 200, "{made}");
    let version = made["version"].as_str().expect("version").to_owned();
    assert_eq!(made["injected_flights"][0]["injection_id"], flight["injection_id"]);
    let (s, _) = call("PUT", &url, Some(&inject), Some(&json!({"requested_flights": [flight]}))).await;
    assert_eq!(s, 409, "a test is created once");
    let (s, n) = call(
        "GET",
        &format!("{}/ridsp/injection/user_notifications?after={}", alpha.url, at(-60.0).replace('+', "%2B")),
        Some(&inject),
        None,
    )
    .await;
    assert_eq!((s, n["user_notifications"].as_array().map(Vec::len)), (200, Some(0)), "{n}");

    // bravo's display shows the flight where it is now, then further on as positions are released.
    let view = format!("{}/riddp/observation/display_data?view=46.998,7.998,47.002,8.004", bravo.url);
    let first = wait_for("bravo observes the injected flight", 10, async || {
        let (s, d) = call("GET", &view, Some(&observe), None).await;
        assert_eq!(s, 200, "{d}");
        d["flights"].as_array().and_then(|l| l.first().cloned())
    })
    .await;
    let id = first["id"].as_str().expect("id").to_owned();
    let lng0 = first["most_recent_position"]["lng"].as_f64().expect("lng");
    assert!(lng0 > 7.9999 && lng0 < 8.0012, "a released position: {first}");
    wait_for("later positions released", 10, async || {
        let (_, d) = call("GET", &view, Some(&observe), None).await;
        let lng = d["flights"][0]["most_recent_position"]["lng"].as_f64()?;
        (lng > lng0 + 0.0003).then_some(())
    })
    .await;
    let (s, details) =
        call("GET", &format!("{}/riddp/observation/display_data/{id}", bravo.url), Some(&observe), None).await;
    assert_eq!(s, 200, "{details}");
    assert_eq!(details["operator"]["id"], "OP-12345", "{details}");
    assert_eq!(details["operator"]["location"]["lat"], 47.001, "{details}");
    assert_eq!(details["uas"]["id"], "SN-0042", "{details}");
    let (s, _) = call("GET", &format!("{}/riddp/observation/display_data/nope", bravo.url), Some(&observe), None).await;
    assert_eq!(s, 404);
    // A wide view: clusters only.
    let (s, wide) = call(
        "GET",
        &format!("{}/riddp/observation/display_data?view=46.98,7.98,47.02,8.02", bravo.url),
        Some(&observe),
        None,
    )
    .await;
    assert_eq!(s, 200, "{wide}");
    assert_eq!(wide["flights"], json!([]), "{wide}");
    assert_eq!(wide["clusters"][0]["number_of_flights"], 1, "{wide}");
    assert!(wide["clusters"][0]["area_sqm"].as_f64().is_some_and(|a| a > 0.0), "{wide}");

    // Deleted: at its version only; then its ISA leaves the DSS.
    let (s, _) = call("DELETE", &format!("{url}/wrong"), Some(&inject), None).await;
    assert_eq!(s, 409);
    let (s, gone) = call("DELETE", &format!("{url}/{version}"), Some(&inject), None).await;
    assert_eq!(s, 200, "{gone}");
    assert_eq!(gone["injected_flights"][0]["injection_id"], flight["injection_id"]);
    let dp = cluster.token("bravo", "rid.display_provider").await;
    let search = format!(
        "{}/rid/v2/dss/identification_service_areas?area=46.99,7.99,46.99,8.01,47.01,8.01,47.01,7.99",
        cluster.dss.url
    );
    wait_for("the test's ISA deleted", 10, async || {
        let (_, found) = call("GET", &search, Some(&dp), None).await;
        found["service_areas"].as_array().is_some_and(|l| l.iter().all(|a| a["owner"] != "alpha")).then_some(())
    })
    .await;
    // A participant without --rid-testing has no such interface.
    let plain = cluster.participant("charlie", &scopes);
    let (s, _) = call(
        "GET",
        &format!("{}/riddp/observation/display_data?view=46.998,7.998,47.002,8.004", plain.url),
        Some(&observe),
        None,
    )
    .await;
    assert_eq!(s, 404);
}
