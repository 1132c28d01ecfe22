//! The planning benchmark: a DSS, a token server and three participants (alpha, bravo,
//! charlie), each a separate process; operators plan, activate and close flights in one city
//! area through the participants' flight_planning interface, a share of them placed over
//! others' live flights. Afterwards the safety invariant is checked over what the participants
//! serve: no two live operations of the same priority intersect in 4D.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::stats::{Recorder, WorkloadReport};
use crate::Ctx;

const PARTICIPANTS: [&str; 3] = ["alpha", "bravo", "charlie"];
/// The shared city area: 5 km x 5 km around (47.40, 8.50).
const AREA_DEG: f64 = 0.045;
/// Share of plans placed over another live flight.
const OVERLAP_SHARE: f64 = 0.2;
/// Live flights each operator keeps before closing its oldest.
const LIVE_PER_OPERATOR: usize = 8;

pub(crate) struct Proc {
    child: Child,
    pub(crate) urls: Vec<String>,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `deconflict <args>` and waits for its `lines` "listening on" lines (their URLs).
pub(crate) fn spawn(exe: &std::path::Path, args: &[&str], lines: usize) -> Result<Proc> {
    let mut child = Command::new(exe)
        .args(args)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let mut reader = BufReader::new(child.stdout.take().context("stdout")?);
    let mut urls = Vec::new();
    for _ in 0..lines {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        match line.trim().split(" listening on ").nth(1) {
            Some(u) => urls.push(u.to_owned()),
            None => {
                let _ = child.kill();
                bail!("`deconflict {}` did not start (printed `{}`)", args[0], line.trim());
            }
        }
    }
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    Ok(Proc { child, urls })
}

fn time(t: chrono::DateTime<chrono::Utc>) -> Value {
    json!({"value": t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "format": "RFC3339"})
}

/// One flight: a 150 m circle at (lat, lng), 0-120 m, `start_s` from now for 20 minutes.
fn flight_area(lat: f64, lng: f64, start_s: i64) -> Value {
    let t0 = chrono::Utc::now() + chrono::Duration::seconds(start_s);
    json!([{"volume": {"outline_circle": {"center": {"lat": lat, "lng": lng}, "radius": {"value": 150.0, "units": "M"}},
             "altitude_lower": {"value": 0, "reference": "W84", "units": "M"},
             "altitude_upper": {"value": 120, "reference": "W84", "units": "M"}},
            "time_start": time(t0), "time_end": time(t0 + chrono::Duration::seconds(1200))}])
}

fn upsert(usage: &str, uas: &str, area: &Value) -> Value {
    json!({"flight_plan": {"basic_information": {"usage_state": usage, "uas_state": uas, "area": area},
                           "astm_f3548_21": {"priority": 0}},
           "execution_style": "IfAllowed", "request_id": uuid::Uuid::new_v4().to_string()})
}

/// Counts of the plans' outcomes.
#[derive(Default)]
struct Outcomes {
    completed: u64,
    rejected: u64,
    failed: u64,
    other: u64,
}

/// Every this-many-th request for details is answered late in the slow run, by this much.
const SLOW_EVERY: u64 = 10;
const SLOW_MS: u64 = 2000;

/// `slow`: every participant answers every 10th request for details after 2 s.
pub async fn planning(ctx: &Ctx, slow: bool) -> Result<WorkloadReport> {
    let cfg = &ctx.config;
    let dir = ctx.work_dir.join(if slow { "planning-slow" } else { "planning" });
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let private = dir.join("private.pem");
    std::fs::write(&private, &ctx.keys.private_pem)?;
    let public = ctx.public_key_path.to_str().context("key path")?.to_owned();
    let exe = &ctx.exe;
    let auth = spawn(exe, &["auth", "--listen", "127.0.0.1:0", "--key", private.to_str().context("path")?], 1)?;
    let dss_dir = dir.join("dss");
    let dss = crate::Server::start(exe, &dss_dir, &ctx.public_key_path, &["--jwt-audience", "127.0.0.1"])?;
    let token_url = format!("{}/token", auth.urls[0]);
    let mut participants = Vec::new();
    let slow_spec = format!("{SLOW_EVERY}:{SLOW_MS}");
    for name in PARTICIPANTS {
        let data = dir.join(name);
        let data = data.to_str().context("path")?.to_owned();
        let mut args: Vec<&str> = vec![
            "uss",
            "--allow-http-base-urls",
            "--listen",
            "127.0.0.1:0",
            "--operator-listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--dss-url",
            &dss.base,
            "--token-url",
            &token_url,
            "--client-id",
            name,
            "--jwt-public-key",
            &public,
            "--jwt-audience",
            "127.0.0.1",
            "--jwt-audience",
            "localhost",
            "--scope",
            "utm.strategic_coordination",
            "--scope",
            "utm.conformance_monitoring_sa",
            "--flight-planning",
            "--flight-planning-subject",
            "planning-bench",
        ];
        if slow {
            args.extend(["--slow-answers", slow_spec.as_str()]);
        }
        let p = spawn(exe, &args, 2)?;
        participants.push(p);
    }
    let bases: Vec<String> = participants.iter().map(|p| p.urls[0].clone()).collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(64).build()?;
    let token = crate::mint(
        &ctx.keys,
        "planning-bench",
        &["interuss.flight_planning.plan", "interuss.flight_planning.direct_automated_test"],
    )?;
    // Live flights anyone planned: centres other operators plan over.
    let live_centres: Arc<Mutex<Vec<(f64, f64, i64)>>> = Arc::default();
    let outcomes: Arc<Mutex<Outcomes>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(cfg.duration_s);
    let budget = Arc::new(std::sync::atomic::AtomicU64::new(cfg.max_requests));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..cfg.concurrency {
        let base = bases[k % bases.len()].clone();
        let (http, token, live_centres, outcomes, budget) =
            (http.clone(), token.clone(), live_centres.clone(), outcomes.clone(), budget.clone());
        let seed = cfg.seed * 31 + k as u64;
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut rec = Recorder::default();
            let mut mine: std::collections::VecDeque<(String, Value)> = Default::default();
            let call = |method: reqwest::Method, path: String, body: Option<Value>| {
                let (http, token, base) = (http.clone(), token.clone(), base.clone());
                async move {
                    let mut req = http.request(method, format!("{base}/flight_planning/v1{path}")).bearer_auth(token);
                    if let Some(b) = body {
                        req = req.json(&b);
                    }
                    match req.send().await {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            (s, r.json::<Value>().await.unwrap_or(Value::Null))
                        }
                        Err(_) => (0, Value::Null),
                    }
                }
            };
            while Instant::now() < deadline
                && budget
                    .fetch_update(std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed, |l| {
                        l.checked_sub(1)
                    })
                    .is_ok()
            {
                // Where: over another live flight, or anywhere in the area.
                let over = if rng.random_bool(OVERLAP_SHARE) {
                    let c = live_centres.lock();
                    (!c.is_empty()).then(|| c[rng.random_range(0..c.len())])
                } else {
                    None
                };
                let (lat, lng, start_s) = over.unwrap_or_else(|| {
                    (
                        47.40 + rng.random_range(0.0..AREA_DEG),
                        8.50 + rng.random_range(0.0..AREA_DEG),
                        rng.random_range(60..4 * 3600),
                    )
                });
                let area = flight_area(lat, lng, start_s);
                let id = uuid::Uuid::new_v4().to_string();
                let t = Instant::now();
                let (s, r) = call(
                    reqwest::Method::PUT,
                    format!("/flight_plans/{id}"),
                    Some(upsert("Planned", "Nominal", &area)),
                )
                .await;
                let result = r["planning_result"].as_str().unwrap_or_default().to_owned();
                match (s, result.as_str()) {
                    (200, "Completed") => {
                        let waited = t.elapsed() >= Duration::from_millis(SLOW_MS);
                        let kind = if slow && waited { "plan-waited-on-slow-peer" } else { "plan" };
                        rec.ok(kind, t.elapsed().as_micros() as u64);
                        outcomes.lock().completed += 1;
                    }
                    (200, "Rejected") => {
                        rec.ok("plan-rejected", t.elapsed().as_micros() as u64);
                        outcomes.lock().rejected += 1;
                        continue;
                    }
                    (200, "Failed") => {
                        // An error of the operation, not of the transport.
                        rec.err("plan", 200);
                        outcomes.lock().failed += 1;
                        continue;
                    }
                    _ => {
                        rec.err("plan", s);
                        outcomes.lock().other += 1;
                        continue;
                    }
                }
                live_centres.lock().push((lat, lng, start_s));
                // Activate half of them (in their window or not: activation is the user's call).
                if rng.random_bool(0.5) {
                    let t = Instant::now();
                    let (s, r) = call(
                        reqwest::Method::PUT,
                        format!("/flight_plans/{id}"),
                        Some(upsert("InUse", "Nominal", &area)),
                    )
                    .await;
                    if s == 200 && r["planning_result"] == "Completed" {
                        rec.ok("activate", t.elapsed().as_micros() as u64);
                    } else {
                        rec.err("activate", s);
                    }
                }
                mine.push_back((id, area));
                if mine.len() > LIVE_PER_OPERATOR {
                    let (old, old_area) = mine.pop_front().expect("non-empty");
                    let t = Instant::now();
                    let (s, r) = call(
                        reqwest::Method::PUT,
                        format!("/flight_plans/{old}"),
                        Some(upsert("Closed", "Nominal", &old_area)),
                    )
                    .await;
                    if s == 200 && r["flight_plan_status"] == "Closed" {
                        rec.ok("close", t.elapsed().as_micros() as u64);
                    } else {
                        rec.err("close", s);
                    }
                    let v = &old_area[0]["volume"]["outline_circle"]["center"];
                    let (la, ln) = (v["lat"].as_f64().unwrap_or_default(), v["lng"].as_f64().unwrap_or_default());
                    live_centres.lock().retain(|c| (c.0, c.1) != (la, ln));
                }
            }
            rec
        });
    }
    let mut rec = Recorder::default();
    while let Some(r) = tasks.join_next().await {
        rec.merge(r?);
    }
    let seconds = started.elapsed().as_secs_f64();
    // Peer calls: requests for details each participant answered (before the check below,
    // which makes its own).
    let operator = crate::mint(&ctx.keys, "planning-bench-operator", &["deconflict.operator"])?;
    let mut peer_calls = 0u64;
    for p in &participants {
        let st: Value =
            http.get(format!("{}/operator/status", p.urls[1])).bearer_auth(&operator).send().await?.json().await?;
        peer_calls += st["details_served"].as_u64().unwrap_or(0);
    }
    let violations = check_invariant(ctx, &http, &dss.base, &bases).await?;
    let o = std::mem::take(&mut *outcomes.lock());
    let mut report = WorkloadReport {
        workload: if slow {
            format!("planning (every {SLOW_EVERY}th peer answer after {} s)", SLOW_MS / 1000)
        } else {
            "planning".into()
        },
        parameters: json!({"participants": PARTICIPANTS, "operators": cfg.concurrency, "interface": "flight_planning v1",
                           "area_km": [5, 5], "overlap_share": OVERLAP_SHARE, "live_per_operator": LIVE_PER_OPERATOR,
                           "steps": "plan (survey, peer details, DSS write, notifications), activate half, close the oldest"}),
        measured_seconds: seconds,
        live_intents: violations.1 as u64,
        ..Default::default()
    };
    report.notes.push(format!(
        "{:.0} completed plans/s end to end; {} completed, {} rejected (conflicts), {} failed, {} other errors",
        o.completed as f64 / seconds,
        o.completed,
        o.rejected,
        o.failed,
        o.other
    ));
    let attempts = o.completed + o.rejected + o.failed;
    report.notes.push(format!(
        "{peer_calls} requests for peers' details over {attempts} plan attempts: {:.2} per plan (details are cached by version)",
        peer_calls as f64 / attempts.max(1) as f64
    ));
    report.notes.push(format!(
        "safety invariant over {} live operations served by the participants: {} violations (pairs of equal priority intersecting in 4D)",
        violations.1, violations.0
    ));
    report.successful_writes_per_s = o.completed as f64 / seconds;
    report.server_5xx_or_transport_errors = rec.server_5xx;
    report.ops = rec.into_ops(seconds);
    if violations.0 > 0 {
        report.print();
        bail!(
            "the safety invariant is violated: {} pairs of live operations of equal priority intersect",
            violations.0
        );
    }
    drop(participants);
    drop(auth);
    Ok(report)
}

/// Live operations as their managers serve them; returns (violating pairs, operations checked).
async fn check_invariant(ctx: &Ctx, http: &reqwest::Client, dss: &str, bases: &[String]) -> Result<(usize, usize)> {
    let tok = crate::mint(&ctx.keys, "invariant-check", &["utm.strategic_coordination"])?;
    let area = json!({"volume": {"outline_polygon": {"vertices": [
        {"lat": 47.39, "lng": 8.49}, {"lat": 47.39, "lng": 8.56}, {"lat": 47.46, "lng": 8.56}, {"lat": 47.46, "lng": 8.49}]},
        "altitude_lower": {"value": -100, "reference": "W84", "units": "M"},
        "altitude_upper": {"value": 1000, "reference": "W84", "units": "M"}},
        "time_start": time(chrono::Utc::now()), "time_end": time(chrono::Utc::now() + chrono::Duration::hours(6))});
    let refs: Value = http
        .post(format!("{dss}/dss/v1/operational_intent_references/query"))
        .bearer_auth(&tok)
        .json(&json!({"area_of_interest": area}))
        .send()
        .await?
        .json()
        .await?;
    let mut ops: Vec<(String, i32, Vec<geo4d::Volume4D>)> = Vec::new();
    for r in refs["operational_intent_references"].as_array().into_iter().flatten() {
        let (id, base) = (r["id"].as_str().unwrap_or_default(), r["uss_base_url"].as_str().unwrap_or_default());
        if !bases.iter().any(|b| b == base) {
            continue;
        }
        let d: Value =
            http.get(format!("{base}/uss/v1/operational_intents/{id}")).bearer_auth(&tok).send().await?.json().await?;
        let details = &d["operational_intent"]["details"];
        let volumes: Vec<api::Volume4D> = serde_json::from_value(details["volumes"].clone()).unwrap_or_default();
        let volumes = api::extents_from_wire(&volumes).map_err(|e| anyhow::anyhow!("{id}: {}", e.message))?;
        ops.push((id.to_owned(), details["priority"].as_i64().unwrap_or(0) as i32, volumes));
    }
    let mut violations = 0;
    for (i, a) in ops.iter().enumerate() {
        for b in &ops[i + 1..] {
            if a.1 == b.1 && a.2.iter().any(|v| b.2.iter().any(|w| v.intersects(w))) {
                violations += 1;
            }
        }
    }
    Ok((violations, ops.len()))
}
