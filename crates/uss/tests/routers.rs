//! The participant's two routers in process: which routes each has, and how failures map to
//! statuses and `ErrorResponse` bodies (no network: nothing here reaches the DSS or a peer).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

const DEV_PUBLIC: &str = include_str!("../../../src/keys/dev-public.pem");
const DEV_PRIVATE: &str = include_str!("../../../src/keys/dev-private.pem");

fn token(sub: &str, scope: &str) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let (key, alg) = match EncodingKey::from_ec_pem(DEV_PRIVATE.as_bytes()) {
        Ok(k) => (k, Algorithm::ES256),
        Err(_) => (EncodingKey::from_rsa_pem(DEV_PRIVATE.as_bytes()).expect("dev key"), Algorithm::RS256),
    };
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({"sub": sub, "aud": "localhost", "scope": scope, "exp": now + 600, "iat": now});
    jsonwebtoken::encode(&Header::new(alg), &claims, &key).expect("sign")
}

fn participant(dir: &std::path::Path) -> Arc<uss::Uss> {
    participant_with(dir, vec![])
}

fn participant_with(dir: &std::path::Path, telemetry_subjects: Vec<String>) -> Arc<uss::Uss> {
    let verifier = || {
        auth::Verifier::new(&[("dev".into(), DEV_PUBLIC.as_bytes().to_vec())], vec!["localhost".into()])
            .expect("verifier")
    };
    let tokens = uss::tokens::TokenSource::new(
        reqwest::Client::new(),
        "http://127.0.0.1:9/token".into(),
        "bravo".into(),
        None,
        vec!["utm.strategic_coordination".into()],
    );
    let config = uss::UssConfig {
        base_url: "http://127.0.0.1:9".into(),
        dss_url: "http://127.0.0.1:9".into(),
        scopes: vec!["utm.strategic_coordination".into()],
        peer_timeout: Duration::from_secs(1),
        max_priority: 10,
        operator_subjects: vec![],
        telemetry_subjects,
        notify_retry_for: Duration::ZERO,
        crash_at: None,
        flight_planning: true,
        flight_planning_subjects: vec!["qualifier".into()],
        rid_testing: false,
        rid_testing_subjects: vec![],
        slow_answers: None,
        monitor: uss::telemetry::MonitorConfig::default(),
        allow_http_base_urls: true,
        trust: client::tls::Trust::default(),
    };
    let verifiers = uss::Verifiers { peer: verifier(), operator: verifier(), flight_planning: None };
    uss::Uss::open(config, tokens, verifiers, dir).expect("open")
}

async fn send(app: axum::Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = app.oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

fn post(uri: &str, tok: Option<&str>, content_type: &str, body: &str) -> Request<Body> {
    let mut b = Request::post(uri).header("content-type", content_type);
    if let Some(t) = tok {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::from(body.to_owned())).expect("request")
}

fn assert_error(got: (StatusCode, serde_json::Value), status: StatusCode, needle: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    let message = got.1["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "`{message}` should mention `{needle}`");
}

const FLIGHT: &str = r#"{"altitude_reference": "W84", "volumes": [{"footprint": {"type": "Circle", "center": [8.0, 47.0], "radius_m": 100},
    "altitude_lower_m": 0, "altitude_upper_m": 100, "start": "+60", "end": "+600"}], "priority": 0}"#;

#[tokio::test]
async fn the_operator_router_requires_the_operator_scope_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = uss::operator_app(participant(dir.path()), std::sync::Arc::new(map::Basemap::offline()));
    let operator = token("bravo-operator", "deconflict.operator");
    let peer = token("alpha", "utm.strategic_coordination utm.constraint_processing");
    assert_error(
        send(app.clone(), post("/operator/plan", None, "application/json", FLIGHT)).await,
        StatusCode::UNAUTHORIZED,
        "Authorization",
    );
    assert_error(
        send(app.clone(), post("/operator/plan", Some(&peer), "application/json", FLIGHT)).await,
        StatusCode::FORBIDDEN,
        "deconflict.operator",
    );
    assert_error(
        send(app.clone(), post("/operator/plan", Some(&operator), "text/plain", FLIGHT)).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "application/json",
    );
    assert_error(
        send(app.clone(), post("/operator/plan", Some(&operator), "application/x-www-form-urlencoded", "volumes=1"))
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "application/json",
    );
    let high = FLIGHT.replace("\"priority\": 0", "\"priority\": 11");
    assert_error(
        send(app.clone(), post("/operator/plan", Some(&operator), "application/json", &high)).await,
        StatusCode::BAD_REQUEST,
        "max-priority",
    );
    assert_error(
        send(app.clone(), post("/operator/plan", Some(&operator), "application/json", "{")).await,
        StatusCode::BAD_REQUEST,
        "JSON",
    );
    assert_error(
        send(app.clone(), post("/operator/intents/x/end", Some(&operator), "application/json", "")).await,
        StatusCode::NOT_FOUND,
        "no operational intent",
    );
    assert_error(
        send(app.clone(), post("/uss/v1/operational_intents", Some(&operator), "application/json", "{}")).await,
        StatusCode::NOT_FOUND,
        "no such endpoint",
    );
    let status = Request::get("/operator/status")
        .header("authorization", format!("Bearer {operator}"))
        .body(Body::empty())
        .expect("req");
    let (s, body) = send(app.clone(), status).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["participant"], "bravo");
    let bad_query = Request::get("/operator/notifications?after=yesterday")
        .header("authorization", format!("Bearer {operator}"))
        .body(Body::empty())
        .expect("req");
    assert_error(send(app, bad_query).await, StatusCode::BAD_REQUEST, "after");
}

#[tokio::test]
async fn the_peer_router_has_no_operator_route_and_checks_its_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = uss::peer_app(participant(dir.path()));
    let operator = token("bravo-operator", "deconflict.operator");
    let peer = token("alpha", "utm.strategic_coordination");
    assert_error(
        send(app.clone(), post("/operator/plan", Some(&operator), "application/json", FLIGHT)).await,
        StatusCode::NOT_FOUND,
        "no such endpoint",
    );
    assert_error(
        send(app.clone(), post("/uss/v1/operational_intents", None, "application/json", "{}")).await,
        StatusCode::UNAUTHORIZED,
        "Authorization",
    );
    assert_error(
        send(app.clone(), post("/uss/v1/operational_intents", Some(&operator), "application/json", "{}")).await,
        StatusCode::FORBIDDEN,
        "utm.strategic_coordination",
    );
    assert_error(
        send(app.clone(), post("/uss/v1/operational_intents", Some(&peer), "application/json", "[1, 2")).await,
        StatusCode::BAD_REQUEST,
        "JSON",
    );
    let bad_id = r#"{"operational_intent_id": "not-a-uuid", "subscriptions": []}"#;
    assert_error(
        send(app.clone(), post("/uss/v1/operational_intents", Some(&peer), "application/json", bad_id)).await,
        StatusCode::BAD_REQUEST,
        "UUIDv4",
    );
    let get = Request::get("/uss/v1/operational_intents/0f3e0e9c-7f0b-4b0e-8f8e-9b1a3c5d7e9f")
        .header("authorization", format!("Bearer {peer}"))
        .body(Body::empty())
        .expect("req");
    assert_error(send(app, get).await, StatusCode::NOT_FOUND, "not managed here");
}

/// `POST /uss/v1/reports` answers 201 with the report in the schema's `ErrorReport` shape (a
/// report id and the exchange, nothing else echoed) and keeps the report in the participant's
/// database with the reporter taken from the token; a report not in that shape is 400, too
/// large a report 413.
#[tokio::test]
async fn peer_reports_are_stored_with_the_token_subject() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = token("alpha", "utm.strategic_coordination");
    let body = r#"{"reporter": "forged", "exchange": {"url": "http://x.test/a", "method": "GET", "problem": "timeout",
        "recorder_role": "Client", "request_time": {"value": "2026-12-07T10:00:00Z", "format": "RFC3339"}}}"#;
    let id = {
        let app = uss::peer_app(participant(dir.path()));
        let (s, r) = send(app.clone(), post("/uss/v1/reports", Some(&peer), "application/json", body)).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        assert!(r.get("reporter").is_none(), "only the schema's fields are answered: {r}");
        assert_eq!(r["exchange"]["url"], "http://x.test/a", "{r}");
        let partial = r#"{"exchange": {"url": "http://x.test/a", "method": "GET"}}"#;
        let (s, r2) = send(app.clone(), post("/uss/v1/reports", Some(&peer), "application/json", partial)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "an exchange without its required fields: {r2}");
        let big = format!(r#"{{"exchange": {{"problem": "{}"}}}}"#, "x".repeat(300 * 1024));
        let (s, _) = send(app, post("/uss/v1/reports", Some(&peer), "application/json", &big)).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        r["report_id"].as_str().expect("report id").to_owned()
    };
    let db = uss::db::Db::open(dir.path()).expect("reopen");
    let kept: Vec<(String, serde_json::Value)> = db.load_all(uss::db::Table::Reports).expect("reports");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].0.ends_with(&id));
    assert_eq!(kept[0].1["reporter"], "alpha", "the reporter is the token's subject: {}", kept[0].1);
    assert_eq!(kept[0].1["report"]["exchange"]["problem"], "timeout");
}

#[tokio::test]
async fn the_map_page_is_public_but_its_view_and_feed_need_the_operator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = uss::operator_app(participant(dir.path()), std::sync::Arc::new(map::Basemap::offline()));
    let operator = token("bravo-operator", "deconflict.operator");
    let peer = token("alpha", "utm.strategic_coordination");
    let page = app.clone().oneshot(Request::get("/").body(Body::empty()).expect("req")).await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    for path in ["/operator/map", "/operator/events"] {
        let get = |t: Option<&str>| {
            let mut b = Request::get(path);
            if let Some(t) = t {
                b = b.header("authorization", format!("Bearer {t}"));
            }
            b.body(Body::empty()).expect("req")
        };
        assert_error(send(app.clone(), get(None)).await, StatusCode::UNAUTHORIZED, "Authorization");
        assert_error(send(app.clone(), get(Some(&peer))).await, StatusCode::FORBIDDEN, "deconflict.operator");
    }
    let view = Request::get("/operator/map")
        .header("authorization", format!("Bearer {operator}"))
        .body(Body::empty())
        .expect("req");
    let (s, body) = send(app.clone(), view).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!((body["mode"].as_str(), body["viewer"].as_str()), (Some("participant"), Some("bravo")));
    assert_eq!(body["entities"].as_array().map(Vec::len), Some(0), "{body}");
    // The feed answers as server-sent events and starts with a hello.
    let events = Request::get("/operator/events")
        .header("authorization", format!("Bearer {operator}"))
        .body(Body::empty())
        .expect("req");
    let resp = app.oneshot(events).await.expect("events");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body().into_data_stream();
    use futures_util::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(5), body.next()).await.expect("a first event in 5 s");
    let first = String::from_utf8(first.expect("an event").expect("bytes").to_vec()).expect("utf8");
    assert!(first.starts_with("data: ") && first.contains("\"kind\":\"connected\""), "{first}");
}

#[tokio::test]
async fn positions_are_taken_from_the_operator_and_listed_ground_stations_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = uss::operator_app(
        participant_with(dir.path(), vec!["ground-1".into()]),
        std::sync::Arc::new(map::Basemap::offline()),
    );
    let pos = r#"{"time": "2026-01-15T08:00:00Z", "lat": 47.0, "lng": 8.0, "alt_m": 60, "accuracy_h_m": 5, "accuracy_v_m": 3}"#;
    let uri = "/operator/intents/0b7d2c7e-5f7e-4b6e-9f1e-000000000000/positions";
    let req = |tok: &str, ct: &str, body: &str| post(uri, Some(tok), ct, body);
    // The scope alone is not enough when ground stations are listed.
    let other = token("ground-2", "deconflict.telemetry");
    assert_error(send(app.clone(), req(&other, "application/json", pos)).await, StatusCode::FORBIDDEN, "ground-2");
    // A peer's scopes are not the telemetry scope.
    let peer = token("ground-1", "utm.strategic_coordination");
    assert_eq!(send(app.clone(), req(&peer, "application/json", pos)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(send(app.clone(), post(uri, None, "application/json", pos)).await.0, StatusCode::UNAUTHORIZED);
    // Listed: past authentication, the body and the intent are judged.
    let ground = token("ground-1", "deconflict.telemetry");
    assert_error(
        send(app.clone(), req(&ground, "text/plain", pos)).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "application/json",
    );
    assert_error(
        send(app.clone(), req(&ground, "application/json", "[]")).await,
        StatusCode::BAD_REQUEST,
        "no position",
    );
    assert_error(send(app.clone(), req(&ground, "application/json", "7")).await, StatusCode::BAD_REQUEST, "a number");
    let unknown = r#"{"time": "2026-01-15T08:00:00Z", "lat": 47.0, "lng": 8.0, "alt_m": 60, "accuracy_h_m": 5, "accuracy_v_m": 3, "colour": "red"}"#;
    assert_error(send(app.clone(), req(&ground, "application/json", unknown)).await, StatusCode::BAD_REQUEST, "colour");
    assert_error(
        send(app.clone(), req(&ground, "application/json", pos)).await,
        StatusCode::NOT_FOUND,
        "no operational intent",
    );
    // The ground station may report, never plan.
    let plan = post("/operator/plan", Some(&ground), "application/json", FLIGHT);
    assert_eq!(send(app.clone(), plan).await.0, StatusCode::FORBIDDEN);
    // The operator may report as well.
    let operator = token("ops", "deconflict.operator");
    assert_error(
        send(app, req(&operator, "application/json", pos)).await,
        StatusCode::NOT_FOUND,
        "no operational intent",
    );
}
