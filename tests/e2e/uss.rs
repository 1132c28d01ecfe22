//! The participant, the planner and the demo, with real processes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::harness::BIN;

/// A running participant: its peer API, its operator interface and an operator token.
pub struct Participant {
    pub child: Child,
    pub url: String,
    pub operator: String,
    pub token: String,
}

impl Drop for Participant {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Participant {
    /// Stops with SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }
}

pub struct Proc {
    child: Child,
    pub url: String,
    /// Stopped with SIGTERM (a pool stops its etcd members and instances on the way out).
    terminate: bool,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.terminate {
            let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Starts `deconflict <args>` and returns it with the URLs of its `listening on` lines.
pub fn spawn_lines(args: &[&str], n_lines: usize) -> (Child, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start deconflict");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut urls = Vec::new();
    for _ in 0..n_lines {
        let mut line = String::new();
        reader.read_line(&mut line).expect("line");
        let url =
            line.trim().split(" listening on ").nth(1).unwrap_or_else(|| panic!("did not start: `{line}`")).to_owned();
        urls.push(url);
    }
    // Keep reading stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    (child, urls)
}

fn spawn(args: &[&str]) -> Proc {
    let (child, urls) = spawn_lines(args, 1);
    Proc { child, url: urls[0].clone(), terminate: false }
}

/// A token server (development key), a DSS trusting it (or a pool of them), and participants.
pub struct Cluster {
    pub auth: Proc,
    pub dss: Proc,
    /// Every DSS instance (one unless a pool): participants are spread over them.
    pub dss_urls: Vec<String>,
    pub dir: tempfile::TempDir,
}

const DEV_PUBLIC: &str = "src/keys/dev-public.pem";

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    /// A cluster whose DSS gets extra flags.
    pub fn start_with(dss_flags: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = spawn(&["auth", "--listen", "127.0.0.1:0"]);
        let pubkey = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEV_PUBLIC);
        let data = dir.path().join("dss");
        let mut args = vec![
            "dss",
            "--allow-http-base-urls",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().expect("path"),
            "--jwt-public-key",
            pubkey.to_str().expect("path"),
            "--jwt-audience",
            "127.0.0.1",
        ];
        args.extend(dss_flags);
        let dss = spawn(&args);
        let dss_urls = vec![dss.url.clone()];
        Cluster { auth, dss, dss_urls, dir }
    }

    /// A cluster whose DSS is a pool of `members` instances on a local etcd cluster
    /// (`deconflict pool`, needs the etcd binary).
    pub fn start_pool(members: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = spawn(&["auth", "--listen", "127.0.0.1:0"]);
        let pubkey = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEV_PUBLIC);
        let mut child = Command::new(BIN)
            .args(["pool", "--members", &members.to_string(), "--dir"])
            .arg(dir.path().join("pool"))
            .arg("--jwt-public-key")
            .arg(&pubkey)
            .args(["--jwt-audience", "127.0.0.1"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start deconflict pool");
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut dss_urls = Vec::new();
        while dss_urls.len() < members {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).expect("read") > 0, "the pool did not start (needs etcd)");
            if let Some(url) =
                line.split(" DSS ").nth(1).and_then(|r| r.split_whitespace().next()).filter(|u| u.starts_with("http"))
            {
                dss_urls.push(url.to_owned());
            }
        }
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let dss = Proc { child, url: dss_urls[0].clone(), terminate: true };
        Cluster { auth, dss, dss_urls, dir }
    }

    pub fn participant(&self, name: &str, scopes: &[&str]) -> Participant {
        self.participant_with(name, scopes, &self.dir.path().join(name), &[])
    }

    /// A participant on `data` with extra flags.
    pub fn participant_with(&self, name: &str, scopes: &[&str], data: &Path, extra: &[&str]) -> Participant {
        self.participant_on(&self.dss.url, name, scopes, data, extra)
    }

    /// A participant of DSS instance `dss_url`.
    pub fn participant_on(
        &self,
        dss_url: &str,
        name: &str,
        scopes: &[&str],
        data: &Path,
        extra: &[&str],
    ) -> Participant {
        let (child, urls) = spawn_participant(
            &self.auth.url,
            dss_url,
            name,
            scopes,
            data,
            &[&["--allow-http-base-urls"], extra].concat(),
        );
        let token = self.token_sync(&format!("{name}-operator"), "deconflict.operator");
        Participant { child, url: urls[0].clone(), operator: urls[1].clone(), token }
    }

    /// A token from the development token server (audience 127.0.0.1).
    pub async fn token(&self, sub: &str, scope: &str) -> String {
        dev_token(&self.auth.url, sub, scope).await
    }

    fn token_sync(&self, sub: &str, scope: &str) -> String {
        let url = format!(
            "{}/token?grant_type=client_credentials&sub={sub}&scope={scope}&intended_audience=127.0.0.1",
            self.auth.url
        );
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                reqwest::get(url).await.expect("token").json::<Value>().await.expect("json")["access_token"]
                    .as_str()
                    .expect("token")
                    .to_owned()
            })
        })
        .join()
        .expect("token thread")
    }
}

/// A token from the development token server at `auth` (audience 127.0.0.1).
pub async fn dev_token(auth: &str, sub: &str, scope: &str) -> String {
    let url = format!("{auth}/token?grant_type=client_credentials&sub={sub}&scope={scope}&intended_audience=127.0.0.1");
    reqwest::get(url).await.expect("token").json::<Value>().await.expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// Starts a participant using the token server at `auth` and the DSS at `dss_url`, with
/// `scopes` and `extra` flags; returns it with its peer and operator URLs.
pub fn spawn_participant(
    auth: &str,
    dss_url: &str,
    name: &str,
    scopes: &[&str],
    data: &Path,
    extra: &[&str],
) -> (Child, Vec<String>) {
    let pubkey = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEV_PUBLIC);
    let token_url = format!("{auth}/token");
    let mut args = vec![
        "uss",
        "--listen",
        "127.0.0.1:0",
        "--operator-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().expect("path"),
        "--dss-url",
        dss_url,
        "--token-url",
        &token_url,
        "--client-id",
        name,
        "--jwt-public-key",
        pubkey.to_str().expect("path"),
        "--jwt-audience",
        "127.0.0.1",
    ];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    args.extend(extra);
    spawn_lines(&args, 2)
}

pub const FULL: [&str; 3] =
    ["utm.strategic_coordination", "utm.constraint_processing", "utm.conformance_monitoring_sa"];

/// Calls a participant's operator interface with its operator token.
pub async fn op(uss: &Participant, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let c = crate::harness::client();
    let mut req = c
        .request(reqwest::Method::from_bytes(method.as_bytes()).expect("method"), format!("{}{path}", uss.operator))
        .bearer_auth(&uss.token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.expect("operator call");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

pub fn flight(lat: f64, lng: f64, r: f64, lo: f64, hi: f64, start_s: i64, end_s: i64) -> Value {
    json!({"altitude_reference": "W84", "volumes": [{"footprint": {"type": "Circle", "center": [lng, lat], "radius_m": r},
           "altitude_lower_m": lo, "altitude_upper_m": hi, "start": format!("+{start_s}"), "end": format!("+{end_s}")}],
           "priority": 0})
}

#[test]
fn the_demo_runs_its_whole_scenario() {
    let out = Command::new(BIN).arg("demo").output().expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for needle in [
        "REFUSED",
        "proposal: start",
        "accepts the proposal",
        "publishes restricted zone",
        "plans into the zone -> REFUSED",
        "goes Nonconforming",
        "acknowledged",
    ] {
        assert!(text.contains(needle), "demo output lacks `{needle}`:\n{text}");
    }
}

#[tokio::test]
async fn conflict_explanation_proposal_notifications_and_restart() {
    let cluster = Cluster::start();
    let alpha = cluster.participant("alpha", &FULL);
    let mut bravo = cluster.participant("bravo", &FULL);

    let (s, a) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.0, 8.0, 400.0, 0.0, 120.0, 300, 1500))).await;
    assert_eq!(s, 200, "{a}");
    let a_id = a["operational_intent_id"].as_str().expect("id").to_owned();

    // bravo overlaps in space, time and altitude: refused, with an explanation it can act on.
    let (s, r) = op(&bravo, "POST", "/operator/plan", Some(&flight(47.003, 8.0, 300.0, 50.0, 150.0, 900, 2100))).await;
    assert_eq!(s, 409, "{r}");
    assert_eq!(r["outcome"], "refused");
    let c = &r["conflicts"][0];
    assert_eq!(c["kind"], "operational_intent");
    assert_eq!(c["id"], a_id.as_str());
    assert_eq!(c["manager"], "alpha");
    assert_eq!(c["my_volume"], 0);
    assert_eq!(c["their_volume"], 0);
    assert_eq!(c["overlap_altitude_m"], json!([50.0, 120.0]));
    assert!(
        c["overlap_start"].as_str().is_some_and(|t| !t.is_empty())
            && c["overlap_end"].as_str().is_some_and(|t| !t.is_empty())
    );
    // The proposal is the earliest delay that clears alpha's end (+1500 s) from bravo's start (+900 s).
    let shift = r["proposal"]["shift_start_s"].as_i64().expect("a time shift");
    assert!((599..=602).contains(&shift), "shift {shift}");

    // Following the proposal succeeds; proposals were re-checked, so it must.
    let (s, b) =
        op(&bravo, "POST", "/operator/plan", Some(&flight(47.003, 8.0, 300.0, 50.0, 150.0, 900 + shift, 2100 + shift)))
            .await;
    assert_eq!(s, 200, "{b}");
    let b_id = b["operational_intent_id"].as_str().expect("id").to_owned();

    // An altitude-only alternative is offered when time cannot help within the horizon.
    let (s, r) =
        op(&bravo, "POST", "/operator/plan", Some(&flight(47.0, 8.0, 50.0, 0.0, 60.0, 600, 600 + 3 * 3600))).await;
    assert_eq!(s, 409, "{r}");
    if let Some(off) = r["proposal"]["altitude_offset_m"].as_f64() {
        assert!(off >= 120.0, "the band must clear alpha's 0-120 m: {r}");
    }

    // alpha's changes are notified to bravo? bravo's flight is later; subscribe bravo's area.
    let area = flight(47.0, 8.0, 3000.0, 0.0, 400.0, 0, 7200);
    let (s, _) = op(&bravo, "POST", "/operator/subscribe", Some(&area)).await;
    assert_eq!(s, 200);
    let (s, act) = op(&alpha, "POST", &format!("/operator/intents/{a_id}/activate"), None).await;
    assert_eq!(s, 200, "{act}");
    // Notifications go out after the answer: the answer lists them as being sent.
    assert!(act["notified"].as_array().expect("notified").iter().any(|d| d["sending"] == true), "{act}");
    let mut st = Value::Null;
    for _ in 0..100 {
        let (_, alpha_st) = op(&alpha, "GET", "/operator/status", None).await;
        let acked = alpha_st["own_intents"][&a_id]["notified"]
            .as_array()
            .is_some_and(|l| l.iter().any(|d| d["acknowledged"] == true));
        st = op(&bravo, "GET", "/operator/status", None).await.1;
        if acked && st["others_intents"][&a_id]["reference"]["state"] == "Activated" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let seen = &st["others_intents"][&a_id];
    assert_eq!(seen["reference"]["state"], "Activated", "bravo's picture of alpha's operation: {st}");
    assert!(st["notifications"].as_array().expect("notifications").iter().any(|n| n["entity_id"] == a_id.as_str()));

    // What happened is in each participant's metrics (on the operator listener, no token).
    let metrics = |uss: &Participant| {
        let url = format!("{}/metrics", uss.operator);
        async move { crate::harness::client().get(url).send().await.expect("metrics").text().await.expect("text") }
    };
    let (alpha_m, bravo_m) = (metrics(&alpha).await, metrics(&bravo).await);
    let count = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no `{series}` in:\n{text}"))
    };
    assert_eq!(count(&bravo_m, r#"uss_plans_total{outcome="refused"}"#), 2.0, "bravo was refused twice");
    assert!(count(&bravo_m, r#"uss_plans_total{outcome="planned"}"#) >= 1.0);
    assert!(count(&bravo_m, r#"uss_peer_request_seconds_count{call="intent_details",outcome="ok"}"#) >= 1.0);
    assert!(
        count(&bravo_m, r#"uss_notifications_received_total{kind="operational_intent",verdict="accepted"}"#) >= 1.0
    );
    assert!(count(&alpha_m, r#"uss_notification_deliveries_total{outcome="acknowledged"}"#) >= 1.0);
    assert!(count(&alpha_m, r#"uss_peer_request_seconds_count{call="notify",outcome="ok"}"#) >= 1.0);
    assert!(
        count(
            &alpha_m,
            r#"dss_client_request_seconds_count{method="PUT",route="/dss/v1/operational_intent_references",outcome="ok"}"#
        ) >= 2.0,
        "alpha's plan and activation"
    );
    assert!(alpha_m.contains("# HELP uss_plans_total"), "{alpha_m}");

    // kill -9 bravo and restart it on the same data: nothing acknowledged is lost, and peers
    // can still fetch its details with the current OVN.
    bravo.kill9();
    drop(bravo);
    bravo = cluster.participant("bravo", &FULL);
    let (_, st) = op(&bravo, "GET", "/operator/status", None).await;
    assert!(st["own_intents"].get(&b_id).is_some(), "bravo lost its intent: {st}");
    assert!(st["others_intents"].get(&a_id).is_some(), "bravo lost what it learned: {st}");
    // bravo (new address after restart) can still end its flight: its OVN is current.
    let (s, e) = op(&bravo, "POST", &format!("/operator/intents/{b_id}/end"), None).await;
    assert_eq!(s, 200, "{e}");
}

#[tokio::test]
async fn racing_participants_never_both_win() {
    let cluster = Cluster::start();
    let alpha = cluster.participant("alpha", &FULL);
    let bravo = cluster.participant("bravo", &FULL);
    let fa = flight(47.0, 8.0, 300.0, 0.0, 120.0, 600, 1800);
    let fb = flight(47.001, 8.001, 300.0, 0.0, 120.0, 600, 1800);
    let (ra, rb) =
        tokio::join!(op(&alpha, "POST", "/operator/plan", Some(&fa)), op(&bravo, "POST", "/operator/plan", Some(&fb)));
    let outcomes =
        [ra.1["outcome"].as_str().unwrap_or("?").to_owned(), rb.1["outcome"].as_str().unwrap_or("?").to_owned()];
    assert_eq!(outcomes.iter().filter(|o| *o == "planned").count(), 1, "{outcomes:?}: {} / {}", ra.1, rb.1);
    let loser = if outcomes[0] == "planned" { &rb.1 } else { &ra.1 };
    assert_eq!(loser["outcome"], "refused", "{loser}");
    assert!(!loser["conflicts"].as_array().expect("conflicts").is_empty());
    // The DSS holds exactly one of them.
    let tok = cluster.token("auditor", "utm.strategic_coordination").await;
    let q = json!({"area_of_interest": {"volume": {"outline_circle": {"center": {"lat": 47.0, "lng": 8.0}, "radius": {"value": 2000, "units": "M"}}}}});
    let found: Value = reqwest::Client::new()
        .post(format!("{}/dss/v1/operational_intent_references/query", cluster.dss.url))
        .bearer_auth(tok)
        .json(&q)
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("json");
    assert_eq!(found["operational_intent_references"].as_array().map(Vec::len), Some(1), "{found}");
}

#[tokio::test]
async fn bad_operator_input_gets_clear_errors() {
    let cluster = Cluster::start();
    let alpha = cluster.participant("alpha", &FULL);
    let cases = [
        (json!({"altitude_reference": "W84", "volumes": []}), "at least one"),
        (
            json!({"altitude_reference": "W84", "volumes": [{"footprint": {"type": "Circle", "center": [8.0, 95.0], "radius_m": 10}, "altitude_lower_m": 0, "altitude_upper_m": 10, "start": "+60", "end": "+600"}]}),
            "latitude",
        ),
        (
            json!({"altitude_reference": "W84", "volumes": [{"footprint": {"type": "Circle", "center": [8.0, 47.0], "radius_m": 10}, "altitude_lower_m": 50, "altitude_upper_m": 10, "start": "+60", "end": "+600"}]}),
            "altitude",
        ),
        (
            json!({"altitude_reference": "W84", "volumes": [{"footprint": {"type": "Circle", "center": [8.0, 47.0], "radius_m": 10}, "altitude_lower_m": 0, "altitude_upper_m": 10, "start": "soon", "end": "+600"}]}),
            "start",
        ),
        (
            json!({"altitude_reference": "W84", "volumes": [{"footprint": {"type": "Polygon", "coordinates": [[[8.0, 47.0], [8.001, 47.0]]]}, "altitude_lower_m": 0, "altitude_upper_m": 10, "start": "+60", "end": "+600"}]}),
            "at least 3",
        ),
        (json!({"altitude_reference": "W84", "volumes": [{"footprint": {"type": "Square"}}]}), "footprint"),
    ];
    for (body, needle) in cases {
        let (s, b) = op(&alpha, "POST", "/operator/plan", Some(&body)).await;
        assert_eq!(s, 400, "{body} -> {b}");
        let msg = b["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "`{msg}` should mention `{needle}`");
    }
    let (s, b) = op(&alpha, "POST", "/operator/intents/nope/activate", None).await;
    assert_eq!(s, 404, "{b}");
    // The CLI reads a flight file and reports a refusal with exit code 2.
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("flight.json");
    std::fs::write(&f, flight(47.0, 8.0, 100.0, 0.0, 100.0, 600, 900).to_string()).expect("write");
    let out = Command::new(BIN)
        .args(["plan", "--uss", &alpha.operator])
        .arg(&f)
        .env("DECONFLICT_TOKEN", &alpha.token)
        .output()
        .expect("plan");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = Command::new(BIN)
        .args(["plan", "--uss", &alpha.operator, "--token", &alpha.token])
        .arg(&f)
        .output()
        .expect("plan");
    assert_eq!(again.status.code(), Some(2), "an overlapping plan must exit 2");
    assert!(String::from_utf8_lossy(&again.stderr).contains("refused"));
}

#[tokio::test]
async fn peers_must_authenticate() {
    let cluster = Cluster::start();
    let alpha = cluster.participant("alpha", &FULL);
    let (s, a) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.0, 8.0, 100.0, 0.0, 100.0, 600, 900))).await;
    assert_eq!(s, 200, "{a}");
    let id = a["operational_intent_id"].as_str().expect("id");
    let r =
        reqwest::Client::new().get(format!("{}/uss/v1/operational_intents/{id}", alpha.url)).send().await.expect("get");
    assert_eq!(r.status(), 401);
    let tok = |scope: &'static str| cluster.token("bravo", scope);
    let r = reqwest::Client::new()
        .get(format!("{}/uss/v1/operational_intents/{id}", alpha.url))
        .bearer_auth(tok("utm.constraint_processing").await)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 403);
    let r = reqwest::Client::new()
        .get(format!("{}/uss/v1/operational_intents/{id}", alpha.url))
        .bearer_auth(tok("utm.strategic_coordination").await)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let details: Value = r.json().await.expect("json");
    assert_eq!(details["operational_intent"]["reference"]["ovn"], a["ovn"], "the owner serves its current OVN");
    assert_eq!(details["operational_intent"]["details"]["priority"], 0);
}

#[tokio::test]
async fn an_unreachable_peer_blocks_overlapping_plans_and_says_why() {
    let cluster = Cluster::start();
    let alpha = cluster.participant("alpha", &FULL);
    let bravo = cluster.participant("bravo", &FULL);
    let (s, a) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.0, 8.0, 200.0, 0.0, 120.0, 600, 1200))).await;
    assert_eq!(s, 200, "{a}");
    // alpha goes away: its details cannot be fetched, so bravo cannot prove it is clear of them.
    drop(alpha);
    let (s, r) = op(&bravo, "POST", "/operator/plan", Some(&flight(47.001, 8.0, 200.0, 0.0, 120.0, 700, 1100))).await;
    assert_eq!(s, 409, "{r}");
    let c = &r["conflicts"][0];
    assert_eq!(c["kind"], "unverifiable", "{r}");
    assert_eq!(c["manager"], "alpha");
    assert!(c["reason"].as_str().is_some_and(|m| m.contains("cannot be verified")), "{r}");
    // Outside alpha's time window bravo plans freely.
    let (s, r) = op(&bravo, "POST", "/operator/plan", Some(&flight(47.001, 8.0, 200.0, 0.0, 120.0, 1300, 1600))).await;
    assert_eq!(s, 200, "{r}");
}

/// The operator's command line for people: `plan --accept-proposal` plans a refusal's
/// proposal, `status` prints tables (`--json` the raw answer).
#[tokio::test]
async fn the_command_line_accepts_proposals_and_prints_status_tables() {
    let cluster = Cluster::start();
    let alpha = cluster.participant("alpha", &FULL);
    let bravo = cluster.participant("bravo", &FULL);
    let (s, a) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.0, 8.0, 400.0, 0.0, 120.0, 300, 1500))).await;
    assert_eq!(s, 200, "{a}");
    let file = cluster.dir.path().join("bravo.json");
    std::fs::write(&file, flight(47.003, 8.0, 300.0, 50.0, 150.0, 900, 2100).to_string()).expect("write");
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).env("DECONFLICT_TOKEN", &bravo.token).output().expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let path = file.to_str().expect("path");
    let (code, _, err) = run(&["plan", "--uss", &bravo.operator, path]);
    assert_eq!(code, Some(2), "refused without --accept-proposal: {err}");
    assert!(err.contains("proposal: start") && err.contains("min") && err.contains("later"), "{err}");
    let (code, out, err) = run(&["plan", "--uss", &bravo.operator, "--accept-proposal", path]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("accepting the proposal") && err.contains("planned"), "{err}");

    let (code, out, err) = run(&["status", "--uss", &bravo.operator]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Own operations (1)") && out.contains("Accepted"), "{out}");
    assert!(out.contains("Others' operations (1)") && out.contains("alpha"), "{out}");
    assert!(!out.contains('{') && !out.contains("000Z"), "tables, whole seconds: {out}");
    let (_, out, _) = run(&["status", "--uss", &bravo.operator, "--json"]);
    let v: Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(v["participant"], "bravo");
}
