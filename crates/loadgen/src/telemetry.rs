//! The telemetry benchmark: a DSS, a token server and one participant (alpha) with N
//! Activated flights whose aircraft stream positions into its operator interface, one request
//! per position, at `telemetry_hz` each; now and then a flight chosen at random deviates (its
//! positions jump 600 m outside its 300 m circle for a few seconds, then come back). A
//! subscriber (a small server in this process, subscribed in the DSS over the whole area)
//! records when it is told. Measured: positions/s ingested and their round trip, and for each
//! deviation the time from the sending of its first deviating position to (a) the DSS holding the
//! operation Nonconforming (polled) and (b) the subscriber receiving the notification of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hyper::Method;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::conn::GenClient;
use crate::planning::spawn;
use crate::stats::{Recorder, WorkloadReport};
use crate::Ctx;

/// The flights' grid: 300 m circles 1 km apart around (47.30, 8.40).
const ORIGIN: (f64, f64) = (47.30, 8.40);
const SPACING_M: f64 = 1000.0;
const RADIUS_M: f64 = 300.0;
/// A deviation puts the aircraft this far east of its circle's centre...
const DEVIATION_M: f64 = 600.0;
/// ...for this long, then back inside.
const DEVIATION_S: f64 = 4.0;
/// Deviations started per second of the run (each of a different flight).
const DEVIATIONS_PER_S: f64 = 4.0;
/// Connections streaming positions (each carries its share of the flights).
const STREAMS: usize = 64;
pub(crate) const M_PER_DEG_LAT: f64 = 111_200.0;

pub(crate) fn m_per_deg_lng() -> f64 {
    M_PER_DEG_LAT * ORIGIN.0.to_radians().cos()
}

pub(crate) fn centre(i: usize, side: usize) -> (f64, f64) {
    let (row, col) = (i / side, i % side);
    (ORIGIN.0 + row as f64 * SPACING_M / M_PER_DEG_LAT, ORIGIN.1 + col as f64 * SPACING_M / m_per_deg_lng())
}

pub(crate) fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What the subscriber heard: for each operation, when it was first told it is Nonconforming.
#[derive(Default)]
struct Heard {
    nonconforming: HashMap<String, Instant>,
    notifications: u64,
}

/// A subscriber USS in this process: accepts every notification (204) and notes when each
/// operation was first reported Nonconforming.
async fn subscriber(heard: Arc<Mutex<Heard>>, stop: Arc<AtomicBool>) -> Result<(String, tokio::task::JoinHandle<()>)> {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let Ok(Ok((stream, _))) = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await else {
                continue;
            };
            let heard = heard.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let heard = heard.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let at = Instant::now();
                        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                            let mut h = heard.lock();
                            h.notifications += 1;
                            let state = &v["operational_intent"]["reference"]["state"];
                            if let (Some(id), "Nonconforming") =
                                (v["operational_intent_id"].as_str(), state.as_str().unwrap_or_default())
                            {
                                h.nonconforming.entry(id.to_owned()).or_insert(at);
                            }
                        }
                        let mut resp = hyper::Response::new(http_body_util::Full::new(Bytes::new()));
                        *resp.status_mut() = hyper::StatusCode::NO_CONTENT;
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    Ok((url, task))
}

/// One flight as the generator drives it.
pub(crate) struct Flight {
    pub id: String,
    pub centre: (f64, f64),
    /// Which participant flies it (an index into the run's operator interfaces).
    pub operator: usize,
    /// Once chosen: when its first deviating position was sent, and until when it deviates (a
    /// flight deviates at most once a run).
    deviation: Option<(Instant, Instant)>,
    /// When its first deviating position was sent: where the latencies are measured from.
    first_deviating: Option<Instant>,
}

/// A token server and a DSS for a benchmark with participants.
pub(crate) struct Stack {
    dir: std::path::PathBuf,
    exe: std::path::PathBuf,
    public: String,
    token_url: String,
    pub dss: crate::Server,
    _auth: crate::planning::Proc,
}

impl Stack {
    pub(crate) fn start(ctx: &Ctx, name: &str) -> Result<Stack> {
        let dir = ctx.work_dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let private = dir.join("private.pem");
        std::fs::write(&private, &ctx.keys.private_pem)?;
        let public = ctx.public_key_path.to_str().context("key path")?.to_owned();
        let auth =
            spawn(&ctx.exe, &["auth", "--listen", "127.0.0.1:0", "--key", private.to_str().context("path")?], 1)?;
        let dss =
            crate::Server::start(&ctx.exe, &dir.join("dss"), &ctx.public_key_path, &["--jwt-audience", "127.0.0.1"])?;
        let token_url = format!("{}/token", auth.urls[0]);
        Ok(Stack { dir, exe: ctx.exe.clone(), public, token_url, dss, _auth: auth })
    }

    /// A participant named `name` (strategic coordination and conformance monitoring, plus
    /// `scopes`), with `extra` flags; its URLs are its peer and operator listeners.
    pub(crate) fn participant(&self, name: &str, scopes: &[&str], extra: &[&str]) -> Result<crate::planning::Proc> {
        let data = self.dir.join(name);
        let data = data.to_str().context("path")?.to_owned();
        let mut args = vec![
            "uss",
            "--allow-http-base-urls",
            "--listen",
            "127.0.0.1:0",
            "--operator-listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--dss-url",
            &self.dss.base,
            "--token-url",
            &self.token_url,
            "--client-id",
            name,
            "--jwt-public-key",
            &self.public,
            "--jwt-audience",
            "127.0.0.1",
            "--jwt-audience",
            "localhost",
            "--scope",
            "utm.strategic_coordination",
            "--scope",
            "utm.conformance_monitoring_sa",
        ];
        for s in scopes {
            args.extend(["--scope", s]);
        }
        args.extend_from_slice(extra);
        spawn(&self.exe, &args, 2)
    }
}

/// Plans and activates `n` flights on the grid, flight `i` through operator interface
/// `operators[i % len]`, 16 at a time.
pub(crate) async fn plan_flights(operators: &[String], token: &str, n: usize, side: usize) -> Result<Vec<Flight>> {
    let mut flights = Vec::with_capacity(n);
    let mut planning = tokio::task::JoinSet::new();
    let next = Arc::new(AtomicU64::new(0));
    for _ in 0..16 {
        let clients: Vec<GenClient> = operators.iter().map(|u| GenClient::new(u, token)).collect::<Result<_>>()?;
        let next = next.clone();
        planning.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    break;
                }
                let client = &clients[i % clients.len()];
                let (lat, lng) = centre(i, side);
                let plan = json!({"altitude_reference": "W84", "volumes": [{"footprint": {"type": "Circle", "center": [lng, lat], "radius_m": RADIUS_M},
                    "altitude_lower_m": 0, "altitude_upper_m": 120, "start": "+0", "end": "+3h"}], "priority": 0});
                let (s, body) = client
                    .raw(Method::POST, "/operator/plan", Some(Bytes::from(plan.to_string())))
                    .await
                    .map_err(|e| anyhow::anyhow!("planning flight {i}: {e}"))?;
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let id = v["operational_intent_id"].as_str().filter(|_| s == 200);
                let id = id.with_context(|| format!("flight {i} was not planned: {s} {v}"))?.to_owned();
                let (s, body) = client
                    .raw(Method::POST, &format!("/operator/intents/{id}/activate"), None)
                    .await
                    .map_err(|e| anyhow::anyhow!("activating flight {i}: {e}"))?;
                if s != 200 {
                    bail!("flight {i} was not activated: {s} {}", String::from_utf8_lossy(&body));
                }
                mine.push(Flight { id, centre: (lat, lng), operator: i % clients.len(), deviation: None, first_deviating: None });
            }
            anyhow::Ok(mine)
        });
    }
    while let Some(r) = planning.join_next().await {
        flights.extend(r??);
    }
    Ok(flights)
}

pub async fn telemetry(ctx: &Ctx) -> Result<WorkloadReport> {
    let cfg = &ctx.config;
    let n = cfg.telemetry_flights.max(1);
    let hz = cfg.telemetry_hz.max(0.1);
    let stack = Stack::start(ctx, "telemetry")?;
    let alpha = stack.participant("alpha", &[], &["--conforming-after-secs", "3"])?;
    let dss = &stack.dss;
    let operator_url = alpha.urls[1].clone();
    let operator = crate::mint(&ctx.keys, "telemetry-bench", &["deconflict.operator"])?;

    // The subscriber, subscribed in the DSS over the whole grid.
    let heard: Arc<Mutex<Heard>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (sub_url, sub_task) = subscriber(heard.clone(), stop.clone()).await?;
    let side = (n as f64).sqrt().ceil() as usize;
    let (far_lat, far_lng) = centre(side * side - 1, side);
    let pad = 0.01;
    let t = |s: i64| json!({"value": (chrono::Utc::now() + chrono::Duration::seconds(s)).to_rfc3339(), "format": "RFC3339"});
    let sub_body = json!({
        "extents": {"volume": {"outline_polygon": {"vertices": [
            {"lat": ORIGIN.0 - pad, "lng": ORIGIN.1 - pad}, {"lat": ORIGIN.0 - pad, "lng": far_lng + pad},
            {"lat": far_lat + pad, "lng": far_lng + pad}, {"lat": far_lat + pad, "lng": ORIGIN.1 - pad}]},
            "altitude_lower": {"value": 0, "reference": "W84", "units": "M"},
            "altitude_upper": {"value": 3000, "reference": "W84", "units": "M"}},
            "time_start": t(0), "time_end": t(3 * 3600)},
        "uss_base_url": sub_url, "notify_for_operational_intents": true, "notify_for_constraints": false});
    let dss_client =
        GenClient::new(&dss.base, &crate::mint(&ctx.keys, "subscriber", &["utm.strategic_coordination"])?)?;
    let (s, body) = dss_client
        .raw(
            Method::PUT,
            &format!("/dss/v1/subscriptions/{}", uuid::Uuid::new_v4()),
            Some(Bytes::from(serde_json::to_vec(&sub_body)?)),
        )
        .await
        .map_err(|e| anyhow::anyhow!("subscribing: {e}"))?;
    if s != 200 {
        bail!("the subscriber's subscription was refused: {s} {}", String::from_utf8_lossy(&body));
    }

    // N flights planned and activated through alpha's operator interface.
    let preload_started = Instant::now();
    let flights = plan_flights(std::slice::from_ref(&operator_url), &operator, n, side).await?;
    let preload_seconds = preload_started.elapsed().as_secs_f64();

    // Streams: each carries flights k, k + STREAMS, ... at `hz`.
    let flights: Vec<Arc<Mutex<Flight>>> = flights.into_iter().map(|f| Arc::new(Mutex::new(f))).collect();
    let deadline = Instant::now() + Duration::from_secs(cfg.duration_s);
    let budget = Arc::new(AtomicU64::new(cfg.max_requests));
    let started = Instant::now();
    let cpu_before = crate::cpu_seconds_of(&alpha.pid().to_string());
    let generator_cpu_before = crate::cpu_seconds_of("self");
    let mut streams = tokio::task::JoinSet::new();
    let period = Duration::from_secs_f64(1.0 / hz);
    for k in 0..STREAMS.min(flights.len()) {
        let mine: Vec<Arc<Mutex<Flight>>> = flights.iter().skip(k).step_by(STREAMS).cloned().collect();
        let client = GenClient::new(&operator_url, &operator)?;
        let budget = budget.clone();
        streams.spawn(async move {
            let mut rec = Recorder::default();
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            'run: while Instant::now() < deadline {
                tick.tick().await;
                for f in &mine {
                    if budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1)).is_err() {
                        break 'run;
                    }
                    let (id, lat, lng) = {
                        let mut f = f.lock();
                        let now = Instant::now();
                        let east = match f.deviation {
                            Some((_, until)) if now < until => DEVIATION_M,
                            _ => 0.0,
                        };
                        if east > 0.0 && f.first_deviating.is_none() {
                            f.first_deviating = Some(now);
                        }
                        (f.id.clone(), f.centre.0, f.centre.1 + east / m_per_deg_lng())
                    };
                    let body = format!(
                        r#"{{"time":"{}","lat":{lat},"lng":{lng},"alt_m":60.0,"accuracy_h_m":5.0,"accuracy_v_m":3.0,"speed_mps":10.0,"track_deg":90.0}}"#,
                        now_text()
                    );
                    let t = Instant::now();
                    match client.raw(Method::POST, &format!("/operator/intents/{id}/positions"), Some(Bytes::from(body))).await {
                        Ok((200, _)) => rec.ok("position", t.elapsed().as_micros() as u64),
                        Ok((s, _)) => rec.err("position", s),
                        Err(_) => rec.err("position", 0),
                    }
                }
            }
            rec
        });
    }

    // Deviations: a flight at random (never one that deviated already), at a steady rate; for each,
    // the DSS is polled until it holds the operation Nonconforming.
    let watcher = GenClient::new(&dss.base, &crate::mint(&ctx.keys, "watcher", &["utm.strategic_coordination"])?)?;
    let watcher = Arc::new(watcher);
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut watches = tokio::task::JoinSet::new();
    let mut deviated: Vec<(String, Arc<Mutex<Flight>>)> = Vec::new();
    let every = Duration::from_secs_f64(1.0 / DEVIATIONS_PER_S);
    // The last deviation starts early enough for its flight to send a deviating position.
    let tail = period * 2 + Duration::from_millis(200);
    while Instant::now() + tail < deadline && deviated.len() < flights.len() {
        tokio::time::sleep(every).await;
        let f = &flights[rng.random_range(0..flights.len())];
        let (id, sent) = {
            let mut f = f.lock();
            if f.deviation.is_some() {
                continue;
            }
            let now = Instant::now();
            f.deviation = Some((now, now + Duration::from_secs_f64(DEVIATION_S)));
            (f.id.clone(), now)
        };
        deviated.push((id.clone(), f.clone()));
        let (watcher, f) = (watcher.clone(), f.clone());
        watches.spawn(async move {
            let give_up = sent + Duration::from_secs(10);
            while Instant::now() < give_up {
                if let Ok((200, body)) =
                    watcher.raw(Method::GET, &format!("/dss/v1/operational_intent_references/{id}"), None).await
                {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    if v["operational_intent_reference"]["state"] == "Nonconforming" {
                        let seen = Instant::now();
                        return f.lock().first_deviating.map(|first| seen.saturating_duration_since(first));
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            None
        });
    }
    let mut rec = Recorder::default();
    while let Some(r) = streams.join_next().await {
        rec.merge(r?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let server_cpu = crate::cpu_seconds_of(&alpha.pid().to_string()) - cpu_before;
    let (peak_rss, _) = crate::rss_bytes_of(alpha.pid());
    let generator_cpu = crate::cpu_seconds_of("self") - generator_cpu_before;
    let mut missed_dss = 0u64;
    while let Some(r) = watches.join_next().await {
        match r? {
            Some(d) => rec.ok("dev->dss", d.as_micros() as u64),
            None => missed_dss += 1,
        }
    }
    // Subscribers are told after the DSS write; give the last ones a moment.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut missed_subscriber = 0u64;
    let notifications = {
        let h = heard.lock();
        for (id, f) in &deviated {
            match (h.nonconforming.get(id), f.lock().first_deviating) {
                (Some(at), Some(first)) => {
                    rec.ok("dev->subscriber", at.saturating_duration_since(first).as_micros() as u64)
                }
                _ => missed_subscriber += 1,
            }
        }
        h.notifications
    };
    stop.store(true, Ordering::Relaxed);
    let _ = sub_task.await;
    let positions = rec.count(&["position"]);
    let mut report = WorkloadReport {
        workload: "telemetry".into(),
        parameters: json!({"flights": n, "hz": hz, "streams": STREAMS, "one position per request": true,
                           "deviation_m": DEVIATION_M, "deviation_s": DEVIATION_S, "deviations_per_s": DEVIATIONS_PER_S,
                           "circle_m": RADIUS_M, "participant": "one (alpha), SQLite group commit per batch of requests",
                           "server figures": "the participant's"}),
        measured_seconds: seconds,
        preload_count: n as u64,
        preload_seconds,
        live_intents: n as u64,
        server_peak_rss_mib: peak_rss as f64 / 1048576.0,
        server_5xx_or_transport_errors: rec.server_5xx,
        ..Default::default()
    };
    report.successful_writes_per_s = positions as f64 / seconds;
    report.server_cpu_us_per_request = server_cpu * 1e6 / positions.max(1) as f64;
    report.generator_cpu_us_per_request = generator_cpu * 1e6 / positions.max(1) as f64;
    report.notes.push(format!(
        "{:.0} positions/s ingested ({} flights x {hz} Hz offered = {:.0}/s), each durable before its answer",
        positions as f64 / seconds,
        n,
        n as f64 * hz
    ));
    report.notes.push(format!(
        "{} deviations: {} seen Nonconforming in the DSS within 10 s ({missed_dss} not), {} notified to the subscriber ({missed_subscriber} not); {notifications} notifications received in all",
        deviated.len(),
        deviated.len() as u64 - missed_dss,
        deviated.len() as u64 - missed_subscriber
    ));
    report.ops = rec.into_ops(seconds);
    if missed_dss > 0 || missed_subscriber > 0 {
        report.print();
        bail!("{missed_dss} deviations never reached the DSS and {missed_subscriber} never reached the subscriber");
    }
    drop(alpha);
    drop(stack);
    Ok(report)
}
