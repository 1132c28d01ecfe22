//! The flight_planning v1 interface of two participants, driven as the qualification tools
//! drive it: only through that interface and the DSS's wire protocol.

use serde_json::{json, Value};

use crate::uss::{Cluster, Participant, FULL};

pub(crate) const PLAN: &str = "interuss.flight_planning.plan";
const DIRECT: &str = "interuss.flight_planning.direct_automated_test";

async fn fp(uss: &Participant, tok: Option<&str>, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    fp_at(&uss.url, tok, method, path, body).await
}

/// A flight_planning call to the USS at `base`.
pub(crate) async fn fp_at(
    base: &str,
    tok: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let c = crate::harness::client();
    let mut req = c.request(
        reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
        format!("{base}/flight_planning/v1{path}"),
    );
    if let Some(t) = tok {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.expect("flight_planning call");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

pub(crate) fn time(offset_s: i64) -> Value {
    let t = chrono::Utc::now() + chrono::Duration::seconds(offset_s);
    json!({"value": t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "format": "RFC3339"})
}

/// A circle of `r` m at (47.5, 8.5) + `east` degrees, 0-120 m, from `t0` to `t1` s from now.
pub(crate) fn area(east: f64, r: f64, t0: i64, t1: i64) -> Value {
    json!([{"volume": {"outline_circle": {"center": {"lat": 47.5, "lng": 8.5 + east}, "radius": {"value": r, "units": "M"}},
             "altitude_lower": {"value": 0, "reference": "W84", "units": "M"},
             "altitude_upper": {"value": 120, "reference": "W84", "units": "M"}},
            "time_start": time(t0), "time_end": time(t1)}])
}

pub(crate) fn upsert(usage: &str, uas: &str, area: Value, priority: i32, style: &str) -> Value {
    json!({"flight_plan": {"basic_information": {"usage_state": usage, "uas_state": uas, "area": area},
                           "astm_f3548_21": {"priority": priority}},
           "execution_style": style, "request_id": uuid::Uuid::new_v4().to_string()})
}

async fn dss_intents(cluster: &Cluster, manager: &str) -> Vec<Value> {
    dss_intents_in(cluster, manager, area(0.0, 3000.0, -30, 7200)).await
}

/// References of `manager` the DSS holds in the first volume of `area`.
async fn dss_intents_in(cluster: &Cluster, manager: &str, area: Value) -> Vec<Value> {
    let tok = cluster.token("observer", "utm.strategic_coordination").await;
    let body = json!({"area_of_interest": area[0].clone()});
    let (s, r) = crate::harness::call(
        "POST",
        &format!("{}/dss/v1/operational_intent_references/query", cluster.dss.url),
        Some(&tok),
        Some(&body),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    r["operational_intent_references"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|i| i["manager"] == manager)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qualification_interface_plans_activates_conflicts_and_clears() {
    let cluster = Cluster::start();
    let off = cluster.participant("plain", &FULL);
    let alpha = cluster.participant_with(
        "alpha",
        &FULL,
        &cluster.dir.path().join("alpha"),
        &["--flight-planning", "--flight-planning-subject", "qualifier"],
    );
    let beta = cluster.participant_with(
        "beta",
        &FULL,
        &cluster.dir.path().join("beta"),
        &["--flight-planning", "--flight-planning-subject", "qualifier"],
    );
    let direct = cluster.token("qualifier", DIRECT).await;
    let plan = cluster.token("qualifier", PLAN).await;
    let peer = cluster.token("gamma", "utm.strategic_coordination").await;

    // Off by default; on, the interface's own scopes are required.
    let (s, _) = fp(&off, Some(&direct), "GET", "/status", None).await;
    assert_eq!(s, 404, "the interface is off without --flight-planning");
    let (s, r) = fp(&alpha, Some(&direct), "GET", "/status", None).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!((r["status"].as_str(), r["api_version"].as_str()), (Some("Ready"), Some("v0.5.0")), "{r}");
    let (s, _) = fp(&alpha, None, "GET", "/status", None).await;
    assert_eq!(s, 401);
    let (s, _) = fp(&alpha, Some(&peer), "GET", "/status", None).await;
    assert_eq!(s, 403, "a peer's utm.* token never suffices");
    let a_id = uuid::Uuid::new_v4().to_string();
    let (s, _) = fp(
        &alpha,
        Some(&direct),
        "PUT",
        &format!("/flight_plans/{a_id}"),
        Some(&upsert("Planned", "Nominal", area(0.0, 200.0, -5, 1800), 0, "IfAllowed")),
    )
    .await;
    assert_eq!(s, 403, "planning needs interuss.flight_planning.plan");

    // Alpha plans (a start a few seconds in the past is taken as now), then activates.
    let body = upsert("Planned", "NotSpecified", area(0.0, 200.0, -5, 1800), 0, "IfAllowed");
    let (s, r) = fp(&alpha, Some(&plan), "PUT", &format!("/flight_plans/{a_id}"), Some(&body)).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["planning_result"].as_str(), r["flight_plan_status"].as_str()),
        (Some("Completed"), Some("Planned")),
        "{r}"
    );
    let (s, again) = fp(&alpha, Some(&plan), "PUT", &format!("/flight_plans/{a_id}"), Some(&body)).await;
    assert_eq!((s, &again), (200, &r), "a repeated request_id gets the first answer");
    let in_dss = dss_intents(&cluster, "alpha").await;
    assert_eq!(in_dss.len(), 1, "{in_dss:?}");
    assert_eq!(in_dss[0]["state"], "Accepted");
    let (s, r) = fp(
        &alpha,
        Some(&plan),
        "PUT",
        &format!("/flight_plans/{a_id}"),
        Some(&upsert("InUse", "Nominal", area(0.0, 200.0, -5, 1800), 0, "IfAllowed")),
    )
    .await;
    assert_eq!(
        (s, r["planning_result"].as_str(), r["flight_plan_status"].as_str()),
        (200, Some("Completed"), Some("OkToFly")),
        "{r}"
    );
    let activated = dss_intents(&cluster, "alpha").await;
    assert_eq!(activated[0]["state"], "Activated");
    // Telemetry, as the standard allows: 409 for a nominal operation, 404 for one not ours.
    let monitor = cluster.token("gamma", "utm.conformance_monitoring_sa").await;
    let telemetry = |id: &str| format!("{}/uss/v1/operational_intents/{id}/telemetry", alpha.url);
    let a_intent = activated[0]["id"].as_str().expect("id").to_owned();
    let (s, r) = crate::harness::call("GET", &telemetry(&a_intent), Some(&monitor), None).await;
    crate::harness::assert_error_shape(s, &r, 409, "telemetry of an Activated operation");
    let (s, r) = crate::harness::call("GET", &telemetry(&uuid::Uuid::new_v4().to_string()), Some(&monitor), None).await;
    crate::harness::assert_error_shape(s, &r, 404, "telemetry of an unknown operation");
    let (s, r) = crate::harness::call("GET", &telemetry(&a_intent), Some(&peer), None).await;
    crate::harness::assert_error_shape(s, &r, 403, "telemetry without utm.conformance_monitoring_sa");

    // Beta at the same priority over alpha's flight: rejected, with the reason.
    let b_id = uuid::Uuid::new_v4().to_string();
    let (s, r) = fp(
        &beta,
        Some(&plan),
        "PUT",
        &format!("/flight_plans/{b_id}"),
        Some(&upsert("Planned", "Nominal", area(0.001, 200.0, 60, 1200), 0, "IfAllowed")),
    )
    .await;
    assert_eq!(
        (s, r["planning_result"].as_str(), r["flight_plan_status"].as_str()),
        (200, Some("Rejected"), Some("NotPlanned")),
        "{r}"
    );
    assert!(r["notes"].as_str().is_some_and(|n| n.contains("alpha")), "the reason names whom it conflicts with: {r}");
    assert!(dss_intents(&cluster, "beta").await.is_empty());
    // Hypothetical is not supported; a priority beyond the participant's is not either.
    let (_, r) = fp(
        &beta,
        Some(&plan),
        "PUT",
        &format!("/flight_plans/{b_id}"),
        Some(&upsert("Planned", "Nominal", area(0.05, 200.0, 60, 1200), 0, "Hypothetical")),
    )
    .await;
    assert_eq!(r["planning_result"], "NotSupported", "{r}");
    let (_, r) = fp(
        &beta,
        Some(&plan),
        "PUT",
        &format!("/flight_plans/{b_id}"),
        Some(&upsert("Planned", "Nominal", area(0.05, 200.0, 60, 1200), 1000, "IfAllowed")),
    )
    .await;
    assert_eq!(r["planning_result"], "NotSupported", "{r}");

    // At a higher priority beta may plan over alpha; alpha's user is told of the conflict.
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    let (s, r) = fp(
        &beta,
        Some(&plan),
        "PUT",
        &format!("/flight_plans/{b_id}"),
        Some(&upsert("Planned", "Nominal", area(0.001, 200.0, 60, 1200), 10, "IfAllowed")),
    )
    .await;
    assert_eq!((s, r["planning_result"].as_str()), (200, Some("Completed")), "{r}");
    let after = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut told = Value::Null;
    for _ in 0..50 {
        let (s, r) = fp(&alpha, Some(&plan), "GET", &format!("/user_notifications?after={after}"), None).await;
        assert_eq!(s, 200, "{r}");
        if r["user_notifications"].as_array().is_some_and(|l| l.iter().any(|n| n["conflicts"] == "Single")) {
            told = r;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!told.is_null(), "alpha's user must be told that beta's higher-priority flight conflicts");
    assert!(told["user_notifications"][0]["observed_at"]["value"].is_string(), "{told}");
    let (s, _) = fp(&alpha, Some(&plan), "GET", "/user_notifications", None).await;
    assert_eq!(s, 400, "`after` is required");

    // Off-nominal: alpha reports its UAS off nominal.
    let (_, r) = fp(
        &alpha,
        Some(&plan),
        "PUT",
        &format!("/flight_plans/{a_id}"),
        Some(&upsert("InUse", "OffNominal", area(0.0, 200.0, -5, 1800), 0, "InReality")),
    )
    .await;
    assert_eq!(
        (r["planning_result"].as_str(), r["flight_plan_status"].as_str()),
        (Some("Completed"), Some("OffNominal")),
        "{r}"
    );
    assert_eq!(dss_intents(&cluster, "alpha").await[0]["state"], "Nonconforming");

    // The test director clears alpha's area and closes beta's flight.
    let clear = json!({"request_id": "clear-1", "extent": area(0.0, 2000.0, -60, 7200)[0].clone()});
    let (s, r) = fp(&alpha, Some(&direct), "POST", "/clear_area_requests", Some(&clear)).await;
    assert_eq!((s, r["outcome"]["success"].as_bool()), (200, Some(true)), "{r}");
    assert!(dss_intents(&cluster, "alpha").await.is_empty(), "nothing of alpha's is left in the area");
    let (s, r) = fp(&beta, Some(&direct), "DELETE", &format!("/flight_plans/{b_id}"), None).await;
    assert_eq!((s, r["flight_plan_status"].as_str()), (200, Some("Closed")), "{r}");
    assert!(dss_intents(&cluster, "beta").await.is_empty());
    let (s, _) = fp(&beta, Some(&direct), "DELETE", &format!("/flight_plans/{b_id}"), None).await;
    assert_eq!(s, 404, "already closed");
    let (s, _) = fp(
        &beta,
        Some(&plan),
        "PUT",
        "/flight_plans/not-a-uuid",
        Some(&upsert("Planned", "Nominal", area(0.0, 100.0, 60, 600), 0, "IfAllowed")),
    )
    .await;
    assert_eq!(s, 400);
}

/// References of `manager` the DSS holds around the test area at any time from an hour ago to
/// 40 days ahead.
async fn dss_intents_any_time(cluster: &Cluster, manager: &str) -> Vec<Value> {
    dss_intents_in(cluster, manager, area(0.0, 5000.0, -3600, 40 * 86_400)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_flights_are_rejected_plans_come_back_as_planned_and_the_planner_deletes() {
    let cluster = Cluster::start();
    let alpha = cluster.participant_with(
        "alpha",
        &FULL,
        &cluster.dir.path().join("alpha"),
        &["--flight-planning", "--flight-planning-subject", "qualifier"],
    );
    let plan = cluster.token("qualifier", PLAN).await;
    let day = 86_400;

    // Invalid by their times alone: each is Rejected with the reason, and nothing reaches the DSS.
    let mut two = area(0.0, 100.0, -600, -60).as_array().expect("area").clone();
    two.extend(area(0.0, 100.0, 60, 600).as_array().expect("area").clone());
    for (what, a, needle) in [
        ("beyond the 30-day horizon", area(0.0, 100.0, 31 * day, 31 * day + 600), "horizon"),
        ("already ended", area(0.0, 100.0, -600, -60), "ended"),
        ("one volume ended, another current", Value::Array(two), "volume 0 has already ended"),
        ("longer than a day", area(0.0, 100.0, 60, 60 + 25 * 3600), "at most 24 hours"),
        ("no volumes", json!([]), "at least one volume"),
    ] {
        let id = uuid::Uuid::new_v4().to_string();
        let (s, r) = fp(
            &alpha,
            Some(&plan),
            "PUT",
            &format!("/flight_plans/{id}"),
            Some(&upsert("Planned", "Nominal", a, 0, "IfAllowed")),
        )
        .await;
        assert_eq!(
            (s, r["planning_result"].as_str(), r["flight_plan_status"].as_str()),
            (200, Some("Rejected"), Some("NotPlanned")),
            "{what}: {r}"
        );
        assert!(r["notes"].as_str().is_some_and(|n| n.contains(needle)), "{what}: the note says why: {r}");
    }
    // A plan that is not in use cannot be off-nominal (an Accepted intent has no off-nominal
    // volumes, OPIN0015): rejected, not planned as nominal.
    for uas in ["OffNominal", "Contingent"] {
        let id = uuid::Uuid::new_v4().to_string();
        let body = upsert("Planned", uas, area(0.0, 100.0, 60, 600), 0, "IfAllowed");
        let (s, r) = fp(&alpha, Some(&plan), "PUT", &format!("/flight_plans/{id}"), Some(&body)).await;
        assert_eq!((s, r["planning_result"].as_str()), (200, Some("Rejected")), "Planned + {uas}: {r}");
        assert!(r["notes"].as_str().is_some_and(|n| n.contains("OPIN0015")), "{r}");
    }
    assert!(dss_intents_any_time(&cluster, "alpha").await.is_empty(), "nothing was created in the DSS");
    // The operator API refuses the same plan with a 400 that says why.
    let far = crate::uss::flight(47.5, 8.5, 100.0, 0.0, 120.0, 31 * day, 31 * day + 600);
    let (s, r) = crate::uss::op(&alpha, "POST", "/operator/plan", Some(&far)).await;
    crate::harness::assert_error_shape(s, &r, 400, "a plan beyond the horizon");
    assert!(r["message"].as_str().is_some_and(|m| m.contains("horizon")), "{r}");

    // A start in the past is planned from now, and the answer says so in `as_planned`, exactly
    // as peers are served the details.
    let fp_id = uuid::Uuid::new_v4().to_string();
    let body = upsert("Planned", "Nominal", area(0.0, 200.0, -30, 1800), 0, "IfAllowed");
    let (s, r) = fp(&alpha, Some(&plan), "PUT", &format!("/flight_plans/{fp_id}"), Some(&body)).await;
    assert_eq!((s, r["planning_result"].as_str()), (200, Some("Completed")), "{r}");
    let planned = &r["as_planned"];
    assert_eq!(planned["basic_information"]["usage_state"], "Planned", "{r}");
    assert_eq!(planned["astm_f3548_21"]["priority"], 0, "{r}");
    let planned_area = planned["basic_information"]["area"].clone();
    assert_ne!(planned_area[0]["time_start"], body["flight_plan"]["basic_information"]["area"][0]["time_start"]);
    let intents = dss_intents_any_time(&cluster, "alpha").await;
    assert_eq!(intents.len(), 1, "{intents:?}");
    let peer = cluster.token("gamma", "utm.strategic_coordination").await;
    let (s, details) = crate::harness::call(
        "GET",
        &format!("{}/uss/v1/operational_intents/{}", alpha.url, intents[0]["id"].as_str().expect("id")),
        Some(&peer),
        None,
    )
    .await;
    assert_eq!(s, 200, "{details}");
    assert_eq!(planned_area, details["operational_intent"]["details"]["volumes"], "as_planned is what peers see");

    // Deleting the flight plan needs only the planning scope.
    let (s, r) = fp(&alpha, Some(&plan), "DELETE", &format!("/flight_plans/{fp_id}"), None).await;
    assert_eq!((s, r["flight_plan_status"].as_str()), (200, Some("Closed")), "{r}");
    assert!(dss_intents_any_time(&cluster, "alpha").await.is_empty());
}
