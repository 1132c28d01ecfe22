//! The Remote ID display benchmark: a DSS, a token server, three service-provider
//! participants flying N flights between them (positions streamed at 1 Hz, one request each) and
//! one display-provider participant whose operators watch M views (each about 1.9 km across,
//! centred on a flight) once a second through `GET /operator/rid/flights`. Measured: positions
//! ingested, display answers and their latency, and display freshness, the age of each position
//! shown when the display was made. Every view must show the flight at its centre.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use hyper::Method;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::conn::GenClient;
use crate::stats::{Recorder, WorkloadReport};
use crate::telemetry::{m_per_deg_lng, now_text, plan_flights, Stack, M_PER_DEG_LAT};
use crate::Ctx;

const PROVIDERS: usize = 3;
/// Connections streaming positions.
const STREAMS: usize = 32;
/// Half a view's height and width in metres (a view is about 1.9 km across: flights, not clusters).
const HALF_VIEW_M: f64 = 670.0;

pub async fn rid_display(ctx: &Ctx) -> Result<WorkloadReport> {
    let cfg = &ctx.config;
    let n = cfg.telemetry_flights.max(PROVIDERS);
    let views_n = cfg.rid_views.clamp(1, n);
    let stack = Stack::start(ctx, "rid-display")?;
    let mut sps = Vec::new();
    for k in 0..PROVIDERS {
        sps.push(stack.participant(&format!("sp{k}"), &["rid.service_provider"], &[])?);
    }
    let display = stack.participant("display", &["rid.display_provider"], &[])?;
    let token = crate::mint(&ctx.keys, "rid-display-bench", &["deconflict.operator"])?;
    let operators: Vec<String> = sps.iter().map(|p| p.urls[1].clone()).collect();
    let side = (n as f64).sqrt().ceil() as usize;
    let preload_started = Instant::now();
    let flights = plan_flights(&operators, &token, n, side).await?;
    let preload_seconds = preload_started.elapsed().as_secs_f64();

    let deadline = Instant::now() + Duration::from_secs(cfg.duration_s.max(4));
    let started = Instant::now();
    let budget = Arc::new(AtomicU64::new(cfg.max_requests));
    let flights: Arc<Vec<crate::telemetry::Flight>> = Arc::new(flights);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..STREAMS.min(flights.len()) {
        let clients: Vec<GenClient> = operators.iter().map(|u| GenClient::new(u, &token)).collect::<Result<_>>()?;
        let (flights, budget) = (flights.clone(), budget.clone());
        tasks.spawn(async move {
            let mut rec = Recorder::default();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            'run: while Instant::now() < deadline {
                tick.tick().await;
                for f in flights.iter().skip(k).step_by(STREAMS) {
                    if budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1)).is_err() {
                        break 'run;
                    }
                    let body = format!(
                        r#"{{"time":"{}","lat":{},"lng":{},"alt_m":60.0,"accuracy_h_m":5.0,"accuracy_v_m":3.0,"speed_mps":10.0,"track_deg":90.0}}"#,
                        now_text(),
                        f.centre.0,
                        f.centre.1
                    );
                    let t = Instant::now();
                    let path = format!("/operator/intents/{}/positions", f.id);
                    match clients[f.operator].raw(Method::POST, &path, Some(Bytes::from(body))).await {
                        Ok((200, _)) => rec.ok("position", t.elapsed().as_micros() as u64),
                        Ok((s, _)) => rec.err("position", s),
                        Err(_) => rec.err("position", 0),
                    }
                }
            }
            (rec, 0u64, 0u64)
        });
    }
    // Views centred on flights spread over the grid; each watched once a second.
    let shown_centre: Arc<Mutex<HashSet<usize>>> = Arc::default();
    let warm = Duration::from_secs(3);
    for v in 0..views_n {
        let i = v * n / views_n;
        let (lat, lng) = flights[i].centre;
        let (dlat, dlng) = (HALF_VIEW_M / M_PER_DEG_LAT, HALF_VIEW_M / m_per_deg_lng());
        let path = format!("/operator/rid/flights?view={},{},{},{}", lat - dlat, lng - dlng, lat + dlat, lng + dlng);
        let client = GenClient::new(&display.urls[1], &token)?;
        let (centre_id, shown_centre, budget) = (flights[i].id.clone(), shown_centre.clone(), budget.clone());
        // Views look at different moments of the second (the positions' 1 Hz ticks are aligned).
        let phase = Duration::from_millis((v * 1000 / views_n) as u64 + 137);
        tasks.spawn(async move {
            let mut rec = Recorder::default();
            let (mut shown, mut provider_errors) = (0u64, 0u64);
            tokio::time::sleep(phase).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < deadline {
                tick.tick().await;
                if budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1)).is_err() {
                    break;
                }
                let t = Instant::now();
                match client.raw(Method::GET, &path, None).await {
                    Ok((200, body)) => {
                        rec.ok("display", t.elapsed().as_micros() as u64);
                        let d: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let list = d["flights"].as_array().cloned().unwrap_or_default();
                        if started.elapsed() > warm {
                            for f in &list {
                                if let Some(age) = f["age_s"].as_f64() {
                                    rec.ok("freshness", (age * 1e6) as u64);
                                }
                            }
                            provider_errors += d["providers"]
                                .as_array()
                                .map_or(0, |l| l.iter().filter(|p| p["error"].is_string()).count())
                                as u64;
                        }
                        shown += list.len() as u64;
                        if list.iter().any(|f| f["id"] == centre_id.as_str()) {
                            shown_centre.lock().insert(v);
                        }
                    }
                    Ok((s, _)) => rec.err("display", s),
                    Err(_) => rec.err("display", 0),
                }
            }
            (rec, shown, provider_errors)
        });
    }
    let mut rec = Recorder::default();
    let (mut shown, mut provider_errors) = (0u64, 0u64);
    while let Some(r) = tasks.join_next().await {
        let (r, s, e) = r?;
        rec.merge(r);
        shown += s;
        provider_errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    let positions = rec.count(&["position"]);
    let displays = rec.count(&["display"]);
    let missing = views_n - shown_centre.lock().len();
    let mut report = WorkloadReport {
        workload: "rid-display".into(),
        parameters: json!({"flights": n, "service_providers": PROVIDERS, "display_views": views_n,
                           "positions_hz": 1, "view_across_m": 2.0 * HALF_VIEW_M * std::f64::consts::SQRT_2,
                           "freshness": "age of each position shown when the display was made (after 3 s of warm-up)"}),
        measured_seconds: seconds,
        preload_count: n as u64,
        preload_seconds,
        live_intents: n as u64,
        server_5xx_or_transport_errors: rec.server_5xx,
        ..Default::default()
    };
    report.successful_writes_per_s = positions as f64 / seconds;
    report.successful_queries_per_s = displays as f64 / seconds;
    report.notes.push(format!(
        "{:.0} positions/s ingested by {PROVIDERS} service providers; {:.1} displays/s showing {:.1} flights each ({} provider errors reported)",
        positions as f64 / seconds,
        displays as f64 / seconds,
        shown as f64 / displays.max(1) as f64,
        provider_errors
    ));
    report.notes.push(
        "freshness includes up to 1 s of the positions' own 1 Hz period (a position shown just before the next \
         arrives is nearly a second old); the pipeline's own delay is the rest"
            .into(),
    );
    report.ops = rec.into_ops(seconds);
    if missing > 0 {
        report.print();
        bail!("{missing} of {views_n} views never showed the flight at their centre");
    }
    drop(display);
    drop(sps);
    drop(stack);
    Ok(report)
}
